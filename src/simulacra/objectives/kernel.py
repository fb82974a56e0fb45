"""Kernel two-sample objective: the maximum mean discrepancy, differentiable.

Gretton et al. (2012), eq. 3: for X = {x_i}_{i=1}^m ~ P, Y = {y_j}_{j=1}^n ~ Q and a Gaussian
kernel κ(a, b) = exp(−‖a − b‖² / (2σ²)),

    MMD²_u = 1/(m(m−1)) Σ_{i≠i'} κ(x_i, x_i') + 1/(n(n−1)) Σ_{j≠j'} κ(y_j, y_j') − 2/(mn) Σ_{i,j} κ(x_i, y_j),

an unbiased estimate, zero in expectation when P = Q; the biased V-statistic MMD²_b (eq. 5) keeps
the diagonal terms (means over all pairs), is never negative and is defined for one example. A model without a likelihood (a GAN)
scores itself with it on held-out batches; generative moment matching networks (Li et al. 2015)
train on it. The metric with its permutation test is :mod:`simulacra.metrics.two_sample`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simulacra.errors import DataError


def median_distance(x: Tensor) -> Tensor:
    """σ = median_{i<j} ‖x_i − x_j‖ of x (N, D), N ≥ 2 (the median heuristic); 1 when all points coincide."""
    d = torch.cdist(x, x)
    iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    sigma = d[iu[0], iu[1]].median()
    return torch.where(sigma > 0, sigma, torch.ones_like(sigma))


def mmd2(x: Tensor, y: Tensor, bandwidth: Tensor | float | None = None, *, unbiased: bool = True) -> Tensor:
    """MMD² between x (m, *event) and y (n, *event) with a Gaussian kernel, a scalar.

    Args:
        x, y: examples, flattened to vectors; at least 2 each for the unbiased estimate.
        bandwidth: σ; None takes the median distance within ``y`` (a reference sample, so that
            the kernel does not move with x when x is a model's samples), or within x and y
            together when y has one example.
        unbiased: MMD²_u (True) or the V-statistic MMD²_b (False).
    """
    least = 2 if unbiased else 1
    if x.shape[0] < least or y.shape[0] < least or x.shape[1:] != y.shape[1:]:
        raise DataError(
            f"MMD² needs two samples of at least {least} example(s) of one shape; found "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    x, y = x.flatten(1), y.flatten(1)
    if bandwidth is None:
        sigma = median_distance(y if y.shape[0] > 1 else torch.cat([x, y]))
    else:
        sigma = torch.as_tensor(bandwidth, dtype=x.dtype, device=x.device)
    gamma = 1.0 / (2.0 * sigma**2)

    def kernel_mean(a: Tensor, b: Tensor, same: bool) -> Tensor:
        k = torch.exp(-gamma * torch.cdist(a, b).square())
        if same and unbiased:  # leave out the diagonal κ(a_i, a_i) = 1
            return (k.sum() - k.diagonal().sum()) / (a.shape[0] * (a.shape[0] - 1))
        return k.mean()

    return kernel_mean(x, x, True) + kernel_mean(y, y, True) - 2.0 * kernel_mean(x, y, False)
