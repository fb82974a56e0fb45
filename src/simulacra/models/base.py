"""The interface every model speaks, and the capabilities that metrics, tasks and the CLI use.

Every model is a :class:`GenerativeModel`: ``loss`` for training, ``sample`` for generation.
What else a model can do is described by structural capabilities (``typing.Protocol``), so
code that needs a likelihood asks ``isinstance(model, ExactLikelihood)`` instead of checking a
class. Inheritance stops at ``GenerativeModel -> concrete model``.

What consumers read about a model (its preset name and spec, how its likelihood is to be
reported, the options its ``sample`` takes) is declared on :class:`GenerativeModel` with
defaults, never fetched with ``getattr``; :class:`LikelihoodReport` is that declaration as a
protocol, for the metrics. Diffusion sampling is the capability
:class:`~simulacra.samplers.base.DiffusionSampling`, defined beside the samplers that use it and
re-exported here.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from simulacra.data.degradations import Degradation
from simulacra.data.info import DataInfo
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.samplers.base import DiffusionSampling

T = TypeVar("T")


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
        grad_skip: skip the update (no optimizer step) when the group's gradient norm, before
            clipping, exceeds this value or is not finite (VDVAE, Child 2021); the
            fraction of skipped updates is logged as ``skipped``.
        updates: optimizer updates of the group per training step (e.g. 5 critic updates per
            generator update in WGAN-GP), in ``groups`` order.
        fresh_batch: each update after a step's first draws a new batch instead of reusing it.
    """

    lr: float | None = None
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    grad_skip: float | None = None
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

    The declarations below (preset name and spec, likelihood report, sampling options) are what
    metrics, tasks and the CLI read; a concrete model overrides the defaults that do not fit it.
    """

    groups: ClassVar[tuple[str, ...]] = ("main",)
    conditional: bool = False

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        self.info = info
        self.preset_name: str = type(self).__name__
        self.spec: dict[str, Any] | None = None

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
        """Draw ``n`` samples, shape (n, *event_shape). ``c``: (n,) labels or (n, ...) context.

        ``sample`` owns its gradient mode: the samples never carry an autograd graph, so callers
        do not wrap it in ``torch.no_grad``; a sampler that needs gradients (MCMC on an energy)
        turns them on inside. ``sampler_options`` are the names in :attr:`sample_options`."""

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each optimizer group (default: all parameters in ``"main"``)."""
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    # -- what the training loop asks of a model ------------------------------------------------

    def declare_training(
        self,
        settings: Mapping[str, GroupSettings] | None = None,
        train_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        """Declare how this model trains, in its ``__init__``: per-group update settings (what
        :meth:`optimizer_settings` returns; groups not named get the run's settings) and the
        training defaults :meth:`train_defaults` returns.

        Raises:
            ConfigError: a group the model does not have, or updates that are not an integer >= 1.
        """
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(self.groups))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} settings name group(s) {unknown}; it has {list(self.groups)}"
            )
        for group, s in settings.items():
            if isinstance(s.updates, bool) or not isinstance(s.updates, int) or s.updates < 1:
                raise ConfigError(f"updates of group {group!r} must be an integer >= 1; found {s.updates!r}")
        self._declared_settings = {g: settings.get(g, GroupSettings()) for g in self.groups}
        self._declared_train_defaults = dict(train_defaults or {})

    def optimizer_settings(self) -> dict[str, GroupSettings]:
        """The update settings of each group in :attr:`groups` (default: what
        :meth:`declare_training` declared, else the run's settings for every group, one update
        per step)."""
        declared = getattr(self, "_declared_settings", None)
        return dict(declared) if declared is not None else {group: GroupSettings() for group in self.groups}

    def train_defaults(self) -> dict[str, Any]:
        """Training settings (``TrainConfig`` fields) this model trains best with, applied beneath
        what the user sets (``--lr``, ``--set train.KEY=VALUE``, a config file) and recorded in the
        run: e.g. a GAN's smaller learning rate, Adam betas (0.5, 0.999), an EMA of the weights and
        no early stopping. Default: what :meth:`declare_training` declared, else none."""
        return dict(getattr(self, "_declared_train_defaults", {}))

    def check_training(self, batch_size: int) -> None:
        """Raise :class:`ConfigError` when the model cannot train on batches of ``batch_size``
        examples per process (a replay buffer of fewer chains than the batch, a GAN pack larger
        than it). The loop and ``simulacra train`` call it before anything is written. Default:
        any batch size will do."""

    # -- models trained on top of another run (a VQ-VAE's prior, LSGM's two-stage latent prior) --

    starts_from: str | None = None
    """What a second-stage model is trained on top of, in words for the CLI's message when it is
    missing (e.g. ``"a trained vqvae run"``); ``simulacra train PRESET --init RUN`` gives it. None:
    the model trains from scratch (the default), and ``--init`` is refused."""

    def initialize_from(self, trained: GenerativeModel) -> None:
        """Take this model's first stage from ``trained``, a model rebuilt from a finished run
        (``simulacra train PRESET --init RUN``): copy its weights into this model's copy of it.

        A preset whose model starts from another run takes the keyword ``stage_one``, the recorded
        spec of the first-stage model (``--init`` fills it from the run's config), so its own
        checkpoints rebuild the same architecture without the other run.

        Raises:
            ConfigError: the model trains from scratch (the default), or ``trained`` is not a model
                this one can start from (another preset, another architecture).
        """
        raise ConfigError(
            f"{self.preset_name} trains from scratch; it does not start from another run (drop --init)"
        )

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """What early stopping and "keep the best weights" minimise on held-out batches: a scalar
        (the batch mean) or one value per example (B,). Default: the loss of the first group,
        without gradients. The model owns the gradient mode (a score-matching loss needs them)."""
        with torch.no_grad():
            return self.loss(x, c, group=self.groups[0]).loss

    # -- declarations read by metrics, tasks and the CLI -------------------------------------
    # ``preset_name`` and ``spec`` are instance attributes set in ``__init__`` (the class name
    # and None), then by :func:`simulacra.models.zoo.build_model` (the preset's name and its
    # resolved spec, which a checkpoint stores to rebuild the architecture).

    loss_description: ClassVar[str] = "loss"
    """What ``loss`` is, with its unit, for plots (e.g. ``NLL (nats per example)``)."""

    sample_options: ClassVar[frozenset[str]] = frozenset()
    """The keyword options ``sample`` takes besides ``n``, ``c`` and ``generator`` (e.g.
    ``temperature`` for autoregressive models, ``sampler`` for diffusion models)."""

    bound_name: ClassVar[str] = "bound"
    """What ``log_prob_bound`` computes, for reports: ``ELBO`` (VAE family), ``VLB`` (diffusion)."""

    @property
    def discrete_likelihood(self) -> bool:
        """True when the likelihood assigns probabilities to discrete data (Bernoulli,
        categorical, a dequantization bound), so bits/dim take no dequantization offset.
        Default: binary data (modelled by Bernoulli likelihoods only)."""
        return self.info.support == "binary"

    @property
    def likelihood_estimator(self) -> str:
        """How ``log_prob`` is obtained, for reports (default ``exact``)."""
        return "exact"

    def prepare_likelihood(self) -> None:
        """Do the one-time work ``log_prob`` needs before its first call (an energy-based model's
        log Z), so that timing a few calls of ``log_prob`` predicts the cost of many. Default:
        nothing to do."""

    def fast_sample_options(self) -> dict[str, Any]:
        """Options for ``sample`` that draw faithfully but fast, for figures computed right after
        training (a diffusion model's few-step solver); {} when ``sample`` has nothing faster."""
        return {}

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        """How ``sample(**options)`` draws, in words for reports (e.g. ``dpm-solver, 20 steps``)."""
        if not options:
            return "the model's own sampling"
        return ", ".join(f"{k}={v}" for k, v in options.items())

    def support_bounds(self) -> tuple[float, float] | None:
        """(lower, upper) when every coordinate of a sample lies in that interval by construction
        (angles on the torus: [−π, π)); None for an unbounded support (the default)."""
        return None


