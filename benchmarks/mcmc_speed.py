"""Langevin steps per second: our :class:`~simulacra.samplers.mcmc.SGLD` against torchebm's
``LangevinDynamics`` on the same energy networks, alternating within each repeat.

    python benchmarks/mcmc_speed.py --threads 1

Two workloads (energies E(x); our kernels sample log p = −E):

* ``mlp-2d``: 1,000 chains in 2-D on an MLP energy 2-64-64-1 with SiLU; ULA settings,
  ε = 0.01, noise √(2ε).
* ``conv-mnist``: 64 chains of 1×28×28 images on a conv energy (3×3 convs 32-64-64-128, strides
  1-2-2-2, SiLU, global mean pool, linear), JEM's settings: ε = 1, noise 0.01, clamped to [−1, 1].

torchebm's Euler–Maruyama update is x' = x − ε ∇E(x) + n √(2ε) z with ``noise_scale`` n, so our
noise scale s corresponds to n = s / √(2ε); both draw z from the same generator in the same shape,
and the script checks that the two paths agree after a few steps (the same computation is
timed). Ours runs ``run_chain`` (one forward and one backward per step, and it keeps log p(x) in
the state); torchebm runs ``sampler.sample(x=..., n_steps=...)`` (gradient only).

Each repeat times both libraries, the order alternating; reports the median and range of
steps/s and the medians of the ours/torchebm ratios of wall and CPU time. Writes
benchmarks/results/mcmc-speed.json. If torchebm is not installed, only ours is timed and the JSON
says why.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import machine, write_record  # noqa: E402  (benchmarks/ is on sys.path when run)


def mlp_energy() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))


def conv_energy() -> nn.Module:
    layers: list[nn.Module] = []
    channels = [1, 32, 64, 64, 128]
    for i, stride in enumerate((1, 2, 2, 2)):
        layers += [nn.Conv2d(channels[i], channels[i + 1], 3, stride, 1), nn.SiLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 1))


WORKLOADS: dict[str, dict[str, Any]] = {
    "mlp-2d": {
        "net": mlp_energy,
        "chains": 1000,
        "event": (2,),
        "step": 0.01,
        "noise": math.sqrt(0.02),
        "bounds": None,
        "steps": 1000,
    },
    "conv-mnist": {
        "net": conv_energy,
        "chains": 64,
        "event": (1, 28, 28),
        "step": 1.0,
        "noise": 0.01,
        "bounds": (-1.0, 1.0),
        "steps": 40,
    },
}


def _ours(net: nn.Module, w: dict[str, Any]) -> Callable[[Tensor, int, torch.Generator], Tensor]:
    from simulacra.samplers.mcmc import SGLD, run_chain

    kernel = SGLD(w["step"], w["noise"], w["bounds"])

    def log_prob(x: Tensor) -> Tensor:
        return -net(x).squeeze(-1)

    def run(x0: Tensor, steps: int, g: torch.Generator) -> Tensor:
        return run_chain(kernel, x0, log_prob, steps, g).state.x

    return run


def _torchebm(net: nn.Module, w: dict[str, Any]) -> Callable[[Tensor, int, torch.Generator], Tensor]:
    from torchebm.core import BaseModel
    from torchebm.samplers import LangevinDynamics

    class Energy(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x).squeeze(-1)

    sampler = LangevinDynamics(
        Energy(),
        step_size=w["step"],
        noise_scale=w["noise"] / math.sqrt(2 * w["step"]),
        clamp=w["bounds"],
    )

    def run(x0: Tensor, steps: int, g: torch.Generator) -> Tensor:
        return sampler.sample(x=x0.clone(), n_steps=steps, generator=g)

    return run


def _time(
    run: Callable[[Tensor, int, torch.Generator], Tensor], x0: Tensor, steps: int
) -> tuple[float, float]:
    g = torch.Generator().manual_seed(1)
    wall, cpu = time.perf_counter(), time.process_time()
    run(x0, steps, g)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload's step count")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mcmc-speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import torchebm

        theirs_version: str | None = torchebm.__version__
        skipped = None
    except ImportError as error:
        theirs_version, skipped = None, f"torchebm is not installed ({error})"

    results: dict[str, Any] = {}
    rows = []
    for name, w in WORKLOADS.items():
        torch.manual_seed(0)
        net = w["net"]().eval()
        for p in net.parameters():
            p.requires_grad_(False)  # sampling needs ∇ₓE only
        x0 = torch.rand(w["chains"], *w["event"], generator=torch.Generator().manual_seed(0)) * 2 - 1
        steps = max(1, round(w["steps"] * args.scale))
        runners = {"simulacra": _ours(net, w)}
        if theirs_version is not None:
            runners["torchebm"] = _torchebm(net, w)
        record: dict[str, Any] = {"chains": w["chains"], "event": list(w["event"]), "steps": steps}
        if len(runners) == 2:  # the same computation: the paths agree
            a, b = (run(x0, 5, torch.Generator().manual_seed(2)) for run in runners.values())
            record["max_abs_path_difference_after_5_steps"] = float((a - b).abs().max())
        for run in runners.values():  # warm-up
            _time(run, x0, 2)
        timings: dict[str, list[tuple[float, float]]] = {lib: [] for lib in runners}
        for r in range(args.repeats):
            order = list(runners) if r % 2 == 0 else list(runners)[::-1]
            for lib in order:
                timings[lib].append(_time(runners[lib], x0, steps))
        for lib, pairs in timings.items():
            rates = [steps / wall for wall, _ in pairs]
            record[lib] = {
                "steps_per_s_median": round(statistics.median(rates), 2),
                "steps_per_s_range": [round(min(rates), 2), round(max(rates), 2)],
                "wall_s": [round(wall, 4) for wall, _ in pairs],
                "cpu_s": [round(cpu, 4) for _, cpu in pairs],
            }
        if len(runners) == 2:
            ours, theirs = timings["simulacra"], timings["torchebm"]
            record["ratio_wall_ours_over_torchebm_median"] = round(
                statistics.median(a[0] / b[0] for a, b in zip(ours, theirs)), 3
            )
            record["ratio_cpu_ours_over_torchebm_median"] = round(
                statistics.median(a[1] / b[1] for a, b in zip(ours, theirs)), 3
            )
        results[name] = record
        for lib in runners:
            s = record[lib]
            lo, hi = s["steps_per_s_range"]
            ratio_w = record.get("ratio_wall_ours_over_torchebm_median", "")
            ratio_c = record.get("ratio_cpu_ours_over_torchebm_median", "")
            ratios = f"{ratio_w} | {ratio_c}" if lib == "simulacra" else " | "
            rows.append(f"| {name} | {lib} | {s['steps_per_s_median']} | {lo}–{hi} | {ratios} |")

    table = "\n".join(
        [
            f"Langevin steps/s, median and range over {args.repeats} repeats; {machine()}",
            "",
            "| workload | library | steps/s | range | wall ours/torchebm | CPU ours/torchebm |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    write_record(
        {
            "benchmark": "mcmc-speed",
            "repeats": args.repeats,
            "threads": args.threads,
            "torchebm": theirs_version,
            "torchebm_skipped": skipped,
            "workloads": results,
            "table": table,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
