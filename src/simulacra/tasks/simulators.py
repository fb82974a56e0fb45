"""Simulators for simulation-based inference: a prior p(θ) and a stochastic model x ~ p(x | θ).

A simulator can be run forward but its likelihood need not be evaluated; neural posterior
estimation (:mod:`simulacra.tasks.posterior`) learns q(θ | x) ≈ p(θ | x) from pairs
(θ_i, x_i) ~ p(θ) p(x | θ) alone. Where the posterior is known (in closed form, or on a fine grid
from an exact likelihood) :meth:`Simulator.true_posterior` returns it as a torch Distribution, so
an estimate can be scored against the truth.

Shipped tasks (registry :data:`SIMULATORS`):

* ``gaussian-linear``: θ ~ N(0, σ₀² I_D), x = A θ + ε, ε ~ N(0, σ² I_D). Conjugate, so
  p(θ | x) = N(μ, Σ) with Σ = (I/σ₀² + AᵀA/σ²)⁻¹ and μ = Σ Aᵀ x / σ² (Bishop 2006, eq. 2.116-2.117;
  the sbibm task of Lueckmann et al. 2021 is the case A = I).
* ``two-moons``: the benchmark of Greenberg, Nonnenmacher & Macke (2019) and Lueckmann et al.
  (2021), whose posterior is a pair of thin crescents.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal, constraints

from simulacra.errors import ConfigError, DataError
from simulacra.registry import Registry


class Simulator(abc.ABC):
    """A prior p(θ) over θ ∈ R^{theta_dim} and a simulator x ~ p(x | θ), x ∈ R^{x_dim}.

    Attributes:
        name: the registry name (set by the subclass).
        theta_dim: D_θ, the number of parameters.
        x_dim: D_x, the size of one simulated observation.
    """

    name: str = "simulator"
    theta_dim: int
    x_dim: int

    @abc.abstractmethod
    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws θ ~ p(θ), shape (n, D_θ)."""

    @abc.abstractmethod
    def prior_log_prob(self, theta: Tensor) -> Tensor:
        """log p(θ) in nats for θ (..., D_θ), shape (...); −inf outside the prior's support."""

    @abc.abstractmethod
    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One x ~ p(x | θ_i) per row θ_i of θ (B, D_θ): shape (B, D_x)."""

    @abc.abstractmethod
    def default_observation(self) -> Tensor:
        """A fixed observation x_o (D_x,) on which the task is usually reported."""

    def true_posterior(self, x_obs: Tensor) -> Distribution | None:
        """p(θ | x_obs) as a Distribution over (D_θ,), or None when it is not known."""
        return None

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments, so that ``SIMULATORS.build({"name": name, **kwargs()})``
        rebuilds this simulator (stored beside a trained posterior)."""
        return {}

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., **kwargs}``: the JSON spec of this simulator."""
        return {"name": self.name, **self.kwargs()}

    def simulate_pairs(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n joint draws (θ_i, x_i) ~ p(θ) p(x | θ): shapes (n, D_θ) and (n, D_x)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"the number of simulations must be a positive integer; found {n!r}")
        theta = self.prior_sample(n, generator)
        return theta, self.simulate(theta, generator)

    # -- input checks shared by the tasks ------------------------------------------------------

    def check_theta(self, theta: Tensor) -> Tensor:
        """θ as a float tensor (..., D_θ), or a :class:`DataError` naming the shape found."""
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype())
        if theta.dim() < 1 or theta.shape[-1] != self.theta_dim:
            raise DataError(
                f"{self.name} has {self.theta_dim} parameters: expected θ of shape (..., {self.theta_dim}); "
                f"found {tuple(theta.shape)}"
            )
        return theta

    def check_x(self, x: Tensor) -> Tensor:
        """x as a finite float tensor (D_x,) or (B, D_x), or a :class:`DataError`."""
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        if x.dim() not in (1, 2) or x.shape[-1] != self.x_dim:
            raise DataError(
                f"{self.name} observations have {self.x_dim} values: expected shape ({self.x_dim},) or "
                f"(B, {self.x_dim}); found {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise DataError(f"{self.name} observations must be finite; found NaN or inf in {x.tolist()}")
        return x


SIMULATORS: Registry[Callable[..., Simulator]] = Registry("simulator")


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number; found {value!r}")
    return float(value)


def _count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of draws must be a positive integer; found {n!r}")
    return n


@SIMULATORS.register(
    "gaussian-linear", "θ ~ N(0, σ₀² I), x = Aθ + N(0, σ² I): conjugate, exact Gaussian posterior"
)
class GaussianLinear(Simulator):
    """θ ~ N(0, σ₀² I_D), x | θ ~ N(A θ, σ² I_D), with a fixed D × D matrix A.

    The posterior is Gaussian (conjugacy; Bishop 2006, eq. 2.116-2.117):

        Σ = (I / σ₀² + AᵀA / σ²)⁻¹,      μ(x) = Σ Aᵀ x / σ².

    Args:
        dim: D (θ and x both have D coordinates).
        prior_scale: σ₀.
        noise_scale: σ.
        mixing: A = I + mixing · G / √D with G a fixed standard-normal matrix drawn with
            ``seed`` (mixing = 0: A = I, independent coordinates; > 0: a correlated posterior).
        seed: seeds G and the default observation, so the task is the same on every machine.
    """

    name = "gaussian-linear"

    def __init__(
        self,
        dim: int = 3,
        prior_scale: float = 1.0,
        noise_scale: float = 0.5,
        mixing: float = 0.5,
        seed: int = 0,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"gaussian-linear: dim must be a positive integer; found {dim!r}")
        if isinstance(mixing, bool) or not isinstance(mixing, int | float) or mixing < 0:
            raise ConfigError(f"gaussian-linear: mixing must be a number >= 0; found {mixing!r}")
        self.theta_dim = self.x_dim = dim
        self.prior_scale = _positive(prior_scale, "gaussian-linear: prior_scale")
        self.noise_scale = _positive(noise_scale, "gaussian-linear: noise_scale")
        self.mixing = float(mixing)
        self.seed = int(seed)
        g = torch.Generator().manual_seed(self.seed)
        gauss = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        self.matrix = torch.eye(dim, dtype=torch.float64) + self.mixing * gauss / math.sqrt(dim)  # A (D, D)

    def kwargs(self) -> dict[str, Any]:
        return {
            "dim": self.theta_dim,
            "prior_scale": self.prior_scale,
            "noise_scale": self.noise_scale,
            "mixing": self.mixing,
            "seed": self.seed,
        }

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(_count(n), self.theta_dim, generator=generator)
        return self.prior_scale * eps

    def prior_log_prob(self, theta: Tensor) -> Tensor:
        theta = self.check_theta(theta)
        z = theta / self.prior_scale
        return -0.5 * z.square().sum(-1) - self.theta_dim * (
            math.log(self.prior_scale) + 0.5 * math.log(2 * math.pi)
        )

    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        theta = self.check_theta(theta)
        if theta.dim() != 2:
            raise DataError(
                f"simulate takes a batch θ of shape (B, {self.theta_dim}); found {tuple(theta.shape)}"
            )
        mean = theta @ self.matrix.to(theta.dtype).T  # (B, D)
        noise = torch.randn(mean.shape, generator=generator, dtype=theta.dtype)
        return mean + self.noise_scale * noise

    def default_observation(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        theta = torch.linspace(-0.5, 0.5, self.theta_dim)[None] * self.prior_scale
        return self.simulate(theta, g)[0]

    def posterior_covariance(self) -> Tensor:
        """Σ = (I/σ₀² + AᵀA/σ²)⁻¹, (D, D) float64 (the same for every x)."""
        a = self.matrix
        precision = (
            torch.eye(self.theta_dim, dtype=a.dtype) / self.prior_scale**2 + a.T @ a / self.noise_scale**2
        )
        return torch.linalg.inv(precision)

    def true_posterior(self, x_obs: Tensor) -> MultivariateNormal:
        """N(μ(x), Σ) with batch shape () for x (D,) or (B,) for x (B, D), in the default dtype."""
        x = self.check_x(x_obs).double()
        cov = self.posterior_covariance()
        mean = x @ (cov @ self.matrix.T / self.noise_scale**2).T  # μ = Σ Aᵀ x / σ², row-wise
        dtype = torch.get_default_dtype()
        cov = 0.5 * (cov + cov.T)
        return MultivariateNormal(
            mean.to(dtype), covariance_matrix=cov.expand(*mean.shape[:-1], -1, -1).to(dtype)
        )


class GridPosterior(Distribution):
    """A 2-D density p(θ) ∝ exp(ℓ(θ)) on a box, normalised on a fine midpoint grid.

    log p(θ) = ℓ(θ) − log Z with Z ≈ Σ_cells exp(ℓ(θ_c)) · ΔA (midpoint rule); inside a cell the
    density is taken as ℓ at the point itself, so ``log_prob`` is exact up to the quadrature error
    in Z. ``sample`` picks a cell with probability ∝ exp(ℓ(θ_c)) and a uniform point inside it.

    Args:
        log_density: ℓ, maps (..., 2) to (...) unnormalised log-density (−inf outside the support).
        low, high: the box [low, high]² holding the support.
        resolution: cells per side.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self, log_density: Callable[[Tensor], Tensor], low: float, high: float, resolution: int = 800
    ) -> None:
        self.log_density = log_density
        self.low, self.high = float(low), float(high)
        self.resolution = int(resolution)
        self.cell = (self.high - self.low) / self.resolution
        centres = self.low + self.cell * (torch.arange(self.resolution, dtype=torch.float64) + 0.5)
        grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)  # (R², 2)
        logits = log_density(grid)  # (R²,)
        if not torch.isfinite(logits).any():
            raise DataError(
                "the posterior is zero everywhere on the grid: is the observation possible at all?"
            )
        self.grid = grid
        self.log_z = float(torch.logsumexp(logits, 0)) + 2 * math.log(self.cell)
        self.cell_probs = torch.softmax(logits, 0)
        super().__init__(torch.Size(), torch.Size([2]), validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(θ) in nats, (...) for θ (..., 2)."""
        return (self.log_density(value.double()) - self.log_z).to(value.dtype)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        """(*sample_shape, 2) draws (global RNG; wrap in ``sample_from`` for a generator)."""
        shape = torch.Size(sample_shape)
        n = math.prod(shape)
        idx = torch.multinomial(self.cell_probs, n, replacement=True)
        jitter = (torch.rand(n, 2, dtype=torch.float64) - 0.5) * self.cell
        return (self.grid[idx] + jitter).to(torch.get_default_dtype()).reshape(*shape, 2)

    @property
    def mean(self) -> Tensor:
        return (self.cell_probs[:, None] * self.grid).sum(0).to(torch.get_default_dtype())


@SIMULATORS.register(
    "two-moons", "two-moons (Greenberg et al. 2019): θ ~ U[-1,1]², crescent-shaped bimodal posterior"
)
class TwoMoons(Simulator):
    """The two-moons task (Greenberg et al. 2019, appendix; Lueckmann et al. 2021, task T.8).

        θ ~ U([−1, 1]²),   a ~ U(−π/2, π/2),   r ~ N(0.1, 0.01²),
        p = (r cos a + 0.25, r sin a),
        x = p + (−|θ₁ + θ₂| / √2, (−θ₁ + θ₂) / √2).

    The likelihood is known: with u = x − g(θ) − (0.25, 0) (g the shift above), the polar map
    (r, a) ↦ u has Jacobian |r|, so

        p(x | θ) = N(sign(u₁) ‖u‖; 0.1, 0.01²) / (π ‖u‖),

    and :meth:`true_posterior` normalises p(x | θ) p(θ) on a grid over [−1, 1]². Since g depends on
    θ through |θ₁ + θ₂| and θ₂ − θ₁ only, the posterior is symmetric under θ ↦ (−θ₂, −θ₁): for
    x_o = (0, 0) it is two mirrored crescents.

    Args:
        radius_mean, radius_std: the mean and standard deviation of r (0.1 and 0.01).
        resolution: grid cells per side for the reference posterior.
    """

    name = "two-moons"
    theta_dim = 2
    x_dim = 2

    def __init__(self, radius_mean: float = 0.1, radius_std: float = 0.01, resolution: int = 800) -> None:
        self.radius_mean = _positive(radius_mean, "two-moons: radius_mean")
        self.radius_std = _positive(radius_std, "two-moons: radius_std")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 10:
            raise ConfigError(f"two-moons: resolution must be an integer >= 10; found {resolution!r}")
        self.resolution = resolution

    def kwargs(self) -> dict[str, Any]:
        return {"radius_mean": self.radius_mean, "radius_std": self.radius_std, "resolution": self.resolution}

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return 2.0 * torch.rand(_count(n), 2, generator=generator) - 1.0

    def prior_log_prob(self, theta: Tensor) -> Tensor:
        theta = self.check_theta(theta)
        inside = (theta.abs() <= 1.0).all(-1)
        return torch.where(inside, -math.log(4.0), -math.inf).to(theta.dtype)

    @staticmethod
    def _shift(theta: Tensor) -> Tensor:
        """g(θ) = (−|θ₁ + θ₂| / √2, (−θ₁ + θ₂) / √2), (..., 2)."""
        t1, t2 = theta.unbind(-1)
        return torch.stack([-(t1 + t2).abs(), t2 - t1], -1) / math.sqrt(2.0)

    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        theta = self.check_theta(theta)
        if theta.dim() != 2:
            raise DataError(f"simulate takes a batch θ of shape (B, 2); found {tuple(theta.shape)}")
        b = theta.shape[0]
        a = (torch.rand(b, generator=generator, dtype=theta.dtype) - 0.5) * math.pi
        r = self.radius_mean + self.radius_std * torch.randn(b, generator=generator, dtype=theta.dtype)
        p = torch.stack([r * torch.cos(a) + 0.25, r * torch.sin(a)], -1)
        return p + self._shift(theta)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log p(x | θ) in nats for θ (..., 2) and x broadcastable to it, shape (...)."""
        u = x - self._shift(theta) - x.new_tensor([0.25, 0.0])
        norm = u.norm(dim=-1)
        r = torch.where(u[..., 0] >= 0, norm, -norm)
        z = (r - self.radius_mean) / self.radius_std
        log_normal = -0.5 * z.square() - math.log(self.radius_std) - 0.5 * math.log(2 * math.pi)
        return log_normal - math.log(math.pi) - norm.log()

    def default_observation(self) -> Tensor:
        """x_o = (0, 0), the observation of Greenberg et al. (2019): two crescents."""
        return torch.zeros(2)

    def true_posterior(self, x_obs: Tensor) -> GridPosterior:
        x = self.check_x(x_obs).double()
        if x.dim() != 1:
            raise DataError(
                f"two-moons: the reference posterior takes one observation (2,); found {tuple(x.shape)}"
            )

        def log_density(theta: Tensor) -> Tensor:
            return self.log_likelihood(theta, x.to(theta.dtype)) + self.prior_log_prob(theta)

        return GridPosterior(log_density, -1.0, 1.0, self.resolution)
