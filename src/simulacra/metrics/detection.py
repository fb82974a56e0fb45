"""Detection metrics: how well a score separates outliers from inliers.

Convention throughout: **outliers are the positive class and a higher score means more
anomalous**. Given scores s⁺_1..s⁺_m of outliers and s⁻_1..s⁻_n of inliers,

* AUROC = P(S⁺ > S⁻) + ½ P(S⁺ = S⁻), the Mann–Whitney statistic U/(mn) with ties counted half
  (Hanley & McNeil 1982); 0.5 is chance, 1 perfect, 0 a score that points the wrong way;
* AUPR = average precision, Σ_k (R_k − R_{k−1}) P_k over the distinct thresholds taken from high
  to low (precision P_k and recall R_k of "score ≥ t_k"), scikit-learn's definition; its chance
  level is the share of outliers m/(m + n);
* FPR at 95% TPR = the share of inliers flagged at the highest threshold that flags at least 95%
  of the outliers (lower is better).

The AUROC's standard error is DeLong et al.'s (1988): with the structural components
V⁺_i = (1/n) Σ_j ψ(s⁺_i, s⁻_j) and V⁻_j = (1/m) Σ_i ψ(s⁺_i, s⁻_j), ψ(a, b) = 1[a > b] + ½ 1[a = b],

    Var(AUROC) ≈ Var(V⁺)/m + Var(V⁻)/n,

computed from mid-ranks in O((m + n) log(m + n)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from simulacra.errors import DataError

__all__ = [
    "DetectionReport",
    "auroc",
    "auroc_stderr",
    "average_precision",
    "detection_report",
    "fpr_at_tpr",
]


def _scores(inliers: ArrayLike, outliers: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets as finite float64 vectors, each with at least one entry."""

    def as_vector(values: ArrayLike, what: str) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size == 0:
            raise DataError(f"detection metrics need at least one {what} score; found none")
        if not np.isfinite(v).all():
            raise DataError(
                f"{what} scores must be finite; found {int((~np.isfinite(v)).sum())} that are not"
            )
        return v

    return as_vector(inliers, "inlier"), as_vector(outliers, "outlier")


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N of ``values`` (N,), tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # start of each run of equal values, and its length
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    lengths = np.diff(np.r_[starts, len(values)])
    mean_rank = starts + (lengths + 1) / 2.0  # ranks starts+1 .. starts+length, averaged
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, lengths)
    return ranks


def auroc(inliers: ArrayLike, outliers: ArrayLike) -> float:
    """Area under the ROC curve, P(S⁺ > S⁻) + ½ P(S⁺ = S⁻), outliers positive.

        AUROC = (Σ_i r⁺_i − m(m + 1)/2) / (m n),

    r⁺_i the mid-ranks of the outliers' scores among all m + n scores (ties count half).

    Args:
        inliers: (n,) scores of in-distribution examples.
        outliers: (m,) scores of outliers; higher means more anomalous.

    Returns:
        the AUROC in [0, 1].
    """
    s_in, s_out = _scores(inliers, outliers)
    m, n = len(s_out), len(s_in)
    ranks = _midranks(np.concatenate([s_out, s_in]))
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def auroc_stderr(inliers: ArrayLike, outliers: ArrayLike) -> float:
    """DeLong's standard error of :func:`auroc` (NaN with fewer than two scores of a class).

    V⁺_i = (r⁺_i − r⁺⁺_i)/n and V⁻_j = 1 − (r⁻_j − r⁻⁻_j)/m, where r is the mid-rank among all
    scores and r⁺⁺ (r⁻⁻) among the outliers' (inliers') own; SE² = Var(V⁺)/m + Var(V⁻)/n.
    """
    s_in, s_out = _scores(inliers, outliers)
    m, n = len(s_out), len(s_in)
    if m < 2 or n < 2:
        return float("nan")
    ranks = _midranks(np.concatenate([s_out, s_in]))
    v_out = (ranks[:m] - _midranks(s_out)) / n  # share of inliers below each outlier
    v_in = 1.0 - (ranks[m:] - _midranks(s_in)) / m  # share of outliers above each inlier
    return float(math.sqrt(v_out.var(ddof=1) / m + v_in.var(ddof=1) / n))


