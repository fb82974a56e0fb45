"""Training diffusion models for likelihood on the 2-D toys: the ε loss against the likelihood
weighting, with uniform and importance-sampled times (Song et al. 2021b).

For each toy, recipe and seed: a continuous-time VP score model (``score-sde``, t_min = 10⁻⁵,
TimeMLP 3 × 256, ε-prediction) trained with ``simulacra.train.fit`` on 20,000 points (batch 512,
Adam 1e-3 with cosine decay, EMA 0.999), then scored with the EMA weights:

* NLL (nats) of --nll-n test points through the probability-flow ODE (exact trace, adaptive
  Dormand–Prince at 10⁻⁵);
* MMD² (Gaussian kernel, median bandwidth) of --n samples (DPM-Solver++ 20 steps) against --n
  fresh points, beside the floor of two data draws.

Recipes: ``eps`` (w = 1, t uniform), ``likelihood`` (w = g²/2σ², t uniform), ``likelihood-is``
(w = g²/2σ², log-SNR uniform: the constant-weight estimator of the same loss).

    python benchmarks/diffusion_likelihood_toys.py --threads 1
    python benchmarks/diffusion_likelihood_toys.py --toys moons --seeds 0 --train-steps 200 --nll-n 200 --n 500   # smoke

Writes benchmarks/results/diffusion-likelihood-toys.json.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)

RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = {
    "eps": {},
    "likelihood": {"weighting": "likelihood"},
    "likelihood-is": {"weighting": "likelihood", "time_sampling": "importance"},
}


def run(toy: str, recipe: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one model and score it; a row of the table."""
    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import load_dataset
    from simulacra.metrics.two_sample import mmd
    from simulacra.models.zoo import build_model
    from simulacra.samplers import DPMSolver
    from simulacra.train import EMA, fit

    data = load_dataset(DataConfig(name=toy, num_samples=20_000), seed=seed)
    fresh = load_dataset(DataConfig(name=toy, num_samples=args.n), seed=seed + 100).train.x[: args.n]
    torch.manual_seed(seed)
    spec = {"name": "score-sde", "sde": "vp", "t_min": 1e-5, **RECIPES[recipe]}
    model = build_model(spec, data.info)
    config = TrainConfig(
        eval_every=0, steps=args.train_steps, batch_size=512, lr=1e-3, lr_schedule="cosine", log_every=10**9,
        seed=seed,
    )  # fmt: skip
    ema = EMA(0.999)
    started = time.perf_counter()
    fit(model, data, config, callbacks=[ema], progress=False)
    train_s = time.perf_counter() - started
    ema.swap()
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x_test = data.test.x[: args.nll_n]
    started = time.perf_counter()
    with torch.no_grad():
        nll = -model.log_prob(x_test, generator=g).double()
        samples = model.sample(args.n, generator=g, sampler=DPMSolver(steps=20))
    return {
        "nll": float(nll.mean()),
        "nll_stderr": float(nll.std() / math.sqrt(len(nll))),
        "mmd": float(mmd(samples, fresh)),
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--toys", nargs="+", default=["moons", "8gaussians", "checkerboard"])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-steps", type=int, default=4000)
    parser.add_argument("--n", type=int, default=2000, help="samples (and fresh points) per MMD")
    parser.add_argument("--nll-n", type=int, default=2000, help="test points per NLL")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(RESULTS / "diffusion-likelihood-toys.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import simulacra.models  # noqa: F401

    report: dict = {"toys": {}}
    for toy in args.toys:
        report["toys"][toy] = {}
        for recipe in args.recipes:
            rows = [run(toy, recipe, seed, args) for seed in args.seeds]
            nlls = [r["nll"] for r in rows]
            summary = {
                "nll_median": statistics.median(nlls),
                "nll_range": [min(nlls), max(nlls)],
                "mmd_median": statistics.median(r["mmd"] for r in rows),
                "runs": rows,
            }
            report["toys"][toy][recipe] = summary
            print(
                f"{toy:>12} {recipe:>14}: NLL {summary['nll_median']:.3f} nats ({min(nlls):.3f}–{max(nlls):.3f}), "
                f"MMD² {summary['mmd_median']:.2e}, {rows[0]['train_seconds']:.0f} s training",
                flush=True,
            )
    report["settings"] = {
        "model": "score-sde, VP, t_min 1e-5, TimeMLP 3x256, eps-prediction",
        "train_steps": args.train_steps,
        "seeds": args.seeds,
        "nll_points": args.nll_n,
        "mmd_points": args.n,
    }
    write_record(report, Path(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
