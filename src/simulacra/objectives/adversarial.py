"""Adversarial objectives: the two players' losses, the f-GAN bounds, and gradient penalties.

Every loss of a GAN is one :class:`AdversarialLoss`: three elementwise functions of the
discriminator's raw output v = D(x) (a real number per example, before any output activation)

    discriminator_loss = E_{x~P}[ φ_real(v(x)) ] + E_{z}[ φ_fake(v(G(z))) ]      (minimised over D)
    generator_loss     = E_{z}[ ψ(v(G(z))) ]                                     (minimised over G)

so that one interface serves the original minimax game (Goodfellow et al. 2014), its
non-saturating variant, the hinge loss (Lim & Ye 2017; Miyato et al. 2018), least squares
(Mao et al. 2017), the Wasserstein critic (Arjovsky et al. 2017) and the f-GAN family (Nowozin,
Cseke & Tomioka 2016). ``−discriminator_loss`` is the value the discriminator maximises: the
value function V(D, G) of the minimax game, or the variational lower bound on an f-divergence
for the f-GANs (:meth:`AdversarialLoss.value`, in nats for the divergences).

Regularizers of the discriminator are :class:`Penalty` objects: the WGAN-GP gradient penalty on
interpolates (Gulrajani et al. 2017) and R1 on real data (Mescheder et al. 2018), optionally lazy
(applied every k updates with weight × k, Karras et al. 2020). Strings name losses, divergences
and penalties only in :data:`LOSSES`, :data:`DIVERGENCES` and :data:`PENALTIES`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from simulacra.errors import ConfigError
from simulacra.registry import Registry

Elementwise = Callable[[Tensor], Tensor]
Critic = Callable[[Tensor], Tensor]
"""x (B, *event) -> raw discriminator outputs (B,); the context, if any, is bound in."""

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class AdversarialLoss:
    """The losses of both players as elementwise functions of the raw output v.

    Attributes:
        name: the registered name.
        real: φ_real(v) on real examples (discriminator loss).
        fake: φ_fake(v) on generated examples (discriminator loss).
        generator: ψ(v) on generated examples (generator loss).
        output: maps v to the reported D value (a probability σ(v) for the losses built on a
            classifier, v itself otherwise), for the diagnostics D(x) and D(G(z)).
        equilibrium_value: the value −discriminator_loss at the optimal discriminator when the
            generator equals the data (−log 4 for the minimax game), or None when not defined.
        output_bias: whether a constant added to v changes the losses. It does not for the
            Wasserstein critic (the terms cancel), nor for the hinge loss while every output lies
            inside its margins (|v| < 1, as at initialisation): such a discriminator needs no
            output bias, whose gradient would be zero.
        log_ratio: maps v to log p_data(x)/p_g(x) at the optimal discriminator, or None when the
            optimum does not determine it (hinge, Wasserstein). The classifier losses' optimum
            D* = p_data/(p_data + p_g) makes it the logit v; least squares (a = 0, b = 1) has the
            same D*, reached by v itself, so it is log v/(1 − v). Discriminator rejection
            sampling reweights the generator's samples by exp of it.
    """

    name: str
    real: Elementwise
    fake: Elementwise
    generator: Elementwise
    output: Elementwise = torch.sigmoid
    equilibrium_value: float | None = None
    output_bias: bool = True
    log_ratio: Elementwise | None = None

    def discriminator_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """E[φ_real(v(x))] + E[φ_fake(v(G(z)))], a scalar; real_out (B,), fake_out (B',)."""
        return self.real(real_out).mean() + self.fake(fake_out).mean()

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        """E[ψ(v(G(z)))], a scalar; fake_out (B',)."""
        return self.generator(fake_out).mean()

    def value(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """−discriminator_loss: V(D, G) of the game, or the f-GAN lower bound on D_f(P ‖ Q) in nats."""
        return -self.discriminator_loss(real_out, fake_out)


def _neg(fn: Elementwise) -> Elementwise:
    return lambda v: -fn(v)


def _identity(v: Tensor) -> Tensor:
    return v


LOSSES: Registry[AdversarialLoss] = Registry("adversarial loss")

MINIMAX = AdversarialLoss(
    "minimax",
    real=lambda v: F.softplus(-v),  # −log σ(v) = −log D(x)
    fake=F.softplus,  # −log(1 − σ(v)) = −log(1 − D(G(z)))
    generator=lambda v: -F.softplus(v),  # log(1 − D(G(z))): saturates when D rejects G(z)
    equilibrium_value=-math.log(4.0),
    log_ratio=_identity,
)
LOSSES.register(
    "minimax",
    "the original game (Goodfellow et al. 2014): V = E log D(x) + E log(1 − D(G(z))); "
    "G minimises log(1 − D(G(z))), whose gradient vanishes when D rejects G(z)",
)(MINIMAX)
LOSSES.register(
    "non-saturating",
    "D as in minimax; G minimises −log D(G(z)) (Goodfellow et al. 2014, §3)",
)(
    AdversarialLoss(
        "non-saturating",
        real=MINIMAX.real,
        fake=MINIMAX.fake,
        generator=lambda v: F.softplus(-v),
        equilibrium_value=-math.log(4.0),
        log_ratio=_identity,
    )
)
LOSSES.register(
    "hinge",
    "D: E max(0, 1 − D(x)) + E max(0, 1 + D(G(z))); G: −E D(G(z)) (Lim & Ye 2017; Miyato et al. 2018)",
)(
    AdversarialLoss(
        "hinge",
        real=lambda v: F.relu(1.0 - v),
        fake=lambda v: F.relu(1.0 + v),
        generator=_neg(_identity),
        output=_identity,
        output_bias=False,
    )
)
LOSSES.register(
    "least-squares",
    "D: ½E(D(x) − 1)² + ½E D(G(z))²; G: ½E(D(G(z)) − 1)² (Mao et al. 2017, a = 0, b = c = 1)",
)(
    AdversarialLoss(
        "least-squares",
        real=lambda v: 0.5 * (v - 1.0).square(),
        fake=lambda v: 0.5 * v.square(),
        generator=lambda v: 0.5 * (v - 1.0).square(),
        output=_identity,
        log_ratio=lambda v: torch.logit(v.clamp(1e-6, 1 - 1e-6)),
    )
)
LOSSES.register(
    "wasserstein",
    "critic: −E D(x) + E D(G(z)) (Arjovsky et al. 2017); G: −E D(G(z)); pair it with a gradient penalty",
)(
    AdversarialLoss(
        "wasserstein",
        real=_neg(_identity),
        fake=_identity,
        generator=_neg(_identity),
        output=_identity,
        output_bias=False,
    )
)


# -- f-GAN ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FDivergence:
    """An f-divergence D_f(P ‖ Q) = ∫ q(x) f(p(x)/q(x)) dx with its variational bound.

    Nowozin et al. (2016), Table 2: for every T, D_f(P ‖ Q) ≥ E_P[T(x)] − E_Q[f*(T(x))], with f*
    the convex conjugate f*(t) = sup_u (t u − f(u)); equality at T = f'(p/q). The critic's raw
    output v is mapped into the domain of f* by the output activation T = g_f(v).

    Attributes:
        name: the registered name.
        f: the generator function f(u), u > 0 (for closed forms and quadrature).
        activation: g_f(v).
        conjugate: f*(t) on the domain of f*.
        conjugate_of_activation: f*(g_f(v)) written stably in v (equal to
            ``conjugate(activation(v))``).
        divergence: the formula, for docs.
    """

    name: str
    f: Elementwise
    activation: Elementwise
    conjugate: Elementwise
    conjugate_of_activation: Elementwise
    divergence: str

    def loss(self) -> AdversarialLoss:
        """The f-GAN game: D maximises the bound F = E_P[g_f(v)] − E_Q[f*(g_f(v))], G minimises
        it (the saddle-point objective of Nowozin et al. 2016, eq. 6): −discriminator_loss = F."""
        return AdversarialLoss(
            f"f-gan ({self.name})",
            real=_neg(self.activation),
            fake=self.conjugate_of_activation,
            generator=_neg(self.conjugate_of_activation),
            output=self.activation,
        )


def _xlogx(u: Tensor) -> Tensor:
    return torch.xlogy(u, u)


DIVERGENCES: Registry[FDivergence] = Registry("f-divergence")
for _div in (
    FDivergence(
        "kl",
        f=_xlogx,
        activation=_identity,
        conjugate=lambda t: torch.exp(t - 1.0),
        conjugate_of_activation=lambda v: torch.exp(v - 1.0),
        divergence="KL(P ‖ Q) = ∫ p log(p/q)",
    ),
    FDivergence(
        "reverse-kl",
        f=lambda u: -torch.log(u),
        activation=lambda v: -torch.exp(-v),
        conjugate=lambda t: -1.0 - torch.log(-t),
        conjugate_of_activation=lambda v: v - 1.0,  # −1 − log(exp(−v))
        divergence="KL(Q ‖ P) = ∫ q log(q/p)",
    ),
    FDivergence(
        "pearson",
        f=lambda u: (u - 1.0).square(),
        activation=_identity,
        conjugate=lambda t: 0.25 * t.square() + t,
        conjugate_of_activation=lambda v: 0.25 * v.square() + v,
        divergence="Pearson χ²(P ‖ Q) = ∫ (p − q)²/q",
    ),
    FDivergence(
        "squared-hellinger",
        f=lambda u: (torch.sqrt(u) - 1.0).square(),
        activation=lambda v: 1.0 - torch.exp(-v),
        conjugate=lambda t: t / (1.0 - t),
        conjugate_of_activation=torch.expm1,  # (1 − e^{−v}) / e^{−v} = e^v − 1
        divergence="H²(P, Q) = ∫ (√p − √q)²",
    ),
    FDivergence(
        "jensen-shannon",
        f=lambda u: -(u + 1.0) * torch.log((1.0 + u) / 2.0) + _xlogx(u),
        activation=lambda v: LOG2 - F.softplus(-v),
        conjugate=lambda t: -torch.log(2.0 - torch.exp(t)),
        conjugate_of_activation=lambda v: F.softplus(v) - LOG2,  # −log(2 − 2σ(v))
        divergence="2·JS(P, Q) = KL(P ‖ M) + KL(Q ‖ M), M = (P + Q)/2 (Nowozin's f; 2 log 2 at most)",
    ),
):
    DIVERGENCES.register(_div.name, _div.divergence)(_div)


def f_gan_loss(divergence: str) -> AdversarialLoss:
    """The f-GAN loss for a divergence registered in :data:`DIVERGENCES` (kl, reverse-kl,
    pearson, squared-hellinger, jensen-shannon)."""
    return DIVERGENCES.get(divergence).loss()


# -- gradient penalties -------------------------------------------------------------------------


def _input_gradient(critic: Critic, x: Tensor) -> Tensor:
    """∇_x Σ_b D(x_b), (B, *event), kept in the graph (create_graph) so the penalty trains D."""
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


def gradient_penalty(
    critic: Critic,
    real: Tensor,
    fake: Tensor,
    weight: float = 10.0,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017, Algorithm 1): λ E[(‖∇_x̂ D(x̂)‖₂ − 1)²] on interpolates.

    x̂ = ε x + (1 − ε) x̃ with ε ~ U[0, 1] per example, x real and x̃ generated: the optimal
    critic of the Kantorovich–Rubinstein dual has unit gradient norm on lines between coupled
    points, so the penalty pulls the critic towards 1-Lipschitz there.

    Args:
        critic: x (B, *event) -> (B,).
        real, fake: (B, *event) each.
        weight: λ (10 in the paper).
        generator: draws ε (None: torch's global RNG).

    Returns:
        A scalar, in the critic's units squared (per unit of input distance).
    """
    if real.shape != fake.shape:
        raise ConfigError(
            f"the gradient penalty pairs real and generated examples; found shapes {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    device = generator.device if generator is not None else real.device
    eps = torch.rand(shape, dtype=real.dtype, device=device, generator=generator).to(real.device)
    x_hat = eps * real.detach() + (1.0 - eps) * fake.detach()
    grad = _input_gradient(critic, x_hat).flatten(1)  # (B, D)
    return weight * (grad.norm(dim=1) - 1.0).square().mean()


def r1_penalty(critic: Critic, real: Tensor, gamma: float = 10.0) -> Tensor:
    """R1 (Mescheder, Geiger & Nowozin 2018, eq. 9): (γ/2) E_{x~P}[‖∇_x D(x)‖²] on real data.

    Zero-centred on the data: it penalises a discriminator that is not flat on the data manifold,
    which makes the game locally convergent at the equilibrium.

    Args:
        critic: x (B, *event) -> (B,).
        real: (B, *event).
        gamma: γ.

    Returns:
        A scalar.
    """
    grad = _input_gradient(critic, real).flatten(1)
    return 0.5 * gamma * grad.square().sum(dim=1).mean()


class Penalty(abc.ABC):
    """A regularizer of the discriminator, added to its loss: ``penalty(critic, real, fake, update)``.

    ``update`` counts the discriminator's updates (0, 1, 2, ...) so that a lazy penalty can skip
    some of them; :meth:`active` says whether ``update`` computes it (callers skip the double
    backward otherwise)."""

    name: str = "penalty"
    every: int = 1

    def active(self, update: int) -> bool:
        return update % self.every == 0

    @abc.abstractmethod
    def __call__(self, critic: Critic, real: Tensor, fake: Tensor, update: int) -> Tensor:
        """The penalty (a scalar) for discriminator update number ``update``."""


class GradientPenalty(Penalty):
    """:func:`gradient_penalty` with weight λ on every update."""

    name = "gradient-penalty"

    def __init__(self, weight: float = 10.0) -> None:
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"the gradient penalty's weight must be a finite number >= 0; found {weight!r}")
        self.weight = float(weight)

    def __call__(self, critic: Critic, real: Tensor, fake: Tensor, update: int) -> Tensor:
        return gradient_penalty(critic, real, fake, self.weight)


class R1(Penalty):
    """:func:`r1_penalty` with weight γ; lazy with ``every`` = k > 1: computed on every k-th
    update only, with weight γ·k, so its average over updates is unchanged (StyleGAN2, §B)."""

    name = "r1"

    def __init__(self, gamma: float = 10.0, every: int = 1) -> None:
        if not (math.isfinite(gamma) and gamma >= 0):
            raise ConfigError(f"R1's gamma must be a finite number >= 0; found {gamma!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(
                f"R1's every (lazy regularization interval) must be an integer >= 1; found {every!r}"
            )
        self.gamma, self.every = float(gamma), every

    def __call__(self, critic: Critic, real: Tensor, fake: Tensor, update: int) -> Tensor:
        if not self.active(update):
            return real.new_zeros(())
        return r1_penalty(critic, real, self.gamma * self.every)


PENALTIES: Registry[Callable[..., Penalty]] = Registry("penalty")
PENALTIES.register("gradient-penalty", "WGAN-GP: λ E(‖∇D(x̂)‖ − 1)² on interpolates (weight=10)")(
    GradientPenalty
)
PENALTIES.register("r1", "R1: (γ/2) E‖∇D(x)‖² on real data (gamma=10, every=1: lazy every k updates)")(R1)


__all__ = [
    "DIVERGENCES",
    "LOSSES",
    "PENALTIES",
    "AdversarialLoss",
    "FDivergence",
    "GradientPenalty",
    "Penalty",
    "R1",
    "f_gan_loss",
    "gradient_penalty",
    "r1_penalty",
]
