"""Paired image-to-image translation: pix2pix (Isola et al. 2017), in miniature.

A conditional GAN learns x from an observation y = P x of it, P a degradation of the inverse
problems (:mod:`simulacra.data.degradations`: super-resolution, inpainting, colorization).
Training pairs (y, x) are made on the fly from the dataset's own images, so any image dataset
trains it. The generator x̂ = G(y, z) is a U-Net with noise channels z; the discriminator
D(y, x) is a PatchGAN that sees the observation beside the image. With the adversarial loss
(φ_real, φ_fake, ψ) of :class:`~simulacra.objectives.adversarial.AdversarialLoss`:

    group "discriminator":  ½ (E[φ_real(D(y, x))] + E[φ_fake(D(y, x̂))])            (G fixed)
    group "generator":      E[ψ(D(y, x̂))] + λ E‖x − x̂‖₁                             (D fixed)

with means over the batch, the patches and (for L1) the pixels, in the model's space [−1, 1];
λ = 100 and the halved discriminator loss are the paper's. With ``consistent`` the output is
projected onto the observation, x̂ = y + (I − P) G(y, z), so P x̂ = y exactly, as the diffusion
solver's answer is (:func:`simulacra.tasks.inverse.solve_projection`): the generator learns the
part of the image that the observation does not carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from simulacra.data.degradations import Degradation, Projection
from simulacra.data.info import DataInfo
from simulacra.data.transforms import CenteredRange
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.models.base import GenerativeModel, GroupSettings, LossOutput, check_batch
from simulacra.models.gan import TRAIN_DEFAULTS
from simulacra.objectives.adversarial import AdversarialLoss


def l1(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference per example, (B, *event) × 2 -> (B,)."""
    return (a - b).abs().flatten(1).mean(1)


