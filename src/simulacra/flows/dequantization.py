"""Dequantization and the logit pre-processing of discrete data (RealNVP §4.1, Glow, Flow++).

Data with L levels are stored as x = k / (L − 1), k ∈ {0, …, L − 1}^D. A continuous density p on
y ∈ [0, 1)^D scores the discrete k through any q(y | k) supported on k's bin [k/L, (k + 1)/L)^D:

    log P(k) = log ∫_bin p(y) dy ≥ E_{q(y|k)}[log p(y) − log q(y | k)]        (Jensen)

Uniform dequantization, y = (k + u)/L with u ~ U[0, 1)^D, has log q = D log L; variational
dequantization (Ho et al. 2019, Flow++) learns q. The bound is in nats of the *discrete* data,
so bits/dim = −bound / (D ln 2) with no further offset.

The logit pre-processing s = α + (1 − 2α) y, z = log s − log(1 − s) maps [0, 1) to the real
line; it is a :class:`Transform` placed first in the flow, so its Jacobian is counted in log p.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError
from simulacra.flows.base import Transform, sum_event
from simulacra.registry import Registry


class Logit(Transform):
    """z = logit(α + (1 − 2α) y) for y in [0, 1]^event (RealNVP §4.1, α = 0.05; Glow uses α ≈ 1e-6).

    log|det ∂z/∂y| = Σ [log(1 − 2α) − log s − log(1 − s)],  s = α + (1 − 2α) y.
    """

    def __init__(self, alpha: float = 0.05, event_dims: int = 1) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ConfigError(f"logit alpha must be in [0, 0.5); found {alpha}")
        self.alpha = float(alpha)
        self.event_dims = int(event_dims)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = self.alpha + (1.0 - 2.0 * self.alpha) * x
        log_s, log_1ms = torch.log(s), torch.log1p(-s)
        ladj = math.log(1.0 - 2.0 * self.alpha) - log_s - log_1ms
        return log_s - log_1ms, sum_event(ladj, self.event_dims)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_s, log_1ms = F.logsigmoid(z), F.logsigmoid(-z)
        x = (torch.sigmoid(z) - self.alpha) / (1.0 - 2.0 * self.alpha)
        ladj = log_s + log_1ms - math.log(1.0 - 2.0 * self.alpha)
        return x, sum_event(ladj, self.event_dims)


def levels_of(info: DataInfo) -> int:
    """L, the number of values per dimension of discrete data (2 for binary data)."""
    if info.support == "binary":
        return 2
    if info.levels is None or info.levels < 2:
        raise ConfigError(f"dequantization needs discrete data (DataInfo.levels >= 2); found {info.levels}")
    return int(info.levels)


class UniformDequantizer(nn.Module):
    """y = (k + u) / L, u ~ U[0, 1)^D: log q(y | k) = D log L; ``quantize`` maps y back to x.

    Args:
        info: the data's info (levels L, event shape).
        alpha: the logit pre-processing's α (see :class:`Logit`); None for no logit step.
    """

    name = "uniform dequantization"

    def __init__(self, info: DataInfo, alpha: float | None = 0.05) -> None:
        super().__init__()
        self.levels = levels_of(info)
        self.event_dims = len(info.event_shape)
        self.dim = info.dim
        self.alpha = alpha

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, *event) on the grid k/(L − 1) -> (y (B, *event) in [0, 1), log q(y | x) (B,))."""
        k = torch.round(x * (self.levels - 1))
        y = (k + torch.rand_like(x)) / self.levels
        log_q = x.new_full((x.shape[0],), self.dim * math.log(self.levels))
        return y, log_q

    def quantize(self, y: Tensor) -> Tensor:
        """y in [0, 1) -> the grid value k/(L − 1) of its bin, k = ⌊L y⌋ clamped to 0..L − 1."""
        k = torch.clamp(torch.floor(y * self.levels), 0, self.levels - 1)
        return k / (self.levels - 1)

    def preprocessing(self) -> list[Transform]:
        """Transforms to place first in the flow (the logit step), in the normalizing order."""
        return [] if self.alpha is None else [Logit(self.alpha, self.event_dims)]


DEQUANTIZERS: Registry[Callable[..., nn.Module]] = Registry("dequantization")
DEQUANTIZERS.register("uniform", "y = (k + u)/L, u ~ U[0,1)^D, then a logit step (RealNVP)")(
    UniformDequantizer
)
