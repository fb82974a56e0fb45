"""Post-hoc latent densities: fit p(z) to the codes of a trained auto-encoder.

An auto-encoder has no prior; to sample from it one fits a density to the encoded training set
and decodes draws from it (Ghosh et al. 2020, "From variational to deterministic autoencoders").
A diagonal Gaussian ignores the shape of the aggregate posterior and puts mass where no code
lies, which is why its samples look worse than a Gaussian mixture's.
"""

from __future__ import annotations

from torch import Tensor

from simulacra.metrics.likelihood import model_device
from simulacra.models.base import PostHocPrior, require
from simulacra.tasks.manifold import encode_means


def fit_latent_density(
    model: PostHocPrior, x: Tensor, c: Tensor | None = None, *, batch_size: int = 1024
) -> Tensor:
    """Encode ``x`` (N, *event_shape) and fit ``model``'s post-hoc latent density to the codes.

    Returns the codes, shape (N, latent_dim). The model must have a post-hoc prior
    (:class:`PostHocPrior`: the auto-encoder family).
    """
    require(model, PostHocPrior, "post-hoc latent density")
    device = model_device(model, x)
    z = encode_means(model, x.to(device), None if c is None else c.to(device), batch_size=batch_size)
    model.fit_latent_density(z)
    return z
