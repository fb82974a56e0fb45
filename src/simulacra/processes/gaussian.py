"""Gaussian perturbations: sampling q(x_t | x₀), the posterior q(x_s | x_t, x₀), and the one place
where the ε, x₀, v and score parameterisations are converted into each other.

With x_t = α x₀ + σ ε, ε ~ N(0, I) (α = α(t), σ = σ(t) of a :class:`NoiseSchedule`):

    ε = (x_t − α x₀)/σ,    x₀ = (x_t − σ ε)/α,    ∇ log q(x_t | x₀) = −ε/σ,
    v = α ε − σ x₀         (Salimans & Ho 2022),  so  x₀ = (α x_t − σ v)/(α² + σ²),
                                                       ε = (σ x_t + α v)/(α² + σ²).

Each conversion is affine in the prediction for fixed (x_t, t), so guidance mixtures and
posterior means (Tweedie: E[x₀ | x_t] = (x_t + σ² ∇ log p_t(x_t))/α) convert the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from simulacra.errors import ConfigError, DataError
from simulacra.processes.schedules import NoiseSchedule

PARAMETERIZATIONS = ("eps", "x0", "v", "score")

Denoise = Callable[[Tensor, Tensor], Tensor]
"""``denoise(x_t (B, *event), t (B,)) -> x̂₀ (B, *event)``: a posterior-mean estimate E[x₀ | x_t]."""


def expand(v: Tensor, x: Tensor) -> Tensor:
    """Per-example coefficients (B,) reshaped to broadcast against x (B, *event)."""
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim()))


def batch_time(t: Tensor) -> Tensor:
    """The distinct times of a (B,) time tensor for schedule arithmetic: ``t[:1]`` (1,) when t is
    one time expanded over the batch (stride 0, as the samplers pass it), else t itself. Either
    broadcasts the same through :func:`expand`; the first costs one schedule evaluation, not B."""
    return t[:1] if t.dim() == 1 and t.shape[0] > 1 and t.stride(0) == 0 else t


def noise_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """ε ~ N(0, I) of x's shape, dtype and device, drawn with ``generator`` (on the generator's
    device, then moved: a CPU generator serves a model on a GPU, and the draw is the same)."""
    if generator is not None and generator.device != x.device:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def check_parameterization(name: str) -> str:
    if name not in PARAMETERIZATIONS:
        raise ConfigError(
            f"unknown parameterization {name!r}; expected one of {', '.join(PARAMETERIZATIONS)}"
        )
    return name


def q_sample(
    process: NoiseSchedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """x_t = α(t) x₀ + σ(t) ε, a draw from q(x_t | x₀).

    Args:
        process: the noise schedule.
        x0: (B, *event) clean data.
        t: (B,) times in [0, 1].
        noise: ε (B, *event); drawn from N(0, I) with ``generator`` when None.

    Returns:
        (x_t, ε), both (B, *event).
    """
    if noise is None:
        noise = noise_like(x0, generator)
    alpha, sigma = process.alpha_sigma(t.to(x0.dtype))
    return expand(alpha, x0) * x0 + expand(sigma, x0) * noise, noise


def transition(process: NoiseSchedule, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(α_{t|s}, σ²_{t|s}) of q(x_t | x_s) = N(α_{t|s} x_s, σ²_{t|s} I), s < t:
    α_{t|s} = α_t/α_s, σ²_{t|s} = σ_t² − α²_{t|s} σ_s² (Kingma et al. 2021, eq. 3)."""
    alpha_s, sigma_s = process.alpha_sigma(s)
    alpha_t, sigma_t = process.alpha_sigma(t)
    a = alpha_t / alpha_s
    return a, (sigma_t**2 - a**2 * sigma_s**2).clamp_min(0.0)


def q_posterior(
    process: NoiseSchedule, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_s | x_t, x₀), s < t (Ho et al. 2020, eq. 7, for any α, σ):

        μ = (α_{t|s} σ_s² / σ_t²) x_t + (α_s σ²_{t|s} / σ_t²) x₀,    var = σ²_{t|s} σ_s² / σ_t².

    Args:
        x_t, x0: (B, *event); t, s: (B,) times.

    Returns:
        the mean (B, *event) and the variance (B,).
    """
    coef_xt, coef_x0, var = posterior_coefficients(process, t, s)
    return expand(coef_xt, x_t) * x_t + expand(coef_x0, x0) * x0, var


def posterior_coefficients(process: NoiseSchedule, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(α_{t|s} σ_s²/σ_t², α_s σ²_{t|s}/σ_t², σ²_{t|s} σ_s²/σ_t²): the weights of x_t and x₀ in the
    mean of q(x_s | x_t, x₀) and its variance, for times t > s of any shape."""
    a_ts, var_ts = transition(process, s, t)
    alpha_s, sigma_s = process.alpha_sigma(s)
    var_t = process.sigma(t) ** 2
    return a_ts * sigma_s**2 / var_t, alpha_s * var_ts / var_t, var_ts * sigma_s**2 / var_t


