"""Batches as index slices of tensors that already sit on the device.

Batches are numbered b = 0, 1, 2, ... With ``K = N // B`` batches per epoch (last incomplete
batch dropped), batch ``b`` is positions ``[(b mod K) B, (b mod K + 1) B)`` of the permutation of
epoch ``e = b // K``. The permutation is drawn by a generator seeded with
``derive_seed(seed, SALT_PERMUTATION, e)`` (:mod:`simulacra.seeding`): nothing is carried from one
batch to the next, so a run resumed at any step sees exactly the batches of an uninterrupted one.
A training step reads ``k`` batches (``k = 1`` unless an
optimizer group asks for a fresh batch for each of its updates): step ``s`` reads batches
``s k, …, s k + k − 1``. Under DDP, rank ``r`` of ``R`` takes the ``r``-th contiguous shard of
size ``B / R`` of every global batch, so the union over ranks is the single-process batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.errors import ConfigError
from simulacra.seeding import derive_seed as derive_seed  # re-exported for train.loop
from simulacra.seeding import generator_for

# Salts separating the random streams derived from one seed.
SALT_PERMUTATION = 0x5045524D
SALT_TRANSFORM = 0x5452414E
SALT_EVAL = 0x4556414C
SALT_RANK = 0x52414E4B


@dataclass(frozen=True)
class StepPlan:
    """How many examples and steps a run has.

    Attributes:
        global_batch: examples per batch over all ranks (``batch_size`` capped at N).
        local_batch: examples per batch on one rank (``global_batch / world_size``).
        batches_per_epoch: ``N // global_batch``.
        total_steps: ``steps``, else ``ceil(epochs * batches_per_epoch / batches_per_step)``.
        batches_per_step: batches one training step reads (1 unless a group draws fresh ones).
    """

    global_batch: int
    local_batch: int
    batches_per_epoch: int
    total_steps: int
    batches_per_step: int = 1

    @property
    def steps_per_epoch(self) -> float:
        """Training steps in one pass over the training split."""
        return self.batches_per_epoch / self.batches_per_step


def plan_steps(
    n_train: int,
    batch_size: int,
    *,
    steps: int | None,
    epochs: float | None,
    world_size: int = 1,
    batches_per_step: int = 1,
) -> StepPlan:
    """Batch sizes and run length from the config (``batches_per_step`` batches per step).

    Raises:
        ConfigError: an empty training split, a batch size or length that is not positive, or a
            global batch that does not divide evenly among the ranks.
    """
    if n_train < 1:
        raise ConfigError("the training split is empty; expected at least one example")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    global_batch = min(batch_size, n_train)
    if global_batch % world_size:
        raise ConfigError(
            f"the global batch ({global_batch} = min(batch_size={batch_size}, {n_train} examples)) must "
            f"divide evenly among {world_size} processes; choose a multiple of {world_size}"
        )
    batches_per_epoch = n_train // global_batch
    if steps is not None:
        total = int(steps)
    elif epochs is not None:
        total = math.ceil(float(epochs) * batches_per_epoch / batches_per_step)
    else:
        raise ConfigError("set train.steps or train.epochs; both are None")
    if total < 1:
        raise ConfigError(f"the run must have at least one step; got steps={steps}, epochs={epochs}")
    return StepPlan(global_batch, global_batch // world_size, batches_per_epoch, total, batches_per_step)


class BatchSchedule:
    """Indices of the examples each batch reads on this rank (batch b = step b when a step reads
    one batch).

    Args:
        n: number of training examples N.
        global_batch: examples per step over all ranks, B <= N, divisible by ``world_size``.
        seed: the run's seed.
        rank, world_size: this process and how many there are.
        device: where the returned indices live (the device holding the data).
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        if not 1 <= global_batch <= n:
            raise ConfigError(f"global batch must be in [1, {n}], got {global_batch}")
        if global_batch % world_size:
            raise ConfigError(f"global batch {global_batch} does not divide among {world_size} processes")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = n // global_batch  # batches per epoch
        self.device = torch.device(device)
        self._epoch = -1
        self._perm: Tensor | None = None

    def permutation(self, epoch: int) -> Tensor:
        """The permutation of ``0..N-1`` used in ``epoch``, shape (N,), int64 on ``device``."""
        if epoch != self._epoch or self._perm is None:
            g = generator_for(self.seed, SALT_PERMUTATION, epoch)
            self._perm = torch.randperm(self.n, generator=g).to(self.device)
            self._epoch = epoch
        return self._perm

    def epoch(self, batch: int) -> int:
        """The epoch that batch ``batch`` (0-based) belongs to."""
        return batch // self.steps_per_epoch

    def indices(self, batch: int) -> Tensor:
        """Indices read by this rank for 0-based ``batch``, shape (global_batch / world_size,)."""
        perm = self.permutation(self.epoch(batch))
        start = (batch % self.steps_per_epoch) * self.global_batch + self.rank * self.local_batch
        return perm[start : start + self.local_batch]


def transform_generator(
    seed: int, step: int, rank: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    """The generator a batch transform (dynamic binarization) uses at ``step`` on ``rank``."""
    return generator_for(seed, SALT_TRANSFORM, step, rank, device=device)
