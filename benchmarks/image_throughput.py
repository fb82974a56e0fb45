"""Training throughput of the image presets at their default sizes on 28×28 images: the figure a
user needs to choose a preset and a length on their machine.

    python benchmarks/image_throughput.py                 # this machine's CPU, its threads
    python benchmarks/image_throughput.py --accelerator   # the sizes used with --device cuda

For each preset: build it at its default settings (or the accelerator's defaults) for MNIST-shaped
data (1×28×28, 256 grey levels), then time optimizer steps of the default batch (128) through
:func:`simulacra.train.budget.calibrate`, the same timing ``--minutes`` plans with. Reports
examples/s (median and range of the repeats), seconds per MNIST epoch (60,000 images) and
parameters. The images are random grey levels: a step's cost does not depend on the values.
Writes ``benchmarks/results/image-throughput[-accelerator].json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import write_record  # noqa: E402

PRESETS = ("ddpm", "score-sde", "pixelcnn", "gated-pixelcnn", "glow", "conv-vae")


def _mnist_shaped(n: int, seed: int) -> object:
    from simulacra.data.info import DataInfo, Dataset, Split

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255
    info = DataInfo(event_shape=(1, 28, 28), support="unit", levels=256)
    return Dataset(name="mnist-shaped", info=info, train=Split(x), valid=None, test=Split(x[:64]))


def main(argv: list[str] | None = None) -> int:
    from simulacra.config import TrainConfig
    from simulacra.models.zoo import MODELS, build_model
    from simulacra.train.budget import calibrate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    parser.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (default 3)")
    parser.add_argument("--accelerator", action="store_true", help="the accelerator's default sizes")
    parser.add_argument("--device", default="cpu", help="where to time (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = _mnist_shaped(4 * args.batch_size, seed=0)
    config = TrainConfig(batch_size=args.batch_size, device=args.device)
    rows = {}
    for name in args.presets.split(","):
        if name not in MODELS:
            print(f"skipping unknown preset {name!r}")
            continue
        torch.manual_seed(0)
        model = build_model(name, data.info, accelerator=args.accelerator).to(args.device)
        rates = []
        for _ in range(args.repeats):
            seconds = calibrate(model, data, config, steps=args.steps, warmup=2).step_seconds
            rates.append(args.batch_size / seconds)
        median = statistics.median(rates)
        rows[name] = {
            "examples_per_s": round(median, 1),
            "range": [round(min(rates), 1), round(max(rates), 1)],
            "mnist_epoch_minutes": round(60000 / median / 60, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "settings": {k: v for k, v in model.spec.items() if k != "name"},
        }
        print(
            f"{name:15s} {median:8.1f} examples/s  ({rows[name]['mnist_epoch_minutes']} min per MNIST epoch)"
        )
    suffix = "-accelerator" if args.accelerator else ""
    write_record(
        {
            "what": "training examples/s at default sizes on 1x28x28 images, batch "
            f"{args.batch_size}, median and range of {args.repeats} repeats of {args.steps} steps",
            "device": args.device,
            "presets": rows,
        },
        HERE / "results" / f"image-throughput{suffix}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
