"""Registered datasets and :func:`load_dataset`, the one entry point from a config to tensors.

Registered names: ``digits`` (scikit-learn's bundled 8x8 digits), ``mnist`` (grey-level),
``binarized-mnist`` (Larochelle's fixed binarization) and the 2-D toys of
:mod:`simulacra.data.toys`. ``text:PATH`` is a text file read as character sequences (see
:mod:`simulacra.data.text`). Any other name is read as a path (see :mod:`simulacra.data.files`).
MNIST files are looked for in ``DataConfig.data_dir``, then ``$SIMULACRA_DATA``, then
``~/.simulacra/data``; :func:`simulacra.data.download` fetches them.

Binarization (``DataConfig.binarize``):

* ``"static"``: every split is replaced by one draw ``b ~ Bernoulli(x)``, seeded from the run
  seed (one generator per split);
* ``"dynamic"``: the training split keeps its grey levels and ``Dataset.batch_transform`` draws a
  fresh binarization of every batch; validation and test get the same single seeded draw as with
  ``"static"``, so evaluations are stable and comparable between the two.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from simulacra.data import transforms
from simulacra.data.files import (
    build_dataset,
    holdout_count,
    load_path,
    looks_like_path,
    read_idx,
    read_npz,
    search_dirs,
    split_indices,
    standardize_dataset,
)
from simulacra.data.info import Dataset, Split
from simulacra.data.sources import join_sources, source_name
from simulacra.data.text import is_text_spec, load_text
from simulacra.data.toys import TOYS, ToySampler
from simulacra.errors import DataError, UnknownNameError
from simulacra.registry import Registry
from simulacra.seeding import generator_for


@dataclass
class DataConfig:
    """Which data to train on and how to prepare it.

    Attributes:
        name: a registered dataset (``digits``, ``mnist``, ``binarized-mnist``, ``moons``, ...)
            or a path to a ``.npz``/``.npy``/``.csv`` file or an image folder; or a list of two
            or more of these, joined into one dataset labelled by source
            (:func:`simulacra.data.sources.join_sources`; ``limit`` then applies to each).
        data_dir: where to look for downloaded files (default ``$SIMULACRA_DATA``).
        binarize: ``None``, ``"static"`` (one fixed Bernoulli draw) or ``"dynamic"`` (a fresh
            Bernoulli draw of every batch).
        valid_fraction: share of the training split held out for validation when the source has
            no validation split.
        limit: keep only the first ``limit`` training examples (quick experiments).
        num_samples: size of generated (toy) datasets.
        label_names: a text file with the name of each label, one per line (label 0 first).
        standardize: standardize every split by the training split's per-dimension mean and
            standard deviation; None (the default): for real-valued tables read from a file
            (.csv, .npy, .npz), not for images, binary or [0, 1] data, nor the built-in toys.
        missing: ``"reject"`` (or None, the default): a NaN in a file is an error; ``"allow"``: NaN
            entries of a file (and empty or NA cells of a CSV) are missing values, for models
            trained on incomplete data (MIWAE; ``simulacra train`` sets it for them). An entry
            missing in every example, or an infinite value, is still refused.
        perturb: None (the default), or a probability μ: every training batch has each entry
            replaced, with probability μ, by a uniform draw over the data's support
            (:class:`~simulacra.data.transforms.Perturbation`; Ren et al. 2019). A model trained
            so is the background model of a likelihood ratio (``simulacra outliers --background``).
            Held-out splits are left clean.
    """

    name: str | list[str] = "digits"
    data_dir: str | None = None
    binarize: str | None = None
    valid_fraction: float = 0.1
    limit: int | None = None
    num_samples: int = 20000
    label_names: str | None = None
    standardize: bool | None = None
    missing: str | None = None
    perturb: float | None = None


MISSING: tuple[str, ...] = ("reject", "allow")

DatasetFactory = Callable[[DataConfig, int], Dataset]

DATASETS: Registry[DatasetFactory] = Registry("dataset")

BINARIZE: tuple[str, ...] = ("static", "dynamic")

DIGITS_TEST_SIZE = 297


# ----------------------------------------------------------------------------- digits


@DATASETS.register("digits", "scikit-learn's 8x8 handwritten digits: 1797 images, 17 grey levels, 10 classes")
def digits(config: DataConfig, seed: int = 0) -> Dataset:
    """scikit-learn's bundled ``load_digits``: 1797 images (1, 8, 8), values 0..16 scaled by 1/16.

    A fixed permutation (seed 0) gives 297 test images; ``valid_fraction`` of the remaining
    1500 (150 by default) are for validation and the rest for training. ``seed`` is unused:
    the split is the same for every run.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16).astype(np.float32).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    n_valid = holdout_count(len(x) - DIGITS_TEST_SIZE, config.valid_fraction)
    train, valid, test = split_indices(len(x), valid=n_valid, test=DIGITS_TEST_SIZE, seed=0)
    splits = {"train": (x[train], y[train]), "test": (x[test], y[test])}
    if n_valid:
        splits["valid"] = (x[valid], y[valid])
    return build_dataset("digits", "digits", splits, support="unit", levels=17, num_classes=10)


