"""Monotonic rational-quadratic splines: the elementwise map of neural spline flows.

Durkan et al. (2019), "Neural Spline Flows"; the spline is Gregory & Delbourgo (1982)'s
monotone rational-quadratic interpolant. K bins with knots (x_k, y_k), k = 0..K, increasing from
(−B, −B) to (B, B), and positive derivatives d_k at the knots. In bin k, with

    w_k = x_{k+1} − x_k,   h_k = y_{k+1} − y_k,   s_k = h_k / w_k,   ξ = (x − x_k) / w_k ∈ [0, 1],

the spline and its derivative are

    h(x)  = y_k + h_k [s_k ξ² + d_k ξ(1 − ξ)] / [s_k + (d_{k+1} + d_k − 2 s_k) ξ(1 − ξ)]
    h'(x) = s_k² [d_{k+1} ξ² + 2 s_k ξ(1 − ξ) + d_k (1 − ξ)²] / [s_k + (d_{k+1} + d_k − 2 s_k) ξ(1 − ξ)]²,

strictly increasing, with h(x_k) = y_k and h'(x_k) = d_k. Given y in bin k, ξ solves the quadratic
a ξ² + b ξ + c = 0 with

    a = h_k (s_k − d_k) + (y − y_k)(d_{k+1} + d_k − 2 s_k)
    b = h_k d_k − (y − y_k)(d_{k+1} + d_k − 2 s_k)
    c = −s_k (y − y_k),

whose root in [0, 1] is ξ = 2c / (−b − √(b² − 4ac)) = (−b + √(b² − 4ac)) / 2a. The first form
cancels when b < 0 (it happens in a wide, flat bin with d_k ≪ s_k ≪ d_{k+1}, near its right end),
the second when b > 0, so the inverse takes whichever is free of cancellation (Press et al.,
"Numerical Recipes", §5.6), and solves from the nearer end of the bin (see :func:`rq_inverse`).

Parameters θ (P = 3K − 1 per coordinate, as a conditioner outputs them): K unnormalised widths,
K unnormalised heights (softmax, each bin at least ``min_bin`` of 2B wide and high) and K − 1
unnormalised interior derivatives (softplus, at least ``min_derivative``). The boundary
derivatives are d_0 = d_K = 1, so the spline joins the identity tails outside [−B, B] with a
continuous value and derivative. θ = 0 gives equal bins and unit derivatives: the identity.

The helpers :func:`bin_edges`, :func:`knot_derivatives`, :func:`rq_forward` and
:func:`rq_inverse` are shared with the circular splines of :mod:`simulacra.flows.circular`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from simulacra.errors import ConfigError
from simulacra.flows.base import Elementwise


def check_spline(bins: int, min_bin: float, min_derivative: float) -> int:
    """``bins`` if the settings define a spline (K ≥ 1, 0 ≤ K·min_bin < 1, 0 ≤ min_derivative < 1).

    Raises:
        ConfigError: otherwise, saying which setting is out of range.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"a spline needs a positive integer number of bins; found {bins!r}")
    if not 0 <= min_bin * bins < 1:
        raise ConfigError(f"min_bin · bins must lie in [0, 1); found {min_bin} · {bins} = {min_bin * bins}")
    if not 0 <= min_derivative < 1:
        raise ConfigError(f"min_derivative must lie in [0, 1); found {min_derivative}")
    return bins


def bin_edges(raw: Tensor, low: float, high: float, min_bin: float) -> Tensor:
    """(…, K) unnormalised bin sizes -> (…, K + 1) edges from exactly ``low`` to exactly ``high``.

    size_k = (high − low) · [min_bin + (1 − K·min_bin) · softmax(raw)_k], so every bin is at least
    ``min_bin`` of the interval; the end edges are set exactly (a cumulative sum would round).
    """
    k = raw.shape[-1]
    # softmax written out (faster than torch.softmax for small K); the shift by the max does not
    # change the result, so it is detached (no gradient path through amax)
    e = torch.exp(raw - raw.detach().amax(dim=-1, keepdim=True))
    frac = e * ((1 - min_bin * k) / e.sum(dim=-1, keepdim=True)) + min_bin
    cum = F.pad(torch.cumsum(frac[..., :-1], dim=-1), (1, 0), value=0.0)  # (…, K): 0, c_1 … c_{K−1}
    return F.pad(low + (high - low) * cum, (0, 1), value=high)


