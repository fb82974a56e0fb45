"""Image-to-image presets: pix2pix.

``pix2pix`` (Isola et al. 2017) in miniature: a U-Net generator and a conditional PatchGAN
discriminator trained on pairs (P x, x) that it makes from the dataset's own images, P the
degradation named by ``task`` (super-resolution ×``factor``, inpainting with a ``mask`` kind,
colorization), so that GAN and diffusion solve the same inverse problem.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulacra.data.degradations import DEGRADATIONS, Degradation
from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, positive_int
from simulacra.models.translation import Pix2Pix
from simulacra.models.zoo._registry import MODELS
from simulacra.nn.translation import PatchDiscriminator, UNetTranslator
from simulacra.objectives.adversarial import LOSSES


def degradation(task: str, factor: int, mask: str) -> Degradation:
    """The :class:`Degradation` a ``task`` name stands for, with its setting."""
    if task not in DEGRADATIONS:
        raise ConfigError(f"unknown pix2pix task {task!r}; expected one of {', '.join(DEGRADATIONS.names())}")
    build = DEGRADATIONS.get(task)
    if task == "super-resolution":
        return build(positive_int(factor, "factor"))
    if task == "inpainting":
        return build(mask)
    return build()


@MODELS.register("pix2pix")
def pix2pix(
    info: DataInfo,
    task: str = "super-resolution",
    factor: int = 4,
    mask: str = "center",
    loss: str = "non-saturating",
    l1_weight: float = 100.0,
    channels: Sequence[int] = (32, 64),
    patch_channels: Sequence[int] = (32, 64),
    noise_channels: int = 1,
    consistent: bool = True,
) -> Pix2Pix:
    """pix2pix (Isola et al. 2017): U-Net G, PatchGAN D(y, x), adversarial + λ·L1 (λ=100), task=super-resolution|inpainting|colorization."""
    if not info.is_image:
        raise ConfigError(f"pix2pix translates images (C, H, W); found event shape {info.event_shape}")
    degrade = degradation(task, factor, mask)
    degrade.check(info.event_shape)
    c, h, w = (int(s) for s in info.event_shape)
    generator = UNetTranslator(c, c, channels, noise_channels, info.support != "real", (h, w))
    discriminator = PatchDiscriminator(2 * c, patch_channels, (h, w))
    return Pix2Pix(
        info, generator, discriminator, degrade, LOSSES.get(loss), l1_weight=l1_weight,
        noise_channels=noise_channels, consistent=consistent,
    )  # fmt: skip
