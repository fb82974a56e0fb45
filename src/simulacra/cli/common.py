"""Helpers shared by the verbs: the console, held-out splits and metric tables. Device names are
resolved by :func:`simulacra.train.distributed.resolve_device`, the one resolver; pictures by
:mod:`simulacra.report`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from simulacra.errors import ConfigError, is_seed

DEFAULT_RUN_ROOT = Path("runs")


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)  # paths and commands stay on one line


def _print_metrics(console: Any, metrics: dict[str, Any], *, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("metric", "value", "± s.e.", "unit", "estimator"):
        table.add_column(col)
    for name, m in metrics.items():
        se = "" if m["stderr"] is None or m["stderr"] != m["stderr"] else f"{m['stderr']:.3f}"
        value = "n/a" if m["value"] is None else f"{m['value']:.4g}"
        table.add_row(name, value, se, m["unit"], m["estimator"])
    console.print(table)


def integer(text: str) -> int:
    """argparse ``type`` of the integer options: an int64 (a larger count is no count; a count that
    does not fit in memory is reported when it is allocated)."""
    value = int(text)  # argparse reports a ValueError as "invalid integer value"
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer below 2^63; found {text!r}")
    return value


def seed_arg(text: str) -> int:
    """argparse ``type`` of ``--seed``: an integer in [0, 2^63)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if not is_seed(value):
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2^63); found {text!r}")
    return value  # type: ignore[return-value]


def _at_least(value: int | None, minimum: int, flag: str) -> None:
    """Raise :class:`ConfigError` unless the option ``flag`` is unset or at least ``minimum``."""
    if value is not None and value < minimum:
        raise ConfigError(f"{flag} must be at least {minimum}; found {value}")


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _output_path(output: str | None, default: Path, *, text: bool = False) -> Path:
    """Where a verb writes: ``-o`` if given (a picture, or .txt for text), else ``default``."""
    if output is None:
        return default
    path = Path(output)
    allowed = (".txt",) if text else PICTURE_SUFFIXES
    if path.suffix.lower() not in allowed:
        found = f"{path.suffix!r}" if path.suffix else "no extension"
        raise ConfigError(f"-o {output!r}: expected a file ending in {' or '.join(allowed)}; found {found}")
    if path.is_dir():
        raise ConfigError(f"-o {output!r} is a folder; give a file name")
    check_file_destination(path, "-o")
    return path


def output_file(output: str, suffixes: tuple[str, ...]) -> Path:
    """The file ``-o`` names, checked before any work: one of ``suffixes``, not a folder, and a
    place where it can be written (:func:`check_file_destination`)."""
    path = Path(output)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"-o {output!r}: expected a file ending in {', '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"-o {output!r} is a folder; give a file name")
    check_file_destination(path, "-o")
    return path


def distinct_runs(runs: list[str]) -> None:
    """Refuse a list of runs that names one twice."""
    if len(set(map(str, runs))) != len(runs):
        raise ConfigError("a run is named twice; give each run once")


def save_array(path: str | Path, x: Any) -> None:
    """Write the tensor ``x`` as a ``.npy`` file at ``path`` (``--save-tensor``), its folder made
    when missing (:func:`check_file_destination` has said it can be), readers seeing the whole file
    or none."""
    import io

    import numpy as np

    from simulacra.train.checkpoint import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x))
    atomic_write_bytes(path, buffer.getvalue())


def check_file_destination(path: Path, flag: str) -> None:
    """Raise :class:`ConfigError` unless a file can be written at ``path`` (given by the option
    ``flag``): its folder exists and is writable, or can be made (no file in the way). Checked
    before any work, so a bad path costs nothing and leaves nothing half-written."""
    folder = path.parent
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError(f"{flag} {str(path)!r}: {str(ancestor)!r} is a file, not a folder")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {str(path)!r}: cannot write in the folder {str(ancestor)!r}")
            return


def _recover(run_dir: Path) -> None:
    """Finish or undo a replacement of ``run_dir`` (``--overwrite``) that a killed process left half
    done, and say which (rank 0 of torchrun only: one process touches the folder)."""
    from simulacra.train.rundir import recover_replacement

    if os.environ.get("RANK", "0") == "0":
        note = recover_replacement(run_dir)
        if note:
            print(f"note: {note}", file=sys.stderr)


def _load_run(run: str, device: str = "cpu", weights: str | None = None) -> tuple[Any, Any]:
    """The run's model on ``device`` with the weights asked for (``ema``, ``raw``, or None: the
    average when the run kept one) and the :class:`~simulacra.train.checkpoint.Weights` it holds."""
    from simulacra.train.checkpoint import load_model, locate_weights
    from simulacra.train.distributed import resolve_device

    ema = weights != "raw"
    model = load_model(run, device=resolve_device(device), ema=ema)  # a corrupt run fails here first
    located = locate_weights(run, ema=ema)
    if weights == "ema" and not located.ema:
        raise ConfigError(f"--weights ema: the run {run!r} kept no moving average (train.ema_decay); use raw")
    return model, located


def _held_out(run: str, split: str | None, data_dir: str | None, limit: int | None) -> tuple[Any, Any]:
    """The run's config and one split of its dataset (the first ``limit`` examples); ``split`` None
    takes the first of test, valid and train that the dataset has."""
    from simulacra.config import RunConfig
    from simulacra.data import load_dataset
    from simulacra.train.checkpoint import load_run_config

    config = RunConfig.from_dict(load_run_config(run)["run"])
    if data_dir:
        config.data.data_dir = data_dir
    data = load_dataset(config.data, seed=config.train.seed)
    part = (data.test or data.valid or data.train) if split is None else getattr(data, split)
    if part is None:
        raise ConfigError(f"dataset {data.name!r} has no {split} split; use --split train or valid")
    if limit is not None:
        from simulacra.data.info import Split

        part = Split(part.x[:limit], None if part.y is None else part.y[:limit])
    return config, part
