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

The variational bound of a discrete-time chain on a grid t_1 < … < t_N (Ho et al. 2020, eq. 5;
Kingma et al. 2021, eq. 13), with p(z_{t_{i−1}} | z_{t_i}) = q(z_{t_{i−1}} | z_{t_i}, x₀ = x̂₀):

    log p(x) ≥ E_q[log p(x | z_{t_1})] − Σ_{i=2}^{N} E_q[½ (SNR(t_{i−1}) − SNR(t_i)) ‖x − x̂₀(z_{t_i}, t_i)‖²]
               − KL(q(z_{t_N} | x) ‖ N(0, s² I)),

with the decoder p(x | z_{t_1}) = N(x̂₀(z_{t_1}, t_1), (σ/α)²_{t_1} I).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from simulacra.errors import ConfigError
from simulacra.processes.gaussian import PARAMETERIZATIONS, Denoise, error_factor, q_sample, target
from simulacra.processes.schedules import NoiseSchedule

WEIGHTINGS = (*PARAMETERIZATIONS, "likelihood")


def loss_weight(weighting: str, process: NoiseSchedule, t: Tensor) -> Tensor:
    """w(t) of the ε-space loss w(t) ‖ε̂ − ε‖², shape of t."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
    alpha, sigma = process.alpha_sigma(t)
    if weighting == "likelihood":
        return 0.5 * process.drift_diffusion(t)[1] / sigma**2
    return error_factor(weighting, alpha, sigma)


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
