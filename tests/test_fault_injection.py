"""A run survives SIGKILL at any moment: while it trains, in the middle of a checkpoint write, and
while ``--overwrite`` replaces an old run. After each kill the old run is intact (byte for byte),
or the new one loads and ``simulacra train --resume`` finishes it; the only temporary leftovers are
``ckpt-*.tmp`` folders and ``.NAME.PID.tmp`` files inside the run (the next checkpoint deletes
them) and the old run moved aside to ``.NAME.replaced-PID`` (the next ``simulacra train`` of that
folder puts it back or deletes it, and says which).

Each kill is real: ``simulacra train`` runs in a forked process (the CLI's ``main``, no new
interpreter to start) that gets SIGKILL either from this process after a seeded random delay, or
from itself at a seeded point of a checkpoint or a replacement (a hook wrapped around the file
operation, the way ``tests/_resume_worker.py`` wraps ``save_checkpoint``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import random
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import simulacra.train.checkpoint as ckpt
from simulacra.cli import main
from simulacra.errors import ConfigError
from simulacra.train.checkpoint import load_model, load_trainer_state
from simulacra.train.rundir import recover_replacement

FORK = multiprocessing.get_context("fork")
HANG_S = 120  # a hang guard only
STEPS = 40
TRAIN = [
    "train", "vae", "--data", "moons", "--set", "data.num_samples=64", "--set", "model.hidden=[4]",
    "--set", "model.latent_dim=2", "--batch-size", "8", "--steps", str(STEPS), "--no-progress",
    "--no-eval", "--set", "train.checkpoint_every=1", "--set", "train.ema_decay=0.9",
]  # fmt: skip
LEFTOVERS = re.compile(r"^(ckpt-\d+(-\d+)?\.tmp|\..+\.\d+\.tmp)$")  # what the next checkpoint deletes
ASIDE = re.compile(r"^\..+\.replaced-\d+$")


# --------------------------------------------------------------------------- killing


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(point: str, n: int) -> None:
    """In the child: SIGKILL itself at the ``n``-th time it reaches ``point``.

    ``write``: halfway through a file written durably (config.json, a checkpoint's files, the
    pointer's temporary file, the final weights): a torn file in ``ckpt-*.tmp`` or a ``.*.tmp``;
    ``publish``: before the complete ``ckpt-*.tmp`` folder is renamed into place;
    ``pointer``: before ``checkpoint.json`` is replaced (its temporary file written);
    ``aside``: right after ``--overwrite`` moved the old run aside;
    ``discard``: halfway through deleting the old run once the new one has its first checkpoint.
    """
    count = {"n": 0}

    def reached() -> bool:
        count["n"] += 1
        return count["n"] == n

    if point == "write":
        write = ckpt._write_durable

        def torn(path: Path, data: bytes) -> None:
            if reached():
                Path(path).write_bytes(data[: len(data) // 2])
                _die()
            write(path, data)

        ckpt._write_durable = torn  # type: ignore[assignment]
    elif point in ("publish", "aside"):
        rename = os.rename

        def renaming(src: Any, dst: Any) -> None:
            publishing = point == "publish" and str(src).endswith(".tmp")
            if publishing and reached():
                _die()
            rename(src, dst)
            if point == "aside" and ".replaced-" in str(dst) and reached():
                _die()

        os.rename = renaming  # type: ignore[assignment]
    elif point == "pointer":
        replace = os.replace

        def replacing(src: Any, dst: Any) -> None:
            if Path(dst).name == "checkpoint.json" and reached():
                _die()
            replace(src, dst)

        os.replace = replacing  # type: ignore[assignment]
    elif point == "discard":
        rmtree = shutil.rmtree

        def deleting(path: Any, *args: Any, **kwargs: Any) -> None:
            if ".replaced-" in str(path) and reached():
                files = sorted(p for p in Path(path).rglob("*") if p.is_file())
                for p in files[: len(files) // 2]:
                    p.unlink()
                _die()
            rmtree(path, *args, **kwargs)

        shutil.rmtree = deleting  # type: ignore[assignment]
    else:
        raise ValueError(f"unknown kill point {point!r}")


def _child(argv: list[str], hook: tuple[str, int] | None) -> None:
    if hook is not None:
        _install(*hook)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = main(argv)
        except BaseException:  # noqa: BLE001 - reported as a status the test rejects
            status = 99
    os._exit(status)  # no atexit handlers of the parent (pytest) in the child


def _train_killed(
    argv: list[str],
    *,
    hook: tuple[str, int] | None = None,
    delay: float | None = None,
    started: Callable[[], bool] = lambda: True,
) -> int:
    """Run ``simulacra ARGV`` in a forked process killed by ``hook`` or, ``delay`` seconds after
    ``started()`` holds, by this process; its exit code (-9 when killed)."""
    proc = FORK.Process(target=_child, args=(argv, hook))
    proc.start()
    if delay is not None:
        deadline = time.monotonic() + HANG_S
        while not started() and proc.is_alive():
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.005)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    proc.join(HANG_S)
    assert proc.exitcode is not None, "hung"
    assert proc.exitcode in (0, -signal.SIGKILL), f"exit code {proc.exitcode}"
    return proc.exitcode


# --------------------------------------------------------------------------- checking


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _temporary(folder: Path) -> list[str]:
    """Names in ``folder`` and beside it that are in a temporary state."""
    try:  # the run under test may move the folder aside between any two calls
        inside = [p.name for p in folder.iterdir() if LEFTOVERS.match(p.name)]
    except (FileNotFoundError, NotADirectoryError):
        inside = []
    beside = [p.name for p in folder.parent.iterdir() if ASIDE.match(p.name)]
    return inside + beside


def _resume(run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``simulacra train --resume RUN`` to the end; its stderr."""
    capsys.readouterr()
    status = main(["train", "--resume", str(run), "--no-progress", "--no-eval"])
    err = capsys.readouterr().err
    assert status == 0 and "Traceback" not in err, err
    return err


def _check_finished(run: Path, reference: Path | None = None) -> None:
    """``run`` finished, loads, left nothing temporary and, given an uninterrupted ``reference``
    run of the same command, ends with exactly its weights and moving average."""
    assert load_trainer_state(run).step == STEPS
    load_model(run)
    assert _temporary(run) == [], "the resumed run left temporary files"
    if reference is not None:
        for name in ("model.safetensors", "ema.safetensors"):
            ours, theirs = load_file(run / name), load_file(reference / name)
            assert ours.keys() == theirs.keys()
            assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"{name} differs after the resume"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run of :data:`TRAIN`, uninterrupted (same seed and threads: killed runs end the same)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*TRAIN, "--out", str(run)]) == 0
    return run


