"""Where the time of the importance-sampled NLL goes, and how it depends on the chunk size.

Trains the Burda et al. VAE (784-200-200-50, tanh, Bernoulli) for ``--steps`` steps on statically
binarized MNIST, then times ``importance_sampled_log_likelihood`` (k = ``--k``) on ``--n`` test
images for each ``max_elements`` from 2^16 to 2^23 (best and median of 3), and profiles one call
at the default chunk size with the torch profiler (operators by self CPU time).

    python benchmarks/isnll_profile.py --threads 1 --n 400 --k 500

Writes benchmarks/results/isnll-profile.json (or ``--results``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)
from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.metrics.likelihood import chunk_sizes, importance_sampled_log_likelihood
from simulacra.models.zoo import build_model
from simulacra.train import fit

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--steps", type=int, default=3000, help="training steps of the scored VAE (batch 100)"
    )
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--results", default=str(HERE / "results" / "isnll-profile.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig("binarized-mnist", data_dir=args.data_dir, valid_fraction=0.0))
    torch.manual_seed(0)
    spec = {"name": "vae", "hidden": [200, 200], "latent_dim": 50, "activation": "tanh"}
    model = build_model(spec, data.info)
    config = TrainConfig(eval_every=0, steps=args.steps, batch_size=100, lr=1e-3, log_every=10**9)
    fit(model, data, config, progress=False)
    model.eval()
    x = data.test.x[: args.n]

    def estimate(max_elements: int | None) -> None:
        importance_sampled_log_likelihood(
            model,
            x,
            num_samples=args.k,
            max_elements=max_elements,
            generator=torch.Generator().manual_seed(0),
        )

    sweep = []
    for power in range(16, 24):
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            estimate(2**power)
            seconds.append(time.perf_counter() - started)
        b, k = chunk_sizes(args.n, x[0].numel(), args.k, 2**power)
        sweep.append({"max_elements": f"2^{power}", "examples_per_call": b, "samples_per_call": k,
                      "best_s": min(seconds), "median_s": statistics.median(seconds)})  # fmt: skip
        print(
            f"max_elements 2^{power}: B={b}, K={k}: best {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s"
        )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        estimate(None)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    operators = [
        {"name": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total,
         "calls": e.count}
        for e in events[:15]
    ]  # fmt: skip
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    record = {"benchmark": "isnll-profile", "threads": args.threads, "n": args.n, "k": args.k,
              "train_steps": args.steps, "sweep": sweep, "profile_default_chunk": operators}  # fmt: skip
    write_record(record, Path(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
