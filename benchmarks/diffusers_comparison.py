"""simulacra's diffusion samplers against diffusers' schedulers, with one and the same network.

One DDPM (``ddpm`` preset: linear β from 1e-4 to 0.02, T = 1000, ε-prediction, TimeMLP 3 × 256
or ``--hidden``: a small network such as ``--hidden 64 64`` makes the samplers' own cost visible)
is trained on the moons toy with ``simulacra.train.fit``. Its network then drives both
libraries: diffusers' ``DDPMScheduler``, ``DDIMScheduler`` and ``DPMSolverMultistepScheduler``
(DPM-Solver++ 2M) in diffusers' documented loop (``scale_model_input``, the network, ``step``),
and simulacra's ``ancestral``, ``ddim`` and ``dpm-solver`` samplers through ``model.sample``.
diffusers' integer step k ∈ {0, …, 999} is fed to the network as t = (k + 1)/T, the time at which
simulacra trained it (our grid point i/T has the noise level of diffusers' index i − 1).

For each (library, sampler, steps): the wall time to draw --n samples, the part of it spent inside
the network (timed around its forward), so the rest is the sampler's overhead, and MMD² between
5,000 of the samples and 5,000 fresh data points (the same statistic between two data draws is
the noise floor). All on the same threads, interleaved, best of --repeats for times.

    python -m venv /tmp/diff-venv
    /tmp/diff-venv/bin/pip install -c constraints.txt diffusers -e .
    /tmp/diff-venv/bin/python benchmarks/diffusers_comparison.py --threads 2

Writes benchmarks/results/diffusers-comparison.json (or ``--results``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)

RESULTS = Path(__file__).resolve().parent / "results"
T = 1000


class TimedNet(torch.nn.Module):
    """The trained denoiser with a stopwatch around its forward pass."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.seconds, self.calls = net, 0.0, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        started = time.perf_counter()
        out = self.net(x, t, c)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return out


def diffusers_sample(scheduler, net: TimedNet, n: int, steps: int, seed: int) -> torch.Tensor:
    """diffusers' sampling loop (as in its pipelines) with our network."""
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g) * scheduler.init_noise_sigma
    for k in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, k)
        t = torch.full((n,), (int(k) + 1) / T)
        eps = net(model_input, t)
        x = scheduler.step(eps, k, x, generator=g).prev_sample
    return x


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=10_000, help="samples per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256], help="TimeMLP hidden sizes")
    parser.add_argument("--results", default=str(RESULTS / "diffusers-comparison.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import diffusers
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    import simulacra.models  # noqa: F401
    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import load_dataset
    from simulacra.metrics.two_sample import mmd
    from simulacra.models.zoo import build_model
    from simulacra.train import EMA, fit

    data = load_dataset(DataConfig(name="moons", num_samples=20_000), seed=args.seed)
    fresh = load_dataset(DataConfig(name="moons", num_samples=10_000), seed=args.seed + 1).train.x
    reference, floor_draw = fresh[:5000], fresh[5000:10_000]
    torch.manual_seed(args.seed)
    model = build_model({"name": "ddpm", "timesteps": T, "hidden": args.hidden}, data.info)
    ema = EMA(0.999)
    started = time.perf_counter()
    fit(model, data, TrainConfig(steps=args.train_steps, batch_size=512, lr=1e-3, lr_schedule="cosine",
                                 log_every=10**9), callbacks=[ema], progress=False)  # fmt: skip
    train_s = time.perf_counter() - started
    ema.swap()
    model.eval()
    timed = TimedNet(model.denoiser)
    model.denoiser = timed
    floor = mmd(reference, floor_draw)
    print(f"trained {args.train_steps} steps in {train_s:.0f} s; MMD² floor {floor:.2e}")

    common = {"num_train_timesteps": T, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
    # diffusers clips x̂₀ to [-1, 1] by default (for images); the moons reach x = 2
    unclipped = {**common, "clip_sample": False}
    runs = [
        ("diffusers", "DDPMScheduler", 1000, lambda: DDPMScheduler(**unclipped)),
        ("simulacra", "ancestral", 1000, None),
        *[("diffusers", "DDIMScheduler", s, lambda: DDIMScheduler(**unclipped)) for s in (10, 20, 50, 100)],
        *[("simulacra", "ddim", s, None) for s in (10, 20, 50, 100)],
        *[
            ("diffusers", "DPMSolverMultistepScheduler", s, lambda: DPMSolverMultistepScheduler(**common))
            for s in (10, 20)
        ],
        *[("simulacra", "dpm-solver", s, None) for s in (10, 20)],
    ]
    rows = []
    for library, sampler, steps, make in runs:
        best = None
        for repeat in range(args.repeats):
            timed.seconds, timed.calls = 0.0, 0
            started = time.perf_counter()
            with torch.no_grad():
                if library == "diffusers":
                    x = diffusers_sample(make(), timed, args.n, steps, args.seed + repeat)
                else:
                    g = torch.Generator().manual_seed(args.seed + repeat)
                    x = model.sample(args.n, generator=g, sampler=sampler, steps=steps)
            total = time.perf_counter() - started
            if best is None or total < best["seconds"]:
                best = {
                    "seconds": total,
                    "network_seconds": timed.seconds,
                    "evaluations": timed.calls,
                    "x": x,
                }
        x = best.pop("x")
        row = {
            "library": library,
            "sampler": sampler,
            "steps": steps,
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in best.items()},
            "ms_per_step": round(1000 * best["seconds"] / steps, 3),
            "overhead_fraction": round(1 - best["network_seconds"] / best["seconds"], 4),
            "mmd": mmd(x[:5000], reference),
        }
        rows.append(row)
        print(
            f"{library:>9} {sampler:>28} {steps:>5}: {row['seconds']:7.2f} s, {row['ms_per_step']:7.2f} ms/step, "
            f"outside the network {100 * row['overhead_fraction']:4.1f}%, MMD² {row['mmd']:.2e}"
        )
    write_record(
        {
            "benchmark": "diffusers-comparison",
            "diffusers": diffusers.__version__,
            "threads": args.threads,
            "samples": args.n,
            "hidden": args.hidden,
            "repeats": args.repeats,
            "train_steps": args.train_steps,
            "train_seconds": round(train_s, 1),
            "mmd_floor": floor,
            "runs": rows,
        },
        Path(args.results),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
