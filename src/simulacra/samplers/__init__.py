"""Samplers and post-hoc densities: diffusion samplers (objects wrapping stateless functions, and
the probability-flow ODE), MCMC kernels, latent densities."""

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
from simulacra.samplers.mcmc import MALA, Kernel, MCMCState, UnadjustedLangevin, run_chain
from simulacra.samplers.ode import Heun, ProbabilityFlowODE

__all__ = [
    "DDIM",
    "LATENT_DENSITIES",
    "MALA",
    "SAMPLERS",
    "Ancestral",
    "DPMSolver",
    "DiagonalGaussianDensity",
    "DiffusionSampling",
    "EulerMaruyama",
    "GaussianMixtureDensity",
    "Heun",
    "Kernel",
    "MCMCState",
    "PredictorCorrector",
    "ProbabilityFlowODE",
    "Sampler",
    "StandardNormalDensity",
    "UnadjustedLangevin",
    "check_sampler",
    "resolve_sampler",
    "run_chain",
    "time_grid",
]
