"""Several data sources as one labelled dataset: the label of an example is its source.

``simulacra train cyclegan --data photos/ --data paintings/`` trains on two image sets that are
never paired; the loop feeds one dataset, so the sources are joined into one whose label k says
"from source k" (the sources' own labels are not kept) and whose label names are the sources'
names. The sources must hold examples of one kind: the same shape, support, number of levels and
vocabulary, since one model reads them all; their supports may differ (the joined data have the
widest, e.g. real beside values in [0, 1]).

The examples of the sources are interleaved (the first of each source, then the second, ...), so
that the first examples of a held-out split show every source. A split is kept when every source
has it (an image folder has train and valid splits, a .npz may
also have a test split); a split that only some sources have is left out, so that each held-out
split still holds every domain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from simulacra.data.info import Dataset, Split
from simulacra.errors import DataError


def source_name(name: str) -> str:
    """A short name for a data source: a path's stem (``photos/`` -> ``photos``), else the name."""
    path = Path(name.removeprefix("text:")).expanduser()
    return path.stem or path.name or name


WIDTH = {"binary": 0, "unit": 1, "real": 2}  # each support contains the ones before it


def _kind(dataset: Dataset) -> dict[str, object]:
    info = dataset.info
    return {
        "shape": tuple(info.event_shape),
        "vocabulary": info.vocabulary,
        "standardization": info.standardization,
    }


def _joint_support(datasets: Sequence[Dataset]) -> tuple[str, int | None]:
    """The narrowest support holding every source's values (binary ⊂ unit ⊂ real: a table of
    values in [0, 1] beside one of any reals is real), and the grey levels if all agree."""
    support = max((d.info.support for d in datasets), key=lambda s: WIDTH.get(s, 2))
    levels = {d.info.levels for d in datasets}
    same = len({d.info.support for d in datasets}) == 1 and len(levels) == 1
    return support, (levels.pop() if same else None)


def join_sources(datasets: Sequence[Dataset], names: Sequence[str]) -> Dataset:
    """One dataset of ``datasets`` (each from one source), labelled by source: examples of
    ``datasets[k]`` get label k, named ``names[k]``.

    Args:
        datasets: two or more datasets of the same kind of example.
        names: a distinct name for each source.

    Per-batch transforms of the sources (dynamic binarization) are not carried over: join the
    sources first, then binarize.

    Returns:
        a :class:`Dataset` whose splits concatenate the sources' splits (train always; valid and
        test when every source has them), with ``info.num_classes = len(datasets)``.

    Raises:
        DataError: fewer than two sources, repeated names, or sources whose examples differ in
            shape, vocabulary or standardization.
    """
    if len(datasets) < 2 or len(datasets) != len(names):
        raise DataError(f"joining data sources needs two or more, each named; found {len(datasets)}")
    if len(set(names)) != len(names):
        raise DataError(f"data sources need distinct names; found {list(names)}")
    first = _kind(datasets[0])
    for name, dataset in zip(names[1:], datasets[1:], strict=True):
        kind = _kind(dataset)
        differ = [k for k in first if first[k] != kind[k]]
        if differ:
            detail = "; ".join(f"{k} {first[k]!r} against {kind[k]!r}" for k in differ)
            raise DataError(
                f"data sources {names[0]!r} and {name!r} hold different kinds of example ({detail}); "
                "one model reads both, so they must match"
            )

    def joined(splits: list[Split | None]) -> Split | None:
        if any(s is None or len(s) == 0 for s in splits):
            return None
        present = [s for s in splits if s is not None]
        x = torch.cat([s.x for s in present])
        y = torch.cat([torch.full((len(s),), k, dtype=torch.long) for k, s in enumerate(present)])
        rank = torch.cat([torch.arange(len(s)) for s in present])  # position within its source
        order = torch.argsort(rank * len(present) + y, stable=True)  # 0 of each source, then 1, ...
        return Split(x[order], y[order])

    train = joined([d.train for d in datasets])
    if train is None:
        empty = [n for n, d in zip(names, datasets, strict=True) if len(d.train) == 0]
        raise DataError(f"data source {empty[0]!r} has no training examples")
    support, levels = _joint_support(datasets)
    info = dataclasses.replace(
        datasets[0].info,
        support=support,
        levels=levels,
        num_classes=len(datasets),
        label_names=tuple(names),
        absent_labels=(),
    )
    return Dataset(
        name="+".join(names),
        info=info,
        train=train,
        valid=joined([d.valid for d in datasets]),
        test=joined([d.test for d in datasets]),
    )


__all__ = ["join_sources", "source_name"]
