"""Calibration of posterior estimates: simulation-based calibration, expected coverage, agreement.

These procedures simulate the trials and draw from the estimate; the statistics of the ranks and
coverages they compute, and their result types, are in :mod:`simulacra.metrics.calibration`.

* simulation-based calibration (Talts et al. 2018, "Validating Bayesian inference algorithms
  with simulation-based calibration"): for θ* ~ p(θ), x ~ p(x | θ*) and θ_1..θ_L ~ q(θ | x), the
  rank r_d = #{l : θ_l,d < θ*_d} is uniform on {0, …, L} for every d when q = p(θ | x);
* expected coverage of highest-density regions (Hermans et al. 2022, "A trust crisis in
  simulation-based inference?"): θ* lies in q's 100c % HPD region with probability c, checked via
  α = P_q(log q(θ) > log q(θ* | x)) estimated with the L samples: coverage(c) = P(α < c);
* agreement with a known posterior: KL(p ‖ q), errors of the mean and standard deviation, MMD.

Every function takes a posterior-like object (``sample(x, n, generator)``, ``log_prob(θ, x)``):
a :class:`simulacra.tasks.posterior.PosteriorEstimator` or the exact posterior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from simulacra.errors import positive_int
from simulacra.metrics.calibration import (
    CoverageResult,
    SBCResult,
    coverage_levels,
    hpd_coverage,
    sbc_statistics,
)
from simulacra.metrics.two_sample import mmd
from simulacra.tasks.posterior import PosteriorLike
from simulacra.tasks.simulators import Simulator


def _trials(
    simulator: Simulator, num_trials: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    positive_int(num_trials, "num_trials")
    return simulator.simulate_pairs(num_trials, generator)


def _chunks(total: int, per_item: int, budget: int = 200_000) -> list[slice]:
    size = max(1, budget // max(per_item, 1))
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


@torch.no_grad()
def sbc_ranks(
    estimator: PosteriorLike,
    simulator: Simulator,
    num_trials: int = 200,
    num_posterior_samples: int = 100,
    generator: torch.Generator | None = None,
    *,
    bins: int | None = None,
) -> SBCResult:
    """Simulation-based calibration (Talts et al. 2018, algorithm 1).

    For t = 1..T: θ*_t ~ p(θ), x_t ~ p(x | θ*_t), θ_t,1..L ~ q(θ | x_t), r_t,d = #{l : θ_t,l,d < θ*_t,d}.
    If q(θ | x) = p(θ | x) then r_t,d ~ U{0, …, L} for every d (the true θ* is one more draw from
    the same law), which a χ² test on B rank bins checks per dimension.

    Args:
        estimator: q (a :class:`PosteriorEstimator`, an :class:`ExactPosterior`, ...).
        simulator: the task that draws (θ*, x).
        num_trials: T.
        num_posterior_samples: L.
        generator: source of the trials and the posterior draws.
        bins: B (default min(L + 1, 20, max(2, T // 5)), so each bin expects ≥ 5 ranks).

    Returns:
        An :class:`SBCResult`.
    """
    L = positive_int(num_posterior_samples, "num_posterior_samples")
    theta, x = _trials(simulator, num_trials, generator)
    ranks = torch.empty(num_trials, simulator.theta_dim, dtype=torch.long)
    for part in _chunks(num_trials, L):
        draws = estimator.sample(x[part], L, generator)  # (L, m, D_θ)
        ranks[part] = (draws < theta[part][None]).sum(0)
    return sbc_statistics(ranks, L, bins)


@torch.no_grad()
def expected_coverage(
    estimator: PosteriorLike,
    simulator: Simulator,
    num_trials: int = 200,
    num_posterior_samples: int = 100,
    generator: torch.Generator | None = None,
    *,
    levels: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
) -> CoverageResult:
    """Expected coverage of q's highest-density regions (Hermans et al. 2022, eq. 3).

    For t = 1..T: θ*_t ~ p(θ), x_t ~ p(x | θ*_t), θ_t,l ~ q(θ | x_t), and
    α_t = (1/L) #{l : log q(θ_t,l | x_t) > log q(θ*_t | x_t)}, the mass of the smallest HPD region of
    q that contains θ*_t. Then coverage(c) = (1/T) #{t : α_t < c}; a calibrated q gives α ~ U(0, 1)
    and coverage(c) = c, an overconfident one coverage(c) < c.

    Args:
        estimator, simulator, num_trials (T), num_posterior_samples (L), generator: as in :func:`sbc_ranks`.
        levels: the credibility levels c ∈ (0, 1).

    Returns:
        A :class:`CoverageResult`.
    """
    L = positive_int(num_posterior_samples, "num_posterior_samples")
    lv = coverage_levels(levels)
    theta, x = _trials(simulator, num_trials, generator)
    alphas = torch.empty(num_trials, dtype=torch.float64)
    for part in _chunks(num_trials, L):
        draws = estimator.sample(x[part], L, generator)  # (L, m, D_θ)
        log_q = estimator.log_prob(draws, x[part])  # (L, m)
        log_q_true = estimator.log_prob(theta[part][None], x[part])  # (1, m)
        alphas[part] = (log_q > log_q_true).double().mean(0)
    return hpd_coverage(alphas, lv)


# -- agreement with a known posterior ----------------------------------------------------------


@torch.no_grad()
def posterior_agreement(
    estimator: PosteriorLike,
    reference: PosteriorLike,
    x_obs: Tensor,
    num_samples: int = 2000,
    generator: torch.Generator | None = None,
) -> dict[str, dict[str, Any]]:
    """How close q(θ | x_o) is to a reference p(θ | x_o) (e.g. :class:`ExactPosterior`).

    * ``kl``: KL(p ‖ q) = E_p[log p(θ) − log q(θ)] by Monte Carlo over p's draws, nats, with its
      standard error (finite whenever q has full support, as a flow does);
    * ``mean_error``: ‖E_q θ − E_p θ‖₂ / √D_θ (root mean square over coordinates), θ's units;
    * ``std_error``: the same for the marginal standard deviations;
    * ``mmd``: MMD²_u between draws of q and p (Gaussian kernel, median bandwidth; Gretton et al. 2012).

    Returns:
        ``{name: {"value", "stderr", "estimator", "unit", "n"}}``, the CLI's metric records.
    """
    n = positive_int(num_samples, "num_samples")
    q_draws = estimator.sample(x_obs, n, generator)
    p_draws = reference.sample(x_obs, n, generator)
    log_ratio = (reference.log_prob(p_draws, x_obs) - estimator.log_prob(p_draws, x_obs)).double()
    d = q_draws.shape[-1]
    mean_err = float((q_draws.double().mean(0) - p_draws.double().mean(0)).square().sum().div(d).sqrt())
    std_err = float((q_draws.double().std(0) - p_draws.double().std(0)).square().sum().div(d).sqrt())
    m = min(n, 1000)
    nan = float("nan")
    return {
        "kl": {
            "value": float(log_ratio.mean()),
            "stderr": float(log_ratio.std() / math.sqrt(n)),
            "estimator": "KL(p‖q), Monte Carlo over p's draws",
            "unit": "nats",
            "n": n,
        },
        "mean_error": {
            "value": mean_err,
            "stderr": nan,
            "estimator": "RMS over θ of |E_q θ − E_p θ|",
            "unit": "θ",
            "n": n,
        },
        "std_error": {
            "value": std_err,
            "stderr": nan,
            "estimator": "RMS over θ of |sd_q − sd_p|",
            "unit": "θ",
            "n": n,
        },
        "mmd": {
            "value": mmd(q_draws[:m], p_draws[:m]),
            "stderr": nan,
            "estimator": "MMD² (Gaussian kernel, median bandwidth)",
            "unit": "",
            "n": m,
        },
    }
