"""Log-partition-function estimators against normalisers known in closed form.

For f(x) = exp(−½ (x − m)ᵀ Λ (x − m)), Z = (2π)^{D/2} det(Λ)^{−1/2}; restricted to a box with a
diagonal Λ, Z = Π_i √(2π) σ_i (Φ((hi − m_i)/σ_i) − Φ((lo − m_i)/σ_i)). AIS must land within
3 of its own standard errors; quadrature within 1e-4 nats.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    Uniform,
)

from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError, DataError
from simulacra.samplers.mcmc import HMC, MALA, Kernel, LogDensity, MCMCState, UnadjustedLangevin
from simulacra.samplers.partition import (
    LogZEstimate,
    ais_log_z,
    annealing_schedule,
    grid_log_density,
    quadrature_log_z,
)

F64 = torch.float64


def _gaussian_energy(dim: int, seed: int, dtype: torch.dtype = F64) -> tuple[LogDensity, float]:
    """log f(x) = −½ (x − m)ᵀ Λ (x − m) with a random precision Λ, and its log Z."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=F64)
    precision = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=F64)
    mean = 0.5 * torch.randn(dim, generator=g, dtype=F64)

    def log_f(x: torch.Tensor) -> torch.Tensor:
        d = x - mean.to(x.dtype)
        return -0.5 * ((d @ precision.to(x.dtype)) * d).sum(1)

    log_z = 0.5 * dim * math.log(2 * math.pi) - 0.5 * float(torch.logdet(precision))
    return log_f, log_z


def _standard_normal(dim: int, dtype: torch.dtype = F64) -> Independent:
    return Independent(Normal(torch.zeros(dim, dtype=dtype), torch.ones(dim, dtype=dtype)), 1)


@pytest.mark.parametrize(("dim", "dtype"), [(2, F64), (10, F64), (10, torch.float32)])
def test_ais_recovers_a_gaussian_normaliser(dim: int, dtype: torch.dtype) -> None:
    log_f, log_z = _gaussian_energy(dim, seed=dim)
    est = ais_log_z(
        log_f,
        _standard_normal(dim, dtype),
        num_chains=256,
        num_distributions=500,
        generator=torch.Generator().manual_seed(1),
    )
    assert isinstance(est, LogZEstimate)
    assert abs(est.log_z - log_z) < 3 * est.stderr, (est, log_z)
    assert 0 < est.stderr < 0.1 and 1.0 <= est.ess <= 256 and 0.5 < est.acceptance_rate <= 1.0
    assert est.method == "AIS, 500 distributions, 256 chains, MALA, sigmoid schedule"
    assert (est.num_distributions, est.num_chains) == (500, 256)


def test_ais_standard_error_shrinks_with_more_chains() -> None:
    """The delta-method standard error falls like 1/√n: 8 times the chains, about √8 ≈ 2.8 times
    smaller (more than 2 here); both estimates are within 3 standard errors."""
    log_f, log_z = _gaussian_energy(2, seed=3)
    few, many = (
        ais_log_z(
            log_f,
            _standard_normal(2),
            num_chains=n,
            num_distributions=100,
            generator=torch.Generator().manual_seed(4),
        )
        for n in (64, 512)
    )
    assert many.stderr < few.stderr / 2, (few.stderr, many.stderr)
    for est in (few, many):
        assert abs(est.log_z - log_z) < 3 * est.stderr


def _truncated_gaussian(
    mean: torch.Tensor, sd: torch.Tensor, lo: float, hi: float
) -> tuple[LogDensity, float]:
    """log f(x) = Σ_i log N-kernel((x_i − m_i)/σ_i) over x's event, never evaluated outside [lo, hi],
    and log ∫_box f."""

    def log_f(x: torch.Tensor) -> torch.Tensor:
        if bool(((x < lo) | (x > hi)).any()):
            raise AssertionError("log f evaluated outside the box")
        return (-0.5 * ((x - mean) / sd) ** 2).flatten(1).sum(1)

    std = Normal(torch.tensor(0.0, dtype=F64), 1.0)
    mass = std.cdf((hi - mean) / sd) - std.cdf((lo - mean) / sd)
    return log_f, float((math.log(math.sqrt(2 * math.pi)) + sd.log() + mass.log()).sum())


