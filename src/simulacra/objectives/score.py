"""Diffusion objectives: weighted denoising score matching and the DDPM variational bound.

Denoising score matching (Vincent 2011; Song & Ermon 2019; Ho et al. 2020) regresses a network on
the noise that made x_t = α x₀ + σ ε. Whatever the network predicts (ε, x₀, v or the score; see
:mod:`simulacra.processes.gaussian`), its error is ‖p̂ − p‖² = k_p(t) ‖ε̂ − ε‖², so every loss is
one ε-space loss with a weight w(t):

    L(θ) = E_{t, x₀, ε} [ w(t) ‖ε̂_θ(x_t, t) − ε‖² ] = E [ (w(t)/k_p(t)) ‖p̂_θ(x_t, t) − p‖² ].

Weightings (``WEIGHTINGS``): ``eps`` w = 1 (DDPM's L_simple), ``x0`` w = σ²/α² = 1/SNR, ``v``
w = (α² + σ²)²/α², ``score`` w = 1/σ², and ``likelihood`` w = g²/(2σ²), for which the
time-integral is the score-matching bound on −log p of Song et al. (2021b, "Maximum likelihood
training of score-based diffusion models"), up to a constant. By default a model is trained on its
own parameterisation's squared error (w = k_p).

Training times (:func:`sample_times`) are uniform, t ~ U(t_min, 1) or t = i/T, or importance
sampled with density p(t) ∝ −λ′(t) = g(t)²/σ(t)², i.e. λ = log SNR uniform between λ(1) and
λ(t_min) (Song et al. 2021b, §5; Kingma et al. 2021, §5.2), each example's loss multiplied by
1/((1 − t_min) p(t)) so that the objective's expectation is the one of uniform times. Under the
``likelihood`` weighting, w(t) = −½ λ′(t), the product is the constant ½ (λ(t_min) − λ(1))/(1 − t_min):
the Monte Carlo noise of t, which dominates the bound's gradient, is gone.

The variational bound of a discrete-time chain on a grid t_1 < … < t_N (Ho et al. 2020, eq. 5;
Kingma et al. 2021, eq. 13), with p(z_{t_{i−1}} | z_{t_i}) = q(z_{t_{i−1}} | z_{t_i}, x₀ = x̂₀):

    log p(x) ≥ E_q[log p(x | z_{t_1})] − Σ_{i=2}^{N} E_q[½ (SNR(t_{i−1}) − SNR(t_i)) ‖x − x̂₀(z_{t_i}, t_i)‖²]
               − KL(q(z_{t_N} | x) ‖ N(0, s² I)),

with the decoder p(x | z_{t_1}) = N(x̂₀(z_{t_1}, t_1), (σ/α)²_{t_1} I).

Score matching of an energy-based model p(x) ∝ exp(−E(x)), whose score s(x) = −∇ₓE(x) needs no
normaliser (:func:`score_matching_exact`, :func:`score_matching_sliced`,
:func:`score_matching_denoising`). An energy is ``Callable[[Tensor], Tensor]``, x (B, *event) ->
E(x) (B,); each example's energy must depend on that example only (no batch statistics), since the
scores of all examples are taken from one gradient of Σ_b E(x_b). The estimators differentiate
through ∇ₓE with ``create_graph=True``, so their values carry a graph to the energy's parameters,
and they switch autograd on themselves: a validation pass may call them under ``torch.no_grad()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from simulacra.errors import ConfigError, DataError, positive_int
from simulacra.processes.gaussian import PARAMETERIZATIONS, Denoise, error_factor, q_sample, target
from simulacra.processes.schedules import NoiseSchedule

WEIGHTINGS = (*PARAMETERIZATIONS, "likelihood")
TIME_SAMPLINGS = ("uniform", "importance")


Energy = Callable[[Tensor], Tensor]
"""x (B, *event) -> E(x) (B,): the unnormalised negative log-density, p(x) ∝ exp(−E(x))."""

EXACT_MAX_DIM = 64
"""Largest D for which :func:`score_matching_exact` runs by default (it costs D + 1 backward passes)."""


def loss_weight(weighting: str, process: NoiseSchedule, t: Tensor) -> Tensor:
    """w(t) of the ε-space loss w(t) ‖ε̂ − ε‖², shape of t."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
    alpha, sigma = process.alpha_sigma(t)
    if weighting == "likelihood":
        return 0.5 * process.drift_diffusion(t)[1] / sigma**2
    return error_factor(weighting, alpha, sigma)


def check_time_sampling(method: str) -> str:
    """``method`` if it is one of :data:`TIME_SAMPLINGS`, else a :class:`ConfigError`."""
    if method not in TIME_SAMPLINGS:
        raise ConfigError(f"unknown time_sampling {method!r}; expected one of {', '.join(TIME_SAMPLINGS)}")
    return method


