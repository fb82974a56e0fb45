"""Diffusion samplers as objects, and what they need of a model.

A sampler moves a draw from the prior along a decreasing time grid to data (see
:mod:`simulacra.samplers.diffusion` for the mathematics). As in diffusers' split of models and
schedulers, the stateless function that steps is wrapped by a small frozen dataclass that carries
the sampler's defaults and options: the grid it prefers (``steps`` points, ``spacing`` in time or
in log-SNR) and its own settings (DDIM's η, the corrector's signal-to-noise ratio, ...)::

    model.sample(64, sampler=DDIM(steps=50, eta=0.0))
    model.sample(64, sampler=DPMSolver())            # 20 steps on a log-SNR grid

``steps=None`` means the model's default (its ``default_steps``: T of a discrete-time model, or
its ``sample_steps``). Strings exist only at the edge: :func:`resolve_sampler` turns a CLI or
config name and its options into an object, once, through :data:`SAMPLERS`.

:class:`DiffusionSampling` is the capability a sampler needs of a model: the posterior mean x̂₀
(with guidance and clipping), the noise process, the maps between data space and model space,
the time grid and the model's defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError
from simulacra.processes.gaussian import Denoise
from simulacra.processes.schedules import NoiseSchedule
from simulacra.registry import Registry

SPACINGS = ("time", "log-snr")
"""How a grid is spaced: equal steps in t, or in λ(t) = log(α²/σ²)."""


def check_grid_size(steps: object) -> int:
    """``steps`` when it is an integer >= 2 (grid points), else a :class:`ConfigError`."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ConfigError(f"a sampler needs steps >= 2 (grid points, one evaluation each); found {steps!r}")
    return steps


def check_spacing(spacing: str) -> str:
    """``spacing`` when it is one of :data:`SPACINGS`, else a :class:`ConfigError`."""
    if spacing not in SPACINGS:
        raise ConfigError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    return spacing