@pytest.mark.parametrize("kernel", [None, HMC(0.1, 3, (-1.0, 1.0))], ids=["default MALA", "HMC"])
def test_ais_with_a_uniform_base_on_a_box(kernel: Kernel | None) -> None:
    """A uniform base on [−1, 1]^(2×2) and a Gaussian cut by the box: the default kernel takes the
    bounds from the base's support, so log f is only ever evaluated inside the box."""
    mean = torch.tensor([[0.3, -0.2], [0.0, 0.6]], dtype=F64)
    sd = torch.tensor([[0.5, 0.7], [1.5, 0.4]], dtype=F64)
    log_f, log_z = _truncated_gaussian(mean, sd, -1.0, 1.0)
    base = Independent(Uniform(-torch.ones(2, 2, dtype=F64), torch.ones(2, 2, dtype=F64)), 2)
    est = ais_log_z(
        log_f,
        base,
        num_chains=256,
        num_distributions=300,
        kernel=kernel,
        generator=torch.Generator().manual_seed(5),
    )
    assert abs(est.log_z - log_z) < 3 * est.stderr, (est, log_z)
    assert est.stderr < 0.05 and est.acceptance_rate < 1.0  # the box rejected moves


def _reference_ais(
    log_f: LogDensity, base: Independent, n: int, betas: list[float], kernel: Kernel, steps: int, seed: int
) -> float:
    """AIS as Neal (2001) writes it, every density evaluated afresh: the estimator's reuse of
    log f must not change a single weight."""
    g = torch.Generator().manual_seed(seed)
    x = sample_from(base, (n,), g)
    log_w = torch.zeros(n, dtype=F64)
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]) * (log_f(x) - base.log_prob(x))
        if t == len(betas) - 1:
            break
        beta = betas[t]

        def annealed(y: torch.Tensor, beta: float = beta) -> torch.Tensor:
            return (1 - beta) * base.log_prob(y) + beta * log_f(y)

        state = kernel.init(x, annealed)
        for _ in range(steps):
            state = kernel.step(state, annealed, g)
        x = state.x
    return float(torch.logsumexp(log_w, 0) - math.log(n))


class _Wandering:
    """MALA that also evaluates log p at a point of its own after each step, so the last
    evaluation is never where the chains are: the estimator must then evaluate afresh."""

    def __init__(self, step_size: float) -> None:
        self.mala = MALA(step_size)

    def init(self, x0: torch.Tensor, log_prob: LogDensity) -> MCMCState:
        return self.mala.init(x0, log_prob)

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        new = self.mala.step(state, log_prob, generator)
        log_prob(new.x + 1.0)
        return new


@pytest.mark.parametrize(
    "kernel",
    [MALA(0.2), HMC(0.2, 3), UnadjustedLangevin(0.05), _Wandering(0.2)],
    ids=["MALA", "HMC", "ULA", "wandering"],
)
def test_ais_reuses_evaluations_without_changing_the_estimate(kernel: Kernel) -> None:
    log_f, _ = _gaussian_energy(3, seed=6)
    base = _standard_normal(3)
    betas = annealing_schedule(40, "linear").tolist()
    expected = _reference_ais(log_f, base, 32, betas, kernel, 2, seed=7)
    est = ais_log_z(
        log_f,
        base,
        num_chains=32,
        num_distributions=40,
        kernel=kernel,
        steps_per_distribution=2,
        schedule="linear",
        generator=torch.Generator().manual_seed(7),
    )
    assert est.log_z == pytest.approx(expected, abs=1e-9)
    assert "× 2 steps" in est.method


