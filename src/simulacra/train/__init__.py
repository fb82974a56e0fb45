"""Training: the one loop (:func:`fit`), callbacks, checkpoints and multi-process runs."""

from simulacra.train.callbacks import EMA, Callback, KLWarmup, SampleEvery, TimeBudget, TrainState
from simulacra.train.checkpoint import (
    Checkpoint,
    load_model,
    load_run_config,
    load_trainer_state,
    save_checkpoint,
    save_model,
)
from simulacra.train.distributed import DistContext, all_reduce_mean, barrier, cleanup, init_from_env
from simulacra.train.loop import FitResult, fit
from simulacra.train.schedules import SCHEDULES, lr_factor

__all__ = [
    "EMA",
    "SCHEDULES",
    "Callback",
    "Checkpoint",
    "DistContext",
    "FitResult",
    "KLWarmup",
    "SampleEvery",
    "TimeBudget",
    "TrainState",
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "fit",
    "init_from_env",
    "load_model",
    "load_run_config",
    "load_trainer_state",
    "lr_factor",
    "save_checkpoint",
    "save_model",
]
