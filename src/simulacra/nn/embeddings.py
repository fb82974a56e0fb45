"""Context embeddings: how labels (or other context) enter a network.

A conditional network computes ``f([x, e(c)])``: the embedding ``e(c)`` of the context is
concatenated to the input: to the feature axis of vectors (B, D), or as constant channels of
images (B, C, H, W) (the usual way to condition a convolutional network on a label). A
continuous context (features (B, C)) is usually standardized first (:class:`Standardization`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.data.transforms import standardization
from simulacra.errors import ConfigError, DataError, positive_int


class ContextEmbedding(nn.Module):
    """Labels (B,) in {0, ..., num_classes - 1} -> vectors (B, dim).

    ``e(c) = onehot(c)`` when ``dim`` is None (then ``out_features = num_classes``), else a learned
    table ``e(c) = E[c]`` with ``E ∈ R^{num_classes × dim}``.

    Args:
        num_classes: number of labels K.
        dim: embedding size, or None for one-hot vectors.
    """

    def __init__(self, num_classes: int, dim: int | None = None) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ConfigError(f"ContextEmbedding needs num_classes >= 1; found {num_classes}")
        self.num_classes = int(num_classes)
        self.table = None if dim is None else nn.Embedding(self.num_classes, int(dim))
        self.out_features = self.num_classes if dim is None else int(dim)

    def forward(self, c: Tensor) -> Tensor:
        """(B,) integer labels -> (B, out_features) float vectors."""
        if c.dim() != 1:
            raise DataError(f"labels must have shape (B,); found shape {tuple(c.shape)}")
        if c.is_floating_point():  # labels read from float arrays
            c = c.round()
        c = c.long()
        if self.table is not None:
            return self.table(c)
        return F.one_hot(c, self.num_classes).to(torch.get_default_dtype())


class ContextNet(nn.Module):
    """``y = net([x, e(c)])``: a network fed with its input and, optionally, an embedded context.

    Args:
        net: the network; its input size must include ``context.out_features`` (extra features
            for vectors, extra channels for images).
        context: a :class:`ContextEmbedding` (or any module (B,) -> (B, E)), or None.
        flatten: flatten the input to (B, D) first (MLPs); False keeps images (B, C, H, W)
            for convolutional networks.
    """

    def __init__(self, net: nn.Module, context: nn.Module | None = None, flatten: bool = True) -> None:
        super().__init__()
        self.net = net
        self.context = context
        self.flatten = flatten

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, ...) input and (B,) context -> net output (B, ...)."""
        h = x.flatten(1) if self.flatten else x
        if self.context is not None:
            if c is None:
                raise DataError(
                    "this network is conditional: it needs a context c of shape (B,) (labels); found None"
                )
            if c.shape[0] != h.shape[0]:
                raise DataError(f"context c has {c.shape[0]} rows; expected one per input row ({h.shape[0]})")
            e = self.context(c).to(h.dtype)  # (B, E)
            if h.dim() > 2:  # images: E constant channels
                e = e.reshape(*e.shape, *([1] * (h.dim() - 2))).expand(-1, -1, *h.shape[2:])
            h = torch.cat([h, e], dim=1)
        return self.net(h)


class Standardization(nn.Module):
    """Features (..., C) -> (x − m) / s, with m and s (C,) fixed buffers, not parameters.

    m and s start as 0 and 1 (the identity) and are set from training data by :meth:`fit`;
    they are saved with the weights, so a reloaded network standardizes as the trained one did.

    Args:
        features: C.
    """

    shift: Tensor
    scale: Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = positive_int(features, "features")
        self.register_buffer("shift", torch.zeros(self.features))
        self.register_buffer("scale", torch.ones(self.features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.features:
            raise DataError(
                f"expected values with {self.features} features, shape (..., {self.features}); "
                f"found shape {tuple(x.shape)}"
            )
        return (x - self.shift) / self.scale

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """m, s = mean and sample standard deviation (N − 1) of x (N, C); s = 1 where a feature is
        constant (or N = 1).

        Raises:
            DataError: x is not (N, C) with N ≥ 1, or holds NaN or inf.
        """
        if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] != self.features:
            raise DataError(f"expected (N, {self.features}) values to standardize; found {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise DataError("cannot standardize values with NaN or inf")
        mean, std = standardization(x, unbiased=True)
        self.shift.copy_(mean)
        self.scale.copy_(std)
