"""Degradations of images: the measurement operators of the inverse problems.

Each measurement keeps P x, where P is an orthogonal projection of the event space:

* inpainting: P x = m ⊙ x for a {0, 1} mask m (1 = observed), :func:`mask_projection`;
* super-resolution ×f: P x = up_f(avgpool_f(x)), each f × f block replaced by its mean (the
  low-resolution image, repeated f × f), :func:`block_average`;
* colorization: P x = the channel mean broadcast to every channel (the grey image),
  :func:`channel_mean`.

Diffusion models solve these problems by projection (:mod:`simulacra.tasks.inverse`); an
image-to-image GAN (:mod:`simulacra.models.translation`) trains on pairs (P x, x) made on the
fly from a dataset's own images by a :class:`Degradation`. Both read the operators from here, so
the two families are compared on the same problem. Strings name degradations only in
:data:`DEGRADATIONS`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from simulacra.errors import ConfigError, DataError
from simulacra.registry import Registry

Projection = Callable[[Tensor], Tensor]
"""An orthogonal projection P of the event space, applied to a batch (B, *event) -> (B, *event)."""

MASKS = ("center", "left", "right", "top", "bottom", "random")
"""Kinds of built-in inpainting masks (:func:`image_mask`)."""


def mask_projection(mask: Tensor) -> Projection:
    """P x = m ⊙ x for a {0, 1} mask m (1 = observed) that broadcasts against (B, *event)."""
    m = mask.to(torch.get_default_dtype())
    if not bool(((m == 0) | (m == 1)).all()):
        raise DataError("a mask must hold only 0 (missing) and 1 (observed)")
    return lambda x: x * m.to(x)


def block_average(factor: int) -> Projection:
    """P x = up_f(avgpool_f(x)) on images (B, C, H, W): each f × f block replaced by its mean,
    the orthogonal projection onto images constant on the blocks (a low-resolution image)."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ConfigError(f"a super-resolution factor must be an integer >= 2; found {factor!r}")

    def project(x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
            raise DataError(
                f"super-resolution x{factor} needs images (B, C, H, W) with H and W divisible by {factor}; "
                f"found {tuple(x.shape)}"
            )
        return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")

    return project


def channel_mean(x: Tensor) -> Tensor:
    """P x = (1/C) Σ_c x_c broadcast to every channel, images (B, C, H, W): the grey part."""
    return x.mean(dim=1, keepdim=True).expand_as(x)


def image_mask(kind: str, shape: tuple[int, int, int], generator: torch.Generator | None = None) -> Tensor:
    """(C, H, W) mask, 1 = kept: ``center`` hides the middle half of each side, ``left`` …
    ``bottom`` the half on that side, ``random`` each pixel with probability ½ (all channels
    together; drawn with ``generator``, a CPU generator, or torch's global RNG)."""
    if kind not in MASKS:
        raise ConfigError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASKS)}")
    c, h, w = shape
    keep = torch.ones(h, w)
    if kind == "center":
        keep[h // 4 : h - h // 4, w // 4 : w - w // 4] = 0
    elif kind == "left":
        keep[:, : w // 2] = 0
    elif kind == "right":
        keep[:, w // 2 :] = 0
    elif kind == "top":
        keep[: h // 2] = 0
    elif kind == "bottom":
        keep[h // 2 :] = 0
    else:
        keep = (torch.rand(h, w, generator=generator) < 0.5).to(keep)
    return keep.expand(c, h, w).clone()  # (C, H, W)


# -- degradations that make training pairs ------------------------------------------------------


class Degradation(abc.ABC):
    """A measurement y = P x of images (B, C, H, W), with P an orthogonal projection.

    ``projection`` gives the P of a batch: the same for every example (super-resolution,
    colorization, a fixed mask) unless ``random`` (a random mask per example, drawn with the
    generator). P is linear and keeps constants for the block and channel means, so it may be
    applied in data or in a model's centred space alike; a mask sets missing entries to 0 in the
    space it is applied in (mid-grey in [−1, 1]).
    """

    name: str = "degradation"
    random: bool = False

    def check(self, event_shape: Sequence[int]) -> None:
        """Raise :class:`ConfigError` unless the images (C, H, W) can be degraded this way."""
        if len(event_shape) != 3:
            raise ConfigError(
                f"{self.name} degrades images (C, H, W); found event shape {tuple(event_shape)}"
            )

    @abc.abstractmethod
    def projection(self, x: Tensor, generator: torch.Generator | None = None) -> Projection:
        """P for the batch x (B, C, H, W) (x gives its shape and device only)."""

    def describe(self) -> str:
        """The degradation with its setting, e.g. ``super-resolution x4``."""
        return self.name

    def __eq__(self, other: object) -> bool:
        """Two degradations are equal when they are of one kind with one setting."""
        return type(self) is type(other) and self.describe() == other.describe()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), self.describe()))


class SuperResolution(Degradation):
    """P = :func:`block_average` (f): the low-resolution image at 1/f of the side, repeated f × f.

    Images need H and W divisible by f, with a low-resolution side of at least 2 pixels."""

    name = "super-resolution"

    def __init__(self, factor: int = 4) -> None:
        self.project = block_average(factor)
        self.factor = factor

    def check(self, event_shape: Sequence[int]) -> None:
        super().check(event_shape)
        _, h, w = (int(s) for s in event_shape)
        f = self.factor
        if h % f or w % f or h // f < 2 or w // f < 2:
            raise ConfigError(
                f"super-resolution x{f} needs H and W divisible by {f} and at least {2 * f} pixels "
                f"(a low-resolution side of 2 or more); found {h}x{w}"
            )

    def projection(self, x: Tensor, generator: torch.Generator | None = None) -> Projection:
        return self.project

    def describe(self) -> str:
        return f"super-resolution x{self.factor}"


class Inpainting(Degradation):
    """P x = m ⊙ x with the mask of :func:`image_mask` (``kind``); ``random`` masks are drawn per
    example, each pixel kept with probability ½."""

    name = "inpainting"

    def __init__(self, kind: str = "center") -> None:
        if kind not in MASKS:
            raise ConfigError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASKS)}")
        self.kind = kind
        self.random = kind == "random"

    def check(self, event_shape: Sequence[int]) -> None:
        super().check(event_shape)
        _, h, w = (int(s) for s in event_shape)
        if h < 4 or w < 4:
            raise ConfigError(f"inpainting masks need images of at least 4x4 pixels; found {h}x{w}")

    def projection(self, x: Tensor, generator: torch.Generator | None = None) -> Projection:
        b, c, h, w = x.shape
        if self.random:
            device = generator.device if generator is not None else x.device
            draw = torch.rand((b, 1, h, w), device=device, generator=generator).to(x.device)
            m = (draw < 0.5).to(x.dtype).expand(b, c, h, w)
        else:
            m = image_mask(self.kind, (c, h, w)).to(device=x.device, dtype=x.dtype)
        return lambda y: y * m

    def describe(self) -> str:
        return f"inpainting ({self.kind} mask)"


class Colorization(Degradation):
    """P = :func:`channel_mean`: the grey image; colour images only (C ≥ 2)."""

    name = "colorization"

    def check(self, event_shape: Sequence[int]) -> None:
        super().check(event_shape)
        if int(event_shape[0]) < 2:
            raise ConfigError(
                f"colorization needs colour images (C >= 2 channels); found {int(event_shape[0])} channel"
            )

    def projection(self, x: Tensor, generator: torch.Generator | None = None) -> Projection:
        return channel_mean


DEGRADATIONS: Registry[Callable[..., Degradation]] = Registry("degradation")
DEGRADATIONS.register("super-resolution", "block means of f x f pixels (factor=4)")(SuperResolution)
DEGRADATIONS.register("inpainting", "a mask hides pixels (mask=center|left|right|top|bottom|random)")(
    Inpainting
)
DEGRADATIONS.register("colorization", "the channel mean (grey image) of colour images")(Colorization)


__all__ = [
    "DEGRADATIONS",
    "MASKS",
    "Colorization",
    "Degradation",
    "Inpainting",
    "Projection",
    "SuperResolution",
    "block_average",
    "channel_mean",
    "image_mask",
    "mask_projection",
]
