"""Autoregressive models: the chain rule's mathematics, checked for every preset.

* autoregressive structure: ∂ output_i / ∂ x_j = 0 whenever j does not precede i in the
  model's order (autograd; for the Transformer, with respect to the token embeddings);
* normalization: Σ_x p(x) = 1 over all 2^D binary vectors (and all L^D grey-level vectors);
* sampling: frequencies match exp(log_prob) (chi-square), cached and uncached sampling agree
  under one generator, completion keeps the observed entries and draws p(x_miss | x_obs).
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare, kstest

from simulacra.data.info import DataInfo
from simulacra.distributions.heads import head_for
from simulacra.errors import ConfigError, DataError
from simulacra.models.autoregressive import Autoregressive
from simulacra.models.base import ExactLikelihood
from simulacra.models.zoo import build_model
from simulacra.nn.masked import MADE, MaskedConv2d, conv_mask

BINARY_VEC = DataInfo(event_shape=(9,), support="binary", levels=2)
BINARY_IMG = DataInfo(event_shape=(1, 3, 3), support="binary", levels=2)
RGB = DataInfo(event_shape=(3, 3, 3), support="unit", levels=4)

# (preset, kwargs, info) with D ≤ 10 binary entries
BINARY_PRESETS = [
    ("nade", {"hidden": 6}, BINARY_VEC),
    ("nade", {"hidden": 6, "order": "reversed"}, BINARY_VEC),
    ("made", {"hidden": [12, 12], "num_masks": 4, "direct": True}, BINARY_VEC),
    ("pixelcnn", {"channels": 4, "blocks": 2, "kernel_size": 3}, BINARY_IMG),
    ("gated-pixelcnn", {"channels": 4, "layers": 2, "kernel_size": 3}, BINARY_IMG),
    ("transformer", {"dim": 8, "layers": 2, "heads": 2}, BINARY_VEC),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(BINARY_PRESETS)]
# the structure test also covers real-valued entries and grey levels
STRUCTURE = [
    *BINARY_PRESETS,
    ("rnade", {"hidden": 6, "components": 2}, DataInfo((7,), "real")),
    (
        "made",
        {"hidden": [12], "num_masks": 2, "likelihood": "logistic-mixture"},
        DataInfo((7,), "unit", levels=9),
    ),
]


def _model(name: str, kwargs: dict, info: DataInfo, seed: int = 0) -> Autoregressive:
    torch.manual_seed(seed)
    model = build_model({"name": name, **kwargs}, info).eval()
    with torch.no_grad():  # move away from the initialization (zero biases, symmetric weights)
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model


def _all_vectors(info: DataInfo, levels: int = 2) -> torch.Tensor:
    grid = [k / (levels - 1) for k in range(levels)]
    x = torch.tensor(list(itertools.product(grid, repeat=info.dim)), dtype=torch.float32)
    return x.reshape(-1, *info.event_shape)


def _masks(model: Autoregressive) -> range:
    return range(model.num_masks)


def _jacobian_rows(model: Autoregressive, x: torch.Tensor) -> torch.Tensor:
    """|∂ features_i / ∂ input_j| summed over the batch and parameters, (D, D)."""
    d = model.info.dim
    net = model.net
    if hasattr(net, "embed"):  # tokens: differentiate with respect to the embedded inputs
        captured = {}

        def hook(_module, _inputs, output):
            output.retain_grad()
            captured["e"] = output
            return output

        handle = net.embed.register_forward_hook(hook)
        rows = []
        for i in range(d):
            out = net(x)[:, i].sum()
            out.backward()
            # embedded input s carries token s − 1 (inputs are shifted behind BOS)
            g = captured["e"].grad.abs().sum((0, 2))
            rows.append(torch.cat([g[1:], torch.zeros(1)]))
        handle.remove()
        return torch.stack(rows)
    rows = []
    for i in range(d):
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xi)[:, i].sum(), xi)
        rows.append(g.abs().reshape(x.shape[0], d).sum(0))
    return torch.stack(rows)


@pytest.mark.parametrize(("name", "kwargs", "info"), STRUCTURE, ids=[*IDS, "rnade", "made-mixture"])
def test_outputs_depend_only_on_earlier_entries(name: str, kwargs: dict, info: DataInfo) -> None:
    model = _model(name, kwargs, info)
    x = torch.rand(3, *info.event_shape)
    for k in _masks(model):
        if model.num_masks > 1:
            model.net.use_mask(k)
        rank = torch.empty(info.dim, dtype=torch.long)
        rank[model.order] = torch.arange(info.dim)
        jac = _jacobian_rows(model, x)  # (D outputs, D inputs)
        later = rank[None, :] >= rank[:, None]  # input j at or after output i in the order
        assert jac[later].abs().max() == 0, f"{name}: an output depends on a later entry"
        assert jac[~later].gt(0).float().mean() > 0.5, f"{name}: outputs ignore earlier entries"


@pytest.mark.parametrize(("name", "kwargs", "info"), BINARY_PRESETS, ids=IDS)
def test_probabilities_sum_to_one_over_all_binary_vectors(name: str, kwargs: dict, info: DataInfo) -> None:
    model = _model(name, kwargs, info)
    assert isinstance(model, ExactLikelihood)
    with torch.no_grad():
        log_p = model.log_prob(_all_vectors(info)).double()
    assert log_p.shape == (2**info.dim,)
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("name", "likelihood"),
    [
        ("nade", "categorical"),
        ("made", "logistic"),
        ("pixelcnn", "logistic-mixture"),
        ("pixelcnn", "categorical"),
    ],
)
def test_grey_level_likelihoods_sum_to_one(name: str, likelihood: str) -> None:
    info = DataInfo(event_shape=(1, 2, 2), support="unit", levels=3)
    small = {"nade": {"hidden": 5}, "made": {"hidden": [8], "num_masks": 2}, "pixelcnn": {"channels": 4}}
    model = _model(name, {**small[name], "likelihood": likelihood}, info)
    with torch.no_grad():
        log_p = model.log_prob(_all_vectors(info, levels=3)).double()
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-4)


def test_rgb_channels_are_ordered_within_a_pixel() -> None:
    """R before G before B inside a pixel: the channel-grouped masks of both PixelCNNs."""
    for name, kwargs in [
        ("pixelcnn", {"channels": 6, "blocks": 1}),
        ("gated-pixelcnn", {"channels": 6, "layers": 1}),
    ]:
        model = _model(name, {**kwargs, "kernel_size": 3}, RGB)
        rank = torch.empty(RGB.dim, dtype=torch.long)
        rank[model.order] = torch.arange(RGB.dim)
        jac = _jacobian_rows(model, torch.rand(2, *RGB.event_shape))
        assert jac[rank[None, :] >= rank[:, None]].max() == 0
        # the G entry of pixel 0 (flat index 9) reads its R entry (flat index 0)
        assert jac[9, 0] > 0 and jac[0, 9] == 0
        small = DataInfo((3, 1, 2), "unit", levels=2)  # 2^6 colour images of 1 x 2 pixels
        with torch.no_grad():
            log_p = _model(name, {**kwargs, "kernel_size": 3}, small).log_prob(_all_vectors(small)).double()
        assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-4)


def test_the_gated_pixelcnn_has_no_blind_spot_and_the_pixelcnn_has_one() -> None:
    info = DataInfo(event_shape=(1, 5, 5), support="binary", levels=2)
    last_row_start = 4 * 5 + 0  # pixel (4, 0): everything in rows 0..3 precedes it
    up_right = 3 * 5 + 4  # pixel (3, 4), up and to the right of (4, 0)... and of (4, 2) below
    target = 4 * 5 + 2
    gated = _model("gated-pixelcnn", {"channels": 4, "layers": 4, "kernel_size": 3}, info)
    plain = _model("pixelcnn", {"channels": 4, "blocks": 4, "kernel_size": 3}, info)
    x = torch.rand(2, *info.event_shape)

    def row(model: Autoregressive, i: int) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.net(xi)[:, i].sum(), xi)
        return g.abs().reshape(2, -1).sum(0)

    assert row(gated, target)[up_right] > 0
    assert row(plain, target)[up_right] == 0  # the blind spot of stacked masked kernels
    assert row(gated, last_row_start)[4] > 0


def _frequencies(samples: torch.Tensor) -> torch.Tensor:
    bits = samples.reshape(samples.shape[0], -1).round().long()
    codes = (bits * (2 ** torch.arange(bits.shape[1] - 1, -1, -1))).sum(1)
    return torch.bincount(codes, minlength=2 ** bits.shape[1]).double()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("nade", {"hidden": 4}),
        ("made", {"hidden": [8], "num_masks": 3}),
        ("transformer", {"dim": 8, "layers": 1, "heads": 2}),
    ],
)
@pytest.mark.parametrize("cache", [True, False])
def test_sampling_frequencies_match_the_probabilities(name: str, kwargs: dict, cache: bool) -> None:
    info = DataInfo(event_shape=(3,), support="binary", levels=2)
    model = _model(name, kwargs, info)
    x = model.sample(6000, generator=torch.Generator().manual_seed(1), cache=cache)
    with torch.no_grad():
        p = model.log_prob(_all_vectors(info)).double().exp()
    assert chisquare(_frequencies(x), p / p.sum() * len(x)).pvalue > 1e-3


@pytest.mark.parametrize(
    ("name", "kwargs", "info"),
    [
        ("nade", {"hidden": 8}, DataInfo((10,), "unit", levels=5)),
        ("rnade", {"hidden": 8, "components": 3}, DataInfo((6,), "real")),
        ("transformer", {"dim": 16, "layers": 2, "heads": 4}, DataInfo((10,), "unit", levels=6)),
    ],
)
def test_cached_and_uncached_sampling_agree(name: str, kwargs: dict, info: DataInfo) -> None:
    model = _model(name, kwargs, info)
    assert hasattr(model.net, "step")
    for options in ({}, {"temperature": 0.7}, {} if info.levels is None else {"top_k": 2}):
        a = model.sample(50, generator=torch.Generator().manual_seed(5), cache=True, **options)
        b = model.sample(50, generator=torch.Generator().manual_seed(5), cache=False, **options)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs", "info"),
    [
        ("nade", {"hidden": 8}, DataInfo((7,), "unit", levels=5)),
        ("nade", {"hidden": 8, "order": "reversed"}, DataInfo((70,), "binary", levels=2)),  # > 2 blocks
        ("transformer", {"dim": 16, "layers": 2, "heads": 4}, DataInfo((7,), "unit", levels=6)),
    ],
)
def test_incremental_steps_reproduce_the_full_pass(name: str, kwargs: dict, info: DataInfo) -> None:
    """NADE's O(D·H) recurrence and the Transformer's key-value cache give the one-pass features."""
    model = _model(name, kwargs, info)
    x = torch.randint(0, info.levels, (4, info.dim)) / (info.levels - 1)
    with torch.no_grad():
        full = model.net(x)
        state, previous = model.net.begin(4), None
        for t, i in enumerate(model.order.tolist()):
            features, state = model.net.step(state, t, previous)
            torch.testing.assert_close(features, full[:, i], atol=1e-5, rtol=1e-5)
            previous = x[:, i]


def test_completion_keeps_observed_entries_and_draws_the_conditional() -> None:
    info = DataInfo(event_shape=(3,), support="binary", levels=2)
    model = _model("nade", {"hidden": 4}, info)
    n = 6000
    observed = torch.tensor([1.0, 0.0, 0.0]).expand(n, 3)
    mask = torch.tensor([False, True, True]).expand(n, 3)  # x_0 = 1 observed, x_1, x_2 drawn
    x = model.sample(n, conditioned_on=observed, mask=mask, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x[:, 0], observed[:, 0])
    with torch.no_grad():
        p = model.log_prob(_all_vectors(info)).double().exp()
    conditional = p[4:] / p[4:].sum()  # codes 100, 101, 110, 111: p(x_1, x_2 | x_0 = 1)
    assert chisquare(_frequencies(x)[4:], conditional * n).pvalue > 1e-3
    # an image completed from its top half keeps the top half exactly
    img = _model("pixelcnn", {"channels": 4, "blocks": 1, "kernel_size": 3}, BINARY_IMG)
    data = torch.bernoulli(torch.full((5, *BINARY_IMG.event_shape), 0.5))
    hole = torch.zeros_like(data, dtype=torch.bool)
    hole[:, :, 1:] = True
    filled = img.sample(5, conditioned_on=data, mask=hole, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filled[~hole], data[~hole])
    assert set(filled[hole].unique().tolist()) <= {0.0, 1.0}


def test_temperature_and_top_k() -> None:
    info = DataInfo(event_shape=(6,), support="unit", levels=5)
    model = _model("nade", {"hidden": 8}, info)
    greedy = [model.sample(4, generator=torch.Generator().manual_seed(s), top_k=1) for s in range(3)]
    assert all(torch.equal(g, greedy[0]) for g in greedy)  # top-1 is deterministic
    assert torch.equal(greedy[0][0], greedy[0][1])
    cold = model.sample(4, generator=torch.Generator().manual_seed(0), temperature=1e-4)
    assert torch.equal(cold, greedy[0])  # T -> 0 is greedy decoding
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ConfigError, match="top_k"):
        model.sample(2, top_k=0)
    with pytest.raises(ConfigError, match="conditioned_on"):
        model.sample(2, mask=torch.ones(2, 6, dtype=torch.bool))


def test_made_log_prob_is_the_mixture_of_its_masks_and_training_draws_one() -> None:
    model = _model("made", {"hidden": [8], "num_masks": 3}, BINARY_VEC)
    x = torch.bernoulli(torch.full((5, 9), 0.5))
    with torch.no_grad():
        per_mask = []
        for k in range(3):
            model.net.use_mask(k)
            per_mask.append(model.conditionals(x).sum(1))
        model.net.use_mask(0)
        mixture = torch.logsumexp(torch.stack(per_mask), 0) - math.log(3)
        torch.testing.assert_close(model.log_prob(x), mixture)
        assert not torch.allclose(per_mask[0], per_mask[1])  # masks differ
    orders = set()
    model.train()
    for _ in range(12):
        model.loss(x)
        orders.add(tuple(model.order.tolist()))
    assert len(orders) > 1, "training should visit several orderings"


def test_made_direct_connections_follow_every_mask() -> None:
    """With direct input-output connections, output d depends on *every* input before it in the
    current mask's order (and on nothing else), for each of the masks."""
    torch.manual_seed(0)
    net = MADE(6, [4], 1, seed=1, num_masks=3, direct=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x = torch.randn(1, 6)
    for k in range(3):
        net.use_mask(k)
        jac = torch.autograd.functional.jacobian(lambda v: net(v).reshape(-1), x)[:, 0, :]  # (D, D)
        before = net.degrees[None, :] < net.degrees[:, None]  # input i precedes output d
        assert torch.all(jac[~before] == 0)
        assert torch.all(jac[before] != 0)


def test_made_masks_keep_the_single_mask_api() -> None:
    """Mask 0 of a multi-mask MADE is the single MADE with the same order and seed."""
    single = MADE(5, [7], 2, order=[4, 3, 2, 1, 0], seed=3)
    multi = MADE(5, [7], 2, order=[4, 3, 2, 1, 0], seed=3, num_masks=4)
    masks = [m.mask.clone() for m in multi.net if hasattr(m, "mask")]
    for a, b in zip([m.mask for m in single.net if hasattr(m, "mask")], masks):
        assert torch.equal(a, b)
    multi.use_mask(2)
    assert not all(
        torch.equal(a, m.mask) for a, m in zip(masks, [m for m in multi.net if hasattr(m, "mask")])
    )
    multi.use_mask(0)
    assert all(torch.equal(a, m.mask) for a, m in zip(masks, [m for m in multi.net if hasattr(m, "mask")]))
    assert multi.order.tolist() == [4, 3, 2, 1, 0]
    with pytest.raises(ConfigError, match="mask index"):
        multi.use_mask(4)


def test_masked_convolution_types() -> None:
    a = conv_mask((3, 3), "A", 1, 1)[0, 0]
    b = conv_mask((3, 3), "B", 1, 1)[0, 0]
    expected_a = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert torch.equal(a, expected_a)
    assert torch.equal(b, expected_a + torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]))
    v = conv_mask((3, 3), "V", 2, 2)
    assert v[:, :, :2].eq(1).all() and v[:, :, 2].eq(0).all()
    rgb = conv_mask((1, 1), "A", 3, 6, data_channels=3)[:, :, 0, 0]  # out groups 0,0,1,1,2,2
    assert torch.equal(rgb, torch.tensor([[0.0, 0, 0]] * 2 + [[1.0, 0, 0]] * 2 + [[1.0, 1, 0]] * 2))
    with pytest.raises(ConfigError, match="divisible"):
        MaskedConv2d(3, 4, 3, "B", data_channels=3)
    with pytest.raises(ConfigError, match="odd"):
        MaskedConv2d(1, 4, 4, "A")


