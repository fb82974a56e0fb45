"""Image presets take bigger networks on a GPU, recorded in the run so it rebuilds anywhere."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from simulacra.cli import main
from simulacra.data.info import DataInfo
from simulacra.models.zoo import (
    ACCELERATOR_IMAGE_DEFAULTS,
    IMAGE_DEFAULTS,
    MODELS,
    build_model,
    recorded_spec,
)

IMAGES = DataInfo(event_shape=(1, 8, 8), support="unit", levels=17)
VECTORS = DataInfo(event_shape=(2,), support="real")


def _size(model: object) -> int:
    return sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(ACCELERATOR_IMAGE_DEFAULTS))
def test_an_accelerator_gets_the_bigger_network_and_the_spec_says_so(name: str) -> None:
    assert name in MODELS
    info = IMAGES if name != "jem" else replace(IMAGES, num_classes=10)  # JEM is a classifier
    cpu, gpu = build_model(name, info), build_model(name, info, accelerator=True)
    bigger = ACCELERATOR_IMAGE_DEFAULTS[name]
    assert all(gpu.spec[k] == (list(v) if isinstance(v, tuple) else v) for k, v in bigger.items())
    assert all(cpu.spec[k] != gpu.spec[k] for k in bigger)
    assert _size(gpu) > 2 * _size(cpu)
    rebuilt = build_model(gpu.spec, info)  # a checkpoint's spec: the same network on a CPU
    assert _size(rebuilt) == _size(gpu)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in gpu.parameters()]


def test_a_users_setting_wins_and_vectors_are_left_alone() -> None:
    gpu = build_model({"name": "ddpm", "channels": [8, 16]}, IMAGES, accelerator=True)
    assert gpu.spec["channels"] == [8, 16]
    vec = build_model("ddpm", VECTORS, accelerator=True)
    assert vec.spec == build_model("ddpm", VECTORS).spec and vec.spec["channels"] == [16, 32]


def test_a_gan_on_images_takes_r1_unless_told_otherwise(capsys: pytest.CaptureFixture[str]) -> None:
    """IMAGE_DEFAULTS on any device: the gan preset's R1 (γ = 10, lazy every 4) for images, not
    for vectors; the user's r1 wins, a gradient penalty replaces it, the spec records what ran."""
    from simulacra.objectives.adversarial import R1, GradientPenalty

    assert IMAGE_DEFAULTS["gan"] == {"r1": 10.0, "r1_every": 4}
    images = build_model("gan", IMAGES)
    assert isinstance(images.penalty, R1) and (images.penalty.gamma, images.penalty.every) == (10.0, 4)
    assert (images.spec["r1"], images.spec["r1_every"]) == (10.0, 4)
    assert build_model(images.spec, IMAGES).spec == images.spec  # a checkpoint rebuilds the same
    assert build_model("gan", VECTORS).penalty is None
    assert build_model({"name": "gan", "r1": 0.0}, IMAGES).penalty is None
    wgan = build_model({"name": "gan", "loss": "wasserstein", "gp_weight": 10.0}, IMAGES)
    assert isinstance(wgan.penalty, GradientPenalty) and wgan.spec["r1"] == 0.0
    assert build_model("sngan", IMAGES).penalty is None  # the variants keep their paper's choices
    assert main(["models", "gan"]) == 0
    out = capsys.readouterr().out  # the column of image defaults (its header may wrap)
    assert "images" in out and any("r1 " in line and "10.0" in line for line in out.splitlines())


def test_a_spec_records_every_setting_and_older_runs_keep_their_network(tmp_path: Path) -> None:
    """A run's spec holds each setting, defaults included, so a later change of a default leaves
    it alone; a run recorded before (the user's settings only) is rebuilt with the defaults it
    was trained with (PREVIOUS_DEFAULTS), e.g. a pixelcnn of 64 channels in 6 blocks."""
    from simulacra.train.checkpoint import load_model, save_model

    model = build_model({"name": "pixelcnn", "likelihood": "categorical"}, IMAGES)
    assert model.spec == {
        **{k: v for k, v in MODELS.settings("pixelcnn", skip=("info",)).items()},
        **model.spec,
    }
    assert set(MODELS.settings("pixelcnn", skip=("info",))) <= set(model.spec)
    old = build_model({"name": "pixelcnn", "channels": 64, "blocks": 6, "likelihood": "categorical"}, IMAGES)
    old.spec = {"name": "pixelcnn", "likelihood": "categorical"}  # as runs recorded it before
    save_model(old, tmp_path / "old")
    loaded = load_model(tmp_path / "old")
    assert _size(loaded) == _size(old) != _size(model)
    assert recorded_spec({"name": "pixelcnn", "channels": 16})["channels"] == 16


def test_models_shows_settings_with_cpu_and_gpu_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pixelcnn"]) == 0
    out = capsys.readouterr().out
    assert "channels" in out and "64" in out and "128" in out and "on a GPU" in out
    assert main(["models", "--details"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("vae", "made", "glow", "score-sde"))
    assert main(["models", "vea"]) == 2
    assert "Did you mean 'vae'" in capsys.readouterr().err
