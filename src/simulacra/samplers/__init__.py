"""Samplers and post-hoc densities: diffusion samplers (and the probability-flow ODE), latent densities."""

from simulacra.samplers import ode as _ode  # noqa: F401  (registers the ODE samplers)
from simulacra.samplers.diffusion import SAMPLERS, run_sampler, time_grid
from simulacra.samplers.latent import (
    LATENT_DENSITIES,
    DiagonalGaussianDensity,
    GaussianMixtureDensity,
    StandardNormalDensity,
)

__all__ = [
    "LATENT_DENSITIES",
    "SAMPLERS",
    "DiagonalGaussianDensity",
    "GaussianMixtureDensity",
    "StandardNormalDensity",
    "run_sampler",
    "time_grid",
]
