"""The probability-flow ODE of a diffusion model: sampling and exact log-likelihoods.

Every Gaussian diffusion has a deterministic ODE with the same marginals p_t as its SDE
(Song et al. 2021, "Score-based generative modeling through SDEs", §4.3):

    dx/dt = v(x, t) = f(t) x − ½ g(t)² ∇ log p_t(x),    ∇ log p_t(x) ≈ (α x̂₀(x, t) − x)/σ².

Integrated from t = 1 down to t_min it is a sampler (:class:`ProbabilityFlowODE`, ``ode``:
adaptive Dormand–Prince RK45; :class:`Heun`, ``heun``: fixed steps), one more deterministic map
from the prior to data. Integrated upwards
from x(t_min) = x it is a continuous normalizing flow, so the instantaneous change of variables
(Chen et al. 2018) gives the exact log-density of the model's p_{t_min}:

    log p_{t_min}(x) = log p_1(x(1)) + ∫_{t_min}^{1} tr(∂v/∂x(x(t), t)) dt,

with p_1 = N(0, s² I), s = ``process.prior_std``. The trace is exact for small D or Hutchinson's
unbiased estimate (FFJORD), both from :meth:`ContinuousFlow.field_and_trace`; the ODE is solved
by :func:`simulacra.numerics.ode.odeint`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.flows.continuous import ContinuousFlow
from simulacra.numerics.ode import ODE_METHODS, odeint, rms_norm
from simulacra.processes.gaussian import Denoise, batch_time, expand
from simulacra.processes.schedules import NoiseSchedule
from simulacra.samplers.base import Sampler, register
from simulacra.samplers.diffusion import broadcast_time, check_grid, score_from_x0


def probability_flow(denoise: Denoise, process: NoiseSchedule, x: Tensor, t: Tensor) -> Tensor:
    """v(x, t) = f x − ½ g² s(x, t), (B, *event); t is (B,)."""
    alpha, sigma = process.alpha_sigma(batch_time(t))
    f, g2 = process.drift_diffusion(batch_time(t))
    score = score_from_x0(x, denoise(x, t), alpha, sigma)
    return expand(f, x) * x - 0.5 * expand(g2, x) * score


def ode(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    times: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Solve the probability-flow ODE from times[0] to times[-1], then denoise (deterministic).

    ``method`` is a name in :data:`ODE_METHODS`: ``dopri5`` adapts its steps to ``rtol``/``atol``
    and uses only the grid's end points; fixed-step methods (``heun``, ``rk4``, ``euler``) take
    len(times) − 1 equal steps between them."""
    check_grid(times)
    adaptive = ODE_METHODS.get(method).b_err is not None
    t0, t1 = float(times[0]), float(times[-1])

    def velocity(t: float, y: Tensor) -> Tensor:
        return probability_flow(denoise, process, y, y.new_full((y.shape[0],), t))

    steps = None if adaptive else len(times) - 1
    y = cast(Tensor, odeint(velocity, x, t0, t1, method=method, rtol=rtol, atol=atol, steps=steps).y)
    return denoise(y, broadcast_time(y, times[-1]))


def heun(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    times: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The ``ode`` sampler with Heun's second-order method on len(times) − 1 equal steps."""
    return ode(denoise, process, x, times, method="heun")


@register("ode", "probability-flow ODE (Song et al. 2021) with adaptive RK45 (Dormand–Prince)")
@dataclass(frozen=True)
class ProbabilityFlowODE(Sampler):
    """:func:`ode`: the probability-flow ODE solved by ``method`` to tolerances ``rtol``/``atol``
    (an adaptive method uses only the grid's end points). Deterministic."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    function = staticmethod(ode)


@register("heun", "probability-flow ODE with Heun's method (2 evaluations per step; Karras et al. 2022)")
@dataclass(frozen=True)
class Heun(Sampler):
    """:func:`heun`: the probability-flow ODE in len(times) − 1 equal Heun steps. Deterministic."""

    function = staticmethod(heun)


class _FlatField(nn.Module):
    """(t, z (B, D), c) -> v(z, t) (B, D) for data of any event shape, for ContinuousFlow's trace."""

    def __init__(self, denoise: Denoise, process: NoiseSchedule, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.denoise, self.process, self.event_shape = denoise, process, event_shape

    def forward(self, t: float | Tensor, z: Tensor, c: Tensor | None = None) -> Tensor:
        x = z.reshape(z.shape[0], *self.event_shape)
        tt = z.new_full((z.shape[0],), float(t))
        return probability_flow(self.denoise, self.process, x, tt).flatten(1)


def log_prob(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    *,
    t_min: float | None = None,
    trace: str = "auto",
    exact_max_dim: int = 10,
    noise: str = "rademacher",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    differentiable: bool = False,
) -> Tensor:
    """log p_{t_min}(x) in nats through the probability-flow ODE and the change of variables.

    Args:
        denoise: the model's posterior mean x̂₀(x_t, t).
        process: the noise schedule (gives f, g² and the prior N(0, prior_std² I)).
        x: (B, *event) points (in the model's data space).
        t_min: the time of x (default ``process.t_min``).
        trace: ``exact`` (D vector–Jacobian products, batched), ``hutchinson`` (one, unbiased), or
            ``auto``: exact when D ≤ ``exact_max_dim``.
        noise: Hutchinson's probe, ``rademacher`` or ``gaussian``, drawn once with ``generator``.
        method, rtol, atol, steps: passed to :func:`odeint` (adaptive dopri5 by default).
        differentiable: keep the autograd graph of the whole trajectory so that the result can be
            differentiated (memory grows with the number of solver steps: gigabytes for images).
            By default the solve runs without recording gradients, whatever the caller's mode.

    Returns:
        (B,) log-densities in nats (an unbiased estimate of a log-density's integral term under
        Hutchinson's estimator).
    """
    t_min = process.t_min if t_min is None else float(t_min)
    if not 0 < t_min < 1:
        raise ConfigError(f"t_min must be in (0, 1); found {t_min}")
    b, event = x.shape[0], tuple(x.shape[1:])
    d = math.prod(event)
    flow = ContinuousFlow(
        _FlatField(denoise, process, event), trace=trace, exact_max_dim=exact_max_dim, noise=noise
    )
    z = x.reshape(b, d)
    eps = None
    if not flow.uses_exact_trace(d):
        if noise == "gaussian":
            eps = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        else:
            eps = torch.randint(0, 2, z.shape, generator=generator, device=z.device).to(z.dtype) * 2 - 1

    def dynamics(t: float, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return flow.field_and_trace(t, state[0], None, eps)

    with torch.enable_grad() if differentiable else torch.no_grad():
        solution = odeint(
            dynamics,
            (z, z.new_zeros(b)),
            t_min,
            1.0,
            method=method,
            rtol=rtol,
            atol=atol,
            steps=steps,
            norm=None if eps is None else (lambda parts: rms_norm(parts[:1])),  # the probe must not steer
        )
    z1, delta = solution.y
    s = process.prior_std
    log_prior = -0.5 * (z1 / s).pow(2).sum(1) - d * (math.log(s) + 0.5 * math.log(2 * math.pi))
    return log_prior + delta
