"""``simulacra impute RUN --data FILE -o OUT``: fill the missing values of a table with a trained
model (see :mod:`simulacra.tasks.impute`).

Missing values are NaN in a ``.npy``/``.npz`` array, NaN or empty/NA cells in a ``.csv`` table,
or the entries a ``--mask`` file (same shape, 1 = missing) marks. The completed table goes to a
``.csv`` (the input's header kept), ``.npy`` or ``.npz`` (key ``completed``); ``--multiple M``
adds M draws from p(x_miss | x_obs) to an ``.npz`` (key ``draws``, (M, N, D)). Values are in the
user's units: a run trained on standardized data standardizes the input and undoes it on output.
Observed values are written back exactly as read.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.cli.common import _load_run, integer, output_file, seed_arg
from simulacra.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

SUFFIXES = (".csv", ".npy", ".npz")
MAX_DRAWN_VALUES = 1 << 28
"""The most values ``--multiple`` draws may hold (M · N · D; 2 GiB in float64)."""


def add_parser(sub: Any) -> None:
    """Add ``impute`` to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    p = sub.add_parser("impute", help="fill the missing values (NaN) of a table with a trained model")
    p.add_argument("run", help="a run directory written by `simulacra train` (e.g. of miwae)")
    p.add_argument(
        "--data", required=True, help="the table to complete: .csv (empty/NA/NaN cells), .npy or .npz (NaN)"
    )
    p.add_argument(
        "--mask", default=None, help="a .csv/.npy/.npz of the data's shape: 1 = missing, 0 = observed"
    )
    p.add_argument(
        "-o", "--output", required=True, help="where to write the completed table: .csv, .npy or .npz"
    )
    p.add_argument(
        "--multiple",
        type=integer,
        default=0,
        help="also write M draws from p(missing | observed) (multiple imputation; needs an .npz output)",
    )
    p.add_argument(
        "--samples", type=integer, default=1000, help="importance draws per example (VAEs; default 1000)"
    )
    p.add_argument("--batch-size", type=integer, default=256, help="examples imputed at a time (default 256)")
    p.add_argument(
        "--allow-unobserved",
        action="store_true",
        help="impute also columns missing in every row, from the other columns alone (e.g. the bottom half "
        "of every image); refused by default",
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds the draws (default 0)")
    p.add_argument(
        "--weights", choices=["ema", "raw"], default=None, help="the moving average (default) or raw weights"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")


def read_table(path: str, what: str) -> tuple[np.ndarray, list[str] | None]:
    """(array (N, ...) float64 with NaN for missing values, the CSV header or None) from ``path``."""
    import numpy as np

    from simulacra.data.files import read_csv, read_npy, read_npz

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{what} {path!r}: no such file")
    suffix = file.suffix.lower()
    header = None
    if suffix == ".csv":
        x, header = read_csv(file, missing=True)
    elif suffix == ".npy":
        x = read_npy(file)
    elif suffix == ".npz":
        arrays = read_npz(file)
        key = "x" if "x" in arrays else next(iter(arrays)) if len(arrays) == 1 else None
        if key is None:
            raise DataError(
                f"{what} {path!r} has keys {sorted(arrays)}; expected one array, or one named 'x'"
            )
        x = arrays[key]
    else:
        raise DataError(f"{what} {path!r}: expected a .csv, .npy or .npz file")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{what} {path!r} holds {x.dtype} values; expected numbers")
    if x.ndim < 2:
        raise DataError(f"{what} {path!r} has shape {x.shape}; expected a table (N, D) of examples")
    return x.astype(np.float64), header


def _csv_bytes(x: np.ndarray, header: list[str] | None) -> bytes:
    buffer = io.StringIO()
    if header is not None:
        buffer.write(",".join(header) + "\n")
    for row in x.reshape(x.shape[0], -1):
        buffer.write(",".join(repr(float(v)) for v in row) + "\n")  # repr: the shortest exact form
    return buffer.getvalue().encode()


def write_table(
    path: Path, completed: np.ndarray, draws: np.ndarray | None, header: list[str] | None
) -> None:
    """Write the completed table (and the draws, to an .npz) atomically: all of it or nothing."""
    import numpy as np

    from simulacra.train.checkpoint import atomic_write_bytes

    suffix = path.suffix.lower()
    buffer = io.BytesIO()
    if suffix == ".csv":
        data = _csv_bytes(completed, header)
    elif suffix == ".npy":
        np.save(buffer, completed)
        data = buffer.getvalue()
    else:
        arrays = {"completed": completed} if draws is None else {"completed": completed, "draws": draws}
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def cmd_impute(args: argparse.Namespace) -> int:
    """Read the table, impute it with the run's model, write the completed table."""
    import numpy as np
    import torch

    from simulacra.tasks.impute import IMPUTING_MODELS, can_impute, impute, missing_entries

    path = output_file(args.output, SUFFIXES)
    if args.multiple < 0:
        raise ConfigError(f"--multiple must be at least 0; found {args.multiple}")
    if args.multiple and path.suffix.lower() != ".npz":
        raise ConfigError(
            f"--multiple writes the completed table and its draws to an .npz; -o {args.output!r} is not one"
        )
    if args.samples < 1 or args.batch_size < 1:
        raise ConfigError(
            f"--samples and --batch-size must be at least 1; found {args.samples} and {args.batch_size}"
        )
    x_np, header = read_table(args.data, "--data")
    mask = None
    if args.mask is not None:
        mask_np, _ = read_table(args.mask, "--mask")
        if mask_np.shape != x_np.shape:
            raise DataError(f"--mask {args.mask!r} has shape {mask_np.shape}; the data have {x_np.shape}")
        if not np.isin(mask_np, (0, 1)).all():
            raise DataError(f"--mask {args.mask!r} must hold 0 (observed) and 1 (missing) only")
        mask = torch.from_numpy(mask_np.reshape(mask_np.shape[0], -1) == 1)
    model, weights = _load_run(args.run, args.device, args.weights)
    if not can_impute(model):
        raise ConfigError(f"{model.preset_name} cannot impute; models with Completion: {IMPUTING_MODELS}")
    if model.conditional:
        raise ConfigError(f"{model.preset_name} is conditional; impute works with unconditional models")
    n, width = x_np.shape[0], int(np.prod(x_np.shape[1:]))
    if width != model.info.dim:
        raise DataError(
            f"--data {args.data!r} has {width} values per example; the run {args.run!r} was trained on "
            f"{model.info.dim} (shape {tuple(model.info.event_shape)})"
        )
    if args.multiple * n * width > MAX_DRAWN_VALUES:
        raise ConfigError(
            f"--multiple {args.multiple}: the draws would hold {args.multiple * n * width:,} values "
            f"(M x {n} examples x {width}); ask for at most {MAX_DRAWN_VALUES // (n * width):,} draws"
        )
    x = torch.from_numpy(x_np.reshape(n, width))
    missing = missing_entries(x, mask)
    if not bool(missing.any()):
        print(f"note: {args.data} has no missing values; writing it unchanged to {path}", file=sys.stderr)
    event = tuple(model.info.event_shape)
    generator = torch.Generator(model.device).manual_seed(args.seed)
    result = impute(
        model,
        x.reshape(n, *event),
        missing.reshape(n, *event),
        num_samples=args.samples,
        multiple=args.multiple,
        batch_size=args.batch_size,
        allow_unobserved=args.allow_unobserved,
        generator=generator,
    )
    completed = result.completed.reshape(x_np.shape).numpy()
    draws = None if result.draws is None else result.draws.reshape(args.multiple, *x_np.shape).numpy()
    write_table(path, completed, draws, header)
    count = int(missing.sum())
    extra = f" and {args.multiple} draws" if args.multiple else ""
    print(
        f"wrote {path}: {count} missing value{'s' if count != 1 else ''} of {n} examples filled{extra} "
        f"({result.method}; {weights.describe()})"
    )
    return 0
