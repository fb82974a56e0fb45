"""Image grids and example pictures, written with Pillow (images) or matplotlib (vectors).

Small images are enlarged by nearest-neighbour repetition, so that 8 × 8 digits are readable
and pixels stay sharp. Figures use ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot,
no global state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simulacra.data.info import DataInfo
from simulacra.errors import DataError

MIN_PIXELS = 28  # smallest side of one image in a grid, after upscaling


def grid_columns(n: int) -> int:
    """Images per row for n images: a divisor of n between ⌈√n⌉ and 2⌈√n⌉ when there is one (a
    full rectangle: 64 -> 8 × 8, 50 -> 10 × 5, 12 -> 4 × 3), else ⌈√n⌉ (the last row shorter)."""
    side = math.ceil(math.sqrt(max(1, n)))
    return next((d for d in range(side, min(n, 2 * side) + 1) if n % d == 0), side)


def make_grid(
    images: Tensor,
    nrow: int | None = None,
    padding: int = 1,
    scale: int | None = None,
    *,
    pad_value: float = 0.5,
) -> np.ndarray:
    """Tile images into one uint8 picture.

    Each image is clamped to [0, 1], enlarged ``scale`` times by pixel repetition, and placed on
    a ``pad_value`` background with ``padding`` pixels between images and around the border:

        H' = rows · (s·H + p) + p,   W' = nrow · (s·W + p) + p,   rows = ⌈N / nrow⌉.

    When the last row is shorter, its empty cells are white, not tiles of the background (which
    would read as grey images).

    Args:
        images: (N, C, H, W) with C ∈ {1, 3}, or (N, H, W); values in [0, 1] (NaN shown as 0).
        nrow: images per row; :func:`grid_columns` when None.
        padding: pixels between images and at the border (in output pixels).
        scale: integer upscaling factor; the smallest with s·min(H, W) ≥ 28 when None.
        pad_value: grey level of the background in [0, 1].

    Returns:
        uint8 array (H', W') for one channel, (H', W', 3) for three.
    """
    images = torch.as_tensor(images).detach().float().cpu()
    if images.dim() == 3:
        images = images[:, None]
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise DataError(
            f"make_grid expects images (N, C, H, W) with C in (1, 3) and N ≥ 1, got {tuple(images.shape)}"
        )
    if padding < 0:
        raise DataError(f"padding must be ≥ 0, got {padding}")
    n, ch, h, w = images.shape
    nrow = max(1, min(nrow or grid_columns(n), n))
    rows = math.ceil(n / nrow)
    s = _scale(h, w, scale)
    images = torch.nan_to_num(images, nan=0.0).clamp(0.0, 1.0)
    images = images.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)  # (N, C, sH, sW)
    sh, sw = h * s, w * s
    grid = torch.full(
        (ch, rows * (sh + padding) + padding, nrow * (sw + padding) + padding), float(pad_value)
    )
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (sh + padding), padding + col * (sw + padding)
        grid[:, top : top + sh, left : left + sw] = images[i]
    if n % nrow:  # the empty end of a shorter last row: blank, not grey tiles
        top, left = (rows - 1) * (sh + padding) + padding, (n % nrow) * (sw + padding) + padding
        grid[:, top:, left:] = 1.0
    array = (grid * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    return array[0] if ch == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))


def _scale(h: int, w: int, scale: int | None) -> int:
    s = scale if scale is not None else max(1, math.ceil(MIN_PIXELS / min(h, w)))
    if s < 1:
        raise DataError(f"scale must be a positive integer, got {s}")
    return s


def annotate(
    picture: np.ndarray,
    *,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    row_height: int | None = None,
    top: int = 0,
) -> np.ndarray:
    """``picture`` (H, W) or (H, W, 3) uint8 with a title above it and a label left of each row
    (row i of height ``row_height`` starting ``top`` pixels down), in black on white."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(picture).convert("RGB")
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text: str) -> tuple[int, int]:
        left, upper, right, lower = measure.textbbox((0, 0), text, font=font)
        return right - left, lower - upper

    left = max((size(label)[0] for label in row_labels), default=0) + 10 if row_labels else 0
    band = size(title)[1] + 10 if title else 0
    width = max(left + image.width, size(title)[0] + 10 if title else 0)
    canvas = Image.new("RGB", (width, band + image.height), "white")
    canvas.paste(image, (left, band))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((5, 5), title, fill="black", font=font)
    for i, label in enumerate(row_labels or ()):
        height = row_height or image.height
        y = band + top + i * height + (height - size(label)[1]) // 2
        draw.text((5, y), label, fill="black", font=font)
    return np.asarray(canvas)


