"""Samplers and post-hoc densities: diffusion samplers (objects wrapping stateless functions, and
the probability-flow ODE), MCMC kernels and the replay buffer, log-partition-function estimators,
latent densities."""

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
from simulacra.samplers.mcmc import (
    HMC,
    MALA,
    SGLD,
    Kernel,
    MCMCState,
    ReplayBuffer,
    UnadjustedLangevin,
    run_chain,
)
from simulacra.samplers.ode import Heun, ProbabilityFlowODE
from simulacra.samplers.partition import LogZEstimate, ais_log_z, annealing_schedule, quadrature_log_z

__all__ = [
    "DDIM",
    "HMC",
    "LATENT_DENSITIES",
    "MALA",
    "SGLD",
    "SAMPLERS",
    "Ancestral",
    "DPMSolver",
    "DiagonalGaussianDensity",
    "DiffusionSampling",
    "EulerMaruyama",
    "GaussianMixtureDensity",
    "Heun",
    "Kernel",
    "LogZEstimate",
    "MCMCState",
    "PredictorCorrector",
    "ReplayBuffer",
    "ProbabilityFlowODE",
    "Sampler",
    "StandardNormalDensity",
    "UnadjustedLangevin",
    "ais_log_z",
    "annealing_schedule",
    "check_sampler",
    "quadrature_log_z",
    "resolve_sampler",
    "run_chain",
    "time_grid",
]