def test_logistic_mixture_head_sums_to_one_and_rnade_is_a_density() -> None:
    head = head_for(DataInfo((2,), "unit", levels=6), "logistic-mixture", components=3)
    dist = head(torch.randn(4, 18) * 2)
    grid = torch.arange(6) / 5
    pairs = torch.cartesian_prod(grid, grid)  # (36, 2)
    total = torch.stack([dist.log_prob(p.expand(4, 2)) for p in pairs]).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(4), atol=1e-5, rtol=0)
    # RNADE on one real entry: ∫ p(x) dx = 1 by the trapezoid rule
    model = _model("rnade", {"hidden": 4, "components": 3}, DataInfo((1,), "real"))
    t = torch.linspace(-30, 30, 60001)[:, None]
    with torch.no_grad():
        integral = torch.trapezoid(model.log_prob(t).double().exp(), t[:, 0].double())
    assert integral.item() == pytest.approx(1.0, abs=1e-3)


def test_a_trained_nade_learns_binary_data() -> None:
    """A few hundred Adam steps on a 2-mode binary distribution approach its entropy."""
    info = DataInfo(event_shape=(6,), support="binary", levels=2)
    torch.manual_seed(0)
    model = build_model({"name": "nade", "hidden": 8}, info)
    g = torch.Generator().manual_seed(0)
    modes = torch.tensor([[1.0, 1, 1, 0, 0, 0], [0.0, 0, 0, 1, 1, 1]])
    data = modes[torch.randint(0, 2, (512,), generator=g)]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        model.loss(data).loss.backward()
        opt.step()
    with torch.no_grad():
        nll = -model.log_prob(data).mean().item()
    assert nll < math.log(2) + 0.05  # the entropy of two equally likely modes


