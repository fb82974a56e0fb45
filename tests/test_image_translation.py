"""Image-to-image translation: pix2pix and CycleGAN, their networks and their losses.

The mathematics: a CycleGAN whose generators are exact inverses has zero cycle loss, and its
identity loss is the hand-computed L1; pix2pix's generator loss is its adversarial term plus
λ times the L1 computed here by hand, and its output keeps the observation (P x̂ = y); the
PatchGAN's output grid and receptive field follow the convolution arithmetic, checked against
the gradient's support; each group's update moves that group's parameters only. And learning: a
few seconds of pix2pix on 8×8 digits beat nearest and bicubic upsampling at super-resolution ×2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.data.degradations import SuperResolution, block_average
from simulacra.data.info import DataInfo
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.models.cyclegan import CycleGAN, ImagePool
from simulacra.models.translation import Pix2Pix
from simulacra.models.zoo import build_model
from simulacra.nn.translation import PatchDiscriminator, UNetTranslator, receptive_field
from simulacra.objectives.adversarial import LOSSES

DIGITS = DataInfo(event_shape=(1, 8, 8), support="unit", num_classes=10, levels=17)
TINY = {
    "name": "pix2pix",
    "task": "super-resolution",
    "factor": 2,
    "channels": [4, 8],
    "patch_channels": [4, 8],
}


def _images(n: int, seed: int = 0, shape: tuple[int, ...] = (1, 8, 8)) -> Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


class Scale(nn.Module):
    """x -> s·x, a fixed map with no parameters (s = −1: colour inversion in [−1, 1])."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: Tensor) -> Tensor:
        return self.s * x


def _cyclegan(g_ab: nn.Module, g_ba: nn.Module) -> CycleGAN:
    torch.manual_seed(0)
    return CycleGAN(
        DIGITS, g_ab, g_ba, PatchDiscriminator(1, (4, 8)), PatchDiscriminator(1, (4, 8)),
        LOSSES.get("least-squares"), domain_a=(0, 1, 2), domain_b=(7,),
    )  # fmt: skip


# -- CycleGAN ---------------------------------------------------------------------------------


def test_inverse_generators_have_zero_cycle_loss_and_the_identity_loss_as_defined() -> None:
    x = _images(12)
    c = torch.tensor([0, 7, 1, 7, 2, 5, 7, 0, 9, 7, 1, 3])  # 6 in A, 4 in B, 2 in neither
    inverse = _cyclegan(Scale(-1.0), Scale(-1.0))  # G = F = colour inversion: F(G(a)) = a exactly
    out = inverse.loss(x, c, group="generators")
    assert out.metrics["cycle"] == 0.0
    a = (2 * x[torch.isin(c, torch.tensor([0, 1, 2]))] - 1).numpy()  # model space, the labels of A
    b = (2 * x[c == 7] - 1).numpy()
    # identity: E‖G(b) − b‖₁ + E‖F(a) − a‖₁ with G(b) = −b: mean |2b| + mean |2a|
    hand = np.abs(-b - b).mean() + np.abs(-a - a).mean()
    assert out.metrics["identity"].item() == pytest.approx(hand, rel=1e-6)
    weighted = out.metrics["adversarial"] + 10.0 * 0.5 * out.metrics["identity"]
    assert out.loss.item() == pytest.approx(weighted.item(), rel=1e-6)
    # generators that are not inverses: G = 2x, F = x give cycle mean|2a − a| + mean|2b − b|
    off = _cyclegan(Scale(2.0), Scale(1.0)).loss(x, c, group="generators")
    assert off.metrics["cycle"].item() == pytest.approx(np.abs(a).mean() + np.abs(b).mean(), rel=1e-6)
    assert off.metrics["identity"].item() == pytest.approx(np.abs(b).mean(), rel=1e-6)  # F(a) = a


