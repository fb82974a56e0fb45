"""The interface every model speaks, and the capabilities that metrics, tasks and the CLI use.

Every model is a :class:`GenerativeModel`: ``loss`` for training, ``sample`` for generation.
What else a model can do is described by structural capabilities (``typing.Protocol``), so
code that needs a likelihood asks ``isinstance(model, ExactLikelihood)`` instead of checking a
class. Inheritance stops at ``GenerativeModel -> concrete model``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from simulacra.data.info import DataInfo
from simulacra.errors import CapabilityError


@dataclass(frozen=True)
class GroupSettings:
    """How the training loop updates one optimizer group, as the model declares it.

    Every field left at None takes the run's value (``TrainConfig``); a run's configuration can
    override any field per group (``train.groups.<group>.<field>``).

    Attributes:
        lr: the group's learning rate (None: the run's ``lr``).
        lr_scale: multiplies the learning rate (e.g. 0.25 for a slower generator).
        betas: Adam's (β1, β2) (GANs commonly use β1 = 0 or 0.5).
        weight_decay: decoupled weight decay (AdamW).
        grad_clip: clip the group's gradient norm to this value.
        updates: optimizer updates of the group per training step (e.g. 5 critic updates per
            generator update in WGAN-GP), in ``groups`` order.
        fresh_batch: each update after a step's first draws a new batch instead of reusing it.
    """

    lr: float | None = None
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    updates: int = 1
    fresh_batch: bool = False

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def mark_local(module: nn.Module, *names: str) -> None:
    """Mark buffers of ``module`` as local to each process: DDP neither broadcasts nor syncs them,
    and the EMA of the weights leaves them out (a replay buffer of MCMC chains, a codebook's usage
    counts). Each process keeps its own value; checkpoints store every process's."""
    for name in names:
        if name not in dict(module.named_buffers(recurse=False)):
            raise ValueError(f"{type(module).__name__} has no buffer {name!r} to mark as local")
    marked = set(getattr(module, "_simulacra_local_buffers", ()))
    module._simulacra_local_buffers = frozenset(marked | set(names))  # type: ignore[assignment]


def local_buffer_names(module: nn.Module) -> frozenset[str]:
    """State-dict keys of every buffer below ``module`` marked with :func:`mark_local`."""
    out: set[str] = set()
    for prefix, sub in module.named_modules():
        for name in getattr(sub, "_simulacra_local_buffers", ()):
            out.add(f"{prefix}.{name}" if prefix else name)
    return frozenset(out)


@dataclass
class LossOutput:
    """What ``loss`` returns.

    Attributes:
        loss: scalar tensor to minimise (mean over the batch).
        metrics: scalar tensors to log (detached), e.g. ``{"elbo": ..., "kl": ...}`` in nats.
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


class GenerativeModel(nn.Module, abc.ABC):
    """Base class of every model.

    Attributes:
        groups: optimizer groups in update order (a GAN has ``("discriminator", "generator")``).
        info: the :class:`DataInfo` the model was built for (shape and support of one example).
        conditional: True when the model uses a context ``c`` (labels); the training loop then
            passes the labels of each batch as ``c``.
    """

    groups: ClassVar[tuple[str, ...]] = ("main",)
    conditional: bool = False

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        self.info = info

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)`` or ``(2,)``."""
        return self.info.event_shape

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def forward(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """Same as :meth:`loss`; DDP synchronises gradients through ``forward``."""
        return self.loss(x, c, group=group)

    @abc.abstractmethod
    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """Training loss of a batch ``x`` (B, *event_shape) for optimizer group ``group``."""

    @abc.abstractmethod
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **sampler_options: Any,
    ) -> Tensor:
        """Draw ``n`` samples, shape (n, *event_shape). ``c``: (n,) labels or (n, ...) context."""

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each optimizer group (default: all parameters in ``"main"``)."""
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    # -- what the training loop asks of a model ------------------------------------------------

    def optimizer_settings(self) -> dict[str, GroupSettings]:
        """The update settings of each group in :attr:`groups` (default: the run's settings for
        every group, one update per step)."""
        return {group: GroupSettings() for group in self.groups}

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """What early stopping and "keep the best weights" minimise on held-out batches: a scalar
        (the batch mean) or one value per example (B,). Default: the loss of the first group."""
        return self.loss(x, c, group=self.groups[0]).loss


@runtime_checkable
class ExactLikelihood(Protocol):
    """Models with a tractable density: flows, autoregressive models, diffusion via the PF-ODE."""

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(x | c) in nats, shape (B,)."""
        ...


@runtime_checkable
class LikelihoodBound(Protocol):
    """Models with a lower bound on log p(x): the VAE family (ELBO, IWAE), diffusion (VLB)."""

    def log_prob_bound(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        """A lower bound on log p(x | c) in nats, shape (B,); tighter as ``num_samples`` grows."""
        ...


@runtime_checkable
class ImportanceWeighted(Protocol):
    """Models that expose importance weights log p(x, z_i) - log q(z_i | x), i = 1..k.

    ``log (1/k) Σ_i exp(w_i)`` is the IWAE bound and, as k grows, a consistent estimate of
    log p(x). Exposing the weights lets metrics split k into memory-sized chunks.
    """

    def log_importance_weights(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        """Log weights, shape (num_samples, B), in nats."""
        ...


@runtime_checkable
class LatentVariableModel(Protocol):
    """Models with a latent z: ``prior(c)`` = p(z), ``encode`` = q(z | x), ``decode`` = p(x | z)."""

    def prior(self, c: Tensor | None = None) -> Distribution: ...

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution: ...

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution: ...


@runtime_checkable
class EnergyBased(Protocol):
    def energy(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """Unnormalised energy E(x), shape (B,); p(x) ∝ exp(-E(x))."""
        ...


@runtime_checkable
class Completion(Protocol):
    """Models that draw the missing entries of partly observed examples (autoregressive models)."""

    def complete(
        self,
        x: Tensor,
        missing: Tensor,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """x (B, *event) with the entries where ``missing`` (bool, same shape) is True redrawn."""
        ...


@runtime_checkable
class WeightedLoss(Protocol):
    """Models whose loss has named weights that callbacks may schedule (KL warm-up sets ``"kl"``)."""

    def loss_weights(self) -> dict[str, float]:
        """The current value of every named weight, e.g. ``{"kl": 1.0}``."""
        ...

    def set_loss_weight(self, name: str, value: float) -> None:
        """Set weight ``name`` (one of :meth:`loss_weights`) to ``value`` for the next steps."""
        ...


@runtime_checkable
class SecondStage(Protocol):
    """Models with work after gradient training that needs the training data: fitting an
    auto-encoder's post-hoc latent density today; a VQ-VAE's prior or a latent diffusion later.
    :func:`simulacra.train.fit` runs it after the last step, so Python users and the CLI get the
    same model."""

    def second_stage(self, x: Tensor, c: Tensor | None = None) -> dict[str, float]:
        """Fit what follows training to the training split x (N, *event) (labels c (N,) or None);
        returns metrics to log (floats, may be empty)."""
        ...


@runtime_checkable
class Denoiser(Protocol):
    def predict(self, x_t: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor: ...


def require(model: object, capability: type, what: str, hint: str = "") -> None:
    """Raise :class:`CapabilityError` unless ``model`` has ``capability``.

    Example: ``require(model, ExactLikelihood, "an exact likelihood", "use --metric mmd")``.
    """
    if not isinstance(model, capability):
        name = getattr(model, "preset_name", type(model).__name__)
        raise CapabilityError(f"{name} has no {what}" + (f"; {hint}" if hint else ""))
