"""Input corruptions of denoising auto-encoders (Vincent et al. 2008, 2010).

A denoising auto-encoder reconstructs the clean x from a corrupted x̃ ~ C(x̃ | x):
``loss = −log p(x | z = f(x̃))``. Each corruption is a small module ``forward(x, generator=None)``
with no parameters; models apply it only in training mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.registry import Registry


def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def _check_probability(p: float, what: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"{what} needs a probability in [0, 1]; found {p}")
    return float(p)


class GaussianNoise(nn.Module):
    """Additive isotropic noise: ``x̃ = x + σ ε``, ε ~ N(0, I)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if float(std) < 0:
            raise ConfigError(f"GaussianNoise needs std >= 0; found {std}")
        self.std = float(std)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        return x + self.std * eps


class Masking(nn.Module):
    """Masking noise: each entry is set to 0 independently with probability p: ``x̃ = x ⊙ m``, m_d ~ Bern(1 − p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = _check_probability(p, "Masking")

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        keep = _uniform(x, generator) >= self.p
        return x * keep


class SaltAndPepper(nn.Module):
    """Salt-and-pepper noise: each entry is replaced with probability p by ``low`` or ``high``
    (each with probability 1/2); other entries are kept."""

    def __init__(self, p: float, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__()
        self.p = _check_probability(p, "SaltAndPepper")
        self.low, self.high = float(low), float(high)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = _uniform(x, generator)
        # u < p/2: pepper (low); p/2 <= u < p: salt (high); else keep x
        return torch.where(u < self.p / 2, self.low, torch.where(u < self.p, self.high, x))


CORRUPTIONS: Registry[Callable[[float], nn.Module]] = Registry("corruption")
CORRUPTIONS.register("gaussian", "additive Gaussian noise; level = σ")(GaussianNoise)
CORRUPTIONS.register("masking", "zero each entry with probability level")(Masking)
CORRUPTIONS.register("salt-and-pepper", "set each entry to 0 or 1 with probability level")(SaltAndPepper)
