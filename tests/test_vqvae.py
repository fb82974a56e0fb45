"""VQ-VAE: the quantizer's mathematics (nearest code, straight-through gradient, EMA codebook in
closed form, k-means start, dead-code restarts), the bound and its parts, and the two stages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from simulacra.cli import main
from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.errors import ConfigError
from simulacra.metrics.evaluate import evaluate
from simulacra.models.vqvae import VQVAE, DiscreteLatent, VQVAEPrior
from simulacra.models.zoo import build_model
from simulacra.nn.quantize import VectorQuantizer
from simulacra.train import fit

DIGITS = DataInfo(event_shape=(1, 8, 8), support="unit", levels=17)
STAGE_ONE = {"name": "vqvae", "num_codes": 8, "code_dim": 3, "channels": [4]}


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.rand(n, 1, 8, 8, generator=g) * 16) / 16


def _clusters(
    centres: torch.Tensor, per: int, spread: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per`` points around each centre (K, D), shuffled: (K·per, D) and their centre indices."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(centres.shape[0]).repeat_interleave(per)
    z = centres[labels] + spread * torch.randn(len(labels), centres.shape[1], generator=g)
    order = torch.randperm(len(labels), generator=g)
    return z[order], labels[order]


# -- the quantizer ---------------------------------------------------------------------------------


def test_each_vector_maps_to_its_nearest_code() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4).eval()
    vq.codebook.copy_(torch.randn(16, 4))
    z = torch.randn(5, 7, 4)
    out = vq(z)
    brute = torch.cdist(z.reshape(-1, 4), vq.codebook).argmin(1).reshape(5, 7)
    assert torch.equal(out.indices, brute)
    assert torch.allclose(out.z_q, vq.codebook[brute], atol=1e-6)  # the value is the code
    assert torch.allclose(out.commitment, 0.25 * (z - vq.codebook[brute]).pow(2).sum(-1), atol=1e-6)


def test_the_straight_through_gradient_is_the_identity() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 3, beta=0.5).eval()
    z = torch.randn(6, 3, requires_grad=True)
    upstream = torch.randn(6, 3)
    out = vq(z)
    (out.z_q * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)  # ∂z_q/∂z = I exactly
    z.grad = None
    vq(z).commitment.sum().backward()  # β ‖z − sg(e)‖²: gradient 2β (z − e), none to the codebook
    e = vq.codebook[vq.codes(z.detach())]
    assert torch.allclose(z.grad, 2 * 0.5 * (z.detach() - e), atol=1e-6)


def test_the_ema_codebook_is_the_closed_form_running_mean() -> None:
    """Three steps with fixed assignments: N_T = γ^T N_0 + (1 − γ) Σ_t γ^{T−t} n_t, the same for
    the sums m_T, and e_k = m_k / Ñ_k with Laplace-smoothed counts (float64 by hand)."""
    k, d, gamma, eps = 3, 2, 0.7, 0.1
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    vq = VectorQuantizer(k, d, decay=gamma, eps=eps, kmeans_init=False, restart_threshold=0.0).train()
    vq.codebook.copy_(centres)
    vq.ema_sum.copy_(centres)  # N_0 = 1, m_0 = e_0
    count, total = torch.ones(k, dtype=torch.float64), centres.double().clone()
    for t, per in enumerate((4, 2, 5)):
        z, labels = _clusters(centres, per, 0.5, seed=t)
        z = z[: len(z) - t]  # unequal counts per code
        labels = labels[: len(labels) - t]
        vq(z)
        n = torch.bincount(labels, minlength=k).double()
        s = torch.zeros(k, d, dtype=torch.float64).index_add_(0, labels, z.double())
        count = gamma * count + (1 - gamma) * n
        total = gamma * total + (1 - gamma) * s
    smoothed = (count + eps) / (count.sum() + k * eps) * count.sum()
    assert torch.allclose(vq.ema_count.double(), count, atol=1e-5)
    assert torch.allclose(vq.ema_sum.double(), total, atol=1e-4)
    assert torch.allclose(vq.codebook.double(), total / smoothed[:, None], atol=1e-4)


def test_under_torch_distributed_the_update_uses_every_process_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With two processes holding the same batch, the summed statistics n_k, s_k are twice the
    batch's: the update equals one process's update on the batch repeated twice."""
    import simulacra.nn.quantize as quantize

    reduced: list[torch.Tensor] = []

    def all_reduce(t: torch.Tensor) -> None:  # the other process holds the same batch
        reduced.append(t)
        t.mul_(2)

    z, _ = _clusters(torch.tensor([[0.0, 0.0], [6.0, 0.0]]), 5, 0.3)
    alone = VectorQuantizer(2, 2, decay=0.6, kmeans_init=False, restart_threshold=0.0).train()
    alone.codebook.copy_(torch.tensor([[0.5, 0.0], [5.0, 0.0]]))
    shared = VectorQuantizer(2, 2, decay=0.6, kmeans_init=False, restart_threshold=0.0).train()
    shared.load_state_dict(alone.state_dict())
    alone(torch.cat([z, z]))
    monkeypatch.setattr(quantize, "_distributed", lambda: True)
    monkeypatch.setattr(quantize.dist, "all_reduce", all_reduce)
    shared(z)
    assert len(reduced) == 2  # the counts and the sums
    for key, value in alone.state_dict().items():
        assert torch.allclose(value.float(), shared.state_dict()[key].float(), atol=1e-5), key


