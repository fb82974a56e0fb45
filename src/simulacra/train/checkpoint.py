"""Run directories: the final model, resumable checkpoints, and loading them back safely.

Layout of a run directory::

    config.json                 {"run": run config, "model": spec, "info": DataInfo, "simulacra_version"}
    model.safetensors           final weights (written when training finishes)
    ema.safetensors             final EMA weights (when EMA is on)
    metrics.jsonl               one JSON object per logged step / evaluation
    checkpoint.json             {"latest": "ckpt-000000100", "step": 100}: the pointer
    ckpt-000000100/             the latest complete resumable checkpoint:
        model.safetensors           weights at that step
        trainer-state.json          step, optimizer/scheduler hyper-parameters, early stopping, ...
        trainer-state.safetensors   every tensor of the trainer state (optimizer moments, RNG states)
        ema.safetensors, best.safetensors, ...   callback states and the best weights

Crash safety. A checkpoint is several files, so it is written into a fresh folder
``ckpt-<step>.tmp/`` (each file fsync'd), the folder is renamed to ``ckpt-<step>/`` (atomic),
and only then is the pointer ``checkpoint.json`` replaced (tmp file + fsync + ``os.replace``,
atomic). Readers go through the pointer. A kill at any instant therefore leaves the pointer
naming either the previous complete folder or the new complete one; stale folders are deleted
after the pointer moves (and on the next save). Single files at the root are written to a
temporary name and ``os.replace``d; temporary names a kill left behind go at the next checkpoint.

Loading never unpickles: tensors come from safetensors, everything else from JSON
(``torch.load`` is never called).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

from simulacra.config import to_jsonable
from simulacra.data.info import DataInfo
from simulacra.errors import CheckpointError
from simulacra.models.base import GenerativeModel
from simulacra.models.zoo import build_model, recorded_spec
from simulacra.train.rundir import RUN_MARKER, write_marker

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
POINTER_FILE = "checkpoint.json"
TRAINER_JSON = "trainer-state.json"
TRAINER_TENSORS = "trainer-state.safetensors"
METRICS_FILE = "metrics.jsonl"
FORMAT_VERSION = 1

_CKPT_RE = re.compile(r"^ckpt-\d+(-\d+)?(\.tmp)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_RESUME_HINT = "was training finished? resume it with `simulacra train --resume RUN`"


def simulacra_version() -> str:
    """The installed package version, or ``"unknown"`` when running from a bare source tree."""
    try:
        return metadata.version("simulacra")
    except metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- atomic files


def _fsync_dir(path: Path) -> None:
    # Makes a rename durable; not supported everywhere (e.g. Windows), where it is skipped.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_durable(tmp, data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _tensor_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    # Contiguous CPU copies: safetensors refuses views and tensors sharing memory (tied weights).
    return safetensors.torch.save(
        {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()},
        metadata=dict(metadata) if metadata else None,
    )


def save_tensors(
    path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write a flat ``{name: tensor}`` mapping atomically as safetensors (with string ``metadata``)."""
    atomic_write_bytes(path, _tensor_bytes(tensors, metadata))


def tensor_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file ({} when it has none or cannot be read)."""
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # a missing or corrupt file: the loaders report it with their own message
        return {}


def load_tensors(
    path: str | Path, *, device: str | torch.device = "cpu", missing: str = ""
) -> dict[str, Tensor]:
    """Read a safetensors file; a missing, truncated or corrupt file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing" + (f"; {missing}" if missing else ""))
    try:
        return safetensors.torch.load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises several types for truncated/garbled headers
        raise CheckpointError(f"{path} is corrupt or truncated (cannot read safetensors: {err})") from None


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; {what}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {err})") from None


# --------------------------------------------------------------------------- nested state <-> json + tensors

_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"


