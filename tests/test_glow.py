"""Glow's layers, the multi-scale architecture and variational dequantization, checked against the maths.

* ActNorm's data-dependent initialisation standardises each channel of the first training batch,
  and is neither redone later nor after a save/load (nor differs between DDP replicas);
* the LU 1×1 convolution: W = P L (U + diag s), log|det| = H·W·log|det W| (slogdet), W⁻¹ W = I;
* squeeze is the stated permutation and unsqueeze its inverse; MultiScale passes the factored-out
  half through unchanged;
* variational dequantization: log q(y | x) is a normalised density on x's bin (numerical
  integration), the sampled and evaluated log q agree, and the bound E_q[log p − log q] stays
  below the exact log P(k) (bins integrated numerically) and tightens with training;
* glow and the multi-scale realnvp train on digits (bits/dim decrease, and the trained flow's
  log-determinant is that of autograd's Jacobian) and report bits/dim = −log p / (D ln 2).
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import safetensors.torch
import torch

import simulacra.models  # noqa: F401  (registers every preset)
from simulacra.config import DataConfig
from simulacra.data import load_dataset
from simulacra.data.info import DataInfo
from simulacra.distributions.standard import StandardNormal
from simulacra.errors import ConfigError, DataError
from simulacra.flows.base import Affine, Composed
from simulacra.flows.coupling import Coupling
from simulacra.flows.dequantization import DEQUANTIZERS, Logit, UniformDequantizer, VariationalDequantizer
from simulacra.flows.flow import Flow
from simulacra.flows.glow import ActNorm, InvertibleConv1x1, MultiScale, Squeeze
from simulacra.models.zoo import build_model
from simulacra.nn.conv import CouplingConvNet
from simulacra.nn.mlp import MLP
from simulacra.train.checkpoint import load_model, save_model

DIGITS = DataInfo(event_shape=(1, 8, 8), support="unit", num_classes=10, levels=17)
TINY_GLOW = {"name": "glow", "levels": 2, "steps": 2, "hidden": 8}


# -- ActNorm -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (3, 4, 6)])
def test_actnorm_initialisation_standardises_each_channel(shape: tuple[int, ...]) -> None:
    event_dims = len(shape)
    layer = ActNorm(shape[0], event_dims=event_dims)
    means = torch.tensor([3.0, -2.0, 0.5, 10.0, 0.0])[: shape[0]]
    stds = torch.tensor([0.1, 4.0, 1.0, 2.5, 7.0])[: shape[0]]
    view = (1, -1) + (1,) * (event_dims - 1)
    x = torch.randn(200, *shape, dtype=torch.float64) * stds.reshape(view) + means.reshape(view)
    layer.double()
    z, ladj = layer(x)  # training mode: the first call initialises
    dims = [0, *range(2, z.dim())]
    torch.testing.assert_close(z.mean(dims), torch.zeros(shape[0], dtype=torch.float64), atol=1e-8, rtol=0)
    var = x.transpose(0, 1).reshape(shape[0], -1).var(1, unbiased=False)
    # unit variance up to the ε that keeps the scale finite: var(z) = σ² / (σ² + ε)
    torch.testing.assert_close(z.var(dims, unbiased=False), var / (var + layer.eps), atol=1e-10, rtol=1e-10)
    assert (z.var(dims, unbiased=False) - 1).abs().max() < 1e-3
    positions = math.prod(shape[1:])
    # log|det| = H·W·Σ_c s_c with s_c = −½ log(σ_c² + ε)
    expected = -positions * 0.5 * torch.log(var + layer.eps).sum()
    torch.testing.assert_close(ladj, expected.expand(200), atol=1e-5, rtol=0)
    assert int(layer.initialized) == 1
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(x * 5 + 3)  # a second training batch does not re-initialise
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_actnorm_is_not_initialised_in_evaluation_mode_or_by_the_inverse() -> None:
    layer = ActNorm(2, event_dims=1)
    x = torch.randn(10, 2) * 3 + 1
    layer.inverse(x)
    layer.eval()(x)
    assert int(layer.initialized) == 0
    assert torch.equal(layer.bias, torch.zeros(2)) and torch.equal(layer.log_scale, torch.zeros(2))


def test_actnorm_is_not_reinitialised_after_save_and_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(TINY_GLOW, DIGITS)
    x = torch.round(torch.rand(16, 1, 8, 8) * 16) / 16
    model.loss(x)  # initialises every ActNorm on this batch
    actnorms = [m for m in model.modules() if isinstance(m, ActNorm)]
    assert actnorms and all(int(m.initialized) == 1 for m in actnorms)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    loaded.train()
    saved = {k: v.clone() for k, v in loaded.state_dict().items()}
    loaded.loss(torch.round(torch.rand(16, 1, 8, 8) ** 3 * 16) / 16)  # other data, training mode
    for key, value in loaded.state_dict().items():
        assert torch.equal(saved[key], value), f"{key} changed: ActNorm was re-initialised after loading"
    # a fresh model loading the state of an initialised one takes its flag too
    fresh = build_model(TINY_GLOW, DIGITS)
    fresh.load_state_dict(model.state_dict())
    fresh.train().loss(torch.round(torch.rand(16, 1, 8, 8) ** 2 * 16) / 16)
    for key, value in fresh.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def _ddp_rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = build_model(TINY_GLOW, DIGITS)
        ddp = DistributedDataParallel(model)
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        x = torch.round(torch.rand(8, 1, 8, 8, generator=g) ** (1 + 2 * rank) * 16) / 16
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for _ in range(2):
            opt.zero_grad()
            ddp(x).loss.backward()
            opt.step()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(state, f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_actnorm_initialisation_agrees_across_ddp_replicas(tmp_path: Path) -> None:
    """Each rank sees other data; the all-reduced statistics give every replica the same init."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    states = [safetensors.torch.load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    assert any(k.endswith("initialized") for k in states[0])
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], atol=1e-6, rtol=1e-5, msg=key)
    bias = [v for k, v in states[0].items() if k.endswith(".bias") and "post.transforms.0." in k][0]
    assert bias.abs().max() > 1e-2  # the layer was really initialised from data


