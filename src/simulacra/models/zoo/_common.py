"""Helpers shared by the preset families: the label (context) embedding."""

from __future__ import annotations

from torch import nn

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError
from simulacra.nn.embeddings import ContextEmbedding


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