def test_cyclegan_with_one_domain_missing_from_the_batch_leaves_its_terms_out() -> None:
    model = _cyclegan(Scale(-1.0), Scale(-1.0))
    x, c = _images(4), torch.tensor([0, 1, 2, 4])  # no example of B
    for group in model.groups:
        out = model.loss(x, c, group=group)
        assert torch.isfinite(out.loss)
    b_only = model.loss(x[:2], torch.tensor([7, 7]), group="generators")
    assert torch.isfinite(b_only.loss) and b_only.metrics["cycle"] == 0.0


def test_cyclegan_learns_an_unpaired_colour_inversion() -> None:
    """Domain A: half of the training digits; domain B: the other half inverted (1 − x), so no
    image of B is paired with one of A. After 60 steps (about 1.5 s on one thread), G(a) is close to
    the inversion that no pair showed: held-out L1 to 1 − x below 0.25. Measured: 0.173 (0.172 without the pool of fakes); untrained
    0.380; the identity map 0.791. (With the identity term, λ_id = 0.5, it is 0.359: that term
    asks G to leave B's images alone, which opposes an inversion, so it is off here.)"""
    from simulacra.data.datasets import DataConfig, load_dataset

    data = load_dataset(DataConfig(name="digits"))
    train, test = data.train.x.float(), data.test.x.float()
    half = train.shape[0] // 2
    x = torch.cat([train[:half], 1 - train[half:]])
    labels = (torch.arange(train.shape[0]) >= half).long()  # 0: domain A, 1: domain B
    torch.manual_seed(0)
    nets = [UNetTranslator(1, 1, (4, 8), event_size=(8, 8)) for _ in range(2)]
    model = CycleGAN(
        data.info, *nets, PatchDiscriminator(1, (8, 16)), PatchDiscriminator(1, (8, 16)),
        LOSSES.get("least-squares"), identity_weight=0.0,
    )  # fmt: skip
    optimizers = {
        g: torch.optim.Adam(p, lr=3e-3, betas=(0.5, 0.999)) for g, p in model.parameter_groups().items()
    }
    draw = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(0, x.shape[0], (64,), generator=draw)
        for group in model.groups:
            optimizers[group].zero_grad()
            model.loss(x[idx], labels[idx], group=group).loss.backward()
            optimizers[group].step()
    model.eval()
    error = (model.translate(test, "a->b") - (1 - test)).abs().mean()
    assert error < 0.25, error


def test_the_image_pool_fills_then_swaps_half_and_loses_no_image() -> None:
    """While it fills, the pool shows each fake as it is; once full, each fake is shown with
    probability ½ and otherwise swapped for a stored one, which it replaces: the images shown and
    the images stored are always, together, the images stored before and the fakes given."""
    torch.manual_seed(0)
    pool = ImagePool(6, (1, 2, 2))
    first = torch.arange(4.0)[:, None, None, None].expand(4, 1, 2, 2).clone()
    assert torch.equal(pool(first), first) and int(pool.count) == 4
    swapped = 0

    def key(t: Tensor) -> list[float]:
        return sorted(t[:, 0, 0, 0].tolist())  # each image is one constant

    fakes = 100.0 + first[:3]
    shown = pool(fakes)  # two fill the pool and are shown as they are; the third may be swapped
    assert torch.equal(shown[:2], fakes[:2]) and key(torch.cat([shown[2:], pool.images])) == key(
        torch.cat([first, fakes])
    )
    for step in range(200):
        fakes = torch.full((5, 1, 2, 2), 1000.0 + 10 * step) + torch.arange(5.0)[:, None, None, None]
        before = pool.images.clone()
        shown = pool(fakes)
        assert key(torch.cat([shown, pool.images])) == key(torch.cat([before, fakes]))
        swapped += int((shown != fakes).any((1, 2, 3)).sum())
    assert int(pool.count) == 6
    assert 0.4 < swapped / (200 * 5) < 0.6  # about half of the fakes are swapped once it is full
    assert torch.equal(ImagePool(0, (1, 2, 2))(first), first)
    with pytest.raises(ConfigError, match="pool size"):
        ImagePool(-1, (1, 2, 2))