def copy_weights(target: nn.Module, source: nn.Module, what: str) -> None:
    """Copy the weights of ``source`` into ``target`` (a first stage into a second-stage model:
    :meth:`GenerativeModel.initialize_from`), which must have the same architecture.

    Raises:
        ConfigError: names ``what`` and the first parameter that is missing, extra or of another
            shape, and says how to build the same architecture (the run's spec as ``stage_one``).
    """
    mine, theirs = target.state_dict(), source.state_dict()
    different = sorted(
        k
        for k in set(mine) | set(theirs)
        if k not in mine or k not in theirs or mine[k].shape != theirs[k].shape
    )
    if different:
        k = different[0]
        found = (
            "missing"
            if k not in theirs
            else "extra"
            if k not in mine
            else f"of shape {tuple(theirs[k].shape)}"
        )
        raise ConfigError(
            f"{what} has another architecture than the run's (first difference: {k!r}, {found} there); "
            "give the run's spec as stage_one"
        )
    with torch.no_grad():
        target.load_state_dict(theirs)


def check_context(model: GenerativeModel, c: Tensor | None, n: int) -> None:
    """Raise :class:`DataError` when a conditional model gets no context, or the wrong number of rows."""
    if not model.conditional:
        return
    if c is None:
        k = model.info.num_classes
        wanted = f"({n},) labels in [0, {k})" if k else f"({n}, ...) context"
        raise DataError(f"{model.preset_name} is conditional: it needs a context c, {wanted}; found None")
    if c.shape[0] != n:
        raise DataError(
            f"{model.preset_name}: expected a context c with {n} rows (one per example); found shape {tuple(c.shape)}"
        )


