"""Samplers and post-hoc densities."""

from simulacra.samplers.latent import (
    LATENT_DENSITIES,
    DiagonalGaussianDensity,
    GaussianMixtureDensity,
    StandardNormalDensity,
)

__all__ = ["LATENT_DENSITIES", "DiagonalGaussianDensity", "GaussianMixtureDensity", "StandardNormalDensity"]
