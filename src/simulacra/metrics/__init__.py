"""Evaluation: likelihoods (exact, bounds, importance sampling), two-sample statistics, FID."""

from simulacra.metrics.detection import auroc, average_precision, detection_report, fpr_at_tpr
from simulacra.metrics.fid import fid, frechet_distance, shipped_feature_network
from simulacra.metrics.likelihood import (
    Estimate,
    bits_per_dim,
    dequantization_offset,
    evaluate_nll,
    importance_sampled_log_likelihood,
)
from simulacra.metrics.two_sample import mmd, mmd_permutation_test

__all__ = [
    "Estimate",
    "auroc",
    "average_precision",
    "bits_per_dim",
    "dequantization_offset",
    "detection_report",
    "evaluate_nll",
    "fid",
    "fpr_at_tpr",
    "frechet_distance",
    "importance_sampled_log_likelihood",
    "mmd",
    "mmd_permutation_test",
    "shipped_feature_network",
]