def save_grid(
    images: Tensor,
    path: str | Path,
    nrow: int | None = None,
    *,
    padding: int = 1,
    scale: int | None = None,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write :func:`make_grid` of ``images`` (N, C, H, W) as a PNG (parent folders created), with
    an optional ``title`` above it and a label left of each row (cycled over the rows)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = make_grid(images, nrow, padding, scale)
    if title or row_labels:
        shape = torch.as_tensor(images).shape
        cell = _scale(shape[-2], shape[-1], scale) * shape[-2] + padding
        rows = math.ceil(shape[0] / max(1, min(nrow or grid_columns(shape[0]), shape[0])))
        labels = [row_labels[i % len(row_labels)] for i in range(rows)] if row_labels else None
        picture = annotate(picture, title=title, row_labels=labels, row_height=cell, top=padding)
    Image.fromarray(picture).save(path)
    return path


def save_figure(fig: object, path: Path, dpi: int = 120, *, tight: bool = True) -> Path:
    """Render a ``matplotlib.figure.Figure`` with the Agg canvas to a PNG (parent folders created);
    ``tight`` crops it to what is drawn (a second rendering pass), else the figure is saved as laid out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches itself to the figure
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)  # type: ignore[attr-defined]
    return path


def save_examples(
    x: Tensor, info: DataInfo, path: str | Path, *, nrow: int | None = None, title: str | None = None
) -> Path:
    """Picture a batch of examples the way their kind is best seen.

    * images (C, H, W): a grid (:func:`save_grid`), values clamped to [0, 1];
    * 2-D vectors: a scatter plot;
    * other vectors: a heat map with one row per example.

    Args:
        x: (N, *event_shape) examples.
        info: the data's :class:`DataInfo` (decides the picture).
        path: PNG to write; parent folders are created.
        nrow: images per row of a grid.
        title: what the picture shows (e.g. the model and its sampler).

    Returns:
        the path written.
    """
    path = Path(path)
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"save_examples expects a batch (N, *event_shape) with N ≥ 1, got {tuple(x.shape)}")
    if info.is_image:
        return save_grid(x.reshape(x.shape[0], *info.event_shape), path, nrow, title=title)
    from matplotlib.figure import Figure

    flat = x.reshape(x.shape[0], -1).numpy()
    if flat.shape[1] == 2:
        fig = Figure(figsize=(4.5, 4.5))
        ax = fig.add_subplot()
        ax.scatter(flat[:, 0], flat[:, 1], s=6, alpha=0.6, linewidths=0)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(title or f"{flat.shape[0]} examples")
    else:
        fig = Figure(figsize=(min(12.0, 2 + flat.shape[1] * 0.15), min(10.0, 1.5 + flat.shape[0] * 0.12)))
        ax = fig.add_subplot()
        vmin, vmax = (0.0, 1.0) if info.support in ("binary", "unit") else (None, None)
        im = ax.imshow(flat, aspect="auto", interpolation="nearest", cmap="viridis", vmin=vmin, vmax=vmax)
        fig.colorbar(im, ax=ax)
        ax.set_xlabel("dimension")
        ax.set_ylabel("example")
        if title:
            ax.set_title(title)
    return save_figure(fig, path)
