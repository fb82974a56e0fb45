"""Standard distributions as lazy modules, a point mass, and reproducible sampling.

* :class:`StandardNormal`: the prior p(z) = N(0, I) of a VAE;
* :class:`DiagonalGaussian`: the encoder head q(z | x) = N(μ(x), diag σ(x)²);
* :class:`PointMass`: the "posterior" of a deterministic auto-encoder, δ(z − f(x));
* :func:`sample_from`: draw from any Distribution under a ``torch.Generator``.

All distributions are built with ``validate_args=False``: argument checks would synchronise the
device with the host on every call. Data are checked once, at load time and in the models'
evaluation methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints

from simulacra.distributions.lazy import LazyDistribution


def _shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    return (int(event_shape),) if isinstance(event_shape, int) else tuple(int(s) for s in event_shape)


def softplus_std(raw: Tensor, min_std: float) -> Tensor:
    """``σ = softplus(raw) + min_std``: a positive standard deviation bounded away from 0."""
    return F.softplus(raw) + min_std


class StandardNormal(LazyDistribution):
    """p(z) = N(0, I), event shape ``(dim,)`` or any shape (e.g. ``(C, H, W)`` for an image flow).

    ``forward(c=None, n=None)`` returns the distribution with batch shape ``(len(c),)`` when a
    context is given, ``(n,)`` when ``n`` is, else ``()``. The zeros and ones are buffers, so the
    distribution follows the module's device and dtype.

    Args:
        dim: D for vectors, or the event shape.
    """

    def __init__(self, dim: int | Sequence[int]) -> None:
        super().__init__()
        self.event_shape = _shape(dim)
        self.dim = math.prod(self.event_shape)
        self.register_buffer("loc", torch.zeros(self.event_shape), persistent=False)
        self.register_buffer("scale", torch.ones(self.event_shape), persistent=False)

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        batch = batch_shape_of(c, n)
        shape = (*batch, *self.event_shape)
        base = Normal(self.loc.expand(shape), self.scale.expand(shape), validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)


def batch_shape_of(c: Tensor | None, n: int | None) -> tuple[int, ...]:
    """The batch shape a prior returns: ``(len(c),)``, else ``(n,)``, else ``()``."""
    if c is not None:
        return (c.shape[0],)
    if n is not None:
        return (int(n),)
    return ()


class DiagonalGaussian(nn.Module):
    """Head ``features -> N(μ, diag σ²)`` with ``σ = softplus(s) + min_std``.

    The features (B, 2·D) (or any (B, ...) with 2·D entries per example) are read as
    (B, 2, *event_shape): ``μ = features[:, 0]``, ``s = features[:, 1]``. The distribution has batch
    shape (B,) and the given event shape. This is the encoder of Kingma & Welling (2014).

    Args:
        event_shape: D, or the shape of one draw.
        min_std: floor of σ, which keeps log-densities bounded.
    """

    params_per_dim = 2

    def __init__(self, event_shape: int | Sequence[int], min_std: float = 1e-4) -> None:
        super().__init__()
        self.event_shape = _shape(event_shape)
        self.min_std = float(min_std)

    def forward(self, features: Tensor) -> Distribution:
        """(B, 2·D) features -> Independent Normal, batch (B,), event ``event_shape``."""
        h = features.reshape(features.shape[0], 2, *self.event_shape)
        base = Normal(h[:, 0], softplus_std(h[:, 1], self.min_std), validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)


class UnitNormal(Distribution):
    """N(0, I) over an event shape, batch shape (): the base distribution of normalizing flows.

    log p(z) = −½ ‖z‖² − (D/2) log 2π, computed directly (two tensor operations): a flow evaluates
    it on every training step, where the generic ``Independent(Normal)`` costs several more.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(self, event_shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> None:
        self._dtype, self._device = dtype, device
        self._dim = math.prod(event_shape)
        super().__init__(torch.Size(), torch.Size(event_shape), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        k = len(self.event_shape)
        sq = value.square()
        sq = sq.sum(tuple(range(-k, 0))) if k else sq
        return -0.5 * sq - 0.5 * self._dim * math.log(2 * math.pi)

    def rsample(self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None) -> Tensor:
        shape = torch.Size(sample_shape) + self.event_shape
        return torch.randn(shape, dtype=self._dtype, device=self._device, generator=generator)

    @property
    def mean(self) -> Tensor:
        return torch.zeros(self.event_shape, dtype=self._dtype, device=self._device)

    @property
    def stddev(self) -> Tensor:
        return torch.ones(self.event_shape, dtype=self._dtype, device=self._device)


class UnitGaussian(LazyDistribution):
    """Lazy module returning :class:`UnitNormal` over ``event_shape`` on the module's device and dtype."""

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        self.event_shape = _shape(event_shape)
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # carries device and dtype

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        if c is not None or n is not None:
            raise ValueError("UnitGaussian has batch shape (); expand it by drawing sample_shape")
        return UnitNormal(self.event_shape, self.anchor.dtype, self.anchor.device)


class PointMass(Distribution):
    """δ(z − z₀): all mass at ``z₀`` (the code of a deterministic encoder).

    ``sample``/``rsample`` return ``z₀`` (differentiably), ``mean`` is ``z₀``, ``variance`` is 0.
    ``log_prob(z)`` is the log-probability of the atom: 0 where ``z == z₀`` (all event entries)
    and −inf elsewhere. A point mass has no density, so the KL to a continuous prior is infinite;
    auto-encoders fit a post-hoc latent density instead (:mod:`simulacra.samplers.latent`).

    Args:
        loc: z₀, shape (*batch_shape, *event_shape).
        event_dim: how many trailing dimensions form one event (1 for vector codes).
    """

    arg_constraints = {"loc": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc: Tensor, event_dim: int = 1) -> None:
        self.loc = loc
        split = loc.dim() - event_dim
        super().__init__(loc.shape[:split], loc.shape[split:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        return self.loc.expand(*sample_shape, *self.loc.shape)

    def log_prob(self, value: Tensor) -> Tensor:
        event_dims = tuple(range(-len(self.event_shape), 0))
        same = value == self.loc
        if event_dims:
            same = same.all(dim=event_dims)
        zero = torch.zeros((), dtype=self.loc.dtype, device=self.loc.device)
        return torch.where(same, zero, zero - torch.inf)


def sample_from(
    dist: Distribution,
    sample_shape: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw from any Distribution, reparameterized where possible, reproducibly under ``generator``.

    torch.distributions samples from the global RNG. With a generator, an integer seed is drawn
    from it and the draw happens inside ``torch.random.fork_rng`` seeded with that integer, so
    the global RNG state is left untouched and the same generator state gives the same draw.

    Args:
        dist: the distribution.
        sample_shape: leading shape of the draw.
        generator: None (global RNG) or a generator (advanced by one integer draw).

    Returns:
        (*sample_shape, *batch_shape, *event_shape), from ``rsample`` when ``dist.has_rsample``.
    """
    draw = dist.rsample if dist.has_rsample else dist.sample
    shape = torch.Size(sample_shape)
    if generator is None:
        return draw(shape)
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return draw(shape)
