"""Neural posterior estimation: a conditional flow q(θ | x) ≈ p(θ | x) learned from simulations.

Papamakarios & Murray (2016), "Fast ε-free inference of simulation models with Bayesian
conditional density estimation"; Greenberg, Nonnenmacher & Macke (2019), "Automatic posterior
transformation"; the single-round NPE of the ``sbi`` package. With pairs (θ_i, x_i) ~ p(θ) p(x | θ),

    max_q  E_{p(θ, x)} [log q(θ | x)]  =  −E_{p(x)} KL(p(θ | x) ‖ q(θ | x)) + const,

so a flexible enough q recovers the posterior for every x at once (amortised inference); no
likelihood evaluation is needed, only the simulator.

Standardisation. The flow is trained on θ̃ = (θ − m_θ) / s_θ given x̃ = (x − m_x) / s_x (training
means and standard deviations). On the original scale, by the change of variables,

    log q(θ | x) = log q̃(θ̃ | x̃) − Σ_d log s_θ,d.

Calibration (simulation-based calibration, expected coverage) is in
:mod:`simulacra.tasks.calibration`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.distributions.standard import sample_from
from simulacra.errors import CheckpointError, ConfigError, DataError
from simulacra.flows.base import Affine, Transform
from simulacra.flows.flow import Flow, LazyFlow
from simulacra.flows.splines import RationalQuadraticSpline
from simulacra.models.flow import FlowModel
from simulacra.models.zoo import _autoregressive_layers, _coupling_layers
from simulacra.nn.mlp import MLP
from simulacra.registry import Registry
from simulacra.tasks.simulators import SIMULATORS, Simulator
from simulacra.train.checkpoint import atomic_write_json, load_state_strict, load_tensors, save_tensors
from simulacra.train.loop import fit

WEIGHTS_FILE = "posterior.safetensors"
CONFIG_FILE = "posterior.json"
FORMAT_VERSION = 1

# -- the conditional flows ------------------------------------------------------------------------
# A builder maps (θ's DataInfo, transforms, hidden, activation, context_features) to the layers
# of q̃(θ̃ | x̃); the strings stay here and in the CLI.

LayerBuilder = Callable[[DataInfo, int, Sequence[int], str, int], list[Transform]]
POSTERIOR_FLOWS: Registry[LayerBuilder] = Registry("posterior flow")


@POSTERIOR_FLOWS.register("maf", "masked autoregressive flow (Papamakarios et al. 2017): affine MADE layers")
def _maf(
    info: DataInfo, transforms: int, hidden: Sequence[int], activation: str, context: int
) -> list[Transform]:
    return _autoregressive_layers(info, transforms, hidden, activation, context, Affine)


@POSTERIOR_FLOWS.register("realnvp", "RealNVP (Dinh et al. 2017): affine couplings with alternating masks")
def _realnvp(
    info: DataInfo, transforms: int, hidden: Sequence[int], activation: str, context: int
) -> list[Transform]:
    return _coupling_layers(info, transforms, hidden, activation, context, Affine)


# θ̃ is standardised, so the spline's interval [−3, 3] holds nearly all of the mass (identity tails beyond).
_SPLINE = partial(RationalQuadraticSpline, bins=8, bound=3.0)


@POSTERIOR_FLOWS.register(
    "nsf", "neural spline flow (Durkan et al. 2019): rational-quadratic splines in MADE layers"
)
def _nsf(
    info: DataInfo, transforms: int, hidden: Sequence[int], activation: str, context: int
) -> list[Transform]:
    return _autoregressive_layers(info, transforms, hidden, activation, context, _SPLINE)


@POSTERIOR_FLOWS.register("nsf-coupling", "neural spline flow (Durkan et al. 2019): spline couplings")
def _nsf_coupling(
    info: DataInfo, transforms: int, hidden: Sequence[int], activation: str, context: int
) -> list[Transform]:
    return _coupling_layers(info, transforms, hidden, activation, context, _SPLINE)


# -- the estimator --------------------------------------------------------------------------------


@runtime_checkable
class PosteriorLike(Protocol):
    """Anything that samples and scores a posterior given observations (an estimate or the truth).

    Shapes: x_obs (D_x,) gives samples (n, D_θ) and log-densities of θ (..., D_θ) as (...);
    x_obs (B, D_x) gives samples (n, B, D_θ) and log-densities of θ (..., B, D_θ) as (..., B).
    """

    def sample(self, x_obs: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor: ...

    def log_prob(self, theta: Tensor, x_obs: Tensor) -> Tensor: ...


def _check_n(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{what} must be a positive integer; found {n!r}")
    return n


class PosteriorEstimator(nn.Module):
    """q(θ | x) = q̃((θ − m_θ)/s_θ | (x − m_x)/s_x) / Π_d s_θ,d, with q̃ a conditional flow.

    Args:
        theta_dim: D_θ.
        x_dim: D_x.
        flow: a name in :data:`POSTERIOR_FLOWS` (``maf``, ``realnvp``, ``nsf``, ``nsf-coupling``).
        transforms: number of flow layers.
        hidden: hidden widths of each layer's conditioner.
        activation: conditioner activation.
        embedding_dim: None feeds x̃ to every layer as the context; an integer first maps x̃
            through an MLP (D_x → hidden[0] → embedding_dim), trained jointly.
        simulator: the simulator's spec ``{"name", **kwargs}`` (stored, so a loaded estimator
            knows its task), or None.

    The standardisation (m_θ, s_θ, m_x, s_x) lives in buffers and is saved with the weights.
    """

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        flow: str = "maf",
        transforms: int = 5,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        embedding_dim: int | None = None,
        simulator: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.theta_dim = _check_n(theta_dim, "theta_dim")
        self.x_dim = _check_n(x_dim, "x_dim")
        self.settings = {
            "flow": flow,
            "transforms": _check_n(transforms, "transforms"),
            "hidden": [int(h) for h in hidden],
            "activation": activation,
            "embedding_dim": None if embedding_dim is None else _check_n(embedding_dim, "embedding_dim"),
        }
        self.simulator_spec = dict(simulator) if simulator is not None else None
        if embedding_dim is None:
            embedding, context_features = None, self.x_dim
        else:
            embedding = MLP(self.x_dim, list(hidden)[:1], embedding_dim, activation)
            context_features = embedding_dim
        info = DataInfo((self.theta_dim,))
        layers = POSTERIOR_FLOWS.get(flow)(info, transforms, list(hidden), activation, context_features)
        # FlowModel gives the loss −log q̃(θ̃ | x̃) that train.fit minimises; x̃ is its context.
        self.model = FlowModel(info, LazyFlow(layers, (self.theta_dim,), context=embedding), conditional=True)
        self.register_buffer("theta_shift", torch.zeros(self.theta_dim))
        self.register_buffer("theta_scale", torch.ones(self.theta_dim))
        self.register_buffer("x_shift", torch.zeros(self.x_dim))
        self.register_buffer("x_scale", torch.ones(self.x_dim))
        self.training_summary: dict[str, Any] = {}

    # -- standardisation ---------------------------------------------------------------------------

    def set_standardization(self, theta: Tensor, x: Tensor) -> None:
        """m, s = mean and standard deviation of the training θ (N, D_θ) and x (N, D_x); s = 1 where a
        coordinate is constant."""
        for name, t in (("theta", theta), ("x", x)):
            std = t.std(0) if t.shape[0] > 1 else torch.ones(t.shape[1])
            std = torch.where(std > 1e-8, std, torch.ones_like(std))
            getattr(self, f"{name}_shift").copy_(t.mean(0))
            getattr(self, f"{name}_scale").copy_(std)

    def _x(self, x_obs: Tensor) -> tuple[Tensor, bool]:
        """x̃ (B, D_x) and whether x_obs was a single observation (D_x,)."""
        x = torch.as_tensor(x_obs, dtype=self.x_shift.dtype, device=self.x_shift.device)
        if x.dim() not in (1, 2) or x.shape[-1] != self.x_dim:
            raise DataError(
                f"expected an observation of shape ({self.x_dim},) or a batch (B, {self.x_dim}); "
                f"found {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise DataError("observations must be finite; found NaN or inf")
        single = x.dim() == 1
        x = x[None] if single else x
        return (x - self.x_shift) / self.x_scale, single

    def standardized(self, x_obs: Tensor) -> Flow:
        """q̃(θ̃ | x̃) as a torch Distribution with batch shape (B,), for x_obs (B, D_x) or (D_x,) (B = 1)."""
        x, _ = self._x(x_obs)
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
        x, single = self._x(x_obs)
        theta = torch.as_tensor(theta, dtype=self.theta_shift.dtype, device=self.theta_shift.device)
        if theta.dim() < 1 or theta.shape[-1] != self.theta_dim:
            raise DataError(f"expected θ of shape (..., {self.theta_dim}); found {tuple(theta.shape)}")
        z = (theta - self.theta_shift) / self.theta_scale
        if single:
            z = z.unsqueeze(-2)  # (..., 1, D_θ) against batch shape (1,)
        log_q = self.model.distribution(x).log_prob(z) - self.theta_scale.log().sum()
        return log_q.squeeze(-1) if single else log_q

    def sample(self, x_obs: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws θ ~ q(θ | x): (n, D_θ) for x_obs (D_x,), (n, B, D_θ) for x_obs (B, D_x)."""
        _check_n(n, "the number of posterior samples")
        x, single = self._x(x_obs)
        with torch.no_grad():
            z = self.model.distribution(x).sample((n,), generator=generator)  # (n, B, D_θ)
        theta = z * self.theta_scale + self.theta_shift
        return theta[:, 0] if single else theta

    # -- files ---------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The JSON description that :meth:`load` rebuilds the architecture from."""
        return {
            "format": FORMAT_VERSION,
            "theta_dim": self.theta_dim,
            "x_dim": self.x_dim,
            **self.settings,
            "simulator": self.simulator_spec,
            "training": self.training_summary,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``posterior.json`` (architecture, simulator, training summary) and
        ``posterior.safetensors`` (weights and standardisation) into ``directory``; returns the weights' path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / CONFIG_FILE, self.config())
        save_tensors(directory / WEIGHTS_FILE, self.state_dict())
        return directory / WEIGHTS_FILE

    @classmethod
    def load(cls, directory: str | Path) -> PosteriorEstimator:
        """Rebuild from :meth:`save`'s files (JSON + safetensors; nothing is unpickled), in eval mode.

        Raises:
            CheckpointError: a missing or corrupt file, or weights that do not fit the architecture.
        """
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: {str(directory)!r} holds no saved posterior")
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT_VERSION:
                raise CheckpointError(f"{path} has format {raw.get('format')!r}; expected {FORMAT_VERSION}")
            estimator = cls(
                raw["theta_dim"],
                raw["x_dim"],
                flow=raw["flow"],
                transforms=raw["transforms"],
                hidden=raw["hidden"],
                activation=raw["activation"],
                embedding_dim=raw["embedding_dim"],
                simulator=raw.get("simulator"),
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{path} is corrupt ({type(err).__name__}: {err})") from None
        estimator.training_summary = dict(raw.get("training") or {})
        weights = directory / WEIGHTS_FILE
        load_state_strict(estimator, load_tensors(weights), str(weights))
        return estimator.eval()


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
        n = _check_n(n, "the number of posterior samples")

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


# -- training -------------------------------------------------------------------------------------


def train_posterior(
    simulator: Simulator,
    flow: str = "maf",
    simulations: int = 2000,
    *,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    embedding_dim: int | None = None,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    validation_fraction: float = 0.1,
    eval_every: int = 100,
    patience: int | None = 10,
    seed: int = 0,
    progress: bool = False,
) -> PosteriorEstimator:
    """Single-round neural posterior estimation: simulate, standardise, fit q(θ | x) by maximum likelihood.

    Draws N = ``simulations`` pairs (θ_i, x_i) ~ p(θ) p(x | θ) with a generator seeded by ``seed``,
    holds out a fraction for validation, and minimises −(1/N) Σ_i log q̃(θ̃_i | x̃_i) with
    :func:`simulacra.train.fit` (AdamW, early stopping on the validation loss with the best weights
    restored).

    Args:
        simulator: the task.
        flow: a name in :data:`POSTERIOR_FLOWS`.
        simulations: N.
        transforms, hidden, activation, embedding_dim: the flow's architecture
            (see :class:`PosteriorEstimator`).
        steps: maximum optimizer steps.
        batch_size, lr: AdamW settings.
        validation_fraction: share of the simulations held out (0: no validation, no early stop).
        eval_every: validation loss every this many steps.
        patience: stop after this many evaluations without improvement (None: never).
        seed: seeds the simulations, the initial weights, and the batches.
        progress: show a progress bar.

    Returns:
        The trained estimator in eval mode; ``training_summary`` holds the steps, the best
        validation NLL on θ's original scale (nats), whether it stopped early, and the seconds spent.
    """
    _check_n(simulations, "simulations")
    if not 0.0 <= validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction must lie in [0, 1); found {validation_fraction}")
    started = time.perf_counter()
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
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        estimator = PosteriorEstimator(
            simulator.theta_dim,
            simulator.x_dim,
            flow,
            transforms,
            hidden,
            activation,
            embedding_dim,
            simulator=simulator.spec(),
        )
    estimator.set_standardization(theta[:n_train], x[:n_train])
    theta_t = (theta - estimator.theta_shift) / estimator.theta_scale
    x_t = (x - estimator.x_shift) / estimator.x_scale
    data = Dataset(
        name=f"{simulator.name} simulations",
        info=estimator.model.info,
        train=Split(theta_t[:n_train], x_t[:n_train]),  # x̃ rides in the label slot: the flow's context
        valid=Split(theta_t[n_train:], x_t[n_train:]) if n_valid else None,
    )
    use_valid = n_valid > 0
    config = TrainConfig(
        steps=_check_n(steps, "steps"),
        epochs=None,
        batch_size=min(_check_n(batch_size, "batch_size"), n_train),
        lr=lr,
        eval_every=eval_every if use_valid else 0,
        patience=patience if use_valid else None,
        log_every=max(1, min(50, steps)),
        seed=seed,
    )
    result = fit(estimator.model, data, config, progress=progress)
    offset = float(estimator.theta_scale.log().sum())  # −log q = −log q̃ + Σ log s
    estimator.training_summary = {
        "simulations": simulations,
        "train": n_train,
        "valid": n_valid,
        "steps": result.steps,
        "best_valid_nll": None if result.best_valid_loss is None else result.best_valid_loss + offset,
        "stopped_early": result.stopped_early,
        "seconds": round(time.perf_counter() - started, 3),
        "seed": seed,
    }
    return estimator.eval()


# -- calibration ----------------------------------------------------------------------------------


def build_simulator(spec: str | dict[str, Any]) -> Simulator:
    """A simulator from its name or spec (an unknown name lists the registered ones)."""
    return SIMULATORS.build(spec)
