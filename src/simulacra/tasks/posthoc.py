"""Post-hoc latent densities: fit p(z) to the codes of a trained auto-encoder.

An auto-encoder has no prior; to sample from it one fits a density to the encoded training set
and decodes draws from it (Ghosh et al. 2020, "From variational to deterministic autoencoders").
A diagonal Gaussian ignores the shape of the aggregate posterior and puts mass where no code
lies, which is why its samples look worse than a Gaussian mixture's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from simulacra.models.base import LatentVariableModel, require
from simulacra.tasks.manifold import encode_means


def fit_latent_density(model: Any, x: Tensor, c: Tensor | None = None, *, batch_size: int = 1024) -> Tensor:
    """Encode ``x`` (N, *event_shape) and fit ``model``'s post-hoc latent density to the codes.

    Returns the codes, shape (N, latent_dim). The model must be a latent-variable model with a
    ``fit_latent_density(z)`` method (the auto-encoder family).
    """
    require(model, LatentVariableModel, "latent space")
    with torch.no_grad():
        z = encode_means(
            model, x.to(model.device), None if c is None else c.to(model.device), batch_size=batch_size
        )
    model.fit_latent_density(z)
    return z
