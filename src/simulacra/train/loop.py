"""The one training loop, for every family.

Per step ``s`` (0-based), for the groups of the model in order (e.g. ``("discriminator",
"generator")``), each with the settings resolved by :mod:`simulacra.train.groups`::

    x = batch 0 of step s                           # BatchSchedule: a pure function of (seed, batch)
    for g in groups:
        for u in range(g.updates):                  # e.g. 5 critic updates per generator update
            x_u = next batch of step s if u > 0 and g.fresh_batch else x
            optimizer[g].zero_grad()
            out = wrapped(x_u, c_u, group=g)        # the DDP module or the model itself
            out.loss.backward()
            clip_grad_norm_(params[g], g.grad_clip)
            optimizer[g].step(); scheduler[g].step()

then logging (every ``log_every`` steps and the last), callbacks, the model's validation score
(every ``eval_every`` steps) with early stopping and the best weights, and checkpoints (every
``checkpoint_every`` steps and at the end). After the last step the best weights are restored
(``keep_best``), the model's second stage runs (:class:`~simulacra.models.base.SecondStage`: e.g.
an auto-encoder's post-hoc latent density) and the final model is written. Losses and metrics stay
on the device between logs, so steps do not wait for the host; they are averaged across ranks only
when a line is logged.

Randomness: a fresh run seeds torch's global RNG from ``config.seed`` (rank ``r > 0`` from a
seed derived from it, so ranks draw different noise); batches, batch transforms and evaluation
use their own generators derived from the seed and the batch, and checkpoints store the global
RNG state and the process-local buffers of every rank: a resumed run continues exactly as the
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
import warnings
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
from simulacra.models.base import GenerativeModel, SecondStage, local_buffer_names
from simulacra.seeding import rng_devices
from simulacra.train import distributed
from simulacra.train.batches import (
    SALT_EVAL,
    SALT_RANK,
    BatchSchedule,
    StepPlan,
    derive_seed,
    generator_for,
    plan_steps,
    transform_generator,
)
from simulacra.train.callbacks import EMA, SampleWriter, TrainState, builtin_callbacks
from simulacra.train.checkpoint import (
    METRICS_FILE,
    MODEL_FILE,
    POINTER_FILE,
    Checkpoint,
    atomic_write_bytes,
    load_state_strict,
    load_trainer_state,
    save_checkpoint,
    save_model,
    save_run_config,
    tensor_metadata,
)
from simulacra.train.groups import Group, batches_per_step, build_optimizers, resolve_groups
from simulacra.train.precision import autocast_context, compiled, resolve_precision
from simulacra.train.schedules import check_schedule
from simulacra.train.state import EarlyStopping, TrainerState


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        steps: completed steps (less than planned when stopped early).
        metrics: the last logged training metrics, e.g. ``{"loss": 0.31, "kl": 2.1}`` (means
            since the previous log line).
        best_valid_loss: the best validation score seen, or None without evaluation.
        best_step: the step of that score, or None.
        stopped_early: True when early stopping or a callback (e.g. a time budget) ended the run.
        restored_best: True when the model ends on the weights of ``best_step`` (``keep_best``).
        second_stage: the metrics of the model's second stage (empty when it has none).
        interrupted: the signal that stopped the run (SIGINT, SIGTERM) through
            :class:`~simulacra.train.interrupts.GracefulInterrupt`, else None: the run was
            checkpointed with its current weights, to be resumed.
        already_finished: a resumed run that had already finished: nothing was trained or written.
        planned_steps: the run's planned length.
        stop_reason: why training ended: ``"planned length"``, ``"early stopping"`` (no better
            validation score in ``patience`` evaluations), ``"a callback"`` (e.g. a time budget) or
            ``"interrupted"``.
        run_dir: where the run was written, or None.
        wall_time: seconds spent in this call.
        examples_per_s: training examples (all ranks) per second in this call.
    """

    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    best_valid_loss: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    restored_best: bool = False
    second_stage: dict[str, float] = field(default_factory=dict)
    interrupted: int | None = None
    already_finished: bool = False
    planned_steps: int = 0
    stop_reason: str = "planned length"
    run_dir: Path | None = None

    def summary(self) -> str:
        """One line for the user: the steps trained, why training ended, which weights it kept."""
        why = {
            "planned length": "the planned length",
            "early stopping": "stopped early: no better validation score in the last evaluations",
            "a callback": "stopped by a callback (a time budget)",
            "interrupted": "interrupted",
        }[self.stop_reason]
        if self.restored_best:
            weights = f"weights from step {self.best_step}, the best validation score"
        elif self.best_step is None:
            weights = "the last weights (no validation scores to choose others)"
        else:
            weights = "the last weights"
        return f"trained {self.steps} of {self.planned_steps} steps ({why}); {weights}"

    wall_time: float = 0.0
    examples_per_s: float = 0.0


