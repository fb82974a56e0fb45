"""``simulacra features train --data NAME|PATH -o FILE.safetensors``: a feature network for the
image metrics (FID, KID, precision/recall, class histograms) trained on the user's own labelled
images, so that nothing is downloaded: a :class:`~simulacra.metrics.fid.FeatureClassifier` saved
as safetensors, with ``FILE.json`` beside it recording the data, the settings, the held-out
accuracy and the command that made it. ``--features FILE`` then uses it in ``evaluate`` and
``compare``. The recipe is :func:`~simulacra.metrics.fid.train_feature_classifier`'s, the one
of the MNIST network shipped in the package (``benchmarks/train_feature_network.py``), which
``evaluate`` and ``compare`` take for 1×28×28 grey images when no ``--features`` is given."""

from __future__ import annotations

import argparse
import datetime
import shlex
import time
from pathlib import Path
from typing import Any

from simulacra.cli.common import _at_least, check_file_destination, integer, seed_arg
from simulacra.errors import ConfigError, DataError


def add_parser(sub: Any) -> None:
    """Add ``features train`` to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    p = sub.add_parser(
        "features", help="train a feature network for FID/KID/precision-recall on labelled images"
    )
    verbs = p.add_subparsers(dest="features_command", required=True, metavar="VERB", help="train")
    t = verbs.add_parser("train", help="train a classifier whose penultimate layer gives the features")
    t.add_argument(
        "--data", required=True, help="labelled images: a dataset name or a path (sub-folders = classes)"
    )
    t.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    t.add_argument("--epochs", type=integer, default=10, help="passes over the training split (default 10)")
    t.add_argument("--width", type=integer, default=32, help="channels of the first layer (default 32)")
    t.add_argument("--batch-size", type=integer, default=128)
    t.add_argument("--seed", type=seed_arg, default=0)
    t.add_argument("--data-dir", default=None, help="folder with downloaded data (default $SIMULACRA_DATA)")


def cmd_features(args: argparse.Namespace) -> int:
    import torch

    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig
    from simulacra.metrics.fid import accuracy, save_feature_classifier, train_feature_classifier
    from simulacra.train.checkpoint import atomic_write_json

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise ConfigError(f"-o {args.output!r}: expected a file ending in .safetensors")
    check_file_destination(out, "-o")
    for value, flag in (
        (args.epochs, "--epochs"),
        (args.width, "--width"),
        (args.batch_size, "--batch-size"),
    ):
        _at_least(value, 1, flag)
    data = load_dataset(DataConfig(name=args.data, data_dir=args.data_dir), seed=args.seed)
    if not data.info.is_image or data.train.y is None or not data.info.num_classes:
        raise DataError(
            f"a feature network learns from labelled images; {data.name!r} has {'no labels' if data.info.is_image else 'no images'}"
        )
    held_out = data.test or data.valid
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    net = train_feature_classifier(
        data.train.x, data.train.y, epochs=args.epochs, batch_size=args.batch_size, width=args.width,
        generator=torch.Generator().manual_seed(args.seed), num_classes=data.info.num_classes,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    scored = None if held_out is None else accuracy(net, held_out.x, held_out.y)
    save_feature_classifier(net, out)
    atomic_write_json(
        out.with_suffix(".json"),
        {
            "data": data.name,
            "classes": data.info.num_classes,
            "image_shape": list(data.info.event_shape),
            "held_out_accuracy": scored,
            "held_out_examples": None if held_out is None else len(held_out),
            "epochs": args.epochs,
            "width": args.width,
            "architecture": net.config,
            "parameters": sum(p.numel() for p in net.parameters()),
            "train_seconds": round(seconds, 1),
            "date": datetime.date.today().isoformat(),
            "command": " ".join(
                shlex.quote(str(a))
                for a in [
                    "simulacra",
                    "features",
                    "train",
                    "--data",
                    args.data,
                    "-o",
                    args.output,
                    "--epochs",
                    args.epochs,
                    "--width",
                    args.width,
                    "--batch-size",
                    args.batch_size,
                    "--seed",
                    args.seed,
                ]
            ),  # fmt: skip
        },
    )
    shown = "no held-out split" if scored is None else f"held-out accuracy {scored:.4f}"
    print(f"wrote {out} and {out.with_suffix('.json').name}: {shown}, {seconds:.0f} s")
    return 0


__all__ = ["add_parser", "cmd_features"]
