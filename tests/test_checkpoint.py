"""Run directories: exact round trips, clear errors, crash safety and bit-identical resume."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

import _resume_worker as worker
import simulacra.train.checkpoint as ckpt
from simulacra.cli import main
from simulacra.config import TrainConfig
from simulacra.errors import CheckpointError
from simulacra.models.zoo import build_model
from simulacra.train import fit, load_model, load_run_config, load_trainer_state, save_model
from simulacra.train.checkpoint import flatten_state, unflatten_state

import toymodels as tm

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src" / "simulacra"
HANG_S = 900  # the subprocess timeout guards against hangs only (generous under load)


def _train(run_dir: Path, **kw: object) -> torch.nn.Module:
    data = tm.toy_dataset(64)
    model = build_model("test-toy", data.info)
    settings: dict[str, object] = {"steps": 6, "batch_size": 16, "log_every": 3, "ema_decay": 0.5}
    settings.update(kw)
    fit(model, data, TrainConfig(**settings), run_dir=run_dir, progress=False)  # type: ignore[arg-type]
    return model


def _equal_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model = _train(tmp_path)
    raw = load_model(tmp_path, ema=False)
    assert _equal_states(raw.state_dict(), model.state_dict())
    assert not raw.training and type(raw) is type(model)
    averaged = load_model(tmp_path)  # EMA weights by default
    ema = safetensors.torch.load_file(tmp_path / "ema.safetensors")
    assert _equal_states(averaged.state_dict(), ema)
    assert not torch.equal(averaged.state_dict()["decoder.0.weight"], model.state_dict()["decoder.0.weight"])
    config = load_run_config(tmp_path)
    assert config["run"]["train"]["steps"] == 6 and config["simulacra_version"]


def test_save_model_without_fit(tmp_path: Path) -> None:
    data = tm.toy_dataset(8)
    model = build_model({"name": "test-toy", "hidden": 5}, data.info)
    save_model(model, tmp_path / "run", {"note": "by hand"})
    loaded = load_model(tmp_path / "run")
    assert _equal_states(loaded.state_dict(), model.state_dict())
    assert load_run_config(tmp_path / "run")["run"]["note"] == "by hand"


def test_trainer_state_flattening_round_trips() -> None:
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.8, 0.9))
    p.grad = torch.ones(3, 2)
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": [torch.get_rng_state()], "best": None, "x": (1, 2.5)}
    encoded, tensors = flatten_state(state)
    restored = unflatten_state(
        json.loads(json.dumps(encoded)), safetensors.torch.load(safetensors.torch.save(tensors))
    )
    assert restored["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert restored["optimizer"]["state"].keys() == {0}
    assert all(
        torch.equal(restored["optimizer"]["state"][0][k], v) for k, v in opt.state_dict()["state"][0].items()
    )
    assert torch.equal(restored["rng"][0], state["rng"][0]) and restored["x"] == (1, 2.5)


def test_checkpoints_never_unpickle() -> None:
    for path in (SRC / "train").glob("*.py"):
        assert "torch.load(" not in path.read_text(), path


class _CreatesMarker:
    """A malicious pickle: unpickling it calls ``open(marker, "w")``, which creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_where_a_checkpoint_belongs_never_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pickles (raw, and torch.save'd .pt archives) put where a run's weights and trainer state
    belong: every loader, resume and ``simulacra sample RUN`` report a corrupt file, and the
    pickle's code never runs (its marker file is never created)."""
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_CreatesMarker(control))).close()
    assert control.is_file(), "the payload must be live: unpickling it creates its marker"

    run = tmp_path / "run"
    _train(run, checkpoint_every=3)
    folder = ckpt.latest_checkpoint(run)
    assert folder is not None
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_CreatesMarker(marker))
    for name in ("model", "ema", "trainer-state"):
        for where in (run, folder):
            (where / f"{name}.safetensors").write_bytes(payload)
            torch.save(_CreatesMarker(marker), where / f"{name}.pt")  # a real .pt: a zip around the pickle
    for load in (load_model, lambda r: load_model(r, ema=False), load_trainer_state):
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load(run)
    data = tm.toy_dataset(64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        fit(
            build_model("test-toy", data.info),
            data,
            TrainConfig(steps=12, batch_size=16, ema_decay=0.5),
            run_dir=run,
            resume=True,
            progress=False,
        )
    assert main(["sample", str(run), "-n", "2", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and "Traceback" not in err, err
    assert not marker.exists(), "a checkpoint loader unpickled the payload"
    assert not (tmp_path / "s.png").exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _mismatch(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["model"]["hidden"] = 32
    (run / "config.json").write_text(json.dumps(config))


CASES = {
    "missing dir": (lambda run: run.rename(run.with_name("elsewhere")), "does not exist"),
    "not a run": (lambda run: (run / "config.json").unlink(), "not a run directory"),
    "corrupt config": (lambda run: (run / "config.json").write_text("{not json"), "corrupt"),
    "no weights": (
        lambda run: [(run / name).unlink() for name in ("model.safetensors", "checkpoint.json")],
        "was training finished?",
    ),
    "truncated weights": (lambda run: _truncate(run / "model.safetensors"), "corrupt or truncated"),
    "garbage weights": (
        lambda run: (run / "model.safetensors").write_bytes(b"\x00" * 100),
        "corrupt or truncated",
    ),
    "wrong architecture": (_mismatch, r"'encoder.0.weight' has shape \(16, 4\) in the file but \(32, 4\)"),
}


@pytest.mark.parametrize("case", CASES)
def test_load_model_errors(tmp_path: Path, case: str) -> None:
    run = tmp_path / "run"
    _train(run, ema_decay=None)
    damage, words = CASES[case]
    damage(run)
    with pytest.raises(CheckpointError, match=words):
        load_model(run)


def test_resume_errors(tmp_path: Path) -> None:
    data = tm.toy_dataset(64)
    config = TrainConfig(steps=4, batch_size=16)
    save_model(build_model("test-toy", data.info), tmp_path / "bare")  # a run dir without trainer state
    with pytest.raises(CheckpointError, match="no trainer state to resume from"):
        fit(
            build_model("test-toy", data.info),
            data,
            config,
            run_dir=tmp_path / "bare",
            resume=True,
            progress=False,
        )
    _train(tmp_path / "done", steps=4)
    with pytest.raises(CheckpointError, match="already holds a run"):
        fit(build_model("test-toy", data.info), data, config, run_dir=tmp_path / "done", progress=False)
    latest = ckpt.latest_checkpoint(tmp_path / "done")
    _truncate(latest / "trainer-state.safetensors")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_trainer_state(tmp_path / "done")
    (tmp_path / "done" / "checkpoint.json").write_text("[]")
    with pytest.raises(CheckpointError, match="checkpoint.json is corrupt"):
        load_trainer_state(tmp_path / "done")


class Crash(RuntimeError):
    pass


def _crash_when(monkeypatch: pytest.MonkeyPatch, name: str, should: Callable[..., bool]) -> None:
    """Make ``checkpoint.<name>`` (or ``os.<name>``) raise :class:`Crash` when ``should(*args)``."""
    owner = ckpt if hasattr(ckpt, name) else os
    original = getattr(owner, name)

    def wrapper(*args: Any, **kw: Any) -> Any:
        if should(*args):
            raise Crash(f"simulated kill in {name}")
        return original(*args, **kw)

    monkeypatch.setattr(owner, name, wrapper)


# Where the kill lands while the checkpoint of step 10 is written (the previous one is step 5).
CRASH_POINTS: dict[str, tuple[str, Callable[..., bool]]] = {
    "writing a file": (
        "_write_durable",
        lambda saved, path, data: saved[-1:] == [10] and "trainer" in path.name,
    ),
    "before the rename": ("rename", lambda saved, src, dst: saved[-1:] == [10]),
    "before the pointer": (
        "replace",
        lambda saved, src, dst: saved[-1:] == [10] and Path(dst).name == "checkpoint.json",
    ),
}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_mid_checkpoint_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    name, predicate = CRASH_POINTS[point]
    saved: list[int] = []
    original = ckpt.save_checkpoint

    def counting(*args: Any, **kw: Any) -> Path:
        saved.append(kw["step"])
        return original(*args, **kw)

    monkeypatch.setattr("simulacra.train.loop.save_checkpoint", counting)
    _crash_when(monkeypatch, name, lambda *args: predicate(saved, *args))
    with pytest.raises(Crash):
        _train(tmp_path, steps=20, checkpoint_every=5)
    monkeypatch.undo()
    state = load_trainer_state(tmp_path)
    assert state.step == 5 and state.path.name == "ckpt-000000005"
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 5
    data = tm.toy_dataset(64)
    result = fit(
        build_model("test-toy", data.info),
        data,
        TrainConfig(steps=20, batch_size=16, log_every=3, ema_decay=0.5, checkpoint_every=5),
        run_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert result.steps == 20
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-000000020"]  # stale folders removed


def test_atomic_single_file_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "config.json"
    ckpt.atomic_write_json(target, {"v": 1})
    _crash_when(monkeypatch, "replace", lambda src, dst: True)
    with pytest.raises(Crash):
        ckpt.atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary left behind


def _all_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the final model, the EMA, and the final checkpoint (optimizers, RNG, best)."""
    out = {}
    folder = ckpt.latest_checkpoint(run)
    for path in [run / "model.safetensors", run / "ema.safetensors", *sorted(folder.glob("*.safetensors"))]:
        for key, value in safetensors.torch.load_file(path).items():
            out[f"{path.parent.name == folder.name and 'ckpt/' or ''}{path.name}:{key}"] = value
    return out


def _training_log(run: Path) -> list[dict]:
    timing = {"examples_per_s", "elapsed_s"}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in timing} for line in lines]


def _killed_run(run: Path, *flags: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(TESTS / "_resume_worker.py"), str(run), *flags],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_resume_after_a_kill_is_bit_identical(tmp_path: Path) -> None:
    worker.run(tmp_path / "reference")
    reference = _all_tensors(tmp_path / "reference")
    assert any("best.safetensors" in k for k in reference) and any("rng/cpu" in k for k in reference)

    # Killed between checkpoints (step 10; the last checkpoint is step 8), and right after one (12).
    for flags, resumed_from in ((("--kill-at-step", "10"), 8), (("--kill-after-checkpoint", "12"), 12)):
        run = tmp_path / f"killed-{flags[0]}"
        _killed_run(run, *flags)
        assert not (run / "model.safetensors").exists()
        assert load_trainer_state(run).step == resumed_from
        result = worker.run(run, resume=True)
        assert result.steps == worker.STEPS
        resumed = _all_tensors(run)
        assert resumed.keys() == reference.keys()
        different = [k for k in reference if not torch.equal(reference[k], resumed[k])]
        assert not different, f"resume from step {resumed_from} differs in {different[:5]}"
        assert _training_log(run) == _training_log(tmp_path / "reference")


def test_a_failed_checkpoint_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk in the middle of a checkpoint: a clear error, no ckpt-*.tmp folder left to fill
    the disk, and the previous checkpoint still the latest and loadable."""
    import errno

    import simulacra.train.checkpoint as ckpt

    run = tmp_path / "run"
    _train(run, steps=4, checkpoint_every=2)
    before = json.loads((run / "checkpoint.json").read_text())
    write = ckpt._write_durable
    calls = {"n": 0}

    def full_disk(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # after the first file of the new checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(ckpt, "_write_durable", full_disk)
    state = load_trainer_state(run)
    with pytest.raises(CheckpointError, match="No space left on device; the previous one is intact"):
        ckpt.save_checkpoint(run, step=99, model_state=state.model_state, trainer_state=state.trainer_state)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((run / "checkpoint.json").read_text()) == before
    assert load_trainer_state(run).step == before["step"]
