"""Flows from the command line: train on a 2-D toy, evaluate the exact NLL, sample a density picture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from simulacra.cli import main

FAST = ["--steps", "40", "--batch-size", "128", "--no-progress"]


@pytest.fixture(scope="module")
def maf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli-flows") / "maf"
    argv = ["train", "maf", "--data", "moons", "--out", str(run), *FAST, "--set", "model.hidden=[16]"]
    assert main(argv) == 0
    return run


def test_train_reports_the_exact_nll(maf_run: Path) -> None:
    metrics = json.loads((maf_run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["nll"]["estimator"] == "exact" and test["nll"]["unit"] == "nats"
    # a 2-D real-valued density: nats per dimension (bits/dim are for discrete data and images)
    assert test["nll_per_dim"]["value"] == pytest.approx(test["nll"]["value"] / 2, rel=1e-9)
    # the 2-D picture is the density heat map beside the samples (a wide figure)
    width, height = Image.open(maf_run / "samples.png").size
    assert width > 1.8 * height


def test_evaluate_and_sample(maf_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(maf_run), "--metric", "nll", "--limit", "200"]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "nats/dim" in out
    stored = json.loads((maf_run / "metrics.json").read_text())["evaluations"][-1]
    assert stored["metrics"]["nll"]["n"] == 200
    png = tmp_path / "s.png"
    assert main(["sample", str(maf_run), "-n", "300", "-o", str(png)]) == 0
    assert png.is_file()


def test_a_flow_on_images_reports_a_dequantization_bound(tmp_path: Path) -> None:
    run = tmp_path / "realnvp"
    argv = ["train", "maf", "--data", "digits", "--out", str(run), *FAST, "--set", "model.hidden=[32]"]
    assert main(argv) == 0
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert "dequantization" in test["nll"]["estimator"]
    assert test["bpd"]["value"] == pytest.approx(test["nll"]["value"] / (64 * 0.6931471805599453), rel=1e-9)
    assert (run / "samples.png").is_file()


def test_the_torus_picture_stays_on_the_torus(tmp_path: Path) -> None:
    """The density grid of a flow on [-π, π)² must not leave its support (the flow rejects it)."""
    run = tmp_path / "torus"
    argv = ["train", "torus", "--data", "torus", "--out", str(run), *FAST, "--set", "model.hidden=[16]"]
    assert main(argv) == 0
    assert (run / "samples.png").is_file()
