"""Autoregressive models on statically binarized MNIST: exact test NLL and sampling time.

Models (presets of ``Autoregressive(net, head)``, Bernoulli outputs):

* ``nade``: 500 sigmoid hidden units (Larochelle & Murray 2011); published 88.86 nats (as quoted
  by Germain et al. 2015, Table 6);
* ``made``: one hidden layer of 500 units (``--hidden``), 32 masks (orders and connectivities)
  resampled during training, log-likelihood averaged over the masks at test, direct
  input-to-output connections (``--no-direct`` drops them) (Germain et al. 2015: 86.64, with
  hidden layers of 8,000 units in their code's MNIST command);
* ``pixelcnn``: masked convolutions of type A and B (van den Oord et al. 2016: 81.30). The
  published network is far larger than a CPU hour allows; the default here is 32 channels and 5
  residual blocks (``--channels``/``--blocks`` change it).

Each model trains on the 50k training images for a budget of wall time (a short calibration
sets the number of steps of a cosine schedule; a TimeBudget stops training in any case), the
weights best on the 10k validation images are kept, and the exact NLL is computed on the 10k
test images. Then 64 samples are drawn with and without the network's incremental step (NADE's
O(D·H) recurrence; MADE and PixelCNN have none, so only the uncached time is reported).

    python benchmarks/autoregressive_binarized_mnist.py --model nade --minutes 60 --threads 1

Writes benchmarks/results/ar-<model>.json and .png (a grid of the samples) and
runs/bench/ar-<model>/ (checkpoint). ``--limit N`` trains on N images and scores N test images
(smoke tests).
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
from simulacra.data.info import Split
from simulacra.metrics.likelihood import evaluate_nll
from simulacra.models.autoregressive import IncrementalNet
from simulacra.viz.grids import save_examples

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {"nade": 88.86, "made": 86.64, "pixelcnn": 81.30}


def spec(args: argparse.Namespace) -> dict:
    if args.model == "nade":
        return {"name": "nade", "hidden": 500}
    if args.model == "made":
        return {
            "name": "made",
            "hidden": args.hidden,
            "num_masks": args.masks,
            "resample_order": not args.natural_order,
            "direct": args.direct,
        }
    return {"name": "pixelcnn", "channels": args.channels, "blocks": args.blocks, "kernel_size": 7}


def run_name(args: argparse.Namespace) -> str:
    """ar-<model>, and for MADE its departures from the defaults (ar-made-1-mask-natural-order...)."""
    name = f"ar-{args.model}"
    if args.model == "made":
        name += f"-{args.masks}-mask" if args.masks != 32 else ""
        name += "-natural-order" if args.natural_order else ""
        name += "" if args.hidden == [500] else "-" + "x".join(map(str, args.hidden))
        name += "" if args.direct else "-no-direct"
    return name + ("" if args.precision == "fp32" else f"-{args.precision}")


def sampling_seconds(model, n: int, cache: bool) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    x = model.sample(n, generator=torch.Generator().manual_seed(0), cache=cache)
    return time.perf_counter() - start, x


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(PUBLISHED), required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (wall minutes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="training steps' precision (train.precision)",
    )
    parser.add_argument("--masks", type=int, default=32, help="MADE: number of masks")
    parser.add_argument("--hidden", type=int, nargs="+", default=[500], help="MADE: hidden layer widths")
    parser.add_argument(
        "--direct",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="MADE: masked direct input-to-output connections (the preset's default)",
    )
    parser.add_argument(
        "--natural-order",
        action="store_true",
        help="MADE: every mask keeps the raster order (connectivity-agnostic training only)",
    )
    parser.add_argument("--channels", type=int, default=32, help="PixelCNN: feature maps")
    parser.add_argument("--blocks", type=int, default=5, help="PixelCNN: residual blocks")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--limit", type=int, default=None, help="train on and score only N images")
    parser.add_argument("--samples", type=int, default=64, help="samples to draw and time")
    parser.add_argument("--eval-every-epochs", type=float, default=1.0)
    parser.add_argument(
        "--valid-n", type=int, default=2000, help="validation images scored to keep the best weights"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default runs/bench/ar-<model>)")
    parser.add_argument(
        "--results", default=None, help="JSON to write (default benchmarks/results/ar-<model>.json)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    name = run_name(args)
    run_dir = Path(args.out or ROOT / "runs" / "bench" / name)
    results = Path(args.results or ROOT / "benchmarks" / "results" / f"{name}.json")
    if run_dir.exists() and not args.overwrite:
        raise SystemExit(f"{run_dir} exists; pass --overwrite to replace it")
    source = DataConfig("binarized-mnist", data_dir=args.data_dir, valid_fraction=0.0, limit=args.limit)
    data = load_dataset(source, seed=args.seed)
    data.valid = Split(data.valid.x[: args.valid_n])
    if args.limit is not None:  # smoke test: small held-out splits as well
        data.valid = Split(data.valid.x[: args.limit])
        data.test = Split(data.test.x[: args.limit])
    print(f"{name}: {len(data.train)} train, {len(data.valid)} valid, {len(data.test)} test; {machine()}")

    model_spec = spec(args)
    steps_per_epoch = max(1, len(data.train) // args.batch_size)
    eval_every = max(1, int(args.eval_every_epochs * steps_per_epoch))
    steps, step_seconds, eval_seconds = plan_budget(
        model_spec,
        data,
        args.batch_size,
        args.minutes,
        calibration_steps=5 if args.minutes < 1 else 50,
        validation=True,
        eval_every=eval_every,
        precision=args.precision,
    )
    eval_every = min(eval_every, steps)
    print(
        f"calibration: {1 / step_seconds:.2f} steps/s, {eval_seconds:.1f} s per validation pass "
        f"-> {steps} steps = {steps / steps_per_epoch:.1f} epochs"
    )
    config = cosine_config(
        steps,
        args.batch_size,
        args.lr,
        args.seed,
        eval_every=eval_every,
        keep_best=True,  # end on the weights best on valid (no early stopping)
        log_every=max(1, min(500, steps // 10)),
        checkpoint_every=10 * eval_every,
        precision=args.precision,
    )
    model, result = fit_on_budget(model_spec, data, source, config, run_dir, args.minutes)
    print(
        f"trained {result.steps} steps in {result.wall_time / 60:.1f} min; best valid {result.best_valid_loss}"
    )

    model.eval()
    start = time.perf_counter()
    nll = evaluate_nll(model, data.test.x, generator=torch.Generator().manual_seed(args.seed))["nll"]
    eval_seconds = time.perf_counter() - start
    print(f"test NLL {nll} ({eval_seconds:.0f} s)")
    uncached, x = sampling_seconds(model, args.samples, cache=False)
    cached = None
    if isinstance(model.net, IncrementalNet):
        cached, x_cached = sampling_seconds(model, args.samples, cache=True)
        if not torch.equal(x, x_cached):
            print("warning: cached and uncached samples differ")
    print(
        f"sampling {args.samples}: uncached {uncached:.1f} s, cached {cached if cached is None else round(cached, 2)} s"
    )
    save_examples(x, data.info, results.with_suffix(".png"))

    published = PUBLISHED[args.model]
    record = {
        "benchmark": name,
        "model": model_spec,
        "data": "binarized-mnist (Larochelle, static)",
        "test_nll": nll.value,
        "test_nll_stderr": nll.stderr,
        "estimator": nll.estimator,
        "published_nll": published,
        "gap_to_published": nll.value - published,
        "eval_n": nll.n,
        "eval_seconds": round(eval_seconds, 1),
        "steps": result.steps,
        "epochs": round(result.steps / steps_per_epoch, 2),
        "train_minutes": round(result.wall_time / 60, 2),
        "examples_per_s": round(result.examples_per_s, 1),
        "best_valid_loss": result.best_valid_loss,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "precision": args.precision,
        "sample_n": args.samples,
        "sample_seconds_uncached": round(uncached, 3),
        "sample_seconds_cached": None if cached is None else round(cached, 3),
        "samples_png": results.with_suffix(".png").name,
        "limit": args.limit,
    }
    write_record(record, results)
    return 0 if math.isfinite(nll.value) else 1


if __name__ == "__main__":
    sys.exit(main())
