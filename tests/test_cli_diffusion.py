"""Diffusion from the command line: train on a 2-D toy, sample with two samplers, evaluate the PF-ODE NLL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulacra.cli import main

FAST = ["--steps", "30", "--batch-size", "128", "--no-progress"]


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli-diffusion") / "ddpm"
    argv = ["train", "ddpm", "--data", "moons", "--out", str(run), *FAST,
            "--set", "model.hidden=[16]", "--set", "model.timesteps=20", "--set", "train.ema_decay=0.9"]  # fmt: skip
    assert main(argv) == 0
    return run


def test_train_reports_the_probability_flow_nll(ddpm_run: Path) -> None:
    test = json.loads((ddpm_run / "metrics.json").read_text())["test"]
    assert test["nll"]["estimator"] == "PF-ODE (exact trace)" and test["nll"]["unit"] == "nats"
    assert test["nll_per_dim"]["value"] == pytest.approx(
        test["nll"]["value"] / 2, rel=1e-9
    )  # real-valued: nats/dim
    assert (ddpm_run / "samples.png").is_file()
    assert (ddpm_run / "ema.safetensors").is_file(), "diffusion runs keep an EMA of the weights"


def test_sample_with_any_sampler_and_evaluate(
    ddpm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays = []
    for sampler, steps in (("ddim", "10"), ("dpm-solver", "8")):
        png, npy = tmp_path / f"{sampler}.png", tmp_path / f"{sampler}.npy"
        argv = ["sample", str(ddpm_run), "-n", "50", "-o", str(png), "--sampler", sampler, "--sampler-steps", steps,
                "--save-tensor", str(npy)]  # fmt: skip
        assert main(argv) == 0
        assert png.is_file()
        arrays.append(np.load(npy))
    assert arrays[0].shape == (50, 2) and np.isfinite(arrays[0]).all()
    assert not np.allclose(arrays[0], arrays[1]), "two samplers give two sample sets"
    assert main(["evaluate", str(ddpm_run), "--metric", "nll", "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert "PF-ODE" in out and "nats/dim" in out
    assert "VLB" in out, "diffusion models report the variational bound beside the PF-ODE value"
    assert main(["sample", str(ddpm_run), "--sampler", "dpm-solve"]) == 2
    assert "Did you mean 'dpm-solver'" in capsys.readouterr().err
    assert main(["sample", str(ddpm_run), "--guidance", "2"]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_other_families_reject_sampler_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "maf"
    argv = ["train", "maf", "--data", "moons", "--out", str(run), "--steps", "2", "--no-progress",
            "--set", "model.hidden=[8]"]  # fmt: skip
    assert main(argv) == 0
    assert main(["sample", str(run), "--sampler", "ddim"]) == 2
    assert "apply to diffusion models" in capsys.readouterr().err