def test_ais_log_z_is_a_stochastic_lower_bound() -> None:
    """Jensen: E[log Ẑ] ≤ log Z. With plain importance sampling (2 distributions) from a base much
    wider than the target, the mean of 200 estimates lies below log Z by more than 2 standard errors
    (by about 0.35 nats, 4.7 standard errors, on average over seeds)."""
    log_f, log_z = _gaussian_energy(2, seed=8)
    base = Independent(Normal(torch.zeros(2, dtype=F64), 3 * torch.ones(2, dtype=F64)), 1)
    g = torch.Generator().manual_seed(9)
    estimates = torch.tensor(
        [ais_log_z(log_f, base, num_chains=8, num_distributions=2, generator=g).log_z for _ in range(200)]
    )
    assert estimates.mean() < log_z - 2 * estimates.std() / math.sqrt(200)


def test_ais_is_reproducible_and_works_under_no_grad() -> None:
    log_f, _ = _gaussian_energy(2, seed=10)
    base = _standard_normal(2)

    def run(seed: int) -> LogZEstimate:
        return ais_log_z(
            log_f, base, num_chains=16, num_distributions=20, generator=torch.Generator().manual_seed(seed)
        )

    with torch.no_grad():
        a = run(11)
    assert a == run(11) and a.log_z != run(12).log_z


def test_annealing_schedules_run_exactly_from_zero_to_one() -> None:
    for name in ("linear", "sigmoid"):
        betas = annealing_schedule(101, name)
        assert betas[0] == 0.0 and betas[-1] == 1.0 and bool((betas.diff() > 0).all())
    torch.testing.assert_close(annealing_schedule(5, "linear"), torch.linspace(0, 1, 5, dtype=F64))
    steps = annealing_schedule(101, "sigmoid").diff()
    assert steps[0] < 0.01 < steps[50]  # small steps at the ends, large in the middle
    torch.testing.assert_close(steps, steps.flip(0))  # symmetric


def test_quadrature_recovers_a_scaled_gaussian_mixture() -> None:
    """f = c · (a 2-D mixture density): log Z = log c, on a box holding all but e^−30 of the mass."""
    mixture = MixtureSameFamily(
        Categorical(torch.tensor([0.5, 0.3, 0.2], dtype=F64)),
        MultivariateNormal(
            torch.tensor([[-1.0, 0.0], [1.0, 0.8], [0.5, -1.2]], dtype=F64),
            torch.tensor(
                [[[0.4, 0.1], [0.1, 0.3]], [[0.3, -0.1], [-0.1, 0.4]], [[0.25, 0.0], [0.0, 0.2]]], dtype=F64
            ),
        ),
    )
    log_c = 3.7
    est = quadrature_log_z(
        lambda x: log_c + mixture.log_prob(x), [-6.0, -6.0], [6.0, 6.0], dtype=F64, batch_size=10_000
    )
    assert est.log_z == pytest.approx(log_c, abs=1e-4)
    assert (est.stderr, est.num_distributions, est.num_chains) == (0.0, 0, 512 * 512)
    assert (
        est.method == "quadrature, 512×512 grid" and math.isnan(est.ess) and math.isnan(est.acceptance_rate)
    )


def test_quadrature_in_one_dimension_and_on_a_cut_box() -> None:
    """∫ exp(−x⁴) dx = 2 Γ(5/4); and a Gaussian cut by the box, whose edges cost O(h²)."""
    est = quadrature_log_z(lambda x: -(x[:, 0] ** 4), [-5.0], [5.0], num_points=2000, dtype=F64)
    assert est.log_z == pytest.approx(math.log(2 * math.gamma(1.25)), abs=1e-6)
    assert est.method == "quadrature, 2000 points"
    mean, sd = torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([0.5, 0.9], dtype=F64)
    log_f, log_z = _truncated_gaussian(mean, sd, -1.0, 1.0)
    assert quadrature_log_z(log_f, [-1.0, -1.0], [1.0, 1.0], dtype=F64).log_z == pytest.approx(
        log_z, abs=1e-4
    )
    axes, values = grid_log_density(log_f, [-1.0, -1.0], [1.0, 1.0], 4, dtype=F64)
    torch.testing.assert_close(axes[0], torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=F64))
    assert values.shape == (4, 4)
    torch.testing.assert_close(values[1, 3], log_f(torch.tensor([[-0.25, 0.75]], dtype=F64))[0])


