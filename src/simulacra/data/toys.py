"""Two-dimensional toy distributions (the FFJORD / neural-spline-flow test suite).

Each sampler ``f(n, generator=None) -> Tensor (n, 2)`` float32 draws ``n`` i.i.d. points; the
same seeded :class:`torch.Generator` gives the same points. Every distribution is defined
exactly in its docstring and lies (up to Gaussian tails) in [-4, 4]², so that a flow's density can
be plotted on one fixed square. For ``8gaussians`` and ``checkerboard`` the density and the
entropy are known: :func:`eight_gaussians_log_prob`, :func:`checkerboard_log_prob`,
:func:`eight_gaussians_entropy`, :func:`checkerboard_entropy` (nats), so that a fitted model's
KL divergence ``E_p[log p - log q] = -H(p) - E_p[log q]`` can be reported exactly.
``torus`` is a density of two angles in [-π, π) (for flows on the torus), with its exact density
:func:`torus_log_prob`.

The definitions follow Grathwohl et al. (2019, FFJORD)'s ``toy_data.py`` in spirit; points are
drawn i.i.d. (a random mixture component per point, not fixed equal shares).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from simulacra.errors import DataError, UnknownNameError

ToySampler = Callable[..., Tensor]

EIGHT_GAUSSIANS_RADIUS = 2.0 * math.sqrt(2.0)
EIGHT_GAUSSIANS_STD = math.sqrt(2.0) / 4.0


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"the number of toy samples must be an integer ≥ 0; got {n!r}")


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _randn(*shape: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _choice(n: int, k: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(0, k, (n,), generator=generator)


def moons(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Two interleaved half-moons.

    With probability 1/2 each, θ ~ U(0, π) and the point is ``u = (cos θ, sin θ)`` (upper moon)
    or ``u = (1 - cos θ, 1/2 - sin θ)`` (lower moon); then ``x = 2 (u + ε) + (-1, -0.2)`` with
    ε ~ N(0, 0.1² I). So each moon is a half circle of radius 2 blurred by N(0, 0.2² I);
    x lies in about [-3, 3] × [-1.8, 2.4].

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    lower = _choice(n, 2, generator).bool()
    theta = math.pi * _rand(n, generator)
    u = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)  # (n, 2)
    u_lower = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
    u = torch.where(lower[:, None], u_lower, u)
    x = 2 * (u + 0.1 * _randn(n, 2, generator=generator)) + torch.tensor([-1.0, -0.2], dtype=torch.float64)
    return x.float()


def eight_gaussians_means() -> Tensor:
    """The 8 means ``μ_k = 2√2 (cos kπ/4, sin kπ/4)`` of :func:`eight_gaussians`, (8, 2) float64."""
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    return EIGHT_GAUSSIANS_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (8, 2)


def eight_gaussians(n: int, generator: torch.Generator | None = None) -> Tensor:
    """An equal mixture of 8 isotropic Gaussians on a circle.

    ``p(x) = (1/8) Σ_k N(x; μ_k, σ² I)`` with ``μ_k = r (cos kπ/4, sin kπ/4)``, ``r = 2√2 ≈ 2.83``
    and ``σ = √2/4 ≈ 0.354`` (FFJORD's centres at radius 4 with std 0.5, divided by √2).
    Neighbouring modes are ``2 r sin(π/8) ≈ 6.1 σ`` apart. Entropy: :func:`eight_gaussians_entropy`
    (≈ 2.83158 nats).

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    k = _choice(n, 8, generator)
    x = eight_gaussians_means()[k] + EIGHT_GAUSSIANS_STD * _randn(n, 2, generator=generator)
    return x.float()


def eight_gaussians_log_prob(x: Tensor) -> Tensor:
    """log p(x) of :func:`eight_gaussians` in nats; ``x``: (..., 2) -> (...)."""
    x = x.to(torch.float64)
    d2 = ((x[..., None, :] - eight_gaussians_means().to(x.device)) ** 2).sum(-1)  # (..., 8)
    var = EIGHT_GAUSSIANS_STD**2
    log_components = -d2 / (2 * var) - math.log(2 * math.pi * var)
    return torch.logsumexp(log_components, dim=-1) - math.log(8)


@lru_cache(maxsize=1)
def eight_gaussians_entropy() -> float:
    """Differential entropy of :func:`eight_gaussians` in nats: 2.8315783605265.

    The mixture is invariant under rotation by π/4, which permutes its components, so
    ``H = -E_{x ~ N(μ_0, σ² I)} log p(x)``: a 2-D Gaussian expectation of a smooth function,
    computed by a 120 × 120-node Gauss-Hermite rule (60 and 200 nodes, and a midpoint rule on a
    0.005 grid over [-6, 6]², agree to 1e-11). It is ``log 8 + log(2πe σ²) - E[H(k | x)]``: the
    well-separated limit ``log 8 + log(πe/4) ≈ 2.83788`` minus 0.0063 nats for the slight overlap
    of neighbouring modes.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)  # ∫ f(z) e^{-z²/2} dz
    weights = weights / math.sqrt(2 * math.pi)  # E_{z ~ N(0, 1)} f(z) = Σ w_i f(z_i)
    z1, z2 = np.meshgrid(nodes, nodes, indexing="ij")
    w = torch.from_numpy(np.outer(weights, weights))
    points = torch.stack([torch.from_numpy(z1), torch.from_numpy(z2)], dim=-1)  # (120, 120, 2)
    x = eight_gaussians_means()[0] + EIGHT_GAUSSIANS_STD * points
    return float(-(w * eight_gaussians_log_prob(x)).sum())


def checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform on the 8 dark squares of a 4 × 4 checkerboard covering [-4, 4]².

    The squares have side 2; square ``[2i, 2i+2) × [2j, 2j+2)`` (i, j ∈ {-2, ..., 1}) is in the
    support iff ``i + j`` is even. So ``p(x) = 1/32`` on an area of 32 and 0 elsewhere;
    entropy ``log 32`` nats (:func:`checkerboard_entropy`).

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    x1 = 8 * _rand(n, generator) - 4
    i = torch.floor(x1 / 2)  # column of the square, in {-2, ..., 1}
    row = 2 * _choice(n, 2, generator).to(torch.float64) - 2 + torch.remainder(i, 2)  # j with i + j even
    x2 = 2 * (row + _rand(n, generator))
    return torch.stack([x1, x2], dim=1).float()


def checkerboard_log_prob(x: Tensor) -> Tensor:
    """log p(x) of :func:`checkerboard` in nats (``-log 32`` or ``-inf``); ``x``: (..., 2) -> (...)."""
    x = x.to(torch.float64)
    inside = ((x >= -4) & (x < 4)).all(-1)
    cell = torch.floor(x / 2)
    dark = torch.remainder(cell.sum(-1), 2) == 0
    out = torch.full(x.shape[:-1], -math.inf, dtype=torch.float64, device=x.device)
    return out.masked_fill(inside & dark, -math.log(32))


def checkerboard_entropy() -> float:
    """Differential entropy of :func:`checkerboard`: uniform on area 32, so ``log 32`` ≈ 3.46574 nats."""
    return math.log(32)


def pinwheel(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Five curved arms (a pinwheel).

    Arm ``k`` ~ U{0, ..., 4}; ``a ~ N(1, 0.3²)`` (radial), ``b ~ N(0, 0.1²)`` (tangential);
    ``φ = 2πk/5 + 0.25 e^a``; ``x = 2 R(φ) (a, b)`` with ``R(φ)`` the rotation by φ. The
    exponential twist bends each arm; x lies mostly within a radius of 4.

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    k = _choice(n, 5, generator).to(torch.float64)
    a = 1 + 0.3 * _randn(n, generator=generator)
    b = 0.1 * _randn(n, generator=generator)
    phi = 2 * math.pi * k / 5 + 0.25 * torch.exp(a)
    c, s = torch.cos(phi), torch.sin(phi)
    return (2 * torch.stack([c * a - s * b, s * a + c * b], dim=1)).float()


RING_RADII = (0.75, 1.5, 2.25, 3.0)


def rings(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Four concentric rings.

    Ring ``k`` ~ U{1, 2, 3, 4} with radius ``0.75 k``, angle θ ~ U(0, 2π),
    ``x = 0.75 k (cos θ, sin θ) + ε`` with ε ~ N(0, 0.08² I).

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    radius = torch.tensor(RING_RADII, dtype=torch.float64)[_choice(n, 4, generator)]
    theta = 2 * math.pi * _rand(n, generator)
    x = radius[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    return (x + 0.08 * _randn(n, 2, generator=generator)).float()


def swissroll(n: int, generator: torch.Generator | None = None) -> Tensor:
    """A noisy spiral: the Swiss roll seen from above.

    scikit-learn's ``make_swiss_roll(noise=1)``, axes 0 and 2, divided by 5:
    ``t = 1.5π (1 + 2u)`` with u ~ U(0, 1); ``x = (t cos t + ε_1, t sin t + ε_2) / 5`` with
    ε ~ N(0, I). The spiral reaches a radius of 4.5π/5 ≈ 2.83 (plus noise of std 0.2).

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    t = 1.5 * math.pi * (1 + 2 * _rand(n, generator))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + _randn(n, 2, generator=generator)
    return (x / 5).float()


TORUS_MEANS = ((-2.0, 1.0), (1.0, 2.8), (3.0, -1.5), (0.0, -0.5))
TORUS_CONCENTRATIONS = ((4.0, 4.0), (6.0, 2.0), (3.0, 8.0), (10.0, 10.0))


def torus(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Angles on the torus: an equal mixture of 4 products of von Mises densities.

    ``p(θ) = (1/4) Σ_k Π_{i=1,2} exp(κ_ki cos(θ_i − μ_ki)) / (2π I₀(κ_ki))`` on [-π, π)² with the
    means μ_k = (-2, 1), (1, 2.8), (3, -1.5), (0, -0.5) and concentrations κ_k = (4, 4), (6, 2),
    (3, 8), (10, 10) (:data:`TORUS_MEANS`, :data:`TORUS_CONCENTRATIONS`); the second and third
    components wrap around θ₂ = ±π and θ₁ = ±π. Angles are radians wrapped to [-π, π) in float32
    (the density :func:`torus_log_prob`). The von Mises draws are NumPy's, seeded from ``generator``.

    Returns:
        (n, 2) float32 in [-π, π).
    """
    _check_n(n)
    k = _choice(n, len(TORUS_MEANS), generator)
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    rng = np.random.default_rng(seed)
    mu = torch.tensor(TORUS_MEANS, dtype=torch.float64)[k]
    kappa = torch.tensor(TORUS_CONCENTRATIONS, dtype=torch.float64)[k]
    offsets = torch.from_numpy(rng.vonmises(0.0, kappa.numpy()))  # (n, 2) in [-π, π]
    theta = torch.remainder(mu + offsets + math.pi, 2 * math.pi) - math.pi
    theta = theta.float()
    return torch.where(theta >= math.pi, theta - 2 * math.pi, theta)  # rounding to float32 can reach π


def torus_log_prob(theta: Tensor) -> Tensor:
    """log p(θ) of :func:`torus` in nats (w.r.t. the area on [-π, π)²); ``theta``: (..., 2) -> (...)."""
    theta = theta.to(torch.float64)
    mu = torch.tensor(TORUS_MEANS, dtype=torch.float64, device=theta.device)  # (4, 2)
    kappa = torch.tensor(TORUS_CONCENTRATIONS, dtype=torch.float64, device=theta.device)
    log_norm = math.log(2 * math.pi) + torch.log(torch.special.i0e(kappa)) + kappa  # log 2π I₀(κ)
    log_components = (kappa * torch.cos(theta[..., None, :] - mu) - log_norm).sum(-1)  # (..., 4)
    return torch.logsumexp(log_components, dim=-1) - math.log(len(TORUS_MEANS))


TOYS: dict[str, ToySampler] = {
    "moons": moons,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
    "rings": rings,
    "swissroll": swissroll,
    "torus": torus,
}

_ENTROPIES: dict[str, Callable[[], float]] = {
    "8gaussians": eight_gaussians_entropy,
    "checkerboard": checkerboard_entropy,
}


def entropy(name: str) -> float:
    """Differential entropy in nats of the toy ``name`` (``8gaussians`` or ``checkerboard``)."""
    if name not in _ENTROPIES:
        raise UnknownNameError(
            f"no closed-form entropy for toy {name!r}; available for: {', '.join(sorted(_ENTROPIES))}"
        )
    return _ENTROPIES[name]()