# -- invertible 1x1 convolution ------------------------------------------------------------------


def _perturbed_invconv(c: int, event_dims: int = 3) -> InvertibleConv1x1:
    torch.manual_seed(3)
    layer = InvertibleConv1x1(c, event_dims).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return layer


def test_lu_convolution_log_det_is_slogdet_times_positions() -> None:
    layer = _perturbed_invconv(4)
    w = layer.weight()
    lower, upper = layer._factors()
    assert torch.equal(torch.tril(lower, -1) + torch.eye(4, dtype=w.dtype), lower)  # unit lower
    assert torch.equal(torch.triu(upper), upper)
    torch.testing.assert_close(layer.permutation.double() @ lower @ upper, w)
    x = torch.randn(3, 4, 5, 7, dtype=torch.float64)
    z, ladj = layer(x)
    torch.testing.assert_close(z, torch.einsum("ij,bjhw->bihw", w, x))  # W at every pixel
    sign, logabs = torch.linalg.slogdet(w)
    torch.testing.assert_close(ladj, (5 * 7 * logabs).expand(3))
    torch.testing.assert_close(layer.inverse_weight() @ w, torch.eye(4, dtype=torch.float64))
    x_back, ladj_inv = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(ladj_inv, -ladj)


def test_lu_linear_map_on_vectors_and_its_checks() -> None:
    layer = _perturbed_invconv(3, event_dims=1)
    x = torch.randn(6, 3, dtype=torch.float64)
    z, ladj = layer(x)
    torch.testing.assert_close(z, x @ layer.weight().T)
    torch.testing.assert_close(ladj, torch.linalg.slogdet(layer.weight())[1].expand(6))
    with pytest.raises(DataError, match="InvertibleConv1x1 expects"):
        layer(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(ConfigError, match="at least 2 channels"):
        InvertibleConv1x1(1)


def test_fresh_lu_convolution_is_a_rotation() -> None:
    w = InvertibleConv1x1(6).double().weight()
    torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6, rtol=0)


# -- squeeze and multi-scale ---------------------------------------------------------------------