# -- pix2pix ----------------------------------------------------------------------------------


def test_pix2pix_generator_loss_is_adversarial_plus_lambda_times_hand_computed_l1() -> None:
    torch.manual_seed(0)
    model = build_model(TINY, DIGITS).train()
    x = _images(6)
    torch.manual_seed(5)
    out = model.loss(x, group="generator")
    # by hand, with the same noise z: y = block means, x̂ = y + (I − P) G(y, z)
    torch.manual_seed(5)
    real = 2 * x - 1
    low = real.reshape(6, 1, 4, 2, 4, 2).mean(dim=(3, 5))  # (6, 1, 4, 4)
    y = low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    z = torch.randn(6, 1, 8, 8)
    g = model.generator(y, z)
    g_low = g.reshape(6, 1, 4, 2, 4, 2).mean(dim=(3, 5)).repeat_interleave(2, 2).repeat_interleave(2, 3)
    fake = g - g_low + y
    hand_l1 = np.abs(fake.detach().numpy() - real.numpy()).mean()
    logits = model.discriminator(torch.cat([y, fake], dim=1))
    hand_adversarial = F.softplus(-logits).mean()  # non-saturating: −log σ(D(y, x̂))
    assert out.metrics["l1"].item() == pytest.approx(hand_l1, rel=1e-5)
    assert out.metrics["adversarial"].item() == pytest.approx(hand_adversarial.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(hand_adversarial.item() + 100.0 * hand_l1, rel=1e-5)


def test_pix2pix_output_keeps_the_observation() -> None:
    """P x̂ = y: the block means of every translation are those of the low-resolution input."""
    torch.manual_seed(0)
    model = build_model({**TINY, "factor": 4, "channels": [4]}, DIGITS).eval()
    model.range = type(model.range)(2.0, -1.0, True, None)  # no rounding to the 17 levels
    x = _images(5)
    y = model.observe(x)
    out = model.sample(5, y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(F.avg_pool2d(out, 4), F.avg_pool2d(x, 4), atol=1e-6)
    assert torch.allclose(block_average(4)(out), y, atol=1e-6)
    assert not torch.allclose(out, y, atol=1e-3)  # and adds detail inside the blocks


@pytest.mark.parametrize(
    ("settings", "shape"),
    [
        ({"task": "super-resolution", "factor": 4}, (1, 8, 8)),
        ({"task": "inpainting", "mask": "center"}, (1, 8, 8)),
        ({"task": "colorization"}, (3, 8, 8)),
    ],
)
def test_every_task_keeps_its_observation_in_model_space(settings: dict, shape: tuple[int, ...]) -> None:
    """x̂ = y + (I − P) G(y, z) has P x̂ = y exactly, and the generator changes what P discards."""
    torch.manual_seed(0)
    model = build_model({**TINY, **settings}, DataInfo(shape, "unit"))
    real = 2 * _images(4, shape=shape) - 1
    project = model.projection(real)
    y = project(real)
    fake = model.generate(y, project, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(project(fake), y, atol=1e-6)
    assert not torch.allclose(fake, y, atol=1e-3)
    for group in model.groups:
        assert torch.isfinite(model.loss(_images(4, shape=shape), group=group).loss)


def test_pix2pix_learns_super_resolution_better_than_interpolation() -> None:
    """Held-out L1 (data units) on 8×8 digits ×2 after 150 steps (about 1.5 s on one thread): below
    0.8 × that of nearest (= the observation) and of bicubic upsampling. Measured on the 297 test
    digits: 0.094 against 0.153 (nearest) and 0.158 (bicubic); untrained, the model scores 0.165."""
    from simulacra.data.datasets import DataConfig, load_dataset

    data = load_dataset(DataConfig(name="digits"))
    train, test = data.train.x.float(), data.test.x.float()
    torch.manual_seed(0)
    model = build_model({**TINY, "channels": [8, 16], "patch_channels": [8, 16]}, data.info)
    optimizers = {
        g: torch.optim.Adam(p, lr=2e-3, betas=(0.5, 0.999)) for g, p in model.parameter_groups().items()
    }
    draw = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = train[torch.randint(0, train.shape[0], (64,), generator=draw)]
        for group in model.groups:
            optimizers[group].zero_grad()
            model.loss(batch, group=group).loss.backward()
            optimizers[group].step()
    model.eval()
    low = F.avg_pool2d(test, 2)
    ours = (
        (model.translate(model.observe(test), generator=torch.Generator().manual_seed(0)) - test).abs().mean()
    )
    nearest = (F.interpolate(low, scale_factor=2, mode="nearest") - test).abs().mean()
    bicubic = (F.interpolate(low, scale_factor=2, mode="bicubic").clamp(0, 1) - test).abs().mean()
    assert ours < 0.8 * min(nearest, bicubic), (ours, nearest, bicubic)


def test_the_inverse_tasks_hand_pix2pix_the_problem_it_learnt_only() -> None:
    """``super_resolve``/``inpaint``/``colorize`` (the CLI verbs' tasks) translate with a pix2pix
    trained for that problem, with the diffusion path's observation format, and refuse others."""
    from simulacra.tasks import inverse

    torch.manual_seed(0)
    model = build_model(TINY, DIGITS).eval()
    x = _images(3)
    low = F.avg_pool2d(x, 2)  # (3, 1, 4, 4), as the CLI makes it
    got = inverse.super_resolve(model, low, 2, generator=torch.Generator().manual_seed(1))
    want = model.translate(model.observe(x), generator=torch.Generator().manual_seed(1))
    assert torch.equal(got, want)
    with pytest.raises(ConfigError, match="trained for super-resolution x2, not super-resolution x4"):
        inverse.super_resolve(model, F.avg_pool2d(x, 4), 4)
    with pytest.raises(ConfigError, match="resample"):
        inverse.super_resolve(model, low, 2, resample=3)
    with pytest.raises(ConfigError, match="fills no other mask"):
        inverse.inpaint(model, x, torch.ones(1, 8, 8))
    torch.manual_seed(0)
    filler = build_model({**TINY, "task": "inpainting", "mask": "center"}, DIGITS).eval()
    mask = torch.ones(1, 8, 8)
    mask[:, 2:6, 2:6] = 0
    out = inverse.inpaint(filler, x, mask)
    assert torch.allclose(out * mask, torch.round(x * 16) / 16 * mask, atol=1e-6)  # the kept pixels


def test_training_with_sample_every_pictures_translations(tmp_path: Path) -> None:
    """``fit`` with ``sample_every``: a pix2pix's samples are translations of held-out observations."""
    from simulacra.config import TrainConfig
    from simulacra.data.info import Dataset, Split
    from simulacra.train import fit

    torch.manual_seed(0)
    model = build_model(TINY, DIGITS)
    data = Dataset("synthetic", DIGITS, Split(_images(16), None), Split(_images(5, seed=1), None))
    drawn: list[tuple[int, ...]] = []
    config = TrainConfig(steps=2, batch_size=8, sample_every=1, log_every=1)
    fit(
        model,
        data,
        config,
        run_dir=tmp_path,
        progress=False,
        sample_writer=lambda x, path: drawn.append(x.shape),
    )
    assert drawn == [(5, 1, 8, 8)] * 2  # the 5 held-out images, at steps 1 and 2


# -- networks ---------------------------------------------------------------------------------


def test_patchgan_output_grid_and_receptive_field() -> None:
    assert receptive_field([4] * 5, [2, 2, 2, 1, 1]) == 70  # pix2pix's 70×70 PatchGAN
    d = PatchDiscriminator(2, (4, 8, 8), (48, 48)).double()
    assert d.receptive_field == 34  # layers (k, s): (4, 2), (4, 2), (4, 1), (4, 1)
    x = torch.randn(1, 2, 48, 48, dtype=torch.float64, requires_grad=True)
    out = d(x)
    assert out.shape == (1, 1, *d.output_size((48, 48))) == (1, 1, 10, 10)  # 48 -> 24 -> 12 -> 11 -> 10
    out[0, 0, 5, 4].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3))).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2))).flatten()
    # output (i, j) sees inputs [4i − 11, 4i − 11 + 33]: total stride 4, total padding
    # 1 + 1·2 + 1·4 + 1·4 = 11 (each layer's padding times the strides before it)
    assert (rows.min().item(), rows.max().item()) == (4 * 5 - 11, 4 * 5 - 11 + 33)
    assert (cols.min().item(), cols.max().item()) == (4 * 4 - 11, 4 * 4 - 11 + 33)


