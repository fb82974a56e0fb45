"""MCMC kernels against targets with known moments, and the replay buffer.

MALA and HMC leave the target exactly invariant; ULA's stationary law is biased by O(ε): for
N(0, σ²) its chain is the AR(1) x' = (1 − ε/σ²) x + √(2ε) z, stationary variance
σ² / (1 − ε/(2σ²)); SGLD's x' = (1 − ε/σ²) x + s z has variance s² σ⁴ / (ε (2σ² − ε)).
Tolerances are 4 standard errors of the Monte Carlo estimates; sample-quality checks compare an
MMD² with the spread of the MMD² between two exact samples of the same size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal, Normal

from simulacra.data.info import DataInfo
from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError, DataError
from simulacra.metrics.two_sample import median_bandwidth, mmd
from simulacra.models.zoo import build_model
from simulacra.samplers.mcmc import HMC, MALA, SGLD, Kernel, ReplayBuffer, UnadjustedLangevin, run_chain

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
TARGET = MultivariateNormal(MEAN, COV)


def _target_draws(n: int, seed: int) -> torch.Tensor:
    """n exact draws of N(μ, Σ), (n, 2) float64."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return MEAN + z @ torch.linalg.cholesky(COV).T


def test_kernels_follow_the_protocol() -> None:
    for kernel in (MALA(0.1), UnadjustedLangevin(0.1), SGLD(0.1), HMC(0.1), MALA(0.1, (-1.0, 1.0))):
        assert isinstance(kernel, Kernel)


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
    for kernel in (MALA(0.5), UnadjustedLangevin(0.5), SGLD(0.5, 0.1), HMC(0.3, 3)):
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
    for bad in (lambda: SGLD(0.1, -0.5), lambda: SGLD(0.1, math.inf)):
        with pytest.raises(ConfigError, match="noise scale must be non-negative and finite"):
            bad()
    for bounds in ((1.0, -1.0), (0.0, 0.0), (0.0, math.inf), (math.nan, 1.0)):
        with pytest.raises(ConfigError, match="finite with lo < hi"):
            MALA(0.1, bounds)
    with pytest.raises(ConfigError, match="pair"):
        HMC(0.1, bounds=(1.0,))  # type: ignore[arg-type]
    for n in (0, 2.5, True):
        with pytest.raises(ConfigError, match="num_leapfrog >= 1"):
            HMC(0.1, n)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="step size must be positive"):
        HMC(-0.1)
    with pytest.raises(DataError, match=r"needs starting points inside the box"):
        MALA(0.1, (-1.0, 1.0)).init(torch.full((3, 2), 2.0), TARGET.log_prob)


# A 2-D Gaussian mixture with overlapping modes (so that chains can cross between them).
MIX_WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
MIX_MEANS = torch.tensor([[-1.0, 0.0], [1.0, 0.8], [0.5, -1.2]], dtype=torch.float64)
MIX_COVS = torch.tensor(
    [[[0.4, 0.1], [0.1, 0.3]], [[0.3, -0.1], [-0.1, 0.4]], [[0.25, 0.0], [0.0, 0.2]]], dtype=torch.float64
)
MIXTURE = MixtureSameFamily(Categorical(MIX_WEIGHTS), MultivariateNormal(MIX_MEANS, MIX_COVS))


def _mixture_draws(n: int, seed: int) -> torch.Tensor:
    return sample_from(MIXTURE, (n,), torch.Generator().manual_seed(seed))


def _mixture_moments() -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture's mean Σ w_k μ_k and covariance Σ w_k (C_k + μ_k μ_kᵀ) − μ μᵀ, in closed form."""
    mean = MIX_WEIGHTS @ MIX_MEANS
    second = (MIX_WEIGHTS[:, None, None] * (MIX_COVS + MIX_MEANS[:, :, None] * MIX_MEANS[:, None, :])).sum(0)
    return mean, second - torch.outer(mean, mean)


LANGEVIN_CASES = {"MALA": MALA(0.1), "HMC": HMC(0.15, 5), "ULA small step": UnadjustedLangevin(0.002)}


