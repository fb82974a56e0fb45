"""What every benchmark shares: the machine line of its results (CPU model, threads, torch
version), writing the results, and training on a wall-time budget: calibrate the step rate,
plan the steps (:func:`plan_budget`), configure a cosine schedule over them
(:func:`cosine_config`), then fit under a time limit (:func:`fit_on_budget`)."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import Dataset
    from simulacra.models.base import GenerativeModel
    from simulacra.train import FitResult


def machine() -> str:
    """CPU model, torch's thread count and torch version, e.g. 'Intel(R) Xeon(R) ..., 2 thread(s), torch 2.13.0+cpu'."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def one_thread() -> None:
    """One torch thread and, when threadpoolctl is installed, one BLAS/OpenMP thread in every
    native library (NumPy's, scikit-learn's), so a benchmark measures one core."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def write_record(record: dict, path: Path) -> None:
    """Stamp a benchmark's results with the date, machine and command, write them to ``path``
    (JSON, parent folders created) and print them."""
    record = {
        **record,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def calibrate(
    model_spec: dict,
    data: Dataset,
    batch_size: int,
    steps: int,
    warmup: int = 3,
    validation: bool = False,
    precision: str = "fp32",
) -> tuple[float, float]:
    """(seconds per training step, seconds per validation pass) of ``model_spec`` on ``data`` on
    this machine: :func:`simulacra.train.budget.calibrate` on the preset built with seed 123,
    training steps in ``precision`` (the validation pass counted only when ``validation``)."""
    from simulacra.config import TrainConfig
    from simulacra.models.zoo import build_model
    from simulacra.train.budget import calibrate as measure

    torch.manual_seed(123)
    model = build_model(model_spec, data.info)
    config = TrainConfig(batch_size=batch_size, precision=precision)
    cal = measure(model, data, config, steps=steps, warmup=warmup)
    return cal.step_seconds, cal.eval_seconds if validation else 0.0


def steps_for_budget(
    seconds: float,
    seconds_per_step: float,
    eval_seconds: float = 0.0,
    eval_every: int = 0,
    margin: float = 0.95,
) -> int:
    """Steps that fit ``seconds`` with a validation pass of ``eval_seconds`` every ``eval_every``
    steps (:func:`simulacra.train.budget.steps_for_budget`, the passes spread over the steps)."""
    from simulacra.train.budget import Calibration
    from simulacra.train.budget import steps_for_budget as fit_steps

    per_step = seconds_per_step + (eval_seconds / eval_every if eval_every > 0 else 0.0)
    return fit_steps(seconds, Calibration(per_step, 0.0), margin=margin)


def plan_budget(
    model_spec: dict,
    data: Dataset,
    batch_size: int,
    minutes: float,
    *,
    calibration_steps: int,
    warmup: int = 3,
    validation: bool = False,
    eval_every: int = 0,
    margin: float = 0.95,
    precision: str = "fp32",
) -> tuple[int, float, float]:
    """(steps, seconds per step, seconds per validation pass): :func:`calibrate` on this machine
    (training steps in ``precision``), then :func:`steps_for_budget` for ``minutes`` of wall time
    with a validation pass every ``eval_every`` steps (its cost is measured when ``validation``,
    else counted as 0)."""
    step_seconds, eval_seconds = calibrate(
        model_spec, data, batch_size, steps=calibration_steps, warmup=warmup, validation=validation,
        precision=precision,
    )  # fmt: skip
    steps = steps_for_budget(minutes * 60, step_seconds, eval_seconds, eval_every, margin)
    return steps, step_seconds, eval_seconds


def cosine_config(
    steps: int, batch_size: int, lr: float, seed: int, *, max_warmup: int = 500, **settings: Any
) -> TrainConfig:
    """The TrainConfig of a budgeted run: ``steps`` steps of a cosine learning-rate decay after
    min(``max_warmup``, steps // 20) warm-up steps; ``settings`` are further TrainConfig fields."""
    from simulacra.config import TrainConfig

    settings.setdefault("eval_every", 0)  # the published figures: validation only where asked,
    settings.setdefault("patience", None)  # and never an early stop (the budget ends the run)
    return TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        lr_schedule="cosine",
        warmup_steps=min(max_warmup, steps // 20),
        seed=seed,
        **settings,
    )


def fit_on_budget(
    model_spec: dict, data: Dataset, source: DataConfig, config: TrainConfig, run_dir: Path, minutes: float
) -> tuple[GenerativeModel, FitResult]:
    """Build the preset (torch seeded with ``config.seed``), replace ``run_dir`` and train it with
    ``fit`` until ``config.steps`` or ``minutes`` of wall time (TimeBudget), whichever comes first.

    The run config stored in ``run_dir`` names the model and the data (``source``), so the CLI's
    verbs (``simulacra sample|evaluate RUN``) find both. Returns the model and the fit result."""
    from simulacra.models.zoo import build_model
    from simulacra.train import TimeBudget, fit

    torch.manual_seed(config.seed)
    model = build_model(model_spec, data.info)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = fit(
        model,
        data,
        config,
        run_dir=run_dir,
        run_config={"model": model_spec, "data": asdict(source)},
        callbacks=[TimeBudget(minutes * 60)],
        progress=sys.stdout.isatty(),
    )
    return model, result