# ----------------------------------------------------------------------------- mnist

MNIST_IDX: dict[str, tuple[str, int]] = {
    "x_train": ("train-images-idx3-ubyte", 3),
    "y_train": ("train-labels-idx1-ubyte", 1),
    "x_test": ("t10k-images-idx3-ubyte", 3),
    "y_test": ("t10k-labels-idx1-ubyte", 1),
}


def _not_found(what: str, looked_for: str, folders: list[Path], name: str, notes: list[str]) -> DataError:
    extra = f" ({'; '.join(notes)})" if notes else ""
    return DataError(
        f"{what} not found: looked for {looked_for} in {', '.join(str(f) for f in folders)}{extra}. "
        "Put the files in one of these folders, pass --data-dir DIR (DataConfig.data_dir) or set "
        f"$SIMULACRA_DATA to their folder, or fetch them on a machine with a network with "
        f"`simulacra download {name}` (or simulacra.data.download({name!r}, DIR))"
    )


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_mnist(folders: list[Path]) -> tuple[dict[str, np.ndarray], str]:
    """MNIST arrays ``x_train, y_train, x_test, y_test`` from the first folder holding
    ``mnist.npz`` or the four IDX files (plain or ``.gz``; also under ``MNIST/raw``, as
    torchvision stores them), and the file or folder they came from."""
    notes = []
    for folder in folders:
        for place in (folder, folder / "MNIST" / "raw"):
            npz = place / "mnist.npz"
            if npz.is_file():
                arrays = read_npz(npz)
                missing = [k for k in MNIST_IDX if k not in arrays]
                if missing:
                    raise DataError(
                        f"{str(npz)!r} has keys {sorted(arrays)}; expected x_train, y_train, x_test, y_test "
                        f"(missing {', '.join(missing)})"
                    )
                return {k: arrays[k] for k in MNIST_IDX}, str(npz)
            found = {key: _idx_path(place, stem) for key, (stem, _) in MNIST_IDX.items()}
            if all(found.values()):
                return {
                    key: read_idx(path, ndim=MNIST_IDX[key][1])  # type: ignore[arg-type]
                    for key, path in found.items()
                }, str(place)
            if any(found.values()):
                lacking = [MNIST_IDX[k][0] for k, p in found.items() if p is None]
                notes.append(f"{place} lacks {', '.join(lacking)}")
    raise _not_found(
        "mnist",
        "mnist.npz or the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz)",
        folders,
        "mnist",
        notes,
    )


