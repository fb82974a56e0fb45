"""simulacra's diffusion samplers against diffusers' schedulers, with one and the same network.

One DDPM (``ddpm`` preset: linear β from 1e-4 to 0.02, T = 1000, ε-prediction, TimeMLP 3 × 256
or ``--hidden``: a small network such as ``--hidden 64 64`` makes the samplers' own cost visible)
is trained on the moons toy with ``simulacra.train.fit``. Its network then drives both
libraries: diffusers' ``DDPMScheduler``, ``DDIMScheduler`` and ``DPMSolverMultistepScheduler``
(DPM-Solver++ 2M) in diffusers' documented loop (``scale_model_input``, the network, ``step``),
and simulacra's ``ancestral``, ``ddim`` and ``dpm-solver`` samplers through ``model.sample``.
diffusers' integer step k ∈ {0, …, 999} is fed to the network as t = (k + 1)/T, the time at which
simulacra trained it (our grid point i/T has the noise level of diffusers' index i − 1).

For each (library, sampler, steps): the wall and CPU time to draw --n samples, the part of the
wall time spent inside the network (timed around its forward), so the rest is the sampler's
overhead, and MMD² between 5,000 of the samples and 5,000 fresh data points, averaged over the
repeats' seeds (the same statistic between two data draws is the noise floor).

The protocol of ``_fair.py``: the two libraries alternate inside each repeat (who goes first
swaps every repeat); per-repeat ratios diffusers / simulacra of wall and of CPU time (> 1: we are
faster), median and range over the repeats; every thread count of ``--threads`` in turn. Nothing
but sampling is inside either clock: diffusers' scheduler is constructed, and the network's time
inputs for its integer steps are made, before the clock starts (``set_timesteps`` runs inside, as
in diffusers' pipelines); our sampler object is resolved before the clock too.

    python -m venv /tmp/diff-venv
    /tmp/diff-venv/bin/pip install -c constraints.txt diffusers -e .
    /tmp/diff-venv/bin/python benchmarks/diffusers_comparison.py --threads 1 2 --hidden 64 64

Writes benchmarks/results/diffusers-comparison.json (or ``--results``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor

from _fair import Stopwatch, Timing, ratio_summary, time_summary
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


def network_times(scheduler, n: int, steps: int) -> dict[int, Tensor]:
    """The network's time input for each of diffusers' integer steps k: t = (k + 1)/T for all n
    samples (made before the clock starts; they are the benchmark's glue, not diffusers')."""
    scheduler.set_timesteps(steps)
    return {int(k): torch.full((n,), (int(k) + 1) / T) for k in scheduler.timesteps}


def diffusers_sample(scheduler, net, n: int, steps: int, seed: int, times: dict[int, Tensor]) -> Tensor:
    """diffusers' sampling loop (as in its pipelines) with our network."""
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g) * scheduler.init_noise_sigma
    for k in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, k)
        eps = net(model_input, times[int(k)])
        x = scheduler.step(eps, k, x, generator=g).prev_sample
    return x


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--train-steps", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=10_000, help="samples per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampler-repeats", type=int, default=7, help="repeats of the zero-network table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256], help="TimeMLP hidden sizes")
    parser.add_argument("--results", default=str(RESULTS / "diffusers-comparison.json"))
    parser.add_argument(
        "--sampler-only",
        action="store_true",
        help="skip training and the network table: time only the samplers' own cost (a zero-cost network)",
    )
    args = parser.parse_args()

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

    record: dict = {
        "benchmark": "diffusers-comparison",
        "diffusers": diffusers.__version__,
        "samples": args.n,
        "hidden": args.hidden,
        "threads": {},
    }
    if not args.sampler_only:
        torch.set_num_threads(max(args.threads))
        ema = EMA(0.999)
        started = time.perf_counter()
        fit(model, data, TrainConfig(eval_every=0, steps=args.train_steps, batch_size=512, lr=1e-3, lr_schedule="cosine",
                                     log_every=10**9), callbacks=[ema], progress=False)  # fmt: skip
        train_s = time.perf_counter() - started
        ema.swap()
        floor = mmd(reference, floor_draw)
        print(f"trained {args.train_steps} steps in {train_s:.0f} s; MMD² floor {floor:.2e}")
        record.update(repeats=args.repeats, train_steps=args.train_steps, train_seconds=round(train_s, 1))
        record.update(mmd_floor=floor)
    model.eval()
    for threads in args.threads:
        torch.set_num_threads(threads)
        entry: dict = {}
        if not args.sampler_only:
            entry["network"] = network_table(
                model, pairs, args.n, args.repeats, args.seed, lambda x: mmd(x[:5000], reference)
            )
        entry["sampler_only"] = sampler_cost_table(model, pairs, args.n, args.sampler_repeats, args.seed)
        record["threads"][str(threads)] = entry
    write_record(record, Path(args.results))
    return 0


def _prepare(library: str, model, sampler: str, steps: int, make, n: int):
    """Everything made before the clock: diffusers' scheduler and its network times, or our
    resolved sampler. Returns what :func:`_sample` needs."""
    from simulacra.samplers import resolve_sampler

    if library == "diffusers":
        scheduler = make()
        return scheduler, network_times(scheduler, n, steps)
    return resolve_sampler(sampler, steps=steps), None


def _sample(library: str, model, net, steps: int, prepared, n: int, seed: int) -> Tensor:
    first, times = prepared
    with torch.no_grad():
        if library == "diffusers":
            return diffusers_sample(first, net, n, steps, seed, times)
        return model.sample(n, generator=torch.Generator().manual_seed(seed), sampler=first)


