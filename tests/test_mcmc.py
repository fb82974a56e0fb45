"""MCMC kernels against Gaussian targets with known moments.

MALA leaves the target exactly invariant; ULA's stationary law is biased by O(ε): for
N(0, σ²) its chain is the AR(1) x' = (1 − ε/σ²) x + √(2ε) z, stationary variance
σ² / (1 − ε/(2σ²)). Tolerances are 4 standard errors of the Monte Carlo estimates.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, DataError
from simulacra.models.zoo import build_model
from simulacra.samplers.mcmc import MALA, Kernel, UnadjustedLangevin, run_chain

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
TARGET = MultivariateNormal(MEAN, COV)


def _target_draws(n: int, seed: int) -> torch.Tensor:
    """n exact draws of N(μ, Σ), (n, 2) float64."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return MEAN + z @ torch.linalg.cholesky(COV).T


def test_kernels_follow_the_protocol() -> None:
    assert isinstance(MALA(0.1), Kernel) and isinstance(UnadjustedLangevin(0.1), Kernel)


def test_mala_leaves_a_gaussian_invariant_where_ula_does_not() -> None:
    """Chains started at exact draws of N(μ, Σ) stay N(μ, Σ)-distributed under MALA, even with a
    step so large that ULA's covariance is visibly inflated."""
    n, eps = 20_000, 0.5
    x0 = _target_draws(n, 0)
    g = torch.Generator().manual_seed(1)
    mala = run_chain(MALA(eps), x0, TARGET.log_prob, 25, g).state
    x = mala.x
    se_mean = (COV.diagonal() / n).sqrt()
    assert ((x.mean(0) - MEAN).abs() < 4 * se_mean).all()
    var = COV.diagonal()
    se_cov = ((var[:, None] * var[None, :] + COV**2) / n).sqrt()
    assert ((torch.cov(x.T) - COV).abs() < 4 * se_cov).all()
    assert 0.3 < mala.acceptance_rate < 0.95  # the correction was at work
    ula = run_chain(UnadjustedLangevin(eps), x0, TARGET.log_prob, 25, g).state.x
    assert (torch.cov(ula.T).diagonal() - var > 8 * se_cov.diagonal()).all()


def test_a_long_mala_chain_has_the_targets_moments() -> None:
    """Time averages of 400 chains started far from the mode, after burn-in, estimate E[x] and
    E[(x − μ)²] within standard errors (the chains' averages are independent)."""
    chains, steps, burn = 400, 300, 100
    x0 = (MEAN + 4.0).expand(chains, 2).clone()
    chain = run_chain(MALA(0.4), x0, TARGET.log_prob, steps, torch.Generator().manual_seed(2), thin=1)
    kept = chain.samples[burn:]  # (S, B, 2)
    assert kept.shape == (steps - burn, chains, 2)
    for values, truth in ((kept, MEAN), ((kept - MEAN) ** 2, COV.diagonal())):
        per_chain = values.mean(0)  # (B, 2)
        se = per_chain.std(0) / math.sqrt(chains)
        assert ((per_chain.mean(0) - truth).abs() < 4 * se).all(), (per_chain.mean(0), truth, se)


@pytest.mark.parametrize("eps", [0.3, 0.9])
def test_ula_has_its_closed_form_stationary_variance(eps: float) -> None:
    """For N(0, σ²) ULA's stationary variance is σ² / (1 − ε/(2σ²)), not σ²."""
    sigma, n = 1.5, 40_000
    target = Normal(torch.tensor(0.0, dtype=torch.float64), sigma)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return target.log_prob(x).sum(1)

    x0 = sigma * torch.randn(n, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = run_chain(UnadjustedLangevin(eps), x0, log_prob, 200, torch.Generator().manual_seed(4)).state.x
    expected = sigma**2 / (1 - eps / (2 * sigma**2))
    se = expected * math.sqrt(2 / n)
    assert abs(float(x.var()) - expected) < 4 * se
    assert float(x.var()) - sigma**2 > 4 * se


def test_mala_acceptance_rate_tends_to_one_as_the_step_shrinks() -> None:
    x0 = _target_draws(2000, 5)
    rates = []
    for eps in (2.0, 0.3, 0.03, 0.001):
        state = run_chain(MALA(eps), x0, TARGET.log_prob, 10, torch.Generator().manual_seed(6)).state
        assert bool(((state.accept_prob >= 0) & (state.accept_prob <= 1)).all())
        rates.append(state.acceptance_rate)
    assert all(0 < r <= 1 for r in rates) and rates == sorted(rates), rates
    assert rates[-1] > 0.99 and rates[0] < 0.5
    ula = run_chain(UnadjustedLangevin(0.3), x0, TARGET.log_prob, 3, torch.Generator().manual_seed(6)).state
    assert ula.acceptance_rate == 1.0 and ula.num_steps == 3


def test_chains_are_reproducible_under_a_generator() -> None:
    x0 = _target_draws(50, 7)
    for kernel in (MALA(0.5), UnadjustedLangevin(0.5)):
        a, b, c = (
            run_chain(kernel, x0, TARGET.log_prob, 20, torch.Generator().manual_seed(s)).state
            for s in (8, 8, 9)
        )
        assert torch.equal(a.x, b.x) and torch.equal(a.mean_accept_prob, b.mean_accept_prob)
        assert not torch.equal(a.x, c.x)


def test_kernels_turn_gradients_on_themselves_and_sample_a_flows_density() -> None:
    """A flow's log_prob, under no_grad or inference_mode: the kernels take ∇ log p inside, leave
    no graph and no parameter gradient behind."""
    torch.manual_seed(0)
    flow = build_model({"name": "realnvp", "transforms": 2, "hidden": [8]}, DataInfo((2,))).eval()
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            chain = run_chain(MALA(0.05), x0, flow.log_prob, 5, torch.Generator().manual_seed(1), thin=5)
        state = chain.state
        assert chain.samples.shape == (1, 16, 2) and torch.isfinite(state.x).all()
        assert not state.x.requires_grad and not state.grad.requires_grad
        torch.testing.assert_close(state.log_prob, flow.log_prob(state.x).detach())
        assert all(p.grad is None for p in flow.parameters())


def test_bad_settings_raise_errors() -> None:
    with pytest.raises(ConfigError, match="step size must be positive"):
        MALA(0.0)
    with pytest.raises(ConfigError, match="steps >= 1"):
        run_chain(MALA(0.1), torch.zeros(3, 2), TARGET.log_prob, 0)
    with pytest.raises(ConfigError, match="thin"):
        run_chain(MALA(0.1), torch.zeros(3, 2), TARGET.log_prob, 4, thin=5)
    with pytest.raises(DataError, match="one value per chain"):
        UnadjustedLangevin(0.1).init(torch.zeros(3, 2), lambda x: x.sum())
