"""Variational objectives against closed forms on a linear-Gaussian model.

Model: p(z) = N(0, I_d), p(x | z) = N(Wz + b, σ² I_D), so p(x) = N(b, WWᵀ + σ² I) and the exact
posterior is N(μ, Σ) with Σ = (I + WᵀW / σ²)⁻¹, μ = Σ Wᵀ(x − b) / σ².
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from simulacra.distributions import kl_divergence_or_mc, kl_per_dimension
from simulacra.errors import ConfigError
from simulacra.objectives import ELBO, IWAE, log_importance_weights

D, d, SIGMA = 4, 2, 0.5
DT = torch.float64


def _linear_gaussian(orthogonal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    W = torch.randn(D, d, generator=g, dtype=DT)
    if orthogonal:  # orthogonal columns: the exact posterior is diagonal
        W = torch.linalg.qr(W).Q * torch.tensor([2.0, 0.7], dtype=DT)
    b = torch.randn(D, generator=g, dtype=DT)
    return W, b


def _decode(W: torch.Tensor, b: torch.Tensor):
    return lambda z: Independent(Normal(z @ W.T + b, torch.full((z.shape[0], D), SIGMA, dtype=DT)), 1)


def _prior(batch: int) -> Independent:
    return Independent(Normal(torch.zeros(batch, d, dtype=DT), torch.ones(batch, d, dtype=DT)), 1)


def _exact(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor):
    """log p(x) (B,), posterior mean (B, d) and covariance (d, d)."""
    marginal = MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D, dtype=DT))
    cov = torch.linalg.inv(torch.eye(d, dtype=DT) + W.T @ W / SIGMA**2)
    mean = (x - b) @ W @ cov / SIGMA**2  # cov symmetric
    return marginal.log_prob(x), mean, cov


def _data(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, D, generator=torch.Generator().manual_seed(5), dtype=DT)


def test_analytic_kl_matches_monte_carlo() -> None:
    q = Independent(Normal(torch.tensor([0.3, -1.0, 2.0]), torch.tensor([0.5, 1.3, 0.2])), 1)
    p = Independent(Normal(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.0, 0.7, 2.0])), 1)
    z = q.sample((200_000,))
    mc = q.log_prob(z) - p.log_prob(z)
    analytic = kl_divergence_or_mc(q, p, z[0])
    assert abs(analytic - mc.mean()) < 4 * mc.std() / math.sqrt(len(mc))
    # per dimension: the terms sum to the total
    torch.testing.assert_close(kl_per_dimension(q, p, z[0]).sum(-1), analytic)


def test_kl_falls_back_to_the_one_sample_estimate() -> None:
    q = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    mix = MixtureSameFamily(
        Categorical(logits=torch.zeros(2)), Independent(Normal(torch.randn(2, 2), torch.ones(2, 2)), 1)
    )
    z = torch.randn(2)
    torch.testing.assert_close(kl_divergence_or_mc(q, mix, z), q.log_prob(z) - mix.log_prob(z))
    with pytest.raises(ConfigError, match="factorized"):
        kl_per_dimension(q, mix, z)


def test_elbo_with_exact_posterior_is_log_marginal() -> None:
    """With q = p(z | x) every log weight equals log p(x): ELBO = IWAE_k = log p(x) exactly."""
    W, b = _linear_gaussian()
    x = _data()
    log_px, mean, cov = _exact(W, b, x)
    q = MultivariateNormal(mean, cov)
    g = torch.Generator().manual_seed(0)
    # the KL(MVN ‖ Independent Normal) has no closed form in torch: one-sample, z-consistent estimate
    terms = ELBO()(x, q, _decode(W, b), _prior(3), generator=g)
    torch.testing.assert_close(terms.bound, log_px, atol=1e-4, rtol=0)
    torch.testing.assert_close(terms.loss, -log_px, atol=1e-4, rtol=0)
    for k in (1, 7):
        torch.testing.assert_close(IWAE(k)(x, q, _decode(W, b), _prior(3), generator=g).bound, log_px)


def test_analytic_kl_elbo_is_unbiased() -> None:
    """Diagonal exact posterior, closed-form KL: the ELBO's average over draws is log p(x)."""
    W, b = _linear_gaussian(orthogonal=True)
    x = _data(1).expand(20_000, D)
    log_px, mean, cov = _exact(W, b, x)
    assert torch.allclose(cov, torch.diag(cov.diag()))
    q = Independent(Normal(mean, cov.diag().sqrt().expand_as(mean)), 1)
    terms = ELBO()(x, q, _decode(W, b), _prior(x.shape[0]), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(terms.kl, kl_divergence(q, _prior(x.shape[0])))
    se = terms.bound.std() / math.sqrt(x.shape[0])
    assert abs(terms.bound.mean() - log_px[0]) < 4 * se


def test_iwae_bound_increases_with_k_and_stays_below_log_px() -> None:
    """Poor encoder: E[L_1] < E[L_5] < E[L_50] ≤ log p(x), and E[L_1] is the closed-form ELBO."""
    W, b = _linear_gaussian(orthogonal=True)
    x = _data(2)
    log_px, mean, cov = _exact(W, b, x)
    q_mean, q_std = mean + 0.8, 2.0 * cov.diag().sqrt().expand_as(mean)
    q = Independent(Normal(q_mean, q_std), 1)
    # closed-form ELBO: E_q log p(x|z) - KL(q ‖ p)
    resid = x - q_mean @ W.T - b
    rec = -0.5 * (resid**2).sum(1) / SIGMA**2 - 0.5 * ((W**2).sum(0) * q_std**2).sum(1) / SIGMA**2
    rec = rec - 0.5 * D * math.log(2 * math.pi * SIGMA**2)
    elbo = rec - kl_divergence(q, _prior(2))
    g = torch.Generator().manual_seed(2)
    repeats, means = 400, {}
    for k in (1, 5, 50):
        log_w = log_importance_weights(x, q, _decode(W, b), _prior(2), repeats * k, generator=g)
        bounds = torch.logsumexp(log_w.reshape(repeats, k, 2), 1) - math.log(k)  # (R, B)
        means[k] = (bounds.mean(0), bounds.std(0) / math.sqrt(repeats))
    (m1, s1), (m5, s5), (m50, s50) = means[1], means[5], means[50]
    assert (abs(m1 - elbo) < 4 * s1).all()
    assert (m5 - m1 > 3 * torch.hypot(s1, s5)).all()
    assert (m50 - m5 > 3 * torch.hypot(s5, s50)).all()
    assert (m50 < log_px + 3 * s50).all()
    assert (log_px - elbo > 0.5).all()  # the encoder really is poor


def test_iwae_with_one_sample_is_the_mc_elbo() -> None:
    W, b = _linear_gaussian(orthogonal=True)
    x = _data()
    _, mean, cov = _exact(W, b, x)
    q = Independent(Normal(mean + 0.3, cov.diag().sqrt().expand_as(mean)), 1)
    iwae = IWAE(1)(x, q, _decode(W, b), _prior(3), generator=torch.Generator().manual_seed(4))
    elbo = ELBO(analytic_kl=False)(x, q, _decode(W, b), _prior(3), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(iwae.bound, elbo.bound)
    torch.testing.assert_close(iwae.loss, elbo.loss)


def _diag_setup() -> tuple[torch.Tensor, Independent, Callable[[torch.Tensor], Independent], Independent]:
    W, b = _linear_gaussian(orthogonal=True)
    x = _data(4)
    _, mean, cov = _exact(W, b, x)
    mean = mean.clone().requires_grad_(True)
    q = Independent(Normal(mean, cov.diag().sqrt().expand_as(mean)), 1)
    return x, q, _decode(W, b), _prior(4)


def test_beta_scales_the_kl_term_of_the_loss_only() -> None:
    x, q, decode, prior = _diag_setup()
    one = ELBO()(x, q, decode, prior, generator=torch.Generator().manual_seed(0))
    objective = ELBO(beta=3.0)
    three = objective(x, q, decode, prior, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(three.loss - one.loss, 2.0 * one.kl)
    torch.testing.assert_close(three.bound, one.bound)
    objective.beta = 0.0  # what a warm-up callback does
    zero = objective(x, q, decode, prior, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(zero.loss, -one.reconstruction)


def test_free_bits_change_the_loss_not_the_elbo() -> None:
    x, q, decode, prior = _diag_setup()
    plain = ELBO()(x, q, decode, prior, generator=torch.Generator().manual_seed(0))
    kl_dims = kl_divergence(q.base_dist, prior.base_dist).detach()  # (B, d)
    lam = float(kl_dims.mean(0).min() + kl_dims.mean(0).max()) / 2  # one dimension below λ, one above
    free = ELBO(free_bits=lam)(x, q, decode, prior, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(free.bound, plain.bound)
    torch.testing.assert_close(free.kl, plain.kl)
    expected = -plain.reconstruction.mean() + kl_dims.mean(0).clamp(min=lam).sum()
    torch.testing.assert_close(free.loss.mean(), expected)
    assert not torch.allclose(free.loss.mean(), plain.loss.mean())
    # the clamped dimension gets no gradient from its KL
    below = int(kl_dims.mean(0).argmin())
    (grad_kl,) = torch.autograd.grad((free.loss + free.reconstruction).sum(), q.base_dist.loc)
    assert torch.all(grad_kl[:, below] == 0) and torch.all(grad_kl[:, 1 - below] != 0)


def test_objectives_reject_bad_settings() -> None:
    with pytest.raises(ConfigError, match="num_samples"):
        IWAE(0)
    with pytest.raises(ConfigError, match="free_bits"):
        ELBO(free_bits=-1.0)
    assert IWAE(5).beta == 1.0
