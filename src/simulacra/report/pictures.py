"""Pictures of what a trained model does, chosen by what it can do.

Every model: samples (a grid of images, a scatter beside the density heat map for a 2-D density,
or text for character sequences). A latent-variable model adds reconstructions, interpolations,
the decoded manifold of a 2-D latent space and the codes coloured by label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from simulacra.data.info import DataInfo, Split
from simulacra.errors import CapabilityError, DataError
from simulacra.models.base import (
    Denoiser,
    DomainTranslation,
    ExactLikelihood,
    GenerativeModel,
    ImageTranslation,
    LatentVariableModel,
)
from simulacra.tasks.interpolate import interpolate
from simulacra.tasks.manifold import encode_means, latent_manifold
from simulacra.tasks.reconstruct import reconstruct
from simulacra.viz.grids import save_examples, save_grid
from simulacra.viz.plots import plot_density_2d, plot_latent_scatter


def sample_labels(model: GenerativeModel, n: int) -> Tensor | None:
    """The labels the training data have, in turn (0, 1, …, K − 1, 0, 1, …, skipping absent
    ones), (n,), for a conditional model; None otherwise."""
    if not model.conditional:
        return None
    present = model.info.present_labels or [0]
    return torch.tensor(present, dtype=torch.long)[torch.arange(n) % len(present)].to(model.device)


def has_2d_density(model: GenerativeModel) -> bool:
    """An unconditional model with an exact density over 2-D vectors: pictured as a heat map.
    Not diffusion models: their density is a probability-flow ODE solve (minutes on the grid)."""
    return (
        isinstance(model, ExactLikelihood)
        and not isinstance(model, Denoiser)
        and tuple(model.info.event_shape) == (2,)
        and not model.conditional
    )


def density_picture(model: GenerativeModel, samples: Tensor, path: Path, data: Tensor | None = None) -> None:
    """The model's density p(x) as a heat map beside a scatter of its samples (2-D data), on the
    square spanned by the data (or the samples) with a 10% margin, kept inside the support."""
    if not isinstance(model, ExactLikelihood):
        raise CapabilityError(f"{model.preset_name} has no density to picture")
    ref = (samples if data is None else data).double()
    lo = torch.quantile(ref, 0.005, dim=0)
    hi = torch.quantile(ref, 0.995, dim=0)
    margin = 0.1 * (hi - lo).clamp_min(1e-3)
    lo, hi = lo - margin, hi + margin
    support = model.support_bounds()
    if support is not None:  # e.g. angles on the torus: the grid stays inside [-π, π)
        width = support[1] - support[0]
        lo = lo.clamp(min=support[0])
        hi = hi.clamp(max=support[1] - 1e-6 * width)
    bounds = (lo[0].item(), hi[0].item()), (lo[1].item(), hi[1].item())

    def log_prob(points: Tensor) -> Tensor:
        return model.log_prob(points.to(model.device, torch.get_default_dtype())).cpu()

    with torch.no_grad():
        plot_density_2d(log_prob, samples, path, bounds)


def save_text(x: Tensor, info: DataInfo, path: Path) -> None:
    """Decode token sequences (N, T) with ``info.vocabulary`` and write them, one blank line apart."""
    from simulacra.data.text import decode

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(decode(x, info.vocabulary or "")) + "\n", encoding="utf-8")


def save_samples(
    model: GenerativeModel,
    samples: Tensor,
    path: Path,
    data: Tensor | None = None,
    *,
    title: str | None = None,
) -> None:
    """Samples as the model's data are best shown: text, a density beside a scatter, or a grid
    (with ``title`` above it)."""
    if model.info.vocabulary is not None:
        save_text(samples, model.info, path)
    elif has_2d_density(model):
        density_picture(model, samples, path, data)
    else:
        save_examples(samples, model.info, path, title=title)


def report_pictures(
    model: GenerativeModel,
    held_out: Split,
    run_dir: str | Path,
    *,
    seed: int = 0,
    sample_options: dict[str, Any] | None = None,
) -> list[str]:
    """Write the pictures of a trained model into ``run_dir``; returns their file names.

    ``samples.png`` (``samples.txt`` for text) for every model; for a latent-variable model also
    ``reconstructions.png`` (rows of originals above their reconstructions) and
    ``interpolation.png`` for images, ``manifold.png`` for a 2-D latent space of images, and
    ``latents.png`` (codes coloured by label) when the data have labels. Draws use a generator
    seeded with ``seed``; ``sample_options`` go to ``model.sample`` (e.g. a fast sampler).
    """
    run_dir = Path(run_dir)
    model.eval()
    info = model.info
    generator = torch.Generator().manual_seed(seed)
    options = dict(sample_options or {})
    if isinstance(model, ImageTranslation):  # samples are translations of held-out observations
        translations_picture(model, held_out.x[:16], run_dir / "samples.png", generator)
        return ["samples.png"]
    if isinstance(model, DomainTranslation):  # translations of held-out images of both domains
        round_trips_picture(model, domain_examples(model, held_out), run_dir / "samples.png")
        return ["samples.png"]
    c = sample_labels(model, 64)
    if info.vocabulary is not None:  # token sequences: the samples as text
        samples = model.sample(16, None if c is None else c[:16], generator=generator, **options).cpu()
        save_text(samples, info, run_dir / "samples.txt")
        return ["samples.txt"]
    if has_2d_density(model):
        samples = model.sample(2000, generator=generator, **options).cpu()
        density_picture(model, samples, run_dir / "samples.png", held_out.x)
    else:
        title = f"{model.preset_name}: 64 samples ({model.describe_sampling(options)})"
        samples = model.sample(64, c, generator=generator, **options).cpu()
        save_examples(samples, info, run_dir / "samples.png", title=title)
    written = ["samples.png"]
    if isinstance(model, LatentVariableModel):
        written += _latent_pictures(model, held_out, run_dir)
    return written


def translations_picture(
    model: ImageTranslation, x: Tensor, path: Path, generator: torch.Generator | None = None
) -> Path:
    """Rows of (observation P x, translation x̂, original x) for held-out images x (m, C, H, W)."""
    y = model.observe(x.to(model.device))
    out = model.translate(y, generator=generator)
    grid = torch.stack([y.cpu(), out.cpu(), x.cpu()], dim=1)  # (m, 3, C, H, W)
    title = f"{model.degradation.describe()}: observation | translation | original"
    return save_grid(grid.reshape(-1, *x.shape[1:]).clamp(0, 1), path, 3, title=title)


def round_trips_picture(model: DomainTranslation, groups: Sequence[tuple[Tensor, str]], path: Path) -> Path:
    """A grid with one row per image: original | translated | translated back, for each
    (images (k, C, H, W) in data space, direction ``"a->b"`` or ``"b->a"``) of ``groups``."""
    rows, labels = [], []
    name_a, name_b = model.domain_names
    for images, direction in groups:
        if len(images) == 0:
            continue
        back = "b->a" if direction == "a->b" else "a->b"
        moved = model.translate(images, direction)
        rows.append(torch.stack([images.cpu(), moved.cpu(), model.translate(moved, back).cpu()], 1))
        labels += [f"{name_a} > {name_b}" if direction == "a->b" else f"{name_b} > {name_a}"] * len(images)
    if not rows:
        raise DataError(f"no image of {name_a} or {name_b} to translate")
    grid = torch.cat(rows)
    title = "original | translated | translated back"
    return save_grid(grid.reshape(-1, *grid.shape[2:]).clamp(0, 1), path, 3, title=title, row_labels=labels)


def domain_examples(model: DomainTranslation, split: Split, m: int = 8) -> list[tuple[Tensor, str]]:
    """The first m held-out images of each domain with the direction that translates them."""
    a, b = model.split(split.x, split.y)
    return [(a[:m], "a->b"), (b[:m], "b->a")]


def _latent_pictures(model: GenerativeModel, held_out: Split, run_dir: Path) -> list[str]:
    assert isinstance(model, LatentVariableModel)
    info, device = model.info, model.device
    written = []
    x = held_out.x[:32].to(device)
    y = held_out.y[:32].to(device) if (model.conditional and held_out.y is not None) else None
    if info.is_image:
        with torch.no_grad():
            rec = reconstruct(model, x, y)
        # rows alternate originals and reconstructions, up to 8 per row
        cols = min(8, len(x))
        n = (len(x) // cols) * cols
        shape = (n // cols, cols, *x.shape[1:])
        pairs = torch.stack([x[:n].reshape(shape), rec[:n].reshape(shape)], 1)
        save_grid(
            pairs.reshape(-1, *x.shape[1:]).cpu(),
            run_dir / "reconstructions.png",
            nrow=cols,
            title="held-out examples and their reconstructions",
            row_labels=["original", "reconstruction"],
        )
        written.append("reconstructions.png")
        with torch.no_grad():
            rows = [
                interpolate(
                    model,
                    x[2 * i : 2 * i + 1],
                    x[2 * i + 1 : 2 * i + 2],
                    None if y is None else y[2 * i : 2 * i + 1],
                    steps=10,
                )
                for i in range(min(8, len(x) // 2))
            ]
        if rows:
            title = "decoded paths between the codes of held-out pairs (ends: their reconstructions)"
            save_grid(torch.cat(rows).cpu(), run_dir / "interpolation.png", nrow=10, title=title)
            written.append("interpolation.png")
    latent_dim = encode_means(model, x[:2], y[:2] if y is not None else None).shape[-1]
    if latent_dim == 2 and info.is_image and not model.conditional:
        title = "decoded grid of the 2-D latent space (prior quantiles)"
        save_grid(latent_manifold(model, n=20).cpu(), run_dir / "manifold.png", nrow=20, title=title)
        written.append("manifold.png")
    if held_out.y is not None:
        n = min(len(held_out), 2000)
        yy = held_out.y[:n].to(device)
        z = encode_means(model, held_out.x[:n].to(device), yy if model.conditional else None)
        plot_latent_scatter(z.cpu(), held_out.y[:n], run_dir / "latents.png", names=info.label_names)
        written.append("latents.png")
    return written
