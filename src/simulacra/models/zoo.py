"""Model presets: short registered functions that compose the parts into named models.

Each preset takes the data's :class:`DataInfo` first and keyword arguments after it, and returns
a :class:`GenerativeModel`. ``simulacra models`` lists them with the first docstring line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from simulacra.data.info import DataInfo
from simulacra.models.base import GenerativeModel
from simulacra.registry import Registry

MODELS: Registry[Callable[..., GenerativeModel]] = Registry("model")


def build_model(spec: str | Mapping[str, Any], info: DataInfo) -> GenerativeModel:
    """Build the preset named by ``spec`` (``"vae"`` or ``{"name": "vae", "latent_dim": 8}``)
    for data described by ``info``. The resolved spec is kept as ``model.spec`` so that a
    checkpoint can rebuild the same architecture without unpickling code."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    model = MODELS.build(spec, info=info)
    model.preset_name = spec["name"]
    model.spec = spec
    return model


# Presets are registered below this line, one family at a time.


# -- auto-encoders and VAEs ---------------------------------------------------------------------
# Every variant is a configuration of VAE or Autoencoder: the networks ("mlp", "conv", "linear"),
# the likelihood head, the objective (ELBO(beta, free_bits) or IWAE(k)) and the context embedding.

from collections.abc import Sequence  # noqa: E402

from torch import nn  # noqa: E402

from simulacra.distributions.heads import head_for  # noqa: E402
from simulacra.distributions.lazy import Amortized  # noqa: E402
from simulacra.distributions.standard import DiagonalGaussian, StandardNormal  # noqa: E402
from simulacra.errors import ConfigError  # noqa: E402
from simulacra.models.autoencoder import Autoencoder  # noqa: E402
from simulacra.models.vae import VAE  # noqa: E402
from simulacra.nn.conv import ConvDecoder, ConvEncoder  # noqa: E402
from simulacra.nn.embeddings import ContextEmbedding, ContextNet  # noqa: E402
from simulacra.nn.mlp import MLP  # noqa: E402
from simulacra.objectives.denoising import CORRUPTIONS  # noqa: E402
from simulacra.objectives.variational import ELBO, IWAE  # noqa: E402
from simulacra.samplers.latent import LATENT_DENSITIES  # noqa: E402


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; found {value!r}")
    return value


def _context(info: DataInfo, conditional: bool, embedding_dim: int | None) -> ContextEmbedding | None:
    if not conditional:
        return None
    if info.num_classes is None:
        raise ConfigError(
            "a conditional model needs labelled data (DataInfo.num_classes); found num_classes=None"
        )
    return ContextEmbedding(info.num_classes, embedding_dim)


def _networks(
    info: DataInfo,
    arch: str,
    latent_dim: int,
    enc_out: int,
    dec_params: int,
    hidden: Sequence[int],
    activation: str,
    context: ContextEmbedding | None,
) -> tuple[ContextNet, ContextNet]:
    """Encoder x -> (B, enc_out) and decoder z -> (B, dec_params · D), both seeing the context.
    ``hidden`` lists the encoder's layer sizes (conv: channels); the decoder mirrors them."""
    extra = 0 if context is None else context.out_features
    hidden = [_positive_int(h, "each hidden size") for h in hidden]
    if arch == "mlp":
        enc = MLP(info.dim + extra, hidden, enc_out, activation)
        dec = MLP(latent_dim + extra, hidden[::-1], dec_params * info.dim, activation)
    elif arch == "linear":
        enc, dec = nn.Linear(info.dim + extra, enc_out), nn.Linear(latent_dim + extra, dec_params * info.dim)
    elif arch == "conv":
        if not info.is_image:
            raise ConfigError(
                f"convolutional presets need images (C, H, W); found event_shape {info.event_shape}"
            )
        c, h, w = info.event_shape
        enc = ConvEncoder((c + extra, h, w), enc_out, hidden, activation)
        dec = ConvDecoder(latent_dim + extra, (dec_params * c, h, w), hidden[::-1], activation)
    else:
        raise ConfigError(f"unknown architecture {arch!r}; expected 'mlp', 'conv' or 'linear'")
    return ContextNet(enc, context, flatten=arch != "conv"), ContextNet(dec, context)


def _vae(
    info: DataInfo,
    arch: str,
    latent_dim: int,
    hidden: Sequence[int],
    activation: str,
    likelihood: str,
    beta: float,
    free_bits: float,
    num_samples: int,
    conditional: bool = False,
    embedding_dim: int | None = None,
    prior: str = "normal",
    posterior: str = "gaussian",
    flow_transforms: int = 4,
    flow_hidden: Sequence[int] = (64, 64),
) -> VAE:
    latent_dim = _positive_int(latent_dim, "latent_dim")
    num_samples = _positive_int(num_samples, "num_samples")
    if num_samples > 1 and free_bits > 0:
        raise ConfigError(f"free bits apply to the ELBO (num_samples=1); found num_samples={num_samples}")
    if free_bits > 0 and (prior != "normal" or posterior != "gaussian"):
        raise ConfigError(
            "free bits need a factorized prior and posterior (prior='normal', posterior='gaussian')"
        )
    head = head_for(info, likelihood)
    context = _context(info, conditional, embedding_dim)
    enc_out = 2 * latent_dim  # Gaussian: (μ, σ); IAF: the features h
    enc, dec = _networks(info, arch, latent_dim, enc_out, head.params_per_dim, hidden, activation, context)
    objective = ELBO(beta, free_bits) if num_samples == 1 else IWAE(num_samples)
    objective.beta = float(beta)
    return VAE(
        info,
        _posterior(posterior, enc, latent_dim, enc_out, flow_transforms, flow_hidden),
        Amortized(dec, head),
        _prior(prior, info, latent_dim, conditional, embedding_dim, flow_transforms, flow_hidden),
        objective,
        conditional=conditional,
    )