@pytest.mark.parametrize("name", list(LANGEVIN_CASES))
def test_kernels_leave_a_gaussian_mixture_invariant(name: str) -> None:
    """Chains started at n exact draws of the mixture are, after any number of steps, n
    independent draws of it again (for ULA up to its O(ε) bias, far below the tolerance at
    ε = 0.002): the sample mean and covariance match the closed forms within 4 standard errors,
    SE(mean_j) = √(Σ_jj/n), SE(cov_jk) = sd((x_j − μ_j)(x_k − μ_k))/√n (from 200,000 exact draws)."""
    n = 4000
    mean, cov = _mixture_moments()
    centred = _mixture_draws(200_000, 20) - mean
    products = centred[:, :, None] * centred[:, None, :]  # (N, 2, 2)
    se_cov = products.std(0) / math.sqrt(n)
    se_mean = (cov.diagonal() / n).sqrt()
    state = run_chain(
        LANGEVIN_CASES[name], _mixture_draws(n, 21), MIXTURE.log_prob, 40, torch.Generator().manual_seed(22)
    ).state
    x = state.x
    assert ((x.mean(0) - mean).abs() < 4 * se_mean).all(), (x.mean(0), mean, se_mean)
    assert ((torch.cov(x.T) - cov).abs() < 4 * se_cov).all(), (torch.cov(x.T), cov, se_cov)
    assert state.acceptance_rate > 0.5  # the chains moved


def test_chains_started_from_noise_reach_the_mixture() -> None:
    """From broad noise N(0, 3² I), MALA, HMC and ULA with a small step end at the mixture: the MMD²
    to an exact sample of the same size is within the data-vs-data floor (the mean + 4 sd of
    MMD² between 8 pairs of exact samples); the noise itself and ULA with a large step are not."""
    n = 1000
    reference = _mixture_draws(n, 30)
    bandwidth = median_bandwidth(reference)
    null = torch.tensor([mmd(_mixture_draws(n, 31 + i), reference, bandwidth=bandwidth) for i in range(8)])
    floor = float(null.mean() + 4 * null.std())
    noise = 3.0 * torch.randn(n, 2, generator=torch.Generator().manual_seed(40), dtype=torch.float64)
    assert mmd(noise, reference, bandwidth=bandwidth) > 20 * floor
    runs = {"MALA": (MALA(0.1), 300), "HMC": (HMC(0.15, 5), 100), "ULA": (UnadjustedLangevin(0.02), 500)}
    for name, (kernel, steps) in runs.items():
        x = run_chain(kernel, noise, MIXTURE.log_prob, steps, torch.Generator().manual_seed(41)).state.x
        assert mmd(x, reference, bandwidth=bandwidth) < floor, name
    biased = run_chain(
        UnadjustedLangevin(0.5), noise, MIXTURE.log_prob, 100, torch.Generator().manual_seed(41)
    )
    assert mmd(biased.state.x, reference, bandwidth=bandwidth) > 3 * floor


def test_hmc_acceptance_rate_tends_to_one_as_the_step_shrinks() -> None:
    x0 = _target_draws(2000, 5)
    rates = []
    for eps in (1.2, 0.5, 0.1, 0.01):
        state = run_chain(HMC(eps, 5), x0, TARGET.log_prob, 5, torch.Generator().manual_seed(6)).state
        assert bool(((state.accept_prob >= 0) & (state.accept_prob <= 1)).all())
        rates.append(state.acceptance_rate)
    assert rates == sorted(rates), rates
    assert rates[-1] > 0.999 and rates[0] < 0.5


@pytest.mark.parametrize("bounds", [None, (-0.5, 2.0)])
def test_sgld_without_a_noise_scale_is_ula_exactly(bounds: tuple[float, float] | None) -> None:
    """SGLD(ε) with s = None draws the same noise and makes the same moves as ULA(ε)."""
    x0 = _target_draws(64, 50).clamp(-0.5, 2.0)
    a = run_chain(
        SGLD(0.2, bounds=bounds), x0, TARGET.log_prob, 15, torch.Generator().manual_seed(51), thin=1
    )
    b = run_chain(
        UnadjustedLangevin(0.2, bounds), x0, TARGET.log_prob, 15, torch.Generator().manual_seed(51), thin=1
    )
    assert torch.equal(a.samples, b.samples) and torch.equal(a.state.log_prob, b.state.log_prob)
    assert SGLD(0.2).noise == math.sqrt(0.4) and SGLD(0.2, 0.01).noise == 0.01
    c = run_chain(SGLD(0.2, 0.3, bounds), x0, TARGET.log_prob, 15, torch.Generator().manual_seed(51))
    assert not torch.equal(c.state.x, b.state.x)


def _ar1_variance(eps: float, s: float, sigma: float, v0: float, steps: int) -> float:
    """Var(x_t) of x' = (1 − ε/σ²) x + s z from Var(x_0) = v0, by iterating v ← a² v + s²."""
    a, v = 1.0 - eps / sigma**2, v0
    for _ in range(steps):
        v = a * a * v + s * s
    return v