def _mnist_images(x: np.ndarray, source: str) -> np.ndarray:
    """(N, 28, 28) or (N, 784) 8-bit grey levels -> (N, 1, 28, 28) float32 in [0, 1]."""
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{source!r}: expected MNIST images of shape (N, 28, 28); got {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{source!r}: expected 8-bit grey levels (uint8); got dtype {x.dtype}")
    return (x.astype(np.float32) / np.float32(255))[:, None]


@DATASETS.register("mnist", "MNIST, 28x28 grey levels scaled to [0, 1], 10 classes (needs the files)")
def mnist(config: DataConfig, seed: int = 0) -> Dataset:
    """MNIST: 60000 training and 10000 test images (1, 28, 28), grey levels /255, 10 classes.

    The test split is the official test set; ``valid_fraction`` of the official training set
    (6000 by default), chosen by a fixed permutation (seed 0), is for validation.
    """
    arrays, source = find_mnist(search_dirs(config.data_dir))
    x_train = _mnist_images(arrays["x_train"], f"{source} x_train")
    x_test = _mnist_images(arrays["x_test"], f"{source} x_test")
    y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    for y, key in ((y_train, "y_train"), (y_test, "y_test")):
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{source!r} {key}: expected digit labels 0..9; found {y.min()}..{y.max()}")
    n_valid = holdout_count(len(x_train), config.valid_fraction)
    train, valid, _ = split_indices(len(x_train), valid=n_valid, seed=0)
    splits = {"train": (x_train[train], y_train[train]), "test": (x_test, y_test)}
    if n_valid:
        splits["valid"] = (x_train[valid], y_train[valid])
    return build_dataset("mnist", source, splits, support="unit", levels=256, num_classes=10)


TEST_ORDER_SEED = 0
"""Seed of the fixed order in which binarized MNIST's class-sorted test split is loaded."""


@DATASETS.register(
    "binarized-mnist", "Larochelle's statically binarized MNIST, 50000/10000/10000 (needs the file)"
)
def binarized_mnist(config: DataConfig, seed: int = 0) -> Dataset:
    """Binarized MNIST (Salakhutdinov & Murray 2008; files by H. Larochelle): ``train``,
    ``valid`` and ``test`` of ``binarized_mnist.npz``, values {0, 1}, shape (1, 28, 28), no labels.

    The file's test split is sorted by digit (all 0s first, then 1s, ...), so any prefix of it (an
    evaluation limited to N examples, the estimate after training) would score a few digits only:
    it is loaded in a fixed random order (the same for every run and seed), which changes no
    figure on the whole split and makes every prefix a fair sample."""
    folders = search_dirs(config.data_dir)
    path = next((f / "binarized_mnist.npz" for f in folders if (f / "binarized_mnist.npz").is_file()), None)
    if path is None:
        raise _not_found("binarized-mnist", "binarized_mnist.npz", folders, "binarized-mnist", [])
    arrays = read_npz(path)
    missing = [k for k in ("train", "valid", "test") if k not in arrays]
    if missing:
        raise DataError(
            f"{str(path)!r} has keys {sorted(arrays)}; expected train, valid, test (missing {', '.join(missing)})"
        )
    splits = {}
    for key in ("train", "valid", "test"):
        x = arrays[key]
        if x.ndim not in (2, 3) or x.shape[0] == 0 or int(np.prod(x.shape[1:])) != 784:
            raise DataError(f"{str(path)!r} {key}: expected (N, 784) binary images; got shape {x.shape}")
        if key == "test":
            x = x[np.random.default_rng(TEST_ORDER_SEED).permutation(x.shape[0])]
        # the file stores its arrays in Fortran order: reorder the bytes before they become floats
        splits[key] = (np.ascontiguousarray(x).reshape(-1, 1, 28, 28).astype(np.float32), None)
    return build_dataset("binarized-mnist", str(path), splits, support="binary", levels=2)


# ----------------------------------------------------------------------------- toys


def _toy_factory(name: str, sampler: ToySampler) -> DatasetFactory:
    def factory(config: DataConfig, seed: int = 0) -> Dataset:
        n = config.num_samples
        splits = {"train": (sampler(n, generator_for(seed, name, "train")), None)}
        if n // 5:
            for key in ("valid", "test"):
                splits[key] = (sampler(n // 5, generator_for(seed, name, key)), None)
        return build_dataset(name, name, splits, support="real", levels=None)

    factory.__doc__ = (
        f"2-D toy {name!r}: train = num_samples points, valid and test num_samples // 5 each, drawn "
        f"independently with seeds derived from the run seed.\n\n{sampler.__doc__}"
    )
    return factory


for _name, _sampler in TOYS.items():
    _summary = (_sampler.__doc__ or "").strip().split("\n")[0].rstrip(".")
    DATASETS.register(_name, f"2-D toy: {_summary[0].lower()}{_summary[1:]}")(_toy_factory(_name, _sampler))


# ----------------------------------------------------------------------------- entry point


def _check_config(config: DataConfig) -> None:
    names = config.name if isinstance(config.name, list | tuple) else [config.name]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(
            f"data.name must be a dataset name or a path, or a list of two or more; got {config.name!r}"
        )
    if isinstance(config.name, list | tuple) and len(config.name) < 2:
        raise DataError(
            f"a list of data sources needs two or more; got {config.name!r} (give the name alone)"
        )
    if config.data_dir is not None and not isinstance(config.data_dir, str):
        raise DataError(f"data.data_dir must be a folder (a path) or none; got {config.data_dir!r}")
    vf = config.valid_fraction
    if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0 <= vf < 1:
        raise DataError(f"data.valid_fraction must be a number in [0, 1); got {vf!r}")
    for key, value in (("limit", config.limit), ("num_samples", config.num_samples)):
        if value is None and key == "limit":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
            raise DataError(f"data.{key} must be a positive integer below 2^63; got {value!r}")
    if config.standardize is not None and not isinstance(config.standardize, bool):
        raise DataError(f"data.standardize must be true, false or none; got {config.standardize!r}")
    rate = config.perturb
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1
    ):
        raise DataError(f"data.perturb must be a probability in [0, 1] or none; got {rate!r}")
    if config.missing is not None and config.missing not in MISSING:
        raise DataError(
            f"unknown data.missing {config.missing!r}; valid values: 'reject' (NaN is an error), "
            "'allow' (NaN is a missing value, for models trained on incomplete data such as miwae)"
        )
    if config.binarize not in (None, "none", *BINARIZE):
        raise DataError(
            f"unknown data.binarize {config.binarize!r}; valid values: none (keep grey levels), "
            + ", ".join(repr(b) for b in BINARIZE)
        )


def _unknown(name: str) -> UnknownNameError:
    close = difflib.get_close_matches(name, DATASETS.names(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(
        f"unknown dataset {name!r}.{hint} Valid datasets: {', '.join(DATASETS.names())}, "
        "or a path to a .npz, .npy, .csv file or an image folder, or text:PATH for a text file."
    )


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset.train):
        return dataset
    train = dataset.train
    kept = Split(train.x[:limit].clone(), None if train.y is None else train.y[:limit].clone())
    return replace(dataset, train=kept)


def binarize(dataset: Dataset, mode: str | None, seed: int = 0) -> Dataset:
    """``dataset`` binarized ``"static"``-ally or ``"dynamic"``-ally (see the module docstring).

    Raises:
        DataError: an unknown mode, or data whose support is not ``unit`` or ``binary``.
    """
    if mode is None:
        return dataset
    if mode not in BINARIZE:
        raise DataError(f"unknown binarization {mode!r}; valid values: {', '.join(BINARIZE)}")
    if dataset.info.support not in ("unit", "binary"):
        raise DataError(
            f"cannot binarize {dataset.name!r}: binarization draws Bernoulli(x) and needs values in [0, 1] "
            f"(support 'unit' or 'binary'), but its support is {dataset.info.support!r}"
        )

    def draw(split: Split | None, key: str) -> Split | None:
        if split is None:
            return None
        x = transforms.bernoulli(split.x, generator_for(seed, "binarize", key))
        return Split(x, split.y)

    info = replace(dataset.info, support="binary", levels=2)
    valid, test = draw(dataset.valid, "valid"), draw(dataset.test, "test")
    if mode == "static":
        return replace(dataset, info=info, train=draw(dataset.train, "train"), valid=valid, test=test)
    return replace(dataset, info=info, valid=valid, test=test, batch_transform=transforms.bernoulli)


def load_dataset(config: DataConfig, *, seed: int = 0) -> Dataset:
    """The dataset described by ``config``, validated, limited and binarized.

    Args:
        config: ``name`` is a registered dataset (``DATASETS.names()``), a path to a ``.npz``,
            ``.npy`` or ``.csv`` file or a folder of images, or ``text:PATH`` for character-level
            text (:mod:`simulacra.data.text`); see :class:`DataConfig` for the rest.
        seed: the run's seed; toy draws and binarization are derived from it (fixed splits of
            real data are not).

    Returns:
        a :class:`Dataset` with float32 examples (N, *info.event_shape) and int64 labels or None.

    Raises:
        UnknownNameError: a name that is neither registered nor an existing path.
        DataError: a missing file, a file that cannot be read, or data that fail validation.
    """
    _check_config(config)
    if isinstance(config.name, list | tuple):  # several sources: the label is the source
        names = [source_name(n) for n in config.name]
        if len(set(names)) < len(names):  # two folders with one stem: number them instead
            names = [f"{k}:{n}" for k, n in enumerate(names)]
        single = replace(config, binarize=None, label_names=None, standardize=False)
        dataset = join_sources([_load_one(replace(single, name=n), seed) for n in config.name], names)
        if config.standardize is None and dataset.info.support == "real" and not dataset.info.is_image:
            if any(Path(n).expanduser().exists() for n in config.name):  # tables from files, as for one
                dataset = standardize_dataset(dataset)
    else:
        dataset = _load_one(config, seed)
    if config.standardize and dataset.info.standardization is None:
        if dataset.info.support != "real":
            raise DataError(
                f"--standardize applies to real-valued data; {dataset.name!r} is {dataset.info.support} "
                "(its values have a meaning as they are)"
            )
        dataset = standardize_dataset(dataset)
    mode = None if config.binarize == "none" else config.binarize
    dataset = perturb(binarize(dataset, mode, seed), config.perturb)
    return _label_facts(dataset, config.label_names)


def perturb(dataset: Dataset, rate: float | None) -> Dataset:
    """``dataset`` whose training batches are perturbed at ``rate`` (see
    :class:`~simulacra.data.transforms.Perturbation`), after any other batch transform (dynamic
    binarization); unchanged when ``rate`` is None."""
    if rate is None:
        return dataset
    if dataset.info.vocabulary is not None:
        raise DataError(f"data.perturb applies to images and tables; {dataset.name!r} is text")
    perturbation = transforms.Perturbation.for_data(rate, dataset.info, dataset.train.x)
    before = dataset.batch_transform
    if before is None:
        return replace(dataset, batch_transform=perturbation)

    def both(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return perturbation(before(x, generator), generator)

    return replace(dataset, batch_transform=both)


def _load_one(config: DataConfig, seed: int) -> Dataset:
    """One source (``config.name`` a string), standardized by default where :class:`DataConfig`
    says, and limited to ``config.limit`` training examples."""
    name = config.name
    assert isinstance(name, str)
    if name in DATASETS:
        dataset = DATASETS.get(name)(config, seed)
    elif is_text_spec(name):
        if config.binarize not in (None, "none"):
            raise DataError(f"cannot binarize text ({name!r}); drop --binarize")
        dataset = load_text(name)
    elif Path(name).expanduser().exists():
        dataset = load_path(
            name, valid_fraction=config.valid_fraction, allow_missing=config.missing == "allow"
        )
        if config.standardize is None and dataset.info.support == "real" and not dataset.info.is_image:
            dataset = standardize_dataset(dataset)
    elif looks_like_path(name):
        raise DataError(f"no such file or folder: {name!r}")
    else:
        raise _unknown(name)
    if config.standardize and dataset.info.standardization is None and dataset.info.support == "real":
        dataset = standardize_dataset(dataset)
    return _limit(dataset, config.limit)


def _label_facts(dataset: Dataset, names_file: str | None) -> Dataset:
    """Record which labels no training example has, and the labels' names from ``names_file``
    (one per line, label 0 first)."""
    info = dataset.info
    if not info.num_classes or dataset.train.y is None:
        if names_file is not None:
            raise DataError(f"--label-names {names_file!r}: the data {dataset.name!r} have no labels")
        return dataset
    seen = set(dataset.train.y.unique().tolist())
    absent = tuple(k for k in range(info.num_classes) if k not in seen)
    names = info.label_names
    if names_file is not None:
        path = Path(names_file).expanduser()
        if not path.is_file():
            raise DataError(f"--label-names: no such file {names_file!r}")
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        if len(names) != info.num_classes:
            raise DataError(
                f"--label-names {names_file!r} has {len(names)} names but the data have {info.num_classes} "
                f"labels (0..{info.num_classes - 1}); give one name per line, label 0 first"
            )
        if len(set(names)) != len(names) or any(n.lstrip("-").isdigit() for n in names):
            raise DataError(f"--label-names {names_file!r}: names must be distinct and not numbers")
    return dataclasses.replace(
        dataset, info=dataclasses.replace(info, absent_labels=absent, label_names=names)
    )
