"""The learned manifold of a 2-D latent space, and encoder means for latent scatter plots.

Kingma & Welling (2014), "Auto-encoding variational Bayes", Fig. 4: "linearly spaced
coordinates on the unit square were transformed through the inverse CDF of the Gaussian to
produce values of the latent variables z", then decoded.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simulacra.errors import CapabilityError
from simulacra.metrics.likelihood import evaluation_mode, model_device
from simulacra.models.base import LatentVariableModel, require
from simulacra.tasks.reconstruct import batched_slices, distribution_mean


def encode_means(
    model: LatentVariableModel, x: Tensor, c: Tensor | None = None, batch_size: int = 1024
) -> Tensor:
    """Posterior means E_q[z | x, c] of each example, batch by batch.

    Args:
        model: a latent-variable model.
        x: (N, *event_shape) data.
        c: (N, ...) context or None.
        batch_size: examples per forward pass.

    Returns:
        (N, latent_dim) codes (flattened when the latent has more axes) on the model's device.
    """
    require(model, LatentVariableModel, "latent space to encode into")
    device = model_device(model, x)
    out = []
    with torch.no_grad(), evaluation_mode(model):
        for s in batched_slices(x.shape[0], batch_size):
            cb = None if c is None else c[s : s + batch_size].to(device)
            z = distribution_mean(model.encode(x[s : s + batch_size].to(device), cb))
            out.append(z.reshape(z.shape[0], -1))
    return torch.cat(out)


def manifold_grid(n: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Φ⁻¹ of n evenly spaced points (i + ½)/n, i = 0..n−1, of (0, 1): shape (n,), increasing."""
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.special.ndtri(p).to(dtype)


def latent_manifold(model: LatentVariableModel, *, n: int = 20, c: Tensor | None = None) -> Tensor:
    """Decoded means on an n × n grid of a 2-D latent space (Kingma & Welling 2014, Fig. 4).

        z_{r, s} = μ + σ ⊙ (Φ⁻¹(p_s), Φ⁻¹(p_{n−1−r})),   p_i = (i + ½)/n,

    with μ, σ the prior's mean and standard deviation (0 and 1 for N(0, I)), so z₁ grows along a
    row and z₂ grows upwards, as in a plot: image r·n + s is row r, column s of the figure.

    Args:
        model: a latent-variable model with a 2-D latent.
        n: points per axis.
        c: context for every image (a label: shape () or (1,)), or None.

    Returns:
        (n·n, *event_shape) decoded means, row-major, on the model's device.
    """
    require(model, LatentVariableModel, "latent space")
    device = model_device(model, torch.empty(0))
    if c is not None:
        c = c.to(device)
        c = c.reshape(1) if c.dim() == 0 else c[:1]
    with torch.no_grad(), evaluation_mode(model):
        prior = model.prior(c)
        shape = tuple(prior.batch_shape + prior.event_shape)
        latent_dim = shape[-1] if shape else 1
        if latent_dim != 2:
            raise CapabilityError(f"latent manifold needs a 2-D latent; this model has {latent_dim}")
        try:
            loc = prior.mean.reshape(-1, 2)[0]
            scale = prior.stddev.reshape(-1, 2)[0]
        except NotImplementedError:
            loc, scale = torch.zeros(2, device=device), torch.ones(2, device=device)
        if not (torch.isfinite(loc).all() and torch.isfinite(scale).all()):
            loc, scale = torch.zeros_like(loc), torch.ones_like(scale)
        g = manifold_grid(n, dtype=loc.dtype).to(loc.device)
        z1 = g[None, :].expand(n, n)  # columns: z₁ increasing to the right
        z2 = g.flip(0)[:, None].expand(n, n)  # rows: z₂ increasing upwards
        z = loc + scale * torch.stack([z1, z2], -1).reshape(n * n, 2)
        cs = None if c is None else c.expand(n * n, *c.shape[1:])
        x = distribution_mean(model.decode(z, cs))
    return x.reshape(n * n, *model.event_shape)
