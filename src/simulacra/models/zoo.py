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
) -> VAE:
    latent_dim = _positive_int(latent_dim, "latent_dim")
    num_samples = _positive_int(num_samples, "num_samples")
    if num_samples > 1 and free_bits > 0:
        raise ConfigError(f"free bits apply to the ELBO (num_samples=1); found num_samples={num_samples}")
    head = head_for(info, likelihood)
    context = _context(info, conditional, embedding_dim)
    enc, dec = _networks(
        info, arch, latent_dim, 2 * latent_dim, head.params_per_dim, hidden, activation, context
    )
    objective = ELBO(beta, free_bits) if num_samples == 1 else IWAE(num_samples)
    objective.beta = float(beta)
    return VAE(
        info,
        Amortized(enc, DiagonalGaussian(latent_dim)),
        Amortized(dec, head),
        StandardNormal(latent_dim),
        objective,
        conditional=conditional,
    )


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
) -> VAE:
    """Gaussian-latent VAE with MLP encoder/decoder; ``hidden`` are the encoder's layers (the decoder
    mirrors them). Burda et al. (2016): ``hidden=[200, 200], latent_dim=50, activation="tanh"``."""
    return _vae(info, "mlp", latent_dim, hidden, activation, likelihood, beta, free_bits, num_samples)


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
from simulacra.flows.base import Affine, Elementwise, Inverse, Reshape, Transform  # noqa: E402
from simulacra.flows.coupling import Coupling, alternating_mask  # noqa: E402
from simulacra.flows.flow import LazyFlow  # noqa: E402
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
    transforms: int = 8,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    batchnorm: bool = False,
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
) -> FlowModel:
    """Affine couplings z_B = x_B·exp(s(x_A)) + t(x_A) on vectors (images are flattened);
    ``conditional`` feeds the one-hot label (or a learned ``embedding_dim`` embedding) to every layer."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers = _coupling_layers(info, transforms, hidden, activation, cf, Affine, batchnorm)
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
) -> FlowModel:
    """z_i = x_i·exp(s_i(x_<i)) + t_i(x_<i), orders alternating between layers; one pass for
    log p, D passes to sample."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers = _autoregressive_layers(info, transforms, hidden, activation, cf, Affine, batchnorm=batchnorm)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register("iaf", "inverse autoregressive flow (Kingma et al. 2016): MAF inverted, one-pass sampling")
def iaf(
    info: DataInfo,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
) -> FlowModel:
    """The inverse of a MAF: sampling takes one pass, log p takes D passes (slow to train on
    data; its use is as a posterior or wherever samples are scored by the flow itself)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers = _autoregressive_layers(info, transforms, hidden, activation, cf, Affine, inverse=True)
    return _vector_flow(info, layers, context, conditional, dequantization)


# -- flows: neural spline flows and the torus (flows/splines.py, flows/circular.py) -------------


# -- flows: Glow and image flows (flows/glow.py) ------------------------------------------------


# -- flows: UMNN and continuous flows (flows/monotonic.py, flows/continuous.py) -----------------