@pytest.mark.parametrize(("eps", "s"), [(0.3, 0.3), (0.3, 1.2), (1.0, 0.01)])
def test_sgld_stationary_variance_is_the_ar1_formula(eps: float, s: float) -> None:
    """On N(0, σ²), SGLD is an AR(1): its variance after t steps is the iterated recursion,
    which converges to the documented s² σ⁴ / (ε (2σ² − ε)), and the chains' variance matches
    it within 4 standard errors (s = 0.01, ε = 1 is JEM's setting: a variance far below σ²)."""
    sigma, n, steps = 1.5, 40_000, 200
    stationary = s**2 * sigma**4 / (eps * (2 * sigma**2 - eps))
    after = _ar1_variance(eps, s, sigma, sigma**2, steps)
    assert after == pytest.approx(stationary, rel=1e-9)
    assert _ar1_variance(eps, s, sigma, sigma**2, 1) == pytest.approx(
        (1 - eps / sigma**2) ** 2 * sigma**2 + s**2
    )
    target = Normal(torch.tensor(0.0, dtype=torch.float64), sigma)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return target.log_prob(x).sum(1)

    x0 = sigma * torch.randn(n, 1, generator=torch.Generator().manual_seed(52), dtype=torch.float64)
    x = run_chain(SGLD(eps, s), x0, log_prob, steps, torch.Generator().manual_seed(53)).state.x
    se = stationary * math.sqrt(2 / n)
    assert abs(float(x.var()) - stationary) < 4 * se, (float(x.var()), stationary)
    assert abs(float(x.mean())) < 4 * math.sqrt(stationary / n)


def test_clamped_chains_never_leave_the_box() -> None:
    """ULA and SGLD with bounds clamp every position into the box, even when the target's mass is
    mostly outside it (N((3, 3), I) on [−1, 1]²); they start clamped too."""
    target = MultivariateNormal(torch.full((2,), 3.0), torch.eye(2))
    x0 = 4.0 * torch.randn(256, 2, generator=torch.Generator().manual_seed(60))
    for kernel in (UnadjustedLangevin(0.3, (-1.0, 1.0)), SGLD(1.0, 0.01, (-1.0, 1.0))):
        chain = run_chain(kernel, x0, target.log_prob, 30, torch.Generator().manual_seed(61), thin=1)
        assert chain.samples.min() >= -1.0 and chain.samples.max() <= 1.0
        assert (chain.samples == 1.0).float().mean() > 0.5  # the faces hold the mass: clamping is biased
        assert kernel.init(x0, target.log_prob).x.abs().max() <= 1.0


@pytest.mark.parametrize("kernel", [MALA(0.3, (-1.0, 1.0)), HMC(0.25, 4, (-1.0, 1.0))], ids=["MALA", "HMC"])
def test_rejecting_kernels_keep_a_truncated_gaussians_moments(kernel: Kernel) -> None:
    """MALA and HMC with bounds reject moves out of the box, so N(μ, diag σ²) restricted to
    [−1, 1]² stays invariant: chains started at exact draws (inverse CDF) keep its closed-form
    mean μ + σ (φ(α) − φ(β))/Z and variance σ² (1 + (αφ(α) − βφ(β))/Z − ((φ(α) − φ(β))/Z)²)
    within 4 standard errors, and never leave the box. log p is never evaluated outside it."""
    mu = torch.tensor([0.5, -0.3], dtype=torch.float64)
    sd = torch.tensor([0.6, 0.8], dtype=torch.float64)
    std = Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    alpha, beta = (-1.0 - mu) / sd, (1.0 - mu) / sd
    z = std.cdf(beta) - std.cdf(alpha)
    phi_a, phi_b = std.log_prob(alpha).exp(), std.log_prob(beta).exp()
    mean = mu + sd * (phi_a - phi_b) / z
    var = sd**2 * (1 + (alpha * phi_a - beta * phi_b) / z - ((phi_a - phi_b) / z) ** 2)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        assert x.abs().max() <= 1.0, "evaluated outside the box"
        return Normal(mu, sd).log_prob(x).sum(1)

    n = 20_000
    u = torch.rand(n, 2, generator=torch.Generator().manual_seed(70), dtype=torch.float64)
    x0 = mu + sd * std.icdf(std.cdf(alpha) + u * z)
    chain = run_chain(kernel, x0, log_prob, 20, torch.Generator().manual_seed(71), thin=1)
    x = chain.state.x
    assert chain.samples.abs().max() <= 1.0
    assert ((x.mean(0) - mean).abs() < 4 * (var / n).sqrt()).all(), (x.mean(0), mean)
    se_var = ((x - mean) ** 2).std(0) / math.sqrt(n)
    assert ((x.var(0) - var).abs() < 4 * se_var).all(), (x.var(0), var)
    assert 0.2 < chain.state.acceptance_rate < 0.95  # the box rejected moves


