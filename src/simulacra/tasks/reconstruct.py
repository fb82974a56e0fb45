"""Reconstruction through a latent-variable model: x̂ = E_{p(x|z)}[x] at z = E_{q(z|x)}[z].

The deterministic reconstruction used in figures (Kingma & Welling 2014; Hinton &
Salakhutdinov 2006): encode, take the posterior mean, decode, take the likelihood's mean.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from simulacra.errors import CapabilityError, DataError
from simulacra.metrics.likelihood import evaluation_mode, model_device
from simulacra.models.base import LatentVariableModel, require


def distribution_mean(d: Distribution) -> Tensor:
    """E[x] under ``d``; the mode where the mean is not implemented (e.g. some mixtures); for a
    flow, whose mean has no closed form, the image of its base's mean (``Flow.center``)."""
    for attribute in ("mean", "mode", "center"):
        try:
            value = getattr(d, attribute, None)
        except NotImplementedError:
            continue
        if value is not None:
            return value
    raise CapabilityError(f"{type(d).__name__} has neither a mean nor a mode to decode to")


def batched_slices(n: int, batch_size: int) -> range:
    """Start indices of consecutive batches of ``batch_size`` out of ``n``."""
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    return range(0, n, batch_size)


def reconstruct(
    model: LatentVariableModel, x: Tensor, c: Tensor | None = None, *, batch_size: int = 1024
) -> Tensor:
    """Decoder mean at the encoder mean, x̂ = E_{p(x | z = E_q[z | x], c)}[x], batch by batch.

    Args:
        model: a latent-variable model (``encode``, ``decode``).
        x: (N, *event_shape) data.
        c: (N, ...) context or None.
        batch_size: examples per forward pass.

    Returns:
        (N, *event_shape) reconstructions on the model's device (no gradient, eval mode).
    """
    require(
        model,
        LatentVariableModel,
        "latent space to reconstruct through",
        "reconstruction needs encode/decode",
    )
    device = model_device(model, x)
    out = []
    with torch.no_grad(), evaluation_mode(model):
        for s in batched_slices(x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(device)
            cb = None if c is None else c[s : s + batch_size].to(device)
            z = distribution_mean(model.encode(xb, cb))
            out.append(distribution_mean(model.decode(z, cb)).reshape(xb.shape))
    return torch.cat(out)
