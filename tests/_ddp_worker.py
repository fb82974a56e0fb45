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
from torch import Tensor, nn

from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo
from simulacra.models.base import GenerativeModel, LossOutput, mark_local
from simulacra.models.zoo import build_model
from simulacra.train import Callback, TrainState, cleanup, fit, init_from_env

import toymodels as tm

STEPS = 20


def config() -> TrainConfig:
    return TrainConfig(steps=STEPS, batch_size=32, lr=1e-2, log_every=1, checkpoint_every=10, num_threads=1)


def build() -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    data = tm.toy_dataset(256)
    return build_model("test-toy-det", data.info), data


def two_group_config() -> TrainConfig:
    return TrainConfig(steps=5, batch_size=32, lr=1e-2, groups={"a": {"updates": 2}}, num_threads=1)


def build_two_group() -> tuple[torch.nn.Module, object]:
    torch.manual_seed(1)
    data = tm.toy_dataset(128)
    return build_model("test-toy-two-group", data.info), data


def build_gan() -> tuple[torch.nn.Module, object]:
    """A WGAN-GP (its penalty differentiates D's input gradient inside forward) with lazy-free
    settings: 2 critic updates per generator update."""
    torch.manual_seed(2)
    data = tm.toy_dataset(128)
    return build_model(
        {"name": "wgan-gp", "latent_dim": 2, "hidden": [8], "critic_updates": 2}, data.info
    ), data


def gan_config() -> TrainConfig:
    return TrainConfig(steps=3, batch_size=32, log_every=1, eval_every=0, num_threads=1)


class ToyWithLocalBuffer(GenerativeModel):
    """Adds the sum of every batch it sees to two buffers; ``seen_local`` is marked local to each
    process (DDP must not broadcast it, EMA must not average it), ``seen_shared`` is not."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__(info)
        self.lin = nn.Linear(info.dim, info.dim)
        self.register_buffer("seen_local", torch.zeros(info.dim, dtype=torch.float64))
        self.register_buffer("seen_shared", torch.zeros(info.dim, dtype=torch.float64))
        mark_local(self, "seen_local")

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        if self.training:
            with torch.no_grad():
                self.seen_local += x.double().sum(0)
                self.seen_shared += x.double().sum(0)
        return LossOutput((self.lin(x) - x).pow(2).mean())

    def sample(self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.info.dim, generator=generator)


LOCAL_STEPS = 6


def local_config(**kw: object) -> TrainConfig:
    return TrainConfig(steps=LOCAL_STEPS, batch_size=32, lr=1e-2, ema_decay=0.5, num_threads=1, **kw)  # type: ignore[arg-type]


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        state.stop_requested = state.step >= self.step


def build_local() -> tuple[ToyWithLocalBuffer, object]:
    torch.manual_seed(2)
    data = tm.toy_dataset(128)
    return ToyWithLocalBuffer(data.info), data


def _save(model: nn.Module, path: Path) -> None:
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


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
        # A GAN: two groups, a gradient penalty (a double backward) inside DDP's forward.
        gan, data = build_gan()
        fit(gan, data, gan_config(), progress=False)
        _save(gan, out / f"rank{ctx.rank}-gan.safetensors")
        # A buffer marked local keeps each rank's value, uninterrupted and across a resume.
        local, data = build_local()
        fit(local, data, local_config(checkpoint_every=2), run_dir=out / "local-a", progress=False)
        _save(local, out / f"rank{ctx.rank}-local.safetensors")
        for extra in ({"callbacks": [StopAt(3)]}, {"resume": True}):  # stopped at 3, then resumed
            resumed, data = build_local()
            fit(
                resumed,
                data,
                local_config(checkpoint_every=2),
                run_dir=out / "local-b",
                progress=False,
                **extra,
            )
        _save(resumed, out / f"rank{ctx.rank}-local-resumed.safetensors")
        print(f"rank {ctx.rank}/{ctx.world_size} done", flush=True)
    finally:
        cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
