"""What a model needs to know about its data, and the in-memory dataset container."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

Support = Literal["binary", "unit", "real"]

LN2 = math.log(2.0)
"""ln 2: nats per bit (bits/dim = nats / (D · ln 2))."""


@dataclass(frozen=True)
class DataInfo:
    """Shape and support of one example; passed to every model preset.

    Attributes:
        event_shape: shape of one example: ``(C, H, W)`` for images, ``(D,)`` for vectors.
        support: ``"binary"`` (values in {0, 1}), ``"unit"`` (values in [0, 1], e.g. grey
            levels scaled by 1/255), or ``"real"`` (any real value, e.g. standardized data).
        num_classes: number of labels when the data have them (conditional models), else None.
        levels: number of discrete values per dimension before scaling (256 for 8-bit images,
            17 for scikit-learn's digits, 2 for binary data), None for continuous data. Used
            for dequantization and discretized likelihoods.
        vocabulary: for token sequences (``text:PATH``), the characters whose indices k are
            stored as x = k / (levels − 1); None for other data.
        absent_labels: labels in 0 … num_classes − 1 that no training example has (a model
            cannot learn them; samplers refuse them).
        label_names: the name of each label 0 … num_classes − 1 (image sub-folders, or a file
            the user gives), or None.
        standardization: (m, s), the per-dimension mean and standard deviation of the training
            split when the data were standardized, x' = (x − m)/s, flattened; None otherwise.
    """

    event_shape: tuple[int, ...]
    support: Support = "real"
    num_classes: int | None = None
    levels: int | None = None
    vocabulary: str | None = None
    absent_labels: tuple[int, ...] = ()
    label_names: tuple[str, ...] | None = None
    standardization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def log_scale(self) -> float:
        """Σ_d log s_d of the standardization (0 without one): NLL in the original units is the
        NLL of the standardized data plus this, in nats per example."""
        if self.standardization is None:
            return 0.0
        return float(sum(math.log(s) for s in self.standardization[1]))

    @property
    def present_labels(self) -> list[int]:
        """The labels training examples have, in order (empty without labels)."""
        return [k for k in range(self.num_classes or 0) if k not in self.absent_labels]

    def label_index(self, label: str | int) -> int:
        """The index of a label given as an index (``"3"``, 3) or a name (``"cat"``).

        Raises:
            ConfigError: no labels, an index out of range, an unknown name, or a label no
                training example has.
        """
        from simulacra.errors import ConfigError

        k = self.num_classes or 0
        if not k:
            raise ConfigError("these data have no labels")
        names = list(self.label_names or ())
        text = str(label)
        if text.lstrip("-").isdigit():
            index = int(text)
            if not 0 <= index < k:
                raise ConfigError(f"label {index} is out of range: the labels are 0..{k - 1}")
        elif text in names:
            index = names.index(text)
        else:
            known = f"; the labels are 0..{k - 1}" + (f" or {', '.join(names)}" if names else "")
            raise ConfigError(f"unknown label {text!r}{known}")
        if index in self.absent_labels:
            raise ConfigError(f"label {text} never occurs in the training data: the model has not learned it")
        return index

    @property
    def dim(self) -> int:
        """Number of scalar dimensions D of one example (for bits/dim)."""
        n = 1
        for s in self.event_shape:
            n *= s
        return n

    @property
    def is_image(self) -> bool:
        return len(self.event_shape) == 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataInfo:
        raw = dict(raw)
        raw["event_shape"] = tuple(raw["event_shape"])
        raw["absent_labels"] = tuple(raw.get("absent_labels") or ())
        if raw.get("label_names") is not None:
            raw["label_names"] = tuple(raw["label_names"])
        if raw.get("standardization") is not None:
            mean, std = raw["standardization"]
            raw["standardization"] = (tuple(mean), tuple(std))
        return cls(**raw)


@dataclass
class Split:
    """One split held in memory. ``x``: (N, *event_shape) float32; ``y``: (N,) int64 or None."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), None if self.y is None else self.y.to(device))


BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class Dataset:
    """A validated dataset in memory: train, optional valid and test splits, and its info.

    ``batch_transform`` (e.g. dynamic binarization) is applied by the training loop to every
    training batch with a generator seeded from the run's seed and the step, so a resumed run
    sees the same draws as an uninterrupted one.
    """

    name: str
    info: DataInfo
    train: Split
    valid: Split | None = None
    test: Split | None = None
    batch_transform: BatchTransform | None = None