def _prior(
    name: str,
    info: DataInfo,
    latent_dim: int,
    conditional: bool,
    embedding_dim: int | None,
    transforms: int,
    hidden: Sequence[int],
) -> nn.Module:
    """p(z | c): N(0, I) (``normal``), or a MAF over z (``maf``, Papamakarios et al. 2017) whose
    every layer reads the label when the VAE is conditional."""
    if name == "normal":
        return StandardNormal(latent_dim)
    if name != "maf":
        raise ConfigError(f"unknown prior {name!r}; expected 'normal' or 'maf'")
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers = _autoregressive_layers(DataInfo((latent_dim,)), transforms, hidden, "relu", cf, Affine)
    return LazyFlow(layers, (latent_dim,), context=context)


def _posterior(
    name: str, net: nn.Module, latent_dim: int, features: int, transforms: int, hidden: Sequence[int]
) -> nn.Module:
    """q(z | x, c): a diagonal Gaussian (``gaussian``), or the inverse autoregressive flow of
    Kingma et al. (2016) (``iaf``): z₀ = μ(h) + σ(h) ε, then ``transforms`` affine IAF steps whose
    MADEs read the encoder features h; log q(z | x) comes from the sampling pass."""
    if name == "gaussian":
        return Amortized(net, DiagonalGaussian(latent_dim))
    if name != "iaf":
        raise ConfigError(f"unknown posterior {name!r}; expected 'gaussian' or 'iaf'")
    gaussian = ElementwiseTransform(Affine(bound=8.0), latent_dim, nn.Linear(features, 2 * latent_dim))
    steps = _autoregressive_layers(
        DataInfo((latent_dim,)), transforms, hidden, "relu", features, Affine, inverse=True
    )
    return AmortizedFlow(net, [*steps[::-1], gaussian], (latent_dim,))


@MODELS.register("vae", "VAE with MLPs (Kingma & Welling 2014); num_samples > 1 trains on the IWAE bound")
def vae(
    info: DataInfo,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512, 256),
    activation: str = "relu",
    likelihood: str = "auto",
    beta: float = 1.0,
    free_bits: float = 0.0,
    num_samples: int = 1,
    prior: str = "normal",
    posterior: str = "gaussian",
    flow_transforms: int = 4,
    flow_hidden: Sequence[int] = (64, 64),
) -> VAE:
    """Gaussian-latent VAE with MLP encoder/decoder; ``hidden`` are the encoder's layers (the decoder
    mirrors them). Burda et al. (2016): ``hidden=[200, 200], latent_dim=50, activation="tanh"``.
    ``prior="maf"`` learns a flow prior, ``posterior="iaf"`` an IAF posterior (``flow_transforms``
    layers of ``flow_hidden`` units)."""
    return _vae(
        info, "mlp", latent_dim, hidden, activation, likelihood, beta, free_bits, num_samples,
        prior=prior, posterior=posterior, flow_transforms=flow_transforms, flow_hidden=flow_hidden,
    )  # fmt: skip


@MODELS.register("vae-iaf", "VAE with an inverse-autoregressive-flow posterior (Kingma et al. 2016)")
def vae_iaf(info: DataInfo, posterior: str = "iaf", **kwargs: Any) -> VAE:
    """The ``vae`` preset with q(z | x) = IAF(z₀ ~ N(μ(x), σ(x)²)); other keywords as ``vae``."""
    return vae(info, posterior=posterior, **kwargs)


@MODELS.register("vae-flow-prior", "VAE with a learned MAF prior p(z) over its latent")
def vae_flow_prior(info: DataInfo, prior: str = "maf", **kwargs: Any) -> VAE:
    """The ``vae`` preset with p(z) a masked autoregressive flow; other keywords as ``vae``."""
    return vae(info, prior=prior, **kwargs)


@MODELS.register("conv-vae", "VAE with stride-2 convolutional encoder and decoder")
def conv_vae(
    info: DataInfo,
    latent_dim: int = 16,
    channels: Sequence[int] = (32, 64),
    activation: str = "relu",
    likelihood: str = "auto",
    beta: float = 1.0,
    free_bits: float = 0.0,
    num_samples: int = 1,
) -> VAE:
    """VAE whose encoder is a :class:`ConvEncoder` with ``channels`` and decoder its mirror."""
    return _vae(info, "conv", latent_dim, channels, activation, likelihood, beta, free_bits, num_samples)


@MODELS.register("beta-vae", "β-VAE (Higgins et al. 2017): the VAE with the KL weighted by beta=4")
def beta_vae(info: DataInfo, beta: float = 4.0, **kwargs: Any) -> VAE:
    """The ``vae`` preset with ``beta = 4`` by default; other keywords as ``vae``."""
    return vae(info, beta=beta, **kwargs)


@MODELS.register("iwae", "IWAE (Burda et al. 2016): the VAE trained on the k-sample bound, k=5")
def iwae(info: DataInfo, num_samples: int = 5, **kwargs: Any) -> VAE:
    """The ``vae`` preset trained on the importance-weighted bound with ``num_samples`` (k)."""
    return vae(info, num_samples=num_samples, **kwargs)


