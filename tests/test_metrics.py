"""Likelihood estimates against closed forms, and MMD against its definition."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from simulacra.data.info import DataInfo
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.metrics.likelihood import (
    Estimate,
    bits_per_dim,
    chunk_sizes,
    dequantization_offset,
    evaluate_nll,
    importance_sampled_log_likelihood,
)
from simulacra.metrics.two_sample import classifier_two_sample_test, mmd, mmd_permutation_test
from simulacra.models.base import ExactLikelihood, ImportanceWeighted, LatentVariableModel, LikelihoodBound


class Reported:
    """The declarations evaluate_nll reads (:class:`LikelihoodReport`), as GenerativeModel's defaults."""

    discrete_likelihood = False
    likelihood_estimator = "exact"
    bound_name = "bound"

    @property
    def preset_name(self) -> str:
        return type(self).__name__


class LinearGaussian(Reported):
    """p(z) = N(0, I_d), p(x | z) = N(Wz + b, σ² I_D); log p(x) = log N(x; b, WWᵀ + σ² I).

    The exact posterior is q*(z | x) = N(S Wᵀ(x − b)/σ², S), S = (I + WᵀW/σ²)⁻¹; with it as
    proposal every importance weight equals log p(x). ``proposal="poor"`` uses a shifted,
    broader diagonal Gaussian instead (heavier tails than the posterior: finite weight variance).
    """

    def __init__(self, dim: int = 5, latent: int = 2, sigma: float = 0.5, proposal: str = "exact") -> None:
        g = torch.Generator().manual_seed(7)
        self.W = torch.randn(dim, latent, generator=g, dtype=torch.float64)
        self.b = torch.randn(dim, generator=g, dtype=torch.float64)
        self.sigma = sigma
        self.latent = latent
        self.proposal = proposal
        self.info = DataInfo((dim,))
        self.event_shape = (dim,)
        self.S = torch.linalg.inv(torch.eye(latent, dtype=torch.float64) + self.W.T @ self.W / sigma**2)

    def prior(self, c: Tensor | None = None) -> Distribution:
        return Independent(Normal(torch.zeros(self.latent, dtype=torch.float64), 1.0), 1)

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        m = (x.double() - self.b) @ self.W @ self.S.T / self.sigma**2  # (B, d)
        if self.proposal == "exact":
            return MultivariateNormal(m, covariance_matrix=self.S)
        return Independent(Normal(m + 0.3, 1.2), 1)

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution:
        return Independent(Normal(z @ self.W.T + self.b, self.sigma), 1)

    def log_importance_weights(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        q = self.encode(x, c)
        z = q.sample((num_samples,))  # (k, B, d)
        return self.prior().log_prob(z) + self.decode(z).log_prob(x.double()) - q.log_prob(z)

    def log_prob_bound(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        w = self.log_importance_weights(x, c, num_samples)
        return torch.logsumexp(w, 0) - math.log(num_samples)

    def marginal_log_prob(self, x: Tensor) -> Tensor:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x.double())

    def sample_data(self, n: int, g: torch.Generator) -> Tensor:
        z = torch.randn(n, self.latent, generator=g, dtype=torch.float64)
        return (
            z @ self.W.T
            + self.b
            + self.sigma * torch.randn(n, self.W.shape[0], generator=g, dtype=torch.float64)
        )


class TableWeights:
    """Deterministic weights: example j (x[:, 0] = j) gets weights table[j, 0..k−1], handed out
    in order across successive calls on the same batch, so any chunking sees the same weights."""

    def __init__(self, n: int, k: int) -> None:
        self.table = (
            30 * torch.randn(n, k, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 500
        )
        self._key: tuple[int, ...] | None = None
        self._offset = 0

    def log_importance_weights(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        rows = x[:, 0].long()
        key = tuple(rows.tolist())
        if key != self._key:
            self._key, self._offset = key, 0
        w = self.table[rows, self._offset : self._offset + num_samples].T
        self._offset += num_samples
        return w


class ExactModel(Reported):
    """log p(x) = log N(x; 0, I): an ExactLikelihood only."""

    info = DataInfo((3,))

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return Independent(Normal(torch.zeros(3), 1.0), 1).log_prob(x)


class BoundOnly(Reported):
    bound_name = "VLB"
    info = DataInfo((3,))

    def log_prob_bound(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        return -(x**2).sum(1) - 1.0


class NoLikelihood(Reported):
    info = DataInfo((3,))

    def sample(self, n: int) -> Tensor:
        return torch.zeros(n, 3)


# --------------------------------------------------------------------------- importance sampling


def test_test_models_have_the_capabilities() -> None:
    lg = LinearGaussian()
    assert isinstance(lg, ImportanceWeighted) and isinstance(lg, LikelihoodBound)
    assert isinstance(lg, LatentVariableModel) and not isinstance(lg, ExactLikelihood)


def test_exact_posterior_gives_the_exact_marginal(generator: torch.Generator) -> None:
    model = LinearGaussian()
    x = model.sample_data(64, generator)
    est = importance_sampled_log_likelihood(model, x, num_samples=7, generator=generator)
    assert est.shape == (64,)
    torch.testing.assert_close(est, model.marginal_log_prob(x), atol=1e-4, rtol=0)


def test_poor_proposal_converges_and_increases_with_k(generator: torch.Generator) -> None:
    model = LinearGaussian(proposal="poor")
    x = model.sample_data(200, generator)
    exact = model.marginal_log_prob(x).mean().item()
    means = [
        importance_sampled_log_likelihood(model, x, num_samples=k, generator=generator).mean().item()
        for k in (1, 10, 100, 2000)
    ]
    assert means == sorted(means), means  # E[log p̂_k] increases with k (Burda et al. 2016, thm 1)
    assert means[0] < exact - 0.5  # the single-sample ELBO is loose for this proposal
    assert abs(means[-1] - exact) < 0.02
    assert means[-1] <= exact + 0.01  # a lower bound in expectation


def test_chunking_is_exact_for_fixed_weights() -> None:
    n, k = 13, 50
    x = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, 4)  # x[:, 0] = example index
    reference = torch.logsumexp(TableWeights(n, k).table, 1) - math.log(k)
    for max_elements, batch_size in [
        (2**26, None),
        (4 * 7, None),
        (4 * 3 * 5, None),
        (2**26, 4),
        (4 * 2 * 6, 2),
    ]:
        est = importance_sampled_log_likelihood(
            TableWeights(n, k), x, num_samples=k, max_elements=max_elements, batch_size=batch_size
        )
        torch.testing.assert_close(est, reference, atol=1e-10, rtol=0)


def test_chunked_equals_unchunked(generator: torch.Generator) -> None:
    exact_model, poor_model = LinearGaussian(), LinearGaussian(proposal="poor")
    x = exact_model.sample_data(40, generator)
    for model, tol in ((exact_model, 1e-5), (poor_model, 0.02)):
        whole = importance_sampled_log_likelihood(
            model, x, num_samples=3000, generator=torch.Generator().manual_seed(0)
        )
        tiny = importance_sampled_log_likelihood(
            model, x, num_samples=3000, max_elements=5 * 7 * 97, generator=torch.Generator().manual_seed(0)
        )
        # exact posterior: identical weights, so chunking changes nothing; poor proposal: the
        # draws differ between layouts, the estimates agree to Monte-Carlo error
        assert abs(whole.mean() - tiny.mean()).item() < tol
        if tol < 1e-3:
            torch.testing.assert_close(whole, tiny, atol=1e-5, rtol=0)


def test_reproducible_under_a_generator_and_restores_the_global_rng() -> None:
    model = LinearGaussian(proposal="poor")
    x = model.sample_data(10, torch.Generator().manual_seed(5))
    state = torch.get_rng_state()
    a = importance_sampled_log_likelihood(
        model, x, num_samples=50, generator=torch.Generator().manual_seed(1)
    )
    b = importance_sampled_log_likelihood(
        model, x, num_samples=50, generator=torch.Generator().manual_seed(1)
    )
    c = importance_sampled_log_likelihood(
        model, x, num_samples=50, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_chunk_sizes_respect_the_budget() -> None:
    assert chunk_sizes(10000, 784, 5000, 2**26) == (17, 5000)  # whole sample sets where they fit
    b, k = chunk_sizes(10000, 784, 5000, 784 * 100)
    assert (b, k) == (1, 100)
    b, k = chunk_sizes(10, 784, 5000, 2**26, batch_size=64)
    assert b == 10 and k * b * 784 <= 2**26
    assert chunk_sizes(3, 784, 10, 2**26) == (3, 10)


def test_bad_inputs_raise_data_errors() -> None:
    model = LinearGaussian()
    with pytest.raises(DataError):
        importance_sampled_log_likelihood(model, torch.zeros(4, 5), num_samples=0)
    with pytest.raises(DataError, match="c has"):
        importance_sampled_log_likelihood(model, torch.zeros(4, 5), torch.zeros(3))


# --------------------------------------------------------------------------- evaluate_nll


def test_evaluate_nll_importance_weighted(generator: torch.Generator) -> None:
    model = LinearGaussian(proposal="poor")
    x = model.sample_data(300, generator)
    out = evaluate_nll(model, x, num_samples=500, generator=torch.Generator().manual_seed(9))
    # real-valued data: nats per dimension, not bits/dim
    assert set(out) == {"nll", "nll_per_dim", "elbo_nll", "elbo_nll_per_dim"}
    assert out["nll"].estimator == "IWAE k=500" and out["elbo_nll"].estimator == "ELBO"
    assert out["nll"].unit == "nats" and out["nll_per_dim"].unit == "nats/dim" and out["nll"].n == 300
    exact_nll = -model.marginal_log_prob(x)
    assert abs(out["nll"].value - exact_nll.mean().item()) < 0.05
    assert out["elbo_nll"].value > out["nll"].value + 0.5  # the ELBO is looser
    # stderr of the mean of per-example NLLs, close to that of the exact NLLs
    assert out["nll"].stderr == pytest.approx(exact_nll.std().item() / math.sqrt(300), rel=0.05)
    assert out["nll_per_dim"].value == pytest.approx(out["nll"].value / 5)
    again = evaluate_nll(model, x, num_samples=500, generator=torch.Generator().manual_seed(9))
    assert again["nll"].value == out["nll"].value and again["elbo_nll"].value == out["elbo_nll"].value


def test_evaluate_nll_exact_bound_and_none() -> None:
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    exact = evaluate_nll(ExactModel(), x, batch_size=7)
    assert set(exact) == {"nll", "nll_per_dim"} and exact["nll"].estimator == "exact"
    nll = -ExactModel().log_prob(x).double()
    assert exact["nll"].value == pytest.approx(nll.mean().item())
    assert exact["nll"].stderr == pytest.approx(nll.std().item() / 10.0)
    assert exact["nll_per_dim"].stderr == pytest.approx(exact["nll"].stderr / 3)

    bound = evaluate_nll(BoundOnly(), x)
    assert set(bound) == {"bound_nll", "bound_nll_per_dim"} and bound["bound_nll"].estimator == "VLB"
    assert bound["bound_nll"].value == pytest.approx(((x**2).sum(1) + 1).mean().item())

    with pytest.raises(CapabilityError, match="NoLikelihood has no likelihood; use --metric mmd"):
        evaluate_nll(NoLikelihood(), x)


def test_estimate_stderr_and_str() -> None:
    e = Estimate.from_values(torch.tensor([1.0, 2.0, 3.0, 4.0]), "exact", "nats")
    assert e.value == 2.5 and e.n == 4
    assert e.stderr == pytest.approx(math.sqrt(5 / 3) / 2)  # Bessel-corrected std / √n
    assert (
        str(Estimate(86.714, 0.2093, "IWAE k=5000", "nats", 10000))
        == "86.71 ± 0.21 nats (IWAE k=5000, n=10000)"
    )
    assert math.isnan(Estimate.from_values(torch.tensor([1.0]), "exact", "nats").stderr)


# --------------------------------------------------------------------------- bits per dimension


def test_bits_per_dim_and_offsets() -> None:
    binary = DataInfo((1, 28, 28), "binary", levels=2)
    assert bits_per_dim(784 * math.log(2), binary) == pytest.approx(1.0)
    torch.testing.assert_close(
        bits_per_dim(torch.tensor([0.0, 784 * math.log(4)], dtype=torch.float64), binary),
        torch.tensor([0.0, 2.0], dtype=torch.float64),
    )
    cifar = DataInfo((3, 32, 32), "unit", levels=256)
    assert dequantization_offset(cifar) == pytest.approx(3072 * math.log(255))
    assert dequantization_offset(cifar, discrete_likelihood=True) == 0.0
    assert dequantization_offset(binary) == 0.0
    assert dequantization_offset(DataInfo((5,), "real")) == 0.0
    # the uniform density on [0, 1]^D (NLL 0 nats) models 8-bit data at log₂ 255 ≈ 8 bits/dim
    assert bits_per_dim(0.0, cifar, offset=dequantization_offset(cifar)) == pytest.approx(math.log2(255))


def test_offset_turns_a_dequantized_density_into_the_discrete_nll() -> None:
    """A density constant on each dequantization bin [k, k+1)/(L−1) with mass P(k) has
    p(x) = P(k)·(L−1); −log p(x) + ln(L−1) must be −log P(k), exactly."""
    levels = 17
    info = DataInfo((1,), "unit", levels=levels)
    probs = torch.softmax(
        torch.randn(levels, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 0
    )
    k = torch.arange(levels)
    u = torch.rand(levels, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = (k + u) / (levels - 1)  # dequantized, scaled data
    density = probs[(x * (levels - 1)).floor().long()] * (levels - 1)
    nll_continuous = -density.log()
    torch.testing.assert_close(nll_continuous + dequantization_offset(info), -probs.log())


def test_evaluate_nll_adds_the_offset_for_continuous_models_of_discrete_data() -> None:
    class Uniform(Reported):
        info = DataInfo((4,), "unit", levels=256)

        def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
            return torch.zeros(x.shape[0])

    x = torch.rand(10, 4)
    assert evaluate_nll(Uniform(), x)["bpd"].value == pytest.approx(math.log2(255))
    assert evaluate_nll(Uniform(), x, discrete_likelihood=True)["bpd"].value == 0.0


# --------------------------------------------------------------------------- MMD


def _mmd_loop(x: Tensor, y: Tensor, sigma: float) -> float:
    def k(a: Tensor, b: Tensor) -> float:
        return math.exp(-((a - b) ** 2).sum().item() / (2 * sigma**2))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_the_unbiased_formula() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g), torch.randn(9, 3, generator=g) + 0.5
    assert mmd(x, y, bandwidth=1.3) == pytest.approx(_mmd_loop(x.double(), y.double(), 1.3), abs=1e-10)
    # images are flattened
    assert mmd(x.reshape(7, 3, 1, 1), y.reshape(9, 1, 3), bandwidth=1.3) == pytest.approx(
        mmd(x, y, bandwidth=1.3)
    )


def test_mmd_same_and_different_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 5, generator=g), torch.randn(300, 5, generator=g)
    z = torch.randn(300, 5, generator=g) + 0.7
    same, different = mmd(x, y), mmd(x, z)
    assert abs(same) < 0.01 and different > 0.05
    assert mmd(x, z, kernel="laplacian") > 0.05
    assert mmd_permutation_test(x, z, 200, torch.Generator().manual_seed(1)) == pytest.approx(1 / 201)


def test_permutation_test_is_calibrated_under_the_null() -> None:
    """Under P = Q the p-value is uniform: about 20% of 60 tests fall below 0.2."""
    g = torch.Generator().manual_seed(0)
    p = torch.tensor(
        [
            mmd_permutation_test(torch.randn(40, 3, generator=g), torch.randn(50, 3, generator=g), 99, g)
            for _ in range(60)
        ]
    )
    assert 0.05 < (p < 0.2).float().mean().item() < 0.4
    assert p.min() >= 1 / 100 and p.max() <= 1.0


def test_mmd_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="different dimensions"):
        mmd(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(DataError, match="at least 2"):
        mmd(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(ConfigError, match="valid kernels"):
        mmd(torch.randn(5, 3), torch.randn(5, 3), kernel="cosine")


def test_the_classifier_two_sample_test_is_chance_for_one_distribution_and_bayes_for_two() -> None:
    """Lopez-Paz & Oquab (2017): on one distribution the held-out accuracy is 1/2 within its
    binomial spread; for N(0, I) against N((1, 0), I) in 2-D it approaches the Bayes accuracy
    Φ(1/2) = 0.691 from below and the test rejects; the interval is Clopper–Pearson's."""
    from scipy.stats import beta

    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(1000, 2, generator=g, dtype=torch.float64) for _ in range(3))
    same = classifier_two_sample_test(a, b, seed=1)
    assert same.n_test == 1000 and same.n_train == 1000
    assert abs(same.accuracy - 0.5) < 3 * 0.5 / math.sqrt(1000) and same.p_value > 0.01
    shifted = classifier_two_sample_test(c + torch.tensor([1.0, 0.0], dtype=torch.float64), a, seed=1)
    bayes = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))
    assert bayes - 0.06 < shifted.accuracy < bayes + 3 * shifted.stderr and shifted.p_value < 1e-9
    k, n = round(shifted.accuracy * shifted.n_test), shifted.n_test
    assert shifted.low == pytest.approx(beta.ppf(0.025, k, n - k + 1), rel=1e-9)
    assert shifted.high == pytest.approx(beta.ppf(0.975, k + 1, n - k), rel=1e-9)
    assert classifier_two_sample_test(c, a, seed=1) == classifier_two_sample_test(c, a, seed=1)
    with pytest.raises(DataError, match="at least 10 examples in each sample"):
        classifier_two_sample_test(a[:9], b)
    with pytest.raises(DataError, match="different dimensions"):
        classifier_two_sample_test(a, b[:, :1])
    with pytest.raises(ConfigError, match="test_fraction must be in"):
        classifier_two_sample_test(a, b, test_fraction=1.0)
