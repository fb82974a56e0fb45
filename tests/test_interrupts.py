"""Runs that survive being stopped: checkpoints by time, Ctrl-C/SIGTERM, the newest weights always
loadable, and a finished run left alone when resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import safetensors.torch
import torch

import simulacra.train.loop as loop
from simulacra.cli import main
from simulacra.config import TrainConfig
from simulacra.models.zoo import build_model
from simulacra.train import fit
from simulacra.train.checkpoint import load_model, locate_weights, tensor_metadata
from simulacra.train.interrupts import GracefulInterrupt

import toymodels as tm


def _config(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"steps": 20, "batch_size": 16, "lr": 1e-2, "log_every": 1000, "seed": 3, **kw})


def _build() -> tuple[Any, Any]:
    torch.manual_seed(0)
    data = tm.toy_dataset(64)
    return build_model({"name": "test-toy", "hidden": 8}, data.info), data


class FakeClock:
    """Stands in for the loop's ``time`` module: ``perf_counter`` reads a clock the test advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_checkpoints_by_time_keep_under_two_percent_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=clock.perf_counter))

    class TenSecondSteps:
        def __init__(self) -> None:
            self.written: list[int] = []

        def on_step_end(self, state: Any) -> None:
            clock.now += 10.0

        def on_checkpoint(self, state: Any) -> None:
            self.written.append(state.step)

    def checkpoint_steps(steps: int, run: Path) -> list[int]:
        model, data = _build()
        steps_seen = TenSecondSteps()
        config = _config(steps=steps, checkpoint_minutes=1.0)
        fit(model, data, config, run_dir=run, callbacks=[steps_seen], progress=False)
        return steps_seen.written

    assert checkpoint_steps(40, tmp_path / "a") == [6, 12, 18, 24, 30, 36, 40]  # every 60 s, and at the end

    save = loop.save_checkpoint

    def slow_save(*args: Any, **kwargs: Any) -> Path:
        clock.now += 4.0  # a checkpoint that costs 4 s: then no sooner than 50 × 4 = 200 s later
        return save(*args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", slow_save)
    written = checkpoint_steps(100, tmp_path / "b")
    assert written == [6, 26, 46, 66, 86, 100]  # the first after 60 s, then every 200 s
    assert all(4.0 / (4.0 + 10.0 * (b - a)) <= 0.02 for a, b in zip(written[1:-2], written[2:-1]))


def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(tmp_path: Path) -> None:
    model, data = _build()
    fit(model, data, _config(ema_decay=0.9), run_dir=tmp_path / "whole", progress=False)

    class SignalAt:
        def on_step_end(self, state: Any) -> None:
            if state.step == 7:
                os.kill(os.getpid(), signal.SIGTERM)

    model, data = _build()
    with GracefulInterrupt() as interrupt:
        result = fit(
            model,
            data,
            _config(ema_decay=0.9),
            run_dir=tmp_path / "cut",
            callbacks=[SignalAt(), interrupt],
            progress=False,
        )
    assert signal.getsignal(signal.SIGTERM) is not interrupt._handle  # handlers restored
    assert result.interrupted == signal.SIGTERM and result.steps == 7 and not result.second_stage
    cut = tmp_path / "cut"
    assert json.loads((cut / "checkpoint.json").read_text())["step"] == 7
    assert tensor_metadata(cut / "model.safetensors")["step"] == "7"  # usable at once
    assert locate_weights(cut).step == 7 and not locate_weights(cut).from_checkpoint

    model, data = _build()
    resumed = fit(model, data, _config(ema_decay=0.9), run_dir=cut, resume=True, progress=False)
    assert resumed.steps == 20 and resumed.interrupted is None
    for name in ("model.safetensors", "ema.safetensors"):
        a = safetensors.torch.load_file(tmp_path / "whole" / name)
        b = safetensors.torch.load_file(cut / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_the_newest_weights_are_loaded_when_a_checkpoint_is_newer(tmp_path: Path) -> None:
    model, data = _build()
    run = tmp_path / "run"
    fit(model, data, _config(steps=4, checkpoint_every=2), run_dir=run, progress=False)
    final = locate_weights(run)
    assert (final.step, final.from_checkpoint, final.kind) == (4, False, "raw")
    # an interrupted resume: a later checkpoint than the final weights on disk
    model, data = _build()
    fit(
        model,
        data,
        _config(steps=8, checkpoint_every=2),
        run_dir=tmp_path / "long",
        callbacks=[],
        progress=False,
    )
    long = tmp_path / "long"
    (long / "model.safetensors").unlink()  # as if killed after its last checkpoint
    weights = locate_weights(long)
    assert weights.from_checkpoint and weights.step == 8 and "unfinished" in weights.describe()
    assert isinstance(load_model(long), torch.nn.Module)
    older = safetensors.torch.load_file(run / "model.safetensors")
    safetensors.torch.save_file(older, long / "model.safetensors", metadata={"step": "4"})
    assert locate_weights(long).from_checkpoint  # step 4 < checkpoint 8
    safetensors.torch.save_file(older, long / "model.safetensors")  # a run from before steps were kept
    assert not locate_weights(long).from_checkpoint


def test_resuming_a_finished_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["train", "vae", "--data", "digits", "--steps", "5", "--out", str(run), "--no-progress"]
    assert main([*argv, "--set", "model.hidden=[8]", "--eval-k", "2"]) == 0
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "is finished (step 5); nothing to do" in capsys.readouterr().out
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_ctrl_c_on_the_command_line_checkpoints_and_says_how_to_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = ["train", "vae", "--data", "digits", "--steps", "100000", "--batch-size", "32", "--out", str(run)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulacra", *argv, "--no-progress", "--set", "model.hidden=[8]"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists():  # training has started
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert (
        "interrupted by SIGINT" in err and f"simulacra train --resume {run}" in err and "Traceback" not in err
    )
    step = json.loads((run / "checkpoint.json").read_text())["step"]
    assert 0 < step < 100000 and tensor_metadata(run / "model.safetensors")["step"] == str(step)
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
