"""Missing-data imputation: MIWAE's bound, the Student-t decoder, importance-sampled imputation
against the closed form of a linear-Gaussian model, every imputing model's observed entries, and
``simulacra impute`` end to end with its bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simulacra.cli import main
from simulacra.data.info import DataInfo
from simulacra.distributions.heads import BernoulliHead, GaussianHead, StudentTHead, log_prob_observed
from simulacra.distributions.lazy import Amortized
from simulacra.distributions.standard import DiagonalGaussian, StandardNormal
from simulacra.errors import DataError
from simulacra.models.vae import VAE
from simulacra.models.zoo import build_model
from simulacra.nn.embeddings import ContextNet
from simulacra.objectives.variational import IWAE, importance_sample
from simulacra.tasks.impute import impute

from presets import TINY, context_for

# -- the Student-t decoder and the likelihood of the observed entries ----------------------------


def test_student_t_head_is_the_student_t_density_of_each_entry() -> None:
    from scipy import stats

    head = StudentTHead(4)
    features = torch.randn(3, 12, dtype=torch.float64)
    x = 3 * torch.randn(3, 4, dtype=torch.float64)
    h = features.reshape(3, 3, 4)
    loc = h[:, 0].numpy()
    scale = torch.nn.functional.softplus(h[:, 1]).numpy() + 1e-3
    df = torch.nn.functional.softplus(h[:, 2]).numpy() + 3.0
    expected = stats.t.logpdf(x.numpy(), df, loc=loc, scale=scale).sum(1)
    p = head(features)
    np.testing.assert_allclose(p.log_prob(x).numpy(), expected, rtol=1e-10)
    torch.testing.assert_close(p.mean, h[:, 0])  # the location: ν ≥ 3 keeps the mean finite
    observed = torch.tensor([[True, False, True, True]] * 3)
    partial = stats.t.logpdf(x.numpy(), df, loc=loc, scale=scale)[:, [0, 2, 3]].sum(1)
    np.testing.assert_allclose(log_prob_observed(p, x, observed).numpy(), partial, rtol=1e-10)


@pytest.mark.parametrize(
    ("support", "likelihood", "head"),
    [
        ("real", "auto", StudentTHead),
        ("real", "gaussian-learned", GaussianHead),
        ("binary", "auto", BernoulliHead),
    ],
)
def test_miwae_decoder_follows_the_data(support: str, likelihood: str, head: type) -> None:
    """Student-t for tables by default, a learned-variance Gaussian on request, Bernoulli for binary images."""
    shape = (1, 4, 4) if support == "binary" else (5,)
    info = DataInfo(event_shape=shape, support=support, levels=2 if support == "binary" else None)
    torch.manual_seed(0)
    model = build_model({"name": "miwae", "latent_dim": 2, "hidden": [8], "likelihood": likelihood}, info)
    assert isinstance(model.decoder.head, head)
    if support == "binary":
        x = (torch.rand(4, *shape) < 0.5).float()
        missing = torch.rand(x.shape) < 0.5
        missing[0] = False
        out = impute(model, torch.where(missing, math.nan, x), num_samples=20, multiple=2)
        assert bool(((out.completed >= 0) & (out.completed <= 1)).all())  # probabilities in the holes
        assert out.draws is not None and bool(((out.draws == 0) | (out.draws == 1)).all())  # draws are binary


# -- the mask-aware bound ------------------------------------------------------------------------


def _tiny_miwae(dim: int = 5, likelihood: str = "student-t") -> VAE:
    torch.manual_seed(0)
    info = DataInfo(event_shape=(dim,), support="real")
    model = build_model({"name": "miwae", "latent_dim": 2, "hidden": [16], "likelihood": likelihood}, info)
    assert isinstance(model, VAE) and model.missing
    return model


def _terms(model: VAE, x: torch.Tensor, observed: torch.Tensor | None, seed: int) -> torch.Tensor:
    # q from the zero-filled input, as MIWAE's encoder reads it: the placeholder enters no network
    q = model.encode(x if observed is None else torch.where(observed, x, torch.zeros(())), None)
    objective = IWAE(7)
    kwargs = {} if observed is None else {"observed": observed}
    g = torch.Generator().manual_seed(seed)
    return objective(
        x, q, model._decoder_for(None, x.shape[0]), model.prior(None, x.shape[0]), generator=g, **kwargs
    ).bound


def test_the_nll_of_incomplete_examples_is_spread_over_their_observed_entries() -> None:
    """log p(x_obs) per dimension divides by the observed entries of each example (3 of 5 here),
    not by all D; complete examples keep D."""
    from simulacra.metrics.likelihood import evaluate_nll

    model = _tiny_miwae()
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(3))
    holes = torch.zeros(40, 5, dtype=torch.bool)
    for i in range(40):
        holes[i, torch.randperm(5, generator=torch.Generator().manual_seed(i))[:2]] = True
    for data, dims in ((torch.where(holes, math.nan, x), 3), (x, 5)):
        out = evaluate_nll(model, data, num_samples=10, generator=torch.Generator().manual_seed(4))
        assert math.isfinite(out["nll"].value)
        assert out["nll_per_dim"].value == pytest.approx(out["nll"].value / dims, rel=1e-12)
        assert ("per observed entry" in out["nll_per_dim"].estimator) == (dims == 3)


@pytest.mark.parametrize("likelihood", ["student-t", "gaussian-learned"])
def test_the_bound_ignores_what_the_missing_entries_hold(likelihood: str) -> None:
    model = _tiny_miwae(likelihood=likelihood)
    x = torch.randn(6, 5)
    observed = torch.rand(6, 5) > 0.4
    a = torch.where(observed, x, torch.zeros(()))
    b = torch.where(observed, x, 1e3 * torch.randn(6, 5))
    c = torch.where(observed, x, torch.full((), math.nan))
    bounds = [_terms(model, v, observed, seed=1) for v in (a, b, c)]
    assert torch.equal(bounds[0], bounds[1]) and torch.equal(bounds[0], bounds[2])
    assert bool(torch.isfinite(bounds[0]).all())
    # the placeholder does enter an unmasked bound: the test can see a difference
    assert not torch.allclose(_terms(model, a, None, 1), _terms(model, b, None, 1))
    # and the model, given NaN for its missing entries, trains on the same bound whatever else
    torch.manual_seed(3)
    loss_nan = model.loss(c).loss
    torch.manual_seed(3)
    loss_zero = model.loss(torch.where(observed, x, torch.full((), math.nan))).loss
    assert torch.equal(loss_nan, loss_zero) and math.isfinite(float(loss_nan.detach()))


def test_with_nothing_missing_the_bound_is_the_iwae_bound() -> None:
    model = _tiny_miwae()
    x = torch.randn(6, 5)
    everything = torch.ones(6, 5, dtype=torch.bool)
    torch.testing.assert_close(_terms(model, x, everything, 2), _terms(model, x, None, 2))


def test_the_masked_weights_are_the_likelihood_of_the_observed_entries() -> None:
    """log w_i = Σ_{d observed} log p(x_d | z_i) + log p(z_i) − log q(z_i | x), recomputed by hand."""
    model = _tiny_miwae()
    x = torch.randn(4, 5)
    observed = torch.rand(4, 5) > 0.5
    q = model.encode(torch.where(observed, x, torch.zeros(())), None)
    decode, prior = model._decoder_for(None, 4), model.prior(None, 4)
    log_px, _, _, px = importance_sample(
        x, q, decode, prior, 3, observed=observed, generator=torch.Generator().manual_seed(0)
    )
    per_entry = px.base_dist.log_prob(x.repeat(3, 1)).reshape(3, 4, 5)
    by_hand = (per_entry * observed).sum(-1)
    torch.testing.assert_close(log_px, by_hand)


# -- importance-sampled imputation against a linear-Gaussian model --------------------------------

D, LATENT, NOISE = 4, 2, 0.5


def _linear_gaussian(info: DataInfo | None = None) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """p(z) = N(0, I₂), p(x | z) = N(W z + b, σ² I₄) (probabilistic PCA), with q(z | x) = p(z).

    Returns the model, b and Σ = W Wᵀ + σ² I, the covariance of x."""
    torch.manual_seed(0)
    info = info or DataInfo(event_shape=(D,), support="real")
    decoder = nn.Linear(LATENT, D).double()
    with torch.no_grad():
        decoder.weight.copy_(torch.tensor([[1.5, 0.0], [1.0, 1.0], [0.0, -1.2], [0.8, 0.5]]))
        decoder.bias.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    encoder = nn.Linear(D, 2 * LATENT).double()  # q(z | x) = N(0, I), a valid (if poor) proposal
    with torch.no_grad():
        encoder.weight.zero_()
        encoder.bias.copy_(torch.tensor([0.0, 0.0, math.log(math.e - 1), math.log(math.e - 1)]))
    model = VAE(
        info,
        Amortized(ContextNet(encoder), DiagonalGaussian(LATENT, min_std=0.0)),
        Amortized(ContextNet(decoder), GaussianHead(D, std=NOISE)),
        StandardNormal(LATENT).double(),
        IWAE(5),
        missing=True,
    )
    w, b = decoder.weight.detach(), decoder.bias.detach()
    return model, b, w @ w.T + NOISE**2 * torch.eye(D, dtype=torch.float64)


def _conditional(
    b: torch.Tensor, cov: torch.Tensor, x: torch.Tensor, miss: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x_m | x_o] and Cov[x_m | x_o] of N(b, Σ) for one example."""
    m, o = miss, ~miss
    gain = cov[m][:, o] @ torch.linalg.inv(cov[o][:, o])
    return b[m] + gain @ (x[o] - b[o]), cov[m][:, m] - gain @ cov[o][:, m]