def test_cli_trains_samples_and_evaluates_a_pixelcnn(tmp_path, capsys) -> None:
    from simulacra.cli import main

    run = tmp_path / "pixelcnn"
    argv = ["train", "pixelcnn", "--data", "digits", "--binarize", "static", "--out", str(run)]
    argv += ["--steps", "5", "--batch-size", "64", "--no-progress"]
    argv += ["--set", "model.channels=8", "--set", "model.blocks=1", "--set", "model.kernel_size=3"]
    assert main(argv) == 0
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["nll"]["estimator"] == "exact" and test["nll"]["unit"] == "nats"
    assert test["bpd"]["value"] == pytest.approx(test["nll"]["value"] / (64 * math.log(2)), rel=1e-9)
    assert (run / "samples.png").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metric", "nll", "--limit", "50"]) == 0
    assert "exact" in capsys.readouterr().out
    npy = tmp_path / "s.npy"
    argv = ["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png"), "--save-tensor", str(npy)]
    assert main([*argv, "--temperature", "0.5"]) == 0
    samples = np.load(npy)
    assert samples.shape == (4, 1, 8, 8) and set(np.unique(samples)) <= {0.0, 1.0}

    # inpainting by completion: the top half (observed, earlier in the raster order) is kept
    png = tmp_path / "inpaint.png"
    argv = ["inpaint", str(run), "--examples", "2", "-n", "3", "--mask-kind", "bottom", "-o", str(png)]
    assert main(argv) == 0
    picture = np.asarray(Image.open(png)).astype(int)
    cell = 8 * 4 + 1  # 8x8 images at scale 4 with 1 pixel of padding
    assert picture.shape[:2] == (2 * cell + 1, 5 * cell + 1)  # observation | 3 completions | original

    def image(row: int, col: int) -> np.ndarray:
        return picture[1 + row * cell : (row + 1) * cell : 4, 1 + col * cell : (col + 1) * cell : 4]

    for row in range(2):
        for col in (1, 2, 3):
            np.testing.assert_array_equal(image(row, col)[:4], image(row, 4)[:4])
            assert set(np.unique(image(row, col))) <= {0, 255}
    capsys.readouterr()
    assert main([*argv, "--sampler-steps", "5"]) == 2
    assert "steps apply to diffusion models" in capsys.readouterr().err


