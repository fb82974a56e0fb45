"""Noising processes: Gaussian schedules (DDPM, VP/sub-VP/VE SDEs) and their conversions."""

from simulacra.processes.gaussian import (
    PARAMETERIZATIONS,
    Denoise,
    convert,
    gaussian_denoiser,
    gaussian_posterior_mean,
    q_posterior,
    q_sample,
)
from simulacra.processes.schedules import SCHEDULES, VE, VP, Cosine, NoiseSchedule

__all__ = [
    "PARAMETERIZATIONS",
    "SCHEDULES",
    "VE",
    "VP",
    "Cosine",
    "Denoise",
    "NoiseSchedule",
    "convert",
    "gaussian_denoiser",
    "gaussian_posterior_mean",
    "q_posterior",
    "q_sample",
]