# --------------------------------------------------------------------------- fresh runs


KILLS = [("write", 1), ("write", None), ("publish", None), ("pointer", None), ("time", None), ("time", None)]
"""Where the kill lands in a fresh run (None: a point drawn by the test's seeded generator); the
first is the run's first file, its config.json, before anything resumable exists."""


@pytest.mark.parametrize(("seed", "point", "n"), [(i, p, n) for i, (p, n) in enumerate(KILLS)])
def test_a_run_killed_anywhere_resumes_to_the_end(
    seed: int,
    point: str,
    n: int | None,
    tmp_path: Path,
    reference: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Killed in training or in a checkpoint: the latest complete checkpoint loads and resumes to
    the end, with exactly the weights of the uninterrupted ``reference`` (which also imports, once,
    what the forked runs need)."""
    rng = random.Random(seed)
    run = tmp_path / "run"
    argv = [*TRAIN, "--out", str(run)]
    if point == "time":
        _train_killed(argv, delay=rng.uniform(0.0, 0.3), started=(run / "config.json").exists)
    else:  # a checkpoint is 3 file writes, a rename and a pointer (its own write); 40 of them
        n = n or rng.randint(2, 3 * STEPS if point == "write" else STEPS - 1)
        assert _train_killed(argv, hook=(point, n)) == -signal.SIGKILL
    leftovers = _temporary(run)
    assert all(LEFTOVERS.match(name) for name in leftovers), leftovers
    if not (run / "checkpoint.json").exists():  # killed before its first checkpoint
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        why = ("no trainer state to resume from", "stopped before it wrote one")  # no config.json yet
        assert len(err) == 1 and any(words in err[0] for words in why), err
        return
    state = load_trainer_state(run)  # the latest complete checkpoint, whatever the kill cut short
    assert 1 <= state.step <= STEPS
    load_model(run)
    _resume(run, capsys)
    _check_finished(run, reference)


GAN_TRAIN = [
    "train", "gan", "--data", "moons", "--set", "data.num_samples=64", "--set", "model.hidden=[8]",
    "--set", "model.latent_dim=2", "--set", "model.r1=1.0", "--set", "model.r1_every=2",
    "--set", "model.critic_updates=2", "--batch-size", "8", "--steps", str(STEPS), "--no-progress",
    "--no-eval", "--set", "train.checkpoint_every=1",
]  # fmt: skip
"""A GAN with every piece of state: two optimizers, lazy R1's update counter, the collapse
watch (a per-process buffer), its EMA and validation (the MMD score) by default."""


@pytest.mark.parametrize(("seed", "point"), [(0, "write"), (1, "time")])
def test_a_gan_killed_anywhere_resumes_to_the_weights_of_an_uninterrupted_run(
    seed: int, point: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(seed)
    whole, run = tmp_path / "whole", tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*GAN_TRAIN, "--out", str(whole)]) == 0
    argv = [*GAN_TRAIN, "--out", str(run)]
    if point == "time":
        status = _train_killed(argv, delay=rng.uniform(0.02, 0.1), started=(run / "checkpoint.json").exists)
        assert status == -signal.SIGKILL, "the run ended before the kill"
    else:
        assert _train_killed(argv, hook=("write", rng.randint(4, 3 * STEPS))) == -signal.SIGKILL
    assert (run / "checkpoint.json").exists()
    _resume(run, capsys)
    _check_finished(run, whole)


# --------------------------------------------------------------------------- --overwrite


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run to replace (training it also imports what the forked runs need)."""
    run = tmp_path_factory.mktemp("old") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*TRAIN[:-2], "--steps", "8", "--out", str(run)]) == 0
    return run


