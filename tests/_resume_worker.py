"""Train the stochastic toy model; optionally SIGKILL this process mid-run (test_checkpoint.py).

    python tests/_resume_worker.py RUN_DIR [--resume] [--kill-at-step M | --kill-after-checkpoint M]

Every source of randomness is on: the model's noise (global RNG), dynamic binarization (the
loop's per-step generators), evaluation (forked RNG), EMA, KL warm-up and the best-weights state.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

import simulacra.train.loop as loop
from simulacra.config import TrainConfig
from simulacra.models.zoo import build_model
from simulacra.train import Callback, FitResult, KLWarmup, TrainState, fit

import toymodels as tm

STEPS = 20
CHECKPOINT_EVERY = 4


def config() -> TrainConfig:
    return TrainConfig(
        steps=STEPS,
        batch_size=16,  # 96 examples: 6 steps per epoch, so the run crosses epochs
        lr=1e-2,
        lr_schedule="cosine",
        warmup_steps=3,
        grad_clip=1.0,
        ema_decay=0.9,
        eval_every=4,
        patience=100,  # never stops, but keeps (and checkpoints) the best weights
        checkpoint_every=CHECKPOINT_EVERY,
        log_every=3,
        seed=7,
        num_threads=1,
    )


def run(run_dir: str | Path, *, resume: bool = False, callbacks: Iterable[Any] = ()) -> FitResult:
    """Build the model the way every run does (seed first), then fit."""
    torch.manual_seed(0)
    data = tm.toy_dataset(96, valid=32, dynamic_binarization=True)
    model = build_model({"name": "test-toy", "hidden": 8}, data.info)
    callbacks = [KLWarmup(5), *callbacks]
    return fit(model, data, config(), run_dir=run_dir, resume=resume, callbacks=callbacks, progress=False)


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--kill-after-checkpoint", type=int)
    args = parser.parse_args(argv)
    callbacks = [KillAt(args.kill_at_step)] if args.kill_at_step is not None else []
    if args.kill_after_checkpoint is not None:
        save = loop.save_checkpoint

        def save_then_die(*a: Any, **k: Any) -> Path:
            path = save(*a, **k)
            if k["step"] == args.kill_after_checkpoint:
                os.kill(os.getpid(), signal.SIGKILL)
            return path

        loop.save_checkpoint = save_then_die  # type: ignore[assignment]
    run(args.run_dir, resume=args.resume, callbacks=callbacks)


if __name__ == "__main__":
    main(sys.argv[1:])
