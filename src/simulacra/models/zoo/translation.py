"""Image-to-image presets: pix2pix (paired) and CycleGAN (unpaired).

``pix2pix`` (Isola et al. 2017) in miniature: a U-Net generator and a conditional PatchGAN
discriminator trained on pairs (P x, x) that it makes from the dataset's own images, P the
degradation named by ``task`` (super-resolution ×``factor``, inpainting with a ``mask`` kind,
colorization), so that GAN and diffusion solve the same inverse problem.

``cyclegan`` (Zhu et al. 2017) in miniature: two U-Net generators and two PatchGANs between two
image sets that are never paired, given as two data sources (``--data A --data B``) or as two
label sets of one dataset (``domain_a``, ``domain_b``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from simulacra.data.degradations import DEGRADATIONS, Degradation
from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, positive_int
from simulacra.models.cyclegan import CycleGAN
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


def _domain(info: DataInfo, labels: Sequence[int | str] | None, which: str) -> list[int]:
    """Label indices of a domain given as label indices or names."""
    if isinstance(labels, str | int):
        labels = [labels]
    if not isinstance(labels, Sequence) or not labels:
        raise ConfigError(f"{which} must be a non-empty list of labels (indices or names); found {labels!r}")
    return [info.label_index(v) for v in labels]


def domains(
    info: DataInfo, domain_a: Sequence[int | str] | None, domain_b: Sequence[int | str] | None
) -> tuple[list[int], list[int]]:
    """The label sets of domains A and B: as given, or labels 0 and 1 of data with two labels
    (two data sources, or an image folder with two sub-folders)."""
    if domain_a is None and domain_b is None:
        if info.num_classes != 2:
            found = "no labels" if info.num_classes is None else f"{info.num_classes} labels"
            raise ConfigError(
                f"cyclegan translates between two image sets; these data are one set with {found}: give two "
                "sources (--data A --data B), or name two label sets of one dataset "
                "(--set model.domain_a=[3] --set model.domain_b=[8])"
            )
        return [0], [1]
    if domain_a is None or domain_b is None:
        raise ConfigError("give both domain_a and domain_b, or neither (two data sources)")
    return _domain(info, domain_a, "domain_a"), _domain(info, domain_b, "domain_b")


@MODELS.register("cyclegan")
def cyclegan(
    info: DataInfo,
    loss: str = "least-squares",
    cycle_weight: float = 10.0,
    identity_weight: float = 0.5,
    pool: int = 50,
    channels: Sequence[int] = (32, 64),
    patch_channels: Sequence[int] = (32, 64),
    domain_a: Sequence[int | str] | None = None,
    domain_b: Sequence[int | str] | None = None,
) -> CycleGAN:
    """CycleGAN (Zhu et al. 2017): U-Nets G: A->B and F: B->A, PatchGANs D_A, D_B; least squares, λ_cyc=10, λ_id=0.5, pools of 50 fakes; two --data sources."""
    if not info.is_image:
        raise ConfigError(f"cyclegan translates images (C, H, W); found event shape {info.event_shape}")
    a, b = domains(info, domain_a, domain_b)
    c, h, w = (int(s) for s in info.event_shape)
    bounded = info.support != "real"

    def generator() -> nn.Module:
        return UNetTranslator(c, c, channels, 0, bounded, (h, w))

    def discriminator() -> nn.Module:
        return PatchDiscriminator(c, patch_channels, (h, w))

    return CycleGAN(
        info, generator(), generator(), discriminator(), discriminator(), LOSSES.get(loss),
        domain_a=a, domain_b=b, cycle_weight=cycle_weight, identity_weight=identity_weight, pool=pool,
    )  # fmt: skip
