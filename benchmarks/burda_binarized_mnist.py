"""Burda et al. (2016), one stochastic layer, on statically binarized MNIST.

Architecture (their Sec. 5): encoder 784-200-200-(50 mean, 50 std), decoder 50-200-200-784,
tanh, Bernoulli likelihood, N(0, I) prior. Trained on the 50k train split with the ELBO (VAE)
or the IWAE bound with k samples, the checkpoint chosen on the 10k valid split, and the test
NLL estimated by importance sampling with k = 5000 on all 10k test images.

Published (dynamic binarization, 3280 passes): VAE 86.76, IWAE k=5 85.54, k=50 84.78 nats.

The run gets a budget of wall time on a fixed number of threads: a short calibration measures
the step rate on this machine and sets the number of steps (the cosine learning-rate schedule
anneals over them); a TimeBudget callback stops training at the budget in any case.

    python benchmarks/burda_binarized_mnist.py --k 1 --minutes 60 --threads 1   # VAE
    python benchmarks/burda_binarized_mnist.py --k 5 --minutes 60 --threads 1   # IWAE k=5

Writes benchmarks/results/burda-k{K}.json and runs/bench/burda-k{K}/ (checkpoint, samples).
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
from simulacra.metrics.likelihood import Estimate, importance_sampled_log_likelihood
from simulacra.viz.grids import save_examples

ROOT = Path(__file__).resolve().parents[1]


def spec(k: int) -> dict:
    return {"name": "vae", "hidden": [200, 200], "latent_dim": 50, "activation": "tanh", "num_samples": k}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--k", type=int, default=1, help="1: VAE (ELBO); k > 1: IWAE with k samples")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (wall minutes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--eval-k", type=int, default=5000)
    parser.add_argument("--eval-n", type=int, default=10000)
    parser.add_argument("--eval-every-epochs", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="the published protocol instead: grey MNIST with a fresh binarization of every batch "
        "(valid/test: one fixed draw of 10k held-out train images / the 10k test images)",
    )
    parser.add_argument("--out", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    name = f"burda-k{args.k}" + ("-dynamic" if args.dynamic else "")
    run_dir = Path(args.out or ROOT / "runs" / "bench" / name)
    if run_dir.exists() and not args.overwrite:
        raise SystemExit(f"{run_dir} exists; pass --overwrite to replace it")
    if args.dynamic:
        source = DataConfig("mnist", data_dir=args.data_dir, valid_fraction=1 / 6, binarize="dynamic")
    else:
        source = DataConfig("binarized-mnist", data_dir=args.data_dir, valid_fraction=0.0)
    data = load_dataset(source, seed=args.seed)
    print(f"{name}: {len(data.train)} train, {len(data.valid)} valid, {len(data.test)} test; {machine()}")

    # leave ~4% of the budget for the periodic validation passes
    steps, step_seconds, _ = plan_budget(
        spec(args.k), data, args.batch_size, args.minutes, calibration_steps=300, warmup=20, margin=0.96
    )
    rate = 1 / step_seconds
    steps_per_epoch = len(data.train) // args.batch_size
    eval_every = max(1, int(args.eval_every_epochs * steps_per_epoch))
    print(f"calibration: {rate:.1f} steps/s -> {steps} steps = {steps / steps_per_epoch:.0f} epochs")

    config = cosine_config(
        steps,
        args.batch_size,
        args.lr,
        args.seed,
        max_warmup=1000,
        eval_every=eval_every,
        keep_best=True,  # end on the weights best on valid (no early stopping)
        log_every=1000,
        checkpoint_every=20 * eval_every,
    )
    model, result = fit_on_budget(spec(args.k), data, source, config, run_dir, args.minutes)
    print(
        f"trained {result.steps} steps in {result.wall_time / 60:.1f} min; best valid loss {result.best_valid_loss}"
    )

    model.eval()
    x = data.test.x[: args.eval_n]
    g = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    log_p = importance_sampled_log_likelihood(model, x, num_samples=args.eval_k, generator=g)
    eval_seconds = time.perf_counter() - start
    nll = Estimate.from_values(-log_p, f"IWAE k={args.eval_k}", "nats")
    with torch.no_grad():
        elbo = torch.cat([model.log_prob_bound(xb, generator=g) for xb in x.split(1000)])
    elbo_nll = Estimate.from_values(-elbo, "ELBO", "nats")
    print(f"test NLL {nll}  ({eval_seconds:.0f} s);  test -ELBO {elbo_nll}")
    save_examples(
        model.sample(64, generator=torch.Generator().manual_seed(0)), data.info, run_dir / "samples.png"
    )

    published = {1: 86.76, 5: 85.54, 50: 84.78}.get(args.k)
    record = {
        "benchmark": name,
        "objective": "ELBO (VAE)" if args.k == 1 else f"IWAE k={args.k}",
        "binarization": "dynamic (grey MNIST, fresh draw per batch)"
        if args.dynamic
        else "static (Larochelle)",
        "test_nll": nll.value,
        "test_nll_stderr": nll.stderr,
        "test_neg_elbo": elbo_nll.value,
        "published_nll": published,
        "gap_to_published": None if published is None else nll.value - published,
        "eval_k": args.eval_k,
        "eval_n": len(x),
        "eval_seconds": round(eval_seconds, 1),
        "steps": result.steps,
        "epochs": round(result.steps / steps_per_epoch, 1),
        "train_minutes": round(result.wall_time / 60, 1),
        "examples_per_s": round(result.examples_per_s, 1),
        "best_valid_loss": result.best_valid_loss,
        "batch_size": args.batch_size,
        "lr": args.lr,
    }
    write_record(record, ROOT / "benchmarks" / "results" / f"{name}.json")
    return 0 if math.isfinite(nll.value) else 1


if __name__ == "__main__":
    sys.exit(main())
