"""Callbacks: what happens around the training loop without living in it.

A callback is any object with some of the hooks ``on_fit_start(state)``, ``on_step_end(state)``,
``on_checkpoint(state)`` and ``on_fit_end(state)`` (subclass :class:`Callback` for no-op
defaults). ``state`` is the :class:`TrainState`: ``state.step`` counts *completed* steps, so
``on_step_end`` sees 1, 2, ..., ``total_steps``. A callback that must survive a resume has a
``state_key`` and ``state_dict() -> {name: Tensor}`` / ``load_state_dict(...)``; fit saves that
state as ``<state_key>.safetensors`` in every checkpoint and restores it after ``on_fit_start``.

Callbacks act on a model only through what it declares: a loss-weight schedule (KL warm-up) sets
a named weight of a :class:`~simulacra.models.base.WeightedLoss` model, never an attribute it
guesses. Family-specific callbacks are named in a run's ``[callbacks]`` section and built by
:data:`CALLBACKS`; the generic ones (EMA, sample grids) come from the training config.

Callbacks are stateless given the step where they can be (warm-ups), so a resumed run is exact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from simulacra.config import TrainConfig
from simulacra.data.info import Split
from simulacra.errors import CheckpointError, ConfigError
from simulacra.models.base import (
    DomainTranslation,
    GenerativeModel,
    ImageTranslation,
    LatentVariableModel,
    WeightedLoss,
    local_buffer_names,
)
from simulacra.registry import Registry
from simulacra.seeding import rng_devices
from simulacra.train.distributed import all_reduce_max


@dataclass
class TrainState:
    """What callbacks see of the run.

    Attributes:
        step: completed training steps (0 before the first step).
        total_steps: the run's length in steps.
        model: the model being trained (never the DDP wrapper).
        config: the training settings.
        run_dir: the run directory, or None when nothing is written.
        is_main: True on the process that writes files (rank 0).
        steps_per_epoch: steps in one pass over the training split.
        metrics: the most recently logged metrics (floats), e.g. ``{"loss": ...}``.
        valid_loss: the most recent validation score (``model.validation_score``), if any.
        stop_requested: a callback sets it to end training after the current step (the final
            checkpoint and model are written as usual). Under DDP every rank must set it at the
            same step (see :class:`TimeBudget`).
        interrupted: the signal that interrupted the run (set with ``stop_requested`` by
            :class:`~simulacra.train.interrupts.GracefulInterrupt`): the run ends with a checkpoint
            and its current weights, without the best weights or the second stage, to be resumed.
    """

    step: int
    total_steps: int
    model: GenerativeModel
    config: TrainConfig
    run_dir: Path | None
    is_main: bool
    steps_per_epoch: float = 1.0
    metrics: dict[str, float] = field(default_factory=dict)
    valid_loss: float | None = None
    stop_requested: bool = False
    interrupted: int | None = None

    @property
    def epoch(self) -> float:
        """Completed epochs (fractional)."""
        return self.step / self.steps_per_epoch


@runtime_checkable
class CallbackProtocol(Protocol):
    """The hooks fit calls; every one is optional on a concrete callback."""

    def on_fit_start(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_checkpoint(self, state: TrainState) -> None: ...

    def on_fit_end(self, state: TrainState) -> None: ...


class Callback:
    """Base class with no-op hooks."""

    def on_fit_start(self, state: TrainState) -> None:
        """Called once after the model, optimizers and (on resume) weights are ready."""

    def on_step_end(self, state: TrainState) -> None:
        """Called after every step, once ``state.step`` has been incremented."""

    def on_checkpoint(self, state: TrainState) -> None:
        """Called after a resumable checkpoint has been written (rank 0, with a run directory)."""

    def on_fit_end(self, state: TrainState) -> None:
        """Called once after the final checkpoint and model are written."""


class EMA(Callback):
    """Exponential moving average of the parameters and floating-point buffers.

        θ̄_1 = θ_1,   θ̄_t = d θ̄_{t-1} + (1 - d) θ_t   after every later step t

    (Polyak & Juditsky 1992; used for sampling by most diffusion and GAN work). The average starts
    at the weights after the first step, not before it, so that data-dependent initialisation done
    by the first batch (ActNorm in Glow) is not averaged against the untrained values. Integer buffers
    (counters) are copied. Buffers the model marks as local to a process
    (:func:`~simulacra.models.base.mark_local`: MCMC chains, usage counts) are left out: swapping
    in the average leaves them as they are. The shadow is saved as ``ema.safetensors`` in
    checkpoints and next to the final model; evaluate or sample with it inside
    :meth:`average_weights`.

    Args:
        decay: d in [0, 1).
    """

    state_key = "ema"

    def __init__(self, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.shadow: dict[str, Tensor] | None = None
        self._model: GenerativeModel | None = None
        self._local: frozenset[str] = frozenset()
        self._swapped = False
        self._fresh = True

    def attach(self, model: GenerativeModel) -> None:
        """Start the average at the model's current weights."""
        self._model = model
        self._local = local_buffer_names(model)
        self.shadow = {k: v.detach().clone() for k, v in self._averaged(model).items()}
        self._swapped = False
        self._fresh = True  # the first update copies θ_1

    def on_fit_start(self, state: TrainState) -> None:
        self.attach(state.model)

    def on_step_end(self, state: TrainState) -> None:
        self.update()

    @torch.no_grad()
    def update(self) -> None:
        """One step of the recursion, from the model's current weights."""
        model, shadow = self._require()
        if self._swapped:
            raise RuntimeError("EMA.update() while the averaged weights are swapped in; swap back first")
        fresh, self._fresh = self._fresh, False
        for key, value in self._averaged(model).items():
            avg = shadow[key]
            if avg.is_floating_point() and not fresh:
                avg.mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                avg.copy_(value)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights with the averaged ones (call again to swap back)."""
        model, shadow = self._require()
        for key, value in self._averaged(model).items():
            saved = value.detach().clone()
            value.copy_(shadow[key])
            shadow[key].copy_(saved)
        self._swapped = not self._swapped

    @contextlib.contextmanager
    def average_weights(self) -> Iterator[GenerativeModel]:
        """``with ema.average_weights() as model:`` evaluate/sample with θ̄; θ is restored after."""
        model, _ = self._require()
        self.swap()
        try:
            yield model
        finally:
            self.swap()

    def _averaged(self, model: GenerativeModel) -> dict[str, Tensor]:
        """The model's state without its local buffers."""
        return {k: v for k, v in model.state_dict().items() if k not in self._local}

    def averaged_state(self) -> dict[str, Tensor]:
        """θ̄ as a ``state_dict`` (whatever is currently swapped in); local buffers hold the
        model's current values."""
        model, shadow = self._require()
        current = dict(model.state_dict())
        return current if self._swapped else {**current, **shadow}

    def state_dict(self) -> dict[str, Tensor]:
        """θ̄ as a complete ``state_dict`` (local buffers at their current values), so that the
        saved average loads as a model's weights."""
        return self.averaged_state()

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore θ̄ (from a checkpoint); keys and shapes must match the model."""
        _, shadow = self._require()
        state = {k: v for k, v in state.items() if k not in self._local}
        if set(state) != set(shadow):
            missing = sorted(set(shadow) ^ set(state))
            raise CheckpointError(f"EMA state does not match the model: key {missing[0]!r} differs")
        with torch.no_grad():
            for key, value in state.items():
                if value.shape != shadow[key].shape:
                    raise CheckpointError(
                        f"EMA state does not match the model: {key!r} has shape {tuple(value.shape)} "
                        f"in the file but {tuple(shadow[key].shape)} in the model"
                    )
                shadow[key].copy_(value)
        self._fresh = False

    def _require(self) -> tuple[GenerativeModel, dict[str, Tensor]]:
        if self._model is None or self.shadow is None:
            raise RuntimeError("EMA is not attached to a model; call attach(model) or pass it to fit")
        return self._model, self.shadow


class LossWeightWarmup(Callback):
    """Linear warm-up of a named loss weight: w_t = w · min(1, t / steps).

    Acts on a :class:`~simulacra.models.base.WeightedLoss` model through
    ``set_loss_weight(weight, w_t)`` before every step t (t = completed steps, so the first step
    uses 0). The target w is the weight's value at fit start. KL warm-up (Bowman et al. 2016;
    Sønderby et al. 2016) is ``LossWeightWarmup("kl", steps)`` (:func:`KLWarmup`). Stateless given
    the step, so a resumed run is exact.

    Args:
        weight: the name of the weight, one of the model's ``loss_weights()``.
        steps: length of the warm-up, >= 1.
    """

    def __init__(self, weight: str, steps: int) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"a warm-up of {weight!r} needs an integer steps >= 1, got {steps!r}")
        self.weight = str(weight)
        self.steps = int(steps)
        self.target: float | None = None

    def value_at(self, step: int) -> float:
        """The weight used by the step after ``step`` completed steps."""
        if self.target is None:
            raise RuntimeError(f"the warm-up of {self.weight!r} has no target yet; it is set at fit start")
        return self.target * min(1.0, step / self.steps)

    def on_fit_start(self, state: TrainState) -> None:
        model = state.model
        weights = model.loss_weights() if isinstance(model, WeightedLoss) else {}
        if self.weight not in weights:
            name = model.preset_name
            has = f"its weights are {sorted(weights)}" if weights else "it declares no loss weights"
            raise ConfigError(
                f"a warm-up of the loss weight {self.weight!r} needs a model with that weight, but {name} "
                f"lacks it ({has}); drop the callback"
            )
        if self.target is None:
            self.target = float(weights[self.weight])
        self._apply(state)

    def on_step_end(self, state: TrainState) -> None:
        self._apply(state)

    def _apply(self, state: TrainState) -> None:
        model = state.model
        assert isinstance(model, WeightedLoss)
        model.set_loss_weight(self.weight, self.value_at(state.step))


def KLWarmup(steps: int) -> LossWeightWarmup:  # noqa: N802 (a named preset of the warm-up)
    """KL warm-up over ``steps`` steps: β_t = β · min(1, t / steps) on the ``"kl"`` weight."""
    return LossWeightWarmup("kl", steps)


SampleWriter = Callable[[Tensor, Path], None]


class SampleEvery(Callback):
    """Every ``every`` steps, draw ``n`` samples with a fixed generator and hand them to ``writer``.

    ``writer(samples, path)`` receives (n, *event_shape) CPU samples and
    ``run_dir/"samples"/f"step-{step:07d}.png"``; it is supplied by the caller (e.g. an image-grid
    writer from :mod:`simulacra.viz`), so training does not depend on pictures. Sampling runs in
    eval mode, without gradients, inside ``torch.random.fork_rng``: it does not perturb training.
    Conditional models get the labels the training data have, in turn (``0, 1, ..., 0, 1, ...``);
    an image-translation model (pix2pix) translates the observations of ``examples``, a
    domain-translation model (CycleGAN) translates each example to the other domain.

    Args:
        every: period in steps (>= 1).
        writer: ``(samples, path) -> None``.
        n: number of samples.
        seed: seed of the fixed generator (the same noise every time, so grids are comparable).
        ema: when given, sample with the averaged weights.
        examples: held-out images (m, *event) with their labels, which a translation model
            translates (the first n are used).
    """

    def __init__(
        self,
        every: int,
        writer: SampleWriter,
        n: int = 64,
        seed: int = 0,
        ema: EMA | None = None,
        examples: Split | None = None,
    ) -> None:
        if every < 1:
            raise ConfigError(f"sample_every must be >= 1, got {every}")
        self.every, self.writer, self.n, self.seed, self.ema = int(every), writer, int(n), int(seed), ema
        self.examples = (
            None
            if examples is None
            else Split(examples.x[: self.n], None if examples.y is None else examples.y[: self.n])
        )

    def on_step_end(self, state: TrainState) -> None:
        if state.is_main and state.run_dir is not None and state.step % self.every == 0:
            path = Path(state.run_dir) / "samples" / f"step-{state.step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer(self.draw(state.model), path)

    def draw(self, model: GenerativeModel) -> Tensor:
        """The samples, (n, *event_shape), on CPU."""
        was_training = model.training
        device = model.device
        model.eval()
        try:
            swap = self.ema.average_weights() if self.ema is not None else contextlib.nullcontext()
            with torch.random.fork_rng(devices=rng_devices(model.device)), swap:
                generator = torch.Generator(device=device).manual_seed(self.seed)
                c, n = None, self.n
                translates = isinstance(model, ImageTranslation | DomainTranslation)
                if translates and self.examples is None:
                    raise ConfigError(
                        f"{model.preset_name} samples by translating: SampleEvery needs examples"
                    )
                if isinstance(model, DomainTranslation):  # each example to the other domain
                    assert self.examples is not None
                    part = self.examples.to(device)
                    a, b = model.split(part.x, part.y)
                    return torch.cat([model.translate(a, "a->b"), model.translate(b, "b->a")]).cpu()
                if isinstance(model, ImageTranslation):  # translations of the examples' observations
                    assert self.examples is not None
                    c = model.observe(self.examples.x.to(device))
                    n = c.shape[0]
                elif model.conditional:  # the labels the training data have, in turn
                    present = torch.tensor(model.info.present_labels or [0], device=device)
                    c = present[torch.arange(self.n, device=device) % len(present)]
                samples = model.sample(n, c, generator=generator)
        finally:
            model.train(was_training)
        return samples.detach().cpu()


class TensorBoard(Callback):
    """TensorBoard events in ``run_dir/tensorboard`` (rank 0), through ``torch.utils.tensorboard``:
    at every logged step the scalars of ``metrics.jsonl`` and the validation score, and for a
    latent-variable model a histogram of the posterior means of held-out ``examples``; every
    ``sample_every`` steps the sample grid of :class:`SampleEvery` (images only). A resumed run
    drops the events after its checkpoint (``purge_step``), so the curves show one history.

    Raises:
        ConfigError: the ``tensorboard`` package is not installed.
    """

    def __init__(
        self, log_every: int, sampler: SampleEvery | None = None, examples: Split | None = None
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise ConfigError(
                "train.tensorboard needs the tensorboard package: pip install 'simulacra[tensorboard]'"
            ) from None
        self.log_every, self.sampler = int(log_every), sampler
        self.examples = (
            None
            if examples is None
            else Split(examples.x[:64], None if examples.y is None else examples.y[:64])
        )
        self.writer: Any = None
        self._valid: float | None = None

    def on_fit_start(self, state: TrainState) -> None:
        if state.is_main and state.run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            folder = Path(state.run_dir) / "tensorboard"
            self.writer = SummaryWriter(str(folder), purge_step=state.step + 1 if state.step > 0 else None)

    def on_step_end(self, state: TrainState) -> None:
        if self.writer is None:
            return
        step = state.step
        if step % self.log_every == 0 or step == state.total_steps:
            for key, value in state.metrics.items():
                self.writer.add_scalar(key, value, step)
            if state.valid_loss is not None and state.valid_loss != self._valid:
                self._valid = state.valid_loss
                self.writer.add_scalar("valid/score", state.valid_loss, step)
            self._latent_histograms(state.model, step)
        sampler = self.sampler
        if sampler is not None and step % sampler.every == 0 and state.model.info.is_image:
            images = sampler.draw(state.model).float().clamp(0, 1)
            self.writer.add_images("samples", images.reshape(-1, *state.model.info.event_shape), step)

    def _latent_histograms(self, model: GenerativeModel, step: int) -> None:
        if self.examples is None or not isinstance(model, LatentVariableModel):
            return
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                x = self.examples.x.to(model.device)
                c = (
                    self.examples.y.to(model.device)
                    if model.conditional and self.examples.y is not None
                    else None
                )
                posterior = model.encode(x, c)
                codes = posterior.mean if hasattr(posterior, "mean") else posterior.sample()
        except (NotImplementedError, RuntimeError):  # a posterior without a mean
            return
        finally:
            model.train(was_training)
        self.writer.add_histogram("latent/posterior_mean", codes.float().cpu(), step)

    def on_fit_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def builtin_callbacks(
    config: TrainConfig, sample_writer: SampleWriter | None = None, examples: Split | None = None
) -> list[Any]:
    """The generic callbacks ``config`` asks for: EMA, sample-every (in that order); ``examples``
    (held-out images and labels) are what sample-every shows a translation model.

    Raises:
        ConfigError: ``sample_every`` without a writer.
    """
    out: list[Any] = []
    ema = EMA(config.ema_decay) if config.ema_decay is not None else None
    if ema is not None:
        out.append(ema)
    if config.sample_every:
        if sample_writer is None:
            raise ConfigError(
                f"train.sample_every={config.sample_every} needs a sample writer: "
                "fit(..., sample_writer=lambda samples, path: ...)"
            )
        out.append(SampleEvery(config.sample_every, sample_writer, ema=ema, examples=examples))
    if config.tensorboard:
        sampler = (
            SampleEvery(config.sample_every, lambda x, path: None, ema=ema, examples=examples)
            if config.sample_every
            else None
        )
        out.append(TensorBoard(config.log_every, sampler, examples))
    return out


class TimeBudget(Callback):
    """Stop training once ``seconds`` of wall time have passed since the fit started.

    The clock is read every ``check_every`` steps; under DDP the ranks agree on the decision
    (the largest elapsed time wins), so they all stop at the same step.
    """

    def __init__(
        self, seconds: float, check_every: int = 20, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        if seconds <= 0:
            raise ConfigError(f"TimeBudget needs a positive number of seconds, got {seconds}")
        self.seconds = float(seconds)
        self.check_every = max(1, int(check_every))
        self.clock = clock
        self._start = 0.0

    def on_fit_start(self, state: TrainState) -> None:
        self._start = self.clock()

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.check_every:
            return
        if all_reduce_max(self.clock() - self._start) >= self.seconds:
            state.stop_requested = True


CALLBACKS: Registry[Callable[..., Any]] = Registry("callback")
"""Callbacks a run's ``[callbacks]`` section may name, with their settings as keyword arguments."""
CALLBACKS.register("kl-warmup", "linear warm-up of the KL weight β over `steps` steps")(KLWarmup)
CALLBACKS.register("loss-weight-warmup", "linear warm-up of the loss weight `weight` over `steps` steps")(
    LossWeightWarmup
)
CALLBACKS.register("time-budget", "stop training after `seconds` of wall time")(TimeBudget)


def build_callbacks(specs: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    """Callbacks from a run's ``[callbacks]`` section, ``{name: {setting: value}}``, in its order.

    Raises:
        UnknownNameError: a name :data:`CALLBACKS` lacks; ConfigError: a setting it does not take.
    """
    return [CALLBACKS.build({"name": name, **dict(settings)}) for name, settings in specs.items()]