REPLACEMENT_KILLS = [("aside", 1), ("write", 2), ("pointer", 1), ("discard", 1), ("time", 20), ("time", 300)]
"""Where the kill lands in a replacement: after the old run went aside, in the new run's first
checkpoint, before that checkpoint is published, halfway through deleting the old run, and at a
random moment in the first 20 ms (around the first checkpoint) or 300 ms after the old run went aside."""


@pytest.mark.parametrize(("seed", "point", "n"), [(i, p, n) for i, (p, n) in enumerate(REPLACEMENT_KILLS)])
def test_a_replacement_killed_anywhere_leaves_the_old_run_or_the_new_one(
    seed: int, point: str, n: int, tmp_path: Path, old_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed while --overwrite replaces a finished run: the old run byte for byte (in place or
    aside), or the new one past its first checkpoint; the next command puts it right."""
    run = tmp_path / "run"
    shutil.copytree(old_run, run)
    old = _snapshot(run)
    argv = [*TRAIN, "--out", str(run), "--overwrite", "--seed", "1"]
    if point == "time":
        delay = random.Random(seed).uniform(0.0, n / 1000)
        _train_killed(argv, delay=delay, started=lambda: bool(_temporary(run)))
    else:
        assert _train_killed(argv, hook=(point, n)) == -signal.SIGKILL
    asides = [tmp_path / name for name in _temporary(run) if ASIDE.match(name)]
    intact = run.is_dir() and _snapshot(run) == old
    new = not intact and (run / "checkpoint.json").exists()  # the new run passed its first checkpoint
    if new:
        load_model(run)  # it stands on its own; what is left aside is a (partly deleted) old run
    else:  # the old run, byte for byte, in its place or aside
        assert intact or [_snapshot(a) for a in asides] == [old], (point, asides)
    if not run.exists():  # killed right after the old run went aside: the verbs say where it is
        capsys.readouterr()
        assert main(["sample", str(run)]) == 2
        assert "puts it back" in capsys.readouterr().err
    err = _resume(run, capsys)  # the next command in the folder finishes or undoes the replacement
    assert ("note: " in err) == bool(asides), err
    assert not [name for name in _temporary(run) if ASIDE.match(name)]
    if new:
        _check_finished(run)
    else:
        assert _snapshot(run) == old  # put back, and finished: nothing to resume


def test_the_next_run_in_the_folder_puts_the_old_run_back(
    tmp_path: Path, old_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(old_run, run)
    old = _snapshot(run)
    _train_killed([*TRAIN, "--out", str(run), "--overwrite"], hook=("write", 1))
    assert not (run / "checkpoint.json").exists() and len(_temporary(run)) >= 1
    capsys.readouterr()
    assert main([*TRAIN, "--out", str(run)]) == 2  # without --overwrite: refused, after the repair
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("note: ") and "put the previous run back" in err[0], err
    assert len(err) == 2 and err[1].startswith("error: ") and "already holds a run" in err[1], err
    assert _snapshot(run) == old and _temporary(run) == []


def test_a_replacement_in_progress_is_left_alone(tmp_path: Path, old_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(old_run, tmp_path / f".run.replaced-{os.getppid()}")  # a live process
    with pytest.raises(ConfigError, match=r"a running process \(pid \d+\) is replacing"):
        recover_replacement(run)
    assert not run.exists()
    shutil.move(tmp_path / f".run.replaced-{os.getppid()}", tmp_path / ".run.replaced-999999999")
    run.mkdir()
    (run / "thesis.tex").write_text("mine")
    with pytest.raises(ConfigError, match="holds files that a run does not write"):
        recover_replacement(run)
    assert (run / "thesis.tex").read_text() == "mine"
