"""The trainer's state: everything beyond the model's weights that a resumed run needs.

:class:`TrainerState` holds the step, the optimizers and learning-rate schedules of every group,
early stopping (:class:`EarlyStopping`), the running sums of the metrics logged since the last line
(:class:`MetricSums`) and the clock. ``state_dict()`` gives one nested mapping of numbers,
strings and tensors, which :func:`simulacra.train.checkpoint.save_checkpoint` splits into JSON and
safetensors; ``load_state_dict()`` restores it. (RNG states and per-process buffers are gathered
from every process by the loop, which owns the collectives.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from simulacra.errors import CheckpointError
from simulacra.train import distributed


@dataclass
class EarlyStopping:
    """The best validation score, and whether to stop (patience) and keep the best weights.

    A score is better when strictly lower. After ``patience`` evaluations without improvement,
    ``stopped`` is set (never, when ``patience`` is None). With ``keep_best``, the weights of the
    best evaluation are copied so that the run can end on them.
    """

    patience: int | None = None
    keep_best: bool = False
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped: bool = False
    best_weights: dict[str, Tensor] | None = None

    def update(self, score: float, step: int, weights: Mapping[str, Tensor]) -> bool:
        """Record the score of the evaluation after ``step`` steps; True when it is the best so far."""
        if self.best is None or score < self.best:
            self.best, self.best_step, self.bad_evals = score, step, 0
            if self.keep_best:
                self.best_weights = {k: v.detach().clone() for k, v in weights.items()}
            return True
        self.bad_evals += 1
        if self.patience is not None and self.bad_evals >= self.patience:
            self.stopped = True
        return False

    def state_dict(self) -> dict[str, Any]:
        """The numbers (the best weights are stored apart, as their own tensor file)."""
        return {
            "best": self.best,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.bad_evals, self.stopped = int(state["bad_evals"]), bool(state["stopped"])


@dataclass
class MetricSums:
    """Running sums of scalar metrics on the device (no host synchronisation per step)."""

    sums: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, value: Tensor) -> None:
        """Add the batch mean of ``value`` to the sum of ``key``."""
        v = value.detach().float().mean()
        self.sums[key] = self.sums[key] + v if key in self.sums else v.clone()
        self.counts[key] = self.counts.get(key, 0) + 1

    def __bool__(self) -> bool:
        return bool(self.counts)

    def reduced_means(self, device: torch.device) -> dict[str, float]:
        """Mean of every metric since the last :meth:`clear`, averaged over processes (a
        collective under DDP: every rank must call it at the same step)."""
        keys = list(self.sums)
        means = (
            torch.stack([self.sums[k] / self.counts[k] for k in keys])
            if keys
            else torch.zeros(0, device=device)
        )
        return dict(zip(keys, distributed.all_reduce_mean(means).tolist()))

    def reduced_sums(self) -> dict[str, Tensor]:
        """The sums averaged over processes, for a checkpoint (a collective under DDP)."""
        keys = list(self.sums)
        if not keys:
            return {}
        return dict(
            zip(keys, distributed.all_reduce_mean(torch.stack([self.sums[k] for k in keys])).unbind())
        )

    def clear(self) -> None:
        self.sums, self.counts = {}, {}


@dataclass
class TrainerState:
    """Step, optimizers, schedules, early stopping, metric sums and clock of a training run.

    Attributes:
        optimizers, schedulers: one per optimizer group, by group name.
        early: the early-stopping and best-weights state.
        step: completed training steps.
        metrics: sums of the metrics since the last logged line.
        last_log_step: the step of the last logged line.
        last_metrics: the metrics of the last logged line.
        elapsed_before: seconds of training before this process (resumed runs).
    """

    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    early: EarlyStopping
    step: int = 0
    metrics: MetricSums = field(default_factory=MetricSums)
    last_log_step: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)
    elapsed_before: float = 0.0

    def state_dict(self, *, total_steps: int, world_size: int, elapsed: float) -> dict[str, Any]:
        """The nested state to checkpoint; ``elapsed`` is this process's training time so far.
        Averages the metric sums over processes (a collective under DDP)."""
        return {
            "step": self.step,
            "total_steps": total_steps,
            "world_size": world_size,
            "groups": list(self.optimizers),
            "optimizers": {g: opt.state_dict() for g, opt in self.optimizers.items()},
            "schedulers": {g: sched.state_dict() for g, sched in self.schedulers.items()},
            "early_stopping": self.early.state_dict(),
            "accumulators": self.metrics.reduced_sums(),
            "counts": dict(self.metrics.counts),
            "last_log_step": self.last_log_step,
            "last_metrics": dict(self.last_metrics),
            "elapsed_s": self.elapsed_before + elapsed,
        }

    def load_state_dict(
        self, state: Mapping[str, Any], *, total_steps: int, device: torch.device, new_length: bool = False
    ) -> None:
        """Restore from :meth:`state_dict` (as read back from a checkpoint).

        Raises:
            CheckpointError: the checkpoint's groups differ from this run's, or its planned length
                does (unless ``new_length``).
        """
        groups = list(self.optimizers)
        if list(state.get("groups", [])) != groups:
            raise CheckpointError(
                f"the checkpoint has optimizer groups {state.get('groups')}, the model has {groups}"
            )
        if int(state.get("total_steps", total_steps)) != total_steps and not new_length:
            raise CheckpointError(
                f"the checkpoint was planned for {state.get('total_steps')} steps but this config gives "
                f"{total_steps}; resume with the run's own config (or give the new length on purpose: "
                "`simulacra train --resume RUN --steps N`)"
            )
        for g in groups:
            self.optimizers[g].load_state_dict(state["optimizers"][g])
            self.schedulers[g].load_state_dict(state["schedulers"][g])
        self.step = int(state["step"])
        self.early.load_state_dict(state["early_stopping"])
        self.metrics = MetricSums(
            {k: v.to(device) for k, v in state["accumulators"].items()}, dict(state["counts"])
        )
        self.last_log_step = int(state["last_log_step"])
        self.last_metrics = dict(state.get("last_metrics", {}))
        elapsed = float(state.get("elapsed_s", 0.0))
        self.elapsed_before = elapsed if math.isfinite(elapsed) else 0.0
