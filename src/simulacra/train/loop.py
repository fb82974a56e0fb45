"""The one training loop, for every family.

Per step ``s`` (0-based), reading the batch of :class:`~simulacra.train.batches.BatchSchedule`::

    for g in model.groups:                          # e.g. ("discriminator", "generator")
        for _ in range(updates_per_step.get(g, 1)):
            optimizer[g].zero_grad()
            out = wrapped(x, c, group=g)            # DDP module or the model itself
            out.loss.backward()
            clip_grad_norm_(params[g], grad_clip)
            optimizer[g].step(); scheduler[g].step()

then logging (every ``log_every`` steps and the last), callbacks, evaluation (every
``eval_every`` steps) with early stopping, and checkpoints (every ``checkpoint_every`` steps and
at the end). Losses and metrics stay on the device between logs, so steps do not wait for the
host; they are averaged across ranks only when a line is logged.

Randomness: a fresh run seeds torch's global RNG from ``config.seed`` (rank ``r > 0`` from a
seed derived from it, so ranks draw different noise); batches, batch transforms and evaluation
use their own generators derived from the seed and the step, and checkpoints store the global
RNG state of every rank: a resumed run continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from simulacra.config import TrainConfig
from simulacra.data.info import Dataset, Split
from simulacra.errors import CheckpointError, ConfigError, TrainingError
from simulacra.models.base import GenerativeModel
from simulacra.train import distributed
from simulacra.train.batches import (
    SALT_EVAL,
    SALT_RANK,
    BatchSchedule,
    derive_seed,
    generator_for,
    plan_steps,
    transform_generator,
)
from simulacra.train.callbacks import SampleWriter, TrainState, builtin_callbacks
from simulacra.train.checkpoint import (
    METRICS_FILE,
    MODEL_FILE,
    POINTER_FILE,
    atomic_write_bytes,
    load_state_strict,
    load_trainer_state,
    save_checkpoint,
    save_model,
    save_run_config,
)
from simulacra.train.schedules import build_scheduler, check_schedule


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        steps: completed steps (less than planned when stopped early).
        metrics: the last logged training metrics, e.g. ``{"loss": 0.31, "kl": 2.1}`` (means
            since the previous log line).
        best_valid_loss: the lowest validation loss seen, or None without evaluation.
        stopped_early: True when early stopping or a callback (e.g. a time budget) ended the run.
        run_dir: where the run was written, or None.
        wall_time: seconds spent in this call.
        examples_per_s: training examples (all ranks) per second in this call.
    """

    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    best_valid_loss: float | None = None
    stopped_early: bool = False
    run_dir: Path | None = None
    wall_time: float = 0.0
    examples_per_s: float = 0.0


@dataclass
class _EarlyStopping:
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped: bool = False
    best_weights: dict[str, Tensor] | None = None