def test_the_imputation_converges_to_the_closed_form_conditional_mean() -> None:
    model, b, cov = _linear_gaussian()
    torch.manual_seed(1)
    x = torch.distributions.MultivariateNormal(b, cov).sample((30,))
    missing = torch.zeros(30, D, dtype=torch.bool)
    for i in range(30):  # one or two missing entries per example, never all
        missing[i, torch.randperm(D)[: 1 + i % 2]] = True
    exact = torch.stack(
        [
            torch.where(missing[i], 0.0, x[i]).index_put(
                (missing[i],), _conditional(b, cov, x[i], missing[i])[0]
            )
            for i in range(30)
        ]
    )
    errors = {}
    for k in (3, 30_000):
        out = impute(
            model,
            torch.where(missing, math.nan, x),
            num_samples=k,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.equal(out.completed[~missing], x[~missing])
        errors[k] = float((out.completed - exact)[missing].abs().mean())
    assert errors[30_000] < 0.03, errors
    assert errors[30_000] < errors[3] / 5, errors


def test_an_entry_missing_in_every_example_is_imputed_from_the_model() -> None:
    # the model was trained elsewhere: x₂, x₃ missing in the whole batch (the bottom half of every
    # image) still have the conditional mean E[x₂, x₃ | x₀, x₁] of each example
    model, b, cov = _linear_gaussian()
    torch.manual_seed(2)
    x = torch.distributions.MultivariateNormal(b, cov).sample((20,))
    missing = torch.zeros(20, D, dtype=torch.bool)
    missing[:, 2:] = True
    with pytest.raises(DataError, match="columns 3, 4 .* missing in every example"):
        impute(model, x, missing)
    g = torch.Generator().manual_seed(0)
    out = impute(model, x, missing, num_samples=30_000, allow_unobserved=True, generator=g)
    exact = torch.stack([_conditional(b, cov, x[i], missing[i])[0] for i in range(20)])
    assert torch.equal(out.completed[~missing], x[~missing])
    assert float((out.completed[:, 2:] - exact).abs().mean()) < 0.05


@pytest.mark.parametrize("chunk_size", [None, 97])
def test_sir_draws_have_the_conditional_moments(chunk_size: int | None) -> None:
    model, b, cov = _linear_gaussian()
    x = torch.tensor([[1.0, 0.0, 0.0, 2.5]], dtype=torch.float64)
    missing = torch.tensor([[False, True, True, False]])
    mean, var = _conditional(b, cov, x[0], missing[0])
    _, draws = model.impute(
        x,
        missing,
        num_samples=20_000,
        multiple=4000,
        chunk_size=chunk_size,
        generator=torch.Generator().manual_seed(0),
    )
    assert draws is not None and draws.shape == (4000, 1, D)
    assert torch.equal(draws[:, 0, 0], x[0, 0].expand(4000)) and torch.equal(
        draws[:, 0, 3], x[0, 3].expand(4000)
    )
    picked = draws[:, 0, missing[0]]  # (M, 2)
    sd = var.diagonal().sqrt()
    assert bool(((picked.mean(0) - mean).abs() < 0.1 * sd).all()), (picked.mean(0), mean)
    torch.testing.assert_close(torch.cov(picked.T), var, atol=0.12 * float(var.diagonal().max()), rtol=0)


def test_standardized_runs_impute_in_the_users_units() -> None:
    """A model of x' = (x − m)/s imputes x in its own units: m + s E[x'_miss | x'_obs]."""
    m, s = (10.0, -3.0, 0.0, 100.0), (2.0, 0.5, 1.0, 10.0)
    plain, b, cov = _linear_gaussian()
    scaled, _, _ = _linear_gaussian(DataInfo(event_shape=(D,), support="real", standardization=(m, s)))
    x_std = torch.tensor([[0.3, math.nan, -1.0, math.nan]], dtype=torch.float64)
    x_user = x_std * torch.tensor(s, dtype=torch.float64) + torch.tensor(m, dtype=torch.float64)
    out_std = impute(plain, x_std, num_samples=500, generator=torch.Generator().manual_seed(4)).completed
    out_user = impute(scaled, x_user, num_samples=500, generator=torch.Generator().manual_seed(4)).completed
    expected = out_std * torch.tensor(s, dtype=torch.float64) + torch.tensor(m, dtype=torch.float64)
    torch.testing.assert_close(out_user, expected)
    assert torch.equal(out_user[0, [0, 2]], x_user[0, [0, 2]])


# -- every imputing model keeps the observed entries -------------------------------------------


@pytest.mark.parametrize("name", ["miwae", "iwae", "made", "ddpm"])
def test_observed_entries_are_never_changed(name: str) -> None:
    kwargs, info = TINY[name]
    if name == "ddpm":
        kwargs = {**kwargs, "steps": 4} if "steps" in kwargs else kwargs
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, info).eval()
    x = torch.rand(3, *info.event_shape)
    if info.levels:
        x = (x * (info.levels - 1)).round() / (info.levels - 1)
    missing = torch.rand(x.shape) < 0.4
    missing[0] = False  # every entry observed somewhere
    missing[1].view(-1)[:3] = True
    out = impute(
        model,
        torch.where(missing, math.nan, x),
        c=context_for(model, 3),
        num_samples=10,
        multiple=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(out.completed[~missing], x[~missing])
    assert out.draws is not None and out.draws.shape == (2, *x.shape)
    for draw in out.draws:
        assert torch.equal(draw[~missing], x[~missing])
    assert bool(torch.isfinite(out.completed).all()) and bool(torch.isfinite(out.draws).all())


# -- the command ---------------------------------------------------------------------------------


def _write_csv(path: Path, table: np.ndarray) -> Path:
    lines = ["a,b,c,d"] + [",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 2))
    full = np.column_stack([z[:, 0], z[:, 0] + 0.1 * z[:, 1], 5 + 3 * z[:, 1], -z[:, 0]])
    holed = full.copy()
    holed[rng.random(full.shape) < 0.3] = np.nan
    return _write_csv(tmp_path_factory.mktemp("impute") / "holed.csv", holed), holed


@pytest.fixture(scope="module")
def miwae_run(table: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("impute") / "run"
    argv = ["train", "miwae", "--data", str(table[0]), "--steps", "40", "--no-progress", "--no-eval"]
    assert main([*argv, "--set", "model.hidden=[16]", "--out", str(out)]) == 0
    return out


def _read_csv(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1)


def test_impute_round_trip_keeps_observed_values_and_fills_the_rest(
    miwae_run: Path, table: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, holed = table
    out = tmp_path / "completed.csv"
    assert main(["impute", str(miwae_run), "--data", str(path), "-o", str(out), "--samples", "50"]) == 0
    assert out.read_text().splitlines()[0] == "a,b,c,d"
    completed = _read_csv(out)
    observed = ~np.isnan(holed)
    assert completed.shape == holed.shape and np.isfinite(completed).all()
    assert np.array_equal(completed[observed], holed[observed])  # exactly, through the text
    # in the user's units: column c (mean 5, sd 3) is imputed near its own scale, not near 0
    assert abs(completed[~observed[:, 2], 2].mean() - 5) < 2
    many = tmp_path / "draws.npz"
    argv = [
        "impute",
        str(miwae_run),
        "--data",
        str(path),
        "-o",
        str(many),
        "--multiple",
        "3",
        "--samples",
        "20",
    ]
    assert main(argv) == 0
    with np.load(many) as archive:
        assert archive["completed"].shape == holed.shape and archive["draws"].shape == (3, *holed.shape)
        assert np.array_equal(
            archive["draws"][:, observed], np.broadcast_to(holed[observed], (3, observed.sum()))
        )
    # a mask file instead of NaN: the masked entries are imputed, whatever they hold
    filled = np.nan_to_num(holed, nan=123.0)
    np.save(tmp_path / "filled.npy", filled)
    np.save(tmp_path / "mask.npy", np.isnan(holed).astype(np.int8))
    out_npy = tmp_path / "masked.npy"
    argv = [
        "impute",
        str(miwae_run),
        "--data",
        str(tmp_path / "filled.npy"),
        "--mask",
        str(tmp_path / "mask.npy"),
    ]
    assert main([*argv, "-o", str(out_npy), "--samples", "50"]) == 0
    np.testing.assert_allclose(np.load(out_npy), completed, rtol=1e-6)


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_bad_imputation_inputs(
    miwae_run: Path, table: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, holed = table
    out = tmp_path / "out.csv"
    run = str(miwae_run)
    column = holed.copy()
    column[:, 1] = np.nan
    narrow = holed[:, :3]
    np.save(tmp_path / "narrow.npy", narrow)
    words = "has 3 values per example; the run"
    assert words in _one_error(
        capsys, ["impute", run, "--data", str(tmp_path / "narrow.npy"), "-o", str(out)]
    )
    assert not out.exists()
    column_csv = _write_csv(tmp_path / "column.csv", column)
    words = "--multiple writes the completed table and its draws to an .npz"
    assert words in _one_error(
        capsys, ["impute", run, "--data", str(column_csv), "-o", str(out), "--multiple", "2"]
    )
    # a column missing in every row: refused (a broken table), imputed by the trained model when asked
    words = "column 2 (counting from 1) is missing in every example"
    assert words in _one_error(capsys, ["impute", run, "--data", str(column_csv), "-o", str(out)])
    assert not out.exists()
    argv = ["impute", run, "--data", str(column_csv), "-o", str(out), "--samples", "20", "--allow-unobserved"]
    assert main(argv) == 0
    completed = _read_csv(out)
    assert np.isfinite(completed).all() and np.array_equal(
        completed[~np.isnan(column)], column[~np.isnan(column)]
    )
    out.unlink()
    # nothing missing: said so, and the input written unchanged
    complete = np.nan_to_num(holed, nan=1.0)
    np.save(tmp_path / "complete.npy", complete)
    assert (
        main(["impute", run, "--data", str(tmp_path / "complete.npy"), "-o", str(tmp_path / "same.npy")]) == 0
    )
    assert "has no missing values" in capsys.readouterr().err
    assert np.array_equal(np.load(tmp_path / "same.npy"), complete)


def test_models_without_completion_and_nan_for_other_models_are_refused(
    table: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = table
    words = _one_error(
        capsys, ["train", "vae", "--data", str(path), "--steps", "2", "--out", str(tmp_path / "v")]
    )
    assert "not a number" in words or "NaN" in words
    words = _one_error(
        capsys,
        ["train", "vae", "--data", str(path), "--set", "data.missing=allow", "--out", str(tmp_path / "v")],
    )
    assert "needs complete data" in words and "miwae" in words
    assert not (tmp_path / "v").exists()
    complete = tmp_path / "complete.csv"
    _write_csv(complete, np.random.default_rng(1).normal(size=(60, 4)))
    argv = ["train", "realnvp", "--data", str(complete), "--steps", "2", "--no-eval", "--no-progress"]
    assert (
        main(
            [
                *argv,
                "--set",
                "model.hidden=[8]",
                "--set",
                "model.transforms=2",
                "--out",
                str(tmp_path / "flow"),
            ]
        )
        == 0
    )
    words = _one_error(
        capsys, ["impute", str(tmp_path / "flow"), "--data", str(path), "-o", str(tmp_path / "o.csv")]
    )
    assert "realnvp cannot impute; models with Completion:" in words
    assert not (tmp_path / "o.csv").exists()


def test_data_with_missing_entries_load_only_when_allowed(table: tuple[Path, np.ndarray]) -> None:
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig
    from simulacra.errors import DataError

    path, holed = table
    with pytest.raises(DataError, match="not a number"):
        load_dataset(DataConfig(name=str(path)))
    data = load_dataset(DataConfig(name=str(path), missing="allow"))
    x = data.train.x.double().numpy()
    assert np.isnan(x).any()  # the missing entries stay missing
    # standardized by the observed values of each column: mean 0, sd 1 over what is there
    np.testing.assert_allclose(np.nanmean(x, 0), 0, atol=1e-6)
    np.testing.assert_allclose(np.nanstd(x, 0), 1, atol=1e-5)
