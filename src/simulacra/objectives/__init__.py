"""Estimators: variational bounds (ELBO, IWAE) and denoising corruptions."""

from simulacra.objectives.denoising import CORRUPTIONS, GaussianNoise, Masking, SaltAndPepper
from simulacra.objectives.variational import ELBO, IWAE, VariationalTerms, log_importance_weights

__all__ = [
    "CORRUPTIONS",
    "ELBO",
    "IWAE",
    "GaussianNoise",
    "Masking",
    "SaltAndPepper",
    "VariationalTerms",
    "log_importance_weights",
]