@runtime_checkable
class DiffusionSampling(Protocol):
    """A diffusion model as samplers and inverse-problem solvers see it.

    Data x (``info``'s space) and model space y are related by ``to_model``/``from_model``
    (y = scale · x + shift: for [0, 1] data y = 2x − 1); everything between them happens in model space, where the
    process q(y_t | y) = N(α(t) y, σ(t)² I) runs and ``denoiser_fn`` estimates x̂₀ = E[y | y_t].
    """

    @property
    def info(self) -> DataInfo: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def process(self) -> NoiseSchedule:
        """The noise schedule α(t), σ(t) of the model."""
        ...

    @property
    def sampler(self) -> Sampler:
        """The sampler ``sample`` uses when given none."""
        ...

    @property
    def scale(self) -> float:
        """Model units per data unit: the slope of the affine data -> model map (2 for [0, 1] data)."""
        ...

    @property
    def default_steps(self) -> int:
        """Grid points of a sampler whose ``steps`` is None."""
        ...

    def denoiser_fn(
        self, c: Tensor | None = None, guidance: float | None = None, *, clip: bool = False
    ) -> Denoise:
        """x̂₀(y_t (B, *event), t (B,)) in model space, given context c (B,) and guidance scale;
        ``clip`` clamps x̂₀ to the data's range (sampling, never likelihoods)."""
        ...

    def time_grid(self, steps: int, spacing: str = "time") -> Tensor:
        """The decreasing grid (≤ steps,) from 1 to the model's t_min, float64."""
        ...

    def to_model(
        self, x: Tensor, generator: torch.Generator | None = None, *, dequantize: bool = True
    ) -> Tensor:
        """Data (B, *event) -> model space (dequantized inside its bins when ``dequantize``)."""
        ...

    def from_model(self, y: Tensor) -> Tensor:
        """Model space (B, *event) -> data, rounded to the data's levels for discrete data."""
        ...


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A diffusion sampler with its defaults: the grid it prefers and its options.

    Attributes:
        steps: grid points (one network evaluation each for a first-order sampler); None takes
            the model's ``default_steps``.
        spacing: ``time`` (equal steps in t) or ``log-snr`` (equal steps in λ = log α²/σ²).

    A subclass wraps one stateless sampling function of :mod:`simulacra.samplers.diffusion` or
    ``.ode`` (``function``) and adds that function's keyword options as fields, with their
    defaults; calling the object calls the function with them.
    """

    steps: int | None = None
    spacing: str = "time"

    name: ClassVar[str] = ""
    """The name it is registered under in :data:`SAMPLERS` (set by :func:`register`)."""
    function: ClassVar[Callable[..., Tensor]]
    """``function(denoise, process, x, times, *, generator, **options) -> x̂₀``."""

    def __post_init__(self) -> None:
        if self.steps is not None:
            check_grid_size(self.steps)
        check_spacing(self.spacing)

    def __call__(
        self,
        denoise: Denoise,
        process: NoiseSchedule,
        x: Tensor,
        times: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Move x (B, *event), a draw at times[0], along the decreasing grid ``times`` (N,) and
        return the denoised x̂₀ at times[-1], (B, *event), model space."""
        grid = ("steps", "spacing")
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in grid}
        return type(self).function(denoise, process, x, times, generator=generator, **options)

    def grid(self, model: DiffusionSampling) -> Tensor:
        """The model's time grid for this sampler: ``steps`` points (default the model's) at its spacing."""
        return model.time_grid(int(self.steps or model.default_steps), self.spacing)

    def run(
        self,
        model: DiffusionSampling,
        x: Tensor,
        *,
        times: Tensor | None = None,
        c: Tensor | None = None,
        guidance: float | None = None,
        clip: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample with ``model``'s denoiser and process from x (B, *event), model space, at
        times[0], along ``times`` (default :meth:`grid`); returns x̂₀ (B, *event), model space."""
        times = self.grid(model) if times is None else times
        denoise = model.denoiser_fn(c, guidance, clip=clip)
        return self(denoise, model.process, x, times, generator=generator)

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The names of the settings a sampler of this class takes."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` naming the first option this sampler does not take."""
        unknown = sorted(set(options) - set(cls.options()))
        if unknown:
            label = cls.name or cls.__name__
            raise ConfigError(
                f"sampler {label!r} has no option {unknown[0]!r}; its options: {', '.join(cls.options())}"
            )

    def with_options(self, **options: Any) -> Sampler:
        """A copy with some settings changed (e.g. ``steps=50``); unknown names raise ConfigError."""
        self.check_options(options)
        return dataclasses.replace(self, **options)


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")
"""CLI and config names of the diffusion samplers -> their classes."""


def register(name: str, description: str) -> Any:
    """Class decorator: register a :class:`Sampler` subclass in :data:`SAMPLERS` as ``name``."""

    def decorator(cls: type[Sampler]) -> type[Sampler]:
        cls.name = name
        return SAMPLERS.register(name, description)(cls)

    return decorator


def resolve_sampler(spec: str | Mapping[str, Any], **options: Any) -> Sampler:
    """The sampler named by ``spec`` (``"ddim"`` or ``{"name": "ddim", "eta": 0.5}``) with its
    options; options given as None keep the sampler's default. An unknown name lists the close
    matches, an unknown option the valid ones (both one-line errors)."""
    name, settings = SAMPLERS.split(spec)
    cls = SAMPLERS.get(name)
    settings.update({k: v for k, v in options.items() if v is not None})
    cls.check_options(settings)
    return cls(**settings)


def check_sampler(sampler: object) -> Sampler:
    """``sampler`` itself when it is a :class:`Sampler`, else a :class:`ConfigError` that says how to make one."""
    if not isinstance(sampler, Sampler):
        raise ConfigError(
            f"sampler must be a Sampler object such as DDIM(steps=50); found {sampler!r} "
            "(turn a name into one with simulacra.samplers.resolve_sampler)"
        )
    return sampler