def _flag_counts(s_in: np.ndarray, s_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At each distinct threshold t, from the highest down: (#outliers, #inliers) with score ≥ t."""
    scores = np.concatenate([s_out, s_in])
    positive = np.r_[np.ones(len(s_out)), np.zeros(len(s_in))]
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_run = np.r_[scores[1:] != scores[:-1], True]  # ties: one threshold for the whole run
    true_pos = np.cumsum(positive)[last_of_run]
    false_pos = np.cumsum(1 - positive)[last_of_run]
    return true_pos, false_pos


def average_precision(inliers: ArrayLike, outliers: ArrayLike) -> float:
    """Average precision (AUPR), outliers positive: Σ_k (R_k − R_{k−1}) P_k over the distinct
    thresholds t_k from high to low, P_k = TP_k/(TP_k + FP_k), R_k = TP_k/m (R_0 = 0).

    Args:
        inliers: (n,) scores of in-distribution examples.
        outliers: (m,) scores of outliers; higher means more anomalous.

    Returns:
        average precision in (0, 1]; a random score gives about m/(m + n).
    """
    s_in, s_out = _scores(inliers, outliers)
    true_pos, false_pos = _flag_counts(s_in, s_out)
    recall = true_pos / len(s_out)
    precision = true_pos / (true_pos + false_pos)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(inliers: ArrayLike, outliers: ArrayLike, tpr: float = 0.95) -> float:
    """The share of inliers flagged at the highest threshold t that flags at least ``tpr`` of
    the outliers: FP(t)/n with t = max{t : TP(t)/m ≥ tpr} (flag = score ≥ t).

    Args:
        inliers: (n,) scores of in-distribution examples.
        outliers: (m,) scores of outliers; higher means more anomalous.
        tpr: the true-positive rate to reach, in (0, 1].

    Returns:
        the false-positive rate in [0, 1] (lower is better).
    """
    if not 0 < tpr <= 1:
        raise DataError(f"tpr must be in (0, 1]; found {tpr}")
    s_in, s_out = _scores(inliers, outliers)
    true_pos, false_pos = _flag_counts(s_in, s_out)
    first = int(np.argmax(true_pos >= tpr * len(s_out) - 1e-9))  # thresholds run high to low
    return float(false_pos[first] / len(s_in))


@dataclass(frozen=True)
class DetectionReport:
    """The detection metrics of one score on one inlier/outlier pair (outliers positive,
    higher score = more anomalous).

    Attributes:
        auroc: area under the ROC curve; auroc_stderr: its DeLong standard error.
        aupr: average precision with outliers positive.
        fpr95: false-positive rate at 95% true-positive rate.
        n_in, n_out: numbers of inlier and outlier scores.
    """

    auroc: float
    auroc_stderr: float
    aupr: float
    fpr95: float
    n_in: int
    n_out: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "auroc": self.auroc,
            "auroc_stderr": self.auroc_stderr,
            "aupr": self.aupr,
            "fpr95": self.fpr95,
            "n_in": self.n_in,
            "n_out": self.n_out,
        }


def detection_report(inliers: ArrayLike, outliers: ArrayLike) -> DetectionReport:
    """AUROC (with DeLong's standard error), AUPR and FPR at 95% TPR of one score."""
    s_in, s_out = _scores(inliers, outliers)
    return DetectionReport(
        auroc(s_in, s_out),
        auroc_stderr(s_in, s_out),
        average_precision(s_in, s_out),
        fpr_at_tpr(s_in, s_out),
        len(s_in),
        len(s_out),
    )