def test_eval_mode_leaves_the_codebook_alone() -> None:
    vq = VectorQuantizer(4, 2).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(10, 2))
    assert all(torch.equal(before[k], v) for k, v in vq.state_dict().items())


def test_kmeans_starts_the_codebook_from_the_first_training_batch() -> None:
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    z, labels = _clusters(centres, 20, 0.1)
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 2, decay=0.0, restart_threshold=0.0).train()
    assert not bool(vq.initialized)
    out = vq(z)
    assert bool(vq.initialized)
    means = torch.stack([z[labels == j].mean(0) for j in range(3)])
    # each code sits on one cluster's mean (k-means from any start separates clusters this far apart)
    match = torch.cdist(vq.codebook, means).argmin(1)
    assert sorted(match.tolist()) == [0, 1, 2]
    assert torch.allclose(vq.codebook, means[match], atol=1e-5)
    assert float(out.usage) == 1.0 and math.isclose(float(out.perplexity), 3.0, rel_tol=1e-5)


def test_a_dead_code_is_restarted_at_an_encoder_output() -> None:
    """Code 2 sits far from the data: its EMA count decays below the threshold and it moves to one
    of the batch's vectors; without restarts it stays dead (the collapse)."""
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [100.0, 100.0]])
    z, _ = _clusters(centres[:2], 10, 0.3)
    for threshold, revived in ((0.5, True), (0.0, False)):
        vq = VectorQuantizer(3, 2, decay=0.5, kmeans_init=False, restart_threshold=threshold).train()
        vq.codebook.copy_(centres)
        vq.ema_sum.copy_(centres)
        torch.manual_seed(0)
        restarted = vq(z).restarted  # N_2 = 0.5 · 1 + 0.5 · 0 = 0.5: not below 0.5 yet
        assert float(restarted) == 0
        restarted = vq(z).restarted  # N_2 = 0.25 < 0.5
        moved = bool((vq.codebook[2] - z).abs().sum(1).min() < 1e-6)
        assert moved == revived and float(restarted) == float(revived)
        if revived:
            assert math.isclose(float(vq.ema_count[2]), threshold)
            assert torch.allclose(vq.ema_sum[2], threshold * vq.codebook[2])
        else:
            assert float((vq.codebook[2] - z).norm(dim=1).min()) > 100  # still far from every vector


