"""Calibration statistics of posterior estimates: SBC rank uniformity and expected coverage.

* simulation-based calibration (Talts et al. 2018, "Validating Bayesian inference algorithms
  with simulation-based calibration"): for θ* ~ p(θ), x ~ p(x | θ*) and θ_1..θ_L ~ q(θ | x), the
  rank r_d = #{l : θ_l,d < θ*_d} is uniform on {0, …, L} for every d when q = p(θ | x); Pearson's
  χ² on binned ranks tests it (:func:`sbc_statistics`);
* expected coverage of highest-density regions (Hermans et al. 2022, "A trust crisis in
  simulation-based inference?"): with α = P_q(log q(θ) > log q(θ* | x)), θ* lies in q's 100c %
  HPD region iff α < c, so coverage(c) = P(α < c) = c when q is calibrated (:func:`hpd_coverage`).

These functions take the ranks and the α's; drawing the trials and the posterior samples is
:mod:`simulacra.tasks.calibration`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from simulacra.errors import ConfigError


def chi2_uniform_test(counts: Tensor, probs: Tensor) -> tuple[float, float]:
    """Pearson's χ² = Σ_b (n_b − N π_b)² / (N π_b) against cell probabilities π, and its p-value
    P(χ²_{B−1} ≥ χ²) = Q((B − 1)/2, χ²/2) (regularised upper incomplete gamma)."""
    counts = counts.double()
    expected = counts.sum() * probs.double()
    stat = float(((counts - expected).square() / expected).sum())
    dof = counts.numel() - 1
    p = float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), torch.tensor(stat / 2.0)))
    return stat, p


def bin_ranks(ranks: Tensor, num_samples: int, bins: int) -> Tensor:
    """(B,) counts of ranks r ∈ {0..L} in B bins, the bin of r being ⌊r B / (L + 1)⌋."""
    return torch.bincount(ranks.long() * bins // (num_samples + 1), minlength=bins)


def rank_bin_probabilities(num_samples: int, bins: int) -> Tensor:
    """(B,) probability of each rank bin under the uniform law on {0..L}: #{r : ⌊r B/(L+1)⌋ = b} / (L + 1)
    (exact, also when B does not divide L + 1)."""
    values = torch.arange(num_samples + 1)
    return torch.bincount(values * bins // (num_samples + 1), minlength=bins).double() / (num_samples + 1)


@dataclass
class SBCResult:
    """Simulation-based calibration ranks and their uniformity tests.

    Attributes:
        ranks: (T, D_θ) ranks in {0, …, L}, one row per trial.
        num_posterior_samples: L.
        bins: the number of rank bins B of the χ² test.
        statistics: (D_θ,) χ² statistics with B − 1 degrees of freedom.
        p_values: (D_θ,) p-values of H₀: ranks uniform on {0, …, L}.
    """

    ranks: Tensor
    num_posterior_samples: int
    bins: int
    statistics: Tensor
    p_values: Tensor

    def histogram(self) -> Tensor:
        """(D_θ, B) counts of the binned ranks."""
        return torch.stack([bin_ranks(r, self.num_posterior_samples, self.bins) for r in self.ranks.T])


def sbc_statistics(ranks: Tensor, num_posterior_samples: int, bins: int | None = None) -> SBCResult:
    """χ² tests of rank uniformity, one per θ coordinate (Talts et al. 2018, §4.1).

    Args:
        ranks: (T, D_θ) ranks r_t,d = #{l : θ_t,l,d < θ*_t,d} in {0, …, L}.
        num_posterior_samples: L.
        bins: B (default min(L + 1, 20, max(2, T // 5)), so each bin expects ≥ 5 ranks).

    Returns:
        An :class:`SBCResult`.

    Raises:
        ConfigError: B is not an integer in [2, L + 1].
    """
    num_trials, dims = ranks.shape
    L = num_posterior_samples
    b = bins if bins is not None else min(L + 1, 20, max(2, num_trials // 5))
    if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= L + 1:
        raise ConfigError(f"bins must be an integer in [2, L + 1 = {L + 1}]; found {b!r}")
    probs = rank_bin_probabilities(L, b)
    tests = [chi2_uniform_test(bin_ranks(ranks[:, d], L, b), probs) for d in range(dims)]
    return SBCResult(
        ranks, L, b, torch.tensor([stat for stat, _ in tests]), torch.tensor([p for _, p in tests])
    )


@dataclass
class CoverageResult:
    """Expected coverage of highest-density credible regions.

    Attributes:
        levels: (K,) credibility levels c.
        coverage: (K,) empirical P(θ* ∈ HPD_c), ≈ c when q is calibrated; below c: overconfident.
        stderr: (K,) binomial standard errors √(coverage (1 − coverage) / T).
        alphas: (T,) per trial, the share of posterior draws denser than θ*: θ* ∈ HPD_c ⇔ α < c.
    """

    levels: Tensor
    coverage: Tensor
    stderr: Tensor
    alphas: Tensor = field(repr=False)

    @property
    def max_error(self) -> float:
        """max_c |coverage(c) − c|."""
        return float((self.coverage - self.levels).abs().max())


def coverage_levels(levels: Sequence[float]) -> Tensor:
    """``levels`` as a (K,) float64 tensor, checked to be numbers in (0, 1).

    Raises:
        ConfigError: an empty list, or a level outside (0, 1).
    """
    lv = torch.as_tensor(list(levels), dtype=torch.float64)
    if lv.dim() != 1 or lv.numel() == 0 or not bool(((lv > 0) & (lv < 1)).all()):
        raise ConfigError(f"coverage levels must be numbers in (0, 1); found {list(levels)}")
    return lv


def hpd_coverage(alphas: Tensor, levels: Tensor) -> CoverageResult:
    """coverage(c) = (1/T) #{t : α_t < c} with binomial standard errors (Hermans et al. 2022, eq. 3).

    Args:
        alphas: (T,) α_t, the mass of the smallest HPD region of q that contains θ*_t.
        levels: (K,) credibility levels c (see :func:`coverage_levels`).
    """
    coverage = (alphas[None] < levels[:, None]).double().mean(1)
    stderr = (coverage * (1 - coverage) / alphas.shape[0]).sqrt()
    return CoverageResult(levels, coverage, stderr, alphas)
