"""Unpaired image-to-image translation: CycleGAN (Zhu et al. 2017).

Two generators G: A -> B and F: B -> A and two discriminators D_A, D_B (PatchGANs), trained on
images of two domains that are never paired. With the adversarial loss (φ_real, φ_fake, ψ) of
:class:`~simulacra.objectives.adversarial.AdversarialLoss` (least squares in the paper), a from
A and b from B, in the model's space [−1, 1], every term a mean over its domain's examples:

    group "discriminators":  ½ (E φ_real(D_B(b)) + E φ_fake(D_B(G(a))))
                             + ½ (E φ_real(D_A(a)) + E φ_fake(D_A(F(b))))                 (G, F fixed)
    group "generators":      E ψ(D_B(G(a))) + E ψ(D_A(F(b)))
                             + λ_cyc (E‖F(G(a)) − a‖₁ + E‖G(F(b)) − b‖₁)                  (cycle)
                             + λ_cyc λ_id (E‖G(b) − b‖₁ + E‖F(a) − a‖₁)                  (identity)

(‖·‖₁ the mean absolute difference over pixels; λ_cyc = 10, λ_id = 0.5 as in the authors' code,
so the identity term weighs 5). The identity term asks each generator to leave images of its
target domain unchanged, which keeps colours from drifting; it needs A and B of one shape. As in
the paper, each discriminator reads its fakes through an :class:`ImagePool` of the last 50
(Shrivastava et al. 2017): a fake is shown as it is or, with probability ½ once the pool is full,
swapped for an older one, so that D does not chase the generator's latest move.

The two domains come from one labelled dataset, as the training loop feeds one: examples whose
label is in ``domain_a`` form A, those in ``domain_b`` form B, the rest are not read. Two data
sources (``--data A --data B``, :mod:`simulacra.data.sources`) give labels 0 and 1, the
defaults, as does an image folder with two sub-folders. A batch is split by label, so a domain
may be missing from one batch: its terms are then left out of that update.

A CycleGAN translates (:meth:`CycleGAN.translate`, the capability
:class:`~simulacra.models.base.DomainTranslation`); it has no distribution of its own to sample
from (:meth:`CycleGAN.sample` says so). The ``cyclegan`` preset is in
:mod:`simulacra.models.zoo.translation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from simulacra.data.info import DataInfo
from simulacra.data.transforms import CenteredRange
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.models.base import GenerativeModel, GroupSettings, LossOutput, check_batch, mark_local
from simulacra.models.gan import TRAIN_DEFAULTS
from simulacra.models.translation import l1
from simulacra.objectives.adversarial import AdversarialLoss


class ImagePool(nn.Module):
    """A history of ``size`` generated images (size, *shape) for a discriminator to read.

    :meth:`forward` takes fakes (B, *shape) and returns as many: while the pool fills, each fake
    is stored and returned as it is; once full, each is returned as it is with probability ½, and
    otherwise swapped for a stored image drawn uniformly, which it replaces. Draws use torch's
    global generator (part of a run's checkpoint, so a resumed run makes the same draws). The
    stored images are buffers local to each process (:func:`mark_local`): checkpointed, not
    averaged by the EMA, not synchronized across processes. ``size`` 0 returns the fakes.
    """

    images: Tensor
    count: Tensor

    def __init__(self, size: int, shape: Sequence[int]) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError(f"the pool size must be an integer >= 0; found {size!r}")
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        mark_local(self, "images", "count")

    @torch.no_grad()
    def forward(self, fakes: Tensor) -> Tensor:
        if self.size == 0 or fakes.shape[0] == 0:
            return fakes
        out = fakes.detach().clone()
        stored = int(self.count)
        for i in range(out.shape[0]):
            if stored < self.size:  # filling: keep it, show it
                self.images[stored] = out[i]
                stored += 1
            elif bool(torch.rand((), device=out.device) < 0.5):  # show an older one in its place
                j = int(torch.randint(self.size, (), device=out.device))
                older = self.images[j].clone()
                self.images[j] = out[i]
                out[i] = older
        self.count.fill_(stored)
        return out


class CycleGAN(GenerativeModel):
    """G: A -> B, F: B -> A with discriminators D_A, D_B; domains are label sets of one dataset.

    Args:
        info: images (C, H, W) with labels (``num_classes``).
        g_ab: G, a module (B, C, H, W) -> (B, C, H, W) in model space.
        g_ba: F, likewise.
        d_a: D_A, a module (B, C, H, W) -> raw outputs (B, ...) (patch logits).
        d_b: D_B, likewise.
        loss: the adversarial losses.
        domain_a: the labels of domain A.
        domain_b: the labels of domain B (disjoint from A).
        cycle_weight: λ_cyc.
        identity_weight: λ_id, relative to λ_cyc (0 turns the identity term off).
        pool: the size of each discriminator's :class:`ImagePool` of earlier fakes (0: none).
        settings, train_defaults: as for :class:`~simulacra.models.gan.GAN`.
    """

    groups = ("discriminators", "generators")
    conditional = True  # the loop passes the labels, which name the domains
    loss_description = "adversarial (+ cycle and identity) loss of each pair of players"

    def __init__(
        self,
        info: DataInfo,
        g_ab: nn.Module,
        g_ba: nn.Module,
        d_a: nn.Module,
        d_b: nn.Module,
        loss: AdversarialLoss,
        *,
        domain_a: Sequence[int] = (0,),
        domain_b: Sequence[int] = (1,),
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool: int = 50,
        settings: Mapping[str, GroupSettings] | None = None,
        train_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(info)
        if not info.is_image:
            raise ConfigError(f"CycleGAN translates images (C, H, W); found event shape {info.event_shape}")
        k = info.num_classes
        if k is None:
            raise ConfigError("CycleGAN reads its two domains from labels; these data have none")
        a, b = sorted({int(v) for v in domain_a}), sorted({int(v) for v in domain_b})
        if not a or not b or set(a) & set(b) or min(a + b) < 0 or max(a + b) >= k:
            raise ConfigError(
                f"domain_a and domain_b must be disjoint, non-empty sets of labels in [0, {k}); "
                f"found {list(domain_a)} and {list(domain_b)}"
            )
        if not (cycle_weight >= 0 and identity_weight >= 0):
            raise ConfigError(f"the loss weights must be >= 0; found {cycle_weight} and {identity_weight}")
        self.g_ab, self.g_ba, self.d_a, self.d_b = g_ab, g_ba, d_a, d_b
        self.adversarial_loss = loss
        self.cycle_weight, self.identity_weight = float(cycle_weight), float(identity_weight)
        self.register_buffer("domain_a", torch.tensor(a), persistent=False)
        self.register_buffer("domain_b", torch.tensor(b), persistent=False)
        self.range = CenteredRange.for_data(info)
        self.pool_a, self.pool_b = ImagePool(pool, info.event_shape), ImagePool(pool, info.event_shape)
        self.declare_training(settings, TRAIN_DEFAULTS if train_defaults is None else train_defaults)

    @property
    def domain_names(self) -> tuple[str, str]:
        """(name of A, name of B): the data's label names joined by "+" (``photos``, or
        ``0+1+2`` without names)."""
        names = self.info.label_names

        def name(labels: Tensor) -> str:
            return "+".join(names[k] if names else str(k) for k in labels.tolist())

        return name(self.domain_a), name(self.domain_b)

    def split(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """(a, b): the examples of x (B, C, H, W) in domain A and in domain B, by their labels c (B,)."""
        if c is None:
            raise DataError(
                f"{self.preset_name} needs labels c (B,) to tell domain A from domain B; found None"
            )
        return x[torch.isin(c, self.domain_a)], x[torch.isin(c, self.domain_b)]

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "discriminators") -> LossOutput:
        """The loss of ``group`` on images x (B, C, H, W) labelled c (B,). Metrics: ``d_a``,
        ``d_b`` (the discriminators' losses); ``adversarial``, ``cycle``, ``identity`` (each
        unweighted, model-space L1 for the last two)."""
        check_batch(self, x, c)
        a, b = self.split(self.range.forward(x), c)
        if group == "discriminators":
            with torch.no_grad():  # D reads earlier fakes too (the pools)
                fake_b, fake_a = self.pool_b(self.g_ab(a)), self.pool_a(self.g_ba(b))
            d_b = self._game(self.d_b, b, fake_b)
            d_a = self._game(self.d_a, a, fake_a)
            return LossOutput(d_a + d_b, {"d_a": d_a.detach(), "d_b": d_b.detach()})
        if group == "generators":
            terms = self.generator_terms(a, b)
            total = (
                terms["adversarial"]
                + self.cycle_weight * terms["cycle"]
                + self.cycle_weight * self.identity_weight * terms["identity"]
            )
            return LossOutput(total, {k: v.detach() for k, v in terms.items()})
        raise ConfigError(f"CycleGAN has groups {list(self.groups)}; found {group!r}")

    def _game(self, d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """½ (E φ_real(D(real)) + E φ_fake(D(fake))), each mean left out when its batch is empty."""
        parts = []
        if real.shape[0]:
            parts.append(self.adversarial_loss.real(d(real).flatten()).mean())
        if fake.shape[0]:
            parts.append(self.adversarial_loss.fake(d(fake).flatten()).mean())
        return 0.5 * sum(parts, real.new_zeros(()))

    def generator_terms(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        """The unweighted generator terms for a (N_a, C, H, W) from A and b (N_b, C, H, W) from
        B, model space: ``adversarial`` E ψ(D_B(G(a))) + E ψ(D_A(F(b))), ``cycle``
        E‖F(G(a)) − a‖₁ + E‖G(F(b)) − b‖₁, ``identity`` E‖G(b) − b‖₁ + E‖F(a) − a‖₁; a term of
        an empty domain is 0. Scalars."""
        zero = a.new_zeros(())
        adversarial, cycle, identity = zero, zero, zero
        psi = self.adversarial_loss.generator
        if a.shape[0]:
            fake_b = self.g_ab(a)
            adversarial = adversarial + psi(self.d_b(fake_b).flatten()).mean()
            cycle = cycle + l1(self.g_ba(fake_b), a).mean()
            identity = identity + l1(self.g_ba(a), a).mean()
        if b.shape[0]:
            fake_a = self.g_ba(b)
            adversarial = adversarial + psi(self.d_a(fake_a).flatten()).mean()
            cycle = cycle + l1(self.g_ab(fake_a), b).mean()
            identity = identity + l1(self.g_ab(b), b).mean()
        return {"adversarial": adversarial, "cycle": cycle, "identity": identity}

    # -- data space -------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, x: Tensor, direction: str = "a->b") -> Tensor:
        """G(x) (``a->b``) or F(x) (``b->a``) for images x (B, C, H, W) in data space, (B, C, H, W)."""
        if direction not in ("a->b", "b->a"):
            raise ConfigError(f"direction must be 'a->b' or 'b->a'; found {direction!r}")
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            shape = ", ".join(map(str, self.event_shape))
            raise DataError(f"CycleGAN translates images (B, {shape}); found {tuple(x.shape)}")
        net = self.g_ab if direction == "a->b" else self.g_ba
        return self.range.inverse(net(self.range.forward(x.to(self.device))))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        def trainable(*modules: nn.Module) -> list[nn.Parameter]:
            return [p for m in modules for p in m.parameters() if p.requires_grad]

        return {
            "discriminators": trainable(self.d_a, self.d_b),
            "generators": trainable(self.g_ab, self.g_ba),
        }

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """The cycle-consistency error E‖F(G(a)) − a‖₁ + E‖G(F(b)) − b‖₁ on held-out images,
        model space, a scalar (the adversarial terms do not fall steadily)."""
        check_batch(self, x, c)
        with torch.no_grad():
            a, b = self.split(self.range.forward(x), c)
            return self.generator_terms(a, b)["cycle"]

    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **sampler_options: Any,
    ) -> Tensor:
        """Not defined: a CycleGAN maps images of one domain to the other (:meth:`translate`) and
        has no distribution of its own. Raises :class:`CapabilityError`."""
        raise CapabilityError(
            f"{self.preset_name} translates images between two domains and draws none of its own; "
            "use translate(x, 'a->b' | 'b->a')"
        )


__all__ = ["CycleGAN", "ImagePool"]