def test_bad_arguments_raise_clear_errors() -> None:
    log_f, _ = _gaussian_energy(2, seed=12)
    base = _standard_normal(2)
    with pytest.raises(ConfigError, match="num_chains >= 2"):
        ais_log_z(log_f, base, num_chains=1)
    with pytest.raises(ConfigError, match="num_distributions >= 2"):
        ais_log_z(log_f, base, num_distributions=1)
    with pytest.raises(
        ConfigError, match="unknown annealing schedule 'cosine'; expected one of linear, sigmoid"
    ):
        ais_log_z(log_f, base, schedule="cosine")
    with pytest.raises(ConfigError, match="steps_per_distribution >= 1"):
        ais_log_z(log_f, base, steps_per_distribution=0)
    with pytest.raises(ConfigError, match=r"batch_shape \(\).*Independent"):
        ais_log_z(log_f, Normal(torch.zeros(2), 1.0))
    with pytest.raises(DataError, match="one value per chain"):
        ais_log_z(lambda x: x, base, num_chains=4, num_distributions=3)
    uniform = Independent(Uniform(-torch.ones(2, dtype=F64), torch.ones(2, dtype=F64)), 1)
    with pytest.raises(
        DataError, match="give the kernel the same bounds"
    ):  # clamp-free ULA walks off the box
        ais_log_z(log_f, uniform, num_chains=16, num_distributions=20, kernel=UnadjustedLangevin(0.5))
    with pytest.raises(ConfigError, match="1 or 2 dimensions"):
        quadrature_log_z(log_f, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="finite low < high"):
        quadrature_log_z(log_f, [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ConfigError, match="num_points >= 1"):
        quadrature_log_z(log_f, [0.0, 0.0], [1.0, 1.0], num_points=0)
    with pytest.raises(DataError, match="one value per point"):
        quadrature_log_z(lambda x: x, [0.0, 0.0], [1.0, 1.0], num_points=4)


def _truncated_normal_log_z(mean: float, std: float, lo: float, hi: float, dim: int) -> float:
    """log ∫_{[lo, hi]^D} exp(−½ Σ ((y − m)/s)²) dy."""
    normal = torch.distributions.Normal(
        torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    )
    mass = normal.cdf(torch.tensor(hi, dtype=torch.float64)) - normal.cdf(
        torch.tensor(lo, dtype=torch.float64)
    )
    return dim * float(torch.log(mass) + math.log(std * math.sqrt(2 * math.pi)))


def test_ais_on_a_box_matches_the_truncated_gaussian_where_box_rejection_stalls() -> None:
    """In many dimensions a box-rejecting MALA stalls (uniform starts sit near the faces: 64-D,
    acceptance < 20%); AIS in the box's tanh coordinates with an adapted step recovers the closed
    form of a 16-D truncated Gaussian within 3 standard errors."""
    from simulacra.samplers.partition import ais_log_z_on_box

    mean, std = 0.2, 0.3

    def log_f(y: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((y - mean) / std).square().flatten(1).sum(1)

    truth = _truncated_normal_log_z(mean, std, -1.0, 1.0, 16)
    estimate = ais_log_z_on_box(
        log_f,
        -1.0,
        1.0,
        (4, 2, 2),
        num_chains=64,
        num_distributions=300,
        generator=torch.Generator().manual_seed(0),
    )
    assert abs(estimate.log_z - truth) < 3 * estimate.stderr, (estimate, truth)
    assert 0.5 < estimate.acceptance_rate < 0.7
    assert "tanh" in estimate.method and "adapted" in estimate.method
    box = torch.distributions.Uniform(-torch.ones(4, 4, 4), torch.ones(4, 4, 4))
    stalled = ais_log_z(
        log_f,
        torch.distributions.Independent(box, 3),
        num_chains=64,
        num_distributions=50,
        generator=torch.Generator().manual_seed(0),
    )
    assert stalled.acceptance_rate < 0.2  # most moves leave the box: why the helper exists


def test_step_adaptation_is_checked() -> None:
    with pytest.raises(ConfigError, match="target_acceptance"):
        ais_log_z(
            lambda x: -x.square().sum(1),
            torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1),
            target_acceptance=1.5,
        )
