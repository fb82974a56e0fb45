"""Kernel two-sample statistics: maximum mean discrepancy and its permutation test.

Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012), "A kernel two-sample test", JMLR 13. For
samples X = {x_i}_{i=1}^m ~ P and Y = {y_j}_{j=1}^n ~ Q and a characteristic kernel κ, the
unbiased estimator of MMD²(P, Q) (their eq. 3, for m ≠ n as well) is

    MMD²_u = 1/(m(m−1)) Σ_{i≠i'} κ(x_i, x_i') + 1/(n(n−1)) Σ_{j≠j'} κ(y_j, y_j') − 2/(mn) Σ_{i,j} κ(x_i, y_j),

zero in expectation when P = Q (and then it can be slightly negative), positive otherwise.
Any model with ``sample`` can be scored this way, with or without a likelihood.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simulacra.errors import ConfigError, DataError

KERNELS = ("gaussian", "laplacian")


def _flatten_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(x).detach()
    y = torch.as_tensor(y).detach()
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] < 2 or y.shape[0] < 2:
        raise DataError(
            f"two-sample statistics need at least 2 examples in each sample, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    x = x.reshape(x.shape[0], -1).double().cpu()
    y = y.reshape(y.shape[0], -1).double().cpu()
    if x.shape[1] != y.shape[1]:
        raise DataError(f"samples have different dimensions: {x.shape[1]} and {y.shape[1]} per example")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise DataError("two-sample statistics need finite values; found NaN or inf")
    return x, y


def median_bandwidth(z: Tensor, max_points: int = 1000) -> float:
    """The median heuristic σ = median_{i<j} ‖z_i − z_j‖ (Gretton et al. 2012, section 8).

    Computed on at most ``max_points`` evenly spaced rows of ``z`` (N, D); falls back to 1 when
    all points coincide.
    """
    if z.shape[0] > max_points:
        z = z[torch.linspace(0, z.shape[0] - 1, max_points).long()]
    d = torch.cdist(z, z)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    sigma = d[iu[0], iu[1]].median().item()
    return sigma if sigma > 0 else 1.0


def _kernel_matrix(a: Tensor, b: Tensor, bandwidth: float, kernel: str) -> Tensor:
    """κ(a_i, b_j): Gaussian exp(−‖a−b‖² / (2σ²)) or Laplacian exp(−‖a−b‖ / σ)."""
    if kernel == "gaussian":
        d2 = torch.cdist(a, b).square()
        return torch.exp(-d2 / (2 * bandwidth**2))
    if kernel == "laplacian":
        return torch.exp(-torch.cdist(a, b) / bandwidth)
    raise ConfigError(f"unknown kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")


def _pooled_kernel(x: Tensor, y: Tensor, bandwidth: float | None, kernel: str) -> tuple[Tensor, float]:
    """Kernel matrix of the pooled sample (m+n, m+n) with a zero diagonal, and σ."""
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")
    # median over both samples (half from each, so neither dominates)
    half = 500
    sigma = bandwidth if bandwidth is not None else median_bandwidth(torch.cat([x[:half], y[:half]]))
    if sigma <= 0:
        raise ConfigError(f"bandwidth must be positive, got {sigma}")
    z = torch.cat([x, y])
    k = _kernel_matrix(z, z, sigma, kernel)
    k.fill_diagonal_(0.0)
    return k, sigma


def _mmd2_from_masks(k: Tensor, masks: Tensor, m: int, n: int) -> Tensor:
    """MMD²_u for each row of ``masks`` (P, m+n), 1 marking the first sample, given κ with a
    zero diagonal: Σ_{i≠i'} κ = aᵀKa, Σ_{j≠j'} κ = bᵀKb, Σ_{i,j} κ = aᵀKb (a, b disjoint)."""
    a = masks
    b = 1.0 - masks
    ka = a @ k  # (P, m+n)
    kb = b @ k
    xx = (ka * a).sum(1)
    yy = (kb * b).sum(1)
    xy = (ka * b).sum(1)
    return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)


def mmd(x: Tensor, y: Tensor, *, bandwidth: float | None = None, kernel: str = "gaussian") -> float:
    """Unbiased estimate of MMD²(P, Q) from x ~ P and y ~ Q (Gretton et al. 2012, eq. 3).

    Args:
        x: (m, ...) samples, flattened to (m, D).
        y: (n, ...) samples, flattened to (n, D).
        bandwidth: kernel width σ; the median pairwise distance of the pooled samples when None.
        kernel: ``"gaussian"`` exp(−‖a−b‖²/(2σ²)) or ``"laplacian"`` exp(−‖a−b‖/σ).

    Returns:
        MMD²_u, dimensionless; ≈ 0 (possibly negative) when P = Q.
    """
    x, y = _flatten_pair(x, y)
    k, _ = _pooled_kernel(x, y, bandwidth, kernel)
    m, n = x.shape[0], y.shape[0]
    mask = torch.cat([torch.ones(m, dtype=k.dtype), torch.zeros(n, dtype=k.dtype)])
    return _mmd2_from_masks(k, mask[None], m, n).item()


def mmd_permutation_test(
    x: Tensor,
    y: Tensor,
    num_permutations: int = 200,
    generator: torch.Generator | None = None,
    *,
    bandwidth: float | None = None,
    kernel: str = "gaussian",
) -> float:
    """p-value of H₀: P = Q by permuting the pooled sample (Gretton et al. 2012, section 5).

        p = (1 + #{π : MMD²_u(π) ≥ MMD²_u}) / (1 + num_permutations)

    The bandwidth is fixed once from the pooled sample, which permutations leave unchanged, so
    the test is exact in level.

    Args:
        x: (m, ...) samples; y: (n, ...) samples.
        num_permutations: random relabellings of the pooled sample.
        generator: source of the permutations.
        bandwidth, kernel: as in :func:`mmd`.

    Returns:
        the p-value in (0, 1].
    """
    if num_permutations < 1:
        raise ConfigError(f"num_permutations must be at least 1, got {num_permutations}")
    x, y = _flatten_pair(x, y)
    k, _ = _pooled_kernel(x, y, bandwidth, kernel)
    m, n = x.shape[0], y.shape[0]
    observed_mask = torch.cat([torch.ones(m, dtype=k.dtype), torch.zeros(n, dtype=k.dtype)])
    observed = _mmd2_from_masks(k, observed_mask[None], m, n)[0]
    # random permutations of the labels, in blocks to bound memory
    exceed = 0
    block = max(1, 2**22 // (m + n))
    done = 0
    while done < num_permutations:
        p = min(block, num_permutations - done)
        order = torch.argsort(torch.rand(p, m + n, generator=generator), dim=1)
        masks = (order < m).to(k.dtype)  # (p, m+n): m ones at random places
        exceed += int((_mmd2_from_masks(k, masks, m, n) >= observed).sum().item())
        done += p
    return (1 + exceed) / (1 + num_permutations)
