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
5,000 of the samples and 5,000 fresh data points, averaged over the repeats' seeds (the same
statistic between two data draws is the noise floor). All on the same threads; the two libraries
alternate within each repeat (who goes first swaps), and each keeps its fastest of --repeats.

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
from torch import Tensor

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


class ZeroNet(torch.nn.Module):
    """A network that costs nothing (predicts ε = 0): what remains is the samplers' own cost."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros_like(x)


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
    parser.add_argument(
        "--sampler-only",
        action="store_true",
        help="skip training and the network table: time only the samplers' own cost (a zero-cost network)",
    )
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
    common = {"num_train_timesteps": T, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
    # diffusers clips x̂₀ to [-1, 1] by default (for images); the moons reach x = 2
    unclipped = {**common, "clip_sample": False}
    pairs = [
        ("DDPMScheduler", "ancestral", 1000, lambda: DDPMScheduler(**unclipped)),
        *[("DDIMScheduler", "ddim", s, lambda: DDIMScheduler(**unclipped)) for s in (10, 20, 50, 100)],
        *[("DPMSolverMultistepScheduler", "dpm-solver", s, lambda: DPMSolverMultistepScheduler(**common))
          for s in (10, 20)],
    ]  # fmt: skip

    record = {
        "benchmark": "diffusers-comparison",
        "diffusers": diffusers.__version__,
        "threads": args.threads,
        "samples": args.n,
        "hidden": args.hidden,
    }
    if not args.sampler_only:
        ema = EMA(0.999)
        started = time.perf_counter()
        fit(model, data, TrainConfig(eval_every=0, steps=args.train_steps, batch_size=512, lr=1e-3, lr_schedule="cosine",
                                     log_every=10**9), callbacks=[ema], progress=False)  # fmt: skip
        train_s = time.perf_counter() - started
        ema.swap()
        floor = mmd(reference, floor_draw)
        print(f"trained {args.train_steps} steps in {train_s:.0f} s; MMD² floor {floor:.2e}")
        model.eval()
        rows = network_table(
            model, pairs, args.n, args.repeats, args.seed, lambda x: mmd(x[:5000], reference)
        )
        record.update(repeats=args.repeats, train_steps=args.train_steps, train_seconds=round(train_s, 1))
        record.update(mmd_floor=floor, runs=rows)
    record["sampler_only"] = sampler_cost_table(model.eval(), pairs, args.n, args.seed)
    write_record(record, Path(args.results))
    return 0


def _alternating(pairs, repeats: int, draw) -> dict:
    """Run ``draw(library, sampler, steps, make, repeat)`` for both libraries, alternating within
    each repeat (who goes first swaps) so a slow spell of the machine hits both; every result."""
    results: dict = {}
    for scheduler, sampler, steps, make in pairs:
        for repeat in range(repeats):
            order = ["diffusers", "simulacra"] if repeat % 2 == 0 else ["simulacra", "diffusers"]
            for library in order:
                out = draw(library, sampler, steps, make, repeat)
                results.setdefault((scheduler, sampler, steps, library), []).append(out)
    return results


def _sample(library: str, model, net, sampler: str, steps: int, make, n: int, seed: int) -> Tensor:
    from simulacra.samplers import resolve_sampler

    if library == "diffusers":
        with torch.no_grad():
            return diffusers_sample(make(), net, n, steps, seed)
    chosen = resolve_sampler(sampler, steps=steps)
    return model.sample(n, generator=torch.Generator().manual_seed(seed), sampler=chosen)


def network_table(model, pairs, n: int, repeats: int, seed: int, score) -> list[dict]:
    """The trained network in both libraries: best-of-``repeats`` wall time, the share inside the
    network, and ``score`` (MMD²) of every repeat's samples (each repeat its own seed)."""
    timed = TimedNet(model.denoiser)
    model.denoiser = timed

    def draw(library: str, sampler: str, steps: int, make, repeat: int) -> dict:
        timed.seconds, timed.calls = 0.0, 0
        started = time.perf_counter()
        x = _sample(library, model, timed, sampler, steps, make, n, seed + repeat)
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "network_seconds": timed.seconds,
            "evaluations": timed.calls,
            "mmd": score(x),
        }

    rows = []
    for (scheduler, sampler, steps, library), runs in _alternating(pairs, repeats, draw).items():
        best = min(runs, key=lambda r: r["seconds"])
        values = torch.tensor([r["mmd"] for r in runs], dtype=torch.float64)
        outside = best["seconds"] - best["network_seconds"]
        row = {
            "library": library,
            "sampler": scheduler if library == "diffusers" else sampler,
            "steps": steps,
            **{k: round(best[k], 4) for k in ("seconds", "network_seconds")},
            "evaluations": best["evaluations"],
            "ms_per_step": round(1000 * best["seconds"] / steps, 3),
            "outside_ms_per_step": round(1000 * outside / steps, 4),
            "overhead_fraction": round(outside / best["seconds"], 4),
            "mmd": float(values.mean()),
            "mmd_sd": float(values.std()) if len(values) > 1 else None,
            "mmd_per_seed": values.tolist(),
        }
        rows.append(row)
        print(
            f"{library:>9} {row['sampler']:>28} {steps:>5}: {row['seconds']:7.2f} s, "
            f"{row['ms_per_step']:7.2f} ms/step, outside the network {row['outside_ms_per_step']:6.3f} ms/step "
            f"({100 * row['overhead_fraction']:4.1f}%), MMD² {row['mmd']:.2e} (sd {row['mmd_sd'] or 0:.1e})"
        )
    model.denoiser = timed.net
    return rows


def sampler_cost_table(model, pairs, n: int, seed: int) -> list[dict]:
    """The samplers' own cost per step: both libraries driven by a network that costs nothing
    (:class:`ZeroNet`), so no network time (nor its run-to-run noise) is left in the clock; best
    of 10 repeats for 1000 steps, of 50 otherwise."""
    network, zero = model.denoiser, ZeroNet()
    model.denoiser = zero
    rows = []
    for steps_group in ({1000}, {s for *_, s, _ in pairs if s != 1000}):
        group = [p for p in pairs if p[2] in steps_group]

        def draw(library: str, sampler: str, steps: int, make, repeat: int) -> float:
            started = time.perf_counter()
            _sample(library, model, zero, sampler, steps, make, n, seed + repeat)
            return time.perf_counter() - started

        repeats = 10 if steps_group == {1000} else 50
        for (scheduler, sampler, steps, library), times in _alternating(group, repeats, draw).items():
            best = min(times)
            rows.append({
                "library": library,
                "sampler": scheduler if library == "diffusers" else sampler,
                "steps": steps,
                "ms_per_step": round(1000 * best / steps, 4),
                "repeats": repeats,
            })  # fmt: skip
            print(
                f"sampler only: {library:>9} {rows[-1]['sampler']:>28} {steps:>5}: {rows[-1]['ms_per_step']:.3f} ms/step"
            )
    model.denoiser = network
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
