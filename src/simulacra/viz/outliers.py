"""Histograms of outlier scores: in-distribution examples beside each outlier set, one panel per score."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

import numpy as np

__all__ = ["score_histograms"]


def score_histograms(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    units: Mapping[str, str],
    *,
    inliers: str,
    bins: int = 50,
    title: str | None = None,
) -> bytes:
    """A PNG (bytes) with one panel per score: density histograms of the score of every source
    on shared bins, the in-distribution source ``inliers`` filled in grey, each outlier set as a
    coloured outline; the x axis names the score, its unit, and that higher is more anomalous.

    Args:
        scores: ``{score: {source: (n,) values}}``.
        units: ``{score: unit}``.
        inliers: the name of the in-distribution source among each score's sources.
        bins: histogram bins per panel (shared by every source of the panel).
        title: above the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(scores)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        groups = {k: np.asarray(v, dtype=np.float64) for k, v in scores[name].items()}
        finite = np.concatenate([v[np.isfinite(v)] for v in groups.values()] or [np.zeros(1)])
        lo, hi = np.quantile(finite, [0.005, 0.995]) if finite.size else (0.0, 1.0)
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        for source, values in groups.items():
            clipped = np.clip(values[np.isfinite(values)], lo, hi)
            if source == inliers:
                ax.hist(clipped, edges, density=True, color="0.6", alpha=0.7, label=f"{source} (in)")
            else:
                ax.hist(clipped, edges, density=True, histtype="step", linewidth=1.5, label=source)
        ax.set_xlabel(f"{name} ({units.get(name, '')}; higher = more anomalous)", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
