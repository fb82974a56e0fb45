"""The energy-based model: its density integrates to one, log Z by quadrature and by AIS against
closed forms, PCD through the one loop recovers a Gaussian's maximum-likelihood parameters, JEM's
classifier and marginal, divergence stops with the energy gap named, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from simulacra.cli import main
from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.errors import CapabilityError, ConfigError, DataError, TrainingError
from simulacra.models.base import EnergyBased, ExactLikelihood
from simulacra.models.ebm import EBM
from simulacra.models.zoo import build_model
from simulacra.objectives.contrastive import ContrastiveDivergence, ScoreMatching
from simulacra.samplers.mcmc import MALA
from simulacra.train import fit
from simulacra.train.callbacks import Callback

TOY = DataInfo((2,), "real")
DIGITS = DataInfo((1, 8, 8), "unit", num_classes=10, levels=17)


class Quadratic(nn.Module):
    """E(y) = ½ (y − μ)ᵀ Λ (y − μ), Λ = L Lᵀ with L lower triangular (positive diagonal)."""

    def __init__(self, dim: int, mean: Tensor | None = None, scale: Tensor | None = None) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim) if mean is None else mean.clone())
        self.raw = nn.Parameter(torch.zeros(dim, dim) if scale is None else scale.clone())

    def cholesky(self) -> Tensor:
        low = torch.tril(self.raw, -1)
        return low + torch.diag(torch.exp(torch.diagonal(self.raw)))

    def precision(self) -> Tensor:
        chol = self.cholesky()
        return chol @ chol.T

    def forward(self, y: Tensor, c: Tensor | None = None) -> Tensor:
        d = (y.flatten(1) - self.mean) @ self.cholesky()
        return 0.5 * d.square().sum(1)


def _ebm(info: DataInfo, energy: nn.Module, **kwargs: object) -> EBM:
    kernel = kwargs.pop("kernel", MALA(0.05, bounds=(-5.0, 5.0)))
    objective = kwargs.pop("objective", ContrastiveDivergence(0.0))
    return EBM(info, energy, kernel, objective, **kwargs)  # type: ignore[arg-type]


def test_the_density_on_a_2d_box_integrates_to_one() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "ebm", "hidden": [16, 16], "quadrature_points": 256}, TOY).eval()
    assert isinstance(model, ExactLikelihood) and isinstance(model, EnergyBased)
    n = 300  # a grid other than the quadrature's
    axis = torch.linspace(-5, 5, n + 1)[:-1] + 5.0 / n
    grid = torch.cartesian_prod(axis, axis)
    mass = model.log_prob(grid).double().exp().sum() * (10.0 / n) ** 2
    assert abs(float(mass) - 1.0) < 2e-3
    assert "exact" in model.likelihood_estimator
    outside = model.log_prob(torch.tensor([[5.5, 0.0]]))
    assert outside.item() == -math.inf


def test_bounded_data_are_scored_in_data_space() -> None:
    """On [0, 1]² data the model lives on [−1, 1]² (y = 2x − 1): p_x integrates to one over [0, 1]²."""
    torch.manual_seed(1)
    info = DataInfo((2,), "unit")
    model = build_model({"name": "ebm", "hidden": [8], "quadrature_points": 200}, info).eval()
    n = 200
    axis = (torch.arange(n) + 0.5) / n
    grid = torch.cartesian_prod(axis, axis)
    mass = model.log_prob(grid).double().exp().sum() / n**2
    assert abs(float(mass) - 1.0) < 2e-3


def _truncated_gaussian_log_z(mean: Tensor, std: Tensor, lo: float, hi: float) -> float:
    """log ∫_box exp(−½ Σ ((y − m)/s)²) dy for a diagonal Gaussian energy."""
    normal = torch.distributions.Normal(mean.double(), std.double())
    mass = normal.cdf(torch.tensor(hi).double()) - normal.cdf(torch.tensor(lo).double())
    return float((torch.log(mass) + torch.log(std.double() * math.sqrt(2 * math.pi))).sum())


@pytest.mark.parametrize(
    "info", [DataInfo((2,), "binary"), DataInfo((2,), "unit", levels=9)], ids=["binary", "levels9"]
)
def test_discrete_data_get_probabilities_that_sum_to_one(info: DataInfo) -> None:
    """On discrete data log_prob is a one-draw dequantization bound whose exponential averages
    to the bin's probability: summed over every level vector, the probabilities are 1; the bound
    itself lies below each log-probability; bits/dim need no offset."""
    torch.manual_seed(2)
    model = build_model({"name": "ebm", "hidden": [8], "quadrature_points": 256}, info).eval()
    assert model.discrete_likelihood and "dequantization bound" in model.likelihood_estimator
    levels = 2 if info.support == "binary" else 9
    ks = torch.arange(levels, dtype=torch.float32) / (levels - 1)
    points = torch.cartesian_prod(ks, ks)  # all L² level vectors
    draws = 4000
    log_p = model.log_prob(points.repeat(draws, 1), generator=torch.Generator().manual_seed(0))
    log_p = log_p.double().reshape(draws, -1)
    probs = log_p.exp().mean(0)  # E_u[exp(bound)] = P(k) exactly
    assert abs(float(probs.sum()) - 1.0) < 5e-3
    assert bool((log_p.mean(0) <= probs.log() + 1e-6).all())  # Jensen: the bound is below
    # the bins tile [0, 1]: a draw in x's bin is quantized back to x, and the centre too
    drawn = model.to_model(points, torch.Generator().manual_seed(1), dequantize=True)
    assert torch.equal(model.from_model(drawn), points)
    assert torch.equal(model.from_model(model.to_model(points)), points)
    assert bool((drawn >= -1).all() and (drawn < 1).all())


@pytest.mark.parametrize("levels", [2, 256])
def test_a_flat_energy_on_discrete_images_is_log2_levels_bits_per_dim(levels: int) -> None:
    """With E ≡ 0 the model is uniform over the L^D level vectors: AIS finds log Z exactly and the
    NLL, through the same evaluation every model uses, is D log L nats, log₂ L bits/dim."""
    from simulacra.metrics.likelihood import evaluate_nll

    info = DataInfo((1, 3, 3), "binary") if levels == 2 else DataInfo((1, 3, 3), "unit", levels=256)

    class Zero(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(()))

        def forward(self, y: Tensor, c: Tensor | None = None) -> Tensor:
            return self.bias * y.flatten(1).sum(1)

    model = _ebm(info, Zero(), ais_chains=8, ais_distributions=20).eval()
    x = torch.randint(0, levels, (5, 1, 3, 3)).float() / (levels - 1)
    result = evaluate_nll(model, x, generator=torch.Generator().manual_seed(0))
    assert result["nll"].value == pytest.approx(9 * math.log(levels), abs=1e-4)
    assert result["bpd"].value == pytest.approx(math.log2(levels), abs=1e-5)


def test_ais_log_z_of_a_truncated_gaussian_is_within_three_standard_errors() -> None:
    dim = 4
    mean = torch.tensor([0.3, -0.2, 0.1, 0.0])
    std = torch.tensor([0.4, 0.5, 0.3, 0.6])
    raw = torch.diag(torch.log(1.0 / std))
    model = _ebm(
        DataInfo((dim,), "real"),
        Quadratic(dim, mean, raw),
        box=2.0,
        ais_chains=200,
        ais_distributions=200,
        ais_step_size=0.02,
    ).eval()
    estimate = model.estimate_log_z(generator=torch.Generator().manual_seed(0))
    truth = _truncated_gaussian_log_z(mean, std, -2.0, 2.0)
    assert estimate.stderr > 0
    assert abs(estimate.log_z - truth) < 3 * estimate.stderr + 1e-3, (estimate, truth)
    # log_prob uses the stored estimate and says what it is
    assert "AIS" in model.likelihood_estimator and "lower bound" in model.likelihood_estimator
    x = torch.zeros(1, dim)
    assert torch.allclose(model.log_prob(x).double(), -model.energy(x).double() - estimate.log_z)


def test_log_z_follows_the_weights() -> None:
    """A stored log Z belongs to the weights it was computed for: changing them recomputes it."""
    model = _ebm(TOY, Quadratic(2), quadrature_points=64).eval()
    first = model.partition().log_z
    with torch.no_grad():
        model.net.raw.add_(torch.eye(2) * 0.5)
    second = model.partition().log_z
    assert second < first - 0.5  # a sharper energy: a smaller Z


def _gaussian_data(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    chol = torch.tensor([[0.8, 0.0], [0.4, 0.5]])
    return torch.randn(n, 2, generator=g) @ chol.T + torch.tensor([0.5, -0.3])


def test_pcd_through_the_loop_recovers_the_maximum_likelihood_gaussian() -> None:
    """A Gaussian energy trained by persistent contrastive divergence with MALA chains (exact
    invariance) in ``fit`` ends near the sample mean and covariance: the ML estimate."""
    torch.manual_seed(0)
    x = _gaussian_data(2000, 0)
    model = _ebm(TOY, Quadratic(2), kernel=MALA(0.1, bounds=(-5.0, 5.0)), steps=5, buffer_size=2000)
    data = Dataset("gauss", TOY, Split(x[:1800]), Split(x[1800:]))
    config = TrainConfig(steps=600, batch_size=200, lr=2e-2, patience=None, eval_every=0, seed=0)
    fit(model, data, config, progress=False)
    train = x[:1800]
    covariance = torch.cov(train.T, correction=0)
    learnt = torch.linalg.inv(model.net.precision().detach())
    assert torch.allclose(model.net.mean.detach(), train.mean(0), atol=0.06)
    assert torch.allclose(learnt, covariance, atol=0.08), (learnt, covariance)


def test_score_matching_ebm_recovers_the_gaussian_and_needs_no_chains() -> None:
    torch.manual_seed(0)
    x = _gaussian_data(1000, 1)
    model = _ebm(TOY, Quadratic(2), objective=ScoreMatching("exact"), chains="noise")
    data = Dataset("gauss", TOY, Split(x))
    fit(model, data, TrainConfig(steps=400, batch_size=250, lr=3e-2, patience=None, seed=0), progress=False)
    learnt = torch.linalg.inv(model.net.precision().detach())
    assert torch.allclose(learnt, torch.cov(x.T, correction=0), atol=0.03)


def test_samples_follow_the_energy() -> None:
    """MALA samples of a fixed Gaussian energy have its mean and covariance."""
    mean = torch.tensor([0.5, -0.5])
    model = _ebm(TOY, Quadratic(2, mean, torch.diag(torch.log(torch.tensor([2.0, 1.0])))), sample_steps=200)
    x = model.sample(4000, generator=torch.Generator().manual_seed(0), init="noise")
    assert torch.allclose(x.mean(0), mean, atol=0.05)
    assert torch.allclose(x.var(0), torch.tensor([0.25, 1.0]), rtol=0.1)
    fewer = model.sample(
        10, generator=torch.Generator().manual_seed(0), steps=3, step_size=0.01, init="noise"
    )
    assert fewer.shape == (10, 2)


def test_jem_classifies_with_the_softmax_and_scores_with_logsumexp() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "jem", "channels": [4, 8], "buffer_size": 16, "steps": 2}, DIGITS).eval()
    x = torch.rand(6, 1, 8, 8)
    logits = model.net.logits(model.to_model(x))
    assert torch.allclose(model.class_log_probs(x), torch.log_softmax(logits, -1), atol=1e-6)
    marginal = model.net(model.to_model(x), None)
    assert torch.allclose(marginal, -torch.logsumexp(logits, -1), atol=1e-6)
    # p(y | x) = exp(−E(x, y)) / exp(−E(x)): the joint energy and the marginal agree with the classifier
    y = torch.arange(6) % 10
    joint = model.net(model.to_model(x), y)
    assert torch.allclose(
        torch.exp(marginal - joint), model.class_log_probs(x).exp()[torch.arange(6), y], atol=1e-5
    )
    out = model.train()(x, y)
    assert {"ce", "accuracy", "energy_gap"} <= set(out.metrics)


def test_an_unconditional_ebm_has_no_classifier() -> None:
    model = build_model({"name": "ebm", "hidden": [8]}, TOY)
    with pytest.raises(CapabilityError, match="no classifier"):
        model.class_log_probs(torch.zeros(2, 2))


class _BreakAt(Callback):
    """From step ``step`` on, any energy gap counts as a divergence."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state) -> None:  # noqa: ANN001
        if state.step == self.step:
            state.model.max_energy_gap = 1e-12