def test_unet_translator_keeps_the_size_and_reads_every_skip() -> None:
    torch.manual_seed(0)
    net = UNetTranslator(1, 3, (4, 8, 16), noise_channels=2, event_size=(16, 16))
    y, z = torch.randn(2, 1, 16, 16), torch.randn(2, 2, 16, 16)
    out = net(y, z)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() < 1
    with pytest.raises(DataError, match="noise"):
        net(y)


# -- the groups -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["pix2pix", "cyclegan"])
def test_each_group_update_changes_its_own_parameters_only(which: str) -> None:
    torch.manual_seed(0)
    if which == "pix2pix":
        model: Pix2Pix | CycleGAN = build_model(TINY, DIGITS)
    else:
        nets = [UNetTranslator(1, 1, (4, 8), event_size=(8, 8)) for _ in range(2)]
        model = _cyclegan(*nets)
    x, c = _images(8), torch.tensor([0, 7, 1, 7, 2, 7, 0, 7])
    groups = model.parameter_groups()
    for group in model.groups:
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer = torch.optim.Adam(groups[group], lr=1e-2)
        optimizer.zero_grad()
        model.loss(x, c, group=group).loss.backward()
        optimizer.step()
        own = {id(p) for p in groups[group]}
        for name, p in model.named_parameters():
            moved = not torch.equal(before[name], p.detach())
            assert moved == (id(p) in own), f"{group} update: {name} moved={moved}"


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "info", "message"),
    [
        ({"task": "deblur"}, DIGITS, "unknown pix2pix task 'deblur'"),
        ({"factor": 4}, DataInfo((1, 4, 4), "unit"), "at least 8 pixels"),
        ({"factor": 3}, DIGITS, "divisible by 3"),
        ({"task": "colorization"}, DIGITS, "colour images"),
        ({"task": "inpainting", "mask": "random"}, DIGITS, "fixed degradation"),
        ({"task": "inpainting", "mask": "blob"}, DIGITS, "unknown mask kind"),
        ({"channels": [4, 8, 16, 32]}, DIGITS, "divisible by 16"),
        ({"patch_channels": [4, 8, 16, 32]}, DIGITS, "larger images"),
        ({}, DataInfo((5,), "real"), "translates images"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict, info: DataInfo, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model({**TINY, **settings}, info)


def test_bad_use_is_refused_plainly() -> None:
    torch.manual_seed(0)
    model = build_model(TINY, DIGITS)
    with pytest.raises(CapabilityError, match="translates observations"):
        model.sample(3)
    cyclegan = _cyclegan(Scale(-1.0), Scale(-1.0))
    with pytest.raises(CapabilityError, match="translate"):
        cyclegan.sample(3, torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="labels"):
        cyclegan.loss(_images(2), None, group="generators")
    with pytest.raises(ConfigError, match="disjoint"):
        CycleGAN(
            DIGITS,
            Scale(1),
            Scale(1),
            Scale(1),
            Scale(1),
            LOSSES.get("hinge"),
            domain_a=(1,),
            domain_b=(1, 2),
        )
    assert SuperResolution(2).describe() == "super-resolution x2"