def test_squeeze_is_the_stated_permutation_and_unsqueeze_inverts_it() -> None:
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).reshape(2, 3, 4, 6)
    z, ladj = Squeeze()(x)
    assert z.shape == (2, 12, 2, 3) and torch.equal(ladj, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(z.flatten().sort().values, x.flatten())  # a permutation of the entries
    for c, i, j, h, w in [(0, 0, 0, 0, 0), (1, 1, 0, 1, 2), (2, 1, 1, 0, 1), (2, 0, 1, 1, 0)]:
        assert torch.equal(z[:, 4 * c + 2 * i + j, h, w], x[:, c, 2 * h + i, 2 * w + j])
    x_back, _ = Squeeze().inverse(z)
    assert torch.equal(x_back, x)
    z_back, _ = Squeeze()(Squeeze().inverse(z)[0])
    assert torch.equal(z_back, z)
    with pytest.raises(DataError, match="even H and W"):
        Squeeze()(torch.zeros(1, 1, 7, 7))


def test_multiscale_passes_the_factored_out_half_through() -> None:
    torch.manual_seed(0)
    inner = ActNorm(2).initialize(torch.randn(8, 2, 2, 2) * 3 + 1)
    block = MultiScale((), (), inner, keep=2).double()
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    z, ladj = block(x)
    xs, _ = Squeeze()(x)
    zs, _ = Squeeze()(z)
    assert torch.equal(zs[:, 2:], xs[:, 2:])  # factored out: unchanged
    h1, ladj_inner = inner.double()(xs[:, :2])
    torch.testing.assert_close(zs[:, :2], h1)  # the kept half went through the next scale
    torch.testing.assert_close(ladj, ladj_inner)


def test_glow_learned_prior_conditions_the_factored_half_on_the_kept_half() -> None:
    torch.manual_seed(0)
    model = build_model({**TINY_GLOW, "learned_prior": True}, DIGITS)
    outer = model.flow.transform.transforms[1]
    assert isinstance(outer, MultiScale) and isinstance(outer.inner, MultiScale)
    prior = outer.post.transforms[-1]
    assert isinstance(prior, Coupling)
    keep = outer.keep  # 2 of the 4 squeezed channels go on; the other 2 are factored out
    assert keep == 2 and bool(prior.mask[:keep].all()) and not bool(prior.mask[keep:].any())
    plain = build_model({**TINY_GLOW, "learned_prior": False}, DIGITS)
    count = sum(isinstance(m, Coupling) for m in model.modules())
    assert count == sum(isinstance(m, Coupling) for m in plain.modules()) + 1  # one split, one prior


def test_presets_reject_impossible_squeezes_and_bad_options() -> None:
    mnist = DataInfo(event_shape=(1, 28, 28), support="unit", levels=256)
    build_model({"name": "glow", "levels": 2, "steps": 1, "hidden": 4}, mnist)  # 28 -> 14 -> 7
    with pytest.raises(ConfigError, match="odd side; use levels <= 2"):
        build_model({"name": "glow", "levels": 3}, mnist)
    with pytest.raises(ConfigError, match="odd side; use levels <= 0"):
        build_model({"name": "realnvp"}, DataInfo(event_shape=(1, 5, 5), support="unit", levels=4))
    with pytest.raises(ConfigError, match="batchnorm"):
        build_model({"name": "realnvp", "batchnorm": True}, DIGITS)
    with pytest.raises(ConfigError, match="architecture"):
        build_model({"name": "realnvp", "architecture": "pyramid"}, DIGITS)
    with pytest.raises(ConfigError, match="needs images"):
        build_model({"name": "realnvp", "architecture": "multiscale"}, DataInfo(event_shape=(4,)))
    flat = build_model({"name": "realnvp", "architecture": "vector", "transforms": 2}, DIGITS)
    assert not any(isinstance(m, MultiScale) for m in flat.modules())


def test_multiscale_realnvp_is_the_image_default_and_gradients_reach_every_parameter() -> None:
    model = build_model({"name": "realnvp", "transforms": 1, "hidden": [4], "levels": 2}, DIGITS)
    scales = [m for m in model.modules() if isinstance(m, MultiScale)]
    assert len(scales) == 2 and isinstance(model.flow.transform.transforms[0], Logit)
    assert any(isinstance(m.conditioner, CouplingConvNet) for m in model.modules() if isinstance(m, Coupling))
    x = torch.round(torch.rand(8, 1, 8, 8) * 16) / 16
    model.loss(x).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        s = model.sample(4, generator=torch.Generator().manual_seed(0))
    levels = torch.arange(17) / 16
    assert s.shape == (4, 1, 8, 8) and torch.isin(s, levels).all()


# -- training and bits/dim -----------------------------------------------------------------------


def _digits() -> torch.Tensor:
    return load_dataset(DataConfig("digits"), seed=0).train.x


@pytest.mark.parametrize(
    "spec",
    [
        TINY_GLOW,
        {**TINY_GLOW, "dequantization": "variational"},
        {"name": "realnvp", "transforms": 1, "hidden": [8]},
    ],
    ids=["glow", "glow-variational", "realnvp-multiscale"],
)
def test_image_flows_learn_digits(spec: dict) -> None:
    x = _digits()
    torch.manual_seed(0)
    model = build_model(spec, DIGITS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for _ in range(50):
        batch = x[torch.randint(0, x.shape[0], (64,), generator=g)]
        out = model.loss(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        history.append(out.metrics["bpd"].item())
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert all(math.isfinite(b) for b in history)
    assert last < first - 0.3, f"bits/dim {first:.3f} -> {last:.3f}"
    # The bits/dim must fall for the right reason: the trained flow's log|det ∂f/∂y| (that
    # log p(y) = log p_Z(f(y)) + log|det| adds) is the log-determinant of autograd's Jacobian of f,
    # in double precision, on dequantized digits (a sign error would let training inflate p).
    model.eval().double()
    flow = model.distribution()
    y = model.dequantizer(x[:2].double())[0]
    _, ladj = flow.transform(y)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v: flow.transform(v.view(1, *DIGITS.event_shape))[0].reshape(-1), y[i].reshape(-1)
        )
        torch.testing.assert_close(ladj[i], torch.linalg.slogdet(jac).logabsdet, rtol=1e-9, atol=1e-7)


def test_loss_reports_bits_per_dim_of_the_log_prob() -> None:
    torch.manual_seed(0)
    model = build_model({**TINY_GLOW, "dequantization": "variational"}, DIGITS)
    x = _digits()[:32]
    model.loss(x)  # ActNorm initialisation
    model.eval()
    torch.manual_seed(7)
    log_p = model.log_prob(x)
    torch.manual_seed(7)  # the same dequantization noise
    out = model.loss(x)
    torch.testing.assert_close(out.metrics["nll"], -log_p.mean())
    torch.testing.assert_close(out.metrics["bpd"], -log_p.mean() / (64 * math.log(2)))
    assert 0 < out.metrics["bpd"] < math.log2(17) + 1  # at most ~log2 L for a fresh model


# -- variational dequantization ------------------------------------------------------------------


def test_variational_dequantizer_is_registered_and_its_samples_stay_in_the_bin() -> None:
    deq = DEQUANTIZERS.build({"name": "variational"}, info=DIGITS).double()
    assert isinstance(deq, VariationalDequantizer)
    x = _digits()[:16].double()
    y, log_q = deq(x)
    assert y.shape == x.shape and log_q.shape == (16,)
    assert torch.equal(deq.quantize(y), x)
    assert isinstance(deq.preprocessing()[0], Logit)
    # the image path: the density evaluated at the sampled y is the one the sampler reported
    torch.testing.assert_close(deq.log_density(y, x), log_q, atol=1e-8, rtol=1e-8)


def _bin_integrals(flow: Flow, levels: int, d: int, n: int) -> torch.Tensor:
    """log P(k) = log ∫_bin p(y) dy for every bin k ∈ {0..L−1}^d, by the midpoint rule."""
    edges = torch.linspace(0, 1, levels * n + 1, dtype=torch.float64)
    mids = (edges[1:] + edges[:-1]) / 2
    grid = torch.stack([a.reshape(-1) for a in torch.meshgrid(*([mids] * d), indexing="ij")], 1)
    with torch.no_grad():
        p = flow.log_prob(grid).exp() / (levels * n) ** d
    p = p.reshape(*([levels, n] * d)).permute(*range(0, 2 * d, 2), *range(1, 2 * d, 2))
    return p.reshape(*([levels] * d), -1).sum(-1).log()


def _target_flow(d: int) -> Flow:
    """A fixed density on (0, 1)^d far from uniform inside each bin: logit-normal in 1-D, and with
    a dependence between the coordinates (an affine coupling) in 2-D."""
    torch.manual_seed(11)
    transforms: list = [Logit(0.0)]
    if d == 2:
        transforms.append(Coupling(torch.tensor([True, False]), MLP(1, [8], 2, "tanh"), Affine()))
    return Flow(Composed(transforms).double(), StandardNormal((d,)).double()())


@pytest.mark.parametrize("d", [1, 2])
def test_variational_q_is_a_normalised_density_on_each_bin(d: int) -> None:
    levels = 4
    info = DataInfo(event_shape=(d,), support="unit", levels=levels)
    torch.manual_seed(0)
    deq = VariationalDequantizer(info, hidden=(8,)).double()
    with (
        torch.no_grad()
    ):  # make q far from uniform (but not so peaked at the bin edges that the grid misses it)
        for p in deq.parameters():
            p.add_(0.2 * torch.randn_like(p))
    n = 4000 if d == 1 else 300
    mids = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # offsets u inside the bin
    u = mids[:, None] if d == 1 else torch.cartesian_prod(mids, mids)
    for k in ([0], [3], [1]) if d == 1 else ([0, 3], [2, 1]):
        kk = torch.tensor(k, dtype=torch.float64)
        x = (kk / (levels - 1)).expand(u.shape[0], d)
        y = (kk + u) / levels
        with torch.no_grad():
            log_q = deq.log_density(y, x)
        assert log_q.max() - log_q.min() > 2.0  # far from the uniform q (constant d log L)
        mass = (log_q.exp() * (1 / (levels * n)) ** d).sum().item()
        assert mass == pytest.approx(1.0, abs=5e-3), f"∫ q(y | k={k}) dy = {mass}"
        with torch.no_grad():
            y_s, log_q = deq(x[:64])
            torch.testing.assert_close(deq.log_density(y_s, x[:64]), log_q, atol=1e-8, rtol=1e-8)
        assert torch.equal(torch.floor(y_s * levels), kk.expand(64, d))


@pytest.mark.parametrize("d", [1, 2])
def test_dequantization_bounds_stay_below_log_P_and_learning_q_tightens_them(d: int) -> None:
    """E_q[log p(y) − log q(y|k)] = log P(k) − KL(q ‖ p(·|bin k)) ≤ log P(k), for uniform and learned q."""
    levels = 4
    info = DataInfo(event_shape=(d,), support="unit", levels=levels)
    flow = _target_flow(d)
    exact = _bin_integrals(flow, levels, d, 2000 if d == 1 else 150)
    assert exact.exp().sum().item() == pytest.approx(1.0, abs=2e-3)
    ks = torch.cartesian_prod(*[torch.arange(levels, dtype=torch.float64)] * d).reshape(-1, d)
    x = ks / (levels - 1)
    log_p_exact = exact[tuple(ks.long().T)]

    def bound(deq: torch.nn.Module, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs = x.repeat(n, 1)
        y, log_q = deq(xs)
        values = (flow.log_prob(y) - log_q).reshape(n, -1)
        return values.mean(0), values.std(0) / math.sqrt(n)

    torch.manual_seed(1)
    with torch.no_grad():
        uniform, se_u = bound(UniformDequantizer(info).double(), 4000)
    torch.manual_seed(2)
    deq = VariationalDequantizer(info, hidden=(16,)).double()
    opt = torch.optim.Adam(deq.parameters(), lr=1e-2)
    for _ in range(150):
        value, _ = bound(deq, 32)
        opt.zero_grad()
        (-value.sum()).backward()
        opt.step()
    with torch.no_grad():
        learned, se_l = bound(deq, 4000)
    assert (uniform <= log_p_exact + 3 * se_u + 1e-6).all(), (uniform, log_p_exact)
    assert (learned <= log_p_exact + 3 * se_l + 1e-6).all(), (learned, log_p_exact)
    gap_uniform, gap_learned = (log_p_exact - uniform).sum(), (log_p_exact - learned).sum()
    assert gap_uniform > 0.05, "the target should be far from uniform within its bins"
    assert gap_learned < 0.5 * gap_uniform, f"KL gap {gap_uniform:.4f} (uniform) vs {gap_learned:.4f}"
