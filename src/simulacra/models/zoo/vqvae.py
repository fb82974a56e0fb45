"""VQ-VAE presets: vqvae (stage one, with a factorized code prior) and vqvae-prior (stage two: an
autoregressive prior over a trained vqvae's codes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from simulacra.data.info import DataInfo
from simulacra.distributions.codes import FactorizedCodes
from simulacra.distributions.heads import head_for
from simulacra.distributions.lazy import Amortized
from simulacra.errors import ConfigError, positive_int
from simulacra.models.autoregressive import Autoregressive
from simulacra.models.vqvae import VQVAE, VQVAEPrior
from simulacra.models.zoo._registry import MODELS, build_model
from simulacra.nn.conv import ConvGridDecoder, ConvGridEncoder
from simulacra.nn.embeddings import ContextNet
from simulacra.nn.quantize import VectorQuantizer


@MODELS.register("vqvae", "VQ-VAE (van den Oord et al. 2017): code grid, EMA codebook, factorized code prior")
def vqvae(
    info: DataInfo,
    num_codes: int = 128,
    code_dim: int = 16,
    channels: Sequence[int] = (32, 64),
    activation: str = "relu",
    likelihood: str = "auto",
    beta: float = 0.25,
    decay: float = 0.99,
    kmeans_init: bool = True,
    restart_threshold: float = 1.0,
) -> VQVAE:
    """Stride-2 convolutions (``channels``) to a grid of ``code_dim``-vectors (28×28 -> 7×7), each
    quantized to the nearest of ``num_codes`` codes (EMA codebook with ``decay``, k-means start,
    codes with an EMA count below ``restart_threshold`` restarted; 0 turns restarts off), and the
    mirror decoder with the ``likelihood`` head; commitment weight ``beta``. After training, a
    per-position code-frequency prior is fitted for sampling and the bound."""
    if isinstance(num_codes, bool) or not isinstance(num_codes, int) or num_codes < 2:
        raise ConfigError(f"a VQ-VAE's codebook needs at least 2 codes (num_codes >= 2); found {num_codes!r}")
    if not info.is_image:
        raise ConfigError(f"the vqvae preset models images (C, H, W); found event_shape {info.event_shape}")
    code_dim = positive_int(code_dim, "code_dim")
    channels = [positive_int(ch, "each channel count") for ch in channels]
    head = head_for(info, likelihood)
    c, h, w = info.event_shape
    encoder = ConvGridEncoder(info.event_shape, code_dim, channels, activation)
    decoder = ConvGridDecoder(code_dim, (head.params_per_dim * c, h, w), channels[::-1], activation)
    quantizer = VectorQuantizer(
        num_codes,
        code_dim,
        beta=beta,
        decay=decay,
        kmeans_init=bool(kmeans_init),
        restart_threshold=restart_threshold,
    )
    prior = FactorizedCodes(encoder.grid_shape, num_codes)
    return VQVAE(info, encoder, quantizer, Amortized(ContextNet(decoder, None, flatten=False), head), prior)


PRIORS = ("gated-pixelcnn", "pixelcnn", "transformer")


def _code_prior(
    name: str, grid: tuple[int, int], num_codes: int, channels: int, layers: int, kernel_size: int, heads: int
) -> Autoregressive:
    """The autoregressive model over (h, w) grids of K codes: the zoo's preset of that name, built
    for ``DataInfo(levels=K)`` (codes k as k / (K − 1)) with a categorical output per position."""
    h, w = grid
    if name == "transformer":
        info = DataInfo(event_shape=(h * w,), support="unit", levels=num_codes)
        spec: dict[str, Any] = {"name": name, "dim": channels, "layers": layers, "heads": heads}
    elif name == "gated-pixelcnn":
        info = DataInfo(event_shape=(1, h, w), support="unit", levels=num_codes)
        spec = {"name": name, "channels": channels, "layers": layers, "kernel_size": kernel_size}
    elif name == "pixelcnn":
        info = DataInfo(event_shape=(1, h, w), support="unit", levels=num_codes)
        spec = {"name": name, "channels": channels, "blocks": layers, "kernel_size": kernel_size}
    else:
        raise ConfigError(f"unknown code prior {name!r}; expected one of {', '.join(PRIORS)}")
    if name != "transformer":
        spec["likelihood"] = "categorical"
    model = build_model(spec, info)
    if not isinstance(model, Autoregressive):
        raise ConfigError(f"the code prior {name!r} is not an autoregressive model")
    return model


@MODELS.register("vqvae-prior", "a trained vqvae with an autoregressive prior over its codes (--init RUN)")
def vqvae_prior(
    info: DataInfo,
    stage_one: Mapping[str, Any] | None = None,
    prior: str = "transformer",
    channels: int = 64,
    layers: int = 4,
    kernel_size: int = 3,
    heads: int = 4,
) -> VQVAEPrior:
    """Stage two of the VQ-VAE: the vqvae built from ``stage_one`` (the first run's recorded spec,
    filled by ``simulacra train vqvae-prior --init RUN``; default: the vqvae preset), frozen, and
    an autoregressive ``prior`` over its code grid with a categorical output over the K codes:
    ``transformer`` (the default: width ``channels``, ``layers`` blocks, ``heads`` heads; each code
    is a token with its own embedding), ``gated-pixelcnn`` (``channels`` feature maps, ``layers``
    gated layers of ``kernel_size``) or ``pixelcnn`` (``layers`` residual blocks). The PixelCNNs
    read a code's index as a grey level, which suits ordered values, not the K unordered codes: on
    MNIST the Transformer reaches fewer bits per code in less CPU time (BENCHMARKS §27)."""
    spec = dict(stage_one) if stage_one is not None else {"name": "vqvae"}
    if spec.get("name") != "vqvae":
        raise ConfigError(f"vqvae-prior's stage_one must be a vqvae spec; found {spec.get('name')!r}")
    first = build_model(spec, info)
    if not isinstance(first, VQVAE):
        raise ConfigError(f"vqvae-prior's stage_one must build a VQ-VAE; found {type(first).__name__}")
    code_prior = _code_prior(
        prior,
        first.grid_shape,
        first.num_codes,
        positive_int(channels, "channels"),
        positive_int(layers, "layers"),
        positive_int(kernel_size, "kernel_size"),
        positive_int(heads, "heads"),
    )
    return VQVAEPrior(info, first, code_prior)
