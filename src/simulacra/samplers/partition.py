"""Log-partition-function estimators for unnormalised densities f(x) = exp(−E(x)).

Z = ∫ f(x) dx, in nats as log Z. An energy-based model's likelihood log p(x) = log f(x) − log Z
needs it; nothing else in an EBM gives it.

**Annealed importance sampling** (Neal 2001, "Annealed importance sampling", Statistics and
Computing 11). Bridge a normalised base p₀ (which we can sample) to f along the geometric path

    log f_β(x) = (1 − β) log p₀(x) + β log f(x),   0 = β₀ < β₁ < … < β_{T−1} = 1,

with Z_{β₀} = 1 and Z_{β_{T−1}} = Z. Draw x₀ ~ p₀, and for t = 1, …, T−1 accumulate the weight
and move the chain with a kernel that leaves f_{β_t} invariant:

    log w += log f_{β_t}(x_{t−1}) − log f_{β_{t−1}}(x_{t−1}) = (β_t − β_{t−1}) (log f(x_{t−1}) − log p₀(x_{t−1})),
    x_t ~ K_t(x_{t−1}, ·).

On the extended space of the whole trajectory w is an importance weight, so E[w] = Z exactly,
for any number of distributions and any invariant kernels (they only change the variance).
With n independent chains Ẑ = (1/n) Σᵢ wᵢ, log Ẑ = logmeanexp(log w).

*A stochastic lower bound.* Ẑ is unbiased for Z, so by Jensen's inequality
E[log Ẑ] ≤ log E[Ẑ] = log Z: log Ẑ underestimates log Z on average (by ≈ Var(Ẑ)/(2Z²), small
once the weights are well balanced), and Markov's inequality gives P(log Ẑ > log Z + a) ≤ e^{−a}
(Grosse, Maddison & Salakhutdinov 2013; Burda, Grosse & Salakhutdinov 2015).

*Standard error.* By the delta method, Var(log Ẑ) ≈ Var(w) / (n E[w]²), estimated by
sd(w) / (√n · mean(w)), computed on the max-normalised weights w̃ = exp(log w − max log w)
(the ratio does not change). The effective sample size of the final weights is
ESS = (Σ w̃)² / Σ w̃², between 1 (one chain carries everything: distrust the estimate and the
standard error alike) and n.

Schedules: ``"linear"`` β_t = t/(T−1), and ``"sigmoid"`` (Grosse, Maddison & Salakhutdinov
2013, "Annealing between distributions by averaging moments"): β̃_t = σ(δ (2t/(T−1) − 1)),
rescaled to β_t = (β̃_t − β̃_0)/(β̃_{T−1} − β̃_0) so that it runs exactly from 0 to 1; it spends
more distributions near both ends, where log f_β changes fastest.

Bounded bases. A base uniform on a box (images in [−1, 1]) has log p₀ = −∞ outside it, so the
chains must stay inside: give the kernel the same ``bounds`` (MALA and HMC then reject moves out
of the box, exact for every f_β, which all live on the box). The default kernel takes the box
from ``base.support`` when the support is a box with the same (lo, hi) in every coordinate.

**Quadrature.** For 1-D and 2-D densities, the midpoint rule on a box:
log Z ≈ log Σ_cells f(centre) · cell volume, a logsumexp in float64; exact up to the
discretisation (and the mass outside the box), the reference for testing the estimators above.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError, DataError
from simulacra.samplers.mcmc import MALA, Bounds, Kernel, LogDensity, MCMCState, check_bounds, value_and_grad

SCHEDULES = ("linear", "sigmoid")

DEFAULT_STEP_SIZE = 0.05
"""The step of the default MALA kernel of :func:`ais_log_z`, for targets of unit scale."""


class LogZEstimate(NamedTuple):
    """An estimate of log Z, with the estimator named and its uncertainty."""

    log_z: float
    """log Ẑ, nats."""
    stderr: float
    """Standard error of log Ẑ, nats (delta method; 0.0 for quadrature)."""
    method: str
    """The estimator, e.g. "AIS, 1000 distributions, 256 chains, MALA" or "quadrature, 512×512 grid"."""
    num_distributions: int
    """Distributions on the annealing path, both ends included (0 for quadrature)."""
    num_chains: int
    """Independent AIS chains (the number of grid points for quadrature)."""
    ess: float
    """Effective sample size (Σw)²/Σw² of the final AIS weights (nan for quadrature)."""
    acceptance_rate: float
    """Mean acceptance probability of the kernel's moves (nan for quadrature, or with no moves)."""


