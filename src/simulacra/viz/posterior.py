"""Pictures of a posterior estimate: a corner plot of its draws and its calibration diagnostics.

The corner plot takes draws (tensors); the calibration plot takes the statistics of
:mod:`simulacra.metrics.calibration` (simulation-based calibration, Talts et al. 2018; expected
coverage, Hermans et al. 2022), which :mod:`simulacra.tasks.calibration` computes for an estimator.
Figures use ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from simulacra.errors import DataError
from simulacra.metrics.calibration import CoverageResult, SBCResult, rank_bin_probabilities
from simulacra.viz.grids import save_figure


def plot_corner(
    samples: Tensor,
    path: str | Path,
    *,
    reference: Tensor | None = None,
    truth: Tensor | None = None,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Corner plot of posterior draws (N, D): marginal histograms on the diagonal, pairwise
    scatter below it; ``reference`` draws (e.g. the exact posterior) overlaid in another colour,
    ``truth`` (D,) marked by lines."""
    from matplotlib.figure import Figure

    s = torch.as_tensor(samples).detach().double().cpu()
    if s.dim() != 2:
        raise DataError(f"plot_corner needs samples of shape (N, D); found {tuple(s.shape)}")
    d = s.shape[1]
    ref = None if reference is None else torch.as_tensor(reference).detach().double().cpu()
    names = list(labels) if labels is not None else [f"$\\theta_{i + 1}$" for i in range(d)]
    both = s if ref is None else torch.cat([s, ref])
    lo, hi = both.quantile(0.002, dim=0), both.quantile(0.998, dim=0)
    pad = 0.05 * (hi - lo).clamp_min(1e-6)
    lo, hi = (lo - pad).tolist(), (hi + pad).tolist()
    fig = Figure(figsize=(2.4 * d + 0.6, 2.4 * d + 0.3))
    for i in range(d):
        for j in range(i + 1):
            ax = fig.add_subplot(d, d, i * d + j + 1)
            if i == j:
                bins = torch.linspace(lo[i], hi[i], 51).numpy()
                ax.hist(s[:, i].numpy(), bins=bins, density=True, color="C0", alpha=0.6, label="q(θ|x)")
                if ref is not None:
                    ax.hist(
                        ref[:, i].numpy(),
                        bins=bins,
                        density=True,
                        histtype="step",
                        color="C3",
                        lw=1.4,
                        label="exact",
                    )
                if truth is not None:
                    ax.axvline(float(truth[i]), color="k", lw=1)
                ax.set_yticks([])
                ax.set_xlim(lo[i], hi[i])
                if i == 0 and d > 1:
                    ax.legend(fontsize=7, loc="upper right")
            else:
                m = min(s.shape[0], 5000)
                ax.scatter(s[:m, j].numpy(), s[:m, i].numpy(), s=1.5, alpha=0.3, color="C0", linewidths=0)
                if ref is not None:
                    r = ref[: min(ref.shape[0], 5000)]
                    ax.scatter(r[:, j].numpy(), r[:, i].numpy(), s=1.0, alpha=0.15, color="C3", linewidths=0)
                if truth is not None:
                    ax.plot(float(truth[j]), float(truth[i]), "k+", ms=9)
                ax.set_xlim(lo[j], hi[j])
                ax.set_ylim(lo[i], hi[i])
            if i == d - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
    if d == 1 and ref is not None:
        fig.axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def plot_calibration(sbc: SBCResult, coverage: CoverageResult, path: str | Path) -> Path:
    """SBC rank histograms per θ coordinate (with the uniform level and its ±2σ binomial band) and
    the expected-coverage curve against the diagonal."""
    from matplotlib.figure import Figure

    hist = sbc.histogram().double()  # (D, B)
    d, b = hist.shape
    t = int(sbc.ranks.shape[0])
    probs = rank_bin_probabilities(sbc.num_posterior_samples, b)
    fig = Figure(figsize=(3.0 * (d + 1), 3.0))
    for k in range(d):
        ax = fig.add_subplot(1, d + 1, k + 1)
        ax.bar(range(b), hist[k].numpy(), width=1.0, color="C0", alpha=0.7)
        expected = t * probs
        band = 2 * (t * probs * (1 - probs)).sqrt()
        ax.step(range(b), expected.numpy(), where="mid", color="k", lw=1)
        ax.fill_between(
            range(b), (expected - band).numpy(), (expected + band).numpy(), color="k", alpha=0.12, step="mid"
        )
        ax.set_title(f"SBC $\\theta_{k + 1}$ (p = {float(sbc.p_values[k]):.2g})", fontsize=9)
        ax.set_xlabel(f"rank bin ({sbc.num_posterior_samples + 1} ranks)")
    ax = fig.add_subplot(1, d + 1, d + 1)
    levels = coverage.levels.numpy()
    ax.plot([0, 1], [0, 1], color="k", lw=1, ls="--")
    ax.errorbar(
        levels, coverage.coverage.numpy(), yerr=2 * coverage.stderr.numpy(), marker="o", ms=3, color="C3"
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("empirical coverage")
    ax.set_title("expected coverage (HPD)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(path))
