"""Decoder heads: network features -> a distribution p(x | features) over one example.

Every head has ``params_per_dim`` P and maps features (B, P·D) (or any (B, ...) tensor with P·D
entries per example, e.g. a (B, P·C, H, W) convolution output) read as (B, P, *event_shape) to
an :class:`~torch.distributions.Independent` distribution with batch shape (B,) and the data's
event shape, so ``log_prob(x)`` is (B,) in nats, summed over the event.

==================  ===  ==========================================================================
name                P    p(x | h)
==================  ===  ==========================================================================
bernoulli           1    Π_d Bern(x_d; σ(h_d)) (binary or [0, 1] grey levels, as in Kingma & Welling)
gaussian            1    N(x; h, σ² I), fixed σ
gaussian-learned    2    N(x; μ, diag σ²), σ = softplus(s) + floor
categorical         L    Π_d Cat(k_d; softmax(h_d)), k_d = round(x_d (L − 1))
logistic            2    discretized logistic (Salimans et al. 2017), one component per dimension
logistic-mixture    3K   mixture of K discretized logistics per dimension (PixelCNN++)
gaussian-mixture    3K   mixture of K Gaussians per dimension (RNADE)
student-t           3    Π_d t_ν(x_d; μ_d, s_d), learned location, scale and degrees of freedom (MIWAE)
==================  ===  ==========================================================================

Support checks (``validate(x)``) synchronise with the host, so they are not run in ``log_prob``:
models call them in their evaluation methods, and datasets are validated when loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    StudentT,
    constraints,
)

from simulacra.data.info import DataInfo
from simulacra.distributions.standard import DiagonalGaussian
from simulacra.errors import ConfigError, DataError
from simulacra.registry import Registry


def _shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    return (int(event_shape),) if isinstance(event_shape, int) else tuple(int(s) for s in event_shape)


def _check_shape(x: Tensor, event_shape: tuple[int, ...]) -> None:
    if tuple(x.shape[1:]) != event_shape:
        raise DataError(
            f"expected data of shape (B, {', '.join(map(str, event_shape))}); found {tuple(x.shape)}"
        )


def _check_finite(x: Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise DataError("data contain NaN or infinite values")


def _check_unit(x: Tensor, likelihood: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise DataError(
            f"the {likelihood} likelihood needs data in [0, 1]; found values in [{lo:.4g}, {hi:.4g}]"
        )


def _check_grid(x: Tensor, levels: int, likelihood: str) -> None:
    _check_unit(x, likelihood)
    k = x * (levels - 1)
    off = float((k - k.round()).abs().max())
    if off > 1e-3:
        raise DataError(
            f"the {likelihood} likelihood needs data on the grid k/{levels - 1}, k = 0..{levels - 1} "
            f"({levels} levels); found a value {off:.3g} grid steps off"
        )


def softplus(logits: Tensor) -> Tensor:
    """softplus(l) = log(1 + e^l) = max(l, 0) + log(1 + e^{−|l|}), elementwise.

    Same values as ``torch.nn.functional.softplus`` (within one float ulp of 1, ≤ 6e-8 in float32),
    written with ``exp`` on [−80, 0] and ``log`` on [1, 2]: torch's CPU ``log1p`` takes a slow path
    for arguments below ~1e-15, which is where a well-trained decoder's logits (|l| > 35) send
    ``log1p(exp(−|l|))``; there it is 8–20× slower than this form. Terms with |l| > 80 are below
    1e-34 and vanish in either form.
    """
    return logits.clamp(min=0) + torch.exp(-logits.abs().clamp(max=80.0)).add(1.0).log()


class LogitBernoulli(Bernoulli):
    """Bernoulli(σ(l)) whose ``log_prob(x) = x·l − softplus(l)`` (see :func:`softplus`).

    For x ∈ {0, 1} this is the Bernoulli log-probability; for grey levels x ∈ [0, 1] it is the
    cross-entropy −BCE(σ(l), x) of Kingma & Welling (2014). Equal to torch's ``Bernoulli.log_prob``
    up to float rounding. Without gradients (evaluation, importance sampling) it uses the
    log1p-free :func:`softplus`, about 2× faster on CPU for confident logits; with gradients it
    uses torch's fused binary cross-entropy, whose backward is cheaper.
    """

    def log_prob(self, value: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.logits.requires_grad:
            return -F.binary_cross_entropy_with_logits(self.logits, value, reduction="none")
        return value * self.logits - softplus(self.logits)


class BernoulliHead(nn.Module):
    """p(x | h) = Π_d σ(h_d)^{x_d} (1 − σ(h_d))^{1 − x_d}, logits h (B, D).

    For grey levels x ∈ [0, 1] this is the cross-entropy used by Kingma & Welling (2014); it is a
    normalized density only on {0, 1}^D. ``mean`` = σ(h).
    """

    params_per_dim = 1
    discrete = True  # probabilities of binary values, not densities

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        super().__init__()
        self.event_shape = _shape(event_shape)

    def forward(self, features: Tensor) -> Distribution:
        logits = features.reshape(features.shape[0], *self.event_shape)
        return Independent(
            LogitBernoulli(logits=logits, validate_args=False), len(self.event_shape), validate_args=False
        )

    def validate(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless x is (B, *event_shape) with values in [0, 1]."""
        _check_shape(x, self.event_shape)
        _check_finite(x)
        _check_unit(x, "bernoulli")