class Pix2Pix(GenerativeModel):
    """x̂ = G(y, z), y = P x, trained against a conditional PatchGAN D(y, x).

    Args:
        info: images (C, H, W); [0, 1] data are mapped to [−1, 1] for both networks.
        generator: module ``(y (B, C, H, W), z (B, K, H, W)) -> (B, C, H, W)`` in model space.
        discriminator: module ``[y, x] (B, 2C, H, W) -> (B, 1, H', W')`` patch logits.
        degradation: P (a fixed one: the observation must determine P).
        loss: the adversarial losses.
        l1_weight: λ.
        noise_channels: K, channels of z ~ N(0, I) (the same as the generator's).
        consistent: project the output onto the observation (P x̂ = y).
        settings: per-group update settings for the loop.
        train_defaults: training settings (default the GANs': Adam 2e-4, β (0.5, 0.999), EMA).
    """

    groups = ("discriminator", "generator")
    loss_description = "adversarial (+ λ·L1 for the generator) loss of each player"

    def __init__(
        self,
        info: DataInfo,
        generator: nn.Module,
        discriminator: nn.Module,
        degradation: Degradation,
        loss: AdversarialLoss,
        *,
        l1_weight: float = 100.0,
        noise_channels: int = 1,
        consistent: bool = True,
        settings: Mapping[str, GroupSettings] | None = None,
        train_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(info)
        if not info.is_image:
            raise ConfigError(f"pix2pix translates images (C, H, W); found event shape {info.event_shape}")
        degradation.check(info.event_shape)
        if degradation.random:
            raise ConfigError(
                f"pix2pix needs a fixed degradation (the observation alone must determine P); "
                f"{degradation.describe()} draws one per example"
            )
        if not l1_weight >= 0:
            raise ConfigError(f"l1_weight must be >= 0; found {l1_weight}")
        if isinstance(noise_channels, bool) or not isinstance(noise_channels, int) or noise_channels < 0:
            raise ConfigError(f"noise_channels must be an integer >= 0; found {noise_channels!r}")
        self.generator = generator
        self.discriminator = discriminator
        self.degradation = degradation
        self.adversarial_loss = loss
        self.l1_weight = float(l1_weight)
        self.noise_channels = noise_channels
        self.consistent = bool(consistent)
        self.range = CenteredRange.for_data(info)
        self.declare_training(settings, TRAIN_DEFAULTS if train_defaults is None else train_defaults)

    # -- the observation and the players, in model space ------------------------------------

    def projection(self, like: Tensor) -> Projection:
        """P for a batch like ``like`` (B, C, H, W)."""
        return self.degradation.projection(like)

    def generate(self, y: Tensor, project: Projection, *, generator: torch.Generator | None = None) -> Tensor:
        """x̂ = G(y, z) (projected onto y when ``consistent``), model space, (B, C, H, W); z drawn
        with ``generator`` (None: torch's global RNG)."""
        z = None
        if self.noise_channels:
            device = generator.device if generator is not None else y.device
            shape = (y.shape[0], self.noise_channels, *y.shape[2:])
            z = torch.randn(shape, device=device, dtype=y.dtype, generator=generator).to(y.device)
        out = self.generator(y, z)
        return out - project(out) + y if self.consistent else out

    def critic(self, y: Tensor, x: Tensor) -> Tensor:
        """D(y, x): patch logits flattened, (B · H' · W',)."""
        return self.discriminator(torch.cat([y, x], dim=1)).flatten()

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "discriminator") -> LossOutput:
        """The loss of ``group`` on images x (B, C, H, W); the observations are made from x (c is
        not read). Metrics: ``d_real``, ``d_fake`` (mean reported D over patches) for the
        discriminator; ``adversarial`` and ``l1`` (model space, [−1, 1] units) for the generator."""
        check_batch(self, x)
        real = self.range.forward(x)
        project = self.projection(real)
        y = project(real)
        if group == "discriminator":
            with torch.no_grad():
                fake = self.generate(y, project)
            v_real, v_fake = self.critic(y, real), self.critic(y, fake)
            out = self.adversarial_loss.output
            metrics = {"d_real": out(v_real.detach()).mean(), "d_fake": out(v_fake.detach()).mean()}
            return LossOutput(0.5 * self.adversarial_loss.discriminator_loss(v_real, v_fake), metrics)
        if group == "generator":
            fake = self.generate(y, project)
            adversarial = self.adversarial_loss.generator_loss(self.critic(y, fake))
            distance = l1(fake, real).mean()
            metrics = {"adversarial": adversarial.detach(), "l1": distance.detach()}
            return LossOutput(adversarial + self.l1_weight * distance, metrics)
        raise ConfigError(f"pix2pix has groups {list(self.groups)}; found {group!r}")

    # -- data space -------------------------------------------------------------------------

    def observe(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """y = P x for images x (B, C, H, W) in data space (a missing pixel of a mask becomes the
        middle of the range, as the model sees it; ``generator`` is unused, P being fixed).
        (B, C, H, W)."""
        check_batch(self, x)
        real = self.range.forward(x)
        y = self.projection(real)(real)
        return (y - self.range.shift) / self.range.scale  # not rounded: block means keep their value

    def translate(self, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """x̂ for observations y = P x (B, C, H, W) in data space; noise drawn with ``generator``.
        (B, C, H, W), on the data's levels."""
        if tuple(y.shape[1:]) != tuple(self.event_shape):
            shape = ", ".join(map(str, self.event_shape))
            raise DataError(f"pix2pix translates observations (B, {shape}); found {tuple(y.shape)}")
        with torch.no_grad():
            obs = self.range.forward(y.to(self.device))
            project = self.projection(obs)
            return self.range.inverse(self.generate(project(obs), project, generator=generator))

    # -- what the loop and the metrics read ------------------------------------------------

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "discriminator": [p for p in self.discriminator.parameters() if p.requires_grad],
            "generator": [p for p in self.generator.parameters() if p.requires_grad],
        }

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """E‖x − x̂‖₁ per example (B,), data units, x̂ the translation of y = P x: the error on
        the inverse problem itself (the adversarial losses do not fall steadily)."""
        check_batch(self, x)
        return l1(self.translate(self.observe(x)), x)

    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **sampler_options: Any,
    ) -> Tensor:
        """Translations x̂ of n observations c = y (n, C, H, W) in data space (see :meth:`observe`);
        pix2pix has no distribution of observations to draw from, so c is required.

        Returns:
            (n, C, H, W).
        """
        if sampler_options:
            raise ConfigError(f"pix2pix.sample takes no options; found {sorted(sampler_options)}")
        if c is None or c.dim() != 4 or c.shape[0] != n:
            found = None if c is None else tuple(c.shape)
            shape = ", ".join(map(str, self.event_shape))
            raise CapabilityError(
                f"{self.preset_name} translates observations and draws none of its own: use `simulacra "
                f"super-resolve|inpaint|colorize RUN` for the problem it learnt ({self.degradation.describe()}), "
                f"or in Python pass c = ({n}, {shape}) observations made by observe(x); found c = {found}"
            )
        return self.translate(c, generator=generator)

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        return f"one pass of the generator on the observation ({self.degradation.describe()})"


__all__ = ["Pix2Pix", "l1"]
