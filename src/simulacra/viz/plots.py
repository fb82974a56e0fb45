"""Plots of a run: training curves, latent codes, and 2-D densities beside their samples.

All figures use ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global state).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simulacra.errors import DataError
from simulacra.viz.grids import save_figure

SPLITS = ("train", "valid", "val", "test")
STEP_KEYS = ("step", "global_step", "iteration")
IGNORED = {
    "epoch",
    "time",
    "wall_time",
    "elapsed",
    "elapsed_s",
    "seconds",
    "examples",
    "rank",
    "best_valid_loss",
}


def _series_key(key: str, split: str | None) -> tuple[str, str]:
    """(metric, split) of a logged key: ``valid/loss``, ``val_loss``, ``loss`` + split field."""
    for sep in ("/", "_", "."):
        head, _, tail = key.partition(sep)
        if tail and head in SPLITS:
            return tail, "valid" if head == "val" else head
    return key, split or "train"


def read_metrics(metrics_jsonl: str | Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Read a ``metrics.jsonl`` into ``{metric: {split: (steps, values)}}``.

    Each line is a JSON object with a step (``step``, else the line number), optionally a
    ``split`` field, and numeric metrics; keys like ``valid/loss`` or ``val_loss`` name their
    split. Non-numeric and bookkeeping fields (time, epoch) are skipped, as are unreadable lines.
    """
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for i, line in enumerate(Path(metrics_jsonl).read_text().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        step = next((record[k] for k in STEP_KEYS if isinstance(record.get(k), int | float)), i)
        split = record.get("split") if isinstance(record.get("split"), str) else None
        for key, value in record.items():
            if key in STEP_KEYS or key in IGNORED or key == "split":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            metric, s = _series_key(key, split)
            steps, values = series.setdefault(metric, {}).setdefault(s, ([], []))
            steps.append(float(step))
            values.append(float(value))
    return series


def plot_metrics(
    metrics_jsonl: str | Path,
    path: str | Path,
    *,
    loss_label: str = "loss",
    best_step: int | None = None,
    stopped_at: int | None = None,
    title: str | None = None,
) -> Path:
    """Training and validation loss against step (large panel), every other metric in small panels.

    Args:
        metrics_jsonl: the run's log, one JSON object per line (see :func:`read_metrics`).
        path: PNG to write.
        loss_label: what the loss is, with its unit (the y axis), e.g. ``−ELBO (nats per example)``.
        best_step: the step of the best validation score, marked by a dashed line.
        stopped_at: the step where early stopping ended the run, marked by a dotted line.
        title: above the figure (e.g. the model and the data).

    Returns:
        the path written.
    """
    from matplotlib.figure import Figure

    series = read_metrics(metrics_jsonl)
    losses = sorted(m for m in series if m == "loss" or m.startswith("loss/"))  # one per optimizer group
    others = sorted(m for m in series if m not in losses)
    cols = 3
    rows = math.ceil(len(others) / cols)
    fig = Figure(figsize=(11, 4 + 2.6 * rows))
    spec = fig.add_gridspec(2 + rows, cols, height_ratios=[1.6, 1.6] + [1.0] * rows)
    ax = fig.add_subplot(spec[:2, :])
    if losses:
        values = []
        for metric in losses:
            for split, (steps, vals) in sorted(series[metric].items()):
                label = split if metric == "loss" else f"{metric} ({split})"
                ax.plot(steps, vals, label=label, marker="o" if len(steps) < 30 else None, ms=3)
                values += vals
        if min(values) > 0 and max(values) / min(values) > 50:
            ax.set_yscale("log")  # early losses would flatten the rest of the curve
    else:
        ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=ax.transAxes)
    if best_step is not None:
        ax.axvline(best_step, color="0.3", ls="--", lw=1, label=f"best validation (step {best_step})")
    if stopped_at is not None:
        ax.axvline(stopped_at, color="tab:red", ls=":", lw=1.2, label=f"early stop (step {stopped_at})")
    if losses or best_step is not None:
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel(loss_label)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    for i, metric in enumerate(others):
        sub = fig.add_subplot(spec[2 + i // cols, i % cols])
        for split, (steps, vals) in sorted(series[metric].items()):
            sub.plot(steps, vals, label=split, lw=1, marker="o" if len(steps) < 30 else None, ms=2)
        sub.set_title(metric, fontsize=9)
        sub.tick_params(labelsize=7)
        sub.grid(alpha=0.3)
        if len(series[metric]) > 1:
            sub.legend(fontsize=7)
    # a fixed layout in inches: one draw instead of tight_layout's and a tight bounding box's
    # three (a CLI run writes this figure every time, and the test suite trains many runs)
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.85 / 11,
        right=1 - 0.2 / 11,
        bottom=0.45 / height,
        top=1 - 0.45 / height,
        hspace=0.62,
        wspace=0.22,
    )
    return save_figure(fig, Path(path), tight=False)


def _pca_2d(z: Tensor) -> tuple[Tensor, str]:
    """Project (N, d) codes on their first two principal axes (SVD of the centred data)."""
    centred = z - z.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    explained = s.square() / s.square().sum().clamp_min(1e-30)
    return centred @ vh[:2].T, f"PCA of {z.shape[1]}-D codes ({100 * explained[:2].sum():.0f}% of variance)"


def plot_latent_scatter(
    z: Tensor, labels: Tensor | None, path: str | Path, *, names: Sequence[str] | None = None
) -> Path:
    """Scatter of latent codes coloured by label.

    Args:
        z: (N, d) codes, d ≥ 2 plotted directly when d = 2, by their two principal components
            when d > 2 (d = 1 is plotted against the example index).
        labels: (N,) integer classes (a legend) or real values (a colour bar), or None.
        path: PNG to write.
        names: the name of each class, for the legend (default: the class index).

    Returns:
        the path written.
    """
    from matplotlib.figure import Figure

    z = torch.as_tensor(z).detach().double().cpu()
    z = z.reshape(z.shape[0], -1)
    if z.shape[0] == 0:
        raise DataError("plot_latent_scatter needs at least one code")
    if labels is not None and len(labels) != z.shape[0]:
        raise DataError(f"{z.shape[0]} codes but {len(labels)} labels")
    title = "latent codes"
    xlabel, ylabel = "$z_1$", "$z_2$"
    if z.shape[1] == 1:
        z = torch.cat([z, torch.arange(z.shape[0], dtype=z.dtype)[:, None]], 1)
        ylabel = "example"
    elif z.shape[1] > 2:
        z, title = _pca_2d(z)
        xlabel, ylabel = "PC 1", "PC 2"
    xy = z.numpy()
    size = float(min(20.0, max(2.0, 4000.0 / max(len(xy), 1))))  # visible dots for a few hundred codes
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.6, linewidths=0)
    else:
        lab = torch.as_tensor(labels).detach().cpu()
        classes = torch.unique(lab)
        if not lab.is_floating_point() and len(classes) <= 20:
            colors = _qualitative(len(classes))
            for colour, cls in zip(colors, classes.tolist()):
                keep = (lab == cls).numpy()
                ax.scatter(
                    xy[keep, 0],
                    xy[keep, 1],
                    s=size,
                    alpha=0.7,
                    linewidths=0,
                    color=colour,
                    label=names[int(cls)] if names is not None and 0 <= cls < len(names) else str(cls),
                )
            ax.legend(
                markerscale=max(1.0, 12.0 / size), fontsize=7, loc="best", ncol=2 if len(classes) > 10 else 1
            )
        else:
            sc = ax.scatter(
                xy[:, 0], xy[:, 1], c=lab.double().numpy(), s=size, alpha=0.7, linewidths=0, cmap="viridis"
            )
            fig.colorbar(sc, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return save_figure(fig, Path(path))


def _qualitative(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i) for i in range(n)]