def sample_times(
    process: NoiseSchedule,
    n: int,
    *,
    timesteps: int | None = None,
    method: str = "uniform",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """n training times and the factors that keep the loss's expectation that of uniform times.

    Args:
        process: the noise schedule (its ``t_min`` bounds continuous times).
        n: number of times.
        timesteps: T of a discrete-time model (times i/T, i = 1..T); None for continuous time
            on [t_min, 1].
        method: ``uniform`` (factor 1), or ``importance``: density p(t) ∝ −λ′(t) = g(t)²/σ(t)²
            (on the grid, probabilities ∝ g²/σ² at i/T), factor 1/((1 − t_min) p(t))
            (on the grid 1/(T p_i)).
        generator: draws the times.

    Returns:
        (t, factor), both (n,) of ``dtype``: an unbiased estimate of E_{t uniform}[ℓ(t)] is
        ``factor · ℓ(t)``.
    """
    check_time_sampling(method)
    n = positive_int(n, "the number of training times")
    ones = torch.ones(n, device=device, dtype=dtype)
    if timesteps is not None:
        if method == "uniform":
            i = torch.randint(1, timesteps + 1, (n,), device=device, generator=generator)
            return i.to(dtype) / timesteps, ones
        grid = torch.arange(1, timesteps + 1, dtype=torch.float64) / timesteps
        _, g2 = process.drift_diffusion(grid)
        rate = g2 / process.sigma(grid) ** 2  # −λ′(t_i)
        probs = rate / rate.sum()
        i = torch.multinomial(probs, n, replacement=True, generator=generator)
        return grid[i].to(device, dtype), (1.0 / (timesteps * probs[i])).to(device, dtype)
    t_min = process.t_min
    if method == "uniform":
        u = torch.rand(n, device=device, dtype=dtype, generator=generator)
        return t_min + (1.0 - t_min) * u, ones
    ends = process.log_snr(torch.tensor([1.0, t_min], dtype=torch.float64))  # λ(1) < λ(t_min)
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    t = process.time_at_log_snr(ends[0] + (ends[1] - ends[0]) * u).clamp(t_min, 1.0)
    _, g2 = process.drift_diffusion(t)
    density = g2 / process.sigma(t) ** 2 / (ends[1] - ends[0])  # p(t) = −λ′(t) / (λ(t_min) − λ(1))
    return t.to(device, dtype), (1.0 / ((1.0 - t_min) * density)).to(device, dtype)


def denoising_loss(
    predict: Callable[[Tensor, Tensor], Tensor],
    process: NoiseSchedule,
    x0: Tensor,
    t: Tensor,
    *,
    prediction: str = "eps",
    weighting: str | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-example (w(t)/k_p(t)) · mean_d (p̂_d − p_d)², (B,), for x_t ~ q(x_t | x₀).

    Args:
        predict: the network, ``(x_t (B, *event), t (B,)) -> p̂`` in the ``prediction``
            parameterisation.
        process: the noise schedule.
        x0: (B, *event) data; t: (B,) times.
        prediction: ``eps``, ``x0``, ``v`` or ``score``.
        weighting: a name in :data:`WEIGHTINGS` (default: ``prediction``, the plain squared error).
        noise: ε (B, *event); drawn with ``generator`` when None.

    Returns:
        (B,) losses (mean over the D dimensions).
    """
    x_t, eps = q_sample(process, x0, t, noise, generator=generator)
    alpha, sigma = process.alpha_sigma(t.to(x0.dtype))
    truth = target(prediction, x0, eps, alpha, sigma)
    err = (predict(x_t, t) - truth).pow(2).flatten(1).mean(1)  # (B,)
    if weighting is None or weighting == prediction:
        return err
    return loss_weight(weighting, process, t.to(x0.dtype)) / error_factor(prediction, alpha, sigma) * err


def variational_bound(
    denoise: Denoise,
    process: NoiseSchedule,
    x0: Tensor,
    times: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A one-draw estimate of the discrete-time variational lower bound on log p(x₀), in nats.

    Args:
        denoise: the model's posterior mean x̂₀(z_t, t).
        process: the noise schedule; the prior is N(0, ``process.prior_std``² I).
        x0: (B, *event) data.
        times: (N,) increasing grid t_1 < … < t_N of the chain (the last is usually 1).
        generator: draws z_{t_i} ~ q(z_{t_i} | x₀), one per term.

    Returns:
        (B,) lower bounds (in expectation over the draws) on log p(x₀) in nats.
    """
    if times.dim() != 1 or times.numel() < 1 or not bool((times[1:] > times[:-1]).all()):
        raise ConfigError(f"the bound needs an increasing grid of times; found {times.tolist()}")
    b, d = x0.shape[0], x0[0].numel()
    times = times.to(x0.device, x0.dtype)
    snr = torch.exp(process.log_snr(times))  # (N,)

    def sq_error(i: int) -> Tensor:
        t = times[i].expand(b)
        z, _ = q_sample(process, x0, t, generator=generator)
        return (x0 - denoise(z, t)).pow(2).flatten(1).sum(1)  # (B,)

    # decoder N(x₀; x̂₀(z_1), (σ₁/α₁)² I): −½ D log(2π/SNR₁) − ½ SNR₁ ‖x₀ − x̂₀‖²
    bound = -0.5 * d * math.log(2 * math.pi / float(snr[0])) - 0.5 * snr[0] * sq_error(0)
    for i in range(1, times.numel()):
        bound = bound - 0.5 * (snr[i - 1] - snr[i]) * sq_error(i)
    alpha_n, sigma_n = process.alpha_sigma(times[-1])
    s2 = process.prior_std**2
    mean_sq = (alpha_n**2 * x0.pow(2)).flatten(1).sum(1)
    prior_kl = 0.5 * (d * sigma_n**2 / s2 + mean_sq / s2 - d - d * torch.log(sigma_n**2 / s2))
    return bound - prior_kl


# -- score matching of energy-based models ----------------------------------------------------


def _energy_gradient(energy: Energy, x: Tensor) -> tuple[Tensor, Tensor]:
    """A leaf copy x′ of x requiring grad and ∇ₓE(x′) (B, *event), with the graph kept (create_graph).

    Call inside ``torch.enable_grad()``.
    """
    x = x.detach().requires_grad_(True)
    e = energy(x)  # (B,)
    if e.shape != x.shape[:1]:
        raise DataError(
            f"an energy must return one value per example, shape ({x.shape[0]},); found {tuple(e.shape)}"
        )
    (grad,) = torch.autograd.grad(e.sum(), x, create_graph=True)
    return x, grad


def _vector_jacobian(y: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """∂(Σ v·y)/∂x with the graph kept; zeros when y does not depend on x (an energy linear in x)."""
    if not y.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y, x, grad_outputs=v, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def score_matching_exact(energy: Energy, x: Tensor, *, max_dim: int = EXACT_MAX_DIM) -> Tensor:
    """Hyvärinen's score-matching loss per example, the trace of the Hessian computed exactly.

    Hyvärinen (2005), Theorem 1: for the model score s = −∇ₓE, the Fisher divergence
    ½ E_data‖s(x) − ∇ log p_data(x)‖² equals, up to a constant independent of the model,

        J = E_data[ ½‖s(x)‖² + tr ∇ₓs(x) ] = E_data[ ½‖∇ₓE(x)‖² − ΔE(x) ],

    where ΔE = Σ_d ∂²E/∂x_d² is the Laplacian. The Laplacian takes one extra backward pass per
    coordinate (the d-th row of the Hessian gives ∂²E/∂x_d²), so one call costs D + 1 backward
    passes: use it for low dimension only (tests, toy densities), and :func:`score_matching_sliced`
    or :func:`score_matching_denoising` otherwise. For a Gaussian energy ½(x − μ)ᵀΛ(x − μ),
    J(x) = ½‖Λ(x − μ)‖² − tr Λ, minimised by the maximum-likelihood estimates.

    Args:
        energy: x (B, *event) -> E(x) (B,).
        x: (B, *event) data; any event shape (D = its number of entries per example).
        max_dim: the largest D accepted.

    Returns:
        (B,) values J(x) (squared score units, not nats), differentiable w.r.t. the energy's
        parameters, even when called under ``torch.no_grad()``.

    Raises:
        ConfigError: when D > ``max_dim``.
    """
    d = x[0].numel()
    if d > max_dim:
        raise ConfigError(
            f"exact score matching costs D + 1 backward passes and accepts D <= {max_dim}; found D = {d}: "
            "use method 'sliced' or 'denoising'"
        )
    with torch.enable_grad():
        x, grad = _energy_gradient(energy, x)
        g = grad.flatten(1)  # (B, D)
        laplacian = torch.zeros_like(g[:, 0])  # (B,)
        for i in range(d):
            # ∂/∂x of Σ_b ∂E/∂x_{b,i}: the i-th Hessian row of every example (examples are independent)
            row = _vector_jacobian(g[:, i], x, torch.ones_like(g[:, i])).flatten(1)  # (B, D)
            laplacian = laplacian + row[:, i]
        return 0.5 * g.square().sum(1) - laplacian


def score_matching_sliced(
    energy: Energy,
    x: Tensor,
    *,
    projections: int = 1,
    generator: torch.Generator | None = None,
    variance_reduced: bool = True,
    directions: Tensor | None = None,
) -> Tensor:
    """Sliced score matching per example: the Hessian trace estimated along random directions.

    Song, Garg, Shi & Ermon (2019), eqs. 7–8: with v ~ N(0, I) (so E[vvᵀ] = I),

        J = E_data E_v[ vᵀ∇ₓs(x) v + ½ (vᵀs(x))² ]                    (plain)
          = E_data E_v[ vᵀ∇ₓs(x) v ] + ½‖s(x)‖²                         (variance reduced, "SSM-VR")

    both unbiased for Hyvärinen's J of :func:`score_matching_exact` (E_v[vᵀAv] = tr A,
    E_v[(vᵀs)²] = ‖s‖²). Here s = −∇ₓE, so vᵀ∇ₓs v = −vᵀ(∇²E)v, and the Hessian-vector product
    (∇²E)v is one double backward pass of vᵀ∇ₓE: one call costs 1 + ``projections`` backward passes
    whatever D. The variance-reduced form integrates the second term exactly and has the lower
    variance (for a Gaussian energy, 2 tr Λ² per projection against 2 tr Λ² + ½‖g‖⁴ − 2gᵀΛg
    with g = Λ(x − μ)).

    Args:
        energy: x (B, *event) -> E(x) (B,).
        x: (B, *event) data, any event shape.
        projections: number of directions v per example, averaged (≥ 1).
        generator: draws the directions.
        variance_reduced: use ½‖s‖² in place of ½(vᵀs)².
        directions: the directions v, (projections, B, *event); drawn with ``generator`` when None.

    Returns:
        (B,) unbiased estimates of J(x), differentiable w.r.t. the energy's parameters, even when
        called under ``torch.no_grad()``.
    """
    projections = positive_int(projections, "sliced score matching projections")
    if directions is not None and directions.shape != (projections, *x.shape):
        raise DataError(
            f"directions must have shape (projections, *x.shape) = {(projections, *x.shape)}; "
            f"found {tuple(directions.shape)}"
        )
    with torch.enable_grad():
        x, grad = _energy_gradient(energy, x)
        total = torch.zeros(x.shape[0], dtype=grad.dtype, device=grad.device)  # (B,)
        for k in range(projections):
            if directions is None:
                v = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)  # (B, *event)
            else:
                v = directions[k].to(x.dtype)
            hv = _vector_jacobian(grad, x, v)  # (∇²E) v, (B, *event)
            total = total - (v * hv).flatten(1).sum(1)  # vᵀ∇ₓs v = −vᵀ(∇²E)v
            if not variance_reduced:
                total = total + 0.5 * (v * grad).flatten(1).sum(1).square()
        total = total / projections
        if variance_reduced:
            total = total + 0.5 * grad.flatten(1).square().sum(1)
        return total


def score_matching_denoising(
    energy: Energy,
    x: Tensor,
    sigma: float,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Denoising score matching per example, weighted by λ(σ) = σ².

    Vincent (2011): with x̃ = x + σε, ε ~ N(0, I), the regression

        ½ E_{x, ε} ‖s(x̃) − ∇_x̃ log q_σ(x̃ | x)‖² = ½ E ‖s(x̃) + (x̃ − x)/σ²‖²

    equals ½ E_{q_σ}‖s(x̃) − ∇ log q_σ(x̃)‖² up to a constant, so its minimiser is the score of the
    σ-smoothed density q_σ = p_data ∗ N(0, σ² I), not of p_data itself (for data N(m, S), the
    Gaussian energy that minimises it is N(m, S + σ² I)). The target has norm ‖ε‖/σ, so the loss is
    multiplied by λ(σ) = σ² (Song & Ermon 2019), which keeps it O(D) as σ → 0:

        L(x) = ½ σ² ‖s(x̃) + ε/σ‖² = ½ ‖σ s(x̃) + ε‖²,   s = −∇E.

    One backward pass per call (with the graph kept).

    Args:
        energy: x (B, *event) -> E(x) (B,).
        x: (B, *event) clean data, any event shape.
        sigma: σ > 0, the noise standard deviation in data units.
        generator: draws ε.
        noise: ε (B, *event); drawn with ``generator`` when None.

    Returns:
        (B,) σ²-weighted losses, differentiable w.r.t. the energy's parameters, even when called
        under ``torch.no_grad()``.
    """
    if not sigma > 0:
        raise ConfigError(f"denoising score matching needs sigma > 0; found {sigma}")
    if noise is not None and noise.shape != x.shape:
        raise DataError(f"noise must have the shape of x, {tuple(x.shape)}; found {tuple(noise.shape)}")
    eps = (
        torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator) if noise is None else noise
    )
    with torch.enable_grad():
        _, grad = _energy_gradient(energy, x.detach() + sigma * eps)
        return 0.5 * (eps - sigma * grad).flatten(1).square().sum(1)  # σ s(x̃) = −σ ∇E(x̃)
