"""The registry of model presets, :data:`MODELS`, and :func:`build_model`, which resolves a spec.

The family modules (autoencoders, flows, autoregressive, diffusion) register their presets here;
:mod:`simulacra.models.zoo` imports them all and re-exports both names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from simulacra.data.info import DataInfo
from simulacra.models.base import GenerativeModel
from simulacra.registry import Registry

MODELS: Registry[Callable[..., GenerativeModel]] = Registry("model")


def build_model(spec: str | Mapping[str, Any], info: DataInfo) -> GenerativeModel:
    """Build the preset named by ``spec`` (``"vae"`` or ``{"name": "vae", "latent_dim": 8}``)
    for data described by ``info``. The resolved spec is kept as ``model.spec`` so that a
    checkpoint can rebuild the same architecture without unpickling code."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    model = MODELS.build(spec, info=info)
    model.preset_name = spec["name"]
    model.spec = spec
    return model
