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
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.data.info import DataInfo
from simulacra.data.transforms import dequantize, discrete_levels, quantize
from simulacra.errors import ConfigError
from simulacra.flows.base import Affine, Transform, sum_event
from simulacra.flows.coupling import Coupling, alternating_mask, checkerboard_mask
from simulacra.nn.conv import CouplingConvNet
from simulacra.nn.mlp import MLP
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
    levels = discrete_levels(info)
    if levels is None:
        raise ConfigError(f"dequantization needs discrete data (DataInfo.levels >= 2); found {info.levels}")
    return levels


class _BinDequantizer(nn.Module):
    """What every dequantizer shares: L levels, the bins [k/L, (k + 1)/L), ``quantize`` and the logit step."""

    def __init__(self, info: DataInfo, alpha: float | None) -> None:
        super().__init__()
        self.levels = levels_of(info)
        self.event_dims = len(info.event_shape)
        self.dim = info.dim
        self.alpha = alpha

    def bins(self, x: Tensor) -> Tensor:
        """x on the grid k/(L − 1) -> its integer level k (as floats), same shape."""
        return torch.round(x * (self.levels - 1))

    def quantize(self, y: Tensor) -> Tensor:
        """y in [0, 1) -> the grid value k/(L − 1) of its bin, k = ⌊L y⌋ clamped to 0..L − 1."""
        return quantize(y, self.levels)

    def preprocessing(self) -> list[Transform]:
        """Transforms to place first in the flow (the logit step), in the normalizing order."""
        return [] if self.alpha is None else [Logit(self.alpha, self.event_dims)]


class UniformDequantizer(_BinDequantizer):
    """y = (k + u) / L, u ~ U[0, 1)^D: log q(y | k) = D log L; ``quantize`` maps y back to x.

    Args:
        info: the data's info (levels L, event shape).
        alpha: the logit pre-processing's α (see :class:`Logit`); None for no logit step.
    """

    name = "uniform dequantization"

    def __init__(self, info: DataInfo, alpha: float | None = 0.05) -> None:
        super().__init__(info, alpha)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, *event) on the grid k/(L − 1) -> (y (B, *event) in [0, 1), log q(y | x) (B,))."""
        y = dequantize(x, self.levels)
        log_q = x.new_full((x.shape[0],), self.dim * math.log(self.levels))
        return y, log_q


class VariationalDequantizer(_BinDequantizer):
    """y = (k + u) / L with u ~ q(u | x) a learned conditional flow (Ho et al. 2019, Flow++ §3.1).

        ε ~ N(0, I)^D,   v = g(ε; x),   u = σ(v) ∈ (0, 1)^D,
        log q(u | x) = log N(ε; 0, I) − log|det ∂g/∂ε| − Σ_i log σ'(v_i),   σ'(v) = σ(v) σ(−v),
        log q(y | x) = log q(u | x) + D log L                           (y = (k + u)/L),

    g a stack of affine couplings whose conditioners read the data (scaled to 2x − 1 ∈ [−1, 1]):
    convolutional (:class:`~simulacra.nn.conv.CouplingConvNet` on [ε ⊙ b, 2x − 1]) with
    alternating checkerboard masks for images, MLPs on [ε_A, 2x − 1] with alternating masks for
    vectors. log q is exact, so E_q[log p(y) − log q(y | x)] ≤ log P(x), with equality when q(·|x)
    is p restricted to x's bin; a better q than the uniform one tightens the bound. The flow's
    context (labels) is not used by q.

    Args:
        info: the data's info (levels L, event shape).
        alpha: the logit pre-processing's α (see :class:`Logit`); None for no logit step.
        couplings: number of coupling layers in g.
        hidden: hidden widths of each conditioner (channels for images).
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
    """

    name = "variational dequantization"

    def __init__(
        self,
        info: DataInfo,
        alpha: float | None = 0.05,
        couplings: int = 4,
        hidden: Sequence[int] = (32, 32),
        activation: str = "relu",
    ) -> None:
        super().__init__(info, alpha)
        if isinstance(couplings, bool) or not isinstance(couplings, int) or couplings < 1:
            raise ConfigError(f"variational dequantization needs couplings >= 1; found {couplings!r}")
        shape = tuple(info.event_shape)
        layers: list[Transform] = []
        for i in range(couplings):
            if len(shape) == 3:
                channels = shape[0]
                net = CouplingConvNet(2 * channels, 2 * channels, hidden, activation)
                layers.append(Coupling(checkerboard_mask(shape, i % 2), net, Affine()))
            elif len(shape) == 1:
                mask = alternating_mask(shape[0], i % 2)
                n_a, n_b = int(mask.sum()), int((~mask).sum())
                layers.append(Coupling(mask, MLP(n_a + shape[0], hidden, 2 * n_b, activation), Affine()))
            else:
                raise ConfigError(
                    f"variational dequantization needs vectors (D,) or images (C, H, W); found {shape}"
                )
        self.layers = nn.ModuleList(layers)

    def _context(self, x: Tensor) -> Tensor:
        """The data as the conditioners see them: 2k/(L − 1) − 1 ∈ [−1, 1], flattened for vectors."""
        return 2.0 * self.bins(x) / (self.levels - 1) - 1.0

    def _log_normal(self, eps: Tensor) -> Tensor:
        return sum_event(-0.5 * eps * eps, self.event_dims) - 0.5 * self.dim * math.log(2 * math.pi)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, *event) on the grid k/(L − 1) -> (y ~ q(y | x) in (0, 1), log q(y | x) (B,)), reparameterized."""
        s = self._context(x)
        eps = torch.randn_like(x)
        v, log_det = eps, x.new_zeros(x.shape[0])
        for layer in self.layers:
            v, ladj = layer(v, s)
            log_det = log_det + ladj
        log_dsigmoid = F.logsigmoid(v) + F.logsigmoid(-v)
        log_q = self._log_normal(eps) - log_det - sum_event(log_dsigmoid, self.event_dims)
        y = (self.bins(x) + torch.sigmoid(v)) / self.levels
        return y, log_q + self.dim * math.log(self.levels)

    def log_density(self, y: Tensor, x: Tensor) -> Tensor:
        """log q(y | x) in nats (B,) at given y (B, *event) inside x's bin (the inverse pass of g)."""
        k = self.bins(x)
        u = y * self.levels - k
        log_u, log_1mu = torch.log(u), torch.log1p(-u)
        v = log_u - log_1mu
        s = self._context(x)
        eps, log_det = v, y.new_zeros(y.shape[0])
        for layer in reversed(self.layers):
            eps, ladj = layer.inverse(eps, s)
            log_det = log_det + ladj
        log_q = self._log_normal(eps) + log_det - sum_event(log_u + log_1mu, self.event_dims)
        return log_q + self.dim * math.log(self.levels)


DEQUANTIZERS: Registry[Callable[..., nn.Module]] = Registry("dequantization")
DEQUANTIZERS.register("uniform", "y = (k + u)/L, u ~ U[0,1)^D, then a logit step (RealNVP)")(
    UniformDequantizer
)
DEQUANTIZERS.register(
    "variational", "y = (k + u)/L, u ~ q(u | x) a conditional flow (Flow++), then a logit step"
)(VariationalDequantizer)
