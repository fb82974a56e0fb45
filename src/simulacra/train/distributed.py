"""Several processes, one run: torchrun's environment, the process group and collectives.

``torchrun --nproc_per_node=N -m simulacra train ...`` starts N processes and gives each the
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
:func:`init_from_env` reads them and joins the process group (gloo on CPU, nccl on CUDA, one
GPU per process: ``cuda:LOCAL_RANK``). Without those variables, or with ``WORLD_SIZE=1``, it
returns a single-process context and never initialises ``torch.distributed``.

Ownership: the process group belongs to the *process*, not to :func:`simulacra.train.fit`.
``fit`` joins it lazily when called under torchrun (if the caller has not already), and leaves
it up so that the caller can keep using collectives afterwards (evaluation, a second fit). Whoever
starts the process (the CLI, a script) calls :func:`cleanup` once before exiting, which destroys
the group. Every helper here is a no-op when no group is initialised, so the same code runs in
one process and in many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from simulacra.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run.

    Attributes:
        rank: global index of this process, 0 .. world_size - 1.
        world_size: number of processes.
        local_rank: index of this process on its machine (selects the GPU).
        device: the device this process computes on.
        is_main: True on rank 0, the only process that writes files and shows progress.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        """True when gradients must be synchronised with other processes."""
        return self.world_size > 1


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (cuda when available) -> a device.

    A bare ``"cuda"`` means ``cuda:local_rank`` so that each torchrun process takes its own GPU.

    Raises:
        ConfigError: an unknown device name, or CUDA requested where it is not available.
    """
    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use device='cpu'")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} resolves to cuda:{index} but only {torch.cuda.device_count()} GPU(s) exist"
            )
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return device


def _env_int(key: str) -> int:
    value = os.environ[key]
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {key}={value!r} is not an integer") from None


def init_from_env(device: str | torch.device = "cpu") -> DistContext:
    """Join torchrun's process group when its variables say so; else a single-process context.

    Args:
        device: the requested device (see :func:`resolve_device`). Under torchrun a CUDA device
            becomes ``cuda:LOCAL_RANK`` unless an index is given.

    Returns:
        A :class:`DistContext`. When ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
        ``MASTER_ADDR`` are all set and ``WORLD_SIZE > 1``, the default process group is
        initialised (gloo for CPU, nccl for CUDA) unless it already is.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        resolved = resolve_device(device, local)
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        return DistContext(rank, world, local, resolved, rank == 0)
    if not all(key in os.environ for key in TORCHRUN_VARIABLES) or _env_int("WORLD_SIZE") <= 1:
        return DistContext(0, 1, 0, resolve_device(device), True)
    if not dist.is_available():
        raise ConfigError("torchrun variables are set but this torch build has no torch.distributed")
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    resolved = resolve_device(device, local)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo", init_method="env://")
    return DistContext(rank, world, local, resolved, rank == 0)


def is_distributed() -> bool:
    """True when a process group with more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over all processes (in place; returns ``t``). Identity in one process."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over all processes (in place; returns ``t``). Identity in one process."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(value: float) -> float:
    """The largest of ``value`` over all processes (a collective; identity in one process). Runs
    on the GPU under NCCL, on the CPU otherwise."""
    if not is_distributed():
        return float(value)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather(t: Tensor, device: torch.device | None = None) -> list[Tensor]:
    """``[t from rank 0, t from rank 1, ...]`` (same shape on every rank), returned on CPU.

    Args:
        t: the local tensor.
        device: where the collective runs (must be a CUDA device with nccl); default ``t.device``.
    """
    if not is_distributed():
        return [t.detach().cpu().clone()]
    local = t.detach().to(device if device is not None else t.device)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return [p.cpu() for p in parts]


def barrier() -> None:
    """Wait for every process (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def cleanup(timeout_s: float = 60.0) -> None:
    """Destroy the default process group if one is up (call once, before the process exits).

    The ranks first meet at a barrier, so that none tears down its connections while another
    still works (rank 0 writes the run after the last collective): a gloo peer that vanishes
    early can abort the other's exit ("terminate called without an active exception"). A peer
    that never arrives (it failed) is waited for at most ``timeout_s`` seconds (gloo; NCCL's
    barrier uses the group's timeout)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_world_size() > 1:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=timeout_s))
            else:
                dist.barrier()
    except RuntimeError:  # a peer is gone: tear down anyway
        pass
    dist.destroy_process_group()
