"""Bits-back coding (simulacra.tasks.bitsback): BB-ANS over a VAE's and a hierarchy's latents.

* round trip: decoding gives back exactly the array for VAEs (Bernoulli, categorical, discretized
  logistic likelihoods), ``hvae`` and ``lvae``, untrained and briefly trained (a fresh process
  at another thread count decodes a hierarchy's file: test_compress.py);
* length: the words hold the information pushed minus the bits popped back, plus the initial bits
  the pops took from the seed; the latents cost exactly b bits a coordinate under the prior's buckets;
  the code length is the discretized −ELBO, E_Q[−log2 p(x | ẑ) − log2 P(ẑ) + log2 Q(ẑ | x)],
  computed here by enumerating the buckets of a one-dimensional latent, and close to the
  model's −ELBO after brief training;
* refusals: another model, truncated files; a Gaussian likelihood, a VampPrior, an IAF posterior;
  the CLI's one error line, exit 2, nothing written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from coding_cases import grid_data, perturbed
from simulacra.cli import main
from simulacra.data.info import DataInfo
from simulacra.errors import CapabilityError, DataError
from simulacra.models.hierarchical import HierarchicalVAE
from simulacra.models.zoo import build_model
from simulacra.tasks.bitsback import Discretization
from simulacra.tasks.compress import compress, decompress
from simulacra.train.checkpoint import load_model

BINARY = DataInfo((1, 4, 4), "binary", levels=2)
LEVELS = DataInfo((6,), "unit", levels=5)
GREY = DataInfo((1, 3, 3), "unit", levels=16)

CASES = [
    ("vae", {"latent_dim": 3, "hidden": [8]}, BINARY),
    ("vae", {"latent_dim": 2, "hidden": [8], "likelihood": "categorical"}, LEVELS),
    ("vae", {"latent_dim": 2, "hidden": [8], "likelihood": "logistic"}, GREY),
    ("hvae", {"groups": 2, "latent_dim": 2, "hidden": 4}, BINARY),
    ("lvae", {"groups": 2, "latent_dim": [3, 2], "hidden": 8}, BINARY),
]


def _latent_dim(model: torch.nn.Module) -> int:
    if isinstance(model, HierarchicalVAE):
        return model.latent_dim
    return math.prod(model.prior_module.event_shape)


@pytest.mark.parametrize("name,kwargs,info", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_round_trip_and_length(name: str, kwargs: dict, info: DataInfo) -> None:
    model = perturbed(name, kwargs, info)
    x = grid_data(info, n=30)
    result = compress(model, x, batch_size=8, latent_bits=6)  # batches 1, 2, 3, 4, 5, 6, 7, 2
    y = decompress(model, result.data)
    assert y.dtype == x.dtype and y.shape == x.shape and np.array_equal(x, y)
    details = result.details
    # each latent coordinate is pushed under the prior's equal-mass buckets: b bits exactly
    assert details["bits_latent"] == pytest.approx(6 * _latent_dim(model) * len(x), abs=1e-6)
    # the words hold the net information plus the seed bits the pops used, within two words
    assert abs(result.payload_bits - result.ideal_bits - details["initial_bits"]) <= 64
    assert 0 < details["initial_bits"] <= 32 * result.header["seed_words"]


def test_buckets_have_equal_prior_mass_and_stand_for_their_median() -> None:
    bits, buckets = 5, 32
    model = perturbed(*CASES[0][:2], CASES[0][2])
    setup = Discretization.of(model, 2, bits)
    prior = Normal(
        torch.tensor([[0.7, -1.2]], dtype=torch.float64), torch.tensor([[0.3, 2.0]], dtype=torch.float64)
    )
    q = Normal(
        torch.tensor([[0.8, 0.5]], dtype=torch.float64), torch.tensor([[0.05, 1.5]], dtype=torch.float64)
    )
    k = np.arange(buckets)
    # ẑ_k is the median of bucket k under the prior: Φ((ẑ_k − μ_p)/σ_p) = (k + ½)/K
    z = setup.latent(np.repeat(k, 2), Normal(prior.loc.expand(buckets, 2), prior.scale.expand(buckets, 2)))
    centre = torch.special.ndtr((z - prior.loc) / prior.scale)  # (K, 2)
    assert torch.allclose(
        centre, torch.from_numpy((k[:, None] + 0.5) / buckets).expand(buckets, 2), atol=1e-12
    )
    # every bucket has prior mass 1/K, and Q's masses are q's over the prior's buckets in z
    assert (setup.prior_weights(prior) == 2**24 // buckets).all()
    edges = prior.loc.T + prior.scale.T * torch.special.ndtri(
        torch.arange(buckets + 1) / buckets
    )  # (2, K + 1)
    cdf = torch.special.ndtr((edges - q.loc.T) / q.scale.T)
    mass = (cdf[:, 1:] - cdf[:, :-1]).numpy()
    assert np.abs(setup.posterior_weights(q, prior) / 2**24 - mass).max() < 2 * buckets / 2**24


def test_top_down_walk_is_the_hierarchys_pass() -> None:
    """Choosing the groups one at a time (what the coder does) gives the densities of ``descend``."""
    name, kwargs, info = CASES[4]
    model = perturbed(name, kwargs, info)
    x = torch.from_numpy(grid_data(info, n=5)).float()
    with torch.no_grad():
        features = model.bottom_up(x)
        reference = model.descend(5, features)
        log_p, log_q = [], []

        def given(i: int, p: Normal, q: Normal | None) -> torch.Tensor:
            assert q is not None
            z = reference.z[i]
            log_p.append(p.log_prob(z).flatten(1).sum(1))
            log_q.append(q.log_prob(z).flatten(1).sum(1))
            return z

        likelihood = model.top_down(5, features, given)
    assert torch.allclose(sum(log_p), sum(reference.log_p), atol=1e-5)
    assert torch.allclose(sum(log_q), sum(reference.log_q), atol=1e-5)
    assert torch.allclose(likelihood.log_prob(x), reference.likelihood.log_prob(x), atol=1e-5)


def test_code_length_is_the_discretized_elbo() -> None:
    """One latent coordinate, K = 2^6 buckets: E_Q[rate] summed over the buckets, against the code."""
    bits, n = 6, 300
    model = perturbed("vae", {"latent_dim": 1, "hidden": [16]}, BINARY, seed=3)
    x = grid_data(BINARY, n=n, seed=4)
    result = compress(model, x, batch_size=64, latent_bits=bits)
    buckets = 2**bits
    k = torch.arange(buckets + 1, dtype=torch.float64) / buckets
    edges, centres = torch.special.ndtri(k), torch.special.ndtri((k[:-1] + k[1:]) / 2)
    m = model.double()
    with torch.no_grad():
        xt = torch.from_numpy(x).double()
        q = m.encode(xt).base_dist  # N(μ, σ²), (n, 1)
        cdf = torch.special.ndtr((edges - q.loc) / q.scale)  # (n, K + 1)
        mass = cdf[:, 1:] - cdf[:, :-1]  # Q(bucket k | x), (n, K)
        likelihood = m.decode(centres[:, None])  # p(x | ẑ_k) for the K centres
        log_px = torch.stack([likelihood.log_prob(xi.expand(buckets, *xi.shape)) for xi in xt])  # (n, K)
    m.float()
    mass = mass.numpy()
    rate = -log_px.numpy() / math.log(2) + bits + np.log2(np.maximum(mass, 1e-300))  # bits, (n, K)
    expected = (mass * rate).sum(1)
    spread = (mass * rate**2).sum(1) - expected**2
    kl_bits = float((mass * (np.log2(np.maximum(mass, 1e-300)) + bits)).sum(1).mean())
    assert kl_bits > 1.0  # the posteriors are informative: popping from the prior would cost more
    tolerance = 4 * math.sqrt(spread.sum()) + 0.01 * n  # sampling, and 2^-24 quantization
    assert abs(result.ideal_bits - expected.sum()) < tolerance


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """VAEs trained for 40 steps on 8x8 binary images and on 8x8 images of 256 grey levels."""
    root = tmp_path_factory.mktemp("bitsback")
    rng = np.random.default_rng(0)
    strokes = rng.random((80, 1, 8)) < 0.4  # rows repeat down the image: something to learn
    data = {
        "binary": np.repeat(strokes, 8, 1).astype(np.uint8) ^ (rng.random((80, 8, 8)) < 0.05),
        "grey": (np.repeat(strokes, 8, 1) * 200 + rng.integers(0, 40, (80, 8, 8))).astype(np.uint8),
    }
    runs = {}
    for kind, x in data.items():
        np.save(root / f"{kind}.npy", x)
        args = ["train", "vae", "--data", str(root / f"{kind}.npy"), "--steps", "40", "--batch-size", "16"]
        args += ["--set", "model.latent_dim=4", "--set", "model.hidden=[32]", "--out", str(root / kind)]
        assert main([*args, "--no-eval", "--no-progress"]) == 0
        runs[kind] = (root / kind, root / f"{kind}.npy")
    return runs


@pytest.mark.parametrize("kind", ["binary", "grey"])
def test_trained_vae_codes_near_its_elbo(trained: dict[str, tuple[Path, Path]], kind: str) -> None:
    run, data = trained[kind]
    model, x = load_model(run), np.load(data)
    result = compress(model, x)
    assert np.array_equal(decompress(model, result.data), x)
    xt = torch.from_numpy(x).float()[:, None] / (255 if kind == "grey" else 1)
    with torch.no_grad():
        draws = -torch.stack([model.log_prob_bound(xt) for _ in range(20)]).double() / math.log(2)
    elbo, single = float(draws.mean()), float(draws.std(0).mean())  # bits; one draw's spread
    assert abs(result.ideal_bits / len(x) - elbo) < 4 * single / math.sqrt(len(x)) + 0.5


def test_wrong_model_and_truncated_files_are_refused() -> None:
    name, kwargs, info = CASES[0]
    model, other = perturbed(name, kwargs, info), perturbed(name, kwargs, info, seed=1)
    blob = compress(model, grid_data(info)).data
    with pytest.raises(DataError, match="another model"):
        decompress(other, blob)
    with pytest.raises(DataError, match="truncated"):
        decompress(model, blob[:-5])


def test_models_bits_back_cannot_code_say_why() -> None:
    x = grid_data(BINARY, n=4)
    refused = {
        "gives densities, not probabilities": (
            {"likelihood": "gaussian-learned"},
            DataInfo((1, 4, 4), "unit"),
        ),
        "needs the prior N\\(0, I\\)": ({"prior": {"name": "vamp", "components": 2}}, BINARY),
        "diagonal Gaussian posterior": (
            {"posterior": "iaf", "flow_transforms": 1, "flow_hidden": [4]},
            BINARY,
        ),
    }
    for reason, (kwargs, info) in refused.items():
        model = build_model({"name": "vae", "latent_dim": 2, "hidden": [4], **kwargs}, info)
        with pytest.raises(CapabilityError, match=reason):
            compress(model, x)


def test_cli_round_trip_and_refusals(
    trained: dict[str, tuple[Path, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained["grey"]
    sim, out = tmp_path / "x.sim", tmp_path / "x.npy"
    assert main(["compress", str(run), "--data", str(data), "--latent-bits", "8", "-o", str(sim)]) == 0
    assert main(["decompress", str(run), str(sim), "-o", str(out)]) == 0
    assert np.array_equal(np.load(out), np.load(data))
    # a Gaussian decoder: one error line, exit 2, nothing written
    gaussian = tmp_path / "gaussian"
    args = ["train", "vae", "--data", str(data), "--steps", "1", "--set", "model.likelihood=gaussian"]
    assert (
        main([*args, "--set", "model.hidden=[8]", "--out", str(gaussian), "--no-eval", "--no-progress"]) == 0
    )
    capsys.readouterr()
    code = main(["compress", str(gaussian), "--data", str(data), "-o", str(tmp_path / "g.sim")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "densities, not probabilities" in err[0]
    assert not (tmp_path / "g.sim").exists()