def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, Tensor]]:
    """Split a nested state (dicts, lists, tuples, numbers, strings, tensors) into JSON + tensors.

    Each tensor is replaced by ``{"__tensor__": key}`` and stored under ``key`` (its path, e.g.
    ``"optimizers/main/state/0/exp_avg"``) in the returned flat mapping. Tuples and dicts with
    non-string keys (optimizer states are keyed by int) are tagged so that
    :func:`unflatten_state` restores them exactly.
    """
    tensors: dict[str, Tensor] = {}

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, Tensor):
            tensors[path] = value
            return {_TENSOR: path}
        if isinstance(value, Mapping):
            keys = list(value)
            if all(isinstance(k, str) for k in keys) and not {_TENSOR, _TUPLE, _DICT} & set(keys):
                return {k: encode(v, f"{path}/{k}" if path else k) for k, v in value.items()}
            if not all(isinstance(k, str | int | float | bool) or k is None for k in keys):
                raise TypeError(f"cannot store a dict key of type {type(keys[0]).__name__} at {path!r}")
            return {_DICT: [[k, encode(v, f"{path}/{k}" if path else str(k))] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(v, f"{path}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [encode(v, f"{path}/{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint (at {path!r})")

    return encode(obj, prefix), tensors


def unflatten_state(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            key = obj[_TENSOR]
            if key not in tensors:
                raise CheckpointError(f"trainer state refers to tensor {key!r}, which its safetensors lacks")
            return tensors[key]
        if set(obj) == {_TUPLE}:
            return tuple(unflatten_state(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_DICT}:
            return {k: unflatten_state(v, tensors) for k, v in obj[_DICT]}
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# --------------------------------------------------------------------------- run directory checks


def _check_run_dir(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.exists():
        aside = sorted(path.parent.glob(f".{glob.escape(path.name)}.replaced-*")) if path.name else []
        hint = (
            f"; a replacement of it was stopped, leaving the previous run in {str(aside[0])!r} "
            f"(`simulacra train --resume {path}` puts it back)"
            if aside
            else ""
        )
        raise CheckpointError(f"run directory {str(path)!r} does not exist{hint}")
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a file, not a run directory")
    born = (
        (path / RUN_MARKER).is_file()
        and not (path / MODEL_FILE).exists()
        and not (path / POINTER_FILE).exists()
    )
    if (
        not (path / CONFIG_FILE).is_file() and born
    ):  # the marker is a run's first file, config.json its second
        raise CheckpointError(
            f"{str(path)!r} has no {CONFIG_FILE}: its run was stopped before it wrote one; start it "
            f"again with `simulacra train ... --out {path} --overwrite`"
        )
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{str(path)!r} is not a run directory: it has no {CONFIG_FILE} (expected the folder a "
            "training run wrote)"
        )
    return path


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run: ``run`` (the run config), ``model`` (spec), ``info``, version.

    Raises:
        CheckpointError: the directory is missing, is not a run directory, or its config is corrupt.
    """
    path = _check_run_dir(run_dir) / CONFIG_FILE
    config = _read_json(path, "not a run directory")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object, found {type(config).__name__}")
    return config


def save_run_config(
    run_dir: str | Path,
    model: GenerativeModel,
    run_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``config.json``::

        {"run": run_config, "model": spec, "info": DataInfo.to_dict(), "simulacra_version": "..."}

    ``run`` is the caller's run configuration as given (e.g. ``RunConfig.to_dict()``: model,
    data and train sections), so a run can be repeated or resumed from it. ``model`` is the
    preset spec from ``model.spec`` (set by :func:`simulacra.models.zoo.build_model`), else
    ``run_config["model"]``; without either the weights can be saved but :func:`load_model`
    cannot rebuild the architecture.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = json.loads(json.dumps(dict(run_config or {}), default=to_jsonable))
    spec = model.spec
    spec = json.loads(json.dumps(dict(spec), default=to_jsonable)) if spec is not None else run.get("model")
    info = model.info.to_dict()
    info["event_shape"] = list(model.info.event_shape)
    config = {"run": run, "model": spec, "info": info, "simulacra_version": simulacra_version()}
    write_marker(run_dir, simulacra_version())
    atomic_write_json(run_dir / CONFIG_FILE, config)
    return run_dir / CONFIG_FILE


# --------------------------------------------------------------------------- final model


def save_model(
    model: GenerativeModel,
    run_dir: str | Path,
    run_config: Mapping[str, Any] | None = None,
    *,
    ema: Mapping[str, Tensor] | None = None,
    step: int | None = None,
) -> Path:
    """Write the final model: ``config.json``, ``model.safetensors`` (and ``ema.safetensors``).

    Args:
        model: a :class:`GenerativeModel` (its ``spec`` and ``info`` go into the config).
        run_dir: the run directory (created if needed).
        run_config: the run's settings, stored in ``config.json`` (default: keep what is there).
        ema: EMA weights with the same keys as ``model.state_dict()``; when None a stale
            ``ema.safetensors`` is removed so that :func:`load_model` cannot pick up old weights.
        step: the training step of these weights, kept in the files' metadata so that
            :func:`locate_weights` can tell when a later checkpoint is newer.

    Returns:
        The path of ``model.safetensors``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if run_config is not None or not (run_dir / CONFIG_FILE).is_file():
        save_run_config(run_dir, model, run_config)
    metadata = {"step": str(step)} if step is not None else None
    if ema is not None:
        save_tensors(run_dir / EMA_FILE, ema, metadata)
    else:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / EMA_FILE).unlink()
    save_tensors(run_dir / MODEL_FILE, model.state_dict(), metadata)
    return run_dir / MODEL_FILE


@dataclass(frozen=True)
class Weights:
    """Which weights of a run a model is loaded with.

    Attributes:
        path: the safetensors file.
        ema: True for the exponential moving average, False for the raw weights.
        step: the training step they come from (None for runs written before steps were recorded).
        from_checkpoint: True when they come from the latest checkpoint because the run has no
            final weights yet, or older ones (an interrupted run).
    """

    path: Path
    ema: bool
    step: int | None
    from_checkpoint: bool

    @property
    def kind(self) -> str:
        """``"ema"`` or ``"raw"``."""
        return "ema" if self.ema else "raw"

    def describe(self) -> str:
        """A line for the user, e.g. ``"weights: ema, step 800 (latest checkpoint: the run is unfinished)"``."""
        where = f", step {self.step}" if self.step is not None else ""
        note = " (latest checkpoint: the run is unfinished)" if self.from_checkpoint else ""
        return f"weights: {self.kind}{where}{note}"


def _step_of(path: Path) -> int | None:
    value = tensor_metadata(path).get("step")
    return int(value) if value is not None and value.isdigit() else None


def locate_weights(run_dir: str | Path, *, ema: bool = True) -> Weights:
    """The newest complete weights of a run: the final ``model.safetensors`` (``ema.safetensors``
    when ``ema`` and the run kept an average), or the latest checkpoint's when the run has no final
    weights or they are older than it (a run stopped before its end).

    Raises:
        CheckpointError: not a run directory, or a run with neither final weights nor a checkpoint.
    """
    run_dir = _check_run_dir(run_dir)
    final = run_dir / (EMA_FILE if ema and (run_dir / EMA_FILE).is_file() else MODEL_FILE)
    final_step = _step_of(final) if final.is_file() else None
    folder = latest_checkpoint(run_dir)
    if folder is not None:
        pointer = _read_json(run_dir / POINTER_FILE, "")
        ckpt_step = int(pointer.get("step", -1)) if isinstance(pointer, dict) else -1
        newer = not final.is_file() or (final_step is not None and ckpt_step > final_step)
        if newer:
            use_ema = ema and (folder / EMA_FILE).is_file()
            return Weights(folder / (EMA_FILE if use_ema else MODEL_FILE), use_ema, ckpt_step, True)
    if not final.is_file():
        raise CheckpointError(f"{run_dir / MODEL_FILE} is missing; {_RESUME_HINT}")
    return Weights(final, final.name == EMA_FILE, final_step, False)


def load_state_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """``module.load_state_dict(state)`` with a :class:`CheckpointError` naming the first mismatch.

    Raises:
        CheckpointError: a key missing from the file, a key the model lacks, or a shape mismatch
            (the message gives the key and both shapes).
    """
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise CheckpointError(
                f"{source} does not match the architecture: it lacks {key!r} (model shape "
                f"{tuple(value.shape)}); was it written for another model config?"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source} does not match the architecture: {key!r} has shape {tuple(state[key].shape)} "
                f"in the file but {tuple(value.shape)} in the model"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise CheckpointError(
            f"{source} does not match the architecture: it has {extra[0]!r} (shape "
            f"{tuple(state[extra[0]].shape)}), which the model lacks"
        )
    with torch.no_grad():
        module.load_state_dict(dict(state), strict=True)


def load_model(
    run_dir: str | Path, *, device: str | torch.device = "cpu", ema: bool = True
) -> GenerativeModel:
    """Rebuild a trained model from its run directory, in eval mode.

    The architecture comes from ``config.json`` through
    :func:`simulacra.models.zoo.build_model` (no code is unpickled); the weights from
    ``model.safetensors``, or ``ema.safetensors`` when ``ema`` is True and the run kept an EMA, or
    from the latest checkpoint when it is newer (:func:`locate_weights`).

    Raises:
        CheckpointError: missing or corrupt files, or weights that do not fit the architecture.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    spec, info = config.get("model"), config.get("info")
    if not spec or not info:
        raise CheckpointError(
            f"{run_dir / CONFIG_FILE} lacks the 'model' spec or the data 'info' needed to rebuild the model "
            "(was the model built without a registered preset?)"
        )
    try:
        data_info = DataInfo.from_dict(info)
    except (TypeError, KeyError) as err:
        raise CheckpointError(f"{run_dir / CONFIG_FILE} has a corrupt 'info' entry: {err}") from None
    model = build_model(recorded_spec(spec), data_info)
    weights = locate_weights(run_dir, ema=ema)
    state = load_tensors(weights.path, missing=_RESUME_HINT)
    load_state_strict(model, state, str(weights.path))
    return model.to(device).eval()


# --------------------------------------------------------------------------- resumable checkpoints


@dataclass
class Checkpoint:
    """A loaded resumable checkpoint.

    Attributes:
        step: completed training steps.
        path: its folder.
        model_state: the model's ``state_dict`` at that step (CPU tensors).
        trainer_state: the nested trainer state (tensors restored in place of their references).
        extra: further tensor files by name (``"ema"``, ``"best"``, ...).
    """

    step: int
    path: Path
    model_state: dict[str, Tensor]
    trainer_state: dict[str, Any]
    extra: dict[str, dict[str, Tensor]] = field(default_factory=dict)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder named by ``checkpoint.json``, or None when the run has no checkpoint yet.

    Raises:
        CheckpointError: the pointer is corrupt or names a folder that does not exist.
    """
    run_dir = Path(run_dir)
    pointer = run_dir / POINTER_FILE
    if not pointer.is_file():
        return None
    raw = _read_json(pointer, "")
    name = raw.get("latest") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not _CKPT_RE.match(name) or name.endswith(".tmp"):
        raise CheckpointError(f"{pointer} is corrupt: expected {{'latest': 'ckpt-...'}}, found {raw!r}")
    folder = run_dir / name
    if not folder.is_dir():
        raise CheckpointError(f"{pointer} names {name}, which does not exist in {run_dir}")
    return folder


def _fresh_name(run_dir: Path, step: int) -> str:
    base = f"ckpt-{step:09d}"
    name, k = base, 0
    while (run_dir / name).exists():  # e.g. the final checkpoint of a resumed, finished run
        k += 1
        name = f"{base}-{k}"
    return name


_TMP_FILE_RE = re.compile(r"^\..+\.\d+\.tmp$")  # atomic_write_bytes' temporary name: .NAME.PID.tmp


def _remove_stale(run_dir: Path, keep: str) -> None:
    """Delete every checkpoint folder but ``keep`` (older ones, and ``ckpt-*.tmp`` folders of a
    write that was killed) and the temporary files of atomic writes that a kill cut short."""
    for child in run_dir.iterdir():
        if child.name != keep and child.is_dir() and _CKPT_RE.match(child.name):
            shutil.rmtree(child, ignore_errors=True)
        elif _TMP_FILE_RE.match(child.name) and child.is_file():
            child.unlink(missing_ok=True)


def save_checkpoint(
    run_dir: str | Path,
    *,
    step: int,
    model_state: Mapping[str, Tensor],
    trainer_state: Mapping[str, Any],
    extra: Mapping[str, Mapping[str, Tensor]] | None = None,
) -> Path:
    """Write a complete resumable checkpoint and make it the latest, atomically.

    Args:
        run_dir: the run directory.
        step: completed training steps.
        model_state: ``model.state_dict()``.
        trainer_state: nested dicts/lists of numbers, strings and tensors (optimizer and
            scheduler states, RNG states, ...): tensors go to ``trainer-state.safetensors``,
            the rest to ``trainer-state.json`` (see :func:`flatten_state`).
        extra: further ``{name: {key: tensor}}`` written as ``<name>.safetensors`` (EMA, best weights).

    Returns:
        The new checkpoint folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in extra or {}:
        if not _NAME_RE.match(name) or name in {"model", "trainer-state"}:
            raise ValueError(f"invalid checkpoint file name {name!r}")
    json_state, tensors = flatten_state(dict(trainer_state))
    name = _fresh_name(run_dir, step)
    tmp = run_dir / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_durable(tmp / MODEL_FILE, _tensor_bytes(model_state))
        _write_durable(tmp / TRAINER_TENSORS, _tensor_bytes(tensors))
        header = {"format": FORMAT_VERSION, "step": step, "simulacra_version": simulacra_version()}
        _write_durable(tmp / TRAINER_JSON, json.dumps({**header, "state": json_state}).encode())
        for extra_name, extra_tensors in (extra or {}).items():
            _write_durable(tmp / f"{extra_name}.safetensors", _tensor_bytes(extra_tensors))
        _fsync_dir(tmp)
    except BaseException as err:  # a full disk, an I/O error, an interrupt: leave nothing half-written
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise CheckpointError(
                f"cannot write a checkpoint in {run_dir}: {err.strerror or err}; the previous one is intact"
            ) from None
        raise
    # The folder becomes visible complete, then the pointer moves to it: both steps are atomic.
    os.rename(tmp, run_dir / name)
    _fsync_dir(run_dir)
    atomic_write_json(run_dir / POINTER_FILE, {"latest": name, "step": step})
    _remove_stale(run_dir, keep=name)
    return run_dir / name


def load_trainer_state(run_dir: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load the latest resumable checkpoint of a run.

    Raises:
        CheckpointError: the run directory is missing or not a run, it has no checkpoint to
            resume from, or a checkpoint file is missing or corrupt.
    """
    run_dir = _check_run_dir(run_dir)
    folder = latest_checkpoint(run_dir)
    if folder is None:
        raise CheckpointError(
            f"{str(run_dir)!r} has no trainer state to resume from (no {POINTER_FILE}); the run was "
            "interrupted before its first checkpoint (set train.checkpoint_every) or never started"
        )
    raw = _read_json(folder / TRAINER_JSON, "the checkpoint is incomplete")
    if not isinstance(raw, dict) or "state" not in raw or "step" not in raw:
        raise CheckpointError(f"{folder / TRAINER_JSON} is corrupt: expected keys 'step' and 'state'")
    if raw.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder / TRAINER_JSON} has format {raw.get('format')!r}; this simulacra reads format {FORMAT_VERSION}"
        )
    tensors = load_tensors(folder / TRAINER_TENSORS, device=device)
    model_state = load_tensors(folder / MODEL_FILE, device=device)
    extra = {
        p.name.removesuffix(".safetensors"): load_tensors(p, device=device)
        for p in sorted(folder.glob("*.safetensors"))
        if p.name not in {MODEL_FILE, TRAINER_TENSORS}
    }
    return Checkpoint(int(raw["step"]), folder, model_state, unflatten_state(raw["state"], tensors), extra)
