"""GAN presets: gan, wgan-gp, sngan, lsgan and fgan.

Every preset is a configuration of :class:`~simulacra.models.gan.GAN`: the loss, the penalty,
spectral normalization, the critic updates per generator update, and the training settings the
model declares (:meth:`~simulacra.models.gan.GAN.train_defaults`: Adam's learning rate and betas,
an EMA, no early stopping), which ``simulacra train`` applies beneath the user's own. The networks follow the data: an
MLP generator and discriminator for vectors, the DCGAN pair for images (``arch`` picks another);
``conditional=True`` embeds the label in G and projects it in D; ``augment`` (images) names the
DiffAugment policy, e.g. ``"color,translation,cutout"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from simulacra.data.info import DataInfo
from simulacra.distributions.standard import StandardNormal
from simulacra.errors import ConfigError, positive_int
from simulacra.models.base import GroupSettings
from simulacra.models.gan import GAN, TRAIN_DEFAULTS
from simulacra.models.zoo._common import _context
from simulacra.models.zoo._registry import (
    ACCELERATOR_IMAGE_DEFAULTS,
    IMAGE_DEFAULTS,
    IMAGE_DEFAULTS_YIELD_TO,
    MODELS,
)
from simulacra.nn.adversarial import (
    ConvFeatures,
    DCGANGenerator,
    DiffAugment,
    Discriminator,
    MLPFeatures,
    MLPGenerator,
)
from simulacra.objectives.adversarial import LOSSES, R1, AdversarialLoss, GradientPenalty, Penalty, f_gan_loss

WGAN_TRAIN = {**TRAIN_DEFAULTS, "lr": 1e-4, "betas": (0.0, 0.9)}
"""WGAN-GP's Adam (Gulrajani et al. 2017: lr 1e-4, β = (0, 0.9)); the other presets train with
:data:`~simulacra.models.gan.TRAIN_DEFAULTS` (lr 2e-4, β = (0.5, 0.999)). Both with an EMA and no
early stopping; ``--lr`` and ``--set train.KEY=VALUE`` override them."""


def _gan(
    info: DataInfo,
    loss: AdversarialLoss,
    penalty: Penalty | None,
    *,
    latent_dim: int,
    hidden: Sequence[int],
    channels: Sequence[int],
    spectral: bool,
    conditional: bool,
    pack: int,
    embedding_dim: int | None,
    augment: str | None,
    arch: str | None,
    critic_updates: int,
    train: dict[str, Any] = TRAIN_DEFAULTS,
) -> GAN:
    latent_dim, pack = positive_int(latent_dim, "latent_dim"), positive_int(pack, "pack")
    arch = arch or ("conv" if info.is_image else "mlp")
    bounded = info.support != "real"
    num_classes = info.num_classes if conditional else None
    context = _context(info, conditional, embedding_dim)
    if arch == "mlp":
        hidden = [positive_int(h, "each hidden size") for h in hidden]
        gen: MLPGenerator | DCGANGenerator = MLPGenerator(
            latent_dim, info.event_shape, hidden, "relu", bounded, context
        )
        features: MLPFeatures | ConvFeatures = MLPFeatures(info.dim * pack, hidden[::-1])
    elif arch == "conv":
        if not info.is_image:
            raise ConfigError(f"arch='conv' needs images (C, H, W); found event_shape {info.event_shape}")
        channels = [positive_int(ch, "each channel count") for ch in channels]
        gen = DCGANGenerator(latent_dim, info.event_shape, channels[::-1], bounded, context)
        c, h, w = info.event_shape
        features = ConvFeatures((c * pack, h, w), channels)  # a pack's images side by side in channels
    else:
        raise ConfigError(f"unknown architecture {arch!r}; expected 'mlp' or 'conv'")
    if augment and not info.is_image:
        raise ConfigError(f"DiffAugment transforms images; found event_shape {info.event_shape}")
    return GAN(
        info,
        gen,
        Discriminator(features, features.out_features, num_classes, spectral=spectral, bias=loss.output_bias),
        StandardNormal(latent_dim),
        loss,
        penalty,
        augment=DiffAugment(augment) if augment else None,
        conditional=conditional,
        pack=pack,
        settings={"discriminator": GroupSettings(updates=positive_int(critic_updates, "critic_updates"))},
        train_defaults=train,
    )


@MODELS.register("gan")
def gan(
    info: DataInfo,
    loss: str = "non-saturating",
    divergence: str = "jensen-shannon",
    r1: float = 0.0,
    r1_every: int = 1,
    gp_weight: float = 0.0,
    spectral: bool = False,
    latent_dim: int = 32,
    hidden: Sequence[int] = (128, 128),
    channels: Sequence[int] = (32, 64, 128),
    conditional: bool = False,
    pack: int = 1,
    embedding_dim: int | None = None,
    augment: str | None = None,
    arch: str | None = None,
    critic_updates: int = 1,
    _train: dict[str, Any] = TRAIN_DEFAULTS,
) -> GAN:
    """GAN (Goodfellow et al. 2014; DCGAN for images): any ``loss`` of ``LOSSES`` (non-saturating,
    minimax, hinge, least-squares, wasserstein) or ``f-gan`` (the f-GAN bound on ``divergence``), R1 (``r1`` = γ,
    lazy every ``r1_every`` updates) or a gradient penalty (``gp_weight`` = λ), ``spectral``
    normalization of D, ``critic_updates`` D updates per G update, PacGAN ``pack``. The other GAN
    presets are this one with their paper's choices."""
    if r1 > 0 and gp_weight > 0:
        raise ConfigError("choose one penalty of the discriminator: r1 or gp_weight")
    penalty: Penalty | None = (
        R1(r1, r1_every) if r1 > 0 else GradientPenalty(gp_weight) if gp_weight > 0 else None
    )
    adversarial = f_gan_loss(divergence) if loss == "f-gan" else LOSSES.get(loss)
    return _gan(
        info, adversarial, penalty, latent_dim=latent_dim, hidden=hidden, channels=channels,
        spectral=spectral, conditional=conditional, pack=pack, embedding_dim=embedding_dim, augment=augment,
        arch=arch, critic_updates=critic_updates, train=_train,
    )  # fmt: skip