@MODELS.register("cvae", "conditional VAE (Sohn et al. 2015): labels enter encoder, decoder")
def cvae(
    info: DataInfo,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512, 256),
    activation: str = "relu",
    likelihood: str = "auto",
    beta: float = 1.0,
    embedding_dim: int | None = None,
) -> VAE:
    """MLP VAE with p(x | z, c) and q(z | x, c); the label c is one-hot (``embedding_dim=None``) or a
    learned embedding, concatenated to the networks' inputs. Needs ``info.num_classes``."""
    return _vae(info, "mlp", latent_dim, hidden, activation, likelihood, beta, 0.0, 1, True, embedding_dim)


def _ae(
    info: DataInfo,
    arch: str,
    latent_dim: int,
    hidden: Sequence[int],
    activation: str,
    likelihood: str,
    latent_density: str,
    num_components: int,
    corruption: str | None = None,
    noise: float = 0.0,
    **head_kwargs: Any,
) -> Autoencoder:
    latent_dim = _positive_int(latent_dim, "latent_dim")
    head = head_for(info, likelihood, **head_kwargs)
    enc, dec = _networks(info, arch, latent_dim, latent_dim, head.params_per_dim, hidden, activation, None)
    density_kwargs = {"num_components": _positive_int(num_components, "num_components")}
    density = LATENT_DENSITIES.build(
        {"name": latent_density, **(density_kwargs if latent_density == "gmm" else {})}, dim=latent_dim
    )
    noise_module = None if corruption is None else CORRUPTIONS.get(corruption)(noise)
    return Autoencoder(info, enc, Amortized(dec, head), density, noise_module)


@MODELS.register("ae", "auto-encoder with MLPs and a post-hoc latent density for sampling")
def ae(
    info: DataInfo,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512, 256),
    activation: str = "relu",
    likelihood: str = "auto",
    latent_density: str = "gaussian",
    num_components: int = 10,
) -> Autoencoder:
    """Deterministic auto-encoder; ``latent_density`` (normal, gaussian, gmm with ``num_components``)
    is fitted to the codes after training for generation."""
    return _ae(info, "mlp", latent_dim, hidden, activation, likelihood, latent_density, num_components)


@MODELS.register("conv-ae", "auto-encoder with convolutional encoder and decoder")
def conv_ae(
    info: DataInfo,
    latent_dim: int = 16,
    channels: Sequence[int] = (32, 64),
    activation: str = "relu",
    likelihood: str = "auto",
    latent_density: str = "gaussian",
    num_components: int = 10,
) -> Autoencoder:
    """Deterministic auto-encoder with a :class:`ConvEncoder` and its mirror :class:`ConvDecoder`."""
    return _ae(info, "conv", latent_dim, channels, activation, likelihood, latent_density, num_components)


@MODELS.register("linear-ae", "linear auto-encoder with a fixed-σ Gaussian decoder (spans the PCA subspace)")
def linear_ae(
    info: DataInfo, latent_dim: int = 2, std: float = 1.0, latent_density: str = "gaussian"
) -> Autoencoder:
    """z = W_e x + b_e, p(x | z) = N(W_d z + b_d, σ² I): its optimum spans the top principal
    subspace of the data (Baldi & Hornik 1989)."""
    return _ae(info, "linear", latent_dim, (), "relu", "gaussian", latent_density, 1, std=std)


@MODELS.register("dae", "denoising auto-encoder (Vincent et al. 2008): MLP AE trained on corrupted inputs")
def dae(
    info: DataInfo,
    corruption: str = "gaussian",
    noise: float = 0.3,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512, 256),
    activation: str = "relu",
    likelihood: str = "auto",
    latent_density: str = "gaussian",
    num_components: int = 10,
) -> Autoencoder:
    """``corruption`` is gaussian (σ = ``noise``), masking or salt-and-pepper (probability ``noise``);
    the loss reconstructs the clean input."""
    return _ae(
        info,
        "mlp",
        latent_dim,
        hidden,
        activation,
        likelihood,
        latent_density,
        num_components,
        corruption,
        noise,
    )


# -- normalizing flows --------------------------------------------------------------------------
# Every flow is FlowModel(info, LazyFlow(transforms, ...)): the presets differ only in the list of
# transforms. Vector presets flatten image data first (and dequantize it: see _dequantizer).

from simulacra.flows.autoregressive import MaskedAutoregressive  # noqa: E402
from simulacra.flows.base import (  # noqa: E402
    Affine,
    Elementwise,
    ElementwiseTransform,
    Inverse,
    Reshape,
    Transform,
)
from simulacra.flows.coupling import Coupling, alternating_mask  # noqa: E402
from simulacra.flows.flow import AmortizedFlow, LazyFlow  # noqa: E402
from simulacra.flows.permutation import BatchNorm  # noqa: E402
from simulacra.models.flow import FlowModel  # noqa: E402
from simulacra.nn.masked import MADE  # noqa: E402


def _flow_context(
    info: DataInfo, conditional: bool, embedding_dim: int | None
) -> tuple[nn.Module | None, int]:
    context = _context(info, conditional, embedding_dim)
    return context, (0 if context is None else context.out_features)


def _dequantizer(info: DataInfo, dequantization: str) -> nn.Module | None:
    """Dequantizer for discrete data (levels or binary), None for continuous data."""
    if info.levels is None and info.support != "binary":
        return None
    from simulacra.flows.dequantization import DEQUANTIZERS

    return DEQUANTIZERS.build({"name": dequantization}, info=info)


