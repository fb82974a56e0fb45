"""Interpolation in latent space: decode the path between the encodings of two examples
(:func:`interpolate`, latent-variable models), or between two codes drawn from the prior of a
model without an encoder (:func:`interpolate_codes`, a GAN's generator).

Linear paths cross the low-density centre of a high-dimensional Gaussian prior, where
‖z‖ is atypically small; spherical paths keep the norm (White 2016, "Sampling generative
networks"), using Shoemake's (1985) slerp.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError, DataError
from simulacra.metrics.likelihood import evaluation_mode, model_device
from simulacra.models.base import LatentGenerator, LatentVariableModel, require
from simulacra.tasks.reconstruct import distribution_mean

METHODS = ("linear", "spherical")


def _weights(t: float | Tensor, a: Tensor) -> Tensor:
    """t as a tensor shaped (*t.shape, 1, …, 1) to broadcast against ``a``."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    return t.reshape(*t.shape, *([1] * a.dim()))


def lerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Linear interpolation (1 − t) a + t b.

    Args:
        a, b: (..., d) end points.
        t: a float, or (T,) positions (0 gives a, 1 gives b exactly).

    Returns:
        (*t.shape, ..., d).
    """
    w = _weights(t, a)
    return (1 - w) * a + w * b


def slerp(a: Tensor, b: Tensor, t: float | Tensor, *, eps: float = 1e-6) -> Tensor:
    """Spherical linear interpolation (Shoemake 1985) along the last dimension,

        slerp(a, b; t) = sin((1 − t) Ω)/sin Ω · a + sin(t Ω)/sin Ω · b,   cos Ω = â · b̂,

    which moves at constant angular speed and keeps ‖·‖ constant when ‖a‖ = ‖b‖. Where a and b
    are nearly parallel (or antiparallel, or zero), sin Ω ≈ 0 and it falls back to :func:`lerp`.

    Args:
        a, b: (..., d) end points.
        t: a float, or (T,) positions in [0, 1].
        eps: threshold on sin Ω below which lerp is used.

    Returns:
        (*t.shape, ..., d).
    """
    w = _weights(t, a)
    an = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    bn = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (an * bn).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < eps
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / safe_sin
    return torch.where(parallel, lerp(a, b, t), spherical)


def interpolate(
    model: LatentVariableModel,
    x_a: Tensor,
    x_b: Tensor,
    c: Tensor | None = None,
    *,
    steps: int = 10,
    method: str = "linear",
) -> Tensor:
    """Decoded means along a path between the encoder means of two examples.

        z_a = E_q[z | x_a],  z_b = E_q[z | x_b],  x̂(t) = E_{p(x | z(t), c)}[x],  t = 0, 1/(steps−1), …, 1,

    with z(t) = lerp(z_a, z_b, t) (``"linear"``) or slerp (``"spherical"``). The end points are
    the reconstructions of x_a and x_b.

    Args:
        model: a latent-variable model.
        x_a, x_b: one example each, of shape ``event_shape`` or (1, *event_shape).
        c: the context of the pair (a label: shape () or (1,); a context vector: (1, ...)), or None.
        steps: number of points on the path, including both ends (≥ 2).
        method: ``"linear"`` or ``"spherical"``.

    Returns:
        (steps, *event_shape) decoded means on the model's device.
    """
    require(model, LatentVariableModel, "latent space to interpolate in")
    if method not in METHODS:
        raise ConfigError(f"unknown interpolation method {method!r}; valid methods: {', '.join(METHODS)}")
    if steps < 2:
        raise ConfigError(f"interpolation needs at least 2 steps, got {steps}")
    event_shape = tuple(model.event_shape)
    if x_a.shape != x_b.shape:
        raise DataError(f"x_a and x_b differ in shape: {tuple(x_a.shape)} and {tuple(x_b.shape)}")
    if tuple(x_a.shape) == event_shape:
        x_a, x_b = x_a[None], x_b[None]
    elif tuple(x_a.shape) != (1, *event_shape):
        raise DataError(
            f"interpolate takes one example at each end, of shape {event_shape} or {(1, *event_shape)}; "
            f"got {tuple(x_a.shape)}"
        )
    device = model_device(model, x_a)
    if c is not None:
        c = c.to(device)
        c = c.reshape(1) if c.dim() == 0 else c[:1]
    with torch.no_grad(), evaluation_mode(model):
        z = distribution_mean(
            model.encode(torch.cat([x_a, x_b]).to(device), None if c is None else c.expand(2, *c.shape[1:]))
        )
        t = torch.linspace(0.0, 1.0, steps, device=z.device, dtype=z.dtype)
        # flattened, so that slerp measures angles between whole codes (conv latents too)
        path = _path(z[0], z[1], t, method)
        cs = None if c is None else c.expand(steps, *c.shape[1:])
        x = distribution_mean(model.decode(path, cs))
    return x.reshape(steps, *event_shape)


def _path(z_a: Tensor, z_b: Tensor, t: Tensor, method: str) -> Tensor:
    """(len(t), *z_a.shape) codes from z_a to z_b; slerp measures angles between whole flattened
    codes (convolutional latents too)."""
    path = (lerp if method == "linear" else slerp)(z_a.reshape(-1), z_b.reshape(-1), t)
    return path.reshape(len(t), *z_a.shape)


def interpolate_codes(
    model: LatentGenerator,
    pairs: int,
    c: Tensor | None = None,
    *,
    steps: int = 10,
    method: str = "spherical",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generated data along paths between pairs of codes drawn from the prior:

        z_a, z_b ~ p(z),  x(t) = G(z(t), c),  t = 0, 1/(steps−1), …, 1,

    with z(t) = slerp (``"spherical"``, the default for a Gaussian prior) or lerp (``"linear"``).

    Args:
        model: a model with a prior and a latent-to-data map (a GAN).
        pairs: number of paths.
        c: (pairs,) labels of a conditional model (one per path), or None.
        steps: points on each path, both ends included (≥ 2).
        method: ``"spherical"`` or ``"linear"``.
        generator: seeds the draw of the codes.

    Returns:
        (pairs · steps, *event_shape): the paths one after the other.
    """
    require(model, LatentGenerator, "prior and generator to interpolate between codes")
    if method not in METHODS:
        raise ConfigError(f"unknown interpolation method {method!r}; valid methods: {', '.join(METHODS)}")
    if steps < 2 or pairs < 1:
        raise ConfigError(f"interpolation needs pairs ≥ 1 and at least 2 steps; got {pairs} and {steps}")
    prior = model.prior(None)
    z = sample_from(prior, (2 * pairs,), generator)
    z = z.reshape(2 * pairs, *z.shape[2:])  # (2·pairs, *latent): the prior's batch of one dropped
    t = torch.linspace(0.0, 1.0, steps, dtype=z.dtype)
    rows = []
    for i in range(pairs):
        cs = None if c is None else c[i : i + 1].expand(steps)
        rows.append(model.decode_latent(_path(z[2 * i], z[2 * i + 1], t, method), cs))
    return torch.cat(rows)
