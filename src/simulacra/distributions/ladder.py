"""How a hierarchical VAE's posterior at one latent group is formed from its prior and the data.

At group i of a top-down hierarchy the prior p(z_i | z_{>i}) = N(μ_p, σ_p²) is known from the
top-down path; a network reads the bottom-up features of x (and, for NVAE, the top-down state)
and outputs raw parameters ``h`` (B, 2, *group_shape). A *merge* turns (h, μ_p, σ_p) into the
posterior q(z_i | x, z_{>i}) = N(μ_q, σ_q²). Two are in use:

* :class:`PrecisionWeighted` — the ladder VAE (Sønderby et al. 2016, eq. 17–19): h gives a
  bottom-up Gaussian N(μ̂, σ̂²), and q is the normalized product of it with the prior,
  σ_q⁻² = σ̂⁻² + σ_p⁻²,  μ_q = (μ̂ σ̂⁻² + μ_p σ_p⁻²) σ_q².
  For a linear-Gaussian model this product is the exact conditional posterior.
* :class:`RelativeToPrior` — NVAE (Vahdat & Kautz 2020, eq. 2): q = N(μ_p + Δμ, (σ_p · Δσ)²),
  so h = 0 gives the prior itself and KL(q ‖ p) depends on h only (not on μ_p, σ_p).

Every scale is softplus-bounded, ``softplus(s) + min_std`` (never ``exp``, which is where NaNs of
deep hierarchies start). Both merges are plain modules without parameters.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.distributions.standard import softplus_std

# softplus(SHIFT) = 1: RelativeToPrior's Δσ is 1 at h = 0
_SHIFT = math.log(math.e - 1.0)


def precision_weighted(
    loc_a: Tensor, scale_a: Tensor, loc_b: Tensor, scale_b: Tensor
) -> tuple[Tensor, Tensor]:
    """The normalized product N(μ_a, σ_a²) · N(μ_b, σ_b²) ∝ N(μ, σ²), elementwise:
    σ⁻² = σ_a⁻² + σ_b⁻², μ = (μ_a σ_a⁻² + μ_b σ_b⁻²) σ² (Sønderby et al. 2016, eq. 18–19).

    Returns:
        (μ, σ), broadcast shape of the inputs.
    """
    prec_a, prec_b = scale_a.pow(-2), scale_b.pow(-2)
    var = 1.0 / (prec_a + prec_b)
    return (loc_a * prec_a + loc_b * prec_b) * var, var.sqrt()


class PrecisionWeighted(nn.Module):
    """LVAE's merge: q = N(μ̂, σ̂²) ⊗ p, the precision-weighted product (see :func:`precision_weighted`),
    with μ̂ = h[:, 0], σ̂ = softplus(h[:, 1]) + min_std from the bottom-up features.

    Args:
        min_std: floor of σ̂.
    """

    reads_prior_state = False  # LVAE's bottom-up estimate sees only x

    def __init__(self, min_std: float = 1e-3) -> None:
        super().__init__()
        self.min_std = float(min_std)

    def forward(self, h: Tensor, prior_loc: Tensor, prior_scale: Tensor) -> tuple[Tensor, Tensor]:
        """h (B, 2, *shape), prior (B, *shape) each -> (μ_q, σ_q), (B, *shape) each."""
        return precision_weighted(h[:, 0], softplus_std(h[:, 1], self.min_std), prior_loc, prior_scale)


class RelativeToPrior(nn.Module):
    """NVAE's residual posterior: q = N(μ_p + Δμ, (σ_p Δσ)²) with Δμ = h[:, 0] and
    Δσ = softplus(h[:, 1] + log(e − 1)) + min_scale, so that h = 0 gives q = p (up to the floor).

    Then KL(q ‖ p) = Σ_d ½ (Δμ_d² / σ_p,d² + Δσ_d² − 1) − log Δσ_d: the network only has to learn
    how the posterior departs from the prior, which is what keeps deep hierarchies stable
    (Vahdat & Kautz 2020, §3.2).

    Args:
        min_scale: floor of Δσ.
    """

    reads_prior_state = True  # NVAE's posterior cell reads encoder and decoder features

    def __init__(self, min_scale: float = 1e-3) -> None:
        super().__init__()
        self.min_scale = float(min_scale)

    def forward(self, h: Tensor, prior_loc: Tensor, prior_scale: Tensor) -> tuple[Tensor, Tensor]:
        """h (B, 2, *shape), prior (B, *shape) each -> (μ_q, σ_q), (B, *shape) each."""
        ratio = F.softplus(h[:, 1] + _SHIFT) + self.min_scale
        return prior_loc + h[:, 0], prior_scale * ratio