def test_a_codebook_needs_two_codes() -> None:
    with pytest.raises(ConfigError, match="at least 2 codes"):
        build_model({"name": "vqvae", "num_codes": 1}, DIGITS)


# -- the VQ-VAE ------------------------------------------------------------------------------------


def _trained_vqvae(steps: int = 3, **settings: object) -> VQVAE:
    torch.manual_seed(0)
    model = build_model({**STAGE_ONE, **settings}, DIGITS)
    data = Dataset("synthetic", DIGITS, Split(_images(32)))
    fit(model, data, TrainConfig(steps=steps, batch_size=16, lr=1e-2, log_every=1, seed=0), progress=False)
    assert isinstance(model, VQVAE)
    return model


def test_the_loss_logs_codebook_usage_and_the_bound_is_its_parts() -> None:
    model = _trained_vqvae()
    assert isinstance(model, DiscreteLatent)
    x = _images(10, seed=1)
    model.train()
    metrics = model.loss(x).metrics
    assert {"perplexity", "usage", "restarted", "commitment", "rec"} <= set(metrics)
    k = model.num_codes
    assert 1.0 <= float(metrics["perplexity"]) <= k + 1e-4 and 0 < float(metrics["usage"]) <= 1
    model.eval()
    codes = model.codes(x)
    rec = model.reconstruction(x).log_prob(x)
    prior = model.code_log_prob(codes)
    bound = model.log_prob_bound(x)
    assert torch.allclose(bound, rec + prior) and bool((prior <= 0).all()) and bool((bound <= rec).all())


def test_the_second_stage_fits_the_code_frequencies() -> None:
    """After fit, log p(k) = Σ_ij log((n_ij[k_ij] + 1) / (N + K)) over the training codes' counts."""
    model = _trained_vqvae()
    assert bool(model.prior_fitted)
    x = _images(32)  # the training split
    codes = model.codes(x)
    n, k = codes.shape[0], model.num_codes
    counts = torch.nn.functional.one_hot(codes, k).sum(0).double()  # (h, w, K)
    expected = torch.log((counts + 1) / (n + k))  # (h, w, K)
    by_hand = torch.stack([expected.gather(-1, c[..., None]).sum() for c in codes])
    assert torch.allclose(model.code_log_prob(codes).double(), by_hand, atol=1e-4)


def test_the_codes_metric_reports_bits_per_code_and_reconstruction() -> None:
    """An unfitted factorized prior is uniform: exactly log₂ K bits per code."""
    torch.manual_seed(0)
    model = build_model(STAGE_ONE, DIGITS)
    split = Split(_images(12))
    found = evaluate(model, split, ["codes", "nll"])
    assert math.isclose(found["bits_per_code"].value, 3.0, rel_tol=1e-6)  # K = 8
    with torch.no_grad():
        px = model.reconstruction(split.x)
    assert math.isclose(found["rec_nll"].value, float(-px.log_prob(split.x).mean()), rel_tol=1e-5)
    assert math.isclose(found["rec_mse"].value, float((px.mean - split.x).pow(2).mean()), rel_tol=1e-5)
    # the bound: −log p(x | z_q) + h w log K nats
    h, w = model.grid_shape
    assert math.isclose(found["bound_nll"].value, found["rec_nll"].value + h * w * math.log(8), rel_tol=1e-5)
    assert 0 < found["codebook_usage"].value <= 1


# -- stage two -------------------------------------------------------------------------------------


def _stage_two(prior: str = "transformer") -> VQVAEPrior:
    torch.manual_seed(1)
    spec = {"name": "vqvae-prior", "stage_one": STAGE_ONE, "prior": prior, "channels": 4, "layers": 1}
    model = build_model({**spec, "kernel_size": 3, "heads": 2}, DIGITS)
    assert isinstance(model, VQVAEPrior)
    return model


