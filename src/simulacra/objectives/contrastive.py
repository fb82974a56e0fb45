"""Objectives of energy-based models: contrastive divergence, noise-contrastive estimation, score matching.

An energy-based model p_θ(x) = exp(−E_θ(x)) / Z(θ) has an intractable normaliser Z(θ). Its
objectives avoid computing Z in three ways:

* **maximum likelihood with model samples** (:func:`contrastive_divergence`): the gradient of
  log Z is an expectation under the model, ∇_θ log Z = −E_{p_θ}[∇_θ E_θ], estimated with samples
  from MCMC chains (CD, PCD, SGLD as in IGEBM);
* **classification against noise** (:func:`nce_loss`): the normaliser becomes a parameter log_z,
  learnt by telling data from samples of a known noise density;
* **score matching** (:mod:`simulacra.objectives.score`): the score −∇ₓE does not depend on Z.

A model composes one :class:`EnergyObjective` — :class:`ContrastiveDivergence`, :class:`NCE` or
:class:`ScoreMatching` — and passes it its energy, the data and, when ``needs_samples``, the
negative samples of its chains. Losses are scalars (minimised); metrics are detached scalars.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.distributions.standard import FittedGaussian
from simulacra.errors import ConfigError, DataError, positive_int
from simulacra.objectives.score import (
    Energy,
    score_matching_denoising,
    score_matching_exact,
    score_matching_sliced,
)

SCORE_MATCHING_METHODS = ("exact", "sliced", "denoising")


class EnergyObjective(Protocol):
    """The objective of an energy-based model: ``(energy, x, samples) -> (scalar loss, metrics)``.

    Attributes:
        needs_samples: True when the model must pass negative samples (chain ends) as
            ``samples``; otherwise ``samples`` may be None and is ignored.
    """

    needs_samples: bool

    def __call__(
        self,
        energy: Callable[[Tensor], Tensor],
        x: Tensor,
        samples: Tensor | None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]: ...


@runtime_checkable
class NoiseModel(Protocol):
    """A noise density for NCE: ``sample(n, generator=) -> (n, *event)``, ``log_prob(x) -> (B,)`` nats."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...

    def log_prob(self, x: Tensor) -> Tensor: ...


def _check_vector(t: Tensor, what: str) -> None:
    if t.dim() != 1 or t.shape[0] == 0:
        raise DataError(
            f"{what} must be a non-empty vector, one value per example; found shape {tuple(t.shape)}"
        )


# -- contrastive divergence -----------------------------------------------------------------


