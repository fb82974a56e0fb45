"""Stateless samplers for Gaussian diffusion models: the model predicts, the process defines the
noise, the sampler steps.

Every sampler is a function

    sampler(denoise, process, x, times, *, generator=None, **options) -> x₀

where ``denoise(x_t (B, *event), t (B,)) -> x̂₀`` is the model's posterior mean E[x₀ | x_t] (any
parameterisation converts to it, see :mod:`simulacra.processes.gaussian`), ``process`` is a
:class:`NoiseSchedule`, ``x`` (B, *event) is a draw from the prior at ``times[0]`` and ``times``
(N,) is a decreasing grid t_0 > t_1 > … > t_{N−1} = t_min. The sampler moves x along the grid and
returns the denoised x̂₀(x_{t_{N−1}}, t_{N−1}) (Tweedie's "noise removal" step, Song et al. 2021):
N evaluations of ``denoise`` for the first-order samplers. With the score
s = ∇ log p_t(x) = (α x̂₀ − x)/σ², the reverse-time SDE and the probability-flow ODE are

    dx = [f x − g² s] dt + g dw̄,        dx/dt = f x − ½ g² s             (Song et al. 2021).

Each function is wrapped by a :class:`~simulacra.samplers.base.Sampler` object that carries its
defaults and options, registered in :data:`SAMPLERS`: :class:`Ancestral` (``ancestral``, DDPM),
:class:`DDIM` (``ddim``, η), :class:`EulerMaruyama` (``euler-maruyama``),
:class:`PredictorCorrector` (``pc``), :class:`DPMSolver` (``dpm-solver``, DPM-Solver++(2M)), and
in :mod:`simulacra.samplers.ode` the probability-flow ODE solved by :class:`ProbabilityFlowODE`
(``ode``, adaptive RK45) and :class:`Heun` (``heun``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.errors import ConfigError
from simulacra.processes.gaussian import Denoise, batch_time, expand, noise_like, posterior_coefficients
from simulacra.processes.schedules import NoiseSchedule
from simulacra.samplers.base import Sampler, check_grid_size, check_spacing, register


def time_grid(
    process: NoiseSchedule, steps: int, spacing: str = "time", t_min: float | None = None
) -> Tensor:
    """The decreasing grid 1 = t_0 > … > t_{steps−1} = t_min (float64, (steps,)).

    ``spacing="time"`` spaces t equally; ``"log-snr"`` spaces λ(t) = log(α²/σ²) equally, the grid
    DPM-Solver is designed for (Lu et al. 2022, §3.4), which puts more steps where λ changes fast.
    """
    check_grid_size(steps)
    t_min = process.t_min if t_min is None else float(t_min)
    if check_spacing(spacing) == "time":
        return torch.linspace(1.0, t_min, steps, dtype=torch.float64)
    ends = process.log_snr(torch.tensor([1.0, t_min], dtype=torch.float64))
    times = process.time_at_log_snr(
        torch.linspace(float(ends[0]), float(ends[1]), steps, dtype=torch.float64)
    )
    times[0], times[-1] = 1.0, t_min  # exact end points
    return times


def check_grid(times: Tensor) -> None:
    """Raise :class:`ConfigError` unless ``times`` is a decreasing 1-D grid of at least 2 points."""
    if times.dim() != 1 or times.numel() < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ConfigError(f"times must be a decreasing 1-D grid of >= 2 points; found {times.tolist()}")


def broadcast_time(x: Tensor, t: Tensor) -> Tensor:
    """A 0-d time t as a (B,) tensor of x's dtype and device, one per example of x."""
    return t.to(device=x.device, dtype=x.dtype).expand(x.shape[0])


