"""Normalizing flows as torch distributions: p(x | c) = p_Z(f(x; c)) |det ∂f/∂x|.

:class:`Flow` is a :class:`torch.distributions.Distribution` (``log_prob``, ``sample``,
``rsample``, ``sample_and_log_prob``) built from a transform, a base distribution and an
optional context; :class:`LazyFlow` is the module that holds the parameters and builds the
distribution, ``p = flow(c)`` (the lazy-distribution idea of zuko; see
:mod:`simulacra.distributions.lazy`). References: Rezende & Mohamed (2015), "Variational inference
with normalizing flows"; Papamakarios et al. (2021), "Normalizing flows for probabilistic
modeling and inference".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints

from simulacra.distributions.standard import UnitGaussian, UnitNormal, sample_from
from simulacra.errors import ConfigError, DataError
from simulacra.flows.base import Composed, Transform


class Flow(Distribution):
    """The distribution of x = f⁻¹(z; c), z ~ p_Z.

    Args:
        transform: the bijection f (normalizing direction, data -> base).
        base: p_Z with batch shape () and the flow's event shape.
        context: (B, C_c) context or None; the flow then has batch shape (B,) and every
            ``log_prob`` / ``sample`` pairs row b of the context with batch element b.
        event_shape: the shape of one x when it differs from the base's (e.g. a flow that
            flattens images (C, H, W) to vectors (D,) first).
        batch_shape: the batch shape of an unconditional flow (e.g. (n,) for a VAE prior asked
            for n draws); a context sets it to (B,).

    ``log_prob(x)`` takes x of shape (*S, *event) with S broadcastable to the batch shape and
    returns (*S',) in nats. ``rsample(sample_shape)`` returns (*sample_shape, *batch, *event) and
    is differentiable with respect to the flow's parameters (reparameterized through f⁻¹).
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = True

    def __init__(
        self,
        transform: Transform,
        base: Distribution,
        context: Tensor | None = None,
        event_shape: Sequence[int] | None = None,
        batch_shape: Sequence[int] = (),
    ) -> None:
        self.transform = transform
        self.base = base
        self.context = context
        batch = torch.Size(batch_shape if context is None else context.shape[:1])
        event = base.event_shape if event_shape is None else torch.Size(event_shape)
        super().__init__(batch, event, validate_args=False)
        # the last draw and its log-density: scoring one's own sample needs no inverse pass
        # (the D-pass direction of an IAF), as with pyro's transform caching
        self._cached: tuple[Tensor, Tensor] | None = None

    # -- helpers ---------------------------------------------------------------------------------

    def _flat_context(self, shape: torch.Size) -> Tensor | None:
        """The context expanded to the leading shape ``shape`` (ending in the batch) and flattened."""
        if self.context is None:
            return None
        c = self.context.expand(*shape, *self.context.shape[1:])
        return c.reshape(-1, *self.context.shape[1:])

    def _draw_base(self, shape: torch.Size, generator: torch.Generator | None) -> Tensor:
        n = math.prod(shape)
        if isinstance(self.base, UnitNormal):
            return self.base.rsample((n,), generator=generator)
        return sample_from(self.base, (n,), generator)

    # -- the Distribution interface --------------------------------------------------------------

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x | c) in nats, shape (*S,) for x (*S, *event_shape).

        When ``x`` is the very tensor returned by this distribution's last ``rsample``, the
        log-density computed during sampling is returned (no second pass).
        """
        if self._cached is not None and x is self._cached[0]:
            return self._cached[1]
        k = len(self.event_shape)
        if tuple(x.shape[x.dim() - k :]) != tuple(self.event_shape) or x.dim() < k:
            raise DataError(
                f"expected values of event shape {tuple(self.event_shape)}; found shape {tuple(x.shape)}"
            )
        lead = torch.broadcast_shapes(x.shape[: x.dim() - k], self.batch_shape)
        flat = x.expand(*lead, *self.event_shape).reshape(-1, *self.event_shape)
        z, ladj = self.transform(flat, self._flat_context(lead))
        return (self.base.log_prob(z) + ladj).reshape(lead)

    def rsample(self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None) -> Tensor:
        """Draws (*sample_shape, *batch_shape, *event_shape), differentiable in the parameters."""
        x, _ = self.rsample_and_log_prob(sample_shape, generator=generator)
        return x

    def sample(self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    def sample_at_temperature(
        self, temperature: float, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None
    ) -> Tensor:
        """Draws with the base's deviations from its mean scaled by T, z = μ + T (z₀ − μ), then
        mapped through the flow (Kingma & Dhariwal 2018, §5: "temperature"): for a Gaussian base,
        the base density raised to the power 1/T², which concentrates draws on the likeliest
        region for T < 1. T = 1 is :meth:`sample`.

        Raises:
            ConfigError: T not positive, or a base that is not Gaussian (e.g. uniform on the torus).
        """
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive; found {temperature!r}")
        if temperature == 1.0:
            return self.sample(sample_shape, generator)
        if not isinstance(self.base, UnitNormal | Normal | Independent) or (
            isinstance(self.base, Independent) and not isinstance(self.base.base_dist, Normal)
        ):
            raise ConfigError(
                f"sampling at a temperature scales a Gaussian base; this flow's base is {type(self.base).__name__}"
            )
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            z = self._draw_base(shape, generator)
            mean = (
                self.base.mean.expand_as(z) if not isinstance(self.base, UnitNormal) else torch.zeros_like(z)
            )
            x, _ = self.transform.inverse(mean + temperature * (z - mean), self._flat_context(shape))
        return x.reshape(*shape, *self.event_shape)

    def rsample_and_log_prob(
        self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws x and log p(x | c) from one inverse pass: log p(x) = log p_Z(z) − log|det ∂f⁻¹/∂z|."""
        shape = torch.Size(sample_shape) + self.batch_shape
        z = self._draw_base(shape, generator)
        log_pz = self.base.log_prob(z)
        x, ladj = self.transform.inverse(z, self._flat_context(shape))
        x, log_p = x.reshape(*shape, *self.event_shape), (log_pz - ladj).reshape(shape)
        self._cached = (x, log_p)
        return x, log_p

    @property
    def center(self) -> Tensor:
        """f⁻¹(E[z]; c), shape (*batch, *event): the image of the base's mean, a deterministic
        representative point (used for reconstructions and interpolations). It is not the flow's
        mean, which has no closed form."""
        shape = self.batch_shape
        z = self.base.mean.expand(math.prod(shape), *self.base.event_shape)
        x, _ = self.transform.inverse(z, self._flat_context(shape))
        return x.reshape(*shape, *self.event_shape)

    def sample_and_log_prob(
        self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return self.rsample_and_log_prob(sample_shape, generator=generator)


class LazyFlow(nn.Module):
    """Module ``c -> Flow``: holds the transform's parameters and the base distribution.

    Args:
        transforms: the transforms in the normalizing order (data -> base), or one transform.
        base: a lazy base ``(c=None, n=None) -> p_Z`` (default: a standard normal (:class:`UnitGaussian`) over
            ``base_shape``).
        event_shape: the shape of one example x.
        base_shape: the shape of z when it differs from x's (default ``event_shape``).
        context: optional module mapping the raw context (e.g. labels (B,)) to the (B, C_c)
            features that the transforms read; None passes the context through unchanged.
    """

    def __init__(
        self,
        transforms: Transform | Sequence[Transform],
        event_shape: Sequence[int],
        base: nn.Module | None = None,
        context: nn.Module | None = None,
        base_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.transform = transforms if isinstance(transforms, Transform) else Composed(transforms)
        self.event_shape = tuple(int(s) for s in event_shape)
        self.base = base if base is not None else UnitGaussian(tuple(base_shape or self.event_shape))
        self.context = context

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Flow:
        """p(x | c) with batch shape (len(c),) when a context is given, else (n,), else ()."""
        if c is not None and self.context is not None:
            c = self.context(c)
        return Flow(self.transform, self.base(), c, self.event_shape, () if n is None else (int(n),))


class AmortizedFlow(nn.Module):
    """q(z | x, c) = Flow(transform, base, context = net(x, c)): a flow whose every transform reads
    features of the conditioning input, e.g. the IAF posterior of a VAE (Kingma et al. 2016),
    where the first transform is the Gaussian z₀ = μ(h) + σ(h) ε and IAF steps follow.

    Args:
        net: module (x, c) -> (B, H) features h.
        transforms: transforms in the normalizing order (z -> ε), each reading h as its context.
        event_shape: the shape of z.
    """

    def __init__(
        self, net: nn.Module, transforms: Transform | Sequence[Transform], event_shape: Sequence[int]
    ) -> None:
        super().__init__()
        self.net = net
        self.transform = transforms if isinstance(transforms, Transform) else Composed(transforms)
        self.base = UnitGaussian(tuple(event_shape))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Flow:
        """(B, ...) inputs -> a flow with batch shape (B,)."""
        return Flow(self.transform, self.base(), self.net(x, c))