def check_batch(model: GenerativeModel, x: Tensor, c: Tensor | None = None) -> None:
    """Raise :class:`DataError` unless x is a batch (B, *event_shape) and c fits it (:func:`check_context`)."""
    if tuple(x.shape[1:]) != tuple(model.event_shape):
        raise DataError(
            f"expected a batch of shape (B, {', '.join(map(str, model.event_shape))}); found {tuple(x.shape)}"
        )
    check_context(model, c, x.shape[0])


@runtime_checkable
class LikelihoodReport(Protocol):
    """What a likelihood report reads to name its numbers; every :class:`GenerativeModel`
    declares it (with the defaults above)."""

    @property
    def info(self) -> DataInfo: ...

    @property
    def preset_name(self) -> str: ...

    @property
    def discrete_likelihood(self) -> bool: ...

    @property
    def likelihood_estimator(self) -> str: ...

    @property
    def bound_name(self) -> str: ...


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
class LatentHierarchy(Protocol):
    """Models with L groups of latents z_1 (nearest the data) … z_L, drawn top-down, whose
    importance weights can take the bottom ``skip`` groups from the conditional prior instead of
    the posterior: ``logsumexp − log k`` of them is the bound L^{>skip} (Havtorn et al. 2021),
    the likelihood of x explained by its higher latents only. Hierarchical VAEs."""

    @property
    def levels(self) -> int: ...

    def log_importance_weights(
        self,
        x: Tensor,
        c: Tensor | None = None,
        num_samples: int = 1,
        *,
        skip: int = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Log weights, shape (num_samples, B), in nats, the bottom ``skip`` groups from the prior."""
        ...


@runtime_checkable
class LatentVariableModel(Protocol):
    """Models with a latent z: ``prior(c)`` = p(z), ``encode`` = q(z | x), ``decode`` = p(x | z),
    whose event shape is the data's ``event_shape``."""

    @property
    def event_shape(self) -> tuple[int, ...]: ...

    def prior(self, c: Tensor | None = None) -> Distribution: ...

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution: ...

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution: ...


@runtime_checkable
class LatentGenerator(Protocol):
    """Models that map a latent code to data without an encoder (a GAN's generator):
    ``prior(c)`` = p(z) with batch shape (1,), ``decode_latent(z, c)`` = G(z, c) in the data's
    space and range, (n, *event_shape) for codes (n, *latent)."""

    def prior(self, c: Tensor | None = None) -> Distribution: ...

    def decode_latent(self, z: Tensor, c: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class EnergyBased(Protocol):
    def energy(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """Unnormalised energy E(x), shape (B,); p(x) ∝ exp(-E(x))."""
        ...


@runtime_checkable
class Completion(Protocol):
    """Models that draw the missing entries of partly observed examples (autoregressive models,
    the VAE family by sampling-importance-resampling)."""

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
class ImportanceImputation(Protocol):
    """Models that impute by importance sampling over a latent (the VAE family; MIWAE,
    Mattei & Frellsen 2019): the conditional mean E[x_miss | x_obs] by self-normalized importance
    sampling, and draws from p(x_miss | x_obs) by sampling-importance-resampling."""

    def impute(
        self,
        x: Tensor,
        missing: Tensor,
        c: Tensor | None = None,
        *,
        num_samples: int = 1000,
        multiple: int = 0,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``(completed (B, *event), draws (M, B, *event) or None)`` for x (B, *event) whose entries
        where ``missing`` (bool, x's shape) is True are unknown; observed entries kept bitwise."""
        ...


@runtime_checkable
class ImageTranslation(Protocol):
    """Models that map an observation y = P x of an image (a degradation, data space) to an image
    x̂ (pix2pix): they make their own observations, and translate given ones. ``degradation``
    is P (a :class:`~simulacra.data.degradations.Degradation`), which says which inverse problem
    the model solves."""

    @property
    def degradation(self) -> Degradation: ...

    def observe(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """y = P x (B, *event) for images x (B, *event), the degradation the model was trained on."""
        ...

    def translate(self, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """x̂ (B, *event), data space, for observations y (B, *event) made as :meth:`observe` does."""
        ...


@runtime_checkable
class DomainTranslation(Protocol):
    """Models that map images between two domains learnt without pairs (CycleGAN). The domains
    are label sets of the training data (two ``--data`` sources are labels 0 and 1); the model
    draws nothing of its own, so its "samples" are translations of given images."""

    @property
    def domain_names(self) -> tuple[str, str]:
        """(A, B): the names of the two domains."""
        ...

    def split(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """(a, b): the images of x (B, *event) in domain A and in domain B, by their labels c (B,)."""
        ...

    def translate(self, x: Tensor, direction: str = "a->b") -> Tensor:
        """Images x (B, *event) of one domain as images of the other (``"a->b"`` or ``"b->a"``),
        data space, (B, *event)."""
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


def model_name(model: object) -> str:
    """The preset name of a :class:`GenerativeModel`, else the class name (for messages)."""
    return model.preset_name if isinstance(model, GenerativeModel) else type(model).__name__


def require(model: object, capability: type[T], what: str, hint: str = "") -> T:
    """``model`` itself, typed as having ``capability``; :class:`CapabilityError` when it has not.

    Example: ``flow = require(model, ExactLikelihood, "exact likelihood", "use --metric mmd")``.
    """
    if not isinstance(model, capability):
        raise CapabilityError(f"{model_name(model)} has no {what}" + (f"; {hint}" if hint else ""))
    return model


__all__ = [
    "Completion",
    "Denoiser",
    "DiffusionSampling",
    "EnergyBased",
    "ExactLikelihood",
    "GenerativeModel",
    "ImageTranslation",
    "DomainTranslation",
    "ImportanceImputation",
    "ImportanceWeighted",
    "LatentHierarchy",
    "LatentVariableModel",
    "LikelihoodBound",
    "LikelihoodReport",
    "LossOutput",
    "check_batch",
    "check_context",
    "copy_weights",
    "model_name",
    "require",
]
