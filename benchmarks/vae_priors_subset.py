"""The importance-sampled NLL of the trained `vae_priors.py` runs on the images and k of the LSGM
PF-ODE column (first --n test images, k = --k, seed 0), for a like-for-like comparison.

    python benchmarks/vae_priors_subset.py runs/bench/priors-normal runs/bench/priors-vamp runs/bench/priors-maf
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from simulacra.config import DataConfig
from simulacra.data import load_dataset
from simulacra.metrics.likelihood import Estimate, importance_sampled_log_likelihood
from simulacra.train.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(DataConfig("binarized-mnist", data_dir=args.data_dir, valid_fraction=0.0), seed=0)
    out = {}
    for run in args.runs:
        model = load_model(run).eval()
        g = torch.Generator().manual_seed(0)
        log_p = importance_sampled_log_likelihood(
            model, data.test.x[: args.n], num_samples=args.k, generator=g
        )
        e = Estimate.from_values(-log_p, f"IWAE k={args.k}, first {args.n} test images", "nats")
        out[run] = {"value": e.value, "stderr": e.stderr, "estimator": e.estimator}
        print(run, e)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
