"""Neural posterior estimation: a conditional flow q(θ | x) ≈ p(θ | x) learned from simulations.

Papamakarios & Murray (2016), "Fast ε-free inference of simulation models with Bayesian
conditional density estimation"; Greenberg, Nonnenmacher & Macke (2019), "Automatic posterior
transformation"; the single-round NPE of the ``sbi`` package. With pairs (θ_i, x_i) ~ p(θ) p(x | θ),

    max_q  E_{p(θ, x)} [log q(θ | x)]  =  −E_{p(x)} KL(p(θ | x) ‖ q(θ | x)) + const,

so a flexible enough q recovers the posterior for every x at once (amortised inference); no
likelihood evaluation is needed, only the simulator.

Standardisation. The flow is fitted to θ̃ = (θ − m_θ) / s_θ given x̃ = (x − m_x) / s_x (training
means and standard deviations). On the original scale, by the change of variables,

    log q(θ | x) = log q̃(θ̃ | x̃) − Σ_d log s_θ,d.

The model is the ``posterior`` preset of :mod:`simulacra.models.zoo` (a FlowModel whose first
layer and context carry the standardisation), so it trains with :func:`simulacra.train.fit` on
:func:`simulation_dataset` (θ as the examples, x as the context) and is saved and reloaded like
any model (``train.checkpoint.save_model`` / ``load_model``). :class:`PosteriorEstimator` puts it
behind :class:`PosteriorLike`. Calibration (simulation-based calibration, expected coverage) is in
:mod:`simulacra.tasks.calibration`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution

from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError, DataError, positive_int
from simulacra.flows.flow import Flow
from simulacra.models.flow import FlowModel
from simulacra.models.zoo.flows import posterior_standardizations
from simulacra.tasks.simulators import SIMULATORS, Simulator


@runtime_checkable
class PosteriorLike(Protocol):
    """Anything that samples and scores a posterior given observations (an estimate or the truth).

    Shapes: x_obs (D_x,) gives samples (n, D_θ) and log-densities of θ (..., D_θ) as (...);
    x_obs (B, D_x) gives samples (n, B, D_θ) and log-densities of θ (..., B, D_θ) as (..., B).
    """

    def sample(self, x_obs: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor: ...

    def log_prob(self, theta: Tensor, x_obs: Tensor) -> Tensor: ...


class PosteriorEstimator:
    """q(θ | x) of a trained ``posterior`` model, behind the :class:`PosteriorLike` interface.

    Args:
        model: a FlowModel of the ``posterior`` preset (``build_model({"name": "posterior",
            "context_dim": D_x, ...}, DataInfo((D_θ,)))``, or ``load_model`` of its run directory).
        simulator: the simulator's spec ``{"name", **kwargs}`` (stored with a saved estimator, so
            it knows its task), or None.
        training_summary: how it was trained (steps, best validation NLL, ...), or None.

    The standardisation (m_θ, s_θ, m_x, s_x) lives in the model's buffers and is saved with its
    weights; :meth:`set_standardization` sets it from training pairs.

    Raises:
        ConfigError: a model that is not of the ``posterior`` preset.
    """

    def __init__(
        self,
        model: FlowModel,
        *,
        simulator: Mapping[str, Any] | None = None,
        training_summary: Mapping[str, Any] | None = None,
    ) -> None:
        self._theta, self._x = posterior_standardizations(model)
        self.model = model
        self.simulator_spec = dict(simulator) if simulator is not None else None
        self.training_summary: dict[str, Any] = dict(training_summary or {})

    @property
    def theta_dim(self) -> int:
        """D_θ."""
        return self.model.info.dim

    @property
    def x_dim(self) -> int:
        """D_x."""
        return self._x.features

    # -- standardisation ---------------------------------------------------------------------------

    def set_standardization(self, theta: Tensor, x: Tensor) -> None:
        """m, s = mean and standard deviation of the training θ (N, D_θ) and x (N, D_x); s = 1 where a
        coordinate is constant."""
        self._theta.fit(theta)
        self._x.fit(x)

    def _x_batch(self, x_obs: Tensor) -> tuple[Tensor, bool]:
        """x (B, D_x) and whether x_obs was a single observation (D_x,)."""
        ref = self._x.shift
        x = torch.as_tensor(x_obs, dtype=ref.dtype, device=ref.device)
        if x.dim() not in (1, 2) or x.shape[-1] != self.x_dim:
            raise DataError(
                f"expected an observation of shape ({self.x_dim},) or a batch (B, {self.x_dim}); "
                f"found {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise DataError("observations must be finite; found NaN or inf")
        single = x.dim() == 1
        return (x[None] if single else x), single

    def distribution(self, x_obs: Tensor) -> Flow:
        """q(θ | x) as a torch Distribution with batch shape (B,), for x_obs (B, D_x) or (D_x,) (B = 1)."""
        x, _ = self._x_batch(x_obs)
        return self.model.distribution(x)

    # -- the posterior -------------------------------------------------------------------------------

    def log_prob(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        """log q(θ | x) in nats on the original scale of θ.

        Args:
            theta: (..., D_θ) for a single x_obs (D_x,); (..., B, D_θ) for a batch x_obs (B, D_x).
            x_obs: one observation (D_x,) or a batch (B, D_x).

        Returns:
            (...) or (..., B): log q̃(θ̃ | x̃) − Σ_d log s_θ,d.
        """
        x, single = self._x_batch(x_obs)
        ref = self._theta.standardization.shift
        theta = torch.as_tensor(theta, dtype=ref.dtype, device=ref.device)
        if theta.dim() < 1 or theta.shape[-1] != self.theta_dim:
            raise DataError(f"expected θ of shape (..., {self.theta_dim}); found {tuple(theta.shape)}")
        if single:
            theta = theta.unsqueeze(-2)  # (..., 1, D_θ) against batch shape (1,)
        log_q = self.model.distribution(x).log_prob(theta)
        return log_q.squeeze(-1) if single else log_q

    def sample(self, x_obs: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws θ ~ q(θ | x): (n, D_θ) for x_obs (D_x,), (n, B, D_θ) for x_obs (B, D_x)."""
        positive_int(n, "the number of posterior samples")
        x, single = self._x_batch(x_obs)
        with torch.no_grad():
            theta = self.model.distribution(x).sample((n,), generator=generator)  # (n, B, D_θ)
        return theta[:, 0] if single else theta

    # -- files ---------------------------------------------------------------------------------------

    def run_config(self) -> dict[str, Any]:
        """What a saved estimator keeps beside its weights (``save_model(model, dir, run_config())``):
        the task and the training summary; :meth:`from_run` reads it back."""
        return {"task": "posterior", "simulator": self.simulator_spec, "training": self.training_summary}

    @classmethod
    def from_run(cls, model: FlowModel, run: Mapping[str, Any]) -> PosteriorEstimator:
        """The estimator of a reloaded model and the ``run`` section of its ``config.json``."""
        return cls(model, simulator=run.get("simulator"), training_summary=run.get("training"))


