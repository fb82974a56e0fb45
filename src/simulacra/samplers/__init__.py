"""Samplers and post-hoc densities: diffusion samplers (objects wrapping stateless functions, and
the probability-flow ODE), latent densities."""

from simulacra.samplers.base import SAMPLERS, DiffusionSampling, Sampler, check_sampler, resolve_sampler
from simulacra.samplers.diffusion import (
    DDIM,
    Ancestral,
    DPMSolver,
    EulerMaruyama,
    PredictorCorrector,
    time_grid,
)
from simulacra.samplers.latent import (
    LATENT_DENSITIES,
    DiagonalGaussianDensity,
    GaussianMixtureDensity,
    StandardNormalDensity,
)
from simulacra.samplers.ode import Heun, ProbabilityFlowODE

__all__ = [
    "DDIM",
    "LATENT_DENSITIES",
    "SAMPLERS",
    "Ancestral",
    "DPMSolver",
    "DiagonalGaussianDensity",
    "DiffusionSampling",
    "EulerMaruyama",
    "GaussianMixtureDensity",
    "Heun",
    "PredictorCorrector",
    "ProbabilityFlowODE",
    "Sampler",
    "StandardNormalDensity",
    "check_sampler",
    "resolve_sampler",
    "time_grid",
]
