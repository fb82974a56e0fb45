"""Figures the benchmark scripts share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def density_grid(
    results: dict,
    rows: Sequence[str],
    columns: Sequence[str],
    root: Path,
    path: Path,
    *,
    value: str = "test_nll",
) -> None:
    """One row per toy, one column per model or objective: the left (density) half of each
    result's figure (``results["ROW/COLUMN"]["figure"]``, relative to ``root``), titled with its
    ``value``; pairs without a result stay blank. Writes a PNG to ``path``."""
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    rows = [r for r in rows if any(k.startswith(r + "/") for k in results)]
    columns = [c for c in columns if any(k.endswith("/" + c) for k in results)]
    fig = Figure(figsize=(2.6 * len(columns), 2.4 * len(rows)))
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            ax = fig.add_subplot(len(rows), len(columns), i * len(columns) + j + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            r = results.get(f"{row}/{column}")
            if r is None:
                continue
            img = np.asarray(Image.open(root / r["figure"]).convert("RGB"))
            ax.imshow(img[:, : img.shape[1] // 2])  # the density half of the figure
            ax.set_title(f"{column}: {r[value]:.3f}", fontsize=8)
            if j == 0:
                ax.set_ylabel(row)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