def test_divergence_stops_training_naming_the_energy_gap(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model({"name": "ebm", "hidden": [8], "steps": 2, "buffer_size": 64}, TOY)
    x = _gaussian_data(256, 2)
    data = Dataset("gauss", TOY, Split(x))
    config = TrainConfig(steps=10, batch_size=32, checkpoint_every=1, patience=None, seed=0)
    with pytest.raises(TrainingError, match="energy gap"):
        fit(model, data, config, run_dir=tmp_path / "run", callbacks=[_BreakAt(3)], progress=False)
    from simulacra.train.checkpoint import load_trainer_state

    assert load_trainer_state(tmp_path / "run").step == 3  # the last good checkpoint stays


def test_bad_settings_are_caught_before_training() -> None:
    with pytest.raises(ConfigError, match="step size"):
        build_model({"name": "ebm", "step_size": 0.0}, TOY)
    with pytest.raises(ConfigError):
        build_model({"name": "ebm", "buffer_size": 0}, TOY)
    with pytest.raises(ConfigError, match="chain start"):
        build_model({"name": "ebm", "chains": "somewhere"}, TOY)
    with pytest.raises(ConfigError, match="objective"):
        build_model({"name": "ebm", "objective": "magic"}, TOY)
    with pytest.raises(ConfigError, match="nce_noise 'poisson'; expected one of gaussian, uniform"):
        build_model({"name": "ebm", "objective": "nce", "nce_noise": "poisson"}, TOY)
    uniform = build_model({"name": "ebm", "objective": "nce", "nce_noise": "uniform", "box": 4.0}, TOY)
    assert uniform.objective.noise.low == -4.0 and uniform.objective.noise.high == 4.0
    model = build_model({"name": "ebm", "buffer_size": 16}, TOY)
    with pytest.raises(ConfigError, match="cannot start a batch of 32"):
        model.check_training(32)
    with pytest.raises(DataError, match="box"):
        model.train()(torch.full((4, 2), 9.0))


# -- the command line -----------------------------------------------------------------------------

FAST = ["--steps", "20", "--batch-size", "64", "--no-progress"]
TINY = ["--set", "model.hidden=[16]", "--set", "model.steps=3", "--set", "model.buffer_size=256"]


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ebm") / "run"
    assert main(["train", "ebm", "--data", "moons", "--out", str(run), *FAST, *TINY]) == 0
    return run


def test_cli_trains_samples_and_scores_an_ebm(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.png"
    argv = ["sample", str(toy_run), "-n", "16", "-o", str(out), "--sampler-steps", "5", "--step-size", "0.02"]
    assert main([*argv, "--chain-init", "noise", "--save-tensor", str(tmp_path / "s.npy")]) == 0
    assert out.exists() and (tmp_path / "s.npy").exists()
    capsys.readouterr()
    assert main(["evaluate", str(toy_run), "--metric", "nll"]) == 0
    assert "quadrature" in capsys.readouterr().out


def test_cli_bad_input_is_one_error_line(
    toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = ["train", "ebm", "--data", "moons", *FAST, *TINY]
    for extra, words in [
        (["--set", "model.step_size=-1"], "step size"),
        (["--set", "model.buffer_size=0"], "buffer"),
        (["--set", "model.buffer_size=8"], "cannot start a batch of 64"),
    ]:
        run = tmp_path / "bad"
        assert words in _one_error(capsys, [*train, "--out", str(run), *extra])
        assert not run.exists(), "nothing is written"
    assert "--step-size" in _one_error(capsys, ["sample", str(toy_run), "--step-size", "0"])
    assert "diffusion" in _one_error(capsys, ["sample", str(toy_run), "--sampler", "ddim"])


def test_nce_with_a_trained_flow_as_the_noise_recovers_the_gaussian() -> None:
    """NCE's noise may be any model with ``sample`` and ``log_prob``: a flow trained on the data
    first. The energy then recovers the maximum-likelihood Gaussian, and the flow stays as it was."""
    from simulacra.objectives.contrastive import NCE

    torch.manual_seed(0)
    x = _gaussian_data(2000, 3)
    data = Dataset("gauss", TOY, Split(x))
    flow = build_model({"name": "realnvp", "transforms": 2, "hidden": [16]}, TOY)
    fit(flow, data, TrainConfig(steps=150, batch_size=250, lr=1e-2, patience=None, seed=0), progress=False)
    flow.eval()
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    model = _ebm(TOY, Quadratic(2), objective=NCE(flow, ratio=4), chains="noise")
    fit(model, data, TrainConfig(steps=400, batch_size=250, lr=3e-2, patience=None, seed=0), progress=False)
    learnt = torch.linalg.inv(model.net.precision().detach())
    assert torch.allclose(model.net.mean.detach(), x.mean(0), atol=0.05)
    assert torch.allclose(learnt, torch.cov(x.T, correction=0), atol=0.08), learnt
    assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())


def test_cli_nce_takes_a_trained_flow_run_as_its_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--init FLOW_RUN`` makes the flow NCE's noise: the EBM run records the flow's spec and
    run, holds the flow's weights unchanged after training, and refuses what cannot be noise."""
    from simulacra.models.ebm import ModelNoise
    from simulacra.objectives.contrastive import NCE
    from simulacra.train.checkpoint import load_model, load_run_config

    flow_run, ebm_run = tmp_path / "flow", tmp_path / "ebm"
    quick = ["--steps", "3", "--batch-size", "64", "--no-progress", "--no-eval"]
    flow_args = ["--set", "model.transforms=2", "--set", "model.hidden=[8]"]
    assert main(["train", "realnvp", "--data", "moons", "--out", str(flow_run), *quick, *flow_args]) == 0
    nce = ["train", "ebm", "--data", "moons", *quick, *TINY, "--set", "model.quadrature_points=16"]
    nce += ["--set", "model.objective=nce"]
    assert main([*nce, "--out", str(ebm_run), "--init", str(flow_run)]) == 0
    config = load_run_config(ebm_run)["run"]
    assert config["init"] == str(flow_run) and config["model"]["stage_one"]["name"] == "realnvp"
    flow, model = load_model(flow_run), load_model(ebm_run)
    assert isinstance(model.objective, NCE) and isinstance(model.objective.noise, ModelNoise)
    noise = model.objective.noise.model.state_dict()
    assert all(torch.equal(noise[k], v) for k, v in flow.state_dict().items())
    vae_run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "moons", "--out", str(vae_run), *quick, *flow_args[2:]]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad"
    for argv, words in [
        ([*nce[:-2], "--out", str(bad), "--init", str(flow_run)], "NCE's; found objective='cd'"),
        ([*nce, "--out", str(bad), "--init", str(vae_run)], "must have an exact likelihood"),
    ]:
        assert words in _one_error(capsys, argv), argv
        assert not bad.exists()


def test_a_flow_tilted_by_a_zero_energy_is_the_flow() -> None:
    """p ∝ p_flow · exp(−E_θ) with E_θ ≡ 0 is the flow itself: the tilted EBM's density (log Z by
    quadrature on its box) equals the flow's where the flow's mass lies inside the box."""
    from simulacra.models.ebm import TiltedEnergy

    class Zero(nn.Module):
        def forward(self, y: Tensor, c: Tensor | None = None) -> Tensor:
            return y.new_zeros(y.shape[0])

    torch.manual_seed(0)
    flow = build_model({"name": "maf", "transforms": 2, "hidden": [8]}, TOY)
    spec = {
        "name": "ebm",
        "objective": "nce",
        "stage_one": flow.spec,
        "hidden": [8],
        "quadrature_points": 256,
    }
    model = build_model(spec, TOY)
    model.initialize_from(flow)
    assert isinstance(model.net, TiltedEnergy)
    model.net.net = Zero()
    model.eval()
    x = torch.randn(64, 2)
    assert torch.allclose(model.log_prob(x), flow.eval().log_prob(x), atol=2e-3)
