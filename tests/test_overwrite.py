"""`simulacra train --overwrite` never loses a user's files: it validates first, removes only
what a run writes, and replaces the old run only once the new one stands on its own."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

import simulacra.train
from simulacra.cli import main
from simulacra.errors import ConfigError
from simulacra.train.rundir import (
    RUN_MARKER,
    RunReplacement,
    check_replaceable,
    check_writable,
    foreign_entries,
    holds_run,
)

FAST = ["--steps", "3", "--batch-size", "32", "--no-progress", "--eval-k", "2"]
TINY = ["--set", "model.hidden=[8]", "--set", "model.latent_dim=2"]


def _snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _train(out: Path, *extra: str) -> int:
    return main(["train", "vae", "--data", "digits", "--out", str(out), *FAST, *TINY, *extra])


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("overwrite") / "run"
    assert _train(run) == 0
    return run


@pytest.fixture
def run(old_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(old_run, copy)
    return copy


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_run_is_marked_and_holds_only_run_files(old_run: Path) -> None:
    assert (old_run / RUN_MARKER).is_file()
    assert holds_run(old_run)
    assert foreign_entries(old_run) == []


def test_unrelated_files_stop_the_overwrite(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "src").mkdir()
    (run / "src" / "thesis.tex").write_text("\\chapter{Results}\n")
    (run / "notes.txt").write_text("mine\n")
    before = _snapshot(run)
    assert _train(run, "--overwrite") == 2
    line = _one_error(capsys)
    assert "'notes.txt'" in line and "'src'" in line and "not replacing" in line
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "model.latent_dim=abc"],
        ["--set", "train.lr_schedule=sideways"],
        ["--data", "DATAFILE"],
    ],
    ids=["bad-model-setting", "bad-train-setting", "nan-data"],
)
def test_a_failing_new_run_leaves_the_old_one_intact(
    run: Path, tmp_path: Path, bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "nan.npy"
    x = np.random.default_rng(0).random((50, 4))
    x[3, 1] = np.nan
    np.save(data, x)
    bad = [str(data) if a == "DATAFILE" else a for a in bad]
    before = _snapshot(run)
    assert main(["train", "vae", "--out", str(run), *FAST, *TINY, *bad, "--overwrite"]) == 2
    _one_error(capsys)
    assert _snapshot(run) == before
    assert not list(run.parent.glob(".run.replaced-*"))


def test_training_that_fails_before_its_first_checkpoint_restores_the_old_run(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(run)

    def failing_fit(model, data, config, *, run_dir, **kwargs):  # type: ignore[no-untyped-def]
        Path(run_dir).mkdir(parents=True)
        (Path(run_dir) / "config.json").write_text("{}")  # a new run partly written
        raise KeyboardInterrupt

    monkeypatch.setattr(simulacra.train, "fit", failing_fit)
    assert main(["train", "vae", "--data", "digits", "--out", str(run), *FAST, *TINY, "--overwrite"]) == 130
    assert _snapshot(run) == before
    assert not list(run.parent.glob(".run.replaced-*"))


def test_a_successful_overwrite_replaces_the_run(run: Path) -> None:
    old_weights = (run / "model.safetensors").read_bytes()
    assert _train(run, "--overwrite", "--seed", "1") == 0
    assert (run / "model.safetensors").read_bytes() != old_weights
    assert foreign_entries(run) == []
    assert not list(run.parent.glob(".run.replaced-*"))


def test_without_overwrite_an_existing_run_is_refused(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(run)
    assert _train(run) == 2
    assert "already holds a run" in _one_error(capsys)
    assert _snapshot(run) == before


def test_the_old_run_goes_only_after_the_new_runs_first_checkpoint(tmp_path: Path) -> None:
    old = tmp_path / "run"
    old.mkdir()
    (old / RUN_MARKER).write_text("{}")
    (old / "model.safetensors").write_bytes(b"old")
    with RunReplacement(old, enabled=True) as replacement:
        assert not old.exists() and replacement.aside is not None and replacement.aside.is_dir()
        old.mkdir()
        (old / "model.safetensors").write_bytes(b"new")
        aside = replacement.aside
        replacement.on_checkpoint(None)
        assert not aside.exists()
    assert (old / "model.safetensors").read_bytes() == b"new"


def test_out_that_is_a_file_or_under_a_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert _train(afile) == 2
    assert "is a file" in _one_error(capsys)
    assert _train(afile / "run") == 2
    assert "is a file" in _one_error(capsys)
    assert afile.read_text() == "x"


def test_too_little_disk_space_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(ConfigError, match="not enough disk space"):
        check_writable(tmp_path / "run", needed_bytes=10**6)
    check_writable(tmp_path / "run", needed_bytes=100)
    assert not (tmp_path / "run").exists()


def test_legacy_runs_without_the_marker_are_recognised(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text('{"run": {}, "model": {"name": "vae"}, "info": {}}')
    assert holds_run(legacy)
    check_replaceable(legacy, overwrite=True)
    other = tmp_path / "other-tool"
    other.mkdir()
    (other / "config.json").write_text('{"learning_rate": 3}')
    assert not holds_run(other)