def _variant(name: str, doc: str, fixed: dict[str, Any], **defaults: Any) -> Callable[..., GAN]:
    """Register ``name``: the ``gan`` preset with the settings ``fixed`` (its paper's loss, penalty,
    normalization) and other ``defaults``; its signature is gan's less the fixed settings, so that
    ``simulacra models NAME`` lists them and a run's spec records every one."""
    base = inspect.signature(gan)
    params = [
        p.replace(default=defaults.get(p.name, p.default))
        for p in base.parameters.values()
        if p.name not in fixed and not p.name.startswith("_")
    ]

    def preset(info: DataInfo, **settings: Any) -> GAN:
        return gan(info, **{**fixed, **defaults, **settings})

    preset.__signature__ = base.replace(parameters=params)  # type: ignore[attr-defined]
    preset.__doc__ = doc
    preset.__name__ = preset.__qualname__ = name.replace("-", "_")
    return MODELS.register(name, doc.split("\n")[0])(preset)


wgan_gp = _variant(
    "wgan-gp",
    "WGAN-GP (Gulrajani et al. 2017): Wasserstein critic, gradient penalty λ=10, 5 critic updates\n"
    "per generator update, Adam 1e-4 with β = (0, 0.9).",
    {"loss": "wasserstein", "r1": 0.0, "r1_every": 1, "_train": WGAN_TRAIN},
    gp_weight=10.0,
    critic_updates=5,
)
sngan = _variant(
    "sngan",
    "SNGAN (Miyato et al. 2018): hinge loss, spectrally normalized discriminator (projection if\n"
    "conditional).",
    {"loss": "hinge", "spectral": True},
)
lsgan = _variant(
    "lsgan",
    "LSGAN (Mao et al. 2017): least-squares losses with targets 0 (fake) and 1 (real).",
    {"loss": "least-squares"},
)


fgan = _variant(
    "fgan",
    "f-GAN (Nowozin et al. 2016): variational divergence minimization of the divergence kl,\n"
    "reverse-kl, pearson, squared-hellinger or jensen-shannon.",
    {"loss": "f-gan"},
)


# DCGAN's widths (Radford et al. 2016: 64-128-256 in D, mirrored in G) where a GPU trains them at a
# useful rate; the signatures' (32, 64, 128) are the 2-core CPU's
for _name in ("gan", "wgan-gp", "sngan", "lsgan", "fgan"):
    ACCELERATOR_IMAGE_DEFAULTS[_name] = {"channels": (64, 128, 256)}

# R1 (γ = 10, lazy every 4 updates) for images: the DCGAN pair without it collapses on Stacked
# MNIST (5 modes of 1,000, KL 6.78 nats) and with it covers all 1,000 (KL 0.041) in the same hour
# (BENCHMARKS §19); on the 2-D grid of 25 modes R1 costs modes, so vectors keep r1 = 0
IMAGE_DEFAULTS["gan"] = {"r1": 10.0, "r1_every": 4}
IMAGE_DEFAULTS_YIELD_TO["gan"] = ("gp_weight",)  # the other penalty: given, it replaces R1
