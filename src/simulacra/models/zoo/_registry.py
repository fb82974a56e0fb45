"""The registry of model presets, :data:`MODELS`, and :func:`build_model`, which resolves a spec.

The family modules (autoencoders, flows, autoregressive, diffusion) register their presets here;
:mod:`simulacra.models.zoo` imports them all and re-exports both names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, SimulacraError
from simulacra.models.base import GenerativeModel
from simulacra.registry import Registry

MODELS: Registry[Callable[..., GenerativeModel]] = Registry("model")

ACCELERATOR_IMAGE_DEFAULTS: dict[str, dict[str, Any]] = {}
"""Per preset, the settings it takes by default for images when it trains on an accelerator
(``--device cuda``): the bigger networks that a GPU trains at a useful rate and a 2-core CPU does
not (the signature's defaults are the CPU's). A spec's own settings win; the chosen ones are
recorded in the spec, so the run rebuilds the same network on any device."""


IMAGE_DEFAULTS: dict[str, dict[str, Any]] = {}
"""Per preset, the settings it takes by default for images on any device, where the best choice
for images is not the best for vectors (the ``gan`` preset's R1: it keeps a DCGAN from
collapsing on Stacked MNIST, BENCHMARKS §19, and costs a 2-D GAN modes). A spec's own settings
win; the chosen ones are recorded in the spec."""

IMAGE_DEFAULTS_YIELD_TO: dict[str, tuple[str, ...]] = {}
"""Per preset, settings that make its :data:`IMAGE_DEFAULTS` moot: when the spec gives one of
them, none of the image defaults applies (a ``gan`` given a gradient penalty takes no R1)."""


MISSING_DATA_PRESETS: set[str] = set()
"""The presets that train on data with missing entries (NaN): for them the data are loaded with
``missing="allow"``; every other preset gets data in which a NaN is refused at load time."""


PREVIOUS_DEFAULTS: dict[str, dict[str, Any]] = {}
"""Per preset, the defaults that have since changed, as they were: a run recorded before its spec
held every setting (runs before 2026-12-06 kept only the settings the user gave) rebuilds the
network it trained with them (:func:`recorded_spec`)."""


def recorded_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of a run on disk as its model was built: a complete spec as it is, an older one
    (the user's settings only) with the :data:`PREVIOUS_DEFAULTS` of its preset filled in."""
    spec = dict(spec)
    name = spec.get("name")
    return {"name": name, **PREVIOUS_DEFAULTS.get(name, {}), **spec} if isinstance(name, str) else spec


def _complete(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (name first) with every setting of its preset, the defaults written out (tuples as lists): the
    run records the network it trains, so a later change of a default cannot change it."""
    import inspect

    name = spec["name"]
    if not isinstance(name, str) or name not in MODELS:
        return spec  # the registry names the problem
    defaults = {
        key: value
        for key, value in MODELS.settings(name, skip=("info",)).items()
        if value is not inspect.Parameter.empty
    }
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in {"name": name, **defaults, **spec}.items()
    }


def build_model(
    spec: str | Mapping[str, Any], info: DataInfo, *, accelerator: bool = False
) -> GenerativeModel:
    """Build the preset named by ``spec`` (``"vae"`` or ``{"name": "vae", "latent_dim": 8}``)
    for data described by ``info``. The resolved spec is kept as ``model.spec`` so that a
    checkpoint can rebuild the same architecture without unpickling code. ``accelerator``: the
    model will train on a GPU; images then get the preset's :data:`ACCELERATOR_IMAGE_DEFAULTS`
    (on top of its :data:`IMAGE_DEFAULTS`, which images get on any device).

    Raises:
        UnknownNameError: no preset has that name.
        ConfigError: a setting the preset does not take or of the wrong type, or settings with
            which the model cannot be built for these data (a negative size, a size too large to
            allocate, heads that do not divide the width, ...): the message names them and the cause.
    """
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if info.is_image and isinstance(spec.get("name"), str):
        name = spec["name"]
        moot = any(key in spec for key in IMAGE_DEFAULTS_YIELD_TO.get(name, ()))
        extra = {} if moot else {**IMAGE_DEFAULTS.get(name, {})}
        if accelerator:
            extra.update(ACCELERATOR_IMAGE_DEFAULTS.get(name, {}))
        spec = {"name": name, **extra, **spec}
    given = spec
    if "name" in spec:
        spec = _complete(spec)
    try:
        model = MODELS.build(spec, info=info)
    except SimulacraError:
        raise
    except (TypeError, ValueError, ArithmeticError, RuntimeError, MemoryError) as err:
        # the settings and data came from the user; the factory's own complaint says which failed
        settings = ", ".join(f"{k}={v!r}" for k, v in given.items() if k != "name") or "its default settings"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"model {spec['name']!r} cannot be built with {settings} for data of shape "
            f"{tuple(info.event_shape)}: {reason}"
        ) from None
    model.preset_name = spec["name"]
    model.spec = spec
    return model