def annealing_schedule(
    num_distributions: int, schedule: str = "sigmoid", *, sharpness: float = 4.0
) -> Tensor:
    """Inverse temperatures 0 = β₀ < … < β_{T−1} = 1, (T,) float64.

    Args:
        num_distributions: T ≥ 2.
        schedule: ``"linear"`` or ``"sigmoid"`` (Grosse et al. 2013, rescaled to exactly [0, 1]).
        sharpness: δ of the sigmoid schedule, σ(δ (2t/(T−1) − 1)); larger puts more
            distributions near β = 0 and β = 1.
    """
    if isinstance(num_distributions, bool) or not isinstance(num_distributions, int) or num_distributions < 2:
        raise ConfigError(
            f"annealing needs num_distributions >= 2 (base and target); found {num_distributions!r}"
        )
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown annealing schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    t = torch.linspace(0.0, 1.0, num_distributions, dtype=torch.float64)
    if schedule == "linear":
        betas = t
    else:
        if not (sharpness > 0 and math.isfinite(sharpness)):
            raise ConfigError(
                f"the sigmoid schedule's sharpness must be positive and finite; found {sharpness}"
            )
        s = torch.sigmoid(sharpness * (2.0 * t - 1.0))
        betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0  # exactly, whatever the rounding
    return betas


def _support_box(base: Distribution) -> Bounds | None:
    """(lo, hi) when ``base.support`` is a box with the same interval in every coordinate."""
    support = base.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if not isinstance(support, (constraints.interval, constraints.half_open_interval)):
        return None
    lo, hi = torch.as_tensor(support.lower_bound), torch.as_tensor(support.upper_bound)
    if lo.numel() == 0 or bool((lo != lo.flatten()[0]).any()) or bool((hi != hi.flatten()[0]).any()):
        return None
    return float(lo.flatten()[0]), float(hi.flatten()[0])


def _base_log_prob(base: Distribution, x: Tensor) -> Tensor:
    """log p₀(x) (B,), −∞ (not an error) for rows outside the base's support."""
    inside = base.support.check(x).reshape(x.shape[0], -1).all(1)  # (B,)
    if bool(inside.all()):
        return base.log_prob(x)
    keep = inside.reshape(-1, *([1] * (x.dim() - 1)))
    safe = torch.where(keep, x, base.mean.expand_as(x))  # a point inside the support
    return torch.where(inside, base.log_prob(safe), -math.inf)


class _Parts(NamedTuple):
    """log p₀ and log f, with their gradients, at B positions."""

    x: Tensor  # (B, *event)
    log_base: Tensor  # (B,)
    log_f: Tensor  # (B,)
    grad_base: Tensor  # (B, *event)
    grad_f: Tensor  # (B, *event)

    def where(self, rows: Tensor, other: _Parts) -> _Parts:
        """These parts where ``rows`` (B,) is true, ``other``'s elsewhere."""
        out = []
        for a, b in zip(self, other):
            mask = rows.reshape(-1, *([1] * (a.dim() - 1)))
            out.append(torch.where(mask, a, b))
        return _Parts(*out)