def derivative_offset(min_derivative: float) -> float:
    """The shift u₀ with min_derivative + softplus(u₀) = 1, so that a zero parameter means d = 1."""
    return math.log(math.expm1(1.0 - min_derivative))


def knot_derivatives(raw: Tensor, min_derivative: float) -> Tensor:
    """d = min_derivative + softplus(u + u₀) elementwise, with u = 0 giving d = 1 (:func:`derivative_offset`)."""
    return F.softplus(raw + derivative_offset(min_derivative)) + min_derivative


def _bin_of(v: Tensor, edges: Tensor) -> Tensor:
    """Bin index k ∈ {0, …, K − 1} with edges_k ≤ v < edges_{k+1} (clamped to the end bins), shape of v.

    K − 1 comparisons with the interior edges: vectorised, no host synchronisation, and for the
    small K of spline flows faster than a binary search.
    """
    return (v[..., None] >= edges[..., 1:-1]).sum(dim=-1)


def _bin(idx: Tensor, knots: Tensor, dk: Tensor) -> tuple[Tensor, ...]:
    """x_k, x_{k+1}, y_k, y_{k+1}, d_k, d_{k+1} of bin ``idx`` (S), from knots (*S, 2, K + 1) and dk (*S, K + 1)."""
    # unbind rather than indexing: one stack in the backward pass instead of a zero-filled copy per value
    ii = torch.stack([idx, idx + 1], dim=-1)  # (*S, 2)
    xs, ys = knots.gather(-1, ii[..., None, :].expand(*idx.shape, 2, 2)).unbind(-2)  # (*S, 2) each
    x0, x1 = xs.unbind(-1)
    y0, y1 = ys.unbind(-1)
    d0, d1 = dk.gather(-1, ii).unbind(-1)
    return x0, x1, y0, y1, d0, d1


def rq_forward(x: Tensor, knots: Tensor, dk: Tensor) -> tuple[Tensor, Tensor]:
    """y = h(x) and log h'(x) (see the module docstring).

    Args:
        x: (S) inside [x_0, x_K] (values outside are clamped to the end bins' ends).
        knots: (*S, 2, K + 1), the x_k (row 0) and y_k (row 1).
        dk: (*S, K + 1), the derivatives d_k > 0.
    """
    x0, x1, y0, y1, d0, d1 = _bin(_bin_of(x, knots[..., 0, :]), knots, dk)
    w, h = x1 - x0, y1 - y0
    s = h / w
    # evaluate from the bin's nearer end (in the upper half: y_{k+1} − y as a function of
    # η = 1 − ξ, the same form with d_k and d_{k+1} swapped), so y is exact at both knots and
    # its rounding error near a knot is relative to the distance from it
    upper = 2 * (x - x0) > w
    eta = (torch.where(upper, x1 - x, x - x0) / w).clamp(0.0, 1.0)
    d_near, d_far = torch.where(upper, d1, d0), torch.where(upper, d0, d1)
    t = eta * (1 - eta)
    denom = s + (d0 + d1 - 2 * s) * t
    dy = h * (s * eta * eta + d_near * t) / denom
    numer = d_far * eta * eta + 2 * s * t + d_near * (1 - eta) * (1 - eta)
    return torch.where(upper, y1 - dy, y0 + dy), torch.log(s * s * numer / (denom * denom))


