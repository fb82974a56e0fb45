"""simulacra against pythae, side by side in one run, on the Burda et al. VAE.

Architecture 784-200-200-50 (tanh, Bernoulli), statically binarized MNIST, batch 100, Adam 1e-3,
the same number of threads for both. Two measurements:

1. Training throughput (examples/s): simulacra's ``fit`` (in-memory batches by index slicing)
   against pythae's ``BaseTrainer`` (a DataLoader collating item by item), over whole epochs.
2. Importance-sampled NLL with k samples on the MNIST test images: simulacra's batched
   ``importance_sampled_log_likelihood`` against pythae's ``VAE.get_nll`` (image by image), on
   the SAME weights (exported from a simulacra checkpoint into pythae's networks), so the two
   estimates must also agree within Monte Carlo error.

pythae needs a virtual environment of its own (it pins the old ``dataclasses`` backport)::

    python -m venv /tmp/pythae-venv
    /tmp/pythae-venv/bin/pip install -c constraints.txt pythae
    python benchmarks/pythae_comparison.py --pythae-python /tmp/pythae-venv/bin/python \\
        --run runs/bench/burda-k1 --threads 2

Writes benchmarks/results/pythae-comparison.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.metrics.likelihood import importance_sampled_log_likelihood
from simulacra.models.zoo import build_model
from simulacra.train import fit
from simulacra.train.checkpoint import load_model

HERE = Path(__file__).resolve().parent
SPEC = {"name": "vae", "hidden": [200, 200], "latent_dim": 50, "activation": "tanh"}


def pythae(python: str, *args: str) -> dict:
    done = subprocess.run(
        [python, str(HERE / "_pythae_side.py"), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"pythae side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_linears(model: nn.Module, path: Path) -> None:
    """The encoder's and decoder's Linear layers, in order, as enc{i}_w/b and dec{i}_w/b."""
    arrays = {}
    for prefix, part in (("enc", model.encoder), ("dec", model.decoder)):
        linears = [m for m in part.modules() if isinstance(m, nn.Linear)]
        if len(linears) != 3:
            raise SystemExit(f"expected 3 Linear layers in the {prefix}oder, found {len(linears)}")
        for i, layer in enumerate(linears):
            arrays[f"{prefix}{i}_w"] = layer.weight.detach().cpu().numpy()
            arrays[f"{prefix}{i}_b"] = layer.bias.detach().cpu().numpy()
    np.savez(path, **arrays)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pythae-python", required=True, help="python of a virtual environment with pythae")
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument(
        "--run", default=None, help="a trained simulacra run of SPEC (else: the throughput model)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    npz = str(Path(args.data_dir) / "binarized_mnist.npz")
    data = load_dataset(DataConfig("binarized-mnist", data_dir=args.data_dir, valid_fraction=0.0))
    common = ["--data", npz, "--threads", str(args.threads), "--batch-size", str(args.batch_size)]

    # 1. training throughput, whole epochs after one untimed warm-up epoch each
    torch.manual_seed(0)
    model = build_model(SPEC, data.info)
    steps = len(data.train) // args.batch_size
    config = TrainConfig(eval_every=0, steps=steps, batch_size=args.batch_size, lr=1e-3, log_every=10**9)
    fit(model, data, config, progress=False)
    config.steps = args.epochs * steps
    ours = fit(model, data, config, progress=False)
    theirs = pythae(args.pythae_python, "train", *common, "--epochs", str(args.epochs))
    train = {
        "simulacra_examples_per_s": ours.examples_per_s,
        "pythae_examples_per_s": theirs["examples_per_s"],
        "ratio": ours.examples_per_s / theirs["examples_per_s"],
        "epochs": args.epochs,
    }
    print(
        f"training: simulacra {ours.examples_per_s:,.0f} ex/s, pythae {theirs['examples_per_s']:,.0f} ex/s, "
        f"ratio {train['ratio']:.2f}"
    )

    # 2. importance-sampled NLL on shared weights
    if args.run:
        model = load_model(args.run)
    model.eval()
    x = data.test.x[: args.n]
    start = time.perf_counter()
    log_p = importance_sampled_log_likelihood(
        model, x, num_samples=args.k, generator=torch.Generator().manual_seed(0)
    )
    ours_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.npz"
        export_linears(model, weights)
        theirs = pythae(
            args.pythae_python,
            "nll",
            *common,
            "--weights",
            str(weights),
            "--k",
            str(args.k),
            "--n",
            str(args.n),
        )
    nll = {
        "simulacra_seconds": ours_s,
        "pythae_seconds": theirs["seconds"],
        "speed_ratio": theirs["seconds"] / ours_s,
        "simulacra_nll": float(-log_p.mean()),
        "simulacra_nll_stderr": float(log_p.std() / len(log_p) ** 0.5),
        "pythae_nll": -theirs["nll"],  # pythae's get_nll returns the mean log-likelihood
        "k": args.k,
        "n": len(x),
        "weights": args.run or "throughput model",
    }
    print(
        f"IS-NLL k={args.k}, n={len(x)}: simulacra {ours_s:.1f} s ({nll['simulacra_nll']:.2f} nats), "
        f"pythae {theirs['seconds']:.1f} s ({nll['pythae_nll']:.2f} nats), ratio {nll['speed_ratio']:.1f}x"
    )

    record = {
        "train": train,
        "nll": nll,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "pythae": theirs.get("pythae"),
        "torch": torch.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python " + " ".join(sys.argv),
    }
    out = HERE / "results" / "pythae-comparison.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
