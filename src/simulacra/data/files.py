"""Loading data from a path: ``.npz``, ``.npy`` and ``.csv`` files, image folders, IDX files.

What a file holds is inferred, then validated:

* layout: ``(N, D)`` -> event ``(D,)``; ``(N, H, W)`` -> ``(N, 1, H, W)``; ``(N, H, W, C)`` with
  C ∈ {1, 3} and H, W > 4 -> channels first ``(N, C, H, W)``; ``(N, C, H, W)`` is kept;
* support and levels: bool, or integers within {0, 1}, or floats that are all 0 or 1 -> ``binary``
  (2 levels); ``uint8`` -> divided by 255, ``unit`` with 256 levels; other floats within [0, 1]
  -> ``unit`` (levels unknown); anything else -> ``real``. CSV tables are always ``real``,
  standardized with the training split's mean and standard deviation.

Examples become float32 tensors and labels int64. A source without a validation (or, for
``.npy``, ``.csv`` and image folders, test) split gets one carved out of its examples by a
fixed permutation (seed 0), ``valid_fraction`` of them each.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.data.transforms import standardization, standardize
from simulacra.data.validate import ArrayLike, validate_examples
from simulacra.errors import DataError

FILE_SUFFIXES: tuple[str, ...] = (".npz", ".npy", ".csv")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
SPLITS: tuple[str, ...] = ("train", "valid", "test")

Arrays = tuple[np.ndarray, np.ndarray | None]  # (x, y)


# ----------------------------------------------------------------------------- where to look


def default_data_dir() -> Path:
    """``$SIMULACRA_DATA`` when set, else ``~/.simulacra/data``."""
    env = os.environ.get("SIMULACRA_DATA")
    return Path(env).expanduser() if env else Path.home() / ".simulacra" / "data"


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for downloaded files, in order: ``data_dir`` (when given),
    ``$SIMULACRA_DATA`` (when set), ``~/.simulacra/data``; duplicates removed."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir).expanduser())
    if os.environ.get("SIMULACRA_DATA"):
        candidates.append(Path(os.environ["SIMULACRA_DATA"]).expanduser())
    candidates.append(Path.home() / ".simulacra" / "data")
    out: list[Path] = []
    for c in candidates:
        if c not in out:
            out.append(c)
    return out


# ----------------------------------------------------------------------------- splits


def holdout_count(n: int, fraction: float) -> int:
    """Number of examples out of ``n`` held out for a split: ``round(fraction * n)``."""
    if not 0 <= fraction < 1:
        raise DataError(f"valid_fraction must be in [0, 1); got {fraction}")
    return int(round(fraction * n))


def split_indices(n: int, *, valid: int, test: int = 0, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Disjoint (train, valid, test) index arrays covering ``range(n)``, each sorted.

    A permutation of ``range(n)`` drawn with ``seed`` gives the first ``test`` indices to test,
    the next ``valid`` to valid and the rest to train, so the split is fixed by the seed and
    each split keeps the file's order.
    """
    if valid + test >= n:
        raise DataError(
            f"cannot hold out {valid} validation and {test} test examples from {n}; "
            "lower valid_fraction or provide more examples"
        )
    perm = np.random.default_rng(seed).permutation(n)
    test_idx, valid_idx, train_idx = perm[:test], perm[test : test + valid], perm[test + valid :]
    return np.sort(train_idx), np.sort(valid_idx), np.sort(test_idx)


def _take(arrays: Arrays, idx: np.ndarray) -> Arrays:
    x, y = arrays
    return x[idx], None if y is None else y[idx]


