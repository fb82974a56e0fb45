"""``simulacra compress RUN --data FILE -o OUT.sim`` and ``simulacra decompress RUN IN.sim -o OUT.npy``:
lossless compression with a trained autoregressive model (:mod:`simulacra.tasks.compress`), or
with a VAE or hierarchical VAE by bits-back coding (:mod:`simulacra.tasks.bitsback`).

``--data`` is a ``.npy`` file, an ``.npz`` archive (the array named by ``--split``: ``test``,
``x_test``, or its only array), an image folder, or a registered dataset name (its ``--split``).
Images stored channels last (N, H, W, C) are coded as the model reads them and restored as given.
``decompress`` writes the exact array (dtype and shape) as ``.npy``; a truncated or corrupted
file, or one compressed with another run or other weights, is refused with one error line and
nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.cli.common import _load_run, integer, output_file, save_array
from simulacra.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

RUN_HELP = (
    "a run directory written by `simulacra train`: an autoregressive model, or a VAE / hierarchical "
    "VAE with a discrete likelihood (bits-back coding)"
)
WEIGHTS_HELP = "the moving average (default when the run kept one) or the raw weights"


def add_parsers(sub: Any) -> None:
    """Add the ``compress`` and ``decompress`` verbs to the CLI's sub-parsers."""
    p = sub.add_parser(
        "compress", help="code data losslessly with an autoregressive run (rANS) or a VAE run (bits-back)"
    )
    p.add_argument("run", help=RUN_HELP)
    p.add_argument(
        "--data",
        required=True,
        help="a .npy/.npz file, an image folder, or a dataset name (see `simulacra datasets`)",
    )
    p.add_argument(
        "--split",
        choices=["test", "valid", "train"],
        default="test",
        help="the split of a dataset name or .npz archive (default test)",
    )
    p.add_argument("--data-dir", default=None, help="folder with downloaded data, for a dataset name")
    p.add_argument("--limit", type=integer, default=None, help="code only the first N examples")
    p.add_argument(
        "--batch-size",
        type=integer,
        default=None,
        help="examples coded together (default: up to 1000, fewer for many levels); decoding uses the same",
    )
    p.add_argument(
        "--latent-bits",
        type=integer,
        default=None,
        help="VAEs: each latent coordinate coded as one of 2^b buckets of equal prior mass (default 10)",
    )
    p.add_argument("--weights", choices=["ema", "raw"], default=None, help=WEIGHTS_HELP)
    p.add_argument("-o", "--output", required=True, help="the compressed file to write (.sim)")

    p = sub.add_parser("decompress", help="restore exactly the data a compressed file holds")
    p.add_argument("run", help="the run that compressed the file")
    p.add_argument("input", help="a compressed file written by `simulacra compress` (.sim)")
    p.add_argument("--weights", choices=["ema", "raw"], default=None, help=WEIGHTS_HELP)
    p.add_argument("-o", "--output", required=True, help="the array to write (.npy)")


def _from_npz(path: Path, split: str) -> np.ndarray:
    from simulacra.data.files import read_npz

    arrays = read_npz(path)
    for key in (split, f"x_{split}"):
        if key in arrays:
            return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataError(f"{str(path)!r} has no array {split!r} or 'x_{split}'; it holds {sorted(arrays)}")


def read_data(data: str, split: str, data_dir: str | None) -> np.ndarray:
    """The examples ``--data`` names, as stored: (N, ...) of any numeric dtype."""
    from simulacra.data.files import looks_like_path, read_image_folder, read_npy

    path = Path(data).expanduser()
    named = data.startswith("text:") or not (looks_like_path(data) or path.exists())
    if not named:
        if path.is_dir():
            return read_image_folder(path)[0]
        if not path.exists():
            raise DataError(f"no such file or folder: {data!r}")
        if path.suffix.lower() == ".npy":
            return read_npy(path)
        if path.suffix.lower() == ".npz":
            return _from_npz(path, split)
        raise DataError(f"--data {data!r}: expected a .npy or .npz file, an image folder, or a dataset name")
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig

    dataset = load_dataset(DataConfig(data, data_dir=data_dir))
    part = getattr(dataset, split)
    if part is None:
        raise ConfigError(f"dataset {data!r} has no {split} split; use --split train or valid")
    return part.x.numpy()


def _channels_last(x: np.ndarray, event_shape: tuple[int, ...]) -> bool:
    """Whether x (N, H, W, C) holds images the model reads as (C, H, W)."""
    return (
        x.ndim == 4
        and len(event_shape) == 3
        and tuple(x.shape[1:]) == (*event_shape[1:], event_shape[0])
        and (tuple(x.shape[1:]) != tuple(event_shape))
    )


def cmd_compress(args: argparse.Namespace) -> int:
    from simulacra.tasks.compress import compress
    from simulacra.train.checkpoint import atomic_write_bytes

    out = output_file(args.output, (".sim",))
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1; found {args.limit}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1; found {args.batch_size}")
    model, weights = _load_run(args.run, "cpu", args.weights)
    x = read_data(args.data, args.split, args.data_dir)
    if args.limit is not None:
        x = x[: args.limit]
    result = compress(
        model,
        x,
        batch_size=args.batch_size,
        channels_last=_channels_last(x, tuple(model.info.event_shape)),
        latent_bits=args.latent_bits,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, result.data)
    if "initial_bits" in result.details:  # bits-back coding
        ideal = (
            f"the coded information {result.ideal_bits / result.dims:.4f}, the discretized −ELBO; "
            f"{result.details['initial_bits']:.0f} initial bits"
        )
    else:
        ideal = f"ideal {result.ideal_bits / result.dims:.4f} with the quantized model"
    print(
        f"compressed {len(x)} examples ({result.dims} entries, {x.nbytes:,} bytes as {x.dtype}) to {out}: "
        f"{len(result.data):,} bytes, {result.file_bits_per_dim:.4f} bits/dim ({ideal}; {weights.describe()})"
    )
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from simulacra.tasks.compress import decompress

    out = output_file(args.output, (".npy",))
    source = Path(args.input)
    if source.is_dir():
        raise DataError(f"{args.input!r} is a folder; give a compressed file")
    if out.resolve() == source.resolve():
        raise ConfigError("-o names the compressed file itself; give another file")
    blob = source.read_bytes()
    model, weights = _load_run(args.run, "cpu", args.weights)
    x = decompress(model, blob)
    save_array(out, x)
    print(
        f"decompressed {len(x)} examples, shape {tuple(x.shape)} {x.dtype}, to {out} ({weights.describe()})"
    )
    return 0


__all__ = ["add_parsers", "cmd_compress", "cmd_decompress", "read_data"]