def convert(pred: Tensor, source: str, target: str, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Convert a prediction between the ``eps``, ``x0``, ``v`` and ``score`` parameterisations.

    Args:
        pred: (B, *event), a prediction of kind ``source``.
        source, target: names in :data:`PARAMETERIZATIONS`.
        x_t: (B, *event), the noisy input the prediction was made for.
        alpha, sigma: (B,) α(t), σ(t).

    Returns:
        the same prediction expressed as ``target``, (B, *event).
    """
    check_parameterization(source)
    check_parameterization(target)
    if source == target:
        return pred
    a, s = expand(alpha, x_t), expand(sigma, x_t)
    if source == "x0":
        x0 = pred
    elif source == "eps":
        x0 = torch.addcmul(x_t, s, pred, value=-1.0) / a
    elif source == "score":
        x0 = (x_t + s * s * pred) / a  # Tweedie
    else:
        x0 = (a * x_t - s * pred) / (a * a + s * s)
    if target == "x0":
        return x0
    eps = (x_t - a * x0) / s
    if target == "eps":
        return eps
    if target == "score":
        return -eps / s
    return a * eps - s * x0


def target(parameterization: str, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The regression target of a parameterisation for x_t = α x₀ + σ ε: ε, x₀, v = α ε − σ x₀,
    or the score of q(x_t | x₀), −ε/σ; (B, *event) from x0, eps (B, *event) and α, σ (B,)."""
    check_parameterization(parameterization)
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    a, s = expand(alpha, x0), expand(sigma, x0)
    return a * eps - s * x0 if parameterization == "v" else -eps / s


def error_factor(parameterization: str, alpha: Tensor, sigma: Tensor) -> Tensor:
    """k(t) with ‖p̂ − p‖² = k(t) ‖ε̂ − ε‖² for a parameterisation p at the same x_t (B,):
    eps 1, x0 σ²/α², v (α² + σ²)²/α², score 1/σ²."""
    check_parameterization(parameterization)
    if parameterization == "eps":
        return torch.ones_like(alpha)
    if parameterization == "x0":
        return (sigma / alpha) ** 2
    if parameterization == "v":
        return ((alpha**2 + sigma**2) / alpha) ** 2
    return sigma**-2


def gaussian_posterior_mean(x_t: Tensor, alpha: Tensor, sigma: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """E[x₀ | x_t] for Gaussian data x₀ ~ N(μ, Σ): the optimal denoiser in closed form,

        E[x₀ | x_t] = μ + α Σ (α² Σ + σ² I)⁻¹ (x_t − α μ),

    computed through Σ = U diag(λ) Uᵀ as μ + U diag(α λ / (α² λ + σ²)) Uᵀ (x_t − α μ).

    Args:
        x_t: (B, D); alpha, sigma: (B,); mean: (D,); cov: (D, D) symmetric positive semi-definite.

    Returns:
        (B, D) posterior means.
    """
    if x_t.dim() != 2 or mean.shape != x_t.shape[1:] or cov.shape != (x_t.shape[1], x_t.shape[1]):
        raise DataError(
            f"expected x_t (B, D), mean (D,), cov (D, D); found {tuple(x_t.shape)}, {tuple(mean.shape)}, "
            f"{tuple(cov.shape)}"
        )
    lam, u = torch.linalg.eigh(cov.to(x_t.dtype))  # (D,), (D, D)
    a, s = alpha[:, None], sigma[:, None]
    gain = a * lam / (a * a * lam + s * s)  # (B, D)
    r = (x_t - a * mean) @ u  # (B, D) in the eigenbasis
    return mean + (gain * r) @ u.T


def gaussian_marginal_log_prob(
    x_t: Tensor, alpha: Tensor, sigma: Tensor, mean: Tensor, cov: Tensor
) -> Tensor:
    """log N(x_t; α μ, α² Σ + σ² I) in nats, (B,): the exact marginal q_t of Gaussian data."""
    d = x_t.shape[1]
    eye = torch.eye(d, dtype=x_t.dtype, device=x_t.device)
    a, s = alpha[:, None, None], sigma[:, None, None]
    covs = a * a * cov.to(x_t.dtype) + s * s * eye  # (B, D, D)
    dist = torch.distributions.MultivariateNormal(alpha[:, None] * mean, covariance_matrix=covs)
    return dist.log_prob(x_t)


def gaussian_denoiser(process: NoiseSchedule, mean: Tensor, cov: Tensor) -> Denoise:
    """The optimal :data:`Denoise` for data N(μ, Σ) under ``process``: (x_t, t) -> E[x₀ | x_t]."""

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = process.alpha_sigma(t.to(x_t.dtype))
        return gaussian_posterior_mean(x_t, alpha, sigma, mean.to(x_t), cov.to(x_t))

    return denoise