def carve_splits(splits: dict[str, Arrays], valid_fraction: float, *, test: bool) -> dict[str, Arrays | None]:
    """Hold out validation (and, when ``test``, test) examples from ``splits["train"]`` where
    those splits are missing; ``valid_fraction`` of the examples each (0: no such split)."""
    out: dict[str, Arrays | None] = {k: splits.get(k) for k in SPLITS}
    n = len(splits["train"][0])
    n_valid = holdout_count(n, valid_fraction) if out["valid"] is None else 0
    n_test = holdout_count(n, valid_fraction) if test and out["test"] is None else 0
    if n_valid == 0 and n_test == 0:
        return out
    train_idx, valid_idx, test_idx = split_indices(n, valid=n_valid, test=n_test, seed=0)
    full = splits["train"]
    out["train"] = _take(full, train_idx)
    if n_valid:
        out["valid"] = _take(full, valid_idx)
    if n_test:
        out["test"] = _take(full, test_idx)
    return out


# ----------------------------------------------------------------------------- inference


def infer_layout(x: np.ndarray) -> np.ndarray:
    """Examples in the layout models expect: (N, D), or images channels first (N, C, H, W).

    ``(N, H, W)`` -> ``(N, 1, H, W)``; ``(N, H, W, C)`` with C ∈ {1, 3} and H, W > 4 ->
    ``(N, C, H, W)``; anything else is kept.
    """
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[3] in (1, 3) and x.shape[1] > 4 and x.shape[2] > 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def infer_support(arrays: Sequence[np.ndarray]) -> tuple[str, int | None]:
    """(support, levels) of examples spread over ``arrays`` (the splits of one source).

    bool or integers within {0, 1}, or floats all 0 or 1 -> ``("binary", 2)``; ``uint8`` ->
    ``("unit", 256)`` (to be divided by 255); other floats within [0, 1] -> ``("unit", None)``;
    otherwise ``("real", None)``.
    """
    kinds = {a.dtype.kind for a in arrays}
    lo = min(float(np.nanmin(a)) for a in arrays)  # NaN: a missing entry (validated before)
    hi = max(float(np.nanmax(a)) for a in arrays)
    if kinds == {"b"}:
        return "binary", 2
    if kinds <= {"b", "i", "u"}:
        if lo >= 0 and hi <= 1:
            return "binary", 2
        if all(a.dtype == np.uint8 for a in arrays):
            return "unit", 256
        return "real", None
    if lo >= 0 and hi <= 1:
        if all(bool((np.isin(a, (0, 1)) | np.isnan(a)).all()) for a in arrays):
            return "binary", 2
        return "unit", None
    return "real", None


def as_examples(x: np.ndarray, support: str, levels: int | None) -> np.ndarray:
    """float32 examples; ``uint8`` grey levels (``unit``, 256 levels) are divided by 255."""
    if support == "unit" and levels == 256 and x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- assembling


def build_dataset(
    name: str,
    source: str,
    splits: Mapping[str, tuple[ArrayLike, ArrayLike | None] | None],
    *,
    support: str,
    levels: int | None,
    num_classes: int | None = None,
    label_names: list[str] | None = None,
    allow_missing: bool = False,
) -> Dataset:
    """A validated :class:`Dataset` from ``{"train": (x, y), "valid": ..., "test": ...}``.

    Args:
        name: the dataset's name.
        source: how messages name the data (a file or a dataset name).
        splits: x (N, *event_shape) float values already scaled; y (N,) labels or None. A
            missing or None ``valid``/``test`` gives no such split.
        support, levels: see :class:`DataInfo`; every split is checked against ``support``.
        num_classes: number of classes; inferred as ``max(y) + 1`` when labels are present
            (labels are kept as given: never renumbered).
        label_names: the name of each class (image sub-folders), or None.
        allow_missing: NaN entries are missing values (see :func:`validate_examples`).

    Raises:
        DataError: a split fails validation, splits differ in example shape, or labels are
            present for some splits only.
    """
    if splits.get("train") is None:
        raise DataError(f"{source!r} has no training examples")
    made: dict[str, Split] = {}
    for key in SPLITS:
        pair = splits.get(key)
        if pair is None:
            continue
        x, y = pair
        where = f"{source} ({key})"
        if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
            # the float32 values the models will see, in one copy at most (a file may store its
            # arrays in Fortran order), so that validation checks those values without copying
            x = np.ascontiguousarray(x, dtype=np.float32)
        validate_examples(x, source=where, support=support, y=y, allow_missing=allow_missing)
        xt = torch.as_tensor(x, dtype=torch.float32).contiguous()
        yt = y.to(torch.int64) if isinstance(y, torch.Tensor) else None
        if isinstance(y, np.ndarray):
            yt = torch.from_numpy(y.astype(np.int64))
        made[key] = Split(xt, yt)
    event = tuple(made["train"].x.shape[1:])
    for key, split in made.items():
        if tuple(split.x.shape[1:]) != event:
            raise DataError(
                f"{source!r}: {key} examples have shape {tuple(split.x.shape[1:])} but training examples "
                f"{event}; every split needs the same example shape"
            )
    labelled = {key: split.y is not None for key, split in made.items()}
    if any(labelled.values()) and not all(labelled.values()):
        missing = [k for k, has in labelled.items() if not has]
        raise DataError(f"{source!r} has labels for some splits but none for {', '.join(missing)}")
    if num_classes is None and all(labelled.values()):
        num_classes = max(int(s.y.max()) for s in made.values() if s.y is not None) + 1
    info = DataInfo(
        event_shape=event,
        support=support,  # type: ignore[arg-type]
        num_classes=num_classes,
        levels=levels,
        label_names=tuple(label_names) if label_names else None,
    )
    return Dataset(name=name, info=info, train=made["train"], valid=made.get("valid"), test=made.get("test"))


