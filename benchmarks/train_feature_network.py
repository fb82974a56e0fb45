"""The feature network shipped with simulacra for MNIST-like images: a
:class:`~simulacra.metrics.fid.FeatureClassifier` trained by
:func:`~simulacra.metrics.fid.train_feature_classifier` (its default recipe: BatchNorm, 3×3 grid
pooling, 128 features, dropout, ±2-pixel shifts, AdamW with a one-cycle schedule) on the 60,000
MNIST training digits, then scored on the 10,000 test digits.

    python benchmarks/train_feature_network.py --epochs 10 --seed 0 --threads 1

Writes src/simulacra/metrics/networks/mnist.safetensors (``--output``) and mnist.json beside it:
the test accuracy, the command, seed, epochs and settings, the date, the machine (the processor
as lscpu names it), the torch version, the parameter count and the sha256 of the safetensors
file. ``simulacra evaluate|compare`` use this network for fid, kid, prdc and classes on 1×28×28
images when no ``--features`` is given (:func:`simulacra.metrics.fid.shipped_feature_network`).
Needs ``mnist.npz`` (``--data-dir``, default ../shared/data).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHIPPED = ROOT / "src" / "simulacra" / "metrics" / "networks" / "mnist.safetensors"


def processor() -> str:
    """The CPU's model name as ``lscpu`` gives it (``/proc/cpuinfo`` where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig
    from simulacra.metrics.fid import accuracy, save_feature_classifier, train_feature_classifier
    from simulacra.train.checkpoint import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="the one-cycle schedule's peak")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--convs", type=int, default=1, help="3×3 convolutions per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=SHIPPED, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_dataset(DataConfig("mnist", data_dir=str(args.data_dir), valid_fraction=0.0))
    assert data.test is not None and data.train.y is not None and data.test.y is not None
    torch.manual_seed(args.seed)  # the initial weights and dropout
    started = time.perf_counter()
    net = train_feature_classifier(
        data.train.x,
        data.train.y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        width=args.width,
        convs=args.convs,
        num_classes=10,
        generator=torch.Generator().manual_seed(args.seed),  # the order of the batches and the shifts
    )
    seconds = time.perf_counter() - started
    train_accuracy = accuracy(net, data.train.x, data.train.y)
    test_accuracy = accuracy(net, data.test.x, data.test.y)
    path = save_feature_classifier(net, args.output)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    command = "python " + " ".join(
        shlex.quote(a) for a in [str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]]
    )
    record = {
        "name": "simulacra MNIST classifier",
        "data": "MNIST: trained on the 60,000 training digits, scored on the 10,000 test digits",
        "image_shape": list(data.info.event_shape),
        "classes": 10,
        "test_accuracy": test_accuracy,
        "test_examples": len(data.test),
        "train_accuracy": train_accuracy,
        "train_examples": len(data.train),
        "command": command,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "recipe": "simulacra.metrics.fid.train_feature_classifier (its defaults but the settings above)",
        "architecture": net.config,
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": processor(),
        "torch": torch.__version__,
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha256,
    }
    atomic_write_json(path.with_suffix(".json"), record)
    print(json.dumps(record, indent=2))
    print(f"test accuracy {test_accuracy:.4f} after {args.epochs} epochs in {seconds / 60:.1f} min -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
