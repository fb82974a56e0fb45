"""``simulacra features train``: a feature network for the image metrics from the user's own
labelled images, with its accuracy and command recorded beside it, usable with ``--features``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simulacra.cli import main
from simulacra.metrics.fid import load_feature_classifier


def _folder(root: Path) -> Path:
    """Two classes of 8x8 grey images: a bright left half or a bright right half, with noise."""
    rng = np.random.default_rng(0)
    for label in ("left", "right"):
        (root / label).mkdir(parents=True)
        for i in range(60):
            image = rng.random((8, 8)) * 0.3
            image[:, :4] += 0.7 if label == "left" else 0.0
            image[:, 4:] += 0.7 if label == "right" else 0.0
            Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(
                root / label / f"{i}.png"
            )
    return root


def test_a_feature_network_for_the_users_images(tmp_path: Path) -> None:
    images = _folder(tmp_path / "images")
    out = tmp_path / "net" / "features.safetensors"
    argv = [
        "features",
        "train",
        "--data",
        str(images),
        "-o",
        str(out),
        "--epochs",
        "8",
        "--width",
        "8",
        "--batch-size",
        "16",
    ]
    assert main(argv) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["classes"] == 2 and record["image_shape"] == [1, 8, 8]
    assert record["held_out_accuracy"] > 0.9 and record["command"].startswith("simulacra features train")
    assert load_feature_classifier(out).config["num_classes"] == 2
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", str(images), "--out", str(run), "--steps", "5", "--no-eval",
                 "--no-progress", "--set", "model.hidden=[8]"]) == 0  # fmt: skip
    assert main(["evaluate", str(run), "--metric", "kid", "--features", str(out), "--samples", "12"]) == 0


def test_bad_requests_are_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["features", "train", "--data", "moons", "-o", str(tmp_path / "f.safetensors")], "no images"),
        (["features", "train", "--data", "digits", "-o", str(tmp_path / "f.pt")], "ending in .safetensors"),
        (["features", "train", "--data", "digits", "-o", str(tmp_path / "f.safetensors"), "--epochs", "0"],
         "--epochs must be at least 1"),
    ):  # fmt: skip
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not list(tmp_path.iterdir())
