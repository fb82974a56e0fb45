"""Multi-scale image flows on dequantized MNIST: RealNVP (Dinh et al. 2017) and Glow (Kingma & Dhariwal 2018).

Data: grey-level MNIST (60k train, 10k test, 256 levels), dequantized (uniform: y = (k + u)/256, or
variational: Flow++'s learned q(u | x)) and mapped to the real line by the logit step inside the
flow, so the reported number is the dequantization bound on the *discrete* data,

    bits/dim = −E_q[log p(y) − log q(y | x)] / (784 ln 2)       (one draw of y per test image),

with its standard error over the test images. Published (same convention, much larger models
and long GPU training), as collected in FFJORD (Grathwohl et al. 2019), Table 2: RealNVP 1.06,
Glow 1.05 bits/dim.

The run gets a budget of wall time on a fixed number of threads: a short calibration measures
the step rate and sets the number of steps (the cosine learning-rate schedule anneals over them);
a TimeBudget callback stops training at the budget in any case.

    python benchmarks/mnist_flows.py --model glow --minutes 60 --threads 1
    python benchmarks/mnist_flows.py --model realnvp --minutes 60 --threads 1
    python benchmarks/mnist_flows.py --model glow --dequantization variational --minutes 60
    python benchmarks/mnist_flows.py --model glow --minutes 0.5 --limit 512 --eval-n 256   # smoke test

Writes benchmarks/results/mnist-<model>[-variational].json (or --results), and the run directory
runs/bench/mnist-<model>[-variational]/ with the checkpoint and a grid of samples (samples.png).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from _machine import cosine_config, fit_on_budget, machine, plan_budget, write_record  # noqa: E402  (benchmarks/ is on sys.path when run)
from simulacra.config import DataConfig
from simulacra.data import load_dataset
from simulacra.metrics.likelihood import Estimate
from simulacra.viz.grids import save_examples

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {"realnvp": 1.06, "glow": 1.05}


def spec(args: argparse.Namespace) -> dict:
    """The preset and its settings (multi-scale, 2 squeezes: 28 -> 14 -> 7)."""
    if args.model == "glow":
        return {
            "name": "glow",
            "levels": 2,
            "steps": args.steps,
            "hidden": args.hidden,
            "dequantization": args.dequantization,
        }
    return {
        "name": "realnvp",
        "architecture": "multiscale",
        "levels": 2,
        "transforms": args.steps,
        "hidden": [args.hidden, args.hidden],
        "dequantization": args.dequantization,
    }


@torch.no_grad()
def test_bits_per_dim(model, x: torch.Tensor, batch_size: int, seed: int) -> Estimate:
    """Per-image bits/dim −(log p(y) − log q(y | x)) / (D ln 2), one dequantization draw each."""
    torch.manual_seed(seed)
    d = math.prod(x.shape[1:])
    log_p = torch.cat([model.log_prob(xb) for xb in x.split(batch_size)])
    return Estimate.from_values(-log_p / (d * math.log(2)), model.likelihood_estimator, "bits/dim")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["glow", "realnvp"], default="glow")
    parser.add_argument("--dequantization", choices=["uniform", "variational"], default="uniform")
    parser.add_argument(
        "--steps", type=int, default=None, help="glow: steps per level (4); realnvp: couplings per block (3)"
    )
    parser.add_argument("--hidden", type=int, default=64, help="hidden channels of the coupling networks")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (wall minutes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grad-clip", type=float, default=None, help="clip the global gradient norm")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--limit", type=int, default=None, help="train on the first LIMIT images only (smoke tests)"
    )
    parser.add_argument("--eval-n", type=int, default=10000, help="test images to evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default runs/bench/NAME)")
    parser.add_argument("--results", default=None, help="results JSON (default benchmarks/results/NAME.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 4 if args.model == "glow" else 3

    torch.set_num_threads(args.threads)
    name = f"mnist-{args.model}" + ("-variational" if args.dequantization == "variational" else "")
    run_dir = Path(args.out or ROOT / "runs" / "bench" / name)
    if run_dir.exists() and not args.overwrite:
        raise SystemExit(f"{run_dir} exists; pass --overwrite to replace it")
    data = load_dataset(
        source := DataConfig("mnist", data_dir=args.data_dir, valid_fraction=0.0, limit=args.limit),
        seed=args.seed,
    )
    print(f"{name}: {len(data.train)} train, {len(data.test)} test; {machine()}")

    steps, step_seconds, _ = plan_budget(
        spec(args),
        data,
        args.batch_size,
        args.minutes,
        calibration_steps=10 if args.minutes < 2 else 30,
        warmup=5,
        margin=0.97,
    )
    rate = 1 / step_seconds
    steps_per_epoch = max(1, len(data.train) // args.batch_size)
    print(f"calibration: {rate:.2f} steps/s -> {steps} steps = {steps / steps_per_epoch:.1f} epochs")
    config = cosine_config(
        steps,
        args.batch_size,
        args.lr,
        args.seed,
        grad_clip=args.grad_clip,
        log_every=max(1, min(200, steps // 10)),
        checkpoint_every=max(1, steps // 4),
    )
    model, result = fit_on_budget(spec(args), data, source, config, run_dir, args.minutes)
    print(f"trained {result.steps} steps in {result.wall_time / 60:.1f} min")

    model.eval()
    x = data.test.x[: args.eval_n]
    start = time.perf_counter()
    bpd = test_bits_per_dim(model, x, 500, args.seed)
    eval_seconds = time.perf_counter() - start
    print(f"test bits/dim {bpd}  ({eval_seconds:.0f} s)")
    samples = model.sample(64, generator=torch.Generator().manual_seed(args.seed))
    save_examples(samples, data.info, run_dir / "samples.png", nrow=8)

    published = PUBLISHED[args.model]
    record = {
        "benchmark": name,
        "model": spec(args),
        "parameters": sum(p.numel() for p in model.parameters()),
        "estimator": bpd.estimator,
        "test_bpd": bpd.value,
        "test_bpd_stderr": bpd.stderr,
        "published_bpd": published,
        "gap_to_published": bpd.value - published,
        "eval_n": bpd.n,
        "eval_seconds": round(eval_seconds, 1),
        "train_images": len(data.train),
        "steps": result.steps,
        "epochs": round(result.steps / steps_per_epoch, 2),
        "train_minutes": round(result.wall_time / 60, 2),
        "examples_per_s": round(result.examples_per_s, 1),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "samples": str(run_dir / "samples.png"),
    }
    write_record(
        record, Path(args.results) if args.results else ROOT / "benchmarks" / "results" / f"{name}.json"
    )
    return 0 if math.isfinite(bpd.value) else 1


if __name__ == "__main__":
    sys.exit(main())
