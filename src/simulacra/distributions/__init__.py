"""torch.distributions-compatible densities: heads, standard distributions, KL, lazy modules."""

from simulacra.distributions.heads import (
    HEADS,
    BernoulliHead,
    CategoricalHead,
    DiscretizedLogistic,
    DiscretizedLogisticHead,
    GaussianHead,
    QuantizedCategorical,
    head_for,
    is_discrete,
)
from simulacra.distributions.kl import kl_divergence_or_mc, kl_per_dimension
from simulacra.distributions.lazy import Amortized, LazyDistribution
from simulacra.distributions.standard import DiagonalGaussian, PointMass, StandardNormal, sample_from

__all__ = [
    "HEADS",
    "Amortized",
    "BernoulliHead",
    "CategoricalHead",
    "DiagonalGaussian",
    "DiscretizedLogistic",
    "DiscretizedLogisticHead",
    "GaussianHead",
    "LazyDistribution",
    "PointMass",
    "QuantizedCategorical",
    "StandardNormal",
    "head_for",
    "is_discrete",
    "kl_divergence_or_mc",
    "kl_per_dimension",
    "sample_from",
]
