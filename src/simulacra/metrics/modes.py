"""Mode coverage of samples from a mixture with known centres (the VEEGAN / PacGAN protocol).

Srivastava et al. (2017) and Lin et al. (2018) score a generator trained on an equal mixture of K
isotropic Gaussians N(μ_k, σ² I) (a ring of 8, a 5 × 5 grid of 25) by assigning every sample to
its nearest centre: a sample is of *high quality* when it lies within 3σ of that centre, and a
mode is *covered* when at least ``min_count`` high-quality samples fall on it (20 of 2,500 in
PacGAN's Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.errors import DataError


@dataclass(frozen=True)
class ModeCoverage:
    """Attributes:
    modes: modes covered, out of ``total``.
    total: K, the number of mixture components.
    high_quality: fraction of samples within 3σ of their nearest centre, in [0, 1].
    counts: high-quality samples per mode, (K,).
    """

    modes: int
    total: int
    high_quality: float
    counts: Tensor


def mode_coverage(samples: Tensor, centres: Tensor, std: float, min_count: int = 20) -> ModeCoverage:
    """Modes covered and the fraction of high-quality samples.

    Args:
        samples: (N, D) generated points.
        centres: (K, D) the mixture's means μ_k.
        std: σ of every component.
        min_count: high-quality samples a mode needs to count as covered.
    """
    if samples.dim() != 2 or centres.dim() != 2 or samples.shape[1] != centres.shape[1]:
        raise DataError(
            f"mode coverage needs samples (N, D) and centres (K, D); found {tuple(samples.shape)} "
            f"and {tuple(centres.shape)}"
        )
    d = torch.cdist(samples.double(), centres.double())  # (N, K)
    nearest, k = d.min(dim=1)
    good = nearest <= 3.0 * std
    counts = torch.bincount(k[good], minlength=centres.shape[0])
    return ModeCoverage(
        modes=int((counts >= min_count).sum()),
        total=centres.shape[0],
        high_quality=float(good.double().mean()) if samples.shape[0] else 0.0,
        counts=counts,
    )
