"""Flows on the circle S¹ and the torus T^D = S¹ × … × S¹, with angles represented in [−π, π).

Rezende et al. (2020), "Normalizing flows on tori and spheres", §2–3:

* :class:`CircularSpline`: a circle diffeomorphism θ ↦ wrap(h(θ) + φ). h is a rational-quadratic
  spline (:mod:`simulacra.flows.splines`) on [−π, π] with knots from (−π, −π) to (π, π) and equal
  derivatives at the two ends, d_0 = d_K, so h(−π) = −π, h(π) = π and h' is continuous where the
  circle closes; the rotation by φ then moves the fixed point −π ≡ π. With
  wrap(t) = ((t + π) mod 2π) − π, the density changes by h'(θ) alone (a rotation preserves arc
  length): log|dθ'/dθ| = log h'(θ).
* :class:`AngleFeatures`: a conditioner wrapper that reads angles through (cos θ, sin θ), so that
  the parameters it outputs are continuous (periodic) functions on the circle; a coupling of
  circular splines is then a diffeomorphism of the torus (couple angle 1 on angle 2 and back).
* :class:`UniformCircle`: the base density, uniform on [−π, π)^D, log p = −D log 2π.
* :class:`AngleDomain`: an identity transform that checks that data are angles in [−π, π).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Uniform

from simulacra.distributions.lazy import LazyDistribution
from simulacra.distributions.standard import batch_shape_of
from simulacra.errors import ConfigError, DataError
from simulacra.flows.base import Elementwise, Transform
from simulacra.flows.splines import bin_edges, check_spline, knot_derivatives, rq_forward, rq_inverse

TWO_PI = 2 * math.pi


def wrap(theta: Tensor) -> Tensor:
    """((θ + π) mod 2π) − π: the representative of θ in [−π, π), exactly, in θ's dtype.

    Rounding can make the remainder equal 2π (for θ + π just below a multiple of 2π), which would
    give π; that value is mapped to −π, the same point on the circle.
    """
    out = torch.remainder(theta + math.pi, TWO_PI) - math.pi
    return torch.where(out >= math.pi, out - TWO_PI, out)


class CircularSpline(Elementwise):
    """θ' = wrap(h(wrap(θ)) + φ): a rational-quadratic circle diffeomorphism (Rezende et al. 2020).

    Parameters per angle (P = 3K + 1): K unnormalised widths, K unnormalised heights, K
    unconstrained knot derivatives u_0 … u_{K−1} (d_K = d_0, so h' is continuous across the
    point −π ≡ π), and the rotation φ (radians; any real, taken mod 2π). Zero parameters give
    the identity. log|dθ'/dθ| = log h'(θ).

    Inputs outside [−π, π) are read modulo 2π (the map is one of the circle); outputs lie in
    [−π, π).

    Args:
        bins: K.
        min_bin: smallest bin width and height as a fraction of 2π.
        min_derivative: smallest knot derivative.
    """

    def __init__(self, bins: int = 8, min_bin: float = 1e-3, min_derivative: float = 1e-3) -> None:
        super().__init__()
        self.bins = check_spline(bins, min_bin, min_derivative)
        self.min_bin, self.min_derivative = float(min_bin), float(min_derivative)
        self.num_params = 3 * self.bins + 1

    def extra_repr(self) -> str:
        return f"bins={self.bins}"

    def knots(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(…, 3K + 1) parameters -> knots (…, 2, K + 1) on [−π, π], d_k (…, K + 1) with d_K = d_0, and φ (…)."""
        k = self.bins
        if params.shape[-1] != self.num_params:
            raise ConfigError(
                f"a {k}-bin circular spline takes {self.num_params} parameters; found {params.shape[-1]}"
            )
        sizes, u, phi = params.split([2 * k, k, 1], dim=-1)
        knots = bin_edges(sizes.unflatten(-1, (2, k)), -math.pi, math.pi, self.min_bin)
        d = knot_derivatives(u, self.min_derivative)
        return knots, torch.cat([d, d[..., :1]], dim=-1), phi.squeeze(-1)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        knots, dk, phi = self.knots(params)
        y, log_d = rq_forward(wrap(x), knots, dk)
        return wrap(y + phi), log_d

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        knots, dk, phi = self.knots(params)
        x, log_d = rq_inverse(wrap(y - phi), knots, dk)
        return wrap(x), log_d  # x = π (rounding just below it) is the point −π


class AngleFeatures(nn.Module):
    """Conditioner (B, A + C_c) -> net([cos θ, sin θ, c]): the first ``angles`` columns are angles.

    A coupling passes [θ_A, c] to its conditioner; reading θ_A through (cos, sin) makes the
    spline parameters periodic in θ_A, so the coupling is continuous on the torus.

    Args:
        angles: A, how many leading input columns are angles.
        net: module (B, 2A + C_c) -> (B, out).
    """

    def __init__(self, angles: int, net: nn.Module) -> None:
        super().__init__()
        self.angles = int(angles)
        self.net = net

    def forward(self, h: Tensor) -> Tensor:
        theta, rest = h[:, : self.angles], h[:, self.angles :]
        return self.net(torch.cat([torch.cos(theta), torch.sin(theta), rest], dim=-1))


class UniformCircle(LazyDistribution):
    """p(θ) uniform on [−π, π)^D (the torus T^D), log p(θ) = −D log 2π; −∞ outside.

    ``forward(c=None, n=None)`` returns the distribution with batch shape ``(len(c),)`` when a
    context is given, ``(n,)`` when ``n`` is, else ``()``, like
    :class:`simulacra.distributions.standard.StandardNormal`. The distribution follows the module's
    device and dtype (those of an empty buffer), with ±π rounded in that dtype.

    Args:
        dim: D, or the event shape.
    """

    def __init__(self, dim: int | Sequence[int]) -> None:
        super().__init__()
        self.event_shape = (int(dim),) if isinstance(dim, int) else tuple(int(s) for s in dim)
        self.register_buffer("anchor", torch.empty(0), persistent=False)

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        shape = (*batch_shape_of(c, n), *self.event_shape)
        low, high = self.anchor.new_full((), -math.pi), self.anchor.new_full((), math.pi)
        base = Uniform(low.expand(shape), high.expand(shape), validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)


class AngleDomain(Transform):
    """Identity on angles, z = x (log|det| = 0), that raises a DataError unless x ∈ [−π, π).

    The first transform of a flow on the torus: data given in degrees, in [0, 2π) or unwrapped
    are caught with a message instead of being silently given a wrong density. The check reads
    one boolean back from the device per call, in the density direction only.
    """

    def __init__(self, event_dims: int = 1) -> None:
        super().__init__()
        self.event_dims = int(event_dims)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        outside = (x < -math.pi) | (x >= math.pi) | torch.isnan(x)
        if bool(outside.any()):
            bad = x[outside]
            raise DataError(
                f"a flow on the torus expects angles in radians in [-π, π); found {bad.numel()} value(s) "
                f"outside, e.g. {float(bad[0]):.6g} (wrap them with ((θ + π) mod 2π) − π)"
            )
        return x, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z, z.new_zeros(z.shape[0])
