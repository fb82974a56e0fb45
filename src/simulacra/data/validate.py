"""Checks that data are a usable array of examples, with one clear message per problem.

Every dataset is validated on load (ARCHITECTURE.md): an array of examples ``(N, ...)`` with
N ≥ 1, a numeric dtype, finite values, values inside the support of the likelihood the data
will meet (``binary``: {0, 1} for a Bernoulli likelihood; ``unit``: [0, 1] for grey levels;
``real``: any finite value), and one label per example. Each failure raises
:class:`~simulacra.errors.DataError` whose message names the source, what was expected and what
was found.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from simulacra.errors import DataError

SUPPORTS: tuple[str, ...] = ("binary", "unit", "real")

ArrayLike = np.ndarray | Tensor


def _fmt(v: float) -> str:
    """A number for a message: two decimals unless it is very large or small."""
    return f"{v:.2f}" if 1e-2 <= abs(v) < 1e5 or v == 0 else f"{v:.3g}"


def _index(flat: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in flat)


def _to_tensor(x: ArrayLike, source: str, what: str = "examples") -> Tensor:
    """``x`` as a tensor (sharing memory where possible), after checking that it is numeric."""
    if isinstance(x, Tensor):
        if x.is_complex() or x.is_quantized or x.dtype in (torch.complex64, torch.complex128):
            raise DataError(f"{source!r} has non-numeric dtype {x.dtype}; expected real numbers")
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise DataError(
                f"{source!r} has non-numeric dtype {x.dtype}; expected {what} as numbers (bool, int or float)"
            )
        if x.dtype.kind == "u" and x.dtype.itemsize > 1:
            x = x.astype(np.int64)  # torch has few ops for uint16/32/64
        return torch.from_numpy(np.ascontiguousarray(x))
    raise DataError(f"{source!r}: expected a numpy array or torch tensor of {what}, got {type(x).__name__}")


def check_finite(x: ArrayLike, source: str) -> None:
    """Raise :class:`DataError` when ``x`` holds NaN or ±inf (count and first index in the message)."""
    t = _to_tensor(x, source)
    # a finite sum has no NaN or ±inf among its terms: one reduction, no mask, when the data are
    # clean (the usual case); a sum that overflows falls through to the exact count below
    if not t.is_floating_point() or bool(torch.isfinite(t.sum())):
        return
    for name, bad in (("NaN", torch.isnan(t)), ("infinite", torch.isinf(t))):
        count = int(bad.sum())
        if count:
            first = _index(bad.nonzero()[0])
            hint = {
                "NaN": " (or train miwae, which learns from data with missing entries)",
                "infinite": " (data are read as float32, whose largest magnitude is 3.4e38)"
                if t.dtype == torch.float32
                else "",
            }[name]
            raise DataError(
                f"{source!r} contains {count} {name} value{'s' if count > 1 else ''}, the first at "
                f"example {first[0]} (index {first}); remove or impute them{hint}"
            )


def check_support(x: ArrayLike, support: str, source: str) -> None:
    """Raise :class:`DataError` unless every value of ``x`` lies in ``support``.

    Args:
        x: data of any shape (a batch of examples, or one example).
        support: ``"binary"`` (values in {0, 1}), ``"unit"`` (values in [0, 1]) or ``"real"``
            (any finite value); see :class:`~simulacra.data.info.DataInfo`.
        source: how to name the data in the message (a file name, a dataset and split).
    """
    if support not in SUPPORTS:
        raise DataError(f"unknown support {support!r} for {source!r}; valid supports: {', '.join(SUPPORTS)}")
    t = _to_tensor(x, source)
    check_finite(t, source)
    if support == "real" or t.numel() == 0:
        return
    if t.dtype == torch.bool:
        return  # bools are 0 and 1
    if support == "unit":
        lo, hi = (float(v) for v in torch.aminmax(t))
        if lo < 0 or hi > 1:
            hint = "; if these are 8-bit grey levels, divide them by 255" if lo >= 0 and hi <= 255 else ""
            raise DataError(
                f"Bernoulli likelihood needs values in [0, 1]; {source!r} has min {_fmt(lo)}, "
                f"max {_fmt(hi)}{hint}"
            )
        return
    bad = (t != 0) & (t != 1)
    if bool(bad.any()):  # counted only on failure: a sum over every value costs more than the test
        count = int(bad.sum())
        first = _index(bad.nonzero()[0])
        lo, hi = float(t.min()), float(t.max())
        hint = (
            "; binarize grey levels in [0, 1] with binarize='static' or 'dynamic'"
            if lo >= 0 and hi <= 1
            else ""
        )
        raise DataError(
            f"binary data (Bernoulli likelihood) need values in {{0, 1}}; {source!r} has {count} other "
            f"value{'s' if count > 1 else ''}, the first {_fmt(float(t[first]))} at index {first} "
            f"(min {_fmt(lo)}, max {_fmt(hi)}){hint}"
        )


def check_labels(y: ArrayLike, num_examples: int, source: str) -> None:
    """Raise :class:`DataError` unless ``y`` holds one non-negative integer label per example."""
    t = _to_tensor(y, f"{source} labels", what="labels")
    if t.dim() != 1:
        raise DataError(
            f"labels of {source!r} must be one integer per example, shape (N,); got {tuple(t.shape)}"
        )
    if t.shape[0] != num_examples:
        raise DataError(
            f"{source!r} has {num_examples} examples but {t.shape[0]} labels; expected one label per example"
        )
    if t.numel() == 0:
        return
    if t.is_floating_point():
        check_finite(t, f"{source} labels")
        if not bool((t == t.round()).all()):
            raise DataError(f"labels of {source!r} must be integers (class indices); found fractional values")
    if float(t.min()) < 0:
        raise DataError(f"labels of {source!r} must be class indices 0, 1, ...; found {_fmt(float(t.min()))}")


def check_missing(x: ArrayLike, source: str) -> None:
    """Raise :class:`DataError` when data with missing entries (NaN) cannot be learned from: an
    infinite value, or an entry (a column of a table) that no example observes."""
    t = _to_tensor(x, source)
    if not t.is_floating_point():
        return
    infinite = torch.isinf(t)
    if bool(infinite.any()):
        first = _index(infinite.nonzero()[0])
        raise DataError(
            f"{source!r} contains {int(infinite.sum())} infinite value(s), the first at example {first[0]} "
            f"(index {first}); missing entries are NaN, infinities are not allowed"
        )
    never = torch.isnan(t).flatten(1).all(0)  # (D,) entries missing in every example
    if bool(never.any()):
        columns = (never.nonzero()[:, 0] + 1).tolist()
        listed = ", ".join(map(str, columns[:10])) + (", ..." if len(columns) > 10 else "")
        raise DataError(
            f"{source!r}: column{'s' if len(columns) > 1 else ''} {listed} (counting from 1) "
            f"{'are' if len(columns) > 1 else 'is'} missing in every example; nothing can be learned or "
            "imputed there: drop it"
        )


def validate_examples(
    x: ArrayLike,
    *,
    source: str,
    support: str | None = None,
    y: ArrayLike | None = None,
    allow_missing: bool = False,
) -> None:
    """Check that ``x`` is a non-empty numeric array of examples ``(N, ...)`` with finite values.

    Args:
        x: examples, shape (N, *event_shape) with N ≥ 1 and at least one event dimension.
        source: how to name the data in messages (``"'mnist.npz' x_train"``, ``"digits (valid)"``).
        support: when given, also check that every value lies in it (see :func:`check_support`).
        y: optional labels, shape (N,), non-negative integers.
        allow_missing: NaN entries are missing values (models trained on incomplete data,
            MIWAE); the observed values are checked, and an entry missing in every example or
            an infinite value is refused (:func:`check_missing`).

    Raises:
        DataError: one message per problem (wrong type or dtype, fewer than two dimensions, no
            examples, NaN or inf, values outside the support, labels of the wrong length).
    """
    t = _to_tensor(x, source)
    if t.dim() < 2:
        hint = "; reshape a single feature to (N, 1)" if t.dim() == 1 else ""
        raise DataError(
            f"{source!r}: expected an array of examples (N, ...), got shape {tuple(t.shape)}{hint}"
        )
    if t.numel() == 0:
        raise DataError(
            f"{source!r} is empty: shape {tuple(t.shape)} holds no values; expected N ≥ 1 examples"
        )
    if allow_missing and t.is_floating_point():
        check_missing(t, source)
        t = torch.nan_to_num(t, nan=0.0)  # the observed values are checked below; 0 is in every support
    if support is None:
        check_finite(t, source)
    else:
        check_support(t, support, source)  # checks finiteness too
    if y is not None:
        check_labels(y, t.shape[0], source)
