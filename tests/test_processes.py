"""Noise schedules and Gaussian perturbations: closed-form moments, SDE coefficients, conversions."""

from __future__ import annotations

import pytest
import torch

from simulacra.errors import ConfigError
from simulacra.processes import SCHEDULES, convert, gaussian_posterior_mean, q_posterior, q_sample
from simulacra.processes.gaussian import (
    batch_time,
    error_factor,
    gaussian_marginal_log_prob,
    transition,
)

NAMES = ["linear", "cosine", "vp", "subvp", "ve"]


def _process(name: str):
    return SCHEDULES.build({"name": name, **({"sigma_max": 5.0} if name == "ve" else {})})


@pytest.mark.parametrize("name", NAMES)
def test_q_sample_has_the_closed_form_moments(name: str) -> None:
    """Monte Carlo mean and variance of x_t ~ q(x_t | x₀) match α x₀ and σ²."""
    process = _process(name)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.tensor([[1.5, -0.5]])
    for t in (0.05, 0.5, 0.95):
        tt = torch.full((n,), t)
        x_t, _ = q_sample(process, x0.expand(n, 2), tt, generator=g)
        alpha, sigma = process.alpha_sigma(torch.tensor(t))
        se = sigma / n**0.5
        torch.testing.assert_close(x_t.mean(0), alpha * x0[0], atol=5 * se.item(), rtol=0)
        torch.testing.assert_close(x_t.var(0), (sigma**2).expand(2), rtol=0.02, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_sde_coefficients_match_alpha_and_sigma(name: str) -> None:
    """f = d log α / dt and g² = dσ²/dt − 2 f σ², checked by central differences (float64)."""
    process = _process(name)
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    h = 1e-6
    f, g2 = process.drift_diffusion(t)
    dlog_alpha = (torch.log(process.alpha(t + h)) - torch.log(process.alpha(t - h))) / (2 * h)
    dvar = (process.sigma(t + h) ** 2 - process.sigma(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(f, dlog_alpha, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g2, dvar - 2 * f * process.sigma(t) ** 2, rtol=1e-5, atol=1e-6)
    assert (g2 > 0).all()
    lam = process.log_snr(t)
    assert (lam[1:] < lam[:-1]).all(), "log-SNR must decrease in t"


def test_schedule_specifics() -> None:
    vp, sub, ve, cos = (_process(n) for n in ("vp", "subvp", "ve", "cosine"))
    t = torch.linspace(0.01, 1, 50, dtype=torch.float64)
    # VP preserves variance, sub-VP has less noise than VP with the same mean, VE keeps α = 1
    torch.testing.assert_close(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones_like(t))
    torch.testing.assert_close(sub.alpha(t), vp.alpha(t))
    assert (sub.sigma(t) < vp.sigma(t)).all()
    assert torch.equal(ve.alpha(t), torch.ones_like(t))
    torch.testing.assert_close(ve.sigma(torch.tensor([0.0, 1.0])), torch.tensor([0.01, 5.0]))
    # the cosine schedule starts at α = 1 and ends at its α(1)² = 1e-5
    torch.testing.assert_close(cos.alpha(torch.tensor([0.0, 1.0], dtype=torch.float64)) ** 2,
                               torch.tensor([1.0, 1e-5], dtype=torch.float64))  # fmt: skip
    # DDPM's discrete ᾱ_i = Π (1 − β_j), β linear from 1e-4 to 0.02 (T = 1000), is the VP limit
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphabar = torch.cumprod(1 - betas, 0)
    i = torch.tensor([10, 100, 500, 999])
    log_alphabar = 2 * torch.log(vp.alpha((i + 1).double() / 1000))
    torch.testing.assert_close(log_alphabar, torch.log(alphabar[i]), rtol=0.01, atol=1e-4)
    assert vp.prior_std == pytest.approx(1.0) and ve.prior_std == pytest.approx((1 + 25) ** 0.5)
    with pytest.raises(ConfigError, match="sigma_min"):
        SCHEDULES.build({"name": "ve", "sigma_min": 2.0, "sigma_max": 1.0})


@pytest.mark.parametrize("name", NAMES)
def test_conversions_round_trip(name: str) -> None:
    """ε -> any parameterisation -> ε is the identity, and the true ε, x₀, v, score agree."""
    process = _process(name)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.98 + 0.01
    x_t, eps = q_sample(process, x0, t, generator=g)
    alpha, sigma = process.alpha_sigma(t)
    a, s = alpha[:, None], sigma[:, None]
    truth = {"eps": eps, "x0": x0, "v": a * eps - s * x0, "score": -eps / s}
    for src, value in truth.items():
        for dst, expected in truth.items():
            torch.testing.assert_close(convert(value, src, dst, x_t, alpha, sigma), expected)
    # ‖Δp‖² = k(t) ‖Δε‖² for every parameterisation
    delta = torch.randn(64, 3, generator=g, dtype=torch.float64)
    for p in truth:
        dp = convert(eps + delta, "eps", p, x_t, alpha, sigma) - truth[p]
        torch.testing.assert_close(dp.pow(2).sum(1), error_factor(p, alpha, sigma) * delta.pow(2).sum(1))
    with pytest.raises(ConfigError, match="parameterization"):
        convert(eps, "noise", "x0", x_t, alpha, sigma)


def test_posterior_is_the_gaussian_conditional() -> None:
    """q(x_s | x_t, x₀) agrees with conditioning the joint Gaussian of (x_s, x_t) given x₀."""
    process = _process("cosine")
    s, t = torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.6], dtype=torch.float64)
    x0 = torch.tensor([[0.7]], dtype=torch.float64)
    x_t = torch.tensor([[-0.2]], dtype=torch.float64)
    a_s, sig_s = process.alpha_sigma(s)
    a_t, sig_t = process.alpha_sigma(t)
    a_ts, var_ts = transition(process, s, t)
    # joint: x_s = a_s x0 + sig_s e1; x_t = a_ts x_s + sqrt(var_ts) e2
    cov_st = a_ts * sig_s**2
    mean = a_s * x0[0] + cov_st / sig_t**2 * (x_t[0] - a_t * x0[0])
    var = sig_s**2 - cov_st**2 / sig_t**2
    mu, v = q_posterior(process, x_t, x0, t, s)
    torch.testing.assert_close(mu[0], mean)
    torch.testing.assert_close(v, var)


def test_gaussian_posterior_mean_is_tweedie() -> None:
    """E[x₀ | x_t] = (x_t + σ² ∇ log q_t(x_t)) / α with q_t = N(α μ, α² Σ + σ² I)."""
    g = torch.Generator().manual_seed(2)
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    a = torch.randn(2, 2, generator=g, dtype=torch.float64)
    cov = a @ a.T + 0.1 * torch.eye(2, dtype=torch.float64)
    x_t = torch.randn(5, 2, generator=g, dtype=torch.float64).requires_grad_(True)
    alpha = torch.full((5,), 0.6, dtype=torch.float64)
    sigma = torch.full((5,), 0.8, dtype=torch.float64)
    (score,) = torch.autograd.grad(gaussian_marginal_log_prob(x_t, alpha, sigma, mean, cov).sum(), x_t)
    expected = (x_t + 0.64 * score) / 0.6
    torch.testing.assert_close(
        gaussian_posterior_mean(x_t.detach(), alpha, sigma, mean, cov), expected.detach()
    )


def test_posterior_on_the_ddpm_grid_is_ho_et_al() -> None:
    """On the grid t_i = i/T of a VP process, q(x_{i−1} | x_i, x₀) has Ho et al.'s (2020, eq. 7)
    mean coefficients √ᾱ_{i−1} β_i/(1 − ᾱ_i), √(1 − β_i)(1 − ᾱ_{i−1})/(1 − ᾱ_i) and variance
    β̃_i = (1 − ᾱ_{i−1}) β_i/(1 − ᾱ_i), with ᾱ = α² and β_i = 1 − ᾱ_i/ᾱ_{i−1}."""
    process = _process("linear")
    i = torch.tensor([2.0, 10.0, 500.0, 1000.0], dtype=torch.float64)
    t, s = i / 1000, (i - 1) / 1000
    abar_t, abar_s = process.alpha(t) ** 2, process.alpha(s) ** 2
    beta = 1 - abar_t / abar_s
    x0, x_t = torch.ones(4, 1, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
    mean, var = q_posterior(process, x_t, x0, t, s)
    torch.testing.assert_close(mean[:, 0], abar_s.sqrt() * beta / (1 - abar_t))
    mean, _ = q_posterior(process, x0, 0 * x0, t, s)
    torch.testing.assert_close(mean[:, 0], (1 - beta).sqrt() * (1 - abar_s) / (1 - abar_t))
    torch.testing.assert_close(var, (1 - abar_s) * beta / (1 - abar_t))


@pytest.mark.parametrize("name", ["linear", "vp", "subvp", "cosine", "ve"])
def test_time_at_log_snr_inverts_the_log_snr(name: str) -> None:
    """t(λ(t)) = t on [t_min, 1], and the closed forms (VP, cosine, VE) agree with the generic
    bisection of the base class."""
    from simulacra.processes.schedules import NoiseSchedule

    process = _process(name)
    t = torch.linspace(process.t_min, 1.0, 101, dtype=torch.float64)
    lam = process.log_snr(t)
    got = process.time_at_log_snr(lam)
    torch.testing.assert_close(got, t, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(got, NoiseSchedule.time_at_log_snr(process, lam), atol=1e-9, rtol=1e-7)
    # α and σ from one call agree with the separate methods
    alpha, sigma = process.alpha_sigma(t)
    torch.testing.assert_close(alpha, process.alpha(t))
    torch.testing.assert_close(sigma, process.sigma(t))


def test_batch_time_evaluates_one_shared_time_once_with_the_same_result() -> None:
    """A time expanded over the batch (how the samplers pass it) is evaluated once; distinct
    times are left alone; either way the conversions give the same x̂₀."""
    process = _process("linear")
    x, pred = torch.randn(4, 2), torch.randn(4, 2)
    shared, full = torch.tensor(0.3).expand(4), torch.full((4,), 0.3)
    assert batch_time(shared).shape == (1,)
    assert batch_time(full) is full
    varied = torch.linspace(0.1, 0.9, 4)
    assert batch_time(varied) is varied
    one = convert(pred, "eps", "x0", x, *process.alpha_sigma(batch_time(shared)))
    torch.testing.assert_close(one, convert(pred, "eps", "x0", x, *process.alpha_sigma(full)))
