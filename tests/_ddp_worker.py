"""One rank of the 2-process gloo test (test_distributed.py), started by torchrun.

    python -m torch.distributed.run --nproc_per_node=2 tests/_ddp_worker.py OUT_DIR

Trains the deterministic toy model; each rank writes its final parameters to
``OUT_DIR/rank<r>.safetensors``; rank 0 also writes the run (``OUT_DIR/run/metrics.jsonl``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import safetensors.torch
import torch

from simulacra.config import TrainConfig
from simulacra.models.zoo import build_model
from simulacra.train import cleanup, fit, init_from_env

import toymodels as tm

STEPS = 20


def config() -> TrainConfig:
    return TrainConfig(steps=STEPS, batch_size=32, lr=1e-2, log_every=1, checkpoint_every=10, num_threads=1)


def build() -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    data = tm.toy_dataset(256)
    return build_model("test-toy-det", data.info), data


def two_group_config() -> TrainConfig:
    return TrainConfig(steps=5, batch_size=32, lr=1e-2, updates_per_step={"a": 2}, num_threads=1)


def build_two_group() -> tuple[torch.nn.Module, object]:
    torch.manual_seed(1)
    data = tm.toy_dataset(128)
    return build_model("test-toy-two-group", data.info), data


def main(out: Path) -> None:
    ctx = init_from_env("cpu")  # the script owns the process group: it joins it and destroys it
    try:
        model, data = build()
        fit(model, data, config(), run_dir=out / "run", progress=False)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(state, out / f"rank{ctx.rank}.safetensors")
        # Two optimizer groups: DDP with find_unused_parameters, a group updated twice per step.
        two, data = build_two_group()
        fit(two, data, two_group_config(), progress=False)
        state = {k: v.contiguous() for k, v in two.state_dict().items()}
        safetensors.torch.save_file(state, out / f"rank{ctx.rank}-two-group.safetensors")
        print(f"rank {ctx.rank}/{ctx.world_size} done", flush=True)
    finally:
        cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