def fit(
    model: GenerativeModel,
    data: Dataset,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    run_config: Mapping[str, Any] | None = None,
    callbacks: Iterable[Any] = (),
    resume: bool = False,
    progress: bool = True,
    sample_writer: SampleWriter | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train`` following ``config``.

    Args:
        model: built (and seeded) by the caller; moved to ``config.device`` here.
        data: a validated dataset; ``data.valid`` is used for evaluation and early stopping;
            ``data.batch_transform`` (dynamic binarization) is applied to every training batch.
        config: training settings (:class:`~simulacra.config.TrainConfig`).
        run_dir: where ``config.json``, ``metrics.jsonl``, checkpoints and the final model go
            (rank 0 only). None: nothing is written (no checkpoints, so no resume).
        run_config: the full run configuration stored in ``config.json`` (default: the train
            settings only).
        callbacks: further callbacks, called after the built-in ones (KL warm-up, EMA, samples).
        resume: continue the run in ``run_dir`` from its latest checkpoint, to the same total steps.
        progress: show a progress bar (rank 0).
        sample_writer: ``(samples, path) -> None``, needed when ``config.sample_every > 0``.

    Under torchrun, the process group is joined here if the caller has not done so; it is left
    up, and the caller destroys it with :func:`simulacra.train.distributed.cleanup`.

    Raises:
        ConfigError: inconsistent settings (unknown schedule, batch not divisible among ranks,
            a group in ``updates_per_step`` the model lacks, ...).
        CheckpointError: ``resume`` without a usable checkpoint, or a run directory that already
            holds a run when starting afresh.
    """
    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    check_schedule(config.lr_schedule)
    run_path = Path(run_dir) if run_dir is not None else None
    if resume and run_path is None:
        raise ConfigError("resume=True needs the run_dir of the run to continue")
    ctx = distributed.init_from_env(config.device)
    device = ctx.device

    # ---- data, once on the device
    train = data.train.to(device)
    valid = data.valid.to(device) if data.valid is not None and len(data.valid) > 0 else None
    if model.conditional and train.y is None:
        raise ConfigError(f"{_name(model)} is conditional but dataset {data.name!r} has no labels")
    plan = plan_steps(
        len(train), config.batch_size, steps=config.steps, epochs=config.epochs, world_size=ctx.world_size
    )
    if config.patience is not None and (config.eval_every <= 0 or valid is None):
        raise ConfigError(
            f"patience={config.patience} needs eval_every > 0 and a validation split; found "
            f"eval_every={config.eval_every} and {'a' if valid is not None else 'no'} validation split"
        )
    if config.log_every < 1:
        raise ConfigError(f"log_every must be >= 1, got {config.log_every}")

    # ---- model, optimizers, schedulers
    model.to(device)
    model.train()
    groups = tuple(model.groups)
    params = model.parameter_groups()
    if set(params) != set(groups):
        raise ConfigError(
            f"{_name(model)}.parameter_groups() returns groups {sorted(params)} but model.groups is {list(groups)}"
        )
    unknown = set(config.updates_per_step) - set(groups)
    if unknown:
        raise ConfigError(
            f"updates_per_step names group(s) {sorted(unknown)}; {_name(model)} has {list(groups)}"
        )
    updates = {g: int(config.updates_per_step.get(g, 1)) for g in groups}
    if any(n < 1 for n in updates.values()):
        raise ConfigError(f"updates_per_step must be >= 1 for every group, got {updates}")
    optimizers = {
        g: torch.optim.AdamW(
            params[g],
            lr=config.lr,
            betas=tuple(config.betas),
            weight_decay=config.weight_decay,
            fused=_can_fuse(params[g]),
        )
        for g in groups
    }
    schedulers = {
        g: build_scheduler(
            optimizers[g],
            config.lr_schedule,
            warmup_steps=config.warmup_steps,
            total_steps=plan.total_steps,
            updates_per_step=updates[g],
        )
        for g in groups
    }

    # ---- run directory and (on resume) the checkpoint
    step, elapsed_before = 0, 0.0
    early = _EarlyStopping()
    acc: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    last_log_step = 0
    last_metrics: dict[str, float] = {}
    checkpoint = None
    if resume and run_path is not None:
        checkpoint = load_trainer_state(run_path)
        ts = checkpoint.trainer_state
        _check_resumable(ts, plan.total_steps, groups, run_path)
        load_state_strict(model, checkpoint.model_state, f"{checkpoint.path / MODEL_FILE}")
        for g in groups:
            optimizers[g].load_state_dict(ts["optimizers"][g])
            schedulers[g].load_state_dict(ts["schedulers"][g])
        step = int(ts["step"])
        elapsed_before = float(ts.get("elapsed_s", 0.0))
        es = ts["early_stopping"]
        early = _EarlyStopping(es["best"], es["best_step"], es["bad_evals"], es["stopped"])
        if "best" in checkpoint.extra:
            early.best_weights = {k: v.to(device) for k, v in checkpoint.extra["best"].items()}
        acc = {k: v.to(device) for k, v in ts["accumulators"].items()}
        counts = dict(ts["counts"])
        last_log_step = int(ts["last_log_step"])
        last_metrics = dict(ts.get("last_metrics", {}))
        if ctx.is_main:
            _truncate_metrics(run_path / METRICS_FILE, step)
    elif run_path is not None and ctx.is_main:
        if (run_path / POINTER_FILE).exists() or (run_path / MODEL_FILE).exists():
            raise CheckpointError(
                f"{str(run_path)!r} already holds a run; resume it (`simulacra train --resume RUN`) "
                "or choose a new run directory (the CLI's --overwrite replaces it)"
            )
        stored = (
            dict(run_config) if run_config is not None else {"train": json.loads(json.dumps(asdict(config)))}
        )
        save_run_config(run_path, model, stored)
        (run_path / METRICS_FILE).unlink(missing_ok=True)

    wrapped: torch.nn.Module = model
    if ctx.distributed:
        wrapped = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=len(groups) > 1,
        )

    state = TrainState(
        step=step,
        total_steps=plan.total_steps,
        model=model,
        config=config,
        run_dir=run_path,
        is_main=ctx.is_main,
        steps_per_epoch=plan.steps_per_epoch,
        metrics=last_metrics,
        valid_loss=early.best,
    )
    cbs = builtin_callbacks(config, sample_writer) + list(callbacks)
    _call(cbs, "on_fit_start", state)
    if checkpoint is not None:
        for cb in cbs:
            key = getattr(cb, "state_key", None)
            if key is not None and key in checkpoint.extra and hasattr(cb, "load_state_dict"):
                cb.load_state_dict({k: v.to(device) for k, v in checkpoint.extra[key].items()})
        _restore_rng(checkpoint.trainer_state["rng"], ctx, config.seed, step, device)
    else:
        torch.manual_seed(config.seed if ctx.rank == 0 else derive_seed(config.seed, SALT_RANK, ctx.rank))

    batches = BatchSchedule(
        len(train), plan.global_batch, config.seed, rank=ctx.rank, world_size=ctx.world_size, device=device
    )
    first_step = step
    loop_start = time.perf_counter()
    last_log_time = loop_start
    bar = _ProgressBar(plan.total_steps, step, enabled=progress and ctx.is_main)

    def log_training() -> None:
        nonlocal acc, counts, last_log_step, last_log_time, last_metrics
        keys = list(acc)
        means = torch.stack([acc[k] / counts[k] for k in keys]) if keys else torch.zeros(0, device=device)
        values = distributed.all_reduce_mean(means).tolist()  # the one host sync per log line
        now = time.perf_counter()
        steps_done = step - max(last_log_step, first_step)
        rate = steps_done * plan.global_batch / max(now - last_log_time, 1e-9)
        last_metrics = dict(zip(keys, values))
        line = {
            "step": step,
            "epoch": round(step / plan.steps_per_epoch, 6),
            "lr": schedulers[groups[0]].get_last_lr()[0],
            **last_metrics,
            "examples_per_s": rate,
            "elapsed_s": elapsed_before + now - started,
        }
        _append_metrics(run_path, line, ctx.is_main)
        bad = [k for k, v in last_metrics.items() if k.startswith("loss") and not math.isfinite(v)]
        if bad:
            raise TrainingError(
                f"training diverged: {bad[0]} = {last_metrics[bad[0]]} by step {step} (the last "
                "checkpoint holds the weights before); lower the learning rate (--set train.lr=...) "
                "or clip gradients (--set train.grad_clip=...)"
            )
        bar.describe(last_metrics.get("loss", last_metrics.get(f"loss/{groups[0]}")), rate)
        state.metrics = last_metrics
        acc, counts = {}, {}
        last_log_step, last_log_time = step, now

    def checkpoint_now() -> None:
        rng = _gather_rng(ctx, device)
        reduced = {}
        if acc:
            keys = list(acc)
            reduced = dict(
                zip(keys, distributed.all_reduce_mean(torch.stack([acc[k] for k in keys])).unbind())
            )
        if not (ctx.is_main and run_path is not None):
            return
        trainer_state = {
            "step": step,
            "total_steps": plan.total_steps,
            "world_size": ctx.world_size,
            "groups": list(groups),
            "optimizers": {g: optimizers[g].state_dict() for g in groups},
            "schedulers": {g: schedulers[g].state_dict() for g in groups},
            "early_stopping": {
                "best": early.best,
                "best_step": early.best_step,
                "bad_evals": early.bad_evals,
                "stopped": early.stopped,
            },
            "accumulators": reduced,
            "counts": dict(counts),
            "last_log_step": last_log_step,
            "last_metrics": last_metrics,
            "elapsed_s": elapsed_before + time.perf_counter() - started,
            "rng": rng,
        }
        extra = {
            cb.state_key: cb.state_dict()
            for cb in cbs
            if getattr(cb, "state_key", None) is not None and hasattr(cb, "state_dict")
        }
        if early.best_weights is not None:
            extra["best"] = early.best_weights
        save_checkpoint(
            run_path, step=step, model_state=model.state_dict(), trainer_state=trainer_state, extra=extra
        )
        _call(cbs, "on_checkpoint", state)

    transform = data.batch_transform
    with bar:
        while step < plan.total_steps and not early.stopped and not state.stop_requested:
            idx = batches.indices(step)  # (B / world_size,)
            x = train.x[idx]
            c = train.y[idx] if model.conditional and train.y is not None else None
            if transform is not None:
                x = transform(x, transform_generator(config.seed, step, ctx.rank, device))
            for g in groups:
                for _ in range(updates[g]):
                    optimizers[g].zero_grad(set_to_none=True)
                    out = wrapped(x, c, group=g)
                    out.loss.backward()
                    if config.grad_clip is not None:
                        norm = torch.nn.utils.clip_grad_norm_(params[g], config.grad_clip)
                        _accumulate(acc, counts, "grad_norm" if len(groups) == 1 else f"grad_norm/{g}", norm)
                    optimizers[g].step()
                    schedulers[g].step()
                    _accumulate(acc, counts, "loss" if len(groups) == 1 else f"loss/{g}", out.loss)
                    for key, value in out.metrics.items():
                        _accumulate(acc, counts, key, value)
            step += 1
            state.step = step
            if step % config.log_every == 0 or step == plan.total_steps:
                log_training()
            _call(cbs, "on_step_end", state)
            if config.eval_every > 0 and valid is not None and step % config.eval_every == 0:
                loss = _evaluate(model, valid, data, config, ctx, plan.global_batch)
                state.valid_loss = loss
                _update_early_stopping(early, loss, step, model, config.patience)
                _append_metrics(
                    run_path,
                    {
                        "step": step,
                        "epoch": round(step / plan.steps_per_epoch, 6),
                        "valid_loss": loss,
                        "best_valid_loss": early.best,
                    },
                    ctx.is_main,
                )
                if early.stopped and counts:
                    log_training()
            if (
                config.checkpoint_every > 0
                and step % config.checkpoint_every == 0
                and step < plan.total_steps
            ):
                checkpoint_now()
            bar.advance(step)

    checkpoint_now()
    if config.patience is not None and early.best_weights is not None:
        load_state_strict(model, early.best_weights, "the best weights")
    if ctx.is_main and run_path is not None:
        ema = next((cb for cb in cbs if getattr(cb, "state_key", None) == "ema"), None)
        save_model(model, run_path, ema=ema.state_dict() if ema is not None else None)
    _call(cbs, "on_fit_end", state)
    distributed.barrier()
    wall = time.perf_counter() - started
    trained = (step - first_step) * plan.global_batch
    return FitResult(
        steps=step,
        metrics=dict(last_metrics),
        best_valid_loss=early.best,
        stopped_early=early.stopped or state.stop_requested,
        run_dir=run_path,
        wall_time=wall,
        examples_per_s=trained / max(time.perf_counter() - loop_start, 1e-9),
    )


# --------------------------------------------------------------------------- helpers


def _can_fuse(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused AdamW (one vectorized kernel for all tensors, ~25% faster training of
    small models on CPU than the per-tensor loop, same update rule) supports these parameters."""
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def _name(model: GenerativeModel) -> str:
    return getattr(model, "preset_name", type(model).__name__)


def _call(callbacks: list[Any], hook: str, state: TrainState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


def _accumulate(acc: dict[str, Tensor], counts: dict[str, int], key: str, value: Tensor) -> None:
    # Device-side sums: no .item(), so no host sync per step.
    v = value.detach().float().mean()
    acc[key] = acc[key] + v if key in acc else v.clone()
    counts[key] = counts.get(key, 0) + 1


def _append_metrics(run_dir: Path | None, line: dict[str, Any], is_main: bool) -> None:
    if run_dir is None or not is_main:
        return
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(line) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after ``step`` (by the interrupted run) so a resumed log has no repeats."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
    atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())


def _check_resumable(ts: Mapping[str, Any], total: int, groups: tuple[str, ...], run_dir: Path) -> None:
    if list(ts.get("groups", [])) != list(groups):
        raise CheckpointError(
            f"the checkpoint in {run_dir} has optimizer groups {ts.get('groups')}, the model has {list(groups)}"
        )
    if int(ts.get("total_steps", total)) != total:
        raise CheckpointError(
            f"the checkpoint in {run_dir} was planned for {ts.get('total_steps')} steps but this config "
            f"gives {total}; resume with the run's own config"
        )


def _update_early_stopping(
    early: _EarlyStopping, loss: float, step: int, model: GenerativeModel, patience: int | None
) -> None:
    if early.best is None or loss < early.best:
        early.best, early.best_step, early.bad_evals = loss, step, 0
        if patience is not None:
            early.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        early.bad_evals += 1
        if patience is not None and early.bad_evals >= patience:
            early.stopped = True


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index] if device.type == "cuda" and device.index is not None else []