class _Combined(torch.autograd.Function):
    """A value (B,) whose gradient with respect to x is a precomputed ``grad`` (B, *event)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, value: Tensor, grad: Tensor) -> Tensor:
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, upstream: Tensor) -> tuple[Tensor, None, None]:
        (grad,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return upstream.reshape(-1, *([1] * (grad.dim() - 1))) * grad, None, None


class _GeometricPath:
    """log f_β(x) = (1 − β) log p₀(x) + β log f(x) as a kernel's ``log_prob``.

    Each call evaluates log p₀ and log f (and their gradients) once and remembers them, so that
    the AIS weight increment and the state at the next β reuse them instead of evaluating
    log f again."""

    def __init__(self, log_f: LogDensity, base: Distribution) -> None:
        self.log_f = log_f
        self.base = base
        self.beta = 0.0
        self.last: _Parts | None = None

    def parts(self, x: Tensor) -> _Parts:
        log_base, grad_base = value_and_grad(lambda y: _base_log_prob(self.base, y), x)
        log_f, grad_f = value_and_grad(self.log_f, x)
        return _Parts(x.detach(), log_base, log_f, grad_base, grad_f)

    def combine(self, p: _Parts) -> tuple[Tensor, Tensor]:
        """(log f_β, ∇ log f_β) from the parts; a zero weight on −∞ gives 0, not NaN."""
        b = self.beta
        value = (1.0 - b) * p.log_base + b * p.log_f if 0.0 < b < 1.0 else (p.log_f if b else p.log_base)
        return value, (1.0 - b) * p.grad_base + b * p.grad_f

    def __call__(self, x: Tensor) -> Tensor:
        self.last = p = self.parts(x)
        value, grad = self.combine(p)
        return _Combined.apply(x, value, grad)

    def state(self, p: _Parts) -> MCMCState:
        """A fresh kernel state at the parts' positions for the current β."""
        value, grad = self.combine(p)
        ones = torch.ones_like(value)
        return MCMCState(p.x, value, grad, ones, ones, 0)

    def follow(self, before: _Parts, state: MCMCState) -> _Parts:
        """The parts at ``state.x`` after one kernel step from ``before``: the last evaluation's
        where the chain took it, ``before`` where it stayed, evaluated afresh otherwise."""
        rows = state.x.shape[0]

        def same(a: Tensor, b: Tensor) -> Tensor:
            return (a == b).reshape(rows, -1).all(1)  # (B,)

        last = self.last
        if last is not None and last.x.shape == state.x.shape:
            moved = same(state.x, last.x)
            parts = last.where(moved, before)
        else:
            moved, parts = torch.zeros_like(state.log_prob, dtype=torch.bool), before
        stale = ~(moved | same(state.x, before.x))
        if bool(stale.any()):  # a kernel whose final position is neither: evaluate there
            fresh = self.parts(state.x[stale])
            parts = _Parts(*(old.index_put((stale,), new) for old, new in zip(parts, fresh)))
        return parts


