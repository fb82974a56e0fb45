"""Training by time: how many steps fit in a wall-time budget on this machine.

A learning-rate schedule (cosine, linear) must know the run's length in steps to anneal to its
end; a user with a time budget knows minutes. :func:`steps_for_minutes` measures the model on
this machine (a few training steps of a throwaway copy, and one validation pass) and returns the
steps that fit, validation passes included:

    steps = (margin · seconds − n_eval · t_eval) / t_step,

with n_eval the validation passes of the run (about 20 with the default interval), so that the
schedule ends within the budget; a :class:`~simulacra.train.callbacks.TimeBudget` stops the run
anyway if the machine turns out slower than measured.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time

import torch

from simulacra.config import TrainConfig
from simulacra.data.info import Dataset
from simulacra.errors import ConfigError
from simulacra.models.base import GenerativeModel
from simulacra.seeding import rng_devices
from simulacra.train import distributed


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What a training step and a validation pass cost on this machine.

    Attributes:
        step_seconds: wall seconds per training step (after warm-up).
        eval_seconds: wall seconds per validation pass over the validation split (0 without one).
    """

    step_seconds: float
    eval_seconds: float


def calibrate(
    model: GenerativeModel, data: Dataset, config: TrainConfig, *, steps: int = 20, warmup: int = 3
) -> Calibration:
    """Time ``steps`` training steps (after ``warmup``) and one validation pass of a copy of
    ``model`` under ``config``'s batch size and groups; the model and the global RNG are left
    as they were."""
    from simulacra.train.loop import fit, validation_score

    quiet = dataclasses.replace(
        config,
        eval_every=0,
        patience=None,
        keep_best=False,
        sample_every=0,
        checkpoint_every=0,
        log_every=10**9,
    )
    probe = copy.deepcopy(model)
    with torch.random.fork_rng(devices=rng_devices(probe.device)):
        fit(probe, data, dataclasses.replace(quiet, steps=warmup, epochs=None), progress=False)
        result = fit(probe, data, dataclasses.replace(quiet, steps=steps, epochs=None), progress=False)
        eval_seconds = 0.0
        if data.valid is not None and len(data.valid) > 0:
            ctx = distributed.init_from_env(config.device)
            valid = data.valid.to(ctx.device)
            started = time.perf_counter()
            validation_score(probe, valid, data, config.seed, ctx, config.batch_size)
            eval_seconds = time.perf_counter() - started
    return Calibration(result.wall_time / max(1, result.steps), eval_seconds)


def steps_for_budget(
    seconds: float, calibration: Calibration, *, evaluations: int = 0, margin: float = 0.95
) -> int:
    """Training steps that fit in ``seconds`` with ``evaluations`` validation passes, keeping
    ``1 − margin`` of the time for checkpoints and noise.

    Raises:
        ConfigError: the budget does not fit a single step and the validation passes.
    """
    if not 0 < seconds < math.inf:
        raise ConfigError(f"a time budget must be a positive, finite number of seconds; found {seconds}")
    usable = margin * seconds - evaluations * calibration.eval_seconds
    steps = int(usable / calibration.step_seconds) if calibration.step_seconds > 0 else 0
    if steps < 1:
        raise ConfigError(
            f"{seconds:.0f} s do not fit one training step ({calibration.step_seconds:.2f} s) and "
            f"{evaluations} validation passes ({calibration.eval_seconds:.2f} s each) on this machine"
        )
    return steps


DEFAULT_EVALUATIONS = 20
"""Validation passes of a run whose ``eval_every`` is None (:meth:`TrainConfig.evaluation_interval`)."""


def steps_for_minutes(
    model: GenerativeModel, data: Dataset, config: TrainConfig, minutes: float
) -> tuple[int, Calibration, int | None]:
    """The steps ``model`` trains in about ``minutes`` of wall time under ``config`` on this
    machine (:func:`calibrate`, then :func:`steps_for_budget` with the run's validation passes:
    about 20 with the default interval, ``steps / eval_every`` with a fixed one), and the
    validation interval to use instead of the default one, or None to keep it.

    With the default interval, when 20 validation passes would take more than half the budget
    (a slow exact likelihood on a large validation split), the run validates fewer times, as
    many as fit in half of it (at least once): validation informs the run, it must not be it."""
    if not minutes > 0:
        raise ConfigError(f"a time budget needs minutes > 0; found {minutes!r}")
    calibration = calibrate(model, data, config)
    seconds = 60 * minutes
    has_valid = data.valid is not None and len(data.valid) > 0
    if not has_valid or config.eval_every == 0:
        return steps_for_budget(seconds, calibration), calibration, None
    if config.eval_every is None:  # about 20 passes whatever the length, fewer if they crowd out training
        passes = DEFAULT_EVALUATIONS
        if calibration.eval_seconds > 0:
            passes = max(1, min(passes, int(0.5 * 0.95 * seconds / calibration.eval_seconds)))
        steps = steps_for_budget(seconds, calibration, evaluations=passes)
        interval = None if passes == DEFAULT_EVALUATIONS else max(1, math.ceil(steps / passes))
        return steps, calibration, interval
    per_step = calibration.step_seconds + calibration.eval_seconds / config.eval_every
    return steps_for_budget(seconds, Calibration(per_step, 0.0)), calibration, None
