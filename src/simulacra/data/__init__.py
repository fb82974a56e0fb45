"""Data: registered datasets, loading from paths, validation, transforms and downloads.

``load_dataset(DataConfig(...), seed=...)`` is the entry point: a registered name (``DATASETS.names()``)
or a path to a ``.npz``/``.npy``/``.csv`` file or an image folder becomes a validated
:class:`Dataset` of float32 tensors.
"""

from simulacra.data.datasets import DATASETS, DataConfig, load_dataset
from simulacra.data.download import download, fetch
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.data.validate import check_support, validate_examples

__all__ = [
    "DATASETS",
    "DataConfig",
    "DataInfo",
    "Dataset",
    "Split",
    "check_support",
    "download",
    "fetch",
    "load_dataset",
    "validate_examples",
]