def ais_log_z(
    log_f: LogDensity,
    base: Distribution,
    *,
    num_chains: int = 256,
    num_distributions: int = 1000,
    kernel: Kernel | None = None,
    steps_per_distribution: int = 1,
    schedule: str = "sigmoid",
    generator: torch.Generator | None = None,
    target_acceptance: float | None = None,
) -> LogZEstimate:
    """log Z = log ∫ f(x) dx by annealed importance sampling from ``base`` (Neal 2001).

    Args:
        log_f: the unnormalised log-density x (B, *event) -> (B,), nats, differentiable (−E(x)
            for an energy). Its gradient is taken even under ``torch.no_grad``.
        base: the normalised start p₀ with batch_shape () and event_shape the data's, e.g.
            ``Independent(Normal(zeros, ones), 1)`` or ``Independent(Uniform(-ones, ones), 3)``;
            sampled with ``generator``.
        num_chains: independent AIS runs n ≥ 2.
        num_distributions: T ≥ 2 distributions on the path, base and target included (T = 2 is
            plain importance sampling from the base).
        kernel: a kernel leaving each f_β invariant (MALA or HMC for an unbiased Ẑ; ULA/SGLD
            only approximately). Default: ``MALA(0.05)``, with ``bounds`` from the base's support
            when it is a box, e.g. (−1, 1) for a uniform base on [−1, 1]^D.
        steps_per_distribution: kernel transitions at each intermediate β, ≥ 1.
        schedule: ``"sigmoid"`` or ``"linear"`` (see :func:`annealing_schedule`).
        generator: the only source of randomness.
        target_acceptance: adapt the kernel's ``step_size`` along the path: after each move it is
            multiplied by exp(acceptance − target), so that each distribution is explored with a
            step that suits it (a step right for p₀ is rejected almost always near a sharp f).
            The step of distribution t depends on the chains only through the mean acceptance
            of earlier moves, as in Wu et al. (2017, "On the quantitative analysis of
            decoder-based generative models"), who adapt HMC's step this way. None: fixed.

    Returns:
        :class:`LogZEstimate`: log Ẑ and its delta-method standard error in nats, the ESS of the
        final weights and the kernel's mean acceptance rate. E[log Ẑ] ≤ log Z (Jensen).
    """
    if target_acceptance is not None and not 0.0 < target_acceptance < 1.0:
        raise ConfigError(f"target_acceptance must lie in (0, 1); found {target_acceptance!r}")
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ConfigError(f"AIS needs num_chains >= 2 for a standard error; found {num_chains!r}")
    steps = steps_per_distribution
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"AIS needs steps_per_distribution >= 1; found {steps!r}")
    betas = annealing_schedule(num_distributions, schedule).tolist()
    if base.batch_shape != torch.Size():
        raise ConfigError(
            f"the AIS base must have batch_shape () and the data's event_shape; found batch_shape "
            f"{tuple(base.batch_shape)}: wrap it as Independent(base, {len(base.batch_shape)})"
        )
    if kernel is None:
        kernel = MALA(DEFAULT_STEP_SIZE, bounds=check_bounds(_support_box(base)))

    with torch.no_grad():
        x = sample_from(base, (num_chains,), generator).detach()  # (n, *event)
    path = _GeometricPath(log_f, base)
    parts = path.parts(x)
    log_w = torch.zeros(num_chains, dtype=torch.float64, device=x.device)
    accept_sum, moves = 0.0, 0
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]) * (parts.log_f - parts.log_base).double()
        if t == len(betas) - 1:
            break  # the last move would not change the weights
        path.beta = betas[t]
        state = path.state(parts)
        for _ in range(steps):
            path.last = None
            state = kernel.step(state, path, generator)
            parts = path.follow(parts, state)
            accepted = float(state.accept_prob.double().mean())
            accept_sum += accepted
            moves += 1
            if target_acceptance is not None:
                step = kernel.step_size * math.exp(accepted - target_acceptance)
                kernel = dataclasses.replace(kernel, step_size=step)  # type: ignore[type-var]

    if bool(torch.isnan(log_w).any() | (log_w == math.inf).any()):
        raise DataError(
            "AIS weights are NaN or +inf: log f or log p₀ was not finite along the chains; if the base is "
            "bounded, give the kernel the same bounds (e.g. MALA(0.05, bounds=(-1, 1)))"
        )
    top = log_w.max()
    if not bool(torch.isfinite(top)):
        raise DataError("every AIS weight is zero (log w = −∞): log f is −∞ wherever the chains went")
    w = (log_w - top).exp()  # max-normalised weights, (n,)
    log_z = float(top + w.mean().log())
    stderr = float(w.std() / (math.sqrt(num_chains) * w.mean()))
    ess = float(w.sum() ** 2 / w.square().sum())
    extra = f" × {steps} steps" if steps > 1 else ""
    if target_acceptance is not None:
        extra += f", step adapted to acceptance {target_acceptance:g} (last {kernel.step_size:.3g})"
    method = f"AIS, {len(betas)} distributions, {num_chains} chains, {type(kernel).__name__}{extra}, {schedule} schedule"
    rate = accept_sum / moves if moves else math.nan
    return LogZEstimate(log_z, stderr, method, len(betas), num_chains, ess, rate)


