"""Elementwise data transforms: binarization, dequantization, standardization, and the map of
bounded data to a network's centred range [−1, 1] (:class:`CenteredRange`).

Stochastic transforms take ``(x, generator)`` so that they can serve as a
:attr:`Dataset.batch_transform <simulacra.data.info.Dataset.batch_transform>`, which the
training loop applies to every training batch with a generator seeded from the run's seed and
the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.data.info import DataInfo
from simulacra.errors import DataError


def _draw_on_generator_device(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``x`` on the generator's device (torch samplers need the two to match)."""
    if generator is not None and generator.device != x.device:
        return x.to(generator.device)
    return x


def bernoulli(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Binarize grey levels: ``b ~ Bernoulli(x)`` elementwise (dynamic binarization).

    Args:
        x: probabilities in [0, 1], any shape (e.g. a batch (B, C, H, W)).
        generator: source of randomness; may live on another device than ``x``.

    Returns:
        a tensor of 0.0 and 1.0 with the shape, dtype and device of ``x``. The range of ``x`` is
        not checked here (that would synchronise with the GPU every batch); datasets are
        validated once on load.
    """
    draw = torch.bernoulli(_draw_on_generator_device(x, generator), generator=generator)
    return draw.to(x.device)


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization of data with ``levels`` discrete values scaled to [0, 1].

    ``x = k / (levels - 1)`` with k ∈ {0, ..., levels - 1} becomes ``(k + u) / levels`` with
    ``u ~ U[0, 1)``, a continuous variable in [0, 1) whose density lower-bounds the discrete
    probability: ``log P(k) ≥ E_u[log p((k + u) / levels)] - D log levels`` (Theis et al. 2016).

    Args:
        x: (B, ...) values on the grid ``k / (levels - 1)``.
        levels: number of discrete values (256 for 8-bit images).
        generator: source of the uniform noise.

    Returns:
        (B, ...) float, same device as ``x``.
    """
    if levels < 2:
        raise DataError(f"dequantization needs at least 2 levels; got {levels}")
    k = torch.round(x * (levels - 1))
    u = torch.rand(
        x.shape, generator=generator, dtype=x.dtype, device=generator.device if generator else x.device
    )
    return (k + u.to(x.device)) / levels


def quantize(v: Tensor, levels: int) -> Tensor:
    """The inverse of :func:`dequantize`: v in [0, 1] -> the grid value k/(levels − 1) of its bin
    [k/levels, (k + 1)/levels), k = ⌊levels · v⌋ clamped to 0 … levels − 1. Any shape."""
    k = torch.clamp(torch.floor(v * levels), 0, levels - 1)
    return k / (levels - 1)


def bin_centres(x: Tensor, levels: int) -> Tensor:
    """x on the grid k/(levels − 1) -> (k + ½)/levels, the centre of its dequantization bin
    (the deterministic counterpart of :func:`dequantize`). Any shape."""
    return (torch.round(x * (levels - 1)) + 0.5) / levels


def discrete_levels(info: DataInfo) -> int | None:
    """L, the number of values per dimension of discrete data scaled to [0, 1] (2 for binary
    data), or None for continuous data (real-valued, or [0, 1] data of unknown levels)."""
    if info.support == "binary":
        return 2
    if info.support == "unit" and info.levels is not None and info.levels >= 2:
        return int(info.levels)
    return None


def standardization(x: Tensor, eps: float = 1e-8, *, unbiased: bool = False) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation of examples ``x`` (N, ...), each of shape (...).

    The standard deviation divides by N, or by N − 1 when ``unbiased``. A dimension whose
    standard deviation is below ``eps`` (a constant column) gets 1, so that standardizing leaves
    it centred instead of dividing by zero; so does every dimension of a single example. Missing
    entries (NaN) are left out: each dimension's moments are those of its observed values.
    """
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        mean = x.nanmean(dim=0)
        count = (~torch.isnan(x)).sum(0)
        sq = (x - mean).square().nansum(0)
        var = sq / (count - 1).clamp(min=1) if unbiased else sq / count.clamp(min=1)
        std = torch.where(count > 1, var.sqrt(), torch.ones_like(mean))
        return mean, torch.where(std < eps, torch.ones_like(std), std)
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=unbiased) if x.shape[0] > 1 else torch.ones_like(mean)
    return mean, torch.where(std < eps, torch.ones_like(std), std)


def standardize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(x - mean) / std``, broadcasting over the leading example dimension."""
    return (x - mean) / std


@dataclass(frozen=True)
class CenteredRange:
    """The affine map y = scale · x + shift between the data's support and a network's range.

    Bounded data ([0, 1]: binary, grey levels) go to [−1, 1] (scale 2, shift −1), the range of a
    generator ending in tanh and of a diffusion model's data; real-valued data are unchanged.
    The inverse clamps to [0, 1] and rounds to the nearest of the data's levels (bin width
    1/(levels − 1)) for bounded and discrete data.

    Build it with :meth:`for_data`.
    """

    scale: float = 1.0
    shift: float = 0.0
    bounded: bool = False
    bin_width: float | None = None

    @classmethod
    def for_data(cls, info: DataInfo) -> CenteredRange:
        """The map for data described by ``info`` (its ``support`` and ``levels``)."""
        if info.support == "real":
            return cls()
        levels = 2 if info.support == "binary" and info.levels is None else info.levels
        width = 1.0 / (levels - 1) if levels and levels >= 2 else None
        return cls(2.0, -1.0, True, width)

    def forward(self, x: Tensor) -> Tensor:
        """y = scale · x + shift, any shape."""
        return self.scale * x + self.shift

    def inverse(self, y: Tensor) -> Tensor:
        """x = (y − shift)/scale, clamped to [0, 1] and rounded to the levels when bounded."""
        x = (y - self.shift) / self.scale
        if not self.bounded:
            return x
        if self.bin_width is not None:
            x = torch.round(x / self.bin_width) * self.bin_width
        return x.clamp(0.0, 1.0)


@dataclass(frozen=True)
class Perturbation:
    """Replace each entry, with probability ``rate``, by a uniform draw over the data's support
    (Ren et al. 2019, "Likelihood ratios for out-of-distribution detection", §3.2): the inputs
    of the background model whose likelihood a likelihood ratio divides out.

        x̃_d = x_d with probability 1 − μ,   x̃_d ~ U(support_d) with probability μ,

    where U(support_d) is uniform over the data's ``levels`` values k/(L − 1) for discrete data
    ({0, 1} for binary data), over [0, 1] for [0, 1] data of unknown levels, and over
    [low_d, high_d] (the training split's per-entry range) for real-valued data.

    Build it with :meth:`for_data`; call it as a batch transform ``(x, generator) -> x̃``.
    """

    rate: float
    levels: int | None = None
    low: Tensor | float = 0.0
    high: Tensor | float = 1.0

    @classmethod
    def for_data(cls, rate: float, info: DataInfo, train_x: Tensor) -> Perturbation:
        """The perturbation at ``rate`` for data described by ``info`` with training examples
        ``train_x`` (N, *event), whose per-entry range bounds real-valued draws."""
        if not (isinstance(rate, int | float) and not isinstance(rate, bool) and 0 <= rate <= 1):
            raise DataError(f"data.perturb must be a probability in [0, 1]; found {rate!r}")
        if info.support == "binary":
            return cls(float(rate), levels=2)
        if info.support == "unit":
            return cls(float(rate), levels=info.levels if info.levels and info.levels >= 2 else None)
        low = torch.nan_to_num(train_x.nan_to_num(float("inf")).amin(0), posinf=0.0)
        high = torch.nan_to_num(train_x.nan_to_num(float("-inf")).amax(0), neginf=0.0)
        return cls(float(rate), None, low, high)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x̃ (B, *event) of the shape, dtype and device of ``x`` (B, *event)."""
        device = generator.device if generator is not None else x.device
        flip = torch.rand(x.shape, generator=generator, device=device) < self.rate
        u = torch.rand(x.shape, generator=generator, device=device, dtype=torch.float64)
        if self.levels is not None:  # a uniform level k in {0, ..., L − 1}, stored as k/(L − 1)
            draw = torch.floor(u * self.levels).clamp(max=self.levels - 1) / (self.levels - 1)
        else:
            low = torch.as_tensor(self.low, dtype=torch.float64, device=device)
            high = torch.as_tensor(self.high, dtype=torch.float64, device=device)
            draw = low + u * (high - low)
        return torch.where(flip.to(x.device), draw.to(x.device, x.dtype), x)
