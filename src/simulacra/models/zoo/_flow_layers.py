"""Stacks of flow layers shared by the flow presets, the VAE's flow prior and IAF posterior, and
:mod:`simulacra.tasks.posterior`: MADE layers (MAF, IAF, NSF) and vector couplings (RealNVP)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simulacra.data.info import DataInfo
from simulacra.flows.autoregressive import MaskedAutoregressive
from simulacra.flows.base import Elementwise, Inverse, Transform
from simulacra.flows.coupling import Coupling, alternating_mask
from simulacra.flows.permutation import BatchNorm
from simulacra.models.zoo._common import _positive_int
from simulacra.nn.masked import MADE
from simulacra.nn.mlp import MLP


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