@torch.no_grad()
def _evaluate(
    model: GenerativeModel,
    valid: Split,
    data: Dataset,
    config: TrainConfig,
    ctx: distributed.DistContext,
    batch_size: int,
) -> float:
    """Mean loss of ``model.groups[0]`` over the validation split, in eval mode.

    Runs inside ``fork_rng`` with a fixed seed, so it neither perturbs the training RNG stream
    nor varies from one evaluation to the next. Under DDP each rank evaluates every
    ``world_size``-th batch and the sums are all-reduced.
    """
    was_training = model.training
    model.eval()
    device = ctx.device
    group = model.groups[0]
    total = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(derive_seed(config.seed, SALT_EVAL))
            starts = range(ctx.rank * batch_size, len(valid), ctx.world_size * batch_size)
            for i, start in enumerate(starts):
                x = valid.x[start : start + batch_size]
                c = valid.y[start : start + batch_size] if model.conditional and valid.y is not None else None
                if data.batch_transform is not None:
                    x = data.batch_transform(
                        x, generator_for(config.seed, SALT_EVAL, i, ctx.rank, device=device)
                    )
                out = model.loss(x, c, group=group)
                total += out.loss.detach().double() * x.shape[0]
                count += x.shape[0]
    finally:
        model.train(was_training)
    both = distributed.all_reduce_sum(torch.stack([total, count]))
    total_f, count_f = both.tolist()
    return total_f / max(count_f, 1.0)