def _vector_flow(
    info: DataInfo,
    layers: Sequence[Transform],
    context: nn.Module | None,
    conditional: bool,
    dequantization: str,
) -> FlowModel:
    """FlowModel over vectors; images are reshaped to (D,) first (a volume-preserving step)."""
    transforms: list[Transform] = []
    dequantizer = _dequantizer(info, dequantization)
    if dequantizer is not None:
        transforms += list(dequantizer.preprocessing())
    if len(info.event_shape) != 1:
        transforms.append(Reshape(tuple(info.event_shape), (info.dim,)))
    flow = LazyFlow(transforms + list(layers), info.event_shape, context=context, base_shape=(info.dim,))
    return FlowModel(info, flow, dequantizer, conditional=conditional)


def _autoregressive_layers(
    info: DataInfo,
    transforms: int,
    hidden: Sequence[int],
    activation: str,
    context_features: int,
    elementwise: Callable[[], Elementwise],
    inverse: bool = False,
    batchnorm: bool = False,
) -> list[Transform]:
    """``transforms`` MADE layers with alternating (identity, reversed) orders, as MAF and zuko."""
    d = info.dim
    layers: list[Transform] = []
    for i in range(_positive_int(transforms, "transforms")):
        h = elementwise()
        order = range(d) if i % 2 == 0 else range(d - 1, -1, -1)
        made = MADE(d, hidden, h.num_params, context_features, list(order), activation)
        layer: Transform = MaskedAutoregressive(made, h)
        layers.append(Inverse(layer) if inverse else layer)
        if batchnorm and i < transforms - 1:
            layers.append(BatchNorm(d))
    return layers


def _coupling_layers(
    info: DataInfo,
    transforms: int,
    hidden: Sequence[int],
    activation: str,
    context_features: int,
    elementwise: Callable[[], Elementwise],
    batchnorm: bool = False,
) -> list[Transform]:
    """``transforms`` vector couplings with alternating masks (RealNVP §3.3)."""
    d = info.dim
    layers: list[Transform] = []
    for i in range(_positive_int(transforms, "transforms")):
        h = elementwise()
        mask = alternating_mask(d, i % 2)
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        net = MLP(n_a + context_features, hidden, n_b * h.num_params, activation)
        layers.append(Coupling(mask, net, h))
        if batchnorm and i < transforms - 1:
            layers.append(BatchNorm(d))
    return layers


@MODELS.register("realnvp", "RealNVP (Dinh et al. 2017): affine coupling layers with alternating masks")
def realnvp(
    info: DataInfo,
    transforms: int | None = None,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    batchnorm: bool = False,
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    architecture: str | None = None,
    levels: int = 2,
) -> FlowModel:
    """Affine couplings z_B = x_B·exp(s(x_A)) + t(x_A) on vectors (images are flattened);
    ``conditional`` feeds the one-hot label (or a learned ``embedding_dim`` embedding) to every layer.

    ``architecture`` is "vector" (``transforms`` = 8 couplings of MLPs, the default for vectors) or
    "multiscale" (the default for images; RealNVP §3.6, see :func:`_multiscale_realnvp`)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    if _realnvp_architecture(info, architecture) == "multiscale":
        layers = _multiscale_realnvp(
            info, 3 if transforms is None else transforms, hidden, activation, batchnorm, levels, cf
        )
        return _image_flow(info, layers, context, conditional, dequantization)
    layers = _coupling_layers(
        info, 8 if transforms is None else transforms, hidden, activation, cf, Affine, batchnorm
    )
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register("maf", "masked autoregressive flow (Papamakarios et al. 2017): affine MADE layers")
def maf(
    info: DataInfo,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    batchnorm: bool = False,
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    inverse: bool = False,
) -> FlowModel:
    """z_i = x_i·exp(s_i(x_<i)) + t_i(x_<i), orders alternating between layers; one pass for
    log p, D passes to sample. ``inverse=True`` is the IAF (the ``iaf`` preset)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers = _autoregressive_layers(info, transforms, hidden, activation, cf, Affine, inverse, batchnorm)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register("iaf", "inverse autoregressive flow (Kingma et al. 2016): MAF inverted, one-pass sampling")
def iaf(info: DataInfo, inverse: bool = True, **kwargs: Any) -> FlowModel:
    """The inverse of a MAF: sampling takes one pass, log p takes D passes (slow to train on
    data; its use is as a posterior or wherever samples are scored by the flow itself). Other
    keywords as ``maf``."""
    return maf(info, inverse=inverse, **kwargs)


# -- flows: neural spline flows and the torus (flows/splines.py, flows/circular.py) -------------
# NSF is MAF or RealNVP with a rational-quadratic spline as the elementwise map; the torus flow
# couples circular splines over a base uniform on [-π, π)^D.

from functools import partial  # noqa: E402

from simulacra.flows.circular import AngleDomain, AngleFeatures, CircularSpline, UniformCircle  # noqa: E402
from simulacra.flows.splines import RationalQuadraticSpline  # noqa: E402


