"""What a finished run writes beside its weights: held-out metrics and pictures, in bounded time.

:func:`write_run_report` is what ``simulacra train`` does after training; a script that called
:func:`simulacra.train.fit` gets the same files from it. The metrics are chosen by capability
through :func:`simulacra.metrics.evaluate.evaluate` (a likelihood where the model has one, and
MMD² of samples for every model); the pictures by :func:`~simulacra.report.pictures.report_pictures`.

The work is bounded (:func:`plan_evaluation`): samples are drawn with the model's fast options (a
diffusion model's few-step solver), and the numbers of held-out examples scored and of samples
drawn are capped so that the evaluation costs about a quarter of the training time (at least ten
seconds), measured on a first small batch. The plan, and why each number is what it is, go into
``metrics.json``; the full-size figures are one ``simulacra evaluate RUN`` away.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from simulacra.data.info import Dataset, Split
from simulacra.metrics.evaluate import (
    METRICS,
    EvalOptions,
    compared_split,
    draw_samples,
    estimates_as_dicts,
    evaluate,
    mmd_estimates,
)
from simulacra.metrics.likelihood import Estimate
from simulacra.models.base import GenerativeModel, ImportanceWeighted
from simulacra.progress import progress as show_progress
from simulacra.report.pictures import report_pictures
from simulacra.train.checkpoint import METRICS_FILE, atomic_write_json
from simulacra.train.loop import FitResult
from simulacra.viz.plots import plot_metrics

RUN_METRICS_FILE = "metrics.json"
MAX_EXAMPLES = 1000
MAX_SAMPLES = 500


def held_out_split(data: Dataset) -> Split:
    """The split a run is scored on: test, else validation, else training."""
    return data.test or data.valid or data.train


def _slice(split: Split, start: int, stop: int) -> Split:
    return Split(split.x[start:stop], None if split.y is None else split.y[start:stop])


@dataclass
class EvaluationPlan:
    """How much post-training evaluation to do.

    Attributes:
        examples: at most this many held-out examples get their NLL estimated (0: the model has
            no likelihood).
        samples: at most this many samples are drawn for MMD² (and compared with as many
            held-out examples).
        num_samples: k, importance samples per example (VAE family).
        sample_options: options given to ``model.sample`` (its fast sampler).
        sampling: those options in words.
        budget_seconds: the time the NLL and the samples may take together; each stops early
            (after a first batch) when its share is used. None: the counts are used as they are.
        reasons: why each count is what it is before the budget applies (``"asked"``,
            ``"split size"``, ``"maximum"``, ``"no likelihood"``).
    """

    examples: int
    samples: int
    num_samples: int
    sample_options: dict[str, Any] = field(default_factory=dict)
    sampling: str = ""
    budget_seconds: float | None = None
    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("sample_options")
        return out


def _count(asked: int | None, available: int, maximum: int) -> tuple[int, str]:
    if asked is not None:
        return min(asked, available), "asked" if asked <= available else "split size"
    return (available, "split size") if available <= maximum else (maximum, "maximum")


def plan_evaluation(
    model: GenerativeModel,
    held_out: Split,
    *,
    train_seconds: float | None = None,
    fraction: float = 0.25,
    minimum_seconds: float = 10.0,
    examples: int | None = None,
    samples: int | None = None,
    num_samples: int | None = None,
) -> EvaluationPlan:
    """Plan the post-training evaluation of ``model`` on ``held_out``.

    At most 1,000 examples and 500 samples (or ``examples``/``samples`` as given, then without a
    time limit); with ``train_seconds`` and a count not given, a budget of
    ``max(minimum_seconds, fraction · train_seconds)`` shared equally by the NLL and the samples
    (:func:`run_metrics` stops each when its share is used). k defaults to 200 for the VAE family,
    else 1; samples are drawn with the model's fast options.
    """
    k = num_samples or (200 if isinstance(model, ImportanceWeighted) else 1)
    options = model.fast_sample_options()
    has_nll = METRICS.get("nll").applies_to(model)
    n_examples, why_examples = (
        _count(examples, len(held_out), MAX_EXAMPLES) if has_nll else (0, "no likelihood")
    )
    n_samples, why_samples = _count(samples, len(held_out), MAX_SAMPLES)
    timed = train_seconds is not None and (examples is None or samples is None)
    return EvaluationPlan(
        examples=n_examples,
        samples=max(2, n_samples),
        num_samples=k,
        sample_options=options,
        sampling=model.describe_sampling(options),
        budget_seconds=max(minimum_seconds, fraction * train_seconds)
        if timed and train_seconds is not None
        else None,
        reasons={"examples": why_examples, "samples": why_samples},
    )


class _Clock:
    """Chunks of work within a share of seconds: a small first chunk always runs; then each chunk
    is what the remaining time fits at the rate measured so far, at most four times the work done
    (so that a rate measured on few items is not trusted too far)."""

    def __init__(self, share: float | None, total: int, first: int) -> None:
        self.share, self.total, self.first = share, total, first
        self.started = time.perf_counter()
        self.done = 0
        self.chunks = 0

    def record(self, chunk: int) -> None:
        """``chunk`` more units done."""
        self.done += chunk
        self.chunks += 1

    def next_chunk(self) -> int:
        """The size of the next chunk, 0 when the work or the time is used up."""
        left = self.total - self.done
        if left <= 0:
            return 0
        if self.done == 0:
            return min(self.first, left) if self.share is not None else left
        elapsed = time.perf_counter() - self.started
        if self.share is None:
            return left
        if elapsed >= self.share:
            return 0
        fits = int((self.share - elapsed) / (elapsed / self.done))
        return min(left, fits, 4 * self.done)


CHEAP_METRICS = ("cycle", "codes")  # computed after training whenever they apply, without a budget


def run_metrics(
    model: GenerativeModel,
    held_out: Split,
    plan: EvaluationPlan,
    *,
    seed: int = 0,
    say: Callable[[str], None] = lambda line: None,
    progress: bool = False,
) -> tuple[dict[str, Estimate], dict[str, str]]:
    """The planned figures: ``nll`` (and ``bpd``, ...) on the first held-out examples, ``mmd``
    between samples and as many held-out examples; ``say`` receives a line per phase.

    Without a budget, one call of :func:`~simulacra.metrics.evaluate.evaluate` on the first
    ``plan.examples`` examples (what ``simulacra evaluate RUN --limit N`` computes). With a
    budget, each phase works in chunks until its share of the time is used: the NLL's estimates
    over the chunks are pooled exactly (:meth:`Estimate.pooled`; chunk i seeded ``seed + i``),
    the samples' chunks are drawn with generators seeded ``seed + 1 + i`` and compared at once.

    Returns:
        (the estimates, why each phase stopped where it did).
    """
    results: dict[str, Estimate] = {}
    stopped: dict[str, str] = {}
    # the budget is shared by the phases whose counts were not given
    timed = [
        p
        for p, n in (("examples", plan.examples), ("samples", plan.samples))
        if n and plan.reasons[p] != "asked"
    ]
    share = None if plan.budget_seconds is None or not timed else plan.budget_seconds / len(timed)
    if plan.examples:
        say(f"evaluating the NLL on up to {plan.examples} held-out examples (k = {plan.num_samples})")
        clock = _Clock(share if "examples" in timed else None, plan.examples, first=4)
        parts: dict[str, list[Estimate]] = {}
        with show_progress(plan.examples, "NLL", progress) as bar:
            while chunk := clock.next_chunk():
                part = _slice(held_out, clock.done, clock.done + chunk)
                options = EvalOptions(num_samples=plan.num_samples, seed=seed + clock.chunks)
                for key, estimate in evaluate(model, part, ["nll"], options).items():
                    parts.setdefault(key, []).append(estimate)
                clock.record(chunk)
                bar.advance(chunk)
        results.update({key: Estimate.pooled(chunks) for key, chunks in parts.items()})
        stopped["examples"] = plan.reasons["examples"] if clock.done >= plan.examples else "time budget"
        say(f"  NLL on {clock.done} examples in {time.perf_counter() - clock.started:.1f} s")
    for name in CHEAP_METRICS:  # a pass over the held-out examples each, when the model has it
        if METRICS.get(name).applies_to(model):
            results.update(evaluate(model, held_out, [name], EvalOptions(seed=seed)))
    held_out, reference = compared_split(model, held_out)  # a CycleGAN's: translations of A against B
    target = min(plan.samples, len(held_out))
    say(f"drawing up to {target} samples ({plan.sampling}) for the MMD")
    clock = _Clock(share if "samples" in timed else None, target, first=16)
    drawn: list[Tensor] = []
    with show_progress(target, "samples", progress) as bar:
        while chunk := clock.next_chunk():  # labels of a conditional model: those of the examples compared
            options = EvalOptions(seed=seed + clock.chunks, sample_options=plan.sample_options)
            drawn.append(
                draw_samples(model, _slice(held_out, clock.done, clock.done + chunk), chunk, options)
            )
            clock.record(chunk)
            bar.advance(chunk)
    samples = torch.cat(drawn)
    results.update(mmd_estimates(samples, reference[: samples.shape[0]].cpu(), seed))
    stopped["samples"] = plan.reasons["samples"] if clock.done >= target else "time budget"
    say(f"  {samples.shape[0]} samples in {time.perf_counter() - clock.started:.1f} s")
    return results, stopped


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    return obj


def write_run_report(
    model: GenerativeModel,
    data: Dataset,
    run_dir: str | Path,
    result: FitResult | None = None,
    *,
    model_name: str | None = None,
    plan: EvaluationPlan | None = None,
    evaluate_model: bool = True,
    seed: int = 0,
    weights: str | None = None,
    say: Callable[[str], None] = lambda line: None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Score a trained model and picture it into ``run_dir`` (``metrics.json`` and PNGs).

    Args:
        model: the trained model (as :func:`~simulacra.train.fit` left it, or loaded from disk).
        data: the dataset it was trained on; scored on its held-out split (:func:`held_out_split`).
        run_dir: the run directory.
        result: what ``fit`` returned (steps, time, early stopping), recorded in ``metrics.json``.
        model_name: the preset's name for the record (default: the model's).
        plan: what to evaluate (default: :func:`plan_evaluation` within a quarter of the training
            time in ``result``).
        evaluate_model: False skips the metrics and the sample pictures (``--no-eval``).
        seed: seeds every draw.
        weights: which weights ``model`` holds (``"ema"`` or ``"raw"``), recorded with the figures.
        say, progress: a line per phase, and progress bars.

    Returns:
        (the ``metrics.json`` content, the names of the pictures written).
    """
    run_dir = Path(run_dir)
    held_out = held_out_split(data)
    model.eval()
    record: dict[str, Any] = {"model": model_name or model.preset_name, "data": data.name}
    if weights is not None:
        record["weights"] = weights
    if data.info.standardization is not None:
        record["standardization"] = {
            "what": "each column x' = (x - m) / s with the training split's mean m and std s; figures are for x'",
            "log_det": -data.info.log_scale,
            "original_units": "nll_original = nll + sum(log s) nats per example",
        }
    if result is not None:
        record.update(
            steps=result.steps,
            planned_steps=result.planned_steps,
            stop_reason=result.stop_reason,
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
    pictures: list[str] = []
    if evaluate_model:
        if plan is None:
            plan = plan_evaluation(
                model, held_out, train_seconds=None if result is None else result.wall_time
            )
        say(f"pictures ({plan.sampling})")
        pictures = report_pictures(model, held_out, run_dir, seed=seed, sample_options=plan.sample_options)
        estimates, stopped = run_metrics(model, held_out, plan, seed=seed, say=say, progress=progress)
        record["test"] = estimates_as_dicts(estimates)
        counts = {"examples": estimates["nll"].n if "nll" in estimates else 0, "samples": estimates["mmd"].n}
        record["evaluation"] = {
            **plan.to_dict(),
            **counts,
            "limited_by": stopped,
            "full_figures": f"simulacra evaluate {run_dir}",
        }
    else:
        record["test"] = {}
        record["evaluation"] = {"skipped": f"--no-eval; score the run with `simulacra evaluate {run_dir}`"}
    atomic_write_json(run_dir / RUN_METRICS_FILE, strict_json(record))
    if (run_dir / METRICS_FILE).is_file():
        plot_metrics(
            run_dir / METRICS_FILE,
            run_dir / "training.png",
            loss_label=model.loss_description,
            best_step=None if result is None else result.best_step,
            stopped_at=result.steps
            if result is not None and result.stop_reason == "early stopping"
            else None,
            title=f"{record['model']} on {data.name}",
        )
        pictures.append("training.png")
    return record, pictures
