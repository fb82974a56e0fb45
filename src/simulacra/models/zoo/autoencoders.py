"""Auto-encoder and VAE presets: ae, conv-ae, linear-ae, dae, vae, conv-vae, beta-vae, iwae, cvae,
vae-iaf, vae-flow-prior, vae-vamp, lsgm and miwae."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from simulacra.data.info import DataInfo
from simulacra.distributions.heads import auto_likelihood, head_for
from simulacra.distributions.lazy import Amortized
from simulacra.distributions.standard import DiagonalGaussian
from simulacra.errors import ConfigError, positive_int
from simulacra.flows.base import Affine, ElementwiseTransform
from simulacra.flows.flow import AmortizedFlow
from simulacra.flows.recipes import maf_layers
from simulacra.models.autoencoder import Autoencoder
from simulacra.models.vae import VAE
from simulacra.models.zoo._common import _context
from simulacra.models.zoo._priors import PriorSite, build_prior, diffusion_prior, named, prior_name
from simulacra.models.zoo._registry import MISSING_DATA_PRESETS, MODELS, build_model
from simulacra.nn.conv import ConvDecoder, ConvEncoder
from simulacra.nn.embeddings import ContextEmbedding, ContextNet
from simulacra.nn.mlp import MLP
from simulacra.objectives.denoising import CORRUPTIONS
from simulacra.objectives.variational import ELBO, IWAE
from simulacra.samplers.latent import LATENT_DENSITIES

# -- auto-encoders and VAEs ---------------------------------------------------------------------
# Every variant is a configuration of VAE or Autoencoder: the networks ("mlp", "conv", "linear"),
# the likelihood head, the objective (ELBO(beta, free_bits) or IWAE(k)) and the context embedding.


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
    hidden = [positive_int(h, "each hidden size") for h in hidden]
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
    prior: str | Mapping[str, Any] = "normal",
    posterior: str = "gaussian",
    flow_transforms: int = 4,
    flow_hidden: Sequence[int] = (64, 64),
    missing: bool = False,
) -> VAE:
    latent_dim = positive_int(latent_dim, "latent_dim")
    num_samples = positive_int(num_samples, "num_samples")
    if num_samples > 1 and free_bits > 0:
        raise ConfigError(f"free bits apply to the ELBO (num_samples=1); found num_samples={num_samples}")
    if free_bits > 0 and (prior_name(prior) != "normal" or posterior != "gaussian"):
        raise ConfigError(
            "free bits need a factorized prior and posterior (prior='normal', posterior='gaussian')"
        )
    head = head_for(info, likelihood)
    context = _context(info, conditional, embedding_dim)
    enc_out = 2 * latent_dim  # Gaussian: (μ, σ); IAF: the features h
    enc, dec = _networks(info, arch, latent_dim, enc_out, head.params_per_dim, hidden, activation, context)
    objective = ELBO(beta, free_bits) if num_samples == 1 else IWAE(num_samples)
    objective.beta = float(beta)
    encoder = _posterior(posterior, enc, latent_dim, enc_out, flow_transforms, flow_hidden)
    site = PriorSite(
        info, latent_dim, encoder, conditional, embedding_dim, flow_transforms, tuple(flow_hidden)
    )
    return VAE(
        info,
        encoder,
        Amortized(dec, head),
        build_prior(prior, site),
        objective,
        conditional=conditional,
        missing=missing,
    )


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
    steps = maf_layers(latent_dim, transforms, hidden, "relu", features, inverse=True)
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
    prior: str | Mapping[str, Any] = "normal",
    posterior: str = "gaussian",
    flow_transforms: int = 4,
    flow_hidden: Sequence[int] = (64, 64),
) -> VAE:
    """Gaussian-latent VAE with MLP encoder/decoder; ``hidden`` are the encoder's layers (the decoder
    mirrors them). Burda et al. (2016): ``hidden=[200, 200], latent_dim=50, activation="tanh"``.
    ``prior`` is a name in ``LATENT_PRIORS`` or ``{"name": ..., settings}``: ``normal``, ``vamp``
    (``{"name": "vamp", "components": K}``), ``maf`` (a flow prior), ``diffusion`` (see ``lsgm``);
    ``posterior="iaf"`` an IAF posterior (``flow_transforms`` layers of ``flow_hidden`` units, also
    the ``maf`` prior's defaults)."""
    return _vae(
        info, "mlp", latent_dim, hidden, activation, likelihood, beta, free_bits, num_samples,
        prior=prior, posterior=posterior, flow_transforms=flow_transforms, flow_hidden=flow_hidden,
    )  # fmt: skip


@MODELS.register("vae-iaf", "VAE with an inverse-autoregressive-flow posterior (Kingma et al. 2016)")
def vae_iaf(info: DataInfo, posterior: str = "iaf", **kwargs: Any) -> VAE:
    """The ``vae`` preset with q(z | x) = IAF(z₀ ~ N(μ(x), σ(x)²)); other keywords as ``vae``."""
    return vae(info, posterior=posterior, **kwargs)


@MODELS.register("vae-flow-prior", "VAE with a learned MAF prior p(z) over its latent")
def vae_flow_prior(info: DataInfo, prior: str | Mapping[str, Any] = "maf", **kwargs: Any) -> VAE:
    """The ``vae`` preset with p(z) a masked autoregressive flow; other keywords as ``vae``."""
    return vae(info, prior=named(prior, "maf"), **kwargs)


@MODELS.register(
    "vae-vamp", "VAE with a VampPrior (Tomczak & Welling 2018): a mixture of posteriors at pseudo-inputs"
)
def vae_vamp(info: DataInfo, prior: str | Mapping[str, Any] = "vamp", **kwargs: Any) -> VAE:
    """The ``vae`` preset with p(z) = (1/K) Σ_k q(z | u_k), K = 500 learned pseudo-inputs (set K with
    ``prior={"name": "vamp", "components": K}``); other keywords as ``vae``."""
    return vae(info, prior=named(prior, "vamp"), **kwargs)


LSGM_STAGE_ONE: dict[str, Any] = {"name": "vae"}
"""The first stage ``lsgm`` builds when given none: the ``vae`` preset with its defaults."""


@MODELS.register("lsgm", "LSGM (Vahdat et al. 2021): a VAE with a score-based diffusion prior over z")
def lsgm(
    info: DataInfo,
    stage_one: Mapping[str, Any] | None = None,
    joint: bool = False,
    from_vae: bool | None = None,
    sde: str = "vp",
    hidden: Sequence[int] = (256, 256, 256),
    embedding_dim: int = 64,
    mixing_logit: float = -6.0,
    weighting: str = "eps",
    sampler: str | Mapping[str, Any] = "euler-maruyama",
    sample_steps: int = 100,
) -> VAE:
    """The VAE of ``stage_one`` (a VAE spec; default the ``vae`` preset) with its prior replaced by
    a latent diffusion (``diffusion`` prior: ``sde``, a TimeMLP of ``hidden`` units, mixing logit,
    ``weighting`` of the prior's loss, ``sampler`` with ``sample_steps``). Two stages (``joint=False``): it starts from a trained VAE
    run (``simulacra train lsgm --init RUN``), whose encoder and decoder stay frozen while the
    latent diffusion learns the cross-entropy term on z ~ q(z | x). ``joint=True``: encoder,
    decoder and prior train together on the ELBO, whose cross-entropy term is the diffusion's
    denoising score-matching bound, from scratch, or from a trained VAE run with ``from_vae=True``
    (default: two stages start from a VAE run, joint training from scratch)."""
    from_vae = (not joint) if from_vae is None else bool(from_vae)
    if not joint and not from_vae:
        raise ConfigError(
            "two-stage lsgm trains its prior on a trained VAE: drop from_vae=False, or set joint=True"
        )
    first = build_model(dict(stage_one or LSGM_STAGE_ONE), info)
    if not isinstance(first, VAE):
        raise ConfigError(
            f"lsgm puts a latent diffusion prior on a VAE; stage_one is {first.preset_name} "
            f"({type(first).__name__}), which has no latent posterior q(z | x) (train a vae first)"
        )
    if first.conditional or first.missing or not isinstance(first.objective, ELBO | IWAE):
        raise ConfigError(
            f"lsgm needs an unconditional VAE trained on complete data; stage_one is {first.preset_name}"
        )
    if isinstance(first.objective, ELBO) and first.objective.free_bits > 0:
        raise ConfigError("lsgm's latent diffusion prior does not factorize: give stage_one free_bits=0")
    (latent_dim,) = first.prior().event_shape
    site = PriorSite(info, latent_dim, first.encoder)
    prior = diffusion_prior(site, sde, hidden, embedding_dim, mixing_logit, weighting, sampler, sample_steps)
    model = VAE(info, first.encoder, first.decoder, prior, first.objective)
    if from_vae:
        model.starts_from = "a trained VAE run (simulacra train vae ...)"
    if not joint:
        model.encoder.requires_grad_(False)
        model.decoder.requires_grad_(False)
    return model


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


@MODELS.register(
    "miwae", "MIWAE (Mattei & Frellsen 2019): an IWAE trained on data with missing entries (NaN)"
)
def miwae(
    info: DataInfo,
    latent_dim: int = 10,
    hidden: Sequence[int] = (128, 128),
    activation: str = "tanh",
    likelihood: str = "auto",
    num_samples: int = 20,
) -> VAE:
    """The VAE trained on incomplete data: NaN entries are missing, the encoder reads 0 there and
    the IWAE bound with ``num_samples`` (K) draws is that of the observed entries. The paper's
    settings for UCI tables are the defaults: d = 10, two tanh layers of 128 units, K = 20, and a
    Student-t decoder for real data (``likelihood="auto"``; ``gaussian-learned`` for a Gaussian);
    ``auto`` is Bernoulli for binary images. Impute with ``simulacra impute``."""
    if likelihood == "auto":
        likelihood = "student-t" if info.support == "real" else auto_likelihood(info)
    return _vae(info, "mlp", latent_dim, hidden, activation, likelihood, 1.0, 0.0, num_samples, missing=True)


MISSING_DATA_PRESETS.add("miwae")


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
    latent_dim = positive_int(latent_dim, "latent_dim")
    head = head_for(info, likelihood, **head_kwargs)
    enc, dec = _networks(info, arch, latent_dim, latent_dim, head.params_per_dim, hidden, activation, None)
    density_kwargs = {"num_components": positive_int(num_components, "num_components")}
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
