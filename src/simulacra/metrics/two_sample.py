"""Two-sample statistics: maximum mean discrepancy and its permutation test, and the classifier
two-sample test.

Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012), "A kernel two-sample test", JMLR 13. For
samples X = {x_i}_{i=1}^m ~ P and Y = {y_j}_{j=1}^n ~ Q and a characteristic kernel κ, the
unbiased estimator of MMD²(P, Q) (their eq. 3, for m ≠ n as well) is

    MMD²_u = 1/(m(m−1)) Σ_{i≠i'} κ(x_i, x_i') + 1/(n(n−1)) Σ_{j≠j'} κ(y_j, y_j') − 2/(mn) Σ_{i,j} κ(x_i, y_j),

zero in expectation when P = Q (and then it can be slightly negative), positive otherwise.
Any model with ``sample`` can be scored this way, with or without a likelihood.

The classifier two-sample test (Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample
tests"; :func:`classifier_two_sample_test`) trains a classifier to tell the two samples apart on
one half of them and reports its accuracy on the other half: 0.5 when P = Q (no classifier does
better than chance on fresh data), up to 1 when they are separable. Its accuracy is a mean of
held-out Bernoulli outcomes, so it comes with an exact binomial (Clopper–Pearson) interval and
the p-value of H₀: accuracy = 1/2.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class ClassifierTest:
    """The outcome of a classifier two-sample test.

    Attributes:
        accuracy: the share of held-out examples the classifier labels correctly; 0.5 is chance.
        low, high: the exact (Clopper–Pearson) binomial interval of the accuracy at ``level``.
        p_value: one-sided exact binomial p-value of H₀: accuracy = 1/2 (the samples are alike).
        n_train: examples the classifier was trained on (half from each sample).
        n_test: held-out examples it was scored on (half from each sample).
        level: the interval's confidence level.
    """

    accuracy: float
    low: float
    high: float
    p_value: float
    n_train: int
    n_test: int
    level: float

    @property
    def stderr(self) -> float:
        """√(a(1 − a)/n_test), the binomial standard error of the accuracy."""
        return math.sqrt(self.accuracy * (1 - self.accuracy) / self.n_test)


def classifier_two_sample_test(
    x: Tensor,
    y: Tensor,
    *,
    hidden: tuple[int, ...] = (64, 64),
    test_fraction: float = 0.5,
    level: float = 0.95,
    seed: int = 0,
) -> ClassifierTest:
    """Train an MLP to tell x from y and score it on held-out examples (Lopez-Paz & Oquab 2017).

    The two samples are cut to the size m of the smaller, so that chance is exactly 1/2; each is
    split at random into a training part and a held-out part of ``test_fraction`` of it; the
    features are standardized with the training part's mean and sd; scikit-learn's
    ``MLPClassifier`` (ReLU, Adam, L2 1e-3, early stopping on 10% of the training part when it has
    at least 100 examples) learns the labels; its held-out accuracy is tested against 1/2 with the
    exact binomial test (SciPy). Deterministic for a given ``seed``.

    Args:
        x: (m, ...) examples of one sample (a model's samples or their features), flattened.
        y: (n, ...) examples of the other (held-out data), of the same width.
        hidden: the MLP's hidden widths.
        test_fraction: the share of each sample held out for scoring, in (0, 1).
        level: the confidence level of the interval, in (0, 1).
        seed: seeds the split and the classifier.

    Returns:
        a :class:`ClassifierTest`.

    Raises:
        DataError: fewer than 10 examples in a sample, different widths, or NaN/inf.
        ConfigError: ``test_fraction`` or ``level`` outside (0, 1).
    """
    from scipy.stats import binomtest
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1); found {test_fraction}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1); found {level}")
    a, b = _flatten_pair(x, y)
    m = min(a.shape[0], b.shape[0])
    held = int(round(m * test_fraction))
    if m < 10 or held < 2 or m - held < 2:
        raise DataError(
            f"a classifier two-sample test needs at least 10 examples in each sample, with both parts "
            f"non-trivial; found {a.shape[0]} and {b.shape[0]}"
        )
    rng = np.random.default_rng(seed)
    a = a.numpy()[rng.permutation(a.shape[0])[:m]]
    b = b.numpy()[rng.permutation(b.shape[0])[:m]]
    train = np.concatenate([a[held:], b[held:]])
    test = np.concatenate([a[:held], b[:held]])
    labels_train = np.repeat([1, 0], m - held)
    labels_test = np.repeat([1, 0], held)
    mean, sd = train.mean(0), train.std(0)
    sd[sd == 0] = 1.0
    train, test = (train - mean) / sd, (test - mean) / sd
    classifier = MLPClassifier(
        hidden_layer_sizes=hidden,
        alpha=1e-3,
        max_iter=300,
        early_stopping=len(train) >= 100,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(train, labels_train)
    correct = int((classifier.predict(test) == labels_test).sum())
    n_test = len(labels_test)
    result = binomtest(correct, n_test, 0.5, alternative="greater")
    interval = binomtest(correct, n_test, 0.5).proportion_ci(confidence_level=level, method="exact")
    return ClassifierTest(
        accuracy=correct / n_test,
        low=float(interval.low),
        high=float(interval.high),
        p_value=float(result.pvalue),
        n_train=len(labels_train),
        n_test=n_test,
        level=float(level),
    )
