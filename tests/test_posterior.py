"""Simulators, neural posterior estimation and its calibration checks (tasks/simulators.py,
tasks/posterior.py, the ``posterior`` preset, metrics/calibration.py, cli/posterior.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from simulacra.cli import main
from simulacra.cli.posterior import load_posterior, save_posterior, train_posterior
from simulacra.data.info import DataInfo
from simulacra.errors import CheckpointError, ConfigError, DataError, UnknownNameError
from simulacra.flows.recipes import FLOW_RECIPES
from simulacra.metrics.calibration import chi2_uniform_test
from simulacra.models.zoo import build_model
from simulacra.tasks.calibration import expected_coverage, posterior_agreement, sbc_ranks
from simulacra.tasks.posterior import ExactPosterior, PosteriorEstimator, simulation_dataset
from simulacra.tasks.simulators import SIMULATORS, GaussianLinear, TwoMoons
from simulacra.train.checkpoint import load_model, load_run_config, save_model


def _trapezoid_1d(log_density, lo: float, hi: float, n: int = 20001) -> tuple[torch.Tensor, torch.Tensor]:
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    return grid, torch.exp(log_density(grid))


# --------------------------------------------------------------------------- gaussian-linear


def test_gaussian_linear_posterior_matches_numerical_bayes_in_1d() -> None:
    sim = GaussianLinear(dim=1, prior_scale=1.5, noise_scale=0.7, mixing=0.8, seed=3)
    a = float(sim.matrix[0, 0])
    assert a != 1.0  # the mixing really scales x
    x = torch.tensor([0.9])

    def unnormalised(theta: torch.Tensor) -> torch.Tensor:  # log p(θ) + log N(x; aθ, σ²), written out
        return -0.5 * (theta / 1.5) ** 2 - 0.5 * ((x.double() - a * theta) / 0.7) ** 2

    grid, p = _trapezoid_1d(unnormalised, -10, 10)
    z = torch.trapezoid(p, grid)
    mean = torch.trapezoid(grid * p, grid) / z
    var = torch.trapezoid((grid - mean) ** 2 * p, grid) / z
    post = sim.true_posterior(x)
    assert float(post.mean[0]) == pytest.approx(float(mean), abs=1e-5)
    assert float(post.variance[0]) == pytest.approx(float(var), rel=1e-5)
    # the normalised density too, at a few points
    theta = torch.tensor([[-1.0], [0.2], [1.3]])
    expected = unnormalised(theta[:, 0].double()) - math.log(float(z))
    torch.testing.assert_close(post.log_prob(theta).double(), expected, atol=1e-5, rtol=0)


def test_gaussian_linear_posterior_matches_gaussian_conditioning() -> None:
    """The precision form Σ = (I/σ₀² + AᵀA/σ²)⁻¹ equals the Schur complement of the joint covariance
    Cov[θ, x] = [[σ₀² I, σ₀² Aᵀ], [σ₀² A, σ₀² AAᵀ + σ² I]], and so do the means, for a batch of x."""
    sim = GaussianLinear(dim=3, prior_scale=0.8, noise_scale=0.3, mixing=0.7, seed=1)
    a, s0, s = sim.matrix, 0.8, 0.3
    c_tt = s0**2 * torch.eye(3, dtype=torch.float64)
    c_tx = s0**2 * a.T
    c_xx = s0**2 * a @ a.T + s**2 * torch.eye(3, dtype=torch.float64)
    gain = c_tx @ torch.linalg.inv(c_xx)
    x = torch.randn(5, 3, dtype=torch.float64)
    post = sim.true_posterior(x)
    assert post.batch_shape == (5,)
    torch.testing.assert_close(post.mean.double(), x @ gain.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(post.covariance_matrix[0].double(), c_tt - gain @ c_tx.T, atol=1e-5, rtol=0)


def test_gaussian_linear_simulator_has_the_stated_law() -> None:
    """Least squares of x on θ over many simulations recovers A, and the residuals have std σ."""
    sim = GaussianLinear(dim=2, noise_scale=0.4, mixing=0.9, seed=5)
    theta, x = sim.simulate_pairs(40000, torch.Generator().manual_seed(0))
    assert theta.shape == x.shape == (40000, 2)
    assert theta.std(0).tolist() == pytest.approx([1.0, 1.0], abs=0.02)
    a_hat = torch.linalg.lstsq(theta.double(), x.double()).solution.T
    torch.testing.assert_close(a_hat, sim.matrix, atol=0.01, rtol=0)
    residual = x.double() - theta.double() @ sim.matrix.T
    assert residual.std(0).tolist() == pytest.approx([0.4, 0.4], abs=0.01)
    assert float(sim.prior_log_prob(torch.zeros(2))) == pytest.approx(-math.log(2 * math.pi))


def test_simulator_registry_and_input_checks() -> None:
    assert {"gaussian-linear", "two-moons"} <= set(SIMULATORS.names())
    with pytest.raises(UnknownNameError, match="two-moons"):
        SIMULATORS.build("two-moon")
    with pytest.raises(ConfigError, match="dim"):
        SIMULATORS.build({"name": "gaussian-linear", "dim": 0})
    sim = SIMULATORS.build({"name": "gaussian-linear", "dim": 2})
    assert SIMULATORS.build(sim.spec()).kwargs() == sim.kwargs()
    with pytest.raises(DataError, match=r"\(\.\.\., 2\)"):
        sim.simulate(torch.zeros(4, 3))
    with pytest.raises(DataError, match="finite"):
        sim.check_x(torch.tensor([0.0, float("nan")]))


# --------------------------------------------------------------------------- two-moons


def test_two_moons_shapes_ranges_and_geometry() -> None:
    sim = TwoMoons()
    g = torch.Generator().manual_seed(0)
    theta = sim.prior_sample(5000, g)
    assert theta.shape == (5000, 2) and float(theta.abs().max()) <= 1.0
    assert theta.mean(0).abs().max() < 0.05 and theta.var(0).tolist() == pytest.approx(
        [1 / 3, 1 / 3], abs=0.02
    )
    x = sim.simulate(theta, g)
    assert x.shape == (5000, 2) and torch.isfinite(x).all()
    # u = x − g(θ) − (0.25, 0) = r (cos a, sin a): radius ≈ N(0.1, 0.01²), angle in (−π/2, π/2)
    t1, t2 = theta.unbind(-1)
    u = x - torch.stack([-(t1 + t2).abs(), t2 - t1], -1) / math.sqrt(2) - torch.tensor([0.25, 0.0])
    r = u.norm(dim=-1)
    assert float(r.mean()) == pytest.approx(0.1, abs=1e-3) and float(r.std()) == pytest.approx(0.01, abs=1e-3)
    assert bool((u[:, 0] > 0).all())
    assert sim.prior_log_prob(torch.tensor([[0.5, -0.5], [1.2, 0.0]])).tolist() == pytest.approx(
        [-math.log(4), -math.inf]
    )


def test_two_moons_likelihood_is_a_normalised_density_of_the_simulator() -> None:
    sim = TwoMoons()
    theta = torch.tensor([0.3, -0.6], dtype=torch.float64)
    centre = sim._shift(theta) + torch.tensor([0.25, 0.0], dtype=torch.float64)
    n, half = 800, 0.16  # even: no grid point at u = 0, where N(r)/(π r) has an integrable e^{-50}/r spike
    axis = torch.linspace(-half, half, n, dtype=torch.float64)
    xx = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1) + centre  # (n, n, 2)
    density = sim.log_likelihood(theta, xx).exp()
    h = float(axis[1] - axis[0])
    assert float(density.sum()) * h * h == pytest.approx(1.0, abs=0.01)
    # the mass of the right half-disc {u₁ > 0} is all of it; simulated points fall where the density is
    x = sim.simulate(theta.float().expand(2000, 2), torch.Generator().manual_seed(1)).double()
    assert float(sim.log_likelihood(theta, x).min()) > -5.0


def test_two_moons_reference_posterior_is_symmetric_and_normalised() -> None:
    sim = TwoMoons(resolution=400)
    post = sim.true_posterior(sim.default_observation())
    theta = post.sample((3000,))
    assert theta.shape == (3000, 2) and float(theta.abs().max()) <= 1.0
    # |θ₁ + θ₂| and θ₂ − θ₁ determine the likelihood: symmetric under θ ↦ (−θ₂, −θ₁)
    mirrored = torch.stack([-theta[:, 1], -theta[:, 0]], -1)
    torch.testing.assert_close(post.log_prob(theta), post.log_prob(mirrored), atol=1e-4, rtol=0)
    # both crescents are populated (bimodal), and the draws sit at high density
    assert 0.35 < float((theta.sum(-1) > 0).double().mean()) < 0.65
    lp = post.log_prob(theta)
    assert float(lp.median()) > 1.0  # a thin crescent: density well above the prior's 1/4
    # as a reference estimator, one grid per observation, with the PosteriorLike shapes
    ref = ExactPosterior(sim)
    x = torch.tensor([[0.0, 0.0], [0.1, -0.05]])
    draws = ref.sample(x, 5, torch.Generator().manual_seed(0))
    assert draws.shape == (5, 2, 2) and ref.log_prob(draws, x).shape == (5, 2)
    assert ref.sample(x[:1], 5).shape == (5, 1, 2) and ref.sample(x[0], 5).shape == (5, 2)
    grid = post.grid  # midpoint rule with the exact log-density gives back Z
    mass = post.log_prob(grid.float()).double().exp().sum() * post.cell**2
    assert float(mass) == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------- the estimator


def _estimator(theta_dim: int, x_dim: int, **settings: object) -> PosteriorEstimator:
    """An untrained estimator: the ``posterior`` preset for θ ∈ R^theta_dim given x ∈ R^x_dim."""
    spec = {"name": "posterior", "context_dim": x_dim, **settings}
    return PosteriorEstimator(build_model(spec, DataInfo((theta_dim,))))


@pytest.mark.parametrize("flow", FLOW_RECIPES.names())
def test_estimator_density_on_the_original_scale_integrates_to_one(flow: str) -> None:
    """log q(θ | x) includes −log s_θ: the density of θ (not of θ̃) integrates to 1 for any weights."""
    torch.manual_seed(0)
    est = _estimator(1, 2, flow=flow, transforms=2, hidden=(16,))
    theta_train = 2.0 + 3.0 * torch.randn(500, 1)  # s_θ ≈ 3: forgetting the log-det gives mass 3
    est.set_standardization(theta_train, torch.randn(500, 2))
    x = torch.tensor([0.3, -1.0])
    with torch.no_grad():
        grid, p = _trapezoid_1d(lambda t: est.log_prob(t[:, None].float(), x).double(), -60, 60, 24001)
    assert float(torch.trapezoid(p, grid)) == pytest.approx(1.0, abs=2e-3)


def test_estimator_shapes_and_input_errors() -> None:
    est = _estimator(3, 2, transforms=1, hidden=(8,), embedding_dim=4)
    g = torch.Generator().manual_seed(0)
    assert est.sample(torch.zeros(2), 7, g).shape == (7, 3)
    draws = est.sample(torch.zeros(4, 2), 7, g)
    assert draws.shape == (7, 4, 3)
    assert est.log_prob(draws, torch.zeros(4, 2)).shape == (7, 4)
    assert est.log_prob(torch.zeros(5, 3), torch.zeros(2)).shape == (5,)
    with pytest.raises(DataError, match=r"\(2,\)"):
        est.sample(torch.zeros(3), 5)
    with pytest.raises(DataError, match=r"\(\.\.\., 3\)"):
        est.log_prob(torch.zeros(5, 2), torch.zeros(2))
    with pytest.raises(UnknownNameError, match="maf"):
        _estimator(2, 2, flow="glowish")
    with pytest.raises(ConfigError, match="'posterior' preset"):
        PosteriorEstimator(build_model({"name": "maf", "transforms": 1, "hidden": [4]}, DataInfo((2,))))


def test_saved_estimator_reloads_through_load_model_with_the_same_densities(tmp_path: Path) -> None:
    """The standard run directory (config.json + model.safetensors) holds the weights and the
    standardisation: load_model rebuilds the ``posterior`` preset through the registry."""
    torch.manual_seed(0)
    est = _estimator(2, 3, flow="nsf", transforms=2, hidden=(8,), embedding_dim=4)
    with torch.no_grad():  # away from the initial weights and the identity standardisation
        for p in est.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    est.set_standardization(
        1.0 + 2.0 * torch.randn(50, 2), torch.randn(50, 3) * torch.tensor([1.0, 3.0, 0.5])
    )
    est.training_summary = {"steps": 7}
    save_posterior(est, tmp_path / "q")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "q").iterdir()}
    theta, x = torch.randn(6, 4, 2), torch.randn(4, 3)
    back = PosteriorEstimator(load_model(tmp_path / "q"))
    torch.testing.assert_close(back.log_prob(theta, x), est.log_prob(theta, x), rtol=0, atol=0)
    again = load_posterior(tmp_path / "q")
    assert again.training_summary == {"steps": 7} and again.x_dim == 3 and again.theta_dim == 2
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(again.sample(x[0], 5, g1), est.sample(x[0], 5, g2))
    other = build_model({"name": "maf", "transforms": 1, "hidden": [4]}, DataInfo((2,)))
    save_model(other, tmp_path / "maf")
    with pytest.raises(CheckpointError, match="no posterior estimator"):
        load_posterior(tmp_path / "maf")


def test_simulation_dataset_splits_and_checks() -> None:
    sim = GaussianLinear(dim=2, seed=0)
    data = simulation_dataset(sim, 50, validation_fraction=0.2, seed=4)
    assert (len(data.train), len(data.valid)) == (40, 10) and data.info.event_shape == (2,)
    assert data.train.y.shape == (40, 2)  # x rides in the label slot
    theta, x = sim.simulate_pairs(50, torch.Generator().manual_seed(4))
    assert torch.equal(data.valid.x, theta[40:]) and torch.equal(data.train.y, x[:40])
    assert simulation_dataset(sim, 5, validation_fraction=0.0).valid is None
    with pytest.raises(ConfigError, match="use more simulations"):
        simulation_dataset(sim, 3, validation_fraction=0.1)
    with pytest.raises(ConfigError, match="simulations"):
        simulation_dataset(sim, 0)


def test_tiny_maf_recovers_the_gaussian_linear_posterior(tmp_path: Path) -> None:
    sim = GaussianLinear(dim=2, noise_scale=0.5, mixing=0.5, seed=0)
    est = train_posterior(
        sim, "maf", 3000, transforms=2, hidden=(32, 32), steps=400, batch_size=128, eval_every=50, patience=4
    )
    summary = est.training_summary
    assert summary["train"] == 2700 and summary["valid"] == 300 and summary["steps"] <= 400
    x = sim.default_observation()
    exact = sim.true_posterior(x)
    draws = est.sample(x, 4000, torch.Generator().manual_seed(0))
    sd = exact.variance.sqrt()
    assert ((draws.mean(0) - exact.mean).abs() / sd).max() < 0.25
    assert ((draws.std(0) / sd) - 1).abs().max() < 0.2
    # the exact posterior's best achievable NLL is its entropy averaged over x: the estimate is near it
    entropy = float(exact.entropy())
    assert summary["best_valid_nll"] == pytest.approx(entropy, abs=0.25)
    agreement = posterior_agreement(est, ExactPosterior(sim), x, 2000, torch.Generator().manual_seed(1))
    assert 0 <= agreement["kl"]["value"] < 0.15
    # save / load: same densities, same draws under the same generator
    save_posterior(est, tmp_path / "q")
    back = load_posterior(tmp_path / "q")
    torch.testing.assert_close(back.log_prob(draws[:50], x), est.log_prob(draws[:50], x))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    torch.testing.assert_close(back.sample(x, 10, g1), est.sample(x, 10, g2))
    assert back.training_summary == summary
    assert load_run_config(tmp_path / "q")["run"]["simulator"]["name"] == "gaussian-linear"


# --------------------------------------------------------------------------- calibration


def test_chi2_p_values_match_tabulated_quantiles() -> None:
    # the 95% quantiles of χ²₁ and χ²₉ are 3.841 and 16.919 (p = 0.05 at those statistics)
    for dof, q95 in ((1, 3.841459), (9, 16.918978)):
        p = float(
            torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), torch.tensor(q95 / 2.0))
        )
        assert p == pytest.approx(0.05, abs=1e-5)
    stat, p = chi2_uniform_test(torch.tensor([10, 10, 10, 10]), torch.full((4,), 0.25))
    assert stat == 0.0 and p == pytest.approx(1.0)
    stat, p = chi2_uniform_test(torch.tensor([30, 10]), torch.tensor([0.5, 0.5]))
    assert stat == pytest.approx(10.0) and p == pytest.approx(math.erfc(math.sqrt(5.0)), rel=1e-6)


def test_sbc_and_coverage_accept_the_exact_posterior_and_flag_miscalibration() -> None:
    sim = GaussianLinear(dim=2, seed=0)

    def run(scale: float):
        q = ExactPosterior(sim, scale=scale)
        sbc = sbc_ranks(q, sim, 1000, 60, torch.Generator().manual_seed(0))
        cov = expected_coverage(q, sim, 1000, 60, torch.Generator().manual_seed(1))
        return sbc, cov

    exact_sbc, exact_cov = run(1.0)
    assert exact_sbc.ranks.shape == (1000, 2) and int(exact_sbc.ranks.max()) <= 60
    assert float(exact_sbc.p_values.min()) > 1e-3
    # A posterior scaled by k about its mean: θ* ∈ HPD_c ⇔ ‖θ* − μ‖²_Σ ≤ −2k² log(1 − c), and
    # ‖θ* − μ‖²_Σ ~ χ²₂, so the coverage is 1 − (1 − c)^{k²} (k = 1, the exact posterior: the diagonal).
    for k, cov in ((1.0, exact_cov), *((k, run(k)[1]) for k in (0.5, 2.0))):
        expected = 1 - (1 - cov.levels) ** (k**2)
        torch.testing.assert_close(cov.coverage, expected, atol=0.05, rtol=0)  # s.e. ≤ 0.016
    narrow_sbc, _ = run(0.5)  # overconfident: the true θ often outside the bulk -> ∪-shaped ranks
    assert float(narrow_sbc.p_values.max()) < 1e-6
    hist = narrow_sbc.histogram()
    assert bool((hist[:, 0] + hist[:, -1] > 3 * hist[:, hist.shape[1] // 2]).all())


def test_exact_posterior_rescaling_keeps_a_normalised_density() -> None:
    sim = GaussianLinear(dim=1, seed=2)
    x = torch.tensor([0.4])
    for scale in (0.5, 2.0):
        q = ExactPosterior(sim, scale=scale)
        grid, p = _trapezoid_1d(lambda t, q=q: q.log_prob(t[:, None].float(), x).double(), -15, 15)
        assert float(torch.trapezoid(p, grid)) == pytest.approx(1.0, abs=1e-4)
        draws = q.sample(x, 20000, torch.Generator().manual_seed(0))
        assert float(draws.std()) == pytest.approx(scale * float(sim.true_posterior(x).stddev[0]), rel=0.03)


def test_calibration_rejects_bad_settings() -> None:
    sim = GaussianLinear(dim=1)
    q = ExactPosterior(sim)
    with pytest.raises(ConfigError, match="bins"):
        sbc_ranks(q, sim, 10, 5, bins=9)
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        expected_coverage(q, sim, 10, 5, levels=(0.5, 1.0))
    with pytest.raises(ConfigError, match="num_trials"):
        sbc_ranks(q, sim, 0, 5)


# --------------------------------------------------------------------------- the command line


def test_cli_posterior_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gl"
    argv = ["posterior", "gaussian-linear", "--flow", "maf", "--simulations", "400", "--steps", "30"]
    argv += ["--samples", "300", "--sbc-trials", "20", "--sbc-samples", "19", "--transforms", "2"]
    argv += ["--hidden", "16", "--out", str(out), "--no-progress", "--observation", "0.1,-0.2,0.3"]
    assert main(argv) == 0
    for name in (
        "config.json",
        "model.safetensors",
        "posterior.png",
        "calibration.png",
        "metrics.json",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["observation"] == pytest.approx([0.1, -0.2, 0.3])
    assert set(metrics["posterior"]) == {"kl", "mean_error", "std_error", "mmd"}
    assert len(metrics["calibration"]["sbc"]["p_values"]) == 3
    assert len(metrics["calibration"]["coverage"]["coverage"]) == 9
    assert "sbc_min_p" in capsys.readouterr().out
    assert load_posterior(out).theta_dim == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["posterior", "gaussian-lin"], "unknown simulator 'gaussian-lin'"),
        (["posterior", "two-moons", "--flow", "glowish"], "unknown flow 'glowish'"),
        (["posterior", "two-moons", "--observation", "0.1,0.2,0.3"], "expected shape (2,)"),
        (["posterior", "two-moons", "--observation", "a,b"], "comma-separated numbers"),
        (["posterior", "two-moons", "--simulations", "0"], "--simulations must be at least 1"),
    ],
)
def test_cli_posterior_errors_are_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
