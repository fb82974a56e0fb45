"""Autoregressive presets: nade, rnade, made, pixelcnn, gated-pixelcnn and transformer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from torch import nn

from simulacra.data.info import DataInfo
from simulacra.distributions.heads import head_for
from simulacra.errors import ConfigError, positive_int
from simulacra.models.autoregressive import Autoregressive
from simulacra.models.zoo._registry import ACCELERATOR_IMAGE_DEFAULTS, MODELS, PREVIOUS_DEFAULTS
from simulacra.nn.masked import MADE
from simulacra.nn.nade import NADE
from simulacra.nn.pixelcnn import GatedPixelCNN, PixelCNN
from simulacra.nn.transformer import CausalTransformer

# -- autoregressive -----------------------------------------------------------------------------
# Every preset is Autoregressive(info, net, head): the network (NADE, MADE, PixelCNN, gated
# PixelCNN, causal Transformer) carries the order; the head is the likelihood of one entry.


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
    net = NADE(info.dim, positive_int(hidden, "hidden"), head.params_per_dim, _order(info, order))
    return Autoregressive(info, net, head)


@MODELS.register("rnade", "RNADE (Uria et al. 2013): NADE with a mixture of Gaussians per real entry")
def rnade(
    info: DataInfo, hidden: int = 100, components: int = 10, activation: str = "relu", order: str = "natural"
) -> Autoregressive:
    """Real-valued NADE: p(x_d | x_<d) = Σ_k π_k N(μ_k, σ_k²), the parameters from NADE's shared
    hidden layer (ReLU, as Uria et al.)."""
    head = _entry_head(info, "gaussian-mixture", components=positive_int(components, "components"))
    net = NADE(info.dim, positive_int(hidden, "hidden"), head.params_per_dim, _order(info, order), activation)
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
    direct: bool = True,
) -> Autoregressive:
    """A MADE with ``num_masks`` (order, connectivity) masks over shared weights: one mask drawn
    per training step; log p(x) = log-mean-exp over the masks at test; mask 0 has the natural
    order. ``num_masks=1`` is a single fixed MADE. ``direct`` (default) adds masked
    input-to-output connections, as Germain et al.'s MNIST models: ~9 nats better on binarized
    MNIST at 500 hidden units (BENCHMARKS §12)."""
    head = _entry_head(info, likelihood)
    net = MADE(
        info.dim,
        [positive_int(h, "each hidden size") for h in hidden],
        head.params_per_dim,
        activation=activation,
        seed=seed,
        num_masks=positive_int(num_masks, "num_masks"),
        resample_order=resample_order,
        direct=bool(direct),
    )
    return Autoregressive(info, net, head)


@MODELS.register("pixelcnn", "PixelCNN (van den Oord et al. 2016): masked convolutions of type A and B")
def pixelcnn(
    info: DataInfo,
    channels: int = 32,
    blocks: int = 5,
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
    channels: int = 32,
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


# The signature's sizes suit a 2-core CPU (pixelcnn: BENCHMARKS §12, 92.9 nats on binarized MNIST
# in 41 minutes); on a GPU, the widths and depths of the PixelCNN papers' MNIST models (van den
# Oord et al. 2016: 128 feature maps, about 12-15 layers). Runs recorded before 2026-12-06 were
# built with 64 channels (and 6 blocks).
PREVIOUS_DEFAULTS["pixelcnn"] = {"channels": 64, "blocks": 6}
PREVIOUS_DEFAULTS["gated-pixelcnn"] = {"channels": 64}
ACCELERATOR_IMAGE_DEFAULTS["pixelcnn"] = {"channels": 128, "blocks": 12}
ACCELERATOR_IMAGE_DEFAULTS["gated-pixelcnn"] = {"channels": 128, "layers": 15}