def rq_inverse(y: Tensor, knots: Tensor, dk: Tensor) -> tuple[Tensor, Tensor]:
    """x = h⁻¹(y) and log (h⁻¹)'(y) = −log h'(x), for y (S) inside [y_0, y_K] (arguments as :func:`rq_forward`).

    The quadratic is solved from the bin's nearer end: in the upper half of a bin, for η = 1 − ξ
    with y_{k+1} − y and d_k, d_{k+1} swapped (the spline read backwards has the same form). Near
    a knot where h' is small, the distance to the knot is then known to full precision, instead
    of being the difference of two numbers of the bin's height.
    """
    x0, x1, y0, y1, d0, d1 = _bin(_bin_of(y, knots[..., 1, :]), knots, dk)
    w, h = x1 - x0, y1 - y0
    s = h / w
    upper = 2 * (y - y0) > h
    dy = torch.where(upper, y1 - y, y - y0)  # distance from the nearer end, in [0, h/2]
    d_near, d_far = torch.where(upper, d1, d0), torch.where(upper, d0, d1)
    curv = d0 + d1 - 2 * s
    a = h * (s - d_near) + dy * curv
    b = h * d_near - dy * curv
    c = -s * dy
    # the root in [0, 1] is 2c / (−b − √Δ) = (−b + √Δ) / 2a; take the form without cancellation:
    # with q = −(b + sgn(b) √Δ) / 2, it is c / q when b ≥ 0 and q / a (a > 0 then) when b < 0
    sqrt_disc = (b * b - 4 * a * c).clamp_min(0.0).sqrt()
    pos = b >= 0
    q = -0.5 * (b + torch.where(pos, sqrt_disc, -sqrt_disc))
    eta = (torch.where(pos, c, q) / torch.where(pos, q, a)).clamp(0.0, 1.0)
    x = torch.where(upper, x1 - eta * w, x0 + eta * w)
    t = eta * (1 - eta)
    denom = s + curv * t
    numer = d_far * eta * eta + 2 * s * t + d_near * (1 - eta) * (1 - eta)
    return x, torch.log(denom * denom / (s * s * numer))


class RationalQuadraticSpline(Elementwise):
    """Monotonic rational-quadratic spline on [−B, B], identity outside (Durkan et al. 2019).

    y = h(x; θ) as in the module docstring for |x| ≤ B, y = x with log h' = 0 for |x| > B.

    Args:
        bins: K, the number of bins (P = 3K − 1 parameters per coordinate).
        bound: B, the half-width of the spline's interval.
        min_bin: smallest bin width and height, as a fraction of 2B.
        min_derivative: smallest knot derivative.

    ``forward(x, params)`` / ``inverse(y, params)``: x or y of any shape S, params (*S, 3K − 1),
    float32 or float64; return the image (S) and the elementwise log-derivative (S).
    """

    def __init__(
        self, bins: int = 8, bound: float = 5.0, min_bin: float = 1e-3, min_derivative: float = 1e-3
    ) -> None:
        super().__init__()
        self.bins = check_spline(bins, min_bin, min_derivative)
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not bound > 0:
            raise ConfigError(f"the spline's bound B must be a positive number; found {bound!r}")
        self.bound = float(bound)
        self.min_bin, self.min_derivative = float(min_bin), float(min_derivative)
        self.num_params = 3 * self.bins - 1

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}"

    def knots(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """(…, 3K − 1) parameters -> knots (…, 2, K + 1) (rows x_k, y_k) and d_k (…, K + 1), d_0 = d_K = 1."""
        k = self.bins
        if params.shape[-1] != self.num_params:
            raise ConfigError(
                f"a {k}-bin spline takes {self.num_params} parameters; found {params.shape[-1]}"
            )
        sizes, u = params.split([2 * k, k - 1], dim=-1)
        # widths and heights as (…, 2, K): one softmax and one cumulative sum for both
        knots = bin_edges(sizes.unflatten(-1, (2, k)), -self.bound, self.bound, self.min_bin)
        dk = F.pad(knot_derivatives(u, self.min_derivative), (1, 1), value=1.0)
        return knots, dk

    def _transform(self, v: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        inside = v.abs() <= self.bound
        knots, dk = self.knots(params)
        out, log_d = (rq_inverse if inverse else rq_forward)(v.clamp(-self.bound, self.bound), knots, dk)
        return torch.where(inside, out, v), torch.where(inside, log_d, 0.0)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x, params, inverse=False)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(y, params, inverse=True)
