"""Generative adversarial networks: one class, every variant a configuration.

``GAN(info, generator, discriminator, latent, loss, penalty)`` is the two-player game of
Goodfellow et al. (2014): a generator x = G(z, c), z ~ p(z), and a discriminator (critic) with raw
output v = D(x, c), trained in turn, the discriminator first, each on its own loss
(:class:`~simulacra.objectives.adversarial.AdversarialLoss`):

    group "discriminator":  E_P[φ_real(D(x))] + E_z[φ_fake(D(G(z)))] + penalty       (G fixed)
    group "generator":      E_z[ψ(D(G(z)))]                                           (D fixed)

The original minimax game, the non-saturating, hinge, least-squares and Wasserstein losses and
the f-GANs differ only in ``loss``; WGAN-GP and R1 in ``penalty``; SNGAN in a spectrally
normalized discriminator; conditional GANs in a label embedding in G and a projection in D;
DiffAugment in ``augment``. How each group is optimised (Adam's betas, critic updates per
generator update) is declared to the one training loop through :meth:`GAN.optimizer_settings`.

A GAN has no likelihood: it offers samples, and scores itself on held-out data with a kernel
MMD² between its samples and the data (:meth:`GAN.validation_score`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from simulacra.data.info import DataInfo
from simulacra.data.transforms import CenteredRange
from simulacra.distributions.standard import sample_from
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.models.base import (
    GenerativeModel,
    GroupSettings,
    LossOutput,
    check_batch,
    check_context,
    mark_local,
)
from simulacra.objectives.adversarial import AdversarialLoss, Penalty
from simulacra.objectives.kernel import mmd2
from simulacra.samplers.rejection import RejectionStats, rejection_sample

TRAIN_DEFAULTS: dict[str, Any] = {"lr": 2e-4, "betas": (0.5, 0.999), "ema_decay": 0.999, "patience": None}
"""How a GAN trains unless the user says otherwise (:meth:`GAN.train_defaults`): Adam with lr 2e-4
and β1 = 0.5 for both players (Radford et al. 2016), an EMA of the weights for sampling and
evaluation (Yazıcı et al. 2019), and no early stopping (the game's scores do not fall steadily)."""


def auc(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """P(D(x) > D(G(z))) over all pairs of the batch: the discriminator's ranking accuracy, a
    scalar in [0, 1]; 1 means it separates every real example from every generated one."""
    return (real_out[:, None] > fake_out[None, :]).float().mean()


class GAN(GenerativeModel):
    """x = G(z, c), z ~ p(z); D(x, c) trained against it.

    Args:
        info: shape and support of one example. Bounded data ([0, 1]: binary or grey levels)
            are mapped to [−1, 1] for both networks (y = 2x − 1), so a generator ending in tanh
            covers them; real-valued data are used as they are.
        generator: module ``(z (B, L), c) -> (B, *event)`` in model space.
        discriminator: module ``(x (B, *event), c) -> (B,)``, raw outputs.
        latent: p(z), a lazy distribution module ``(c, n) -> Distribution`` (e.g.
            :class:`~simulacra.distributions.standard.StandardNormal`).
        loss: the two players' losses.
        penalty: a regularizer of the discriminator (gradient penalty, R1), or None.
        augment: a differentiable augmentation applied to every input of D (DiffAugment), or None.
        conditional: G and D read labels c (then every method needs them).
        pack: m, PacGAN's packing (Lin et al. 2018): D judges m examples at once, concatenated
            (vectors end to end, images along channels), all real or all generated, which lets it
            see a lack of diversity; its networks take inputs of m examples. 1: no packing.
        settings: per-group update settings for the loop (default: one update each).
        train_defaults: the training settings :meth:`train_defaults` declares (default
            :data:`TRAIN_DEFAULTS`).
        collapse_patience: warn once when D's running AUC (real against generated, decay 0.99)
            has stayed at least :attr:`collapse_auc` for this many discriminator updates in a row:
            D wins the game and the generator gets little signal (a collapsed game). D wins the
            first thousands of updates of a healthy game too (a Stacked MNIST run with R1: AUC
            ≥ 0.98 for its first 4,100 updates, 0.79–0.86 after), hence 5,000 by default; the
            collapsed run of BENCHMARKS §19 stayed above 0.98 from update 6,500 to its end.
    """

    groups = ("discriminator", "generator")
    loss_description = "adversarial loss of each player (units of the loss)"
    _check_every = 100  # discriminator updates between host reads of the running AUC
    collapse_auc = 0.98  # a running AUC this high: D tells real from generated almost always

    update_count: Tensor
    auc_average: Tensor

    def __init__(
        self,
        info: DataInfo,
        generator: nn.Module,
        discriminator: nn.Module,
        latent: nn.Module,
        loss: AdversarialLoss,
        penalty: Penalty | None = None,
        *,
        augment: nn.Module | None = None,
        conditional: bool = False,
        pack: int = 1,
        settings: Mapping[str, GroupSettings] | None = None,
        train_defaults: Mapping[str, Any] | None = None,
        collapse_patience: int = 5000,
    ) -> None:
        super().__init__(info)
        if conditional and info.num_classes is None:
            raise ConfigError("a conditional GAN needs labelled data (DataInfo.num_classes); found None")
        self.generator = generator
        self.discriminator = discriminator
        self.latent = latent
        self.adversarial_loss = loss
        self.penalty = penalty
        self.augment = augment
        self.conditional = bool(conditional)
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
            raise ConfigError(f"pack must be an integer >= 1; found {pack!r}")
        if pack > 1 and conditional:
            raise ConfigError("packing (pack > 1) judges several examples at once; it takes no labels")
        self.pack = pack
        self.declare_training(settings, TRAIN_DEFAULTS if train_defaults is None else train_defaults)
        self.collapse_patience = int(collapse_patience)
        self.range = CenteredRange.for_data(info)  # [0, 1] data <-> [−1, 1]
        # counters of discriminator updates: lazy penalties, and the collapse warning
        self.register_buffer("update_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("auc_average", torch.full((), 0.5))  # running mean of D's AUC (decay 0.99)
        mark_local(self, "auc_average")
        self._warned = False
        self._updates_seen = 0  # in this process, to read the running AUC every _check_every updates
        self._high_since: int | None = None  # the update from which the running AUC stayed high

    def check_training(self, batch_size: int) -> None:
        """Packing needs batches of at least ``pack`` examples."""
        if batch_size < self.pack:
            raise ConfigError(
                f"pack={self.pack} judges {self.pack} examples at once; the batch has {batch_size} "
                "(raise --set train.batch_size or lower model.pack)"
            )

    # -- data space <-> model space ----------------------------------------------------------

    def to_model(self, x: Tensor) -> Tensor:
        """y = 2x − 1 for [0, 1] data; real-valued data unchanged. (B, *event)."""
        return self.range.forward(x)

    def from_model(self, y: Tensor) -> Tensor:
        """x = (y + 1)/2 clamped to [0, 1] and rounded to the data's levels for bounded data; real
        values unchanged. (B, *event)."""
        return self.range.inverse(y)

    # -- the players -------------------------------------------------------------------------

    def generate(
        self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """G(z, c) in model space, z ~ p(z) drawn with ``generator`` (None: the global RNG), (n, *event)."""
        z = sample_from(self.latent(None, n), (), generator).to(self.device)  # (n, L)
        return self.generator(z, c if self.conditional else None)

    def prior(self, c: Tensor | None = None) -> Distribution:
        """p(z), batch shape (1,) (the same for every label: the label enters G, not z)."""
        return self.latent(None, 1)

    def decode_latent(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """G(z, c) mapped to the data's range, (n, *event_shape) for codes z (n, latent_dim):
        the :class:`~simulacra.models.base.LatentGenerator` capability (interpolation)."""
        check_context(self, c, z.shape[0])
        with torch.no_grad():
            return self.from_model(self.generator(z.to(self.device), c if self.conditional else None))

    def view(self, x: Tensor) -> Tensor:
        """What D reads of a batch x (B, *event) in model space: T(x), T the augmentation when
        there is one, in packs of m (B // m, ...) when packing (the last B mod m examples left out)."""
        if self.augment is not None:
            x = self.augment(x)
        m = self.pack
        if m == 1:
            return x
        if x.shape[0] < m:
            raise DataError(f"pack={m} needs batches of at least {m} examples; found {x.shape[0]}")
        b = x.shape[0] // m * m
        packed = x[:b].reshape(b // m, m * x.shape[1], *x.shape[2:])  # consecutive examples together
        return packed

    def critic(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """D(view(x), c): raw outputs (B,) for model-space inputs x (B, *event) ((B // m,) when
        packing)."""
        return self.discriminator(self.view(x), c if self.conditional else None)

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "discriminator") -> LossOutput:
        """The loss of ``group`` on a batch x (B, *event) (labels c (B,) for a conditional GAN,
        which also label the generated batch).

        Metrics of the discriminator's update: ``d_real`` and ``d_fake``, the mean reported D
        (a probability for the classifier losses, the raw output otherwise), ``d_auc``
        (:func:`auc`), ``value`` (−discriminator loss without penalty: V(D, G), or the f-GAN bound
        on the divergence in nats) and ``penalty``."""
        check_batch(self, x, c)
        real = self.to_model(x)
        if group == "discriminator":
            return self._discriminator_loss(real, c)
        if group == "generator":
            fake = self.generate(x.shape[0], c)
            return LossOutput(self.adversarial_loss.generator_loss(self.critic(fake, c)))
        raise ConfigError(f"a GAN has groups {list(self.groups)}; found {group!r}")

    def _discriminator_loss(self, real: Tensor, c: Tensor | None) -> LossOutput:
        with torch.no_grad():
            fake = self.generate(real.shape[0], c)
        labels = c if self.conditional else None
        seen_real, seen_fake = self.view(real), self.view(fake)  # what D reads: augmented, packed
        v_real, v_fake = self.discriminator(seen_real, labels), self.discriminator(seen_fake, labels)
        game = self.adversarial_loss.discriminator_loss(v_real, v_fake)
        # the update's index matters to a lazy penalty only (reading it waits for the device)
        update = int(self.update_count) if self.penalty is not None and self.penalty.every > 1 else 0
        penalty = real.new_zeros(())
        if self.penalty is not None and self.penalty.active(update):
            # on D's own inputs: the gradient of D with respect to what it reads
            penalty = self.penalty(lambda y: self.discriminator(y, labels), seen_real, seen_fake, update)
        separated = auc(v_real.detach(), v_fake.detach())
        if self.training:
            self._count(separated)
        out = self.adversarial_loss.output
        metrics = {
            "d_real": out(v_real.detach()).mean(),
            "d_fake": out(v_fake.detach()).mean(),
            "d_auc": separated,
            "value": -game.detach(),
        }
        if self.penalty is not None:
            metrics["penalty"] = penalty.detach()
        return LossOutput(game + penalty, metrics)

    @torch.no_grad()
    def _count(self, separated: Tensor) -> None:
        """Advance the update counter and the running AUC (on the device; the AUC is read on the
        host every ``_check_every`` updates only)."""
        self.update_count.add_(1)
        self.auc_average.mul_(0.99).add_(0.01 * separated)
        self._updates_seen += 1
        if self._warned or self._updates_seen % self._check_every:
            return
        running, count = float(self.auc_average), int(self.update_count)
        if running < self.collapse_auc:
            self._high_since = None
            return
        if self._high_since is None:
            self._high_since = count
        if count - self._high_since >= self.collapse_patience:
            self._warned = True
            warnings.warn(
                f"{self.preset_name}: the discriminator tells real from generated examples apart almost "
                f"always (running AUC {running:.3f}, at least {self.collapse_auc} for the last "
                f"{count - self._high_since} updates): the generator gets little "
                "signal (a collapsed game). Try a penalty (r1, gradient-penalty), spectral "
                "normalization, fewer discriminator updates or a lower discriminator learning rate.",
                RuntimeWarning,
                stacklevel=2,
            )

    # -- what the loop and the metrics read ----------------------------------------------------

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "discriminator": [p for p in self.discriminator.parameters() if p.requires_grad],
            "generator": [p for p in self.generator.parameters() if p.requires_grad],
        }

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """MMD²_b between B samples of the generator and the held-out batch x (B, *event) in model
        space (the biased V-statistic of :func:`~simulacra.objectives.kernel.mmd2`: never negative,
        defined for a last batch of one), Gaussian kernel with the median distance of the held-out
        batch as bandwidth, so that the kernel does not move with the generator. A scalar."""
        check_batch(self, x, c)
        with torch.no_grad():
            real = self.to_model(x).flatten(1)
            fake = self.generate(x.shape[0], c).flatten(1)
            return mmd2(fake, real, unbiased=False)

    sample_options = frozenset({"rejection"})

    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        rejection: bool = False,
    ) -> Tensor:
        """x = G(z, c), z ~ p(z) drawn with ``generator``, mapped to the data's range.

        Args:
            n: number of samples.
            c: (n,) labels for a conditional GAN (required then).
            generator: makes the draw reproducible.
            rejection: keep each G(z) with probability exp(w − M), w the discriminator's
                estimate of log p_data/p_g (:meth:`rejection_sample`).

        Returns:
            (n, *event_shape).
        """
        check_context(self, c, n)
        with torch.no_grad():
            if rejection:
                y, _ = self.rejection_sample(n, c, generator=generator)
            else:
                y = self.generate(n, c, generator=generator)
            return self.from_model(y)

    def log_ratio(self, y: Tensor, c: Tensor | None = None) -> Tensor:
        """w(y) = the discriminator's estimate of log p_data(y)/p_g(y) in nats, (B,), for
        model-space inputs y (B, *event), unaugmented: exact at the optimal discriminator of a
        loss that determines it (:attr:`AdversarialLoss.log_ratio`).

        Raises:
            CapabilityError: a loss whose optimum does not give the ratio (hinge, Wasserstein,
                f-GAN), or a packed discriminator (it judges several examples at once).
        """
        ratio = getattr(self.adversarial_loss, "log_ratio", None)
        if ratio is None:
            raise CapabilityError(
                f"the {self.adversarial_loss.name} loss's discriminator does not estimate log p_data/p_g; "
                "rejection sampling needs minimax, non-saturating or least-squares"
            )
        if self.pack > 1:
            raise CapabilityError(
                f"a packed discriminator (pack={self.pack}) judges packs, not single samples"
            )
        return ratio(self.discriminator(y, c if self.conditional else None))

    def rejection_sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        burn_in: int = 10_000,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, RejectionStats]:
        """Discriminator rejection sampling (Azadi et al. 2019): n draws from
        p_g(y)·exp(w(y)) / Z in model space, (n, *event), with w = :meth:`log_ratio` — the data
        distribution itself where the discriminator is optimal. Each G(z) is kept with
        probability exp(w − M), M the largest w of ``burn_in`` proposals (raised when exceeded;
        :func:`~simulacra.samplers.rejection.rejection_sample`). Slot i keeps label c[i]."""
        check_context(self, c, n)

        def propose(slots: Tensor, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
            labels = None if c is None else c[slots.to(c.device)]
            y = self.generate(slots.numel(), labels, generator=g)
            return y, self.log_ratio(y, labels)

        with torch.no_grad():
            return rejection_sample(propose, n, burn_in=burn_in, generator=generator)

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        if options and options.get("rejection"):
            return "discriminator rejection sampling"
        return "one pass of the generator"
