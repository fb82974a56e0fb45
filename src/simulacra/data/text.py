"""Character-level text as token sequences: ``--data text:PATH`` (optionally ``text:PATH?length=T``).

A UTF-8 text file is split by position (first 90 % train, next 5 % valid, last 5 % test, so no
window straddles two splits) and each split is cut into non-overlapping windows of T characters
(T = 128 unless ``?length=T`` is given; a split's tail shorter than T is dropped). The vocabulary
is the sorted set of characters of the training part; characters of the valid or test part
that the training part lacks become U+FFFD (added to the vocabulary only when needed).

Like every discrete dataset here, token k ∈ {0, …, V − 1} is stored as x = k / (V − 1) with
``support="unit"`` and ``levels=V``, and ``DataInfo.vocabulary`` keeps the characters, so a
model's bits per dimension are bits per character and samples decode back to text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from simulacra.data.files import build_dataset
from simulacra.data.info import Dataset
from simulacra.errors import DataError

PREFIX = "text:"
DEFAULT_LENGTH = 128
FRACTIONS = (0.9, 0.05, 0.05)
UNKNOWN = "\ufffd"


def is_text_spec(name: str) -> bool:
    """Whether a dataset name is a ``text:PATH`` spec."""
    return name.startswith(PREFIX)


def parse_text_spec(name: str) -> tuple[Path, int]:
    """``text:PATH[?length=T]`` -> (path, T)."""
    body = name[len(PREFIX) :]
    length = DEFAULT_LENGTH
    if "?" in body:
        body, query = body.rsplit("?", 1)
        key, _, value = query.partition("=")
        if key != "length" or not value.isdigit() or int(value) < 1:
            raise DataError(
                f"expected text:PATH or text:PATH?length=T with T a positive integer; found {name!r}"
            )
        length = int(value)
    if not body:
        raise DataError(f"expected a file after 'text:', e.g. text:book.txt; found {name!r}")
    return Path(body).expanduser(), length


def encode(text: str, vocabulary: str) -> Tensor:
    """Characters -> grid values k / (V − 1), (len(text),) float32; unknown characters -> U+FFFD."""
    index = {ch: k for k, ch in enumerate(vocabulary)}
    unknown = index.get(UNKNOWN)
    tokens = [index.get(ch, unknown) for ch in text]
    if any(t is None for t in tokens):
        raise DataError(
            "the text has characters outside the vocabulary, which has no U+FFFD to stand for them"
        )
    return torch.tensor(tokens, dtype=torch.float32) / (len(vocabulary) - 1)


def decode(x: Tensor, vocabulary: str) -> list[str]:
    """Grid values (N, T) (or (T,)) -> N strings of T characters."""
    x = torch.as_tensor(x).detach().cpu()
    rows = x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)
    k = (rows * (len(vocabulary) - 1)).round().long().clamp(0, len(vocabulary) - 1)
    return ["".join(vocabulary[i] for i in row.tolist()) for row in k]


def _windows(values: Tensor, length: int) -> Tensor | None:
    n = values.numel() // length
    return values[: n * length].reshape(n, length) if n else None


def load_text(name: str) -> Dataset:
    """The character-level dataset of a ``text:PATH[?length=T]`` spec (see the module docstring).

    Raises:
        DataError: a missing or undecodable file, or one too short for a training window.
    """
    path, length = parse_text_spec(name)
    if not path.is_file():
        raise DataError(f"text file not found: {str(path)!r} (from {name!r})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{str(path)!r} is not UTF-8 text: {err}") from None
    n_train = int(len(text) * FRACTIONS[0])
    n_valid = int(len(text) * FRACTIONS[1])
    parts = {
        "train": text[:n_train],
        "valid": text[n_train : n_train + n_valid],
        "test": text[n_train + n_valid :],
    }
    if len(parts["train"]) < length:
        raise DataError(
            f"{str(path)!r}: its training part has {len(parts['train'])} characters, fewer than one "
            f"window of {length}; use a longer text or text:PATH?length=T with a smaller T"
        )
    vocabulary = "".join(sorted(set(parts["train"])))
    if set(parts["valid"] + parts["test"]) - set(vocabulary):
        vocabulary += UNKNOWN
    if len(vocabulary) < 2:
        raise DataError(f"{str(path)!r}: the training text uses {len(vocabulary)} character; need at least 2")
    splits = {key: _windows(encode(part, vocabulary), length) for key, part in parts.items()}
    pairs = {key: (x, None) for key, x in splits.items() if x is not None}
    dataset = build_dataset(name, str(path), pairs, support="unit", levels=len(vocabulary))
    return replace(dataset, info=replace(dataset.info, vocabulary=vocabulary))