def score_from_x0(x: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """s = (α x̂₀ − x_t)/σ² (Tweedie's formula read backwards), (B, *event)."""
    return (expand(alpha, x) * x0 - x) / expand(sigma**2, x)


def ancestral(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    times: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s ~ q(x_s | x_t, x₀ = x̂₀(x_t, t)) on each step t -> s (Ho et al. 2020, Algorithm 2, for any
    α, σ; on a coarser grid than training it is DDIM with η = 1)."""
    return ddim(denoise, process, x, times, eta=1.0, generator=generator)


def ddim(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    times: Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s = α_s x̂₀ + √(σ_s² − c²) ε̂ + c z,  ε̂ = (x_t − α_t x̂₀)/σ_t,  c² = η² Var[q(x_s | x_t, x₀)]

    (Song, Meng & Ermon 2021, eq. 12): η = 0 is the deterministic DDIM, η = 1 the DDPM ancestral
    step. Args as the module's sampler signature; ``eta`` ≥ 0."""
    check_grid(times)
    if not eta >= 0:
        raise ConfigError(f"DDIM needs eta >= 0; found {eta}")
    # x_s = A x̂₀ + B x_t + C z with A, B, C per step, in float64 on the host, before the loop:
    # no schedule arithmetic and no device synchronisation per step
    grid = times.detach().to("cpu", torch.float64)
    coef_x, coef_x0, var = posterior_coefficients(process, grid[:-1], grid[1:])
    if eta == 1.0:  # the ancestral step itself: the posterior mean's coefficients
        noise = var.sqrt()
    else:
        alpha, sigma = process.alpha_sigma(grid)
        a_t, s_t, a_s, s_s = alpha[:-1], sigma[:-1], alpha[1:], sigma[1:]
        c2 = eta**2 * var
        k = (s_s**2 - c2).clamp_min(0.0).sqrt() / s_t  # ε̂'s weight over σ_t
        coef_x0, coef_x, noise = a_s - k * a_t, k, c2.sqrt()
    step_times = _step_times(x, times)
    for t, cx0, cx, cz in zip(step_times, coef_x0.tolist(), coef_x.tolist(), noise.tolist()):
        x = torch.add(denoise(x, t) * cx0, x, alpha=cx)
        if cz > 0:
            x = x.add_(noise_like(x, generator), alpha=cz)
    return denoise(x, step_times[-1])


def _step_times(x: Tensor, times: Tensor) -> tuple[Tensor, ...]:
    """The grid as (B,) time tensors of x's dtype and device, one per grid point (views of one
    (N, B) tensor made once, so a step costs no tensor operation to get its time)."""
    grid = times.detach().to(device=x.device, dtype=x.dtype)
    return grid[:, None].expand(-1, x.shape[0]).unbind(0)


def euler_maruyama(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    times: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s = x_t − [f x_t − g² s(x_t, t)] Δ + g √Δ z,  Δ = t − s > 0, z ~ N(0, I)."""
    check_grid(times)
    steps = (-times.detach().to("cpu", torch.float64).diff()).tolist()
    step_times = _step_times(x, times)
    for t, dt in zip(step_times, steps):
        x = _reverse_sde_step(denoise, process, x, t, dt, generator)
    return denoise(x, step_times[-1])


def _reverse_sde_step(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    t: Tensor,
    dt: float,
    generator: torch.Generator | None,
) -> Tensor:
    alpha, sigma = process.alpha_sigma(batch_time(t))  # t is one time for the batch: once
    f, g2 = process.drift_diffusion(batch_time(t))
    score = score_from_x0(x, denoise(x, t), alpha, sigma)
    drift = expand(f, x) * x - expand(g2, x) * score
    return x - drift * dt + expand((g2 * dt).sqrt(), x) * noise_like(x, generator)


def predictor_corrector(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    times: Tensor,
    *,
    snr: float = 0.16,
    corrector_steps: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """At each t: ``corrector_steps`` Langevin steps x ← x + δ s + √(2δ) z targeting p_t, with the
    step δ = 2 (r ‖z‖ / ‖s‖)² set by the target signal-to-noise ratio r = ``snr`` (norms averaged
    over the batch; Song et al. 2021, Algorithms 4–5), then one Euler–Maruyama predictor step to s. 2 evaluations
    per grid point with one corrector step."""
    check_grid(times)
    if not snr > 0 or isinstance(corrector_steps, bool) or corrector_steps < 0:
        raise ConfigError(f"pc needs snr > 0 and corrector_steps >= 0; found {snr}, {corrector_steps}")
    times = times.to(x.device, x.dtype)
    for t, s in zip(times[:-1], times[1:]):
        tt = broadcast_time(x, t)
        alpha, sigma = process.alpha_sigma(batch_time(tt))
        for _ in range(int(corrector_steps)):
            score = score_from_x0(x, denoise(x, tt), alpha, sigma)
            z = noise_like(x, generator)
            # norms averaged over the batch, as in Song et al.'s code: in low dimension the ratio
            # of one example's norms is heavy-tailed and a per-example step can blow up
            ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            delta = 2 * (snr * ratio) ** 2
            x = x + delta * score + (2 * delta).sqrt() * z
        x = _reverse_sde_step(denoise, process, x, tt, float(t - s), generator)
    return denoise(x, broadcast_time(x, times[-1]))


def dpm_solver(
    denoise: Denoise,
    process: NoiseSchedule,
    x: Tensor,
    times: Tensor,
    *,
    lower_order_final: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The probability-flow ODE in λ = log(α/σ), solved by DPM-Solver++(2M) (Lu et al. 2022,
    "DPM-Solver++", Algorithm 2): with h_i = λ_i − λ_{i−1} and r_i = h_{i−1}/h_i,

        x_i = (σ_i/σ_{i−1}) x_{i−1} − α_i (e^{−h_i} − 1) D_i,
        D_i = (1 + 1/(2 r_i)) x̂₀_{i−1} − 1/(2 r_i) x̂₀_{i−2}     (D_1 = x̂₀_0, first order).

    ``lower_order_final``: on grids of fewer than 15 points the last step is first order
    (D = x̂₀, the DDIM step), as diffusers' option of that name: the second-order extrapolation
    is least reliable on the few, long steps near t_min. Deterministic (``generator`` is
    unused); one evaluation per grid point."""
    check_grid(times)
    # coefficients in float64 on the host: no device synchronisation per step, any device dtype
    alphas, sigmas = process.alpha_sigma(times.detach().to("cpu", torch.float64))
    step_times = _step_times(x, times)
    lams = (torch.log(alphas) - torch.log(sigmas)).tolist()  # half the log-SNR, increasing
    alphas, sigmas = alphas.tolist(), sigmas.tolist()
    prev: Tensor | None = None
    for i in range(1, len(step_times)):
        x0 = denoise(x, step_times[i - 1])
        h = lams[i] - lams[i - 1]
        if prev is None or (lower_order_final and i == len(step_times) - 1 and len(step_times) < 15):
            d = x0
        else:
            r = (lams[i - 1] - lams[i - 2]) / h
            d = torch.add(x0 * (1 + 1 / (2 * r)), prev, alpha=-1 / (2 * r))
        x = torch.add(x * (sigmas[i] / sigmas[i - 1]), d, alpha=-alphas[i] * math.expm1(-h))
        prev = x0
    return denoise(x, step_times[-1])


# -- the sampler objects: defaults and options, wrapping the functions above ----------------------


@register("ancestral", "DDPM ancestral sampling (Ho et al. 2020): x_s ~ q(x_s | x_t, x̂₀)")
@dataclass(frozen=True)
class Ancestral(Sampler):
    """:func:`ancestral` on the model's grid (``steps`` None: every training step of a DDPM)."""

    function = staticmethod(ancestral)


@register("ddim", "DDIM (Song, Meng & Ermon 2021); deterministic at eta=0")
@dataclass(frozen=True)
class DDIM(Sampler):
    """:func:`ddim` with noise scale ``eta`` ≥ 0 (0: deterministic, 1: ancestral)."""

    eta: float = 0.0
    function = staticmethod(ddim)


@register("euler-maruyama", "Euler–Maruyama steps of the reverse-time SDE (Song et al. 2021)")
@dataclass(frozen=True)
class EulerMaruyama(Sampler):
    """:func:`euler_maruyama`: the reverse-time SDE, one evaluation per grid point."""

    function = staticmethod(euler_maruyama)


@register("pc", "predictor–corrector (Song et al. 2021): reverse-SDE predictor, Langevin corrector")
@dataclass(frozen=True)
class PredictorCorrector(Sampler):
    """:func:`predictor_corrector` with the corrector's target ``snr`` and ``corrector_steps``
    Langevin steps per grid point."""

    snr: float = 0.16
    corrector_steps: int = 1
    function = staticmethod(predictor_corrector)


@register("dpm-solver", "DPM-Solver++(2M) (Lu et al. 2022): second-order multistep, few steps")
@dataclass(frozen=True)
class DPMSolver(Sampler):
    """:func:`dpm_solver`: 20 points equally spaced in log-SNR by default (Lu et al. 2022 §3.4),
    the last step first order on short grids (``lower_order_final``). Deterministic."""

    steps: int | None = 20
    spacing: str = "log-snr"
    lower_order_final: bool = True
    function = staticmethod(dpm_solver)
