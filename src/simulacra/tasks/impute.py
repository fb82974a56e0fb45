"""Missing-data imputation with any trained model that can complete partly observed examples.

Given examples x (N, *event) whose missing entries are NaN (or a bool ``missing`` mask), the
imputation is x with its missing entries filled; the observed entries are copied back bitwise.
How the missing entries are filled depends on what the model can do:

* **importance sampling over a latent** (:class:`~simulacra.models.base.ImportanceImputation`:
  the VAE family, MIWAE of Mattei & Frellsen 2019): the single imputation is the conditional
  mean E[x_miss | x_obs], estimated by self-normalized importance sampling with K draws (1,000 by
  default); the M multiple imputations are sampling-importance-resampling draws from
  p(x_miss | x_obs);
* **completion** (:class:`~simulacra.models.base.Completion`, autoregressive models): each
  imputation is a draw from the model given the observed entries;
* **diffusion inpainting** (:class:`~simulacra.samplers.base.DiffusionSampling`): each
  imputation is a draw by replacement (:func:`simulacra.tasks.inverse.inpaint`).

A model that only draws has no conditional mean at hand: its single imputation is the average
of its M draws (one draw when M = 0), which the result's ``method`` says.

A model trained on standardized data (``info.standardization`` = (m, s)) sees (x − m)/s and its
imputations are mapped back, x = m + s x', so callers work in their own units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.errors import CapabilityError, DataError
from simulacra.models.base import (
    Completion,
    DiffusionSampling,
    GenerativeModel,
    ImportanceImputation,
    check_context,
    model_name,
)
from simulacra.tasks import inverse


@dataclass
class Imputation:
    """What :func:`impute` returns.

    Attributes:
        completed: (N, *event) in the input's units and dtype: the single imputation, the
            observed entries bitwise as given.
        draws: (M, N, *event) multiple imputations completed the same way, or None (M = 0).
        missing: bool (N, *event), True where an entry was missing.
        method: how the missing entries were filled, in words for reports.
    """

    completed: Tensor
    draws: Tensor | None
    missing: Tensor
    method: str


IMPUTING_MODELS = "VAEs (miwae, vae, iwae, ...), autoregressive models (made, nade, pixelcnn, ...), diffusion models (ddpm, score-sde)"
"""The models with the Completion capability, for messages."""


def can_impute(model: object) -> bool:
    """Whether ``model`` fills missing entries (importance sampling, completion or inpainting)."""
    return isinstance(model, ImportanceImputation | Completion | DiffusionSampling)


def missing_entries(x: Tensor, missing: Tensor | None = None) -> Tensor:
    """The bool mask of missing entries: ``missing`` when given (NaN elsewhere is refused), else
    the NaN entries of x.

    Raises:
        DataError: a mask of another shape, or a NaN outside the mask.
    """
    nan = torch.isnan(x) if x.is_floating_point() else torch.zeros_like(x, dtype=torch.bool)
    if missing is None:
        return nan
    if tuple(missing.shape) != tuple(x.shape):
        raise DataError(f"the mask has shape {tuple(missing.shape)}; the data have {tuple(x.shape)}")
    missing = missing.bool()
    if bool((nan & ~missing).any()):
        count = int((nan & ~missing).sum())
        raise DataError(f"the data hold {count} NaN value(s) where the mask says observed; mark them missing")
    return missing


def check_imputable(
    model: GenerativeModel, x: Tensor, missing: Tensor, *, allow_unobserved: bool = False
) -> None:
    """Raise :class:`DataError` unless x (N, *event) fits the model and can be imputed: the
    model's event shape, finite observed values, and, unless ``allow_unobserved``, no entry
    missing in every example of several.

    An entry missing in every example is most often a broken column of a table (an export that
    lost it), and then the imputation would be the model's guess from the other entries alone;
    it is refused unless asked for. Asked for, it is imputed like any other entry: the model
    learnt it from its training data (where such an entry is refused,
    :func:`simulacra.data.validate`), and each example's observed entries condition it (the
    bottom half of every image, say)."""
    event = tuple(model.event_shape)
    if tuple(x.shape[1:]) != event or x.dim() < 2:
        width = model.info.dim
        raise DataError(
            f"expected examples of shape {event} ({width} values each) for {model_name(model)}; "
            f"found {tuple(x.shape[1:]) if x.dim() > 1 else tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise DataError("no examples to impute")
    observed = x[~missing]
    if observed.is_floating_point() and not bool(torch.isfinite(observed).all()):
        raise DataError("the observed values hold infinite values; mark missing entries as NaN")
    never = missing.flatten(1).all(0)  # (D,)
    if not allow_unobserved and bool(never.any()) and x.shape[0] > 1:
        columns = (never.nonzero()[:, 0] + 1).tolist()
        listed = ", ".join(map(str, columns[:10])) + (", ..." if len(columns) > 10 else "")
        raise DataError(
            f"column{'s' if len(columns) > 1 else ''} {listed} (counting from 1) "
            f"{'are' if len(columns) > 1 else 'is'} missing in every example: the model could only "
            "guess it from the other columns; to impute it that way (e.g. the bottom half of every "
            "image), pass --allow-unobserved (allow_unobserved=True)"
        )


@torch.no_grad()
def impute(
    model: GenerativeModel,
    x: Tensor,
    missing: Tensor | None = None,
    *,
    c: Tensor | None = None,
    num_samples: int = 1000,
    multiple: int = 0,
    batch_size: int = 256,
    allow_unobserved: bool = False,
    generator: torch.Generator | None = None,
) -> Imputation:
    """Fill the missing entries of x with ``model`` (see the module docstring for how).

    Args:
        model: a trained model with the Completion capability (:func:`can_impute`).
        x: (N, *event), the model's units before its standardization (the user's); missing
            entries are NaN, or given by ``missing``.
        missing: bool (N, *event), True where an entry is missing (None: the NaN entries).
        c: (N,) labels for a conditional model.
        num_samples: K importance draws per example (importance-sampling models only).
        multiple: M ≥ 0 multiple imputations.
        batch_size: examples imputed at a time.
        allow_unobserved: impute entries missing in every example too (refused by default:
            :func:`check_imputable`).
        generator: makes the imputations reproducible (on the model's device).

    Returns:
        an :class:`Imputation`; x's dtype and device, observed entries bitwise unchanged.

    Raises:
        CapabilityError: a model that cannot impute.
        DataError: see :func:`check_imputable` and :func:`missing_entries`.
    """
    if not can_impute(model):
        raise CapabilityError(f"{model_name(model)} cannot impute; models with Completion: {IMPUTING_MODELS}")
    if isinstance(multiple, bool) or int(multiple) < 0:
        raise DataError(f"the number of multiple imputations must be >= 0; found {multiple}")
    if int(num_samples) < 1 or int(batch_size) < 1:
        raise DataError(f"num_samples and batch_size must be >= 1; found {num_samples} and {batch_size}")
    missing = missing_entries(x, missing)
    check_imputable(model, x, missing, allow_unobserved=allow_unobserved)
    check_context(model, c, x.shape[0])
    m = int(multiple)
    if isinstance(model, ImportanceImputation):
        method = f"conditional mean by self-normalized importance sampling (K = {num_samples})"
        method += f"; {m} draws by sampling-importance-resampling" if m else ""
    elif isinstance(model, Completion):
        method = "draws of the model's completion"
    else:
        method = "draws of diffusion inpainting (replacement)"
    if not isinstance(model, ImportanceImputation):
        method += (
            f"; single imputation = the mean of {m} draws" if m > 1 else "; single imputation = one draw"
        )
    if not bool(missing.any()):
        draws = x.unsqueeze(0).repeat(m, *([1] * x.dim())) if m else None
        return Imputation(x.clone(), draws, missing, "nothing missing: the input unchanged")

    device, dtype = model.device, next(model.parameters()).dtype
    mean_s, std_s = _standardization(model, dtype, device)
    completed_parts: list[Tensor] = []
    draw_parts: list[Tensor] = []
    for start in range(0, x.shape[0], int(batch_size)):
        rows = slice(start, start + int(batch_size))
        miss = missing[rows].to(device)
        xb = x[rows].to(device=device, dtype=dtype)
        xb = torch.where(miss, torch.zeros((), dtype=dtype, device=device), (xb - mean_s) / std_s)
        cb = None if c is None else c[rows].to(device)
        mean_b, draws_b = _fill(model, xb, miss, cb, num_samples, m, generator)
        completed_parts.append((mean_b * std_s + mean_s).to(x.device, x.dtype))
        if draws_b is not None:
            draw_parts.append((draws_b * std_s + mean_s).to(x.device, x.dtype))
    keep = ~missing
    completed = torch.where(keep, x, torch.cat(completed_parts))  # observed entries bitwise
    draws = torch.where(keep, x, torch.cat(draw_parts, 1)) if m else None
    return Imputation(completed, draws, missing, method)


def _standardization(
    model: GenerativeModel, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(m, s) of the model's standardization, shaped like one example (zeros and ones without one)."""
    info = model.info
    if info.standardization is None:
        zero = torch.zeros(info.event_shape, dtype=dtype, device=device)
        return zero, torch.ones_like(zero)
    mean, std = info.standardization
    as_event = {"dtype": dtype, "device": device}
    return (
        torch.tensor(mean, **as_event).reshape(info.event_shape),
        torch.tensor(std, **as_event).reshape(info.event_shape),
    )


def _fill(
    model: GenerativeModel,
    x: Tensor,
    missing: Tensor,
    c: Tensor | None,
    num_samples: int,
    multiple: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor | None]:
    """(single imputation (B, *event), draws (M, B, *event) or None) in the model's units."""
    if isinstance(model, ImportanceImputation):
        return model.impute(x, missing, c, num_samples=num_samples, multiple=multiple, generator=generator)
    draws = []
    for _ in range(max(1, multiple)):
        if isinstance(model, Completion):
            draws.append(model.complete(x, missing, c, generator=generator))
        else:
            draws.append(inverse.inpaint(model, x, (~missing).to(x.dtype), c=c, generator=generator))
    stacked = torch.stack(draws)  # (max(1, M), B, *event)
    return stacked.mean(0), (stacked if multiple else None)


__all__ = ["IMPUTING_MODELS", "Imputation", "can_impute", "check_imputable", "impute", "missing_entries"]
