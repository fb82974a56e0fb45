"""Sample-quality statistics of two sets of features: KID, precision and recall, density and
coverage. Each takes features (N, D) of real and generated examples (a feature network's output,
e.g. :func:`simulacra.metrics.fid.extract_features`) and computes in float64.

* **KID** (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  k(a, b) = (aᵀb / D + 1)³, averaged over random subsets of equal size; unlike FID it has no bias
  at small sample sizes, so it is comparable across them. As torch-fidelity reports it: the mean
  and the standard deviation over the subsets.
* **Precision and recall** (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points reaching their k-th nearest neighbour (k = 3); precision is the share of
  generated points inside the real manifold (quality), recall the share of real points inside
  the generated one (diversity).
* **Density and coverage** (Naeem et al. 2020, k = 5): density counts how many real balls each
  generated point falls in, divided by k (1 on average for matching sets, unbounded above; robust
  to real outliers); coverage is the share of real points whose ball holds a generated point.
* **Class histogram** (for labelled data): the classes a classifier gives the samples, against
  the data's labels: KL(samples ‖ data) and the classes reached (mode coverage).

Distances are Euclidean, a point is inside a ball when strictly closer than its radius, and a
point's own zero distance is not one of its neighbours, as in the ``prdc`` package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.errors import ConfigError, DataError


def _features(x: Tensor, what: str) -> Tensor:
    if x.dim() != 2 or x.shape[0] < 2:
        raise DataError(f"{what} must be features (N, D) with N >= 2; found shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{what} hold NaN or inf")
    return x.detach().to("cpu", torch.float64)


def polynomial_mmd2(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """The unbiased MMD² between feature sets x (m, D) and y (m, D) of equal size with the
    polynomial kernel (aᵀb / D + coef0)^degree (the diagonal of each within-set kernel left out)."""
    m, d = x.shape
    if y.shape != x.shape:
        raise DataError(
            f"polynomial_mmd2 takes two sets of one size; found {tuple(x.shape)} and {tuple(y.shape)}"
        )
    k_xx = (x @ x.T / d + coef0) ** degree
    k_yy = (y @ y.T / d + coef0) ** degree
    k_xy = (x @ y.T / d + coef0) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kid(
    real: Tensor,
    fake: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """(mean, sd) over ``subsets`` draws of the unbiased cubic-kernel MMD² between random subsets
    (without replacement) of ``min(subset_size, N_real, N_fake)`` real and generated features."""
    real, fake = _features(real, "real features"), _features(fake, "generated features")
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"the two feature sets differ in width: {real.shape[1]} and {fake.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ConfigError(f"kid needs subsets >= 1 and subset_size >= 2; found {subsets} and {subset_size}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    values = []
    for _ in range(subsets):
        i = torch.randperm(real.shape[0], generator=generator)[:m]
        j = torch.randperm(fake.shape[0], generator=generator)[:m]
        values.append(polynomial_mmd2(real[i], fake[j]))
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # as torch-fidelity: np.std
    return mean, sd


def _radii(x: Tensor, k: int) -> Tensor:
    """The distance of each point of x (N, D) to its k-th nearest other point (N,)."""
    if k >= x.shape[0]:
        raise DataError(f"the k-th nearest neighbour needs more than k = {k} points; found {x.shape[0]}")
    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # the (k+1)-th smallest: itself first


@dataclass(frozen=True)
class Manifolds:
    """Precision, recall (k = ``k_pr``), density and coverage (k = ``k_dc``) of generated
    features against real ones; each a share in [0, 1] but density, whose mean is 1 for matching
    sets.

    Each is a mean over points (precision and density over the generated ones, recall and
    coverage over the real ones), and ``*_se`` is its standard error over those points,
    sd / √n, given the other set's balls (the spread of the balls themselves is not in it)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k_pr: int
    k_dc: int
    precision_se: float = math.nan
    recall_se: float = math.nan
    density_se: float = math.nan
    coverage_se: float = math.nan


def manifold_metrics(real: Tensor, fake: Tensor, *, k_pr: int = 3, k_dc: int = 5) -> Manifolds:
    """Precision and recall (Kynkäänniemi et al. 2019, k = ``k_pr``), density and coverage (Naeem
    et al. 2020, k = ``k_dc``) of generated features ``fake`` (M, D) against ``real`` (N, D)."""
    real, fake = _features(real, "real features"), _features(fake, "generated features")
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"the two feature sets differ in width: {real.shape[1]} and {fake.shape[1]}")
    if min(k_pr, k_dc) < 1:
        raise ConfigError(f"k must be >= 1; found k_pr={k_pr}, k_dc={k_dc}")
    between = torch.cdist(real, fake)  # (N, M)
    real_pr, fake_pr = _radii(real, k_pr), _radii(fake, k_pr)
    real_dc = real_pr if k_dc == k_pr else _radii(real, k_dc)
    per_point = {  # each figure is the mean of these
        "precision": (between < real_pr[:, None]).any(0).double(),  # (M,)
        "recall": (between < fake_pr[None, :]).any(1).double(),  # (N,)
        "density": (between < real_dc[:, None]).double().sum(0) / k_dc,  # (M,)
        "coverage": (between.min(1).values < real_dc).double(),  # (N,)
    }
    means = {key: float(v.mean()) for key, v in per_point.items()}
    errors = {f"{key}_se": float(v.std() / math.sqrt(v.numel())) for key, v in per_point.items()}
    return Manifolds(**means, k_pr=k_pr, k_dc=k_dc, **errors)


def class_histogram_kl(predicted: Tensor, labels: Tensor, num_classes: int) -> tuple[float, int, Tensor]:
    """(KL(sample histogram ‖ data histogram) in nats, classes with at least one sample, the
    sample histogram (K,) as shares) for the classes ``predicted`` (M,) of generated examples (a
    classifier's) against the labels (N,) of held-out data. Classes the data lack are left out of
    the data's support: a sample of one makes the KL infinite."""
    if predicted.dim() != 1 or labels.dim() != 1 or len(predicted) == 0 or len(labels) == 0:
        raise DataError("class_histogram_kl takes non-empty 1-D class indices")
    p = torch.bincount(predicted.long().cpu(), minlength=num_classes).double()[:num_classes]
    q = torch.bincount(labels.long().cpu(), minlength=num_classes).double()[:num_classes]
    p, q = p / p.sum(), q / q.sum()
    seen = p > 0
    kl = float((p[seen] * (p[seen] / q[seen]).log()).sum()) if bool((q[seen] > 0).all()) else math.inf
    return kl, int(seen.sum()), p


__all__ = ["Manifolds", "class_histogram_kl", "kid", "manifold_metrics", "polynomial_mmd2"]