def contrastive_divergence(
    energy_data: Tensor, energy_samples: Tensor, *, alpha: float = 0.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """The maximum-likelihood gradient estimator of CD/PCD, with IGEBM's L2 energy regulariser.

    For p_θ(x) = exp(−E_θ(x)) / Z(θ), the negative log-likelihood of the data is
    NLL(θ) = E_data[E_θ(x)] + log Z(θ), and since Z = ∫ exp(−E_θ),

        ∇_θ log Z = −E_{p_θ}[∇_θ E_θ(x)],   so   ∇_θ NLL = E_data[∇_θ E_θ(x)] − E_{p_θ}[∇_θ E_θ(x')].

    The loss

        L = mean_b E_θ(x_b) − mean_m E_θ(x'_m) + α (mean_b E_θ(x_b)² + mean_m E_θ(x'_m)²)

    with samples x'_m held fixed (detached: no gradient flows into the sampler) therefore has, at
    α = 0, a gradient that is an unbiased estimate of ∇_θ NLL when the x'_m are exact draws from
    p_θ. With short MCMC chains started at the data (CD-k, Hinton 2002), at persistent chains
    (PCD, Tieleman 2008) or at a replay buffer with Langevin dynamics (IGEBM, Du & Mordatch 2019)
    the samples only approximate p_θ and the estimate is biased accordingly. The loss value itself
    is not the NLL (log Z is missing): only its gradient is meaningful. α > 0 adds the squared
    energies that keep their magnitudes near zero (Du & Mordatch 2019, §3.3).

    Args:
        energy_data: E_θ(x) (B,) on data.
        energy_samples: E_θ(x') (M,) on detached negative samples.
        alpha: α ≥ 0, the weight of the L2 energy regulariser.

    Returns:
        The scalar loss and detached metrics ``energy_data`` (mean E on data), ``energy_samples``
        (mean E on samples) and ``energy_gap`` = mean E(samples) − mean E(data), in nats: it is
        positive while the model puts less density on its samples than on the data (as after a
        step that lowered the data's energy) and near zero when the samples follow the data.
    """
    _check_vector(energy_data, "energy_data")
    _check_vector(energy_samples, "energy_samples")
    if not alpha >= 0:
        raise ConfigError(f"contrastive divergence alpha must be >= 0; found {alpha}")
    e_data, e_samples = energy_data.mean(), energy_samples.mean()
    loss = e_data - e_samples
    if alpha > 0:
        loss = loss + alpha * (energy_data.square().mean() + energy_samples.square().mean())
    metrics = {
        "energy_data": e_data.detach(),
        "energy_samples": e_samples.detach(),
        "energy_gap": (e_samples - e_data).detach(),
    }
    return loss, metrics


class ContrastiveDivergence:
    """CD/PCD/IGEBM training: :func:`contrastive_divergence` on E(x) and E(samples).

    The model runs its chains (Langevin, MALA, a replay buffer; :mod:`simulacra.samplers.mcmc`)
    and passes their ends as ``samples``; they are detached here.

    Args:
        alpha: α ≥ 0, weight of the L2 energy regulariser (IGEBM uses 1).
    """

    needs_samples = True

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha >= 0:
            raise ConfigError(f"ContrastiveDivergence alpha must be >= 0; found {alpha}")
        self.alpha = float(alpha)

    def __call__(
        self,
        energy: Energy,
        x: Tensor,
        samples: Tensor | None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss, metrics) for data x (B, *event) and negative samples (M, *event)."""
        if samples is None:
            raise DataError(
                "ContrastiveDivergence needs negative samples (the chain ends); the model must pass samples"
            )
        if samples.shape[1:] != x.shape[1:]:
            raise DataError(
                f"negative samples must have the data's event shape {tuple(x.shape[1:])}; "
                f"found {tuple(samples.shape[1:])}"
            )
        return contrastive_divergence(energy(x), energy(samples.detach()), alpha=self.alpha)

    def __repr__(self) -> str:
        return f"ContrastiveDivergence(alpha={self.alpha})"


# -- noise-contrastive estimation -----------------------------------------------------------


def nce_loss(log_ratio_data: Tensor, log_ratio_noise: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Noise-contrastive estimation: logistic regression of data against ν times as much noise.

    Gutmann & Hyvärinen (2010), eqs. 3–5: with G(x) = log p_model(x) − log p_noise(x), B data
    points, M noise points and ν = M/B, the posterior probability that x is data is
    h(x) = σ(G(x) − log ν), and the loss (the negative of their J, per data point) is

        L = −[ mean_data log h(x) + ν · mean_noise log(1 − h(y)) ],

    with log h = logsigmoid(G − log ν) and log(1 − h) = logsigmoid(−(G − log ν)) for stability.
    Its minimiser over an unnormalised model with a free log normaliser is the data density
    (consistency, their Theorem 2): the model learns its own normalisation.

    Args:
        log_ratio_data: G on data, (B,) in nats.
        log_ratio_noise: G on noise samples, (M,) in nats.

    Returns:
        The scalar loss (nats per data point) and detached metrics ``nce_accuracy`` (the
        classifier's accuracy with both classes weighted equally: ½ [frac(h(x) > ½) +
        frac(h(y) < ½)]) and ``log_nu`` = log(M/B).
    """
    _check_vector(log_ratio_data, "log_ratio_data")
    _check_vector(log_ratio_noise, "log_ratio_noise")
    nu = log_ratio_noise.shape[0] / log_ratio_data.shape[0]
    log_nu = math.log(nu)
    logit_data = log_ratio_data - log_nu  # logit of h on data
    logit_noise = log_ratio_noise - log_nu
    loss = -(F.logsigmoid(logit_data).mean() + nu * F.logsigmoid(-logit_noise).mean())
    accuracy = 0.5 * ((logit_data > 0).float().mean() + (logit_noise < 0).float().mean())
    metrics = {
        "nce_accuracy": accuracy.detach(),
        "log_nu": torch.tensor(log_nu, dtype=log_ratio_data.dtype, device=log_ratio_data.device),
    }
    return loss, metrics


class NCE(nn.Module):
    """Noise-contrastive estimation of an energy model with a learnt normaliser (Gutmann & Hyvärinen 2010).

    The model's log-density is log p_model(x) = −E(x) − log_z with ``log_z`` a learnable scalar
    (initially 0), so G(x) = −E(x) − log_z − log p_noise(x) and the loss is :func:`nce_loss` on
    the batch x (B, *event) and M = ``ratio`` · B fresh noise draws. At the optimum ``log_z``
    is the log normaliser log ∫ exp(−E) of the fitted energy, in nats.

    The noise is held fixed: its samples and log-densities carry no gradient. A
    :class:`~simulacra.distributions.standard.FittedGaussian` noise that is not yet fitted is
    fitted on the first batch it sees; a model normally fits it on the whole training split
    before training (a batch's moments are noisier), and its fit is saved with the module.

    Args:
        noise: a module with ``sample(n, generator=) -> (n, *event)`` and ``log_prob(x) -> (B,)``.
        ratio: ν = M/B ≥ 1, noise draws per data point.
    """

    needs_samples = False

    def __init__(self, noise: nn.Module, ratio: int = 1) -> None:
        super().__init__()
        if not isinstance(noise, NoiseModel):
            raise ConfigError(
                "NCE needs a noise module with sample(n, generator=) and log_prob(x); "
                f"found {type(noise).__name__}"
            )
        self.ratio = positive_int(ratio, "NCE ratio")
        self.noise = noise
        self.log_z = nn.Parameter(torch.zeros(()))

    def forward(
        self,
        energy: Energy,
        x: Tensor,
        samples: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss, metrics) for data x (B, *event); ``samples`` is ignored."""
        noise: NoiseModel = self.noise  # type: ignore[assignment]
        if isinstance(self.noise, FittedGaussian) and not self.noise.fitted:
            self.noise.fit(x)
        with torch.no_grad():
            y = noise.sample(self.ratio * x.shape[0], generator=generator).to(x.dtype)  # (M, *event)
            log_noise_x = noise.log_prob(x).to(x.dtype)  # (B,)
            log_noise_y = noise.log_prob(y).to(x.dtype)  # (M,)
        log_ratio_data = -energy(x) - self.log_z - log_noise_x
        log_ratio_noise = -energy(y) - self.log_z - log_noise_y
        loss, metrics = nce_loss(log_ratio_data, log_ratio_noise)
        metrics["log_z"] = self.log_z.detach()
        return loss, metrics

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


# -- score matching -------------------------------------------------------------------------


class ScoreMatching:
    """Score matching of the energy, the batch mean of one estimator in :mod:`simulacra.objectives.score`.

    ``exact``: Hyvärinen (2005), ½‖∇E‖² − ΔE with the Laplacian by D backward passes (low D only);
    ``sliced``: Song et al. (2019), the Laplacian along ``projections`` random directions
    (variance-reduced form); ``denoising``: Vincent (2011) at noise level ``sigma``, weighted by
    σ², whose minimiser is the score of the data smoothed by N(0, σ² I).

    Args:
        method: "exact", "sliced" or "denoising".
        sigma: σ > 0 of denoising score matching (data units).
        projections: directions per example of sliced score matching (≥ 1).
    """

    needs_samples = False

    def __init__(self, method: str = "sliced", sigma: float = 0.1, projections: int = 1) -> None:
        if method not in SCORE_MATCHING_METHODS:
            raise ConfigError(
                f"unknown score matching method {method!r}; expected one of {', '.join(SCORE_MATCHING_METHODS)}"
            )
        if not sigma > 0:
            raise ConfigError(f"ScoreMatching sigma must be > 0; found {sigma}")
        self.method = method
        self.sigma = float(sigma)
        self.projections = positive_int(projections, "ScoreMatching projections")

    def __call__(
        self,
        energy: Energy,
        x: Tensor,
        samples: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss, metrics) for data x (B, *event); ``samples`` is ignored.

        The metric ``score_matching`` is the detached loss.
        """
        if self.method == "exact":
            per_example = score_matching_exact(energy, x)
        elif self.method == "sliced":
            per_example = score_matching_sliced(energy, x, projections=self.projections, generator=generator)
        else:
            per_example = score_matching_denoising(energy, x, self.sigma, generator=generator)
        loss = per_example.mean()
        return loss, {"score_matching": loss.detach()}

    def __repr__(self) -> str:
        return f"ScoreMatching(method={self.method!r}, sigma={self.sigma}, projections={self.projections})"
