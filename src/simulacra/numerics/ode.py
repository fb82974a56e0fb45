"""Explicit Runge–Kutta solvers for dy/dt = f(t, y), differentiable by backpropagation.

An s-stage explicit Runge–Kutta method with Butcher tableau (c, A, b) advances y_n to y_{n+1}:

    k_i = f(t_n + c_i h, y_n + h Σ_{j<i} a_ij k_j),    y_{n+1} = y_n + h Σ_i b_i k_i.

Fixed-step methods (``euler`` order 1, ``heun`` order 2, ``rk4`` order 4) take ``steps`` equal
steps. ``dopri5`` (Dormand & Prince 1980) is a 7-stage pair of orders 5 and 4: the difference of
the two solutions, e = h Σ_i (b_i − b̂_i) k_i, estimates the local error, and a step is accepted
when the scaled RMS norm

    ‖e‖ = sqrt( mean_i ( e_i / (atol + rtol · max(|y_n,i|, |y_{n+1},i|)) )² ) ≤ 1.

The next step size is h · safety · ‖e‖^(−α) · ‖e_prev‖^β (the PI controller of Gustafsson 1991
and Hairer & Wanner's DOPRI5 code, α = 0.2 − 0.75 β, β = 0.04; β = 0 is the standard controller),
clipped to [0.2 h, 10 h]. The last stage is evaluated at (t_{n+1}, y_{n+1}), so it is the first
stage of the next step ("first same as last"): 6 evaluations per accepted step. The first step
size follows Hairer, Nørsett & Wanner (1993), "Solving ODEs I", §II.4. Integration runs
backwards when t1 < t0.

The state y is a tensor or a tuple of tensors (a continuous flow integrates (x, log p) jointly).
Gradients flow through the solver's arithmetic (discretise-then-optimise); the step sizes are
chosen on detached values, so the gradient is that of the Runge–Kutta map on the accepted grid.
Times are Python floats; the only host synchronisation is one per adaptive step (accept/reject).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from simulacra.errors import ConfigError, SimulacraError
from simulacra.registry import Registry

State = Tensor | tuple[Tensor, ...]
Dynamics = Callable[[float, State], State]


class ODESolverError(SimulacraError, RuntimeError):
    """The adaptive solver could not reach t1 (too many steps, step size underflow, non-finite state)."""


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method: nodes c (s,), the strictly lower triangular A as rows
    ``a[i] = (a_i0, …, a_i,i−1)``, weights b (s,), and for embedded pairs the weights b̂ of the
    lower-order solution (``b_err = b − b̂``). ``order`` is the order of the propagated solution
    (b); the error estimate is of order ``order − 1``."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None

    @property
    def fsal(self) -> bool:
        """True when the last stage is f(t + h, y_{n+1}) (first same as last)."""
        return self.c[-1] == 1.0 and len(self.a[-1]) == len(self.b) - 1 and self.a[-1] == self.b[:-1]


ODE_METHODS: Registry[ButcherTableau] = Registry("ODE method")

ODE_METHODS.register("euler", "forward Euler, order 1")(ButcherTableau(c=(0.0,), a=((),), b=(1.0,), order=1))
ODE_METHODS.register("heun", "Heun's (explicit trapezoidal) method, order 2")(
    ButcherTableau(c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)
)
ODE_METHODS.register("rk4", "the classical Runge–Kutta method, order 4")(
    ButcherTableau(
        c=(0.0, 0.5, 0.5, 1.0),
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        order=4,
    )
)
_DOPRI5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DOPRI5_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
ODE_METHODS.register("dopri5", "Dormand–Prince 5(4), adaptive steps (Dormand & Prince 1980)")(
    ButcherTableau(
        c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        a=(
            (),
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            _DOPRI5_B[:-1],
        ),
        b=_DOPRI5_B,
        order=5,
        b_err=tuple(p - q for p, q in zip(_DOPRI5_B, _DOPRI5_B4)),
    )
)


class ODESolution(NamedTuple):
    """The state at t1 (same structure as y0), the number of evaluations of f, and the numbers
    of accepted and rejected steps."""

    y: State
    nfev: int
    steps: int
    rejected: int


# -- tuple arithmetic ------------------------------------------------------------------------------


def _combine(
    y: tuple[Tensor, ...], h: float, coeffs: Sequence[float], ks: Sequence[tuple[Tensor, ...]]
) -> tuple[Tensor, ...]:
    """y + h Σ_j coeffs_j k_j, skipping zero coefficients."""
    out = []
    for i, yi in enumerate(y):
        acc = yi
        for cj, kj in zip(coeffs, ks):
            if cj != 0.0:
                acc = acc + (h * cj) * kj[i]
        out.append(acc)
    return tuple(out)


def _weighted(h: float, coeffs: Sequence[float], ks: Sequence[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """h Σ_j coeffs_j k_j."""
    out = []
    for i in range(len(ks[0])):
        terms = [(h * cj) * kj[i] for cj, kj in zip(coeffs, ks) if cj != 0.0]
        out.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(ks[0][i]))
    return tuple(out)


def rms_norm(parts: tuple[Tensor, ...]) -> Tensor:
    """sqrt(mean of squares) over every element of every tensor: the default error norm."""
    total = sum(p.detach().pow(2).sum() for p in parts)
    count = sum(p.numel() for p in parts)
    return torch.sqrt(total / max(count, 1))


def _scaled(
    e: tuple[Tensor, ...], y0: tuple[Tensor, ...], y1: tuple[Tensor, ...], rtol: float, atol: float
) -> tuple[Tensor, ...]:
    return tuple(
        ei.detach() / (atol + rtol * torch.maximum(a.detach().abs(), b.detach().abs()))
        for ei, a, b in zip(e, y0, y1)
    )


# -- the solver ----------------------------------------------------------------------------------


def odeint(
    f: Dynamics,
    y0: State,
    t0: float,
    t1: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    max_steps: int = 10_000,
    first_step: float | None = None,
    controller: str = "pi",
    norm: Callable[[tuple[Tensor, ...]], Tensor] | None = None,
) -> ODESolution:
    """Integrate dy/dt = f(t, y) from t0 to t1 (t1 < t0 integrates backwards).

    Args:
        f: the vector field ``f(t, y)``; t is a Python float, y has y0's structure, and f returns
            tensors of the same shapes.
        y0: the initial state, a tensor or a tuple of tensors (any shapes, one dtype and device).
        t0, t1: start and end times.
        method: a name in :data:`ODE_METHODS`: ``dopri5`` (adaptive), ``rk4``, ``heun``, ``euler``.
        rtol, atol: relative and absolute tolerances of ``dopri5``'s local error test (rtol is
            raised to at least 100 ε of y0's dtype, which rounding would not let the test meet).
        steps: the number of equal steps of a fixed-step method.
        max_steps: ``dopri5`` raises :class:`ODESolverError` after this many attempted steps.
        first_step: the initial step size magnitude (default: Hairer's selection, 1 extra f call).
        controller: ``"pi"`` (β = 0.04) or ``"standard"`` (β = 0) step-size control.
        norm: maps the tuple of scaled errors e_i / (atol + rtol |y_i|) to a scalar; default
            :func:`rms_norm` over all components.

    Returns:
        :class:`ODESolution` ``(y, nfev, steps, rejected)`` with y at t1.
    """
    tableau = ODE_METHODS.get(method)
    is_tensor = isinstance(y0, Tensor)
    y: tuple[Tensor, ...] = (y0,) if is_tensor else tuple(y0)
    if not y or not all(isinstance(v, Tensor) for v in y):
        raise ConfigError(f"odeint needs a tensor or a tuple of tensors as y0; found {type(y0).__name__}")
    if not all(v.is_floating_point() for v in y):
        raise ConfigError(f"odeint needs floating-point states; found {[str(v.dtype) for v in y]}")

    def rhs(t: float, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        out = f(t, state[0] if is_tensor else state)
        out_t = (out,) if isinstance(out, Tensor) else tuple(out)
        if len(out_t) != len(state):
            raise ConfigError(f"f returned {len(out_t)} tensors for a state of {len(state)}")
        return out_t

    t0, t1 = float(t0), float(t1)
    if tableau.b_err is None:
        if steps is None or isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ConfigError(f"the fixed-step method {method!r} needs steps >= 1; found {steps!r}")
        y_end, nfev = _fixed(rhs, tableau, y, t0, t1, int(steps))
        return ODESolution(y_end[0] if is_tensor else y_end, nfev, int(steps), 0)
    if steps is not None:
        raise ConfigError(f"{method!r} chooses its own steps; pass rtol/atol, not steps={steps}")
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ConfigError(
            f"tolerances must be non-negative and not both zero; found rtol={rtol}, atol={atol}"
        )
    if controller not in ("pi", "standard"):
        raise ConfigError(f"controller must be 'pi' or 'standard'; found {controller!r}")
    # as SciPy's solvers do: a relative tolerance below 100 ulp cannot be met, raise it
    rtol = max(float(rtol), 100 * torch.finfo(y[0].dtype).eps)
    y_end, nfev, accepted, rejected = _adaptive(
        rhs, tableau, y, t0, t1, rtol, atol, max_steps, first_step, controller == "pi", norm or rms_norm
    )
    return ODESolution(y_end[0] if is_tensor else y_end, nfev, accepted, rejected)


def _stages(
    rhs: Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]],
    tableau: ButcherTableau,
    t: float,
    y: tuple[Tensor, ...],
    h: float,
    k1: tuple[Tensor, ...] | None = None,
) -> list[tuple[Tensor, ...]]:
    """The stages k_1..k_s of one step (k_1 reused when given)."""
    ks: list[tuple[Tensor, ...]] = [rhs(t, y) if k1 is None else k1]
    for ci, ai in zip(tableau.c[1:], tableau.a[1:]):
        ks.append(rhs(t + ci * h, _combine(y, h, ai, ks)))
    return ks


def _fixed(
    rhs: Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]],
    tableau: ButcherTableau,
    y: tuple[Tensor, ...],
    t0: float,
    t1: float,
    steps: int,
) -> tuple[tuple[Tensor, ...], int]:
    h = (t1 - t0) / steps
    for n in range(steps):
        ks = _stages(rhs, tableau, t0 + n * h, y, h)
        y = _combine(y, h, tableau.b, ks)
    return y, steps * len(tableau.c)


def _initial_step(
    rhs: Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]],
    t0: float,
    y0: tuple[Tensor, ...],
    f0: tuple[Tensor, ...],
    direction: float,
    order: int,
    rtol: float,
    atol: float,
    norm: Callable[[tuple[Tensor, ...]], Tensor],
) -> float:
    """Hairer, Nørsett & Wanner (1993), §II.4: h from ‖y0‖, ‖f0‖ and a finite-difference ‖f'‖."""
    scale = tuple(atol + rtol * v.detach().abs() for v in y0)
    d0 = float(norm(tuple(v.detach() / s for v, s in zip(y0, scale))))
    d1 = float(norm(tuple(v.detach() / s for v, s in zip(f0, scale))))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    with torch.no_grad():
        y1 = tuple(v.detach() + direction * h0 * k.detach() for v, k in zip(y0, f0))
        f1 = rhs(t0 + direction * h0, y1)
        d2 = float(norm(tuple((a.detach() - b.detach()) / s for a, b, s in zip(f1, f0, scale)))) / h0
    dmax = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def _adaptive(
    rhs: Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]],
    tableau: ButcherTableau,
    y: tuple[Tensor, ...],
    t0: float,
    t1: float,
    rtol: float,
    atol: float,
    max_steps: int,
    first_step: float | None,
    pi: bool,
    norm: Callable[[tuple[Tensor, ...]], Tensor],
) -> tuple[tuple[Tensor, ...], int, int, int]:
    span = abs(t1 - t0)
    if span == 0.0:
        return y, 0, 0, 0
    direction = 1.0 if t1 > t0 else -1.0
    b_err = tableau.b_err or (0.0,) * len(tableau.b)
    safety, fac_min, fac_max = 0.9, 0.2, 10.0
    beta = 0.04 if pi else 0.0
    alpha = 1.0 / tableau.order - 0.75 * beta  # exponent of the current error (1/order for β = 0)
    k1 = rhs(t0, y)
    nfev = 1
    if first_step is None:
        h = _initial_step(rhs, t0, y, k1, direction, tableau.order, rtol, atol, norm)
        nfev += 1
    else:
        h = abs(float(first_step))
    h = min(h, span)
    t, err_prev, accepted, rejected = t0, 1e-4, 0, 0
    tiny = 16 * math.ulp(max(abs(t0), abs(t1), 1.0))
    while direction * (t1 - t) > tiny:
        if accepted + rejected >= max_steps:
            raise ODESolverError(
                f"dopri5 took {max_steps} steps without reaching t1 = {t1} (now at t = {t}); "
                "raise max_steps or loosen rtol/atol"
            )
        remaining = abs(t1 - t)
        last = h >= remaining * (1 - 1e-12)
        if last:
            h = remaining
        hs = direction * h
        ks = _stages(rhs, tableau, t, y, hs, k1)
        nfev += len(ks) - 1
        y_new = _combine(y, hs, tableau.b, ks)
        e = _weighted(hs, b_err, ks)  # y_new − ŷ_new, the local error estimate
        err = float(norm(_scaled(e, y, y_new, rtol, atol)))  # the one host sync per step
        if not math.isfinite(err):
            rejected += 1
            h *= fac_min
        elif err <= 1.0:
            accepted += 1
            t = t1 if last else t + hs
            y = y_new
            k1 = ks[-1] if tableau.fsal else rhs(t, y)
            nfev += 0 if tableau.fsal else 1
            fac = safety * max(err, 1e-10) ** (-alpha) * err_prev**beta
            h *= min(fac_max, max(fac_min, fac))
            err_prev = max(err, 1e-4)
        else:
            rejected += 1
            h *= min(1.0, max(fac_min, safety * err ** (-alpha)))
        if h < tiny:
            raise ODESolverError(
                f"dopri5's step size underflowed at t = {t} (error {err:.3g}); the dynamics may be "
                "stiff or non-finite"
            )
    return y, nfev, accepted, rejected
