"""Standard distributions as lazy modules, a point mass, and reproducible sampling.

* :class:`StandardNormal`: the prior p(z) = N(0, I) of a VAE;
* :class:`DiagonalGaussian`: the encoder head q(z | x) = N(μ(x), diag σ(x)²);
* :class:`PointMass`: the "posterior" of a deterministic auto-encoder, δ(z − f(x));
* :class:`FittedGaussian`: a full-covariance Gaussian fitted to data by its moments (widened),
  the noise distribution of noise-contrastive estimation;
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
from simulacra.errors import ConfigError, DataError


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


class FittedGaussian(nn.Module):
    """N(m, c² S + δ I) over the flattened event, with m and S the mean and covariance of data.

    ``fit(x)`` sets m = (1/N) Σ x_n and S = (1/N) Σ (x_n − m)(x_n − m)ᵀ over the D = prod(event)
    entries of an example, widens every standard deviation by the factor c (``inflation``; the
    covariance by c²) and adds a jitter δ to the diagonal, so that the covariance of constant
    entries (an image's border pixels) is still positive definite. Then

        log p(x) = −½ ‖L⁻¹(x − m)‖² − Σ_d log L_dd − (D/2) log 2π   (nats),   LLᵀ = c² S + δ I.

    It is the noise of noise-contrastive estimation (:class:`simulacra.objectives.contrastive.NCE`),
    which learns the model's log-density only where data or noise samples fall: a region that the
    noise never visits leaves the energy unconstrained there, and the model may put spurious mass
    in it. A noise that resembles the data keeps the classification hard and the estimator close
    to efficient (Gutmann & Hyvärinen 2012, §2.4), and one a little wider than the data (c > 1)
    also covers the tails of the data and a margin around them, where a moment-matched Gaussian
    would leave the log-ratio log p_model − log p_noise large and its gradient noisy.

    Mean, Cholesky factor and the ``fitted`` flag are buffers, so the fit travels with the
    module's ``state_dict`` (a checkpoint) and follows its device and dtype.

    Args:
        event_shape: D, or the shape of one example (e.g. (C, H, W)).
        inflation: c ≥ 1, the factor on every standard deviation (default 1.2).
        jitter: δ > 0 added to the diagonal of the covariance, in squared data units.
    """

    def __init__(
        self, event_shape: int | Sequence[int], inflation: float = 1.2, jitter: float = 1e-4
    ) -> None:
        super().__init__()
        if not inflation >= 1.0:
            raise ConfigError(
                f"FittedGaussian inflation must be >= 1 (a factor on the std); found {inflation}"
            )
        if not jitter > 0:
            raise ConfigError(f"FittedGaussian jitter must be > 0; found {jitter}")
        self.event_shape = _shape(event_shape)
        self.dim = math.prod(self.event_shape)
        self.inflation = float(inflation)
        self.jitter = float(jitter)
        self.register_buffer("loc", torch.zeros(self.dim))
        self.register_buffer("scale_tril", torch.eye(self.dim))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has run (or a fitted state was loaded)."""
        return bool(self.is_fitted)

    @property
    def covariance_matrix(self) -> Tensor:
        """c² S + δ I, (D, D)."""
        return self.scale_tril @ self.scale_tril.T

    def _flatten(self, x: Tensor, what: str) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise DataError(
                f"FittedGaussian.{what} expects (N, *{self.event_shape}); found shape {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.dim).to(self.loc.dtype)

    @torch.no_grad()
    def fit(self, x: Tensor) -> FittedGaussian:
        """Set the mean and the widened covariance from data x (N, *event), N ≥ 2; returns self."""
        flat = self._flatten(x, "fit")  # (N, D)
        if flat.shape[0] < 2:
            raise DataError(f"FittedGaussian.fit needs at least 2 examples; found {flat.shape[0]}")
        if not bool(torch.isfinite(flat).all()):
            raise DataError("FittedGaussian.fit found NaN or infinite values in the data")
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / flat.shape[0]  # biased (1/N), (D, D)
        eye = torch.eye(self.dim, dtype=cov.dtype, device=cov.device)
        cov = self.inflation**2 * cov + self.jitter * eye
        for k in range(6):  # rounding can leave a near-singular covariance indefinite: more jitter
            chol, info = torch.linalg.cholesky_ex(cov + (10**k - 1) * self.jitter * eye)
            if int(info) == 0:
                break
        else:
            raise DataError("FittedGaussian.fit: the data covariance is not positive definite; raise jitter")
        self.loc.copy_(mean)
        self.scale_tril.copy_(chol)
        self.is_fitted.fill_(True)
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError("FittedGaussian is not fitted; call fit(data) first")

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; m, c² S + δ I) in nats, (N,), for x (N, *event)."""
        self._check_fitted()
        diff = self._flatten(x, "log_prob") - self.loc  # (N, D)
        z = torch.linalg.solve_triangular(self.scale_tril, diff.T, upper=False)  # (D, N)
        half_log_det = self.scale_tril.diagonal().log().sum()
        return -0.5 * z.square().sum(0) - half_log_det - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws m + Lz, z ~ N(0, I), shaped (n, *event), on the module's device and dtype."""
        self._check_fitted()
        z = torch.randn(int(n), self.dim, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return (self.loc + z @ self.scale_tril.T).reshape(int(n), *self.event_shape)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, inflation={self.inflation}, jitter={self.jitter}"


class BoxUniform(nn.Module):
    """The uniform distribution on the box [low, high]^D, as a noise module (``sample``, ``log_prob``).

        log p(x) = −D log(high − low) inside the box, −inf outside   (nats).

    It is the other noise of noise-contrastive estimation (:class:`simulacra.objectives.contrastive.NCE`)
    for an energy-based model whose density lives on that box: it visits every part of the model's
    support, so no region is left unconstrained, and the classifier's log-ratio is the model's
    log-density up to a constant. Efficient in low dimension, where the data fill a fair share of
    the box; in high dimension (images) almost every draw is far from the data and a fitted
    Gaussian or a trained flow is the better noise.

    Args:
        event_shape: D, or the shape of one example.
        low, high: the box's bounds in every dimension, low < high.
    """

    def __init__(self, event_shape: int | Sequence[int], low: float, high: float) -> None:
        super().__init__()
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"BoxUniform needs finite bounds low < high; found [{low}, {high}]")
        self.event_shape = _shape(event_shape)
        self.dim = math.prod(self.event_shape)
        self.low, self.high = float(low), float(high)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # device and dtype

    def log_prob(self, x: Tensor) -> Tensor:
        """−D log(high − low) for x (N, *event) inside the box, −inf outside; (N,)."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise DataError(
                f"BoxUniform.log_prob expects (N, *{self.event_shape}); found shape {tuple(x.shape)}"
            )
        flat = x.reshape(x.shape[0], -1)
        inside = ((flat >= self.low) & (flat <= self.high)).all(1)
        value = -self.dim * math.log(self.high - self.low)
        return torch.where(inside, torch.full_like(flat[:, 0], value), torch.full_like(flat[:, 0], -math.inf))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n uniform draws (n, *event) on the module's device (drawn on the generator's)."""
        where = generator.device if generator is not None else self._anchor.device
        u = torch.rand(
            (int(n), *self.event_shape), generator=generator, device=where, dtype=self._anchor.dtype
        )
        return (self.low + (self.high - self.low) * u).to(self._anchor.device)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, low={self.low:g}, high={self.high:g}"


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