def test_a_conditional_network_gives_one_normalized_distribution_per_context() -> None:
    info = DataInfo(event_shape=(5,), support="binary", levels=2)
    head = head_for(DataInfo((1,), "binary", levels=2), "bernoulli")
    torch.manual_seed(0)
    model = Autoregressive(info, MADE(5, [16], 1, context_features=2), head, conditional=True).eval()
    x = _all_vectors(info)
    with torch.no_grad():
        for context in ([1.0, 0.0], [0.0, 3.0]):
            c = torch.tensor(context).expand(len(x), 2)
            assert torch.logsumexp(model.log_prob(x, c).double(), 0).exp().item() == pytest.approx(
                1.0, abs=1e-5
            )
        a = model.log_prob(x, torch.tensor([1.0, 0.0]).expand(len(x), 2))
        b = model.log_prob(x, torch.tensor([0.0, 3.0]).expand(len(x), 2))
    assert not torch.allclose(a, b)
    c = torch.tensor([[0.0, 3.0]]).expand(4, 2)
    assert model.sample(4, c, generator=torch.Generator().manual_seed(0)).shape == (4, 5)
    with pytest.raises(DataError, match="context"):
        model.sample(4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("pixelcnn", {"channels": 4, "blocks": 2, "kernel_size": 3}, (1, 9, 4)),
        ("pixelcnn", {"channels": 6, "blocks": 1, "kernel_size": 5}, (3, 7, 3)),
        ("gated-pixelcnn", {"channels": 4, "layers": 1, "kernel_size": 3}, (1, 9, 4)),
        ("gated-pixelcnn", {"channels": 6, "layers": 2, "kernel_size": 3}, (3, 10, 3)),
    ],
)
def test_pixelcnn_features_from_the_visible_rows_equal_the_full_pass(name: str, kwargs: dict, shape) -> None:
    """Uncached sampling runs a PixelCNN on the band of rows an entry sees: same features."""
    info = DataInfo(event_shape=shape, support="unit", levels=4)
    model = _model(name, kwargs, info)
    assert model.net.reach + 1 < shape[1]  # the band is a strict crop for the lower rows
    x = torch.rand(3, *shape)
    with torch.no_grad():
        full = model.net(x)
        for i in range(info.dim):
            torch.testing.assert_close(model.net.features_at(x, i), full[:, i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("rnade", {"hidden": 4, "components": 3}), ("nade", {"hidden": 4, "likelihood": "gaussian-learned"})],
)
def test_real_valued_samples_follow_the_density(name: str, kwargs: dict) -> None:
    """D = 1: the first conditional is the whole density; its CDF at the samples is uniform (KS)."""
    model = _model(name, kwargs, DataInfo((1,), "real"))
    x = model.sample(4000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        features = model.net(x[:1])[:, 0]  # the same for every x: nothing precedes entry 0
        base = model.head(features).base_dist
    cdf = base.cdf(x[:, 0][:, None]) if isinstance(base, torch.distributions.Normal) else None
    if cdf is None:  # mixture: Σ_k π_k Φ((x − μ_k) / σ_k)
        comp = base.component_distribution
        weights = base.mixture_distribution.probs[0, 0]
        cdf = (weights * comp.cdf(x[:, 0][:, None, None].expand(-1, 1, weights.shape[-1]))[:, 0]).sum(-1)
    assert kstest(cdf.flatten().numpy(), "uniform").pvalue > 1e-3
