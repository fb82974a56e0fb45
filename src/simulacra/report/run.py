"""What a finished run writes beside its weights: held-out metrics and pictures.

:func:`write_run_report` is what ``simulacra train`` does after training; a script that called
:func:`simulacra.train.fit` gets the same files from it. The metrics are chosen by capability
through :func:`simulacra.metrics.evaluate.evaluate` (a likelihood where the model has one, and
MMD² of samples for every model); the pictures by :func:`~simulacra.report.pictures.report_pictures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulacra.data.info import Dataset, Split
from simulacra.metrics.evaluate import METRICS, EvalOptions, estimates_as_dicts, evaluate
from simulacra.metrics.likelihood import Estimate
from simulacra.models.base import GenerativeModel, ImportanceWeighted
from simulacra.report.pictures import report_pictures
from simulacra.train.checkpoint import METRICS_FILE, atomic_write_json
from simulacra.train.loop import FitResult
from simulacra.viz.plots import plot_metrics

RUN_METRICS_FILE = "metrics.json"


def held_out_split(data: Dataset) -> Split:
    """The split a run is scored on: test, else validation, else training."""
    return data.test or data.valid or data.train


def run_metrics(
    model: GenerativeModel,
    held_out: Split,
    *,
    examples: int = 1000,
    num_samples: int | None = None,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Held-out figures of a trained model: ``nll`` where it has a likelihood (k importance samples
    for the VAE family, default 200), and ``mmd`` of its samples, on the first ``examples``."""
    part = Split(held_out.x[:examples], None if held_out.y is None else held_out.y[:examples])
    k = num_samples or (200 if isinstance(model, ImportanceWeighted) else 1)
    names = [n for n in ("nll", "mmd") if METRICS.get(n).applies_to(model)]
    return evaluate(model, part, names, EvalOptions(num_samples=k, seed=seed))


def write_run_report(
    model: GenerativeModel,
    data: Dataset,
    run_dir: str | Path,
    result: FitResult | None = None,
    *,
    model_name: str | None = None,
    num_samples: int | None = None,
    examples: int = 1000,
    seed: int = 0,
    weights: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Score a trained model and picture it into ``run_dir`` (``metrics.json`` and PNGs).

    Args:
        model: the trained model (as :func:`~simulacra.train.fit` left it).
        data: the dataset it was trained on; scored on its held-out split (:func:`held_out_split`).
        run_dir: the run directory.
        result: what ``fit`` returned (steps, time, early stopping), recorded in ``metrics.json``.
        model_name: the preset's name for the record (default: the model's).
        num_samples, examples, seed: as :func:`run_metrics`.
        weights: which weights ``model`` holds (``"ema"`` or ``"raw"``), recorded with the figures.

    Returns:
        (the ``metrics.json`` content, the names of the pictures written).
    """
    run_dir = Path(run_dir)
    held_out = held_out_split(data)
    model.eval()
    pictures = report_pictures(model, held_out, run_dir, seed=seed)
    record: dict[str, Any] = {
        "model": model_name or model.preset_name,
        "data": data.name,
    }
    if weights is not None:
        record["weights"] = weights
    if result is not None:
        record.update(
            steps=result.steps,
            train_seconds=round(result.wall_time, 2),
            examples_per_s=round(result.examples_per_s, 1),
        )
        if result.best_step is not None:
            record["best_step"] = result.best_step
            record["best_valid_score"] = result.best_valid_loss
            record["weights_from_step"] = result.best_step if result.restored_best else result.steps
        if result.stopped_early:
            record["stopped_early"] = True
        if result.second_stage:
            record["second_stage"] = result.second_stage
    estimates = run_metrics(model, held_out, examples=examples, num_samples=num_samples, seed=seed)
    record["test"] = estimates_as_dicts(estimates)
    record["test_examples"] = min(len(held_out), examples)
    atomic_write_json(run_dir / RUN_METRICS_FILE, record)
    if (run_dir / METRICS_FILE).is_file():
        plot_metrics(run_dir / METRICS_FILE, run_dir / "training.png")
        pictures.append("training.png")
    return record, pictures