def fit(
    model: GenerativeModel,
    data: Dataset,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    run_config: Mapping[str, Any] | None = None,
    callbacks: Iterable[Any] = (),
    resume: bool = False,
    new_length: bool = False,
    progress: bool = True,
    sample_writer: SampleWriter | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train`` following ``config``.

    Args:
        model: built (and seeded) by the caller; moved to ``config.device`` here.
        data: a validated dataset; ``data.valid`` is used for the validation score and early
            stopping; ``data.batch_transform`` (dynamic binarization) is applied to every training batch.
        config: training settings (:class:`~simulacra.config.TrainConfig`).
        run_dir: where ``config.json``, ``metrics.jsonl``, checkpoints and the final model go
            (rank 0 only). None: nothing is written (no checkpoints, so no resume).
        run_config: the full run configuration stored in ``config.json`` (default: the train
            settings only).
        callbacks: further callbacks, called after the built-in ones (EMA, samples).
        resume: continue the run in ``run_dir`` from its latest checkpoint, to the same total steps.
        new_length: with ``resume``, ``config`` may give the run another length (steps or epochs):
            the learning-rate schedule is then re-planned over it from the checkpoint's step on.
        progress: show a progress bar (rank 0).
        sample_writer: ``(samples, path) -> None``, needed when ``config.sample_every > 0``.

    Under torchrun, the process group is joined here if the caller has not done so; it is left
    up, and the caller destroys it with :func:`simulacra.train.distributed.cleanup`.

    Raises:
        ConfigError: inconsistent settings (unknown schedule, batch not divisible among ranks,
            a group in ``config.groups`` the model lacks, ...).
        CheckpointError: ``resume`` without a usable checkpoint, or a run directory that already
            holds a run when starting afresh.
        TrainingError: a loss that became NaN or infinite.
    """
    started = time.perf_counter()
    config.check()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    check_schedule(config.lr_schedule)
    run_path = Path(run_dir) if run_dir is not None else None
    if resume and run_path is None:
        raise ConfigError("resume=True needs the run_dir of the run to continue")
    ctx = distributed.init_from_env(config.device)
    groups = resolve_groups(model, config)
    train, valid = _splits(model, data, ctx.device)
    plan = plan_steps(
        len(train),
        config.batch_size,
        steps=config.steps,
        epochs=config.epochs,
        world_size=ctx.world_size,
        batches_per_step=batches_per_step(groups),
    )
    _check_settings(config, valid)
    model.check_training(plan.local_batch)

    model.to(ctx.device)
    model.train()
    optimizers, schedulers = build_optimizers(groups, config, plan.total_steps)
    trainer = TrainerState(optimizers, schedulers, EarlyStopping(config.patience, config.keeps_best))
    checkpoint = _open_run(
        run_path, resume=resume, ctx=ctx, model=model, config=config, run_config=run_config
    )
    if checkpoint is not None:
        _restore(checkpoint, model, trainer, plan, ctx, new_length=new_length)
        if _finished(trainer, plan, checkpoint):  # nothing to train, nothing to write
            return FitResult(
                steps=trainer.step,
                metrics=dict(trainer.last_metrics),
                best_valid_loss=trainer.early.best,
                best_step=trainer.early.best_step,
                stopped_early=trainer.early.stopped,
                already_finished=True,
                run_dir=run_path,
                wall_time=time.perf_counter() - started,
            )
    wrapped = compiled(_wrap(model, ctx, groups), config.compile)

    shown = valid if valid is not None else train  # what sample-every shows a translation model
    examples = Split(shown.x[:64], None if shown.y is None else shown.y[:64])
    cbs = builtin_callbacks(config, sample_writer, examples) + list(callbacks)
    state = TrainState(
        step=trainer.step,
        total_steps=plan.total_steps,
        model=model,
        config=config,
        run_dir=run_path,
        is_main=ctx.is_main,
        steps_per_epoch=plan.steps_per_epoch,
        metrics=trainer.last_metrics,
        valid_loss=trainer.early.best,
    )
    _call(cbs, "on_fit_start", state)
    if checkpoint is not None:
        _restore_callbacks(cbs, checkpoint, ctx.device)
        _restore_rng(checkpoint.trainer_state["rng"], ctx, config.seed, trainer.step, ctx.device)
    else:
        torch.manual_seed(config.seed if ctx.rank == 0 else derive_seed(config.seed, SALT_RANK, ctx.rank))

    run = _Run(
        model, wrapped, data, train, valid, config, ctx, plan, groups, trainer, state, cbs, run_path, started
    )
    first_step = trainer.step
    loop_start = time.perf_counter()
    with _ProgressBar(plan.total_steps, trainer.step, enabled=progress and ctx.is_main) as bar:
        run.bar = bar
        while trainer.step < plan.total_steps and not trainer.early.stopped and not state.stop_requested:
            run.train_step()
            trainer.step += 1
            state.step = trainer.step
            if trainer.step % config.log_every == 0 or trainer.step == plan.total_steps:
                run.log()
            _call(cbs, "on_step_end", state)
            if run.eval_every and trainer.step % run.eval_every == 0:
                run.validate()
            if run.checkpoint_due():
                run.checkpoint()
            bar.advance(trainer.step)
    loop_seconds = time.perf_counter() - loop_start

    run.checkpoint()
    interrupted = state.interrupted is not None  # resumable: the current weights, no end work
    restored = False if interrupted else run.restore_best()
    second = {} if interrupted else run.second_stage()
    run.save_final()
    _call(cbs, "on_fit_end", state)
    distributed.barrier()
    return FitResult(
        steps=trainer.step,
        metrics=dict(trainer.last_metrics),
        best_valid_loss=trainer.early.best,
        best_step=trainer.early.best_step,
        stopped_early=trainer.early.stopped or state.stop_requested,
        restored_best=restored,
        second_stage=second,
        interrupted=state.interrupted,
        planned_steps=plan.total_steps,
        stop_reason=(
            "interrupted"
            if state.interrupted is not None
            else "early stopping"
            if trainer.early.stopped
            else "a callback"
            if state.stop_requested
            else "planned length"
        ),
        run_dir=run_path,
        wall_time=time.perf_counter() - started,
        examples_per_s=(trainer.step - first_step)
        * plan.global_batch
        * plan.batches_per_step
        / max(loop_seconds, 1e-9),
    )


# --------------------------------------------------------------------------- setting up


def _splits(model: GenerativeModel, data: Dataset, device: torch.device) -> tuple[Split, Split | None]:
    """The training and validation splits on ``device`` (once: batches are index slices)."""
    train = data.train.to(device)
    valid = data.valid.to(device) if data.valid is not None and len(data.valid) > 0 else None
    if model.conditional and train.y is None:
        raise ConfigError(f"{model.preset_name} is conditional but dataset {data.name!r} has no labels")
    return train, valid


def _check_settings(config: TrainConfig, valid: Split | None) -> None:
    if config.eval_every and valid is None:
        raise ConfigError(
            f"eval_every={config.eval_every} asks for validation scores, but the data have no validation "
            "split; set data.valid_fraction > 0 (held out of the training split) or train.eval_every=0"
        )
    if config.log_every < 1:
        raise ConfigError(f"log_every must be >= 1, got {config.log_every}")


def _open_run(
    run_path: Path | None,
    *,
    resume: bool,
    ctx: distributed.DistContext,
    model: GenerativeModel,
    config: TrainConfig,
    run_config: Mapping[str, Any] | None,
) -> Checkpoint | None:
    """The checkpoint to resume from, or (a fresh run, rank 0) the run directory started."""
    if run_path is None:
        return None
    if resume:
        return load_trainer_state(run_path)
    if ctx.is_main:
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
    return None


def _restore(
    checkpoint: Checkpoint,
    model: GenerativeModel,
    trainer: TrainerState,
    plan: StepPlan,
    ctx: distributed.DistContext,
    *,
    new_length: bool = False,
) -> None:
    """Weights, this rank's local buffers and the trainer's state from ``checkpoint``."""
    try:
        trainer.load_state_dict(
            checkpoint.trainer_state, total_steps=plan.total_steps, device=ctx.device, new_length=new_length
        )
    except CheckpointError as err:
        raise CheckpointError(f"cannot resume from {checkpoint.path}: {err}") from None
    load_state_strict(model, checkpoint.model_state, f"{checkpoint.path / MODEL_FILE}")
    local = checkpoint.trainer_state.get("local_buffers") or {}
    with torch.no_grad():
        own = model.state_dict()
        for key, per_rank in local.items():
            if key in own and len(per_rank) == ctx.world_size:
                own[key].copy_(per_rank[ctx.rank])
    if "best" in checkpoint.extra:
        trainer.early.best_weights = {k: v.to(ctx.device) for k, v in checkpoint.extra["best"].items()}
    if ctx.is_main:
        _truncate_metrics(checkpoint.path.parent / METRICS_FILE, trainer.step)


def _restore_callbacks(callbacks: list[Any], checkpoint: Checkpoint, device: torch.device) -> None:
    for cb in callbacks:
        key = getattr(cb, "state_key", None)
        if key is not None and key in checkpoint.extra and hasattr(cb, "load_state_dict"):
            cb.load_state_dict({k: v.to(device) for k, v in checkpoint.extra[key].items()})


def _finished(trainer: TrainerState, plan: StepPlan, checkpoint: Checkpoint) -> bool:
    """A resumed run that already ended (its planned steps done, or stopped early) and wrote its
    final weights at that step."""
    if trainer.step < plan.total_steps and not trainer.early.stopped:
        return False
    final = checkpoint.path.parent / MODEL_FILE
    return final.is_file() and tensor_metadata(final).get("step") == str(trainer.step)


def _wrap(
    model: GenerativeModel, ctx: distributed.DistContext, groups: Mapping[str, Group]
) -> torch.nn.Module:
    """The model itself, or under torchrun its DDP wrapper (local buffers neither broadcast nor
    synchronised; unused parameters expected when there are several groups)."""
    if not ctx.distributed:
        return model
    local = sorted(local_buffer_names(model))
    if local:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, local)
    return DistributedDataParallel(
        model,
        device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        find_unused_parameters=len(groups) > 1,
    )


def _call(callbacks: list[Any], hook: str, state: TrainState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


# --------------------------------------------------------------------------- one run


class _Run:
    """What a run needs between steps: its parts, and the work done at log, validation,
    checkpoint and end times (one method each)."""

    def __init__(
        self,
        model: GenerativeModel,
        wrapped: torch.nn.Module,
        data: Dataset,
        train: Split,
        valid: Split | None,
        config: TrainConfig,
        ctx: distributed.DistContext,
        plan: StepPlan,
        groups: Mapping[str, Group],
        trainer: TrainerState,
        state: TrainState,
        callbacks: list[Any],
        run_path: Path | None,
        started: float,
    ) -> None:
        self.model, self.wrapped, self.data, self.train, self.valid = model, wrapped, data, train, valid
        self.config, self.ctx, self.plan, self.groups = config, ctx, plan, groups
        self.trainer, self.state, self.callbacks, self.run_path = trainer, state, callbacks, run_path
        self.batches = BatchSchedule(
            len(train),
            plan.global_batch,
            config.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            device=ctx.device,
        )
        self.started = started  # when fit was called: elapsed times count from there
        self.last_log_time = time.perf_counter()
        self.first_step = trainer.step
        self.bar: _ProgressBar | None = None
        self.single = len(groups) == 1
        self.eval_every = config.evaluation_interval(plan.total_steps, valid is not None)
        self.last_checkpoint = time.perf_counter()
        self.checkpoint_cost = 0.0  # seconds the last checkpoint took
        # train.precision's context for each training forward pass (bf16 autocast, or none)
        self.autocast = autocast_context(resolve_precision(config.precision, ctx.device), ctx.device)

    # -- training ----------------------------------------------------------------------------

    def batch(self, j: int) -> tuple[Tensor, Tensor | None]:
        """Batch ``j`` of the current step on this rank: data (B/R, *event) and labels or None."""
        b = self.trainer.step * self.plan.batches_per_step + j
        idx = self.batches.indices(b)  # (B / world_size,)
        x = self.train.x[idx]
        c = self.train.y[idx] if self.model.conditional and self.train.y is not None else None
        if self.data.batch_transform is not None:
            x = self.data.batch_transform(
                x, transform_generator(self.config.seed, b, self.ctx.rank, self.ctx.device)
            )
        return x, c

    def train_step(self) -> None:
        """One training step: every group's updates, in order."""
        shared = self.batch(0)
        fresh = 1
        sums = self.trainer.metrics
        for g in self.groups.values():
            optimizer, scheduler = self.trainer.optimizers[g.name], self.trainer.schedulers[g.name]
            for u in range(g.updates):
                if u > 0 and g.fresh_batch:
                    x, c = self.batch(fresh)
                    fresh += 1
                else:
                    x, c = shared
                optimizer.zero_grad(set_to_none=True)
                with self.autocast():  # bf16 forward with fp32 weights when train.precision asks
                    out = self.wrapped(x, c, group=g.name)
                out.loss.backward()
                norm = None
                if g.grad_clip is not None:
                    norm = torch.nn.utils.clip_grad_norm_(g.params, g.grad_clip)
                    sums.add("grad_norm" if self.single else f"grad_norm/{g.name}", norm)
                elif not self.single or g.grad_skip is not None:  # a game's diagnostics, or the skip test
                    grads = [p.grad for p in g.params if p.grad is not None]
                    if grads:
                        norm = torch.nn.utils.get_total_norm(grads)
                        sums.add("grad_norm" if self.single else f"grad_norm/{g.name}", norm)
                skip = (
                    g.grad_skip is not None and norm is not None and not bool(norm <= g.grad_skip)
                )  # host sync
                if g.grad_skip is not None:
                    sums.add(
                        "skipped" if self.single else f"skipped/{g.name}",
                        torch.tensor(float(skip), device=out.loss.device),
                    )
                if not skip:
                    optimizer.step()
                    scheduler.step()
                else:  # the schedule follows the steps, skipped or not (torch warns of the order)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        scheduler.step()
                sums.add("loss" if self.single else f"loss/{g.name}", out.loss)
                for key, value in out.metrics.items():
                    sums.add(key, value)

    # -- logging -----------------------------------------------------------------------------

    def epoch(self) -> float:
        return round(self.trainer.step / self.plan.steps_per_epoch, 6)

    def append(self, line: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (rank 0 with a run directory)."""
        if self.run_path is not None and self.ctx.is_main:
            with open(self.run_path / METRICS_FILE, "a") as f:
                f.write(json.dumps(line) + "\n")

    def log(self) -> None:
        """Average the metrics since the last line over steps and ranks (one host sync), write
        the line, and stop with a clear error if a loss diverged."""
        trainer = self.trainer
        means = trainer.metrics.reduced_means(self.ctx.device)
        now = time.perf_counter()
        steps = trainer.step - max(trainer.last_log_step, self.first_step)
        rate = (
            steps * self.plan.global_batch * self.plan.batches_per_step / max(now - self.last_log_time, 1e-9)
        )
        rates = {
            "lr" if self.single else f"lr/{g}": trainer.schedulers[g].get_last_lr()[0] for g in self.groups
        }
        elapsed = trainer.elapsed_before + now - self.started
        self.append(
            {
                "step": trainer.step,
                "epoch": self.epoch(),
                **rates,
                **means,
                "examples_per_s": rate,
                "elapsed_s": elapsed,
            }
        )
        trainer.last_metrics = means
        self.state.metrics = means
        trainer.metrics.clear()
        trainer.last_log_step, self.last_log_time = trainer.step, now
        bad = [k for k, v in means.items() if k.startswith("loss") and not math.isfinite(v)]
        if bad:
            where = (
                "the last checkpoint holds the weights before"
                if self.run_path is not None and (self.run_path / POINTER_FILE).exists()
                else "no checkpoint was written before it"
            )
            raise TrainingError(
                f"training diverged: {bad[0]} = {means[bad[0]]} by step {trainer.step} ({where}); lower the "
                "learning rate (--set train.lr=...) or clip gradients (--set train.grad_clip=...)"
            )
        if self.bar is not None:
            first = next(iter(self.groups))
            self.bar.describe(means.get("loss", means.get(f"loss/{first}")), rate)

    # -- validation --------------------------------------------------------------------------

    def validate(self) -> None:
        """The model's validation score on the validation split, early stopping and the best weights."""
        assert self.valid is not None
        score = validation_score(
            self.model, self.valid, self.data, self.config.seed, self.ctx, self.plan.global_batch
        )
        early = self.trainer.early
        early.update(score, self.trainer.step, self.model.state_dict())
        self.state.valid_loss = score
        self.append(
            {
                "step": self.trainer.step,
                "epoch": self.epoch(),
                "valid_loss": score,
                "best_valid_loss": early.best,
            }
        )
        if early.stopped and self.trainer.metrics:
            self.log()  # the stopping step's training metrics

    # -- checkpoints and the end -------------------------------------------------------------

    def checkpoint_due(self) -> bool:
        """Whether to write a checkpoint after this step (not the last: the end writes one).
        Every ``checkpoint_every`` steps; or, with None, once ``checkpoint_minutes`` have passed
        and at least 50 times the last checkpoint's cost (< 2% of the time), the ranks agreeing
        every 10 steps."""
        step, every = self.trainer.step, self.config.checkpoint_every
        if self.run_path is None or step >= self.plan.total_steps:
            return False
        if every is not None:
            return every > 0 and step % every == 0
        if self.ctx.distributed and step % 10:
            return False
        interval = max(60.0 * self.config.checkpoint_minutes, 50.0 * self.checkpoint_cost)
        return distributed.all_reduce_max(time.perf_counter() - self.last_checkpoint) >= interval

    def checkpoint(self) -> None:
        """A resumable checkpoint (collectives on every rank; rank 0 writes)."""
        begun = time.perf_counter()
        try:
            self._write_checkpoint()
        finally:
            self.last_checkpoint = time.perf_counter()
            self.checkpoint_cost = self.last_checkpoint - begun

    def _write_checkpoint(self) -> None:
        rng = _gather_rng(self.ctx, self.ctx.device)
        local = _gather_local_buffers(self.model, self.ctx)
        elapsed = time.perf_counter() - self.started
        trainer_state = self.trainer.state_dict(
            total_steps=self.plan.total_steps, world_size=self.ctx.world_size, elapsed=elapsed
        )
        if not (self.ctx.is_main and self.run_path is not None):
            return
        trainer_state["rng"] = rng
        if local:
            trainer_state["local_buffers"] = local
        extra = {
            cb.state_key: cb.state_dict()
            for cb in self.callbacks
            if getattr(cb, "state_key", None) is not None and hasattr(cb, "state_dict")
        }
        if self.trainer.early.best_weights is not None:
            extra["best"] = self.trainer.early.best_weights
        save_checkpoint(
            self.run_path,
            step=self.trainer.step,
            model_state=self.model.state_dict(),
            trainer_state=trainer_state,
            extra=extra,
        )
        _call(self.callbacks, "on_checkpoint", self.state)

    def restore_best(self) -> bool:
        """End on the best weights when they are kept; True if so."""
        best = self.trainer.early.best_weights
        if not self.trainer.early.keep_best or best is None:
            return False
        load_state_strict(self.model, best, "the best weights")
        return True

    def ema(self) -> EMA | None:
        return next((cb for cb in self.callbacks if isinstance(cb, EMA)), None)

    def second_stage(self) -> dict[str, float]:
        """The model's work after training (every rank, the same data), for the raw weights and,
        with an EMA, for the averaged ones too; its metrics are logged."""
        if not isinstance(self.model, SecondStage):
            return {}
        x = self.train.x
        c = self.train.y if self.model.conditional else None
        metrics = self.model.second_stage(x, c)
        ema = self.ema()
        if ema is not None:
            with ema.average_weights() as averaged:
                assert isinstance(averaged, SecondStage)
                metrics = {**metrics, **{f"ema/{k}": v for k, v in averaged.second_stage(x, c).items()}}
        if metrics:
            self.append({"step": self.trainer.step, "second_stage": metrics})
        return metrics

    def save_final(self) -> None:
        """``model.safetensors`` (and ``ema.safetensors``) of the run, rank 0."""
        if self.ctx.is_main and self.run_path is not None:
            ema = self.ema()
            save_model(
                self.model,
                self.run_path,
                ema=ema.state_dict() if ema is not None else None,
                step=self.trainer.step,
            )


# --------------------------------------------------------------------------- helpers


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


def validation_score(
    model: GenerativeModel,
    valid: Split,
    data: Dataset,
    seed: int,
    ctx: distributed.DistContext,
    batch_size: int,
) -> float:
    """Mean of ``model.validation_score`` over the validation split, in eval mode.

    Runs inside ``fork_rng`` with a fixed seed, so it neither perturbs the training RNG stream
    nor varies from one evaluation to the next. Under DDP each rank scores every
    ``world_size``-th batch and the sums are all-reduced. A score returned per batch (a scalar)
    is weighted by the batch's size; one returned per example (B,) is summed.
    """
    was_training = model.training
    model.eval()
    device = ctx.device
    total = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    try:
        with torch.random.fork_rng(devices=rng_devices(device)):
            torch.manual_seed(derive_seed(seed, SALT_EVAL))
            starts = range(ctx.rank * batch_size, len(valid), ctx.world_size * batch_size)
            for i, start in enumerate(starts):
                x = valid.x[start : start + batch_size]
                c = valid.y[start : start + batch_size] if model.conditional and valid.y is not None else None
                if data.batch_transform is not None:
                    x = data.batch_transform(x, generator_for(seed, SALT_EVAL, i, ctx.rank, device=device))
                score = model.validation_score(x, c).detach().double()
                total += score * x.shape[0] if score.dim() == 0 else score.sum()
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


def _gather_local_buffers(model: GenerativeModel, ctx: distributed.DistContext) -> dict[str, list[Tensor]]:
    """Every rank's value of each process-local buffer (a collective under DDP)."""
    state = model.state_dict()
    return {key: distributed.all_gather(state[key]) for key in sorted(local_buffer_names(model))}


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