class _TanhUniform(Distribution):
    """u = atanh(v), v uniform on [−1, 1]^event: the uniform distribution on the box seen in the
    unconstrained coordinates of :func:`ais_log_z_on_box`. log p(u) = Σ log((1 − tanh² u)/2)."""

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(
        self, event_shape: Sequence[int], device: torch.device | str | None, dtype: torch.dtype
    ) -> None:
        self._device, self._dtype = device, dtype
        super().__init__(torch.Size(), torch.Size(event_shape), validate_args=False)

    def sample(self, sample_shape: Sequence[int] = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape) + self.event_shape
        v = (2 * torch.rand(shape, dtype=torch.float64) - 1).clamp(-1 + 1e-15, 1 - 1e-15)
        return torch.atanh(v).to(self._dtype).to(self._device)

    def log_prob(self, value: Tensor) -> Tensor:
        dims = tuple(range(-len(self.event_shape), 0))
        return (_log1m_tanh2(value) - math.log(2.0)).sum(dims)


def _log1m_tanh2(u: Tensor) -> Tensor:
    """log(1 − tanh² u) = −2 log cosh u, stable for large |u|."""
    a = u.abs()
    return -2.0 * (a + torch.nn.functional.softplus(-2.0 * a) - math.log(2.0))


def ais_log_z_on_box(
    log_f: LogDensity,
    low: float,
    high: float,
    event_shape: Sequence[int],
    *,
    num_chains: int = 256,
    num_distributions: int = 1000,
    step_size: float = DEFAULT_STEP_SIZE,
    target_acceptance: float | None = 0.6,
    steps_per_distribution: int = 1,
    schedule: str = "sigmoid",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LogZEstimate:
    """log ∫_box f(y) dy for a density on the box [low, high]^event by AIS with MALA in
    unconstrained coordinates.

    In many dimensions a kernel that rejects moves out of the box stalls: a uniform start has
    coordinates near a face in almost every chain, and a proposal that moves all D of them
    leaves the box almost surely. So AIS runs on u ∈ R^D with y = m + h tanh(u) (m, h the box's
    centre and half-width), where the box's density becomes

        f_u(u) = f(y(u)) |dy/du| = f(y(u)) Π_d h (1 − tanh² u_d),

    whose integral is the same Z; the base is the uniform distribution on the box in the same
    coordinates, p₀(u) = Π_d (1 − tanh² u_d)/2. MALA needs no bounds there, and its step adapts to
    ``target_acceptance`` (see :func:`ais_log_z`).

    Args:
        log_f: log f(y) for y (B, *event_shape) in the box, nats.
        low, high: the box, the same interval in every coordinate.
        event_shape: the shape of one point.
        num_chains, num_distributions, steps_per_distribution, schedule, generator: as
            :func:`ais_log_z`.
        step_size: MALA's first step, in u.
        target_acceptance: MALA's step adapts to this acceptance rate (None: fixed).
        device, dtype: of the chains (default: CPU, torch's default dtype).

    Returns:
        :class:`LogZEstimate` of log Z on the box, nats.
    """
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"the box needs finite low < high; found [{low}, {high}]")
    mid, half = (high + low) / 2.0, (high - low) / 2.0
    dims = tuple(range(1, len(tuple(event_shape)) + 1))

    def log_f_u(u: Tensor) -> Tensor:
        return log_f(mid + half * torch.tanh(u)) + (_log1m_tanh2(u) + math.log(half)).sum(dims)

    base = _TanhUniform(event_shape, device, dtype or torch.get_default_dtype())
    estimate = ais_log_z(
        log_f_u,
        base,
        num_chains=num_chains,
        num_distributions=num_distributions,
        kernel=MALA(step_size),
        steps_per_distribution=steps_per_distribution,
        schedule=schedule,
        generator=generator,
        target_acceptance=target_acceptance,
    )
    return estimate._replace(method=estimate.method + ", in tanh coordinates of the box")


