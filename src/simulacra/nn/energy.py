"""Energy networks: x (B, *event) [, labels (B,)] -> E(x) (B,), p(x) ∝ exp(−E(x)).

An energy network has the shape of a discriminator (a feature network φ and a scalar head), so
the vector and image energies of :class:`~simulacra.models.ebm.EBM` are
:class:`~simulacra.nn.adversarial.Discriminator` instances (MLP or strided-conv features with
Swish, optional spectral normalization, an optional class projection) built by the presets. This
module adds the one energy that is not a discriminator: JEM's.

:class:`ClassifierEnergy` (Grathwohl et al. 2020, "Your classifier is secretly an energy based
model"): a classifier with logits f(x) ∈ R^K defines the joint energy E(x, y) = −f(x)[y], so

    p(y | x) = softmax(f(x))[y]                       (the classifier, unchanged)
    E(x)     = −log Σ_y exp f(x)[y]                   (the marginal: p(x) = Σ_y p(x, y))

and one network classifies, samples and scores inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from simulacra.errors import DataError
from simulacra.nn.adversarial import apply_spectral_norm


class ClassifierEnergy(nn.Module):
    """JEM's energy: logits f(x) = W φ(x) + b (B, K); E(x) = −logsumexp f(x), E(x, y) = −f(x)[y].

    Args:
        features: φ, a module x (B, *event) -> (B, F).
        out_features: F.
        num_classes: K ≥ 2.
        spectral: spectral normalization of every linear and convolutional weight.
    """

    def __init__(
        self, features: nn.Module, out_features: int, num_classes: int, spectral: bool = False
    ) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise DataError(f"a classifier energy needs at least 2 classes; found {num_classes}")
        self.features = features
        self.head = nn.Linear(int(out_features), int(num_classes))
        self.num_classes = int(num_classes)
        self.spectral = bool(spectral)
        if spectral:
            apply_spectral_norm(self)

    def logits(self, x: Tensor) -> Tensor:
        """f(x): (B, *event) -> (B, K)."""
        return self.head(self.features(x))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """E(x) = −logsumexp f(x) (B,), or E(x, y) = −f(x)[y] for labels c (B,)."""
        f = self.logits(x)
        if c is None:
            return -torch.logsumexp(f, dim=-1)
        return -f.gather(1, c.long().reshape(-1, 1)).squeeze(1)


__all__ = ["ClassifierEnergy"]
