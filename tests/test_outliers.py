"""Outlier detection: the detection metrics against closed forms and scikit-learn, each score
against its formula on models whose densities are known, a raw likelihood that fails where its
complexity correction does not, the typicality test's size, the perturbation of a background
model's data, and the ``outliers`` verb through the CLI harness."""

from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.distributions import Normal

import cli_harness as ch
from cli_strategies import Case
from simulacra.data.info import DataInfo
from simulacra.data.transforms import Perturbation
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.metrics.detection import (
    auroc,
    auroc_stderr,
    average_precision,
    detection_report,
    fpr_at_tpr,
)
from simulacra.tasks.outliers import (
    TypicalityTest,
    available_estimators,
    bits_per_dim_score,
    complexity_score,
    compressed_bits,
    energy_score,
    hierarchical_llr_score,
    likelihood_ratio_score,
    log_likelihood,
    nll_score,
)

from presets import TINY

# ----------------------------------------------------------------------------- metrics


def test_metrics_on_a_hand_computed_case() -> None:
    inliers, outliers = [0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 4.0]
    # pairs (out > in) + ½ (out = in): 1 → 1 + ½; 3 → 3 + ½; 4 → 4; of 12
    assert auroc(inliers, outliers) == pytest.approx((1.5 + 3.5 + 4) / 12)
    # thresholds high to low: 4 (TP 1, FP 0), 3 (2, 1), 2 (2, 2), 1 (3, 3), 0 (3, 4)
    ap = (1 / 3) * 1 + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 6)
    assert average_precision(inliers, outliers) == pytest.approx(ap)
    # 95% of 3 outliers needs all three: threshold 1 flags inliers 1, 2, 3
    assert fpr_at_tpr(inliers, outliers) == pytest.approx(3 / 4)
    assert auroc([0, 0], [0, 0]) == 0.5 and auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    with pytest.raises(DataError, match="finite"):
        auroc([0.0, float("nan")], [1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn_with_ties(seed: int) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    rng = np.random.default_rng(seed)
    s_in, s_out = rng.integers(0, 6, 70).astype(float), rng.integers(2, 8, 40).astype(float)
    y, s = np.r_[np.zeros(70), np.ones(40)], np.r_[s_in, s_out]
    assert auroc(s_in, s_out) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(s_in, s_out) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert fpr_at_tpr(s_in, s_out) == pytest.approx(fpr[np.argmax(tpr >= 0.95)])
    assert auroc(s_out, s_in) == pytest.approx(1 - auroc(s_in, s_out))  # the other orientation


def test_delong_standard_error_is_the_spread_over_replications() -> None:
    rng = np.random.default_rng(0)
    values, errors = [], []
    for _ in range(300):
        s_in, s_out = rng.normal(size=40), rng.normal(1.0, 1.0, size=30)
        values.append(auroc(s_in, s_out))
        errors.append(auroc_stderr(s_in, s_out))
    # the binormal AUROC Φ(1/√2) ≈ 0.760 and DeLong's SE of the spread across replications
    assert np.mean(values) == pytest.approx(0.5 * (1 + math.erf(0.5)), abs=0.01)
    assert np.mean(errors) == pytest.approx(np.std(values, ddof=1), rel=0.15)
    report = detection_report(rng.normal(size=5), rng.normal(size=4))
    assert (report.n_in, report.n_out) == (5, 4) and 0 <= report.aupr <= 1


# ----------------------------------------------------------------------------- models with known densities


class Gaussian:
    """A diagonal Gaussian stand-in with an exact likelihood (ExactLikelihood) and energy."""

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = mean, std

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return Normal(self.mean, self.std).log_prob(x).flatten(1).sum(1)

    def energy(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return (((x - self.mean) / self.std) ** 2 / 2).flatten(1).sum(1)


class PerfectProposal:
    """ImportanceWeighted with q = p(z | x), so every importance weight equals log p(x); no
    exact likelihood, so scores take the importance-sampled route."""

    def __init__(self, density: Gaussian) -> None:
        self.density = density

    def log_importance_weights(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        return self.density.log_prob(x).expand(num_samples, -1)


def test_scores_are_their_formulas() -> None:
    x = torch.randn(50, 3, dtype=torch.float64)
    model, background = Gaussian(0.0, 1.0), Gaussian(0.0, 2.0)
    log_p, estimator = log_likelihood(model, x)
    closed = -(x**2 / 2).sum(1) - 1.5 * math.log(2 * math.pi)
    torch.testing.assert_close(log_p, closed)
    assert estimator == "exact"
    info = DataInfo((3,), "real")
    torch.testing.assert_close(nll_score(log_p, estimator).values, -closed)
    bpd = bits_per_dim_score(log_p, info, discrete_likelihood=False, estimator=estimator)
    torch.testing.assert_close(bpd.values, -closed / (3 * math.log(2)))
    log_bg, _ = log_likelihood(background, x)
    llr = likelihood_ratio_score(log_p, log_bg)
    torch.testing.assert_close(llr.values, (x**2 / 2 - x**2 / 8).sum(1) - 3 * math.log(2))
    torch.testing.assert_close(energy_score(model, x).values, (x**2 / 2).sum(1))
    iw, name = log_likelihood(PerfectProposal(model), x, num_samples=7)
    torch.testing.assert_close(iw, closed)
    assert name == "IWAE k=7"
    # discrete data modelled by a density: the dequantization offset D ln(L − 1) is added
    grey = DataInfo((3,), "unit", levels=256)
    shifted = bits_per_dim_score(log_p, grey, discrete_likelihood=False, estimator="")
    torch.testing.assert_close(
        shifted.values - bpd.values, torch.full((50,), math.log2(255), dtype=torch.float64)
    )


def test_the_nll_auroc_of_a_shifted_gaussian_is_its_closed_form(generator: torch.Generator) -> None:
    # in N(0, 1), out N(2, 1): NLL = x²/2 + const, AUROC = P(|Y| > |X|) = ∫ 2φ(x) P(|Y| > x) dx, x ≥ 0
    x_in = torch.randn(3000, 1, generator=generator, dtype=torch.float64)
    x_out = 2 + torch.randn(2000, 1, generator=generator, dtype=torch.float64)
    model = Gaussian(0.0, 1.0)
    scores = [nll_score(log_likelihood(model, x)[0], "").values for x in (x_in, x_out)]
    grid = torch.linspace(0, 10, 20001, dtype=torch.float64)
    normal = Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    tail = 1 - normal.cdf(grid - 2) + normal.cdf(-grid - 2)
    closed = float(torch.trapezoid(2 * normal.log_prob(grid).exp() * tail, grid))
    assert auroc(*scores) == pytest.approx(closed, abs=3 * auroc_stderr(*scores))


class Product:
    """Independent categorical pixels of 8-bit images, p(0) = 0.7, every other level 0.3/255:
    a model of sparse textures (exact likelihood)."""

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        k = torch.round(x * 255)
        per = torch.where(k == 0, math.log(0.7), math.log(0.3 / 255))
        return per.flatten(1).sum(1)


@pytest.mark.parametrize("compressor", ["png", "lzma"])
def test_raw_likelihood_prefers_simpler_images_and_the_complexity_score_does_not(
    compressor: str, generator: torch.Generator
) -> None:
    info = DataInfo((1, 12, 12), "unit", levels=256)
    n = 60
    texture = torch.randint(1, 256, (n, 1, 12, 12), generator=generator) / 255
    inliers = torch.where(torch.rand(n, 1, 12, 12, generator=generator) < 0.7, 0.0, texture)
    constant = torch.zeros(n, 1, 12, 12)  # the likeliest image of all, and the simplest
    model = Product()
    scores = {}
    for name, x in (("in", inliers), ("out", constant)):
        log_p, _ = log_likelihood(model, x)
        bpd = bits_per_dim_score(log_p, info, discrete_likelihood=True, estimator="exact")
        scores[name] = (nll_score(log_p, "").values, complexity_score(bpd, x, info, compressor).values)
    assert auroc(scores["in"][0], scores["out"][0]) == 0.0  # the raw likelihood fails completely
    assert auroc(scores["in"][1], scores["out"][1]) == 1.0  # the corrected score does not


def test_compressed_lengths_respect_incompressibility(generator: torch.Generator) -> None:
    info = DataInfo((1, 16, 16), "unit", levels=256)
    noise = torch.randint(0, 256, (4, 1, 16, 16), generator=generator) / 255
    for compressor in ("png", "lzma"):
        bits = compressed_bits(noise, info, compressor) / info.dim
        assert (bits > 7.5).all()  # random bytes cannot be coded in fewer than about 8 bits each
        constant = compressed_bits(torch.zeros(2, 1, 16, 16), info, compressor) / info.dim
        assert (constant < bits.min() / 3).all()  # a constant image costs little more than its headers
    table = DataInfo((5,), "real")
    assert compressed_bits(torch.randn(3, 5), table, "lzma").shape == (3,)  # any data: lzma
    with pytest.raises(DataError, match="use the lzma compressor"):
        compressed_bits(torch.randn(3, 5), table, "png")


def test_the_typicality_test_has_its_size_and_rejects_the_mode(generator: torch.Generator) -> None:
    model = Gaussian(0.0, 1.0)
    draws = torch.randn(6000, 4, generator=generator, dtype=torch.float64)
    reference, calibration = (log_likelihood(model, d)[0] for d in (draws[:2000], draws[2000:4000]))
    test = TypicalityTest.fit(reference, 5, alpha=0.1, calibration_log_p=calibration, generator=generator)
    assert test.entropy == pytest.approx(4 * 0.5 * math.log(2 * math.pi * math.e), abs=0.1)
    size = test.rejects(log_likelihood(model, draws[4000:])[0]).double().mean().item()
    assert size == pytest.approx(0.1, abs=3 * math.sqrt(0.1 * 0.9 / 400))  # 400 batches under H0
    # batches at the mode have the highest density of all, yet are not typical
    near_mode = 0.1 * torch.randn(500, 4, generator=generator, dtype=torch.float64)
    assert test.rejects(log_likelihood(model, near_mode)[0]).all()
    with pytest.raises(DataError, match="batches of 5"):
        test.statistic(torch.zeros(3))


def test_a_label_conditional_energy_is_scored_by_its_marginal(generator: torch.Generator) -> None:
    from simulacra.models.zoo import build_model

    from presets import DIGITS, TINY

    model = build_model({"name": "jem", **TINY["jem"][0]}, DIGITS)
    x = torch.rand(6, 1, 8, 8, generator=generator)
    with torch.no_grad():  # JEM: E(x) = −logsumexp_y f(x)[y], the logits' marginal
        expected = -torch.logsumexp(model.net.logits(model.to_model(x)), dim=1)
    torch.testing.assert_close(energy_score(model, x).values, expected.double(), rtol=1e-5, atol=1e-5)


def test_the_estimators_of_a_vae_order_as_bounds_and_an_absent_one_is_refused(
    generator: torch.Generator,
) -> None:
    """ELBO ≤ IWAE_k in expectation (Burda et al. 2016, Theorem 1): over 40 digits the
    one-draw ELBO's mean lies below the k = 50 estimate's; "auto" is the IWAE; a VAE has no
    exact likelihood, and asking for one names what it has."""
    from simulacra.models.zoo import build_model

    kwargs, info = TINY["vae"]
    torch.manual_seed(0)
    model = build_model({"name": "vae", **kwargs}, info)
    x = (torch.randint(0, 17, (40, *info.event_shape), generator=generator) / 16).float()
    assert available_estimators(model) == ["iwae", "bound"]
    iwae, name_iwae = log_likelihood(model, x, num_samples=50, estimator="iwae", generator=generator)
    auto, name_auto = log_likelihood(model, x, num_samples=50, generator=torch.Generator().manual_seed(1))
    elbo, name_elbo = log_likelihood(model, x, estimator="bound", generator=generator)
    assert name_iwae == name_auto == "IWAE k=50" and name_elbo != name_iwae
    gap = (iwae - elbo).mean()
    assert gap > 3 * (iwae - elbo).std() / math.sqrt(len(x)) and bool(torch.isfinite(auto).all())
    with pytest.raises(CapabilityError, match="has no 'exact' likelihood estimator; it offers iwae, bound"):
        log_likelihood(model, x, estimator="exact")
    with pytest.raises(ConfigError, match="unknown likelihood estimator 'elbo'"):
        log_likelihood(model, x, estimator="elbo")


def test_a_diffusion_model_is_scored_by_its_ode_or_its_bound(generator: torch.Generator) -> None:
    """A diffusion model offers the probability-flow ODE ("exact", the default) and its VLB
    ("bound", the model's own one-draw bound under the same seed); no IWAE."""
    from simulacra.models.zoo import build_model

    kwargs, info = TINY["score-sde"]
    torch.manual_seed(0)
    model = build_model({"name": "score-sde", **kwargs}, info)
    x = torch.randn(3, *info.event_shape, generator=generator)
    assert available_estimators(model) == ["exact", "bound"]
    g = torch.Generator().manual_seed(3)
    vlb, name = log_likelihood(model, x, batch_size=3, estimator="bound", generator=g)
    from simulacra.metrics.likelihood import seeded

    with torch.no_grad(), seeded(torch.Generator().manual_seed(3), torch.device("cpu")):
        direct = model.eval().log_prob_bound(x, num_samples=1)
    assert name == "VLB" and torch.allclose(vlb.float(), direct, rtol=1e-5, atol=1e-4)
    with pytest.raises(CapabilityError, match="it offers exact, bound"):
        log_likelihood(model, x, estimator="iwae")


def test_the_hierarchical_llr_is_the_gap_between_the_full_and_the_skipping_bound() -> None:
    """On the two-level linear-Gaussian hierarchy with its exact posterior, L = log p(x) for every
    draw, so hllr = log p(x) − L^{>1}_k: positive (L^{>1} is a lower bound) and shrinking towards 0
    as k grows (L^{>1}_k is consistent). A model without groups, or a skip outside 1..L−1, is
    refused."""
    from simulacra.models.zoo import build_model
    from test_hierarchical import data, linear_gaussian, log_marginal

    model, x = linear_gaussian(exact=True), data(50, seed=11)
    one = hierarchical_llr_score(model, x, num_samples=1, generator=torch.Generator().manual_seed(1))
    many = hierarchical_llr_score(model, x, num_samples=400, generator=torch.Generator().manual_seed(2))
    assert one.name == "hllr" and one.unit == "nats" and "L − L^{>1} of 2 groups" in one.meaning
    assert float(one.values.mean()) > 4 * float(one.values.std()) / math.sqrt(50)
    assert 0 < float(many.values.mean()) < 0.2 * float(one.values.mean())
    with torch.no_grad():  # the first term is log p(x) itself: the score is log p(x) − L^{>1}
        log_w = model.log_importance_weights(x, num_samples=400, skip=1)
    l_skip = torch.logsumexp(log_w, 0) - math.log(400)
    assert abs(float((log_marginal(x) - l_skip).mean() - many.values.mean())) < 0.05
    with pytest.raises(ConfigError, match="skips 1 to 1 of the 2 latent groups; found skip=2"):
        hierarchical_llr_score(model, x, skip=2)
    kwargs, info = TINY["vae"]
    vae = build_model({"name": "vae", **kwargs}, info)
    with pytest.raises(CapabilityError, match="vae has no hierarchy of latent groups"):
        hierarchical_llr_score(vae, torch.zeros(2, *info.event_shape))


def test_user_examples_come_into_the_runs_space() -> None:
    from simulacra.cli.outliers import to_model_space

    grey = DataInfo((1, 4, 4), "unit", levels=256)
    images = np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4) * 8
    x = to_model_space(images, grey, "a")  # (N, H, W) 8-bit: channels added, divided by 255
    assert x.shape == (2, 1, 4, 4) and torch.allclose(
        x.flatten(), torch.from_numpy(images.flatten() / 255).float()
    )
    assert torch.equal(to_model_space(images.astype(np.int64).reshape(2, 16), grey, "a"), x)  # flat rows
    table = DataInfo((2,), "real", standardization=((1.0, -2.0), (2.0, 0.5)))
    rows = np.array([[1.0, -2.0], [3.0, -1.5]])
    torch.testing.assert_close(to_model_space(rows, table, "t"), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(DataError, match="values in \\[0, 1\\]"):
        to_model_space(images.astype(np.float32), grey, "a")  # 0..248 as floats: not grey levels
    with pytest.raises(DataError, match="trained on shape \\(2,\\)"):
        to_model_space(np.zeros((3, 5)), table, "t")


# ----------------------------------------------------------------------------- the background's data


def test_perturbation_replaces_entries_at_its_rate_by_uniform_draws(generator: torch.Generator) -> None:
    levels, rate = 5, 0.3
    x = torch.zeros(20000, 10)
    info = DataInfo((10,), "unit", levels=levels)
    out = Perturbation.for_data(rate, info, x)(x, generator)
    k = torch.round(out * (levels - 1))
    assert torch.allclose(out, k / (levels - 1))  # still on the grid
    # P(changed) = μ(1 − 1/L); each other level μ/L
    counts = torch.bincount(k.long().flatten(), minlength=levels).double() / k.numel()
    expected = torch.tensor([1 - rate + rate / levels] + [rate / levels] * (levels - 1), dtype=torch.float64)
    torch.testing.assert_close(counts, expected, atol=0.005, rtol=0)
    table = torch.tensor([[-1.0, 10.0], [3.0, 20.0]])
    real = Perturbation.for_data(1.0, DataInfo((2,), "real"), table)(table.repeat(500, 1), generator)
    assert (real[:, 0] >= -1).all() and (real[:, 0] <= 3).all() and (real[:, 1] >= 10).all()
    assert torch.equal(Perturbation.for_data(0.0, info, x)(x, generator), x)
    with pytest.raises(DataError, match="probability"):
        Perturbation.for_data(1.5, info, x)


def test_data_perturb_applies_to_training_batches_only() -> None:
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig

    clean = load_dataset(DataConfig("digits"))
    noisy = load_dataset(DataConfig("digits", perturb=0.5))
    assert clean.batch_transform is None and noisy.batch_transform is not None
    assert torch.equal(noisy.test.x, clean.test.x)
    batch = noisy.batch_transform(noisy.train.x[:64], torch.Generator().manual_seed(0))
    changed = (batch != noisy.train.x[:64]).double().mean().item()
    assert changed == pytest.approx(0.5 * (1 - 1 / 17), abs=0.03)
    with pytest.raises(DataError, match="data.perturb"):
        load_dataset(DataConfig("digits", perturb=-0.1))


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> ch.Harness:
    return ch.Harness(tmp_path_factory.mktemp("outliers-cli"))


def _npy(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def _images() -> tuple[tuple[str, bytes], ...]:
    rng = np.random.default_rng(1)
    inliers = (rng.integers(0, 17, (30, 8, 8)) / 16).astype(np.float32)
    return (
        ("in.npy", _npy(inliers)),
        ("noise.npy", _npy(rng.random((20, 8, 8)).astype(np.float32))),
        ("flat.npy", _npy(np.full((20, 64), 0.5, np.float32))),  # rows of 64: read as 8x8 images
        ("small.npy", _npy(np.zeros((20, 5, 5), np.float32))),
    )


def _run(harness: ch.Harness, case: Case, read: tuple[str, ...] = ()) -> tuple[ch.Outcome, dict[str, bytes]]:
    """Run ``case`` through the harness, check its promises, and return the files ``read``
    (relative to the case's folder) before the folder is removed."""
    with ch.quiet_warnings():
        outcome = harness.run(case, keep=True)
    (folder,) = harness.cases.glob(f"{harness.count}-*")
    try:
        files = {name: (folder / name).read_bytes() for name in read if (folder / name).is_file()}
    finally:
        shutil.rmtree(folder)
    problems = ch.check(outcome)
    assert not problems, ch.describe(outcome, problems)
    return outcome, files


def test_outliers_verb_writes_scores_whose_metrics_it_reports(harness: ch.Harness) -> None:
    argv = (
        "outliers",
        "m",
        "--data",
        "in.npy",
        "--ood",
        "noise.npy",
        "--ood",
        "flat.npy",
        "--background",
        "v",
    )
    outputs = ("-o", "out/scores.csv", "--plot", "out/hist.png", "--json", "out/metrics.json", "--k", "3")
    case = Case((*argv, *outputs, "--reference-examples", "20", "--batch", "4"), _images(), (("m", "made", "intact"), ("v", "vae", "intact")))  # fmt: skip
    outcome, files = _run(harness, case, ("out/scores.csv", "out/hist.png", "out/metrics.json"))
    assert outcome.status == 0, outcome.stderr
    rows = files["out/scores.csv"].decode().splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["source", "outlier", "index"] and {"nll", "bpd", "llr", "complexity"} <= set(header)
    source = [r.split(",")[0] for r in rows[1:]]
    table = np.array([r.split(",")[1:] for r in rows[1:]], dtype=float)
    assert len(table) == 30 + 20 + 20 and files["out/hist.png"][:4] == b"\x89PNG"
    report = json.loads(files["out/metrics.json"])
    assert {r["score"] for r in report["rows"]} == {"nll", "llr", "complexity", "typicality M=4"}
    for row in report["rows"]:
        if row["level"] != "example":
            assert row["n_in"] == 30 // 4 and 0 <= row["rejected_in"] <= 1
            continue
        col = header.index(row["score"]) - 1
        s_in = table[[s == "in" for s in source], col]
        s_out = table[[s == row["ood"] for s in source], col]
        assert row["auroc"] == pytest.approx(auroc(s_in, s_out))  # the table is the CSV's


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("outliers", "m", "--ood", "noise.npy"), "outliers needs an in-distribution set: give --data IN"),
        (("outliers", "m", "--data", "in.npy"), "outliers needs at least one set of outliers"),
        (
            ("outliers", "m", "--data", "in.npy", "--ood", "small.npy"),
            "the run was trained on shape (1, 8, 8)",
        ),
        (("outliers", "m", "--data", "in.npy", "--ood", "noise.npy", "--score", "llr"), "needs --background"),
        (
            ("outliers", "m", "--data", "in.npy", "--ood", "noise.npy", "--score", "hllr"),
            "made has no hierarchy of latent groups; --score hllr needs a hierarchical VAE",
        ),
        (
            ("outliers", "h", "--data", "in.npy", "--ood", "noise.npy", "--skip", "2"),
            "--skip 2: hvae has 2 latent groups, so hllr skips 1 to 1 of them",
        ),
        (
            ("outliers", "m", "--data", "in.npy", "--ood", "noise.npy", "--estimator", "iwae"),
            "--estimator iwae: the run (made) offers exact",
        ),
    ],
)
def test_outliers_refuses_bad_input_with_one_line(
    harness: ch.Harness, argv: tuple[str, ...], words: str
) -> None:
    runs = (("m", "made", "intact"), ("h", "hvae", "intact"))
    case = Case((*argv, "-o", "scores.csv", "--plot", "h.png"), _images(), runs)
    with ch.quiet_warnings():
        outcome = harness.run(case)
    assert not ch.check(outcome), ch.describe(outcome, ch.check(outcome))
    assert outcome.status == 2 and words in outcome.stderr.strip().splitlines()[-1]
    assert not any(p.endswith(("scores.csv", "h.png")) for p in outcome.after)


def test_outliers_scores_tables(harness: ch.Harness) -> None:
    rng = np.random.default_rng(2)
    near = rng.normal(size=(40, 2)) * 0.3
    far = rng.normal(size=(40, 2)) * 0.3 + 6
    files = tuple(
        (name, ("\n".join(["a,b", *(f"{u},{v}" for u, v in x)]) + "\n").encode())
        for name, x in (("near.csv", near), ("far.csv", far))
    )
    argv = ("outliers", "maf", "--data", "near.csv", "--ood", "far.csv", "--json", "m.json", "--score", "nll")
    case = Case(argv, files, (("maf", "maf", "intact"),))
    outcome, _ = _run(harness, case)
    assert outcome.status == 0, outcome.stderr
    assert "far" in outcome.stdout and "nll" in outcome.stdout


def test_a_hierarchical_vae_run_is_scored_by_its_hierarchical_llr_too(harness: ch.Harness) -> None:
    """hllr is among the default scores of an hvae run: a column of the CSV and a row per outlier
    set in the table, whose AUROC is that of the column."""
    argv = (
        "outliers",
        "h",
        "--data",
        "in.npy",
        "--ood",
        "noise.npy",
        "--k",
        "3",
        "--reference-examples",
        "20",
    )
    outputs = ("-o", "s.csv", "--json", "m.json", "--batch", "4")
    case = Case((*argv, *outputs), _images(), (("h", "hvae", "intact"),))
    outcome, files = _run(harness, case, ("s.csv", "m.json"))
    assert outcome.status == 0, outcome.stderr
    rows = files["s.csv"].decode().splitlines()
    header = rows[0].split(",")
    assert "hllr" in header and "hllr" in outcome.stdout
    table = np.array([r.split(",")[1:] for r in rows[1:]], dtype=float)
    source = [r.split(",")[0] for r in rows[1:]]
    col = header.index("hllr") - 1
    (row,) = [r for r in json.loads(files["m.json"])["rows"] if r["score"] == "hllr"]
    s_in, s_out = (table[[s == name for s in source], col] for name in ("in", "noise"))
    assert np.isfinite(table[:, col]).all() and row["auroc"] == pytest.approx(auroc(s_in, s_out))