def _constant_noise(value: float, event: tuple[int, ...], calls: list[int]) -> Callable[[int], torch.Tensor]:
    def noise(k: int) -> torch.Tensor:
        calls.append(k)
        return torch.full((k, *event), value)

    return noise


def test_replay_buffer_starts_empty_and_stores_chains() -> None:
    """The first draw is all noise (every slot empty, even with reinit_prob 0); drawn slots are
    distinct; after update, draws return the stored chains."""
    buffer = ReplayBuffer(16, (1, 2, 2), reinit_prob=0.0)
    assert buffer.num_filled == 0 and buffer.chains.shape == (16, 1, 2, 2)
    calls: list[int] = []
    g = torch.Generator().manual_seed(80)
    idx, starts = buffer.draw(10, _constant_noise(-7.0, (1, 2, 2), calls), g)
    assert idx.dtype == torch.long and idx.shape == (10,) and len(set(idx.tolist())) == 10
    assert calls == [10] and bool((starts == -7.0).all())
    ends = idx.float()[:, None, None, None].expand(10, 1, 2, 2).clone().requires_grad_(True)
    buffer.update(idx, ends * 1.0)
    assert buffer.num_filled == 10 and not buffer.chains.requires_grad
    idx2, starts2 = buffer.draw(16, _constant_noise(-7.0, (1, 2, 2), calls), g)
    stored = buffer.filled[idx2]
    assert torch.equal(starts2[stored], idx2[stored].float()[:, None, None, None].expand(-1, 1, 2, 2))
    assert bool((starts2[~stored] == -7.0).all()) and calls[-1] == 6  # the 6 empty slots


def test_replay_buffer_restarts_chains_with_its_probability() -> None:
    """Over 400 draws of 32 of 64 full slots, the fraction restarted from noise is within 4
    binomial standard errors of reinit_prob, and every slot is drawn about equally often."""
    p, size, n, draws = 0.2, 64, 32, 400
    buffer = ReplayBuffer(size, (3,), reinit_prob=p)
    buffer.update(torch.arange(size), torch.arange(size, dtype=torch.float32)[:, None].expand(size, 3))
    g = torch.Generator().manual_seed(81)
    restarted, counts = 0, torch.zeros(size)
    for _ in range(draws):
        idx, starts = buffer.draw(n, lambda k: torch.full((k, 3), -1.0), g)
        restarted += int((starts[:, 0] == -1.0).sum())
        counts += torch.bincount(idx, minlength=size)
    total = n * draws
    assert abs(restarted / total - p) < 4 * math.sqrt(p * (1 - p) / total)
    q = n / size  # each slot is in a draw with probability n/size
    assert ((counts - draws * q).abs() < 5 * math.sqrt(draws * q * (1 - q))).all()


def test_replay_buffer_round_trips_through_a_state_dict_and_checks_its_arguments() -> None:
    buffer = ReplayBuffer(8, (2,), reinit_prob=0.0)
    buffer.update(torch.tensor([1, 5]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert set(buffer.state_dict()) == {"chains", "filled"}
    restored = ReplayBuffer(8, (2,), reinit_prob=0.0)
    restored.load_state_dict(buffer.state_dict())
    assert torch.equal(restored.chains, buffer.chains) and torch.equal(restored.filled, buffer.filled)
    assert restored.num_filled == 2
    idx, starts = restored.draw(8, lambda k: torch.zeros(k, 2), torch.Generator().manual_seed(82))
    assert torch.equal(starts[idx == 5][0], torch.tensor([3.0, 4.0]))
    with pytest.raises(
        ConfigError, match="a replay buffer of 64 chains cannot start a batch of 128; raise buffer_size"
    ):
        ReplayBuffer(64, (2,)).draw(128, lambda k: torch.zeros(k, 2))
    with pytest.raises(ConfigError, match="size >= 1"):
        ReplayBuffer(0, (2,))
    for p in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"reinit_prob is a probability in \[0, 1\]"):
            ReplayBuffer(4, (2,), reinit_prob=p)
    with pytest.raises(DataError, match=r"noise\(3\) must return \(3, 2\)"):
        ReplayBuffer(4, (2,)).draw(3, lambda k: torch.zeros(k, 5))
    with pytest.raises(DataError, match="update needs indices"):
        buffer.update(torch.tensor([0, 1]), torch.zeros(3, 2))
    with torch.inference_mode():  # a sampler run under inference mode can still write back
        buffer.update(torch.tensor([0]), torch.ones(1, 2))
    assert buffer.filled[0]
