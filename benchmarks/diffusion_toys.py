"""Diffusion samplers on the 2-D toys: sample quality (MMD) and probability-flow NLL against the
number of sampler steps.

For each toy, one continuous-time VP score model (``score-sde``, TimeMLP 3 × 256, ε-prediction)
is trained with ``simulacra.train.fit`` (20,000 points, batch 512, Adam 1e-3, cosine decay, EMA
0.999). Then for each registered sampler and each number of grid points N in --steps:

* MMD² (Gaussian kernel, median bandwidth) between --n samples and --n fresh test points, with
  the same statistic between two independent data draws as the noise floor;
* the probability-flow NLL (nats, exact trace in 2-D) of 2,000 test points, the ODE integrated
  with N fixed Heun steps, and once with adaptive Dormand–Prince at 1e-5 as the reference.

The adaptive ``ode`` sampler ignores N (it chooses its own steps); it is reported once with its
number of network evaluations.

    python benchmarks/diffusion_toys.py --threads 1
    python benchmarks/diffusion_toys.py --toys moons --train-steps 500 --steps 5 20 --n 1000   # smoke test

Writes benchmarks/results/diffusion-toys.json and the plot benchmarks/results/diffusion-toys.png.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)

RESULTS = Path(__file__).resolve().parent / "results"


def count_calls(model) -> list[int]:
    """Wrap the model's denoiser to count network evaluations (per batch, not per example)."""
    calls = [0]
    net = model.denoiser
    forward = net.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    net.forward = counted
    return calls


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--toys", nargs="+", default=["moons", "8gaussians", "checkerboard"])
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 20, 50, 100, 1000])
    parser.add_argument("--samplers", nargs="+", default=None, help="default: every registered sampler")
    parser.add_argument("--train-steps", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=5000, help="samples (and test points) per MMD")
    parser.add_argument("--nll-n", type=int, default=2000, help="test points per NLL")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import simulacra.models  # noqa: F401
    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import load_dataset
    from simulacra.metrics.two_sample import mmd
    from simulacra.models.zoo import build_model
    from simulacra.samplers import SAMPLERS, resolve_sampler
    from simulacra.samplers.ode import log_prob
    from simulacra.train import EMA, fit

    samplers = args.samplers or list(SAMPLERS.names())
    report: dict = {"toys": {}}
    for toy in args.toys:
        data = load_dataset(DataConfig(name=toy, num_samples=20_000), seed=args.seed)
        fresh = load_dataset(DataConfig(name=toy, num_samples=2 * args.n), seed=args.seed + 1).train.x
        reference, floor_draw = fresh[: args.n], fresh[args.n : 2 * args.n]
        torch.manual_seed(args.seed)
        model = build_model({"name": "score-sde", "sde": "vp"}, data.info)
        config = TrainConfig(
            eval_every=0,
            steps=args.train_steps,
            batch_size=512,
            lr=1e-3,
            lr_schedule="cosine",
            log_every=10**9,
        )
        started = time.perf_counter()
        ema = EMA(0.999)
        fit(model, data, config, callbacks=[ema], progress=False)
        train_s = time.perf_counter() - started
        ema.swap()  # sample and score with the averaged weights
        model.eval()
        calls = count_calls(model)
        x_test = data.test.x[: args.nll_n]
        denoise = model.denoiser_fn()
        with torch.no_grad():
            floor = mmd(reference, floor_draw)
        rows: dict = {"train_seconds": round(train_s, 1), "mmd_floor": floor, "samplers": {}, "nll": {}}
        print(f"{toy}: trained {args.train_steps} steps in {train_s:.0f} s; MMD² floor {floor:.2e}")
        for name in samplers:
            per = {}
            for n_steps in [None] if name == "ode" else args.steps:
                g = torch.Generator().manual_seed(args.seed)
                calls[0] = 0
                started = time.perf_counter()
                x = model.sample(args.n, generator=g, sampler=resolve_sampler(name, steps=n_steps))
                seconds = time.perf_counter() - started
                value = mmd(x, reference) if bool(torch.isfinite(x).all()) else math.nan
                key = "adaptive" if n_steps is None else str(n_steps)
                per[key] = {"mmd": value, "seconds": round(seconds, 3), "evaluations": calls[0]}
                print(f"  {name:>15} {key:>8}: MMD² {value:.2e}  {seconds:6.2f} s  {calls[0]} evaluations")
            rows["samplers"][name] = per
        for n_steps in [*args.steps, None]:
            g = torch.Generator().manual_seed(args.seed)
            options = {"method": "dopri5"} if n_steps is None else {"method": "heun", "steps": n_steps}
            started = time.perf_counter()
            with torch.no_grad():  # (with gradients on, the whole trajectory's graph would be kept)
                lp = log_prob(denoise, model.process, x_test, trace="exact", generator=g, **options)
            nll = -lp
            key = "adaptive" if n_steps is None else str(n_steps)
            rows["nll"][key] = {
                "nll": float(nll.mean()),
                "stderr": float(nll.std() / math.sqrt(len(nll))),
                "seconds": round(time.perf_counter() - started, 2),
            }
            print(
                f"  PF-ODE NLL {key:>8}: {float(nll.mean()):.4f} ± {float(nll.std() / math.sqrt(len(nll))):.4f}"
            )
        report["toys"][toy] = rows
    report["settings"] = {
        "model": "score-sde, sde=vp, TimeMLP 3x256, eps-prediction",
        "train_steps": args.train_steps,
        "samples": args.n,
        "nll_points": args.nll_n,
    }
    write_record(report, RESULTS / "diffusion-toys.json")
    plot(report, RESULTS / "diffusion-toys.png")
    return 0


def plot(report: dict, path: Path) -> None:
    """MMD² against steps, one panel per toy, one line per sampler (the noise floor dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    toys = list(report["toys"])
    fig, axes = plt.subplots(1, len(toys), figsize=(4.2 * len(toys), 3.6), squeeze=False)
    for ax, toy in zip(axes[0], toys):
        rows = report["toys"][toy]
        for name, per in rows["samplers"].items():
            if "adaptive" in per:
                ax.axhline(per["adaptive"]["mmd"], color="grey", lw=0.8, ls=":", label=f"{name} (adaptive)")
                continue
            steps = sorted(int(k) for k in per)
            ax.plot(steps, [max(per[str(s)]["mmd"], 1e-6) for s in steps], marker="o", ms=3, label=name)
        ax.axhline(max(rows["mmd_floor"], 1e-6), color="k", ls="--", lw=0.8, label="data vs data")
        ax.set(xscale="log", yscale="log", xlabel="sampler steps", ylabel="MMD²", title=toy)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
