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


def build_model(spec: str | Mapping[str, Any], info: DataInfo) -> GenerativeModel:
    """Build the preset named by ``spec`` (``"vae"`` or ``{"name": "vae", "latent_dim": 8}``)
    for data described by ``info``. The resolved spec is kept as ``model.spec`` so that a
    checkpoint can rebuild the same architecture without unpickling code.

    Raises:
        UnknownNameError: no preset has that name.
        ConfigError: a setting the preset does not take or of the wrong type, or settings with
            which the model cannot be built for these data (a negative size, a size too large to
            allocate, heads that do not divide the width, ...): the message names them and the cause.
    """
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    try:
        model = MODELS.build(spec, info=info)
    except SimulacraError:
        raise
    except (TypeError, ValueError, ArithmeticError, RuntimeError, MemoryError) as err:
        # the settings and data came from the user; the factory's own complaint says which failed
        settings = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "name") or "its default settings"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"model {spec['name']!r} cannot be built with {settings} for data of shape "
            f"{tuple(info.event_shape)}: {reason}"
        ) from None
    model.preset_name = spec["name"]
    model.spec = spec
    return model
