"""Learning-rate schedules: linear warm-up, then constant, cosine or linear decay to 0.

The factor multiplying the base learning rate at step ``s`` (0-based, the step about to be
taken), with ``W`` warm-up steps and ``T`` steps in all, is

    f(s) = (s + 1) / W                                  for s < W  (linear warm-up)
    f(s) = 1                                            constant
    f(s) = ½ (1 + cos(π p)),  p = (s - W) / (T - W)     cosine (Loshchilov & Hutter 2017)
    f(s) = 1 - p                                        linear

so the first update already uses a non-zero rate and the decays reach 0 at ``s = T``. The factor
is a pure function of the step, so a resumed run follows the same schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from simulacra.errors import ConfigError

SCHEDULES = ("constant", "cosine", "linear")


def check_schedule(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is one of :data:`SCHEDULES`."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown lr_schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")


def lr_factor(name: str, step: int, *, warmup_steps: int, total_steps: int) -> float:
    """The factor f(step) by which the base learning rate is multiplied (see module docstring).

    Args:
        name: ``constant``, ``cosine`` or ``linear``.
        step: 0-based index of the step about to be taken.
        warmup_steps: W >= 0 steps of linear warm-up.
        total_steps: T, the run's length in steps.
    """
    check_schedule(name)
    if warmup_steps < 0:
        raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    *,
    warmup_steps: int,
    total_steps: int,
    updates_per_step: int = 1,
) -> LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` following :func:`lr_factor` in steps.

    The scheduler is stepped after every optimizer update; a group updated ``updates_per_step``
    times per training step counts updates ``u`` and uses ``f(u // updates_per_step)``, so every
    group follows the same schedule in training steps. Its state is plain numbers (JSON).
    """
    check_schedule(name)

    def factor(update: int) -> float:
        return lr_factor(name, update // updates_per_step, warmup_steps=warmup_steps, total_steps=total_steps)

    lr_lambda: Callable[[int], float] = factor
    return LambdaLR(optimizer, lr_lambda)