def _from_arrays(
    name: str,
    source: str,
    splits: dict[str, Arrays],
    valid_fraction: float,
    *,
    carve_test: bool,
    allow_missing: bool = False,
) -> Dataset:
    """Carve missing splits, infer layout and support, and build the dataset."""
    for key, (x, y) in splits.items():
        validate_examples(x, source=f"{source} ({key})", y=y, allow_missing=allow_missing)
    full = carve_splits(splits, valid_fraction, test=carve_test)
    present = {k: (infer_layout(v[0]), v[1]) for k, v in full.items() if v is not None}
    support, levels = infer_support([x for x, _ in present.values()])
    scaled = {k: (as_examples(x, support, levels), y) for k, (x, y) in present.items()}
    return build_dataset(name, source, scaled, support=support, levels=levels, allow_missing=allow_missing)


# ----------------------------------------------------------------------------- readers


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DataError(f"{str(path)!r} is empty (0 bytes)")


def _reason(err: Exception) -> str:
    """numpy's reason for refusing a file, without its advice to unpickle it (never taken here:
    loading a pickle runs code)."""
    if "pickle" in str(err):
        return "the bytes are not an .npy array; numpy would try them as a pickle, which is never loaded"
    return str(err)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, loaded without unpickling anything."""
    _check_not_empty(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"cannot read {str(path)!r}: not a valid .npz archive (it holds one .npy array)")
        with archive:
            out = {}
            for key in archive.files:
                try:
                    out[key] = archive[key]
                except ValueError as err:
                    if "allow_pickle" not in str(err):
                        raise
                    raise DataError(
                        f"{str(path)!r}: array {key!r} holds pickled Python objects; expected numeric arrays"
                    ) from None
            return out
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as err:
        raise DataError(f"cannot read {str(path)!r}: not a valid .npz archive ({_reason(err)})") from None


def read_npy(path: Path) -> np.ndarray:
    """The array of an ``.npy`` file, loaded without unpickling anything."""
    _check_not_empty(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as err:
        raise DataError(f"cannot read {str(path)!r}: not a valid .npy file ({_reason(err)})") from None
    if not isinstance(x, np.ndarray):
        x.close()
        raise DataError(f"cannot read {str(path)!r}: not a valid .npy file (it is an .npz archive)")
    return x


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, *, ndim: int | None = None) -> np.ndarray:
    """An array from an IDX file (LeCun's MNIST format), plain or gzip-compressed.

    The header is a magic number ``0x0000TTDD`` (TT: element type, 0x08 = uint8; DD: number of
    dimensions: 1 for labels, 3 for images), then DD big-endian uint32 sizes, then the data.

    Args:
        path: the file (``.gz`` or gzip magic bytes -> decompressed).
        ndim: the number of dimensions expected (e.g. 3 for ``train-images-idx3-ubyte``).
    """
    _check_not_empty(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"cannot read {str(path)!r}: corrupt gzip data ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(
            f"{str(path)!r} is not an IDX file: magic number 0x{raw[:4].hex()}; expected 0x0000 followed by "
            "a type code (0x08 for uint8) and the number of dimensions (0x00000801 labels, 0x00000803 images)"
        )
    dims_n = raw[3]
    if ndim is not None and dims_n != ndim:
        raise DataError(
            f"{str(path)!r} holds a {dims_n}-dimensional IDX array (magic 0x{raw[:4].hex()}); expected {ndim} "
            f"dimensions (magic 0x000008{ndim:02x})"
        )
    header = 4 + 4 * dims_n
    if len(raw) < header:
        raise DataError(f"{str(path)!r} is truncated: its IDX header is incomplete")
    dims = struct.unpack(f">{dims_n}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{str(path)!r}: the IDX header announces shape {dims} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


MISSING_CELLS: frozenset[str] = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
"""How a CSV cell may say that a value is missing (case-insensitive, spaces stripped)."""


def read_csv(path: Path, *, missing: bool = False) -> tuple[np.ndarray, list[str] | None]:
    """A numeric table (N, D) float64 from a comma-separated file, and its header if it has one.

    The first row is a header when any of its cells is not a number. Blank lines are skipped.
    With ``missing``, a cell in :data:`MISSING_CELLS` (empty, NA, ?, ...) is a missing value, NaN.
    """
    _check_not_empty(path)
    try:
        with open(path, newline="") as f:
            rows = [(i + 1, row) for i, row in enumerate(csv.reader(f)) if any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read {str(path)!r}: not a text CSV file ({err})") from None
    if not rows:
        raise DataError(f"{str(path)!r} is empty: no rows")
    header = None
    if any(_parse_float(c) is None for c in rows[0][1]):
        header = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise DataError(f"{str(path)!r} is empty: a header row and no data")
    width = len(header) if header is not None else len(rows[0][1])
    table = np.empty((len(rows), width), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{str(path)!r}: row {line} has {len(row)} values; expected {width}")
        for c, cell in enumerate(row):
            value = _parse_float(cell)
            if value is None and missing and cell.strip().lower() in MISSING_CELLS:
                value = math.nan
            if value is None:
                column = f"column {c + 1}" + (f" ({header[c]!r})" if header else "")
                raise DataError(f"{str(path)!r}: row {line}, {column}: {cell!r} is not a number")
            table[r, c] = value
    return table, header


def _open_image(path: Path) -> np.ndarray:
    """One image as uint8 (C, H, W): greys -> C = 1, colour -> C = 3 (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                if mode.startswith("I") or mode == "F":
                    raise DataError(
                        f"{str(path)!r} has {mode!r} pixels (16/32-bit); expected 8-bit grey or colour images"
                    )
                array = np.asarray(img.convert("L"))[None]  # (1, H, W)
            else:
                array = np.asarray(img.convert("RGB")).transpose(2, 0, 1)  # (3, H, W)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image {str(path)!r}: {err}") from None
    return np.ascontiguousarray(array)


def read_image(path: str | Path) -> torch.Tensor:
    """One image file as float32 (C, H, W) in [0, 1] (grey: C = 1, colour: C = 3; alpha dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such image: {str(path)!r}")
    return torch.from_numpy(_open_image(path).copy()).float() / 255.0  # a writable copy for torch


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    walk = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in walk if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Images of a folder as uint8 (N, C, H, W), labels (N,) int64 or None, and class names.

    Images directly in ``folder`` have no labels. Images in sub-folders (searched recursively)
    are labelled by the sorted index of their sub-folder; sub-folders without images are
    ignored. Mixing loose images and class sub-folders is an error. When some images are
    colour, grey ones are repeated over 3 channels.
    """
    loose = _images_in(folder, recursive=False)
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [(d.name, found) for d in subdirs if (found := _images_in(d, recursive=True))]
    if loose and classes:
        raise DataError(
            f"{str(folder)!r} mixes loose images (e.g. {loose[0].name!r}) with class sub-folders "
            f"(e.g. {classes[0][0]!r}); put every image in a sub-folder, or none"
        )
    if classes:
        files = [f for _, found in classes for f in found]
        labels = np.concatenate(
            [np.full(len(found), i, dtype=np.int64) for i, (_, found) in enumerate(classes)]
        )
    else:
        files, labels = loose, None
    if not files:
        raise DataError(
            f"{str(folder)!r} holds no images: expected {', '.join(IMAGE_SUFFIXES)} files in it or in its "
            "sub-folders (one per class)"
        )
    images = [_open_image(f) for f in files]
    first = images[0].shape[1:]
    for f, img in zip(files, images):
        if img.shape[1:] != first:
            raise DataError(
                f"images must all have the same size: {str(files[0])!r} is {first[1]}x{first[0]} but "
                f"{str(f)!r} is {img.shape[2]}x{img.shape[1]} (width x height); resize them first"
            )
    if any(img.shape[0] == 3 for img in images):
        images = [np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img for img in images]
    return np.stack(images), labels, [name for name, _ in classes]


# ----------------------------------------------------------------------------- loaders


_NPZ_FORMS = (
    {"train": ("x_train", "y_train"), "valid": ("x_valid", "y_valid"), "test": ("x_test", "y_test")},
    {"train": ("train", None), "valid": ("valid", None), "test": ("test", None)},
)


_LABEL_KEYS = ("y", "Y", "labels", "label", "targets", "arr_1")


def load_npz(path: Path, *, valid_fraction: float, allow_missing: bool = False) -> Dataset:
    """A dataset from an ``.npz`` archive with keys ``x_train`` [, ``y_train``, ``x_valid``,
    ``y_valid``, ``x_test``, ``y_test``] or ``train`` [, ``valid``, ``test``]; or the whole data
    set as one array under any key (``x``, ``X``, ``data``, ``arr_0``, ...), optionally with its
    labels (``y``, ``labels``, ``arr_1``, ...), split into train, valid and test reproducibly (the
    same split every time: ``valid_fraction`` of the examples each, by a fixed permutation)."""
    arrays = read_npz(path)
    source = str(path)
    form = next((f for f in _NPZ_FORMS if f["train"][0] in arrays), None)
    if form is None:
        whole = _whole_data_set(arrays)
        if whole is None:
            raise DataError(
                f"{source!r} has keys {sorted(arrays)}; expected 'x_train' (optionally with y_train, x_valid, "
                "y_valid, x_test, y_test), 'train' (optionally with valid, test), or one array of "
                "examples under any name (optionally with its labels as 'y')"
            )
        return _from_arrays(
            path.name, source, {"train": whole}, valid_fraction, carve_test=True, allow_missing=allow_missing
        )
    splits: dict[str, Arrays] = {}
    for key, (x_key, y_key) in form.items():
        if y_key is not None and y_key in arrays and x_key not in arrays:
            raise DataError(f"{source!r} has {y_key!r} but no {x_key!r}")
        if x_key in arrays:
            splits[key] = (arrays[x_key], arrays.get(y_key) if y_key else None)
    return _from_arrays(
        path.name, source, splits, valid_fraction, carve_test=False, allow_missing=allow_missing
    )


def _whole_data_set(arrays: dict[str, np.ndarray]) -> Arrays | None:
    """(examples, labels or None) when ``arrays`` holds one array, or one and its labels."""
    if len(arrays) == 1:
        return next(iter(arrays.values())), None
    labels = [k for k in arrays if k in _LABEL_KEYS]
    if len(arrays) == 2 and len(labels) == 1:
        (examples,) = (k for k in arrays if k not in labels)
        return arrays[examples], arrays[labels[0]]
    return None


def load_npy(path: Path, *, valid_fraction: float, allow_missing: bool = False) -> Dataset:
    """A dataset from one ``.npy`` array of examples; valid and test carved out of it."""
    x = read_npy(path)
    return _from_arrays(
        path.name,
        str(path),
        {"train": (x, None)},
        valid_fraction,
        carve_test=True,
        allow_missing=allow_missing,
    )


def load_csv(path: Path, *, valid_fraction: float, allow_missing: bool = False) -> Dataset:
    """A real-valued dataset from a numeric CSV table; valid and test carved out of it (the
    table is standardized by :func:`simulacra.data.load_dataset`, as any real-valued table is).
    With ``allow_missing``, empty or NA cells and NaN are missing values."""
    table, _ = read_csv(path, missing=allow_missing)
    source = str(path)
    validate_examples(table, source=source, allow_missing=allow_missing)
    full = carve_splits({"train": (table, None)}, valid_fraction, test=True)
    splits = {k: (torch.from_numpy(v[0]).float(), None) for k, v in full.items() if v is not None}
    return build_dataset(path.name, source, splits, support="real", levels=None, allow_missing=allow_missing)


def standardize_dataset(dataset: Dataset) -> Dataset:
    """The dataset with every split standardized by the training split's per-dimension mean m and
    standard deviation s, x' = (x − m)/s, recorded in ``info.standardization`` so that likelihoods
    can be given in the original units: log p(x) = log p'(x') − Σ_d log s_d."""
    mean, std = standardization(dataset.train.x.double())

    def scaled(split: Split | None) -> Split | None:
        if split is None:
            return None
        return Split(standardize(split.x.double(), mean, std).float(), split.y)

    info = dataclasses.replace(
        dataset.info, standardization=(tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()))
    )
    return dataclasses.replace(
        dataset,
        info=info,
        train=scaled(dataset.train),
        valid=scaled(dataset.valid),
        test=scaled(dataset.test),
    )


def load_image_folder(path: Path, *, valid_fraction: float) -> Dataset:
    """8-bit images (PNG/JPEG) of a folder scaled to [0, 1] (``unit``, 256 levels), labelled by
    sub-folder when there are sub-folders; valid and test carved out of them."""
    x, y, classes = read_image_folder(path)
    full = carve_splits({"train": (x, y)}, valid_fraction, test=True)
    splits = {k: (as_examples(v[0], "unit", 256), v[1]) for k, v in full.items() if v is not None}
    return build_dataset(
        path.name or str(path),
        str(path),
        splits,
        support="unit",
        levels=256,
        num_classes=len(classes) if classes else None,
        label_names=classes or None,
    )


def looks_like_path(name: str) -> bool:
    """Whether a dataset name is meant as a path (has a separator or a known suffix)."""
    return (
        "/" in name
        or os.sep in name
        or name.startswith("~")
        or Path(name).suffix.lower() in FILE_SUFFIXES + IMAGE_SUFFIXES
    )


def load_path(path: str | Path, *, valid_fraction: float = 0.1, allow_missing: bool = False) -> Dataset:
    """A dataset from a ``.npz``, ``.npy`` or ``.csv`` file or an image folder; ``allow_missing``:
    NaN entries of a file are missing values (models trained on incomplete data)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"no such file or folder: {str(path)!r}")
    if path.is_dir():
        return load_image_folder(path, valid_fraction=valid_fraction)  # images have no missing pixels
    loaders = {".npz": load_npz, ".npy": load_npy, ".csv": load_csv}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise DataError(
            f"cannot load {str(path)!r}: expected a .npz, .npy or .csv file or a folder of images "
            f"(got a {path.suffix or 'suffix-less'} file)"
        )
    return loader(path, valid_fraction=valid_fraction, allow_missing=allow_missing)