def plot_density_2d(
    log_prob_fn: Callable[[Tensor], Tensor],
    samples: Tensor,
    path: str | Path,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
    *,
    resolution: int = 200,
) -> Path:
    """Heat map of p(x) = exp(log_prob_fn(x)) on a grid, beside a scatter of samples.

    Args:
        log_prob_fn: maps (M, 2) points to (M,) log-densities in nats.
        samples: (N, 2) samples (e.g. from the model) to show on the right.
        path: PNG to write.
        bounds: ((x_min, x_max), (y_min, y_max)); the 0.5–99.5 percentiles of the samples with a
            10% margin when None.
        resolution: grid points per axis.

    Returns:
        the path written.
    """
    from matplotlib.figure import Figure

    samples = torch.as_tensor(samples).detach().double().cpu()
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise DataError(f"plot_density_2d needs (N, 2) samples, got {tuple(samples.shape)}")
    if bounds is None:
        lo = np.percentile(samples.numpy(), 0.5, axis=0)
        hi = np.percentile(samples.numpy(), 99.5, axis=0)
        margin = 0.1 * np.maximum(hi - lo, 1e-3)
        bounds = ((lo[0] - margin[0], hi[0] + margin[0]), (lo[1] - margin[1], hi[1] + margin[1]))
    (x0, x1), (y0, y1) = bounds
    gx = torch.linspace(x0, x1, resolution)
    gy = torch.linspace(y0, y1, resolution)
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)  # (R², 2), row-major in y
    with torch.no_grad():
        log_p = torch.cat(
            [torch.as_tensor(log_prob_fn(p)).detach().cpu().double() for p in points.split(2**14)]
        )
    density = torch.exp(torch.nan_to_num(log_p, nan=-math.inf)).reshape(resolution, resolution).numpy()
    fig = Figure(figsize=(10, 4.6))
    ax_d, ax_s = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    im = ax_d.imshow(density, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", cmap="magma")
    fig.colorbar(im, ax=ax_d)
    ax_d.set_title("density $p(x)$")
    xy = samples.numpy()
    ax_s.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5, linewidths=0)
    ax_s.set_xlim(x0, x1)
    ax_s.set_ylim(y0, y1)
    ax_s.set_title(f"{xy.shape[0]} samples")
    for ax in (ax_d, ax_s):
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    fig.tight_layout()
    return save_figure(fig, Path(path))