def grid_log_density(
    log_f: LogDensity,
    low: Sequence[float],
    high: Sequence[float],
    num_points: int = 512,
    *,
    batch_size: int = 65536,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[list[Tensor], Tensor]:
    """log f on the midpoints of a regular grid over the box [low, high] (1-D or 2-D).

    Args:
        log_f: x (B, D) -> (B,), nats.
        low, high: the box's corners, D = 1 or 2 numbers each, low < high.
        num_points: grid points per axis, ≥ 1.
        batch_size: points per call of log_f.
        dtype, device: of the points passed to log_f (default: torch's default dtype, CPU).

    Returns:
        (the midpoints of each axis, D tensors (num_points,) float64; log f on the grid,
        (num_points,) or (num_points, num_points) float64, indexed [i, j] = (axis 0, axis 1)).
    """
    lows, highs = [float(v) for v in low], [float(v) for v in high]
    if len(lows) not in (1, 2) or len(highs) != len(lows):
        raise ConfigError(
            f"grid quadrature works in 1 or 2 dimensions; found low of length {len(lows)} and high of length {len(highs)}"
        )
    if not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(lows, highs)):
        raise ConfigError(
            f"the quadrature box needs finite low < high on every axis; found low={lows}, high={highs}"
        )
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ConfigError(f"quadrature needs num_points >= 1 per axis; found {num_points!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; found {batch_size!r}")
    axes = [
        a + (torch.arange(num_points, dtype=torch.float64) + 0.5) * (b - a) / num_points
        for a, b in zip(lows, highs)
    ]
    grid = torch.cartesian_prod(*axes).reshape(-1, len(axes))  # (N, D), the first axis slowest
    dtype = dtype or torch.get_default_dtype()
    values = []
    with torch.no_grad():
        for chunk in grid.split(batch_size):
            v = log_f(chunk.to(dtype=dtype, device=device))
            if v.shape != (chunk.shape[0],):
                raise DataError(
                    f"log_f must return one value per point, shape ({chunk.shape[0]},); found {tuple(v.shape)}"
                )
            values.append(v.double().cpu())
    out = torch.cat(values)
    if bool(torch.isnan(out).any()):
        raise DataError("log_f returned NaN on the quadrature grid")
    return axes, out.reshape((num_points,) * len(axes))


def quadrature_log_z(
    log_f: LogDensity,
    low: Sequence[float],
    high: Sequence[float],
    num_points: int = 512,
    *,
    batch_size: int = 65536,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> LogZEstimate:
    """log Z = log ∫_box f(x) dx by the midpoint rule, for 1-D or 2-D densities.

    log Ẑ = logsumexp_cells log f(centre) + log(cell volume), in float64. Exact up to the
    discretisation (O(h²) for a smooth f cut by the box, far smaller for a density that vanishes
    at the edges) and the mass of f outside the box.

    Args:
        log_f: x (B, D) -> (B,), nats.
        low, high: the box's corners, D = 1 or 2 numbers each, low < high.
        num_points: grid points per axis, ≥ 1.
        batch_size: points per call of log_f.
        dtype, device: of the points passed to log_f (default: torch's default dtype, CPU).

    Returns:
        :class:`LogZEstimate` with stderr 0.0 and ess, acceptance_rate nan.
    """
    axes, values = grid_log_density(
        log_f, low, high, num_points, batch_size=batch_size, dtype=dtype, device=device
    )
    log_cell = sum(math.log((float(b) - float(a)) / num_points) for a, b in zip(low, high))
    log_z = float(torch.logsumexp(values.flatten(), 0)) + log_cell
    grid = "×".join([str(num_points)] * len(axes))
    method = f"quadrature, {grid} grid" if len(axes) == 2 else f"quadrature, {num_points} points"
    return LogZEstimate(log_z, 0.0, method, 0, values.numel(), math.nan, math.nan)


__all__ = [
    "ais_log_z_on_box",
    "SCHEDULES",
    "LogZEstimate",
    "ais_log_z",
    "annealing_schedule",
    "grid_log_density",
    "quadrature_log_z",
]
