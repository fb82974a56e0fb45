"""Run directories as the user's files: what a run writes, checks before writing, safe replacement.

A run directory carries a marker file, :data:`RUN_MARKER`, that names it as one. Everything a run
(and the verbs that work on a run: ``sample``, ``evaluate``, ``inpaint``, ...) writes into it has a
name in :data:`RUN_FILES` or matches :data:`RUN_PATTERNS`. Replacing a run (``simulacra train
--overwrite``) therefore never deletes a file the user put there: a folder that holds anything
else is refused with a message naming it.

Replacement is done in three moves, so that a failure at any point leaves the old run or the new
one intact (:class:`RunReplacement`):

1. everything is validated first (data, config, model, the folder's writability and free space)
   by the caller, before the old run is touched;
2. the old run is renamed aside (``.<name>.replaced-<pid>``, one atomic rename) and the new run is
   written into a fresh folder;
3. the old run is deleted once the new one has written its first checkpoint; if training fails
   before that, the partial new run is removed and the old one renamed back.

A process killed outright (SIGKILL, power loss) cannot do the third move itself: the old run is
left in ``.<name>.replaced-<pid>``. The next ``simulacra train`` of that folder (a new run or
``--resume``) finishes the replacement or undoes it (:func:`recover_replacement`): the new run's
first checkpoint is the point of no return, as above.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from torch import nn

from simulacra.errors import ConfigError

RUN_MARKER = ".simulacra-run"
"""The file that names a folder as a simulacra run (JSON: format and version)."""

RUN_FILES = frozenset(
    {
        RUN_MARKER,
        "config.json",
        "model.safetensors",
        "ema.safetensors",
        "checkpoint.json",
        "metrics.jsonl",
        "metrics.json",
        # pictures written after training and by the verbs that work on a run
        "samples.png",
        "samples.txt",
        "reconstructions.png",
        "interpolation.png",
        "manifold.png",
        "latents.png",
        "training.png",
        "inpaint.png",
        "super-resolve.png",
        "denoise.png",
        "colorize.png",
        # simulacra posterior
        "posterior.png",
        "calibration.png",
    }
)
"""Names of the files a run writes at the top of its folder."""

RUN_PATTERNS = (
    re.compile(r"^ckpt-\d+(-\d+)?(\.tmp)?$"),  # resumable checkpoints (folders)
    re.compile(r"^\..+\.tmp$"),  # atomic writes cut short by a kill
    re.compile(r"^.+\.json\.tmp$"),
)
"""Patterns of further names a run writes (checkpoint folders, temporary files)."""

_SAMPLES_DIR = "samples"
_SAMPLE_FILE = re.compile(r"^step-\d+\.png$")
_CKPT_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(safetensors|json)$")


def write_marker(run_dir: str | Path, version: str) -> None:
    """Create the marker that names ``run_dir`` as a run (idempotent)."""
    path = Path(run_dir) / RUN_MARKER
    if not path.is_file():
        path.write_text(json.dumps({"simulacra_run": 1, "simulacra_version": version}) + "\n")


def _is_run_entry(path: Path) -> bool:
    name = path.name
    if path.is_symlink():
        return False
    if name == _SAMPLES_DIR and path.is_dir():
        return all(_SAMPLE_FILE.match(p.name) and p.is_file() for p in path.iterdir())
    if name in RUN_FILES:
        return path.is_file()
    if RUN_PATTERNS[0].match(name):
        return path.is_dir() and all(_CKPT_FILE.match(p.name) and p.is_file() for p in path.iterdir())
    return any(p.match(name) for p in RUN_PATTERNS[1:]) and path.is_file()


def foreign_entries(run_dir: str | Path) -> list[str]:
    """Names in ``run_dir`` that a run does not write (sorted), e.g. ``["src", "thesis.tex"]``."""
    return sorted(p.name for p in Path(run_dir).iterdir() if not _is_run_entry(p))


def holds_run(run_dir: str | Path) -> bool:
    """True when ``run_dir`` carries the run marker, or (runs written before the marker existed)
    a ``config.json`` with the ``run``, ``model`` and ``info`` entries that simulacra writes."""
    path = Path(run_dir)
    if (path / RUN_MARKER).is_file():
        return True
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        raw = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and {"run", "model", "info"} <= set(raw)


def checkpoint_bytes(model: nn.Module, *, ema: bool, keep_best: bool) -> int:
    """Bytes of one resumable checkpoint of ``model``: its state, two Adam moments per parameter,
    and an EMA copy and the best weights when kept (headers and JSON are negligible)."""
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return state + 2 * params + state * (int(ema) + int(keep_best))


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable(run_dir: str | Path, needed_bytes: int = 0) -> None:
    """Raise :class:`ConfigError` unless a run can be written to ``run_dir``: it is a folder (or
    does not exist yet, below a folder), files can be created there, and its file system has
    ``needed_bytes`` free.

    Nothing is created or changed: the probe file is made and removed in the nearest existing folder.
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {str(path)!r} is a file, not a folder; choose a folder for the run")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise ConfigError(f"cannot create the run folder {str(path)!r}: {str(base)!r} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".simulacra-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"cannot write the run to {str(path)!r}: {reason} in {str(base)!r}") from None
    free = shutil.disk_usage(base).free
    if needed_bytes > free:
        raise ConfigError(
            f"not enough disk space for the run in {str(path)!r}: it needs about "
            f"{_human(needed_bytes)} (two checkpoints and the final weights), {_human(free)} are free"
        )


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def check_replaceable(run_dir: str | Path, *, overwrite: bool, resumable: bool = True) -> None:
    """Raise :class:`ConfigError` unless a new run may be started in ``run_dir``.

    A folder that holds a run needs ``overwrite``, and then may hold nothing but what a run
    writes (the message names the first other entries) and may not be the working folder or hold
    it (it is moved aside while the new run is written). A folder that holds no run may be used
    as it is (nothing in it is removed). ``resumable``: the message suggests ``--resume`` too.
    """
    path = Path(run_dir)
    if not path.is_dir() or not holds_run(path):
        return
    if overwrite and Path.cwd().resolve().is_relative_to(path.resolve()):
        raise ConfigError(
            f"--overwrite cannot replace {str(path)!r}: it is the current folder or holds it; run "
            "simulacra from another folder, or choose another --out"
        )
    if not overwrite:
        resume = f"resume it (`simulacra train --resume {path}`), " if resumable else ""
        raise ConfigError(
            f"{str(path)!r} already holds a run; {resume}choose another --out, or replace it with --overwrite"
        )
    foreign = foreign_entries(path)
    if foreign:
        shown = ", ".join(repr(n) for n in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ConfigError(
            f"--overwrite: {str(path)!r} holds files that a run does not write ({shown}); "
            "not replacing it. Move them away, or choose another --out"
        )


_ASIDE = re.compile(r"^\.(?P<name>.+)\.replaced-(?P<pid>\d+)$")
_POINTER = "checkpoint.json"  # simulacra.train.checkpoint.POINTER_FILE: a complete checkpoint exists


def _aside_name(run_dir: Path, pid: int) -> Path:
    return run_dir.with_name(f".{run_dir.name}.replaced-{pid}")


def _running(pid: int) -> bool:
    """Whether another process with this id exists (this one has no replacement in progress yet)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def recover_replacement(run_dir: str | Path) -> str | None:
    """Finish or undo a replacement of ``run_dir`` that a killed process left half done; say what
    was done (None: there was nothing to do).

    The old run sits in ``.<name>.replaced-<pid>`` beside ``run_dir``. When ``run_dir`` holds a
    complete checkpoint (``checkpoint.json``), the new run stands on its own and the old one is
    deleted; otherwise the partial new run (only files a run writes) is deleted and the old run
    renamed back into place. (A run without checkpoints, such as ``simulacra posterior``'s,
    stands on its own only once its command has finished.)

    Raises:
        ConfigError: the process that left it is still running (a replacement in progress), several
            old runs are left aside, or the partial new run holds files a run does not write.
    """
    path = Path(run_dir)
    if not path.name or not path.parent.is_dir():
        return None
    pids = {
        p: int(m["pid"])
        for p in path.parent.iterdir()
        if (m := _ASIDE.match(p.name)) and m["name"] == path.name and p.is_dir()
    }
    if not pids:
        return None
    asides = sorted(pids)
    busy = [p for p in asides if _running(pids[p])]
    if busy:
        raise ConfigError(
            f"{str(busy[0])!r} holds the run that a running process (pid {pids[busy[0]]}) is replacing in "
            f"{str(path)!r}; wait for it to finish (or, if no simulacra runs, move that folder away)"
        )
    if path.is_dir() and (path / _POINTER).is_file():
        for aside in asides:
            shutil.rmtree(aside)
        return (
            f"{path}: the replacement of the previous run was stopped after the new run's first "
            f"checkpoint; removed the previous run left in {', '.join(a.name for a in asides)}"
        )
    if len(asides) > 1:
        raise ConfigError(
            f"{str(path)!r} was being replaced several times: previous runs are left in "
            f"{', '.join(repr(a.name) for a in asides)}; keep the one you want as {str(path)!r}, remove the others"
        )
    if path.exists():
        foreign = foreign_entries(path) if path.is_dir() else [path.name]
        if foreign:
            raise ConfigError(
                f"{str(path)!r} holds files that a run does not write ({', '.join(map(repr, foreign[:5]))}) "
                f"and its previous run is in {str(asides[0])!r}; move one of them away"
            )
        shutil.rmtree(path)
    os.rename(asides[0], path)
    return (
        f"{path}: the replacement of the previous run was stopped before the new run's first "
        f"checkpoint; put the previous run back from {asides[0].name}"
    )


class RunReplacement:
    """Move an old run aside while a new one is written in its place; put it back on failure.

    Use as a context manager around training::

        with RunReplacement(run_dir, enabled=overwrite) as replacement:
            fit(..., callbacks=[replacement])      # its on_checkpoint discards the old run

    On entry the old run (already checked by :func:`check_replaceable`) is renamed to
    ``.<name>.replaced-<pid>`` beside it. The first checkpoint of the new run (``on_checkpoint``)
    or a normal exit deletes it; an exception before that removes the partial new folder and
    renames the old run back.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool) -> None:
        self.run_dir = Path(run_dir)
        self.aside: Path | None = None
        self.enabled = enabled and self.run_dir.is_dir() and holds_run(self.run_dir)

    def __enter__(self) -> RunReplacement:
        if self.enabled:
            aside = _aside_name(self.run_dir, os.getpid())
            if aside.exists():
                shutil.rmtree(aside)
            os.rename(self.run_dir, aside)
            self.aside = aside
        return self

    def discard_old(self) -> None:
        """Delete the old run (the new one is complete enough to stand on its own)."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def on_checkpoint(self, state: Any) -> None:
        """Callback hook: the new run's first checkpoint is on disk, so the old run goes."""
        self.discard_old()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.aside is None:
            return
        if kind is None:
            self.discard_old()
            return
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.run_dir)
        os.rename(self.aside, self.run_dir)
        self.aside = None