def _gather_rng(ctx: distributed.DistContext, device: torch.device) -> dict[str, Any]:
    """Global RNG states of every rank (a collective under DDP), CPU and CUDA."""
    cpu = distributed.all_gather(torch.get_rng_state(), device if device.type == "cuda" else None)
    cuda = None
    if device.type == "cuda":
        cuda = distributed.all_gather(torch.cuda.get_rng_state(device), device)
    return {"cpu": cpu, "cuda": cuda}


def _restore_rng(
    rng: Mapping[str, Any], ctx: distributed.DistContext, seed: int, step: int, device: torch.device
) -> None:
    cpu = rng.get("cpu") or []
    if len(cpu) == ctx.world_size:
        torch.set_rng_state(cpu[ctx.rank].cpu())
        cuda = rng.get("cuda")
        if device.type == "cuda" and cuda and len(cuda) == ctx.world_size:
            torch.cuda.set_rng_state(cuda[ctx.rank].cpu(), device)
    else:
        # Resumed on a different number of processes: batches stay identical (they depend only on
        # the step), but each rank's model noise restarts from a seed derived from the step.
        torch.manual_seed(derive_seed(seed, SALT_RANK, ctx.rank, step))


class _ProgressBar:
    """A rich progress bar on rank 0: step/total, loss, examples/s; a no-op when disabled."""

    def __init__(self, total: int, completed: int, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._total, self._completed = total, completed

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} ex/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=self._total, completed=self._completed, loss="-", rate="-"
            )
        return self

    def advance(self, step: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step)

    def describe(self, loss: float | None, rate: float) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, loss="-" if loss is None else f"{loss:.4g}", rate=f"{rate:,.0f}"
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