def _alternating(pairs, repeats: int, draw) -> dict:
    """For each sampler and step count, ``draw(library, sampler, steps, make, repeat)`` for both
    libraries in every repeat, the one going first swapping each repeat; every result."""
    results: dict = {}
    for scheduler, sampler, steps, make in pairs:
        for repeat in range(repeats):
            order = ["diffusers", "simulacra"] if repeat % 2 == 0 else ["simulacra", "diffusers"]
            for library in order:
                out = draw(library, sampler, steps, make, repeat)
                results.setdefault((scheduler, sampler, steps), {}).setdefault(library, []).append(out)
    return results


def network_table(model, pairs, n: int, repeats: int, seed: int, score) -> list[dict]:
    """The trained network in both libraries: wall and CPU time per repeat, the share of the wall
    time inside the network, ``score`` (MMD²) of every repeat's samples (each repeat its own
    seed), and the per-repeat time ratios diffusers / simulacra."""
    timed = TimedNet(model.denoiser)
    model.denoiser = timed

    def draw(library: str, sampler: str, steps: int, make, repeat: int) -> dict:
        prepared = _prepare(library, model, sampler, steps, make, n)
        timed.seconds, timed.calls = 0.0, 0
        with Stopwatch() as sw:
            x = _sample(library, model, timed, steps, prepared, n, seed + repeat)
        return {
            **sw.timing.as_dict(),
            "network_s": timed.seconds,
            "evaluations": timed.calls,
            "mmd": score(x),
        }

    rows = []
    for (scheduler, sampler, steps), by_library in _alternating(pairs, repeats, draw).items():
        row: dict = {"sampler": sampler, "diffusers_scheduler": scheduler, "steps": steps}
        timings = {}
        for library, runs in by_library.items():
            timings[library] = [Timing(r["wall_s"], r["cpu_s"]) for r in runs]
            walls = torch.tensor([r["wall_s"] for r in runs], dtype=torch.float64)
            outside = torch.tensor([r["wall_s"] - r["network_s"] for r in runs], dtype=torch.float64)
            values = torch.tensor([r["mmd"] for r in runs], dtype=torch.float64)
            row[library] = {
                **time_summary(timings[library]),
                "ms_per_step_median": round(1000 * float(walls.median()) / steps, 3),
                "outside_ms_per_step_median": round(1000 * float(outside.median()) / steps, 4),
                "outside_fraction_median": round(float((outside / walls).median()), 4),
                "evaluations": runs[0]["evaluations"],
                "mmd": float(values.mean()),
                "mmd_sd": float(values.std()) if len(values) > 1 else None,
                "runs": runs,
            }
        row["ratio"] = ratio_summary(timings["diffusers"], timings["simulacra"])
        d, o, r = row["diffusers"], row["simulacra"], row["ratio"]
        print(
            f"{sampler:>10} {steps:>5}: ms/step {d['ms_per_step_median']:.2f} / {o['ms_per_step_median']:.2f} "
            f"(diffusers / simulacra), outside {d['outside_ms_per_step_median']:.3f} / "
            f"{o['outside_ms_per_step_median']:.3f}, ratio wall {r['wall']['median']:.2f} "
            f"({r['wall']['min']:.2f}-{r['wall']['max']:.2f}), MMD² {d['mmd']:.2e} / {o['mmd']:.2e}"
        )
        rows.append(row)
    model.denoiser = timed.net
    return rows


def sampler_cost_table(model, pairs, n: int, repeats: int, seed: int) -> list[dict]:
    """The samplers' own cost per step: both libraries driven by a network that costs nothing
    (:class:`ZeroNet`), so no network time (nor its run-to-run noise) is left in the clock. Each
    repeat times a block of back-to-back draws (≥ 1,000 steps in all) per library; ms per step
    and the per-repeat ratios diffusers / simulacra, median and range over ``repeats``."""
    network, zero = model.denoiser, ZeroNet()
    model.denoiser = zero

    def draw(library: str, sampler: str, steps: int, make, repeat: int) -> Timing:
        draws = max(1, 1000 // steps)
        prepared = [_prepare(library, model, sampler, steps, make, n) for _ in range(draws)]
        with Stopwatch() as sw:
            for i in range(draws):
                _sample(library, model, zero, steps, prepared[i], n, seed + repeat)
        return Timing(sw.timing.wall / (draws * steps), sw.timing.cpu / (draws * steps))

    rows = []
    for (scheduler, sampler, steps), by_library in _alternating(pairs, repeats, draw).items():
        row: dict = {"sampler": sampler, "diffusers_scheduler": scheduler, "steps": steps, "repeats": repeats}
        for library, timings in by_library.items():
            summary = time_summary(timings)
            row[library] = {
                "ms_per_step": {k: round(1000 * v, 4) for k, v in summary["wall_s"].items()},
                "cpu_ms_per_step": {k: round(1000 * v, 4) for k, v in summary["cpu_s"].items()},
            }
        row["ratio"] = ratio_summary(by_library["diffusers"], by_library["simulacra"])
        r = row["ratio"]
        print(
            f"sampler only {sampler:>10} {steps:>5}: ms/step {row['diffusers']['ms_per_step']['median']:.4f} / "
            f"{row['simulacra']['ms_per_step']['median']:.4f}, ratio wall {r['wall']['median']:.2f} "
            f"({r['wall']['min']:.2f}-{r['wall']['max']:.2f}), CPU {r['cpu']['median']:.2f} "
            f"({r['cpu']['min']:.2f}-{r['cpu']['max']:.2f})"
        )
        rows.append(row)
    model.denoiser = network
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
