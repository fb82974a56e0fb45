"""Permutations of coordinates (volume preserving, log|det| = 0), and normalization as a flow layer.

Between coupling or autoregressive layers a permutation lets every coordinate be transformed
and conditioned on in turn (RealNVP alternates masks; MAF reverses the order). The batch-norm
layer is the one of RealNVP §3.7 and MAF §3.4; :class:`Standardize` is a fixed normalization
by training statistics (a flow fitted to standardized data, scored on the original scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.flows.base import Transform
from simulacra.nn.embeddings import Standardization


class Permutation(Transform):
    """z = x[:, π] along the feature axis of vectors (B, D), or the channel axis of images."""

    def __init__(self, permutation: Sequence[int] | Tensor, event_dims: int = 1) -> None:
        super().__init__()
        perm = torch.as_tensor(permutation).long()
        if sorted(perm.tolist()) != list(range(perm.numel())):
            raise ConfigError(f"not a permutation of 0..{perm.numel() - 1}: {perm.tolist()}")
        self.event_dims = int(event_dims)
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    @classmethod
    def reverse(cls, features: int, event_dims: int = 1) -> Permutation:
        """The reversal D−1, …, 0 (MAF's choice between layers)."""
        return cls(torch.arange(features - 1, -1, -1), event_dims)

    @classmethod
    def random(cls, features: int, seed: int, event_dims: int = 1) -> Permutation:
        """A fixed random permutation drawn with ``seed`` (reproducible architecture)."""
        return cls(torch.randperm(features, generator=torch.Generator().manual_seed(seed)), event_dims)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.perm), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.index_select(1, self.inv), z.new_zeros(z.shape[0])


class BatchNorm(Transform):
    """z = (x − μ) / √(σ² + ε) · e^γ + β, with batch statistics in training and running ones in eval.

    log|det ∂z/∂x| = Σ_d [γ_d − ½ log(σ_d² + ε)] (per example, the same for the whole batch).
    The inverse always uses the running statistics (sampling happens in evaluation mode).
    Vectors (B, D) only.

    Args:
        features: D.
        momentum: weight of the newest batch in the running averages.
        eps: ε.
    """

    def __init__(self, features: int, momentum: float = 0.05, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and x.shape[0] > 1:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
            return mean, var
        return self.running_mean, self.running_var

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, var = self._stats(x)
        log_scale = self.log_gamma - 0.5 * torch.log(var + self.eps)
        z = (x - mean) * log_scale.exp() + self.beta
        return z, log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        x = (z - self.beta) * torch.exp(-log_scale) + self.running_mean
        return x, (-log_scale.sum()).expand(z.shape[0])


class Standardize(Transform):
    """z = (x − m) / s with fixed m, s (D,): log|det ∂z/∂x| = −Σ_d log s_d.

    A flow q̃ over standardized values with this layer in front is the density
    q(x) = q̃((x − m)/s) / Π_d s_d on the original scale. m and s are buffers (the identity
    until :meth:`fit` sets them from training data, or a checkpoint restores them). Vectors (B, D).

    Args:
        features: D.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.standardization = Standardization(features)

    def fit(self, x: Tensor) -> None:
        """m, s from training values x (N, D): see :meth:`Standardization.fit`."""
        self.standardization.fit(x)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        scale = self.standardization.scale
        return self.standardization(x), (-scale.log().sum()).expand(x.shape[0])

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = self.standardization
        return z * s.scale + s.shift, s.scale.log().sum().expand(z.shape[0])
