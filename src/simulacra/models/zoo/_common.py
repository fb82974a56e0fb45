"""Helpers shared by the preset families: argument checks and the label (context) embedding."""

from __future__ import annotations

from typing import Any

from torch import nn

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError
from simulacra.nn.embeddings import ContextEmbedding


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; found {value!r}")
    return value


def _context(info: DataInfo, conditional: bool, embedding_dim: int | None) -> ContextEmbedding | None:
    if not conditional:
        return None
    if info.num_classes is None:
        raise ConfigError(
            "a conditional model needs labelled data (DataInfo.num_classes); found num_classes=None"
        )
    return ContextEmbedding(info.num_classes, embedding_dim)


def _flow_context(
    info: DataInfo, conditional: bool, embedding_dim: int | None
) -> tuple[nn.Module | None, int]:
    context = _context(info, conditional, embedding_dim)
    return context, (0 if context is None else context.out_features)
