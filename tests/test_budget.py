"""Training by time (--minutes), and a resumed run given another length (--resume RUN --steps N)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import simulacra.train.budget as budget
from simulacra.cli import main
from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.errors import ConfigError
from simulacra.models.zoo import build_model
from simulacra.train.budget import Calibration, calibrate, steps_for_budget

TINY = ["--set", "model.hidden=[8]", "--no-progress", "--no-eval"]


def test_steps_for_a_budget_count_the_validation_passes() -> None:
    cal = Calibration(step_seconds=0.1, eval_seconds=2.0)
    assert steps_for_budget(100.0, cal) == 950  # 95% of the time
    assert steps_for_budget(100.0, cal, evaluations=20) == 550  # 40 s of validation
    with pytest.raises(ConfigError, match="do not fit one training step"):
        steps_for_budget(10.0, cal, evaluations=20)


def test_calibration_leaves_the_model_and_the_rng_as_they_were() -> None:
    import torch

    data = load_dataset(DataConfig("digits"))
    model = build_model({"name": "vae", "hidden": [8], "latent_dim": 2}, data.info)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    cal = calibrate(model, data, TrainConfig(batch_size=64), steps=4, warmup=1)
    assert cal.step_seconds > 0 and cal.eval_seconds > 0
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_minutes_plan_the_steps_that_fit_and_a_time_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget, "calibrate", lambda *a, **k: Calibration(0.01, 0.05))
    stops: list[float] = []
    import simulacra.train.callbacks as callbacks

    original = callbacks.TimeBudget.__init__

    def spy(self: Any, seconds: float, *args: Any, **kwargs: Any) -> None:
        stops.append(seconds)
        original(self, seconds, *args, **kwargs)

    monkeypatch.setattr(callbacks.TimeBudget, "__init__", spy)
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", "digits", "--minutes", "0.05", "--out", str(run), *TINY]) == 0
    # 3 s of training (--no-eval: the whole budget), 95% of it minus 20 validation passes of 0.05 s
    assert json.loads((run / "config.json").read_text())["run"]["train"]["steps"] == int(
        (0.95 * 3 - 1.0) / 0.01
    )
    assert stops == [pytest.approx(3.0)]
    assert (
        main(["train", "vae", "--data", "digits", "--minutes", "-1", "--out", str(tmp_path / "x"), *TINY])
        == 2
    )


def test_a_slow_validation_pass_gets_fewer_passes_instead_of_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """20 validation passes of 1 s do not fit a 3 s budget: the run validates as often as fits
    in half of it (once), every `steps` steps, and trains the rest of the time."""
    monkeypatch.setattr(budget, "calibrate", lambda *a, **k: Calibration(0.01, 1.0))
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", "digits", "--minutes", "0.05", "--out", str(run), *TINY]) == 0
    train = json.loads((run / "config.json").read_text())["run"]["train"]
    assert train["steps"] == int((0.95 * 3 - 1.0) / 0.01) and train["eval_every"] == train["steps"]
    steps = train["steps"]
    assert (
        f"a validation pass takes 1 s, so one every {steps} steps, about 1 in all" in capsys.readouterr().out
    )
    scores = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "valid_loss" in x]
    assert [r["step"] for r in scores] == [steps]
    # one pass longer than the whole budget is still refused, with the numbers
    monkeypatch.setattr(budget, "calibrate", lambda *a, **k: Calibration(0.01, 10.0))
    assert (
        main(["train", "vae", "--data", "digits", "--minutes", "0.05", "--out", str(tmp_path / "y"), *TINY])
        == 2
    )
    assert (
        "do not fit one training step (0.01 s) and 1 validation passes (10.00 s each)"
        in capsys.readouterr().err
    )


def test_a_resumed_run_can_be_given_another_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = [
        "train",
        "vae",
        "--data",
        "digits",
        "--steps",
        "6",
        "--out",
        str(run),
        "--set",
        "train.lr_schedule=cosine",
    ]
    assert main([*argv, *TINY]) == 0
    assert main(["train", "--resume", str(run), "--steps", "10", "--no-progress", "--no-eval"]) == 0
    out = capsys.readouterr().out
    assert (
        "resuming at step 6: the run is extended from 6 to 10 steps" in out
        and "re-planned to end at step 10" in out
    )
    assert json.loads((run / "config.json").read_text())["run"]["train"]["steps"] == 10
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    assert lines[-1]["step"] == 10 and lines[-1]["lr"] == pytest.approx(
        0.0, abs=1e-12
    )  # annealed at the new end
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # the new length is the run's now
    assert "is finished (step 10)" in capsys.readouterr().out