@MODELS.register("nsf", "neural spline flow (Durkan et al. 2019): rational-quadratic splines in MADE layers")
def nsf(
    info: DataInfo,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    bins: int = 8,
    bound: float = 5.0,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    coupling: bool = False,
) -> FlowModel:
    """Autoregressive NSF: z_i = h(x_i; θ_i(x_<i)), h a monotonic rational-quadratic spline with
    ``bins`` bins on [-bound, bound] (identity outside), orders alternating between layers; one
    pass for log p, D passes to sample. ``coupling=True``: spline couplings z_B = h(x_B; θ(x_A))
    with alternating masks instead, one pass both ways (the ``nsf-coupling`` preset)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    spline = partial(RationalQuadraticSpline, bins, bound)
    build = _coupling_layers if coupling else _autoregressive_layers
    layers = build(info, transforms, hidden, activation, cf, spline)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register("nsf-coupling", "coupling neural spline flow (Durkan et al. 2019): spline couplings")
def nsf_coupling(info: DataInfo, coupling: bool = True, **kwargs: Any) -> FlowModel:
    """The ``nsf`` preset with spline couplings (alternating masks) instead of MADE layers."""
    return nsf(info, coupling=coupling, **kwargs)


@MODELS.register("torus", "circular spline flow on the torus (Rezende et al. 2020): angles in [-π, π)")
def torus(
    info: DataInfo,
    transforms: int = 4,
    hidden: Sequence[int] = (64, 64),
    bins: int = 8,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
) -> FlowModel:
    """Density on T^D of angles θ ∈ [-π, π)^D (D ≥ 2): couplings θ_B' = wrap(h(θ_B) + φ) of
    circular rational-quadratic splines whose parameters read (cos θ_A, sin θ_A), alternating
    which angles move, over a base uniform on [-π, π)^D. Data outside [-π, π) raise a DataError."""
    if len(info.event_shape) != 1 or info.dim < 2 or info.support != "real" or info.levels is not None:
        raise ConfigError(
            "the torus flow models vectors of D ≥ 2 continuous angles (event shape (D,), support 'real'); "
            f"found event shape {tuple(info.event_shape)}, support {info.support!r}, levels {info.levels}"
        )
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers: list[Transform] = [AngleDomain()]
    for i in range(_positive_int(transforms, "transforms")):
        h = CircularSpline(bins)
        mask = alternating_mask(info.dim, i % 2)
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        net = AngleFeatures(n_a, MLP(2 * n_a + cf, hidden, n_b * h.num_params, activation))
        layers.append(Coupling(mask, net, h))
    flow = LazyFlow(layers, info.event_shape, base=UniformCircle(info.dim), context=context)
    return FlowModel(info, flow, conditional=conditional)


# -- flows: Glow and image flows (flows/glow.py) ------------------------------------------------
# Image flows keep the (C, H, W) shape throughout: a logit step, then one MultiScale transform
# (squeeze, couplings with convolutional conditioners, half the channels factored out per scale).

from torch import Tensor  # noqa: E402

from simulacra.flows.base import Composed  # noqa: E402
from simulacra.flows.coupling import channel_mask, checkerboard_mask  # noqa: E402
from simulacra.flows.glow import ActNorm, InvertibleConv1x1, MultiScale, squeezed_shapes  # noqa: E402
from simulacra.nn.conv import CouplingConvNet  # noqa: E402


def _image_flow(
    info: DataInfo,
    layers: Sequence[Transform],
    context: nn.Module | None,
    conditional: bool,
    dequantization: str,
) -> FlowModel:
    """FlowModel over images (no flattening); the base is a standard normal over (C, H, W)."""
    dequantizer = _dequantizer(info, dequantization)
    pre = [] if dequantizer is None else list(dequantizer.preprocessing())
    flow = LazyFlow(pre + list(layers), info.event_shape, context=context)
    return FlowModel(info, flow, dequantizer, conditional=conditional)


def _image_coupling(mask: Tensor, hidden: Sequence[int], activation: str, context_features: int) -> Coupling:
    """Affine coupling on images (C, H, W) whose conditioner is a CouplingConvNet (C + C_c -> 2C)."""
    c = mask.shape[0]
    return Coupling(mask, CouplingConvNet(c + context_features, 2 * c, hidden, activation), Affine())


def _realnvp_architecture(info: DataInfo, architecture: str | None) -> str:
    chosen = architecture or ("multiscale" if info.is_image else "vector")
    if chosen not in ("vector", "multiscale"):
        raise ConfigError(f'realnvp architecture must be "vector" or "multiscale"; found {architecture!r}')
    if chosen == "multiscale" and not info.is_image:
        raise ConfigError(f"the multiscale realnvp needs images (C, H, W); found {tuple(info.event_shape)}")
    return chosen


def _multiscale_realnvp(
    info: DataInfo,
    transforms: int,
    hidden: Sequence[int],
    activation: str,
    batchnorm: bool,
    levels: int,
    context_features: int,
) -> list[Transform]:
    """RealNVP's image model (Dinh et al. 2017 §3.6): at each of ``levels`` scales ``transforms``
    checkerboard couplings, a squeeze, ``transforms`` channel couplings and half of the channels
    factored out; then ``transforms + 1`` checkerboard couplings at the coarsest scale."""
    if batchnorm:
        raise ConfigError(
            'batchnorm applies to the vector realnvp; use architecture="vector" or glow (ActNorm)'
        )
    transforms = _positive_int(transforms, "transforms")
    shapes = squeezed_shapes(info.event_shape, _positive_int(levels, "levels"), "realnvp")
    c, h, w = shapes[-1]
    last = (2 * c, h // 2, w // 2)
    inner: Transform = Composed(
        [
            _image_coupling(checkerboard_mask(last, i % 2), hidden, activation, context_features)
            for i in range(transforms + 1)
        ]
    )
    for c, h, w in reversed(shapes):
        squeezed = (4 * c, h // 2, w // 2)
        pre = [
            _image_coupling(checkerboard_mask((c, h, w), i % 2), hidden, activation, context_features)
            for i in range(transforms)
        ]
        post = [
            _image_coupling(channel_mask(squeezed, i % 2), hidden, activation, context_features)
            for i in range(transforms)
        ]
        inner = MultiScale(pre, post, inner, keep=2 * c)
    return [inner]


@MODELS.register(
    "glow", "Glow (Kingma & Dhariwal 2018): multi-scale ActNorm, 1x1 convolutions, affine couplings"
)
def glow(
    info: DataInfo,
    levels: int = 2,
    steps: int = 4,
    hidden: int = 64,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    learned_prior: bool = True,
) -> FlowModel:
    """At each of ``levels`` scales: squeeze, ``steps`` steps of ActNorm → invertible 1×1
    convolution (LU) → affine coupling (channel halves, conditioner 3×3 conv → 1×1 conv → 3×3 conv
    of ``hidden`` channels), then half of the channels factored out. Vector data get ``levels·steps``
    steps of ActNorm → LU linear map → MLP coupling instead (no scales).

    ``learned_prior``: Glow's prior N(μ(h₁), σ(h₁)²) on each factored-out half h₂ given the kept
    half h₁, written as one more affine coupling h₂ -> (h₂ − μ(h₁))/σ(h₁) before the split (the
    standard normal base then scores the result; the densities are the same)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    levels, steps, hidden = (
        _positive_int(v, n) for v, n in ((levels, "levels"), (steps, "steps"), (hidden, "hidden"))
    )
    if not info.is_image:
        d = info.dim
        layers: list[Transform] = []
        for i in range(levels * steps):
            mask = alternating_mask(d, i % 2)
            n_a, n_b = int(mask.sum()), int((~mask).sum())
            net = MLP(n_a + cf, [hidden, hidden], 2 * n_b, activation)
            layers += [
                ActNorm(d, event_dims=1),
                InvertibleConv1x1(d, event_dims=1),
                Coupling(mask, net, Affine()),
            ]
        return _vector_flow(info, layers, context, conditional, dequantization)
    inner: Transform | None = None
    for c, h, w in reversed(squeezed_shapes(info.event_shape, levels, "glow")):
        shape = (4 * c, h // 2, w // 2)
        post: list[Transform] = []
        for i in range(steps):
            coupling = _image_coupling(channel_mask(shape, i % 2), (hidden, hidden), activation, cf)
            post += [ActNorm(shape[0]), InvertibleConv1x1(shape[0]), coupling]
        if inner is not None and learned_prior:  # channel_mask parity 0 keeps the first 2c channels: h₁
            post.append(_image_coupling(channel_mask(shape, 0), (hidden,), activation, cf))
        inner = MultiScale((), post, inner, keep=None if inner is None else 2 * c)
    return _image_flow(info, [inner], context, conditional, dequantization)


# -- flows: UMNN and continuous flows (flows/monotonic.py, flows/continuous.py) -----------------
# UMNN-MAF is MAF with an integral of a positive network as the elementwise map; the CNF is one
# (or a few) FFJORD blocks, each an ODE solve over [0, T].

from simulacra.flows.continuous import ConcatSquashField, ContinuousFlow  # noqa: E402
from simulacra.flows.monotonic import UMNN  # noqa: E402


@MODELS.register("umnn", "unconstrained monotonic neural networks (Wehenkel & Louppe 2019) in MADE layers")
def umnn(
    info: DataInfo,
    transforms: int = 3,
    hidden: Sequence[int] = (64, 64),
    integrand_embedding: int = 10,
    integrand_hidden: Sequence[int] = (64, 64),
    nodes: int = 24,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
) -> FlowModel:
    """UMNN-MAF: z_i = β_i + ∫_0^{x_i} f(t; e_i) dt with f > 0 a network of (t, e_i), (e_i, β_i) =
    MADE(x_<i); Clenshaw–Curtis quadrature on ``nodes`` + 1 points; one pass for log p, D
    bisections to sample."""
    context, cf = _flow_context(info, conditional, embedding_dim)

    def elementwise() -> UMNN:
        return UMNN(integrand_embedding, integrand_hidden, nodes)

    layers = _autoregressive_layers(info, transforms, hidden, activation, cf, elementwise)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register(
    "cnf", "continuous normalizing flow (FFJORD, Grathwohl et al. 2019): an ODE-defined bijection"
)
def cnf(
    info: DataInfo,
    transforms: int = 1,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    time_length: float = 1.0,
    trace: str = "auto",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    train_rtol: float | None = None,
    train_atol: float | None = None,
    steps: int | None = None,
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
) -> FlowModel:
    """dz/dt = g(z, t; c) over [0, ``time_length``] with a concatsquash MLP g; log|det| =
    ∫ tr(∂g/∂z) dt, exact for D ≤ 10 and Hutchinson's estimate above (``trace``); ``rtol``/``atol``
    for evaluation, ``train_rtol``/``train_atol`` (looser, faster) while training."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers: list[Transform] = [
        ContinuousFlow(
            ConcatSquashField(info.dim, hidden, cf, activation),
            time_length,
            trace=trace,
            method=method,
            rtol=rtol,
            atol=atol,
            steps=steps,
            train_rtol=train_rtol,
            train_atol=train_atol,
        )
        for _ in range(_positive_int(transforms, "transforms"))
    ]
    return _vector_flow(info, layers, context, conditional, dequantization)


# -- autoregressive -----------------------------------------------------------------------------
# Every preset is Autoregressive(info, net, head): the network (NADE, MADE, PixelCNN, gated
# PixelCNN, causal Transformer) carries the order; the head is the likelihood of one entry.

from dataclasses import replace  # noqa: E402

from simulacra.models.autoregressive import Autoregressive  # noqa: E402
from simulacra.nn.nade import NADE  # noqa: E402
from simulacra.nn.pixelcnn import GatedPixelCNN, PixelCNN  # noqa: E402
from simulacra.nn.transformer import CausalTransformer  # noqa: E402


def _entry_head(info: DataInfo, likelihood: str, **kwargs: Any) -> nn.Module:
    """The likelihood of one entry (event shape (1,)); ``auto`` chooses by the data as
    :func:`head_for` does (bernoulli, categorical for ≤ 64 levels, logistic, gaussian-learned)."""
    return head_for(replace(info, event_shape=(1,)), likelihood, **kwargs)


def _order(info: DataInfo, order: str) -> list[int]:
    if order not in ("natural", "reversed"):
        raise ConfigError(f'order must be "natural" or "reversed"; found {order!r}')
    return list(range(info.dim)) if order == "natural" else list(range(info.dim - 1, -1, -1))


@MODELS.register("nade", "NADE (Larochelle & Murray 2011): weight-shared autoregressive network, O(D·H)")
def nade(
    info: DataInfo, hidden: int = 500, likelihood: str = "auto", order: str = "natural"
) -> Autoregressive:
    """θ_{o(t)} = V σ(c + W x_{o(<t)}) + b, one pass for log p and an O(D·H) recurrence to sample;
    ``likelihood`` "auto" is Bernoulli on binary data."""
    head = _entry_head(info, likelihood)
    net = NADE(info.dim, _positive_int(hidden, "hidden"), head.params_per_dim, _order(info, order))
    return Autoregressive(info, net, head)


@MODELS.register("rnade", "RNADE (Uria et al. 2013): NADE with a mixture of Gaussians per real entry")
def rnade(
    info: DataInfo, hidden: int = 100, components: int = 10, activation: str = "relu", order: str = "natural"
) -> Autoregressive:
    """Real-valued NADE: p(x_d | x_<d) = Σ_k π_k N(μ_k, σ_k²), the parameters from NADE's shared
    hidden layer (ReLU, as Uria et al.)."""
    head = _entry_head(info, "gaussian-mixture", components=_positive_int(components, "components"))
    net = NADE(
        info.dim, _positive_int(hidden, "hidden"), head.params_per_dim, _order(info, order), activation
    )
    return Autoregressive(info, net, head)


@MODELS.register("made", "MADE (Germain et al. 2015): masked MLP, an ensemble of num_masks orderings")
def made(
    info: DataInfo,
    hidden: Sequence[int] = (500,),
    num_masks: int = 32,
    resample_order: bool = True,
    activation: str = "relu",
    likelihood: str = "auto",
    seed: int = 0,
) -> Autoregressive:
    """A MADE with ``num_masks`` (order, connectivity) masks over shared weights: one mask drawn
    per training step; log p(x) = log-mean-exp over the masks at test; mask 0 has the natural
    order. ``num_masks=1`` is a single fixed MADE."""
    head = _entry_head(info, likelihood)
    net = MADE(
        info.dim,
        [_positive_int(h, "each hidden size") for h in hidden],
        head.params_per_dim,
        activation=activation,
        seed=seed,
        num_masks=_positive_int(num_masks, "num_masks"),
        resample_order=resample_order,
    )
    return Autoregressive(info, net, head)


@MODELS.register("pixelcnn", "PixelCNN (van den Oord et al. 2016): masked convolutions of type A and B")
def pixelcnn(
    info: DataInfo,
    channels: int = 64,
    blocks: int = 6,
    kernel_size: int = 7,
    activation: str = "relu",
    likelihood: str = "auto",
    components: int = 5,
) -> Autoregressive:
    """A 7×7 type-A masked convolution, ``blocks`` residual 3×3 type-B ones, two 1×1 layers;
    ``likelihood`` "auto" is Bernoulli (binary), categorical (≤ 64 levels) or discretized
    logistic; "logistic-mixture" takes ``components``."""
    extra = {"components": components} if likelihood == "logistic-mixture" else {}
    head = _entry_head(info, likelihood, **extra)
    net = PixelCNN(info.event_shape, head.params_per_dim, channels, blocks, kernel_size, activation)
    return Autoregressive(info, net, head)


@MODELS.register("gated-pixelcnn", "gated PixelCNN (van den Oord et al. 2016b): two stacks, no blind spot")
def gated_pixelcnn(
    info: DataInfo,
    channels: int = 64,
    layers: int = 6,
    kernel_size: int = 5,
    activation: str = "relu",
    likelihood: str = "auto",
    components: int = 5,
) -> Autoregressive:
    """Vertical and horizontal stacks of gated units tanh(f) ⊙ σ(g); likelihoods as ``pixelcnn``."""
    extra = {"components": components} if likelihood == "logistic-mixture" else {}
    head = _entry_head(info, likelihood, **extra)
    net = GatedPixelCNN(info.event_shape, head.params_per_dim, channels, layers, kernel_size, activation)
    return Autoregressive(info, net, head)


@MODELS.register("transformer", "causal Transformer over token sequences (text:PATH), key-value cache")
def transformer(
    info: DataInfo,
    dim: int = 128,
    layers: int = 4,
    heads: int = 4,
    mlp_ratio: int = 4,
    dropout: float = 0.0,
) -> Autoregressive:
    """GPT-style pre-LN Transformer over sequences (T,) of V = ``info.levels`` token values with a
    categorical output per position; sampling uses a key-value cache."""
    if len(info.event_shape) != 1 or info.levels is None or info.support == "real":
        raise ConfigError(
            "the transformer models token sequences (event shape (T,), discrete levels), e.g. "
            f"--data text:PATH; found event shape {tuple(info.event_shape)}, levels {info.levels}"
        )
    head = _entry_head(info, "categorical" if info.support == "unit" else "bernoulli")
    net = CausalTransformer(
        info.dim, info.levels, head.params_per_dim, dim, layers, heads, mlp_ratio, dropout
    )
    return Autoregressive(info, net, head)


# -- diffusion ----------------------------------------------------------------------------------
# Every diffusion model is Diffusion(info, denoiser, process, prediction, weighting): DDPM is the
# discrete-time model (timesteps T) on a linear or cosine schedule, score-sde the continuous-time
# one on a VP, sub-VP or VE SDE. The denoiser is a time-conditioned MLP for vectors and a UNet for
# images; the sampler is chosen at sampling time (the preset only sets the default).

from simulacra.models.diffusion import Diffusion  # noqa: E402
from simulacra.nn.time import TimeMLP  # noqa: E402
from simulacra.nn.unet import UNet  # noqa: E402
from simulacra.processes.schedules import SCHEDULES  # noqa: E402


def _denoiser(
    info: DataInfo,
    arch: str,
    hidden: Sequence[int],
    channels: Sequence[int],
    attention_resolution: int,
    conditional: bool,
) -> nn.Module:
    """TimeMLP (``mlp``) or UNet (``unet``); ``auto`` picks the UNet for images."""
    num_classes = info.num_classes if conditional else None
    arch = ("unet" if info.is_image else "mlp") if arch == "auto" else arch
    if arch == "mlp":
        hidden = [_positive_int(h, "each hidden size") for h in hidden]
        return TimeMLP(info.event_shape, hidden, num_classes=num_classes)
    if arch != "unet":
        raise ConfigError(f"unknown denoiser architecture {arch!r}; expected 'auto', 'mlp' or 'unet'")
    if not info.is_image:
        raise ConfigError(f"the UNet denoiser needs images (C, H, W); found event_shape {info.event_shape}")
    return UNet(
        info.event_shape, channels, attention_resolution=attention_resolution, num_classes=num_classes
    )


@MODELS.register("ddpm", "DDPM (Ho et al. 2020): discrete-time diffusion, linear or cosine schedule")
def ddpm(
    info: DataInfo,
    schedule: str = "linear",
    timesteps: int = 1000,
    prediction: str = "eps",
    weighting: str | None = None,
    arch: str = "auto",
    hidden: Sequence[int] = (256, 256, 256),
    channels: Sequence[int] = (32, 64),
    attention_resolution: int = 8,
    conditional: bool = False,
    label_dropout: float = 0.1,
    sampler: str = "ancestral",
    sample_steps: int | None = None,
) -> Diffusion:
    """T = ``timesteps`` steps of a ``linear`` (Ho et al.) or ``cosine`` (Nichol & Dhariwal) schedule;
    ``prediction`` eps, x0 or v; a TimeMLP (``hidden``) for vectors, a UNet (``channels``) for
    images; ``conditional`` trains with label dropout for classifier-free guidance."""
    if schedule not in ("linear", "cosine"):
        raise ConfigError(f"ddpm's schedule must be 'linear' or 'cosine'; found {schedule!r} (see score-sde)")
    return Diffusion(
        info, _denoiser(info, arch, hidden, channels, attention_resolution, conditional),
        SCHEDULES.build(schedule), prediction=prediction, weighting=weighting,
        timesteps=_positive_int(timesteps, "timesteps"), conditional=conditional,
        label_dropout=label_dropout, sampler=sampler, sample_steps=sample_steps,
    )  # fmt: skip


@MODELS.register("score-sde", "score SDE (Song et al. 2021): continuous-time VP, sub-VP or VE diffusion")
def score_sde(
    info: DataInfo,
    sde: str = "vp",
    sigma_max: float = 50.0,
    prediction: str = "eps",
    weighting: str | None = None,
    arch: str = "auto",
    hidden: Sequence[int] = (256, 256, 256),
    channels: Sequence[int] = (32, 64),
    attention_resolution: int = 8,
    conditional: bool = False,
    label_dropout: float = 0.1,
    sampler: str = "euler-maruyama",
    sample_steps: int = 1000,
) -> Diffusion:
    """Denoising score matching at t ~ U(t_min, 1) on the ``sde`` vp, subvp or ve (``sigma_max``:
    σ(1) of the VE SDE, about the largest distance between data points); other keywords as ddpm."""
    if sde not in ("vp", "subvp", "ve"):
        raise ConfigError(f"sde must be 'vp', 'subvp' or 've'; found {sde!r}")
    process = SCHEDULES.build({"name": "ve", "sigma_max": sigma_max} if sde == "ve" else sde)
    return Diffusion(
        info, _denoiser(info, arch, hidden, channels, attention_resolution, conditional), process,
        prediction=prediction, weighting=weighting, timesteps=None, conditional=conditional,
        label_dropout=label_dropout, sampler=sampler, sample_steps=_positive_int(sample_steps, "sample_steps"),
    )  # fmt: skip