class GaussianHead(nn.Module):
    """p(x | h) = N(x; μ, diag σ²) with a fixed σ (P = 1) or a learned one (P = 2).

    Fixed: ``μ = h``, ``-log p = ‖x − μ‖² / (2σ²) + D log σ + (D/2) log 2π`` (scaled MSE).
    Learned (``std="learned"``): ``σ = softplus(s) + min_std`` per dimension, from the network.

    Args:
        event_shape: shape of one example.
        std: a positive float, or ``"learned"``.
        min_std: floor of the learned σ (ignored for a fixed σ).
    """

    discrete = False  # a density: bits/dim on discrete data add the dequantization offset

    def __init__(
        self, event_shape: int | Sequence[int], std: float | str = 1.0, min_std: float = 1e-3
    ) -> None:
        super().__init__()
        self.event_shape = _shape(event_shape)
        if std == "learned":
            self.learned: DiagonalGaussian | None = DiagonalGaussian(self.event_shape, min_std)
            self.std = None
        elif isinstance(std, int | float) and not isinstance(std, bool) and std > 0:
            self.learned = None
            self.std = float(std)
        else:
            raise ConfigError(f"GaussianHead std must be a positive number or 'learned'; found {std!r}")
        self.params_per_dim = 1 if self.learned is None else 2

    def forward(self, features: Tensor) -> Distribution:
        if self.learned is not None:
            return self.learned(features)
        loc = features.reshape(features.shape[0], *self.event_shape)
        base = Normal(loc, torch.full_like(loc, self.std), validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)

    def validate(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless x is (B, *event_shape) and finite."""
        _check_shape(x, self.event_shape)
        _check_finite(x)


class QuantizedCategorical(Distribution):
    """A categorical distribution over the L grid values ``k / (L − 1)`` of [0, 1], per entry.

    ``log_prob(x) = log softmax(logits)[round(x (L − 1))]``, the discrete log-probability in
    nats; ``mean = Σ_k p_k k / (L − 1)`` in data units; samples are grid values.

    Args:
        logits: (*batch_shape, L).
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.unit_interval

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits.log_softmax(-1)
        self.levels = logits.shape[-1]
        super().__init__(logits.shape[:-1], validate_args=False)

    def _grid(self) -> Tensor:
        return torch.arange(self.levels, dtype=self.logits.dtype, device=self.logits.device) / (
            self.levels - 1
        )

    def log_prob(self, value: Tensor) -> Tensor:
        k = (value * (self.levels - 1)).round().long().clamp(0, self.levels - 1)
        logits = self.logits.expand(*k.shape, self.levels)
        return logits.gather(-1, k.unsqueeze(-1)).squeeze(-1)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        k = Categorical(logits=self.logits, validate_args=False).sample(torch.Size(sample_shape))
        return k.to(self.logits.dtype) / (self.levels - 1)

    @property
    def mean(self) -> Tensor:
        return (self.logits.exp() * self._grid()).sum(-1)

    @property
    def mode(self) -> Tensor:
        return self.logits.argmax(-1).to(self.logits.dtype) / (self.levels - 1)


class DiscretizedLogistic(Distribution):
    """Discretized logistic over the L grid values ``k / (L − 1)`` of [0, 1] (Salimans et al. 2017).

    With bin half-width ``h = 1 / (2(L − 1))`` and the logistic CDF ``F(y) = σ((y − μ) / s)``::

        P(x = 0)     = F(h)                 (the left edge takes (−∞, h])
        P(x = k/(L−1)) = F(x + h) − F(x − h)  (interior bins)
        P(x = 1)     = 1 − F(1 − h)          (the right edge takes [1 − h, ∞))

    The interior difference is computed stably as
    ``log σ(a) + log σ(−b) + log(1 − e^{−(a − b)})`` with ``a = (x + h − μ)/s``, ``b = (x − h − μ)/s``.

    Args:
        loc: μ in data units, (*batch_shape).
        scale: s > 0, same shape.
        levels: L ≥ 2.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval

    def __init__(self, loc: Tensor, scale: Tensor, levels: int) -> None:
        self.loc, self.scale, self.levels = loc, scale, int(levels)
        super().__init__(loc.shape, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        half = 0.5 / (self.levels - 1)
        k = (value * (self.levels - 1)).round()
        x = k / (self.levels - 1)  # snap to the grid
        a = (x + half - self.loc) / self.scale
        b = (x - half - self.loc) / self.scale
        interior = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(b - a))
        left = F.logsigmoid(a)  # log F(h) at k = 0
        right = F.logsigmoid(-b)  # log (1 - F(1 - h)) at k = L - 1
        return torch.where(k <= 0, left, torch.where(k >= self.levels - 1, right, interior))

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
        y = self.loc + self.scale * (torch.log(u) - torch.log1p(-u))  # logistic draw
        return (y * (self.levels - 1)).round().clamp(0, self.levels - 1) / (self.levels - 1)

    def probs(self) -> Tensor:
        """P(x = k / (L − 1)) for every k, (*batch_shape, L)."""
        grid = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device) / (self.levels - 1)
        grid = grid.expand(*self.batch_shape, self.levels)
        return torch.stack(
            [self.log_prob(grid[..., i]).exp() for i in range(self.levels)],
            -1,
        )

    @property
    def mean(self) -> Tensor:
        """Σ_k P(k) k / (L − 1), in data units (costs L evaluations)."""
        grid = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device) / (self.levels - 1)
        return (self.probs() * grid).sum(-1)


class CategoricalHead(nn.Module):
    """p(x | h) = Π_d softmax(h_d)[round(x_d (L − 1))]: an L-way softmax per dimension.

    Features (B, L·D) are read as (B, L, *event_shape). For 8-bit images (L = 256) this is the
    PixelRNN likelihood (van den Oord et al. 2016). ``mean`` is in data units.
    """

    discrete = True

    def __init__(self, event_shape: int | Sequence[int], levels: int) -> None:
        super().__init__()
        if int(levels) < 2:
            raise ConfigError(f"the categorical likelihood needs levels >= 2; found {levels}")
        self.event_shape = _shape(event_shape)
        self.levels = int(levels)
        self.params_per_dim = self.levels

    def forward(self, features: Tensor) -> Distribution:
        h = features.reshape(features.shape[0], self.levels, *self.event_shape)
        logits = h.movedim(1, -1)  # (B, *event_shape, L)
        return Independent(QuantizedCategorical(logits), len(self.event_shape), validate_args=False)

    def validate(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless x is (B, *event_shape) on the grid k / (L − 1)."""
        _check_shape(x, self.event_shape)
        _check_finite(x)
        _check_grid(x, self.levels, "categorical")


class DiscretizedLogisticHead(nn.Module):
    """p(x | h) = Π_d DiscretizedLogistic(x_d; μ_d, s_d, L) (Salimans et al. 2017, one component).

    Features (B, 2·D) are read as (μ, log s); ``s = exp(max(log s, −8))`` (PixelCNN++ clamps at −7 on
    [−1, 1], i.e. about −7.7 on [0, 1]), and μ is in data units ([0, 1]).
    """

    params_per_dim = 2
    discrete = True

    def __init__(self, event_shape: int | Sequence[int], levels: int) -> None:
        super().__init__()
        if int(levels) < 2:
            raise ConfigError(f"the logistic likelihood needs levels >= 2; found {levels}")
        self.event_shape = _shape(event_shape)
        self.levels = int(levels)

    def forward(self, features: Tensor) -> Distribution:
        h = features.reshape(features.shape[0], 2, *self.event_shape)
        scale = h[:, 1].clamp(min=-8.0).exp()
        base = DiscretizedLogistic(h[:, 0], scale, self.levels)
        return Independent(base, len(self.event_shape), validate_args=False)

    def validate(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless x is (B, *event_shape) on the grid k / (L − 1)."""
        _check_shape(x, self.event_shape)
        _check_finite(x)
        _check_grid(x, self.levels, "logistic")


class DiscretizedLogisticMixture(Distribution):
    """Mixture of K discretized logistics on the grid k / (L − 1) (Salimans et al. 2017, PixelCNN++)::

        P(x) = Σ_k π_k DiscretizedLogistic(x; μ_k, s_k, L),    π = softmax(logits)

    Args:
        logits, loc, scale: (*batch_shape, K); ``scale`` > 0; ``loc`` in data units.
        levels: L ≥ 2.
    """

    arg_constraints = {"logits": constraints.real, "loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor, levels: int) -> None:
        self.logits = logits.log_softmax(-1)
        self.components = DiscretizedLogistic(loc, scale, levels)
        self.levels = int(levels)
        super().__init__(logits.shape[:-1], validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return torch.logsumexp(self.logits + self.components.log_prob(value.unsqueeze(-1)), -1)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        k = Categorical(logits=self.logits, validate_args=False).sample(torch.Size(sample_shape))
        draws = self.components.sample(sample_shape)  # (*sample_shape, *batch_shape, K)
        return draws.gather(-1, k.unsqueeze(-1)).squeeze(-1)

    @property
    def mean(self) -> Tensor:
        return (self.logits.exp() * self.components.mean).sum(-1)


class DiscretizedLogisticMixtureHead(nn.Module):
    """p(x | h) = Π_d Σ_k π_dk DiscretizedLogistic(x_d; μ_dk, s_dk, L), K components per dimension.

    Features (B, 3K·D) are read as (B, 3, K, *event_shape): mixture logits, μ (data units) and
    log s, clamped at −8 as in :class:`DiscretizedLogisticHead`. P = 3K.
    """

    discrete = True

    def __init__(self, event_shape: int | Sequence[int], levels: int, components: int = 5) -> None:
        super().__init__()
        if int(levels) < 2 or int(components) < 1:
            raise ConfigError(
                f"the logistic mixture needs levels >= 2 and components >= 1; found {levels}, {components}"
            )
        self.event_shape = _shape(event_shape)
        self.levels, self.components = int(levels), int(components)
        self.params_per_dim = 3 * self.components

    def forward(self, features: Tensor) -> Distribution:
        h = features.reshape(features.shape[0], 3, self.components, *self.event_shape).movedim(2, -1)
        scale = h[:, 2].clamp(min=-8.0).exp()  # (B, *event_shape, K)
        base = DiscretizedLogisticMixture(h[:, 0], h[:, 1], scale, self.levels)
        return Independent(base, len(self.event_shape), validate_args=False)

    def validate(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless x is (B, *event_shape) on the grid k / (L − 1)."""
        _check_shape(x, self.event_shape)
        _check_finite(x)
        _check_grid(x, self.levels, "logistic-mixture")


class GaussianMixtureHead(nn.Module):
    """p(x | h) = Π_d Σ_k π_dk N(x_d; μ_dk, σ_dk²), the output of RNADE (Uria et al. 2013).

    Features (B, 3K·D) are read as (B, 3, K, *event_shape): mixture logits, μ and s with
    σ = softplus(s) + ``min_std``. P = 3K. A density on real data (``discrete = False``).
    """

    discrete = False

    def __init__(self, event_shape: int | Sequence[int], components: int = 10, min_std: float = 1e-3) -> None:
        super().__init__()
        if int(components) < 1 or not min_std > 0:
            raise ConfigError(
                f"the Gaussian mixture needs components >= 1 and min_std > 0; found {components}, {min_std}"
            )
        self.event_shape = _shape(event_shape)
        self.components, self.min_std = int(components), float(min_std)
        self.params_per_dim = 3 * self.components

    def forward(self, features: Tensor) -> Distribution:
        h = features.reshape(features.shape[0], 3, self.components, *self.event_shape).movedim(2, -1)
        std = F.softplus(h[:, 2]) + self.min_std  # (B, *event_shape, K)
        mixture = MixtureSameFamily(
            Categorical(logits=h[:, 0], validate_args=False), Normal(h[:, 1], std, validate_args=False)
        )
        return Independent(mixture, len(self.event_shape), validate_args=False)

    def validate(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless x is (B, *event_shape) and finite."""
        _check_shape(x, self.event_shape)
        _check_finite(x)


class StudentTHead(nn.Module):
    """p(x | h) = Π_d t_{ν_d}(x_d; μ_d, s_d), the heavy-tailed decoder of MIWAE (Mattei & Frellsen 2019).

    The density of one entry, with location μ, scale s > 0 and ν > 0 degrees of freedom::

        log t_ν(x; μ, s) = log Γ((ν+1)/2) − log Γ(ν/2) − ½ log(ν π) − log s
                           − (ν+1)/2 · log(1 + ((x − μ)/s)² / ν)

    Features (B, 3·D) are read as (B, 3, *event_shape): μ, then ``s = softplus(·) + min_scale`` and
    ``ν = softplus(·) + min_df`` (the paper's floors: 0.001 and 3, so that the mean and variance
    exist). A density on real data (``discrete = False``); ``mean`` = μ.
    """

    params_per_dim = 3
    discrete = False

    def __init__(
        self, event_shape: int | Sequence[int], min_scale: float = 1e-3, min_df: float = 3.0
    ) -> None:
        super().__init__()
        if not min_scale > 0 or not min_df > 0:
            raise ConfigError(
                f"the student-t likelihood needs min_scale > 0 and min_df > 0; found {min_scale}, {min_df}"
            )
        self.event_shape = _shape(event_shape)
        self.min_scale, self.min_df = float(min_scale), float(min_df)

    def forward(self, features: Tensor) -> Distribution:
        h = features.reshape(features.shape[0], 3, *self.event_shape)
        scale = F.softplus(h[:, 1]) + self.min_scale
        df = F.softplus(h[:, 2]) + self.min_df
        base = StudentT(df, h[:, 0], scale, validate_args=False)
        return Independent(base, len(self.event_shape), validate_args=False)

    def validate(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless x is (B, *event_shape) and finite."""
        _check_shape(x, self.event_shape)
        _check_finite(x)


def log_prob_observed(p: Distribution, x: Tensor, observed: Tensor) -> Tensor:
    """log p(x_obs) = Σ_{d observed} log p(x_d) for a factorized p, (B,) nats.

    The likelihood of the observed entries alone, as MIWAE's bound needs it (Mattei & Frellsen
    2019): a missing entry never enters it, whatever placeholder x holds there (NaN included).
    Heads return ``Independent`` distributions over independent entries, whose marginal over
    the observed entries is the product of their factors.

    Args:
        p: a distribution with batch (B,) and event (*event), an ``Independent`` of per-entry factors.
        x: values (B, *event); entries where ``observed`` is False are ignored.
        observed: bool (B, *event), True where x is observed.

    Raises:
        ConfigError: p is not a product of per-entry factors.
    """
    if not isinstance(p, Independent):
        raise ConfigError(
            f"the likelihood of observed entries needs a factorized decoder (one factor per entry); "
            f"found {type(p).__name__}"
        )
    filled = torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device))  # no NaN in log_prob
    per_entry = p.base_dist.log_prob(filled)  # (B, *event)
    zero = torch.zeros((), dtype=per_entry.dtype, device=per_entry.device)
    return torch.where(observed, per_entry, zero).flatten(1).sum(1)


HEADS: Registry[Callable[..., nn.Module]] = Registry("likelihood")


def _needs_levels(info: DataInfo, name: str) -> int:
    if info.levels is None:
        raise ConfigError(
            f"the {name} likelihood needs discrete data (DataInfo.levels, e.g. 256); found levels=None"
        )
    return info.levels


@HEADS.register("bernoulli", "Bernoulli logits per dimension (binary or [0, 1] data)")
def _bernoulli(info: DataInfo) -> nn.Module:
    if info.support == "real":
        raise ConfigError("the bernoulli likelihood needs data in [0, 1]; the data support is 'real'")
    return BernoulliHead(info.event_shape)


@HEADS.register("gaussian", "Gaussian with a fixed standard deviation (scaled MSE)")
def _gaussian(info: DataInfo, std: float = 1.0) -> nn.Module:
    return GaussianHead(info.event_shape, std=std)


@HEADS.register("gaussian-learned", "Gaussian with a learned standard deviation per dimension")
def _gaussian_learned(info: DataInfo, min_std: float = 1e-3) -> nn.Module:
    return GaussianHead(info.event_shape, std="learned", min_std=min_std)


@HEADS.register("categorical", "L-way softmax per dimension (discrete data with `levels` values)")
def _categorical(info: DataInfo) -> nn.Module:
    return CategoricalHead(info.event_shape, _needs_levels(info, "categorical"))


@HEADS.register("logistic", "discretized logistic per dimension (Salimans et al. 2017)")
def _logistic(info: DataInfo) -> nn.Module:
    return DiscretizedLogisticHead(info.event_shape, _needs_levels(info, "logistic"))


@HEADS.register("logistic-mixture", "mixture of discretized logistics per dimension (PixelCNN++)")
def _logistic_mixture(info: DataInfo, components: int = 5) -> nn.Module:
    return DiscretizedLogisticMixtureHead(
        info.event_shape, _needs_levels(info, "logistic-mixture"), components
    )


@HEADS.register("gaussian-mixture", "mixture of Gaussians per dimension (RNADE, Uria et al. 2013)")
def _gaussian_mixture(info: DataInfo, components: int = 10, min_std: float = 1e-3) -> nn.Module:
    return GaussianMixtureHead(info.event_shape, components, min_std)


@HEADS.register("student-t", "Student-t per dimension: learned location, scale, degrees of freedom")
def _student_t(info: DataInfo, min_scale: float = 1e-3, min_df: float = 3.0) -> nn.Module:
    return StudentTHead(info.event_shape, min_scale, min_df)


def auto_likelihood(info: DataInfo) -> str:
    """The likelihood ``"auto"`` stands for (see :func:`head_for`)."""
    if info.support == "binary":
        return "bernoulli"
    if info.support == "unit" and info.levels is not None and info.levels >= 2:
        return "categorical" if info.levels <= 64 else "logistic"
    return "gaussian-learned"


def head_for(info: DataInfo, name: str = "auto", **kwargs: Any) -> nn.Module:
    """The decoder head named ``name`` for data described by ``info``.

    ``"auto"`` picks a normalized likelihood for the data: ``bernoulli`` for binary data;
    for [0, 1] data with ``L = info.levels`` values, ``categorical`` (L ≤ 64, e.g. the 17 grey
    levels of scikit-learn's digits) or ``logistic`` (discretized logistic, e.g. 8-bit images);
    ``gaussian-learned`` for real data and for [0, 1] data of unknown levels.

    Raises:
        UnknownNameError: an unknown name (the message lists the valid ones).
        ConfigError: a likelihood that does not fit the data (bernoulli on real data;
            categorical/logistic without ``info.levels``) or a bad keyword argument.
    """
    if name == "auto":
        name = auto_likelihood(info)
    return HEADS.build(name, info=info, **kwargs)


def is_discrete(decoder: nn.Module) -> bool:
    """True when ``decoder`` (a head, or a module with a ``head``) assigns probabilities to
    discrete values (Bernoulli, categorical, discretized logistic) rather than densities."""
    head = getattr(decoder, "head", decoder)
    return bool(getattr(head, "discrete", False))