class ExactPosterior:
    """The simulator's known posterior p(θ | x) behind the :class:`PosteriorLike` interface (a
    reference for metrics and calibration checks), optionally widened or narrowed.

    With ``scale`` = k ≠ 1 the draws are θ = μ + k (θ_p − μ), θ_p ~ p(θ | x), μ its mean: a posterior
    k times too wide (k > 1) or too narrow (k < 1), whose log-density is log p(μ + (θ − μ)/k) − D log k.
    """

    def __init__(self, simulator: Simulator, scale: float = 1.0) -> None:
        if simulator.true_posterior(simulator.default_observation()) is None:
            raise ConfigError(f"{simulator.name} has no known posterior to use as a reference")
        if not float(scale) > 0:
            raise ConfigError(f"scale must be positive; found {scale!r}")
        self.simulator = simulator
        self.scale = float(scale)

    def _posteriors(self, x_obs: Tensor) -> tuple[Distribution | list[Distribution], bool]:
        """One Distribution (batch shape (), or (B,) when the simulator takes batches of x), or a list
        of one per row of x_obs (B, D_x); and whether x_obs was a single observation."""
        x = self.simulator.check_x(x_obs)
        if x.dim() == 1:
            return self.simulator.true_posterior(x), True
        try:
            return self.simulator.true_posterior(x), False
        except DataError:  # e.g. a grid posterior: one observation at a time
            return [self.simulator.true_posterior(row) for row in x], False

    def sample(self, x_obs: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, D_θ) for x_obs (D_x,), (n, B, D_θ) for x_obs (B, D_x)."""
        posteriors, _ = self._posteriors(x_obs)
        n = positive_int(n, "the number of posterior samples")

        def draw(p: Distribution) -> Tensor:
            theta = sample_from(p, (n,), generator)  # (n, [B,] D_θ)
            return p.mean + self.scale * (theta - p.mean)

        if isinstance(posteriors, list):
            return torch.stack([draw(p) for p in posteriors], 1)
        return draw(posteriors)

    def log_prob(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        """(...) for θ (..., D_θ) and x_obs (D_x,); (..., B) for θ (..., B, D_θ) and x_obs (B, D_x)."""
        posteriors, _ = self._posteriors(x_obs)
        theta = self.simulator.check_theta(theta)
        d = theta.shape[-1]

        def score(p: Distribution, t: Tensor) -> Tensor:
            return p.log_prob(p.mean + (t - p.mean) / self.scale) - d * math.log(self.scale)

        if isinstance(posteriors, list):
            return torch.stack([score(p, theta[..., i, :]) for i, p in enumerate(posteriors)], -1)
        return score(posteriors, theta)


# -- simulations ----------------------------------------------------------------------------------


def simulation_dataset(
    simulator: Simulator, simulations: int, *, validation_fraction: float = 0.1, seed: int = 0
) -> Dataset:
    """N = ``simulations`` pairs (θ_i, x_i) ~ p(θ) p(x | θ) as a dataset to fit q(θ | x) on.

    The pairs come from a generator seeded with ``seed``; the last ⌊fraction · N⌉ are held out for
    validation. θ (N, D_θ) are the examples and x (N, D_x) ride in the label slot: the context of
    a conditional model (``posterior`` preset).

    Raises:
        ConfigError: a count that is not a positive integer, or a validation fraction outside
            [0, 1) or leaving no pair for training or validation.
        DataError: the simulator produced NaN or inf.
    """
    positive_int(simulations, "simulations")
    if not 0.0 <= validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction must lie in [0, 1); found {validation_fraction}")
    theta, x = simulator.simulate_pairs(simulations, torch.Generator().manual_seed(seed))
    if not (torch.isfinite(theta).all() and torch.isfinite(x).all()):
        raise DataError(f"{simulator.name} produced NaN or inf in its simulations")
    n_valid = round(validation_fraction * simulations) if validation_fraction > 0 else 0
    if validation_fraction > 0 and not 1 <= n_valid < simulations:
        raise ConfigError(
            f"validation_fraction={validation_fraction} of {simulations} simulations leaves "
            f"{n_valid} for validation and {simulations - n_valid} for training; use more simulations"
        )
    n_train = simulations - n_valid
    return Dataset(
        name=f"{simulator.name} simulations",
        info=DataInfo((simulator.theta_dim,)),
        train=Split(theta[:n_train], x[:n_train]),
        valid=Split(theta[n_train:], x[n_train:]) if n_valid else None,
    )


def build_simulator(spec: str | dict[str, Any]) -> Simulator:
    """A simulator from its name or spec (an unknown name lists the registered ones)."""
    return SIMULATORS.build(spec)
