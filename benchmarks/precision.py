"""bf16 autocast and torch.compile against float32 training, in the same wall time (issue 19).

Trains one preset (default: Burda et al.'s VAE, 784-200-200-50 tanh, on statically binarized
MNIST, batch 100, Adam 1e-3 with a cosine decay) for ``--minutes`` of wall time in each mode of
``--modes`` — ``fp32``, ``bf16`` (``train.precision``), ``compile`` (``train.compile``, inductor;
the compilation counts against the budget) — in turn, with the same seed and the same planned
number of steps; then scores each on ``--n`` test images with the importance-sampled NLL (k =
``--k``, in float32 whatever the training precision). Reports steps/s and the NLL.

    python benchmarks/precision.py --threads 1 --minutes 4

Writes benchmarks/results/precision.json (or ``--results``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)
from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.metrics.likelihood import importance_sampled_log_likelihood
from simulacra.models.zoo import build_model
from simulacra.train import TimeBudget, fit
from simulacra.train.precision import bf16_supported

HERE = Path(__file__).resolve().parent
MODES = {"fp32": {}, "bf16": {"precision": "bf16"}, "compile": {"compile": True}}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=100_000, help="planned steps (the cosine's length)")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["fp32", "bf16"])
    parser.add_argument(
        "--spec", default='{"name": "vae", "hidden": [200, 200], "latent_dim": 50, "activation": "tanh"}'
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--data", default="binarized-mnist", help="a dataset name (mnist for the image presets)"
    )
    parser.add_argument("--n", type=int, default=2000, help="test images scored (0: steps/s only)")
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--results", default=str(HERE / "results" / "precision.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = json.loads(args.spec)
    data = load_dataset(DataConfig(args.data, data_dir=args.data_dir, valid_fraction=0.0))
    x = data.test.x[: args.n]
    rows = []
    for mode in args.modes:
        torch.manual_seed(0)
        model = build_model(spec, data.info)
        config = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, lr=1e-3, lr_schedule="cosine", eval_every=0,
            log_every=10**9, seed=0, **MODES[mode],
        )  # fmt: skip
        started = time.perf_counter()
        result = fit(model, data, config, callbacks=[TimeBudget(args.minutes * 60)], progress=False)
        seconds = time.perf_counter() - started
        row = {"mode": mode, "steps": result.steps, "seconds": seconds, "steps_per_s": result.steps / seconds}
        if args.n > 0:  # the VAE family's importance-sampled NLL, in float32
            log_p = importance_sampled_log_likelihood(
                model, x, num_samples=args.k, generator=torch.Generator().manual_seed(0)
            )
            row.update(test_nll=float(-log_p.mean()), test_nll_se=float(log_p.std() / len(log_p) ** 0.5))
        rows.append(row)
        print(f"{mode:8s}: {row['steps']} steps in {seconds:.0f} s ({row['steps_per_s']:.2f} steps/s)")
        if args.n > 0:
            print(
                f"          test NLL {row['test_nll']:.2f} ± {row['test_nll_se']:.2f} nats (k={args.k}, n={len(x)})"
            )
    record = {
        "benchmark": "precision",
        "spec": spec,
        "data": args.data,
        "minutes": args.minutes,
        "threads": args.threads,
        "bf16_matrix_instructions": bf16_supported(torch.device("cpu")),
        "runs": rows,
    }
    write_record(record, Path(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