def test_initialize_from_copies_the_weights_and_refuses_another_model() -> None:
    trained = _trained_vqvae(steps=2)
    second = _stage_two()
    second.initialize_from(trained)
    mine, theirs = second.vqvae.state_dict(), trained.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    with pytest.raises(ConfigError, match="starts from a trained vqvae run; found a vae"):
        second.initialize_from(build_model({"name": "vae", "latent_dim": 2, "hidden": [4]}, DIGITS))
    with pytest.raises(ConfigError, match="vqvae has another architecture"):
        second.initialize_from(build_model({**STAGE_ONE, "num_codes": 5}, DIGITS))
    with pytest.raises(ConfigError, match="has not finished training"):
        second.initialize_from(build_model(STAGE_ONE, DIGITS))  # built, never trained


@pytest.mark.parametrize("prior", ["transformer", "gated-pixelcnn"])
def test_stage_two_trains_only_the_prior_and_its_bound_is_its_parts(prior: str) -> None:
    second = _stage_two(prior)
    second.initialize_from(_trained_vqvae(steps=2))
    frozen = {k: v.clone() for k, v in second.vqvae.state_dict().items()}
    prior = {k: v.clone() for k, v in second.code_prior.state_dict().items()}
    trainable = {id(p) for ps in second.parameter_groups().values() for p in ps}
    assert trainable == {id(p) for p in second.code_prior.parameters()}
    data = Dataset("synthetic", DIGITS, Split(_images(32)))
    fit(second, data, TrainConfig(steps=3, batch_size=16, lr=1e-2, seed=0), progress=False)
    assert all(torch.equal(frozen[k], v) for k, v in second.vqvae.state_dict().items())  # codebook too
    assert any(not torch.equal(prior[k], v) for k, v in second.code_prior.state_dict().items())
    second.eval()
    x = _images(6, seed=2)
    codes = second.codes(x)
    parts = second.vqvae.reconstruction(x).log_prob(x) + second.code_log_prob(codes)
    assert torch.allclose(second.log_prob_bound(x), parts)
    with torch.no_grad():
        assert float(second.loss(x).loss) == pytest.approx(float(-second.code_log_prob(codes).mean()))
    # its samples decode codes that the prior draws: in the decoder's range
    s = second.sample(4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 1, 8, 8) and bool(((s >= 0) & (s <= 1)).all())


def test_a_bad_codebook_size_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "vqvae", "--data", "digits", "--steps", "1", "--no-progress", "--out", str(out)]
    assert main([*argv, "--set", "model.num_codes=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "at least 2 codes" in err[0], err
    assert not out.exists()


def test_the_two_stages_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``vqvae-prior`` without a trained vqvae: one error line, exit 2, nothing written; with
    ``--init RUN`` it records the run's spec as its stage_one and starts from its weights."""
    import json

    from simulacra.train.checkpoint import load_model

    first, second = tmp_path / "vqvae", tmp_path / "prior"
    common = ["--data", "digits", "--steps", "2", "--batch-size", "16", "--no-progress", "--no-eval"]
    prior = ["train", "vqvae-prior", *common, "--set", "model.channels=4", "--set", "model.layers=1"]
    assert main([*prior, "--out", str(second)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on top of a trained vqvae run: give it with --init RUN" in err[0], err
    assert not second.exists()
    small = ["--set", "model.num_codes=8", "--set", "model.code_dim=3", "--set", "model.channels=[4]"]
    assert main(["train", "vqvae", *common, *small, "--out", str(first)]) == 0
    assert main([*prior, "--init", str(first), "--out", str(second)]) == 0
    a, b = load_model(first), load_model(second)
    assert isinstance(b, VQVAEPrior) and b.spec is not None and b.spec["stage_one"] == a.spec
    assert all(torch.equal(b.vqvae.state_dict()[k], v) for k, v in a.state_dict().items())
    assert json.loads((second / "config.json").read_text())["run"]["init"] == str(first)
