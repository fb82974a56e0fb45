"""Helpers shared by the verbs: the console, held-out splits, labels, metric tables and the
pictures of 2-D densities. Device names are resolved by
:func:`simulacra.train.distributed.resolve_device`, the one resolver."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from simulacra.data.info import DataInfo, Split
from simulacra.errors import CapabilityError, ConfigError

if TYPE_CHECKING:
    from simulacra.models.base import GenerativeModel

DEFAULT_RUN_ROOT = Path("runs")


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _has_2d_density(model: GenerativeModel) -> bool:
    """An unconditional model with an exact density over 2-D vectors: pictured as a heat map.
    Not diffusion models: their density is a probability-flow ODE solve (minutes on the grid)."""
    from simulacra.models.base import Denoiser, ExactLikelihood

    return (
        isinstance(model, ExactLikelihood)
        and not isinstance(model, Denoiser)
        and tuple(model.info.event_shape) == (2,)
        and not model.conditional
    )


def _density_picture(
    model: GenerativeModel, samples: torch.Tensor, path: Path, data: torch.Tensor | None = None
) -> None:
    """The model's density p(x) as a heat map beside a scatter of its samples (2-D data), on the
    square spanned by the data (or the samples) with a 10% margin."""
    from simulacra.viz.plots import plot_density_2d

    ref = (samples if data is None else data).double()
    lo = torch.quantile(ref, 0.005, dim=0)
    hi = torch.quantile(ref, 0.995, dim=0)
    margin = 0.1 * (hi - lo).clamp_min(1e-3)
    lo, hi = lo - margin, hi + margin
    support = _support_interval(model)
    if support is not None:  # e.g. angles on the torus: the grid stays inside [-π, π)
        width = support[1] - support[0]
        lo = lo.clamp(min=support[0])
        hi = hi.clamp(max=support[1] - 1e-6 * width)
    bounds = (lo[0].item(), hi[0].item()), (lo[1].item(), hi[1].item())

    from simulacra.models.base import ExactLikelihood

    if not isinstance(model, ExactLikelihood):
        raise CapabilityError(f"{model.preset_name} has no density to picture")

    def log_prob(points: torch.Tensor) -> torch.Tensor:
        return model.log_prob(points.to(model.device, torch.get_default_dtype())).cpu()

    with torch.no_grad():
        plot_density_2d(log_prob, samples, path, bounds)


def _support_interval(model: GenerativeModel) -> tuple[float, float] | None:
    """(lower, upper) when the model's base distribution lives on an interval, else None."""
    try:
        support = model.distribution().base.support
    except Exception:
        return None
    support = getattr(support, "base_constraint", support)
    lower, upper = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
    if lower is None or upper is None:
        return None
    return float(torch.as_tensor(lower).min()), float(torch.as_tensor(upper).max())


def _sample_labels(model: GenerativeModel, n: int, info: DataInfo) -> torch.Tensor | None:
    if not model.conditional:
        return None
    k = info.num_classes or 1
    return (torch.arange(n) % k).to(model.device)


def _per_character(metrics: dict[str, Any], info: DataInfo) -> dict[str, Any]:
    """For character sequences (text:PATH) bits/dim are bits per character: report them as ``bpc``."""
    if info.vocabulary is not None and "bpd" in metrics:
        metrics["bpc"] = {**metrics.pop("bpd"), "unit": "bits/character"}
    return metrics


def _save_text(x: torch.Tensor, info: DataInfo, path: Path) -> None:
    """Decode token sequences (N, T) with ``info.vocabulary`` and write them, one blank line apart."""
    from simulacra.data.text import decode

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(decode(x, info.vocabulary)) + "\n", encoding="utf-8")


def _mmd_metrics(model: GenerativeModel, split: Split, n: int, *, seed: int) -> dict[str, Any]:
    from simulacra.metrics.two_sample import mmd

    generator = torch.Generator().manual_seed(seed + 1)
    n = min(n, 500)
    c = split.y[:n].to(model.device) if model.conditional and split.y is not None else None
    samples = model.sample(n, c, generator=generator).cpu()
    value = mmd(samples, split.x[:n])
    return {
        "mmd": {
            "value": value,
            "stderr": float("nan"),
            "estimator": "MMD² (Gaussian kernel, median bandwidth)",
            "unit": "",
            "n": n,
        }
    }


def _print_metrics(console: Any, metrics: dict[str, Any], *, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("metric", "value", "± s.e.", "unit", "estimator"):
        table.add_column(col)
    for name, m in metrics.items():
        se = "" if m["stderr"] != m["stderr"] else f"{m['stderr']:.3f}"
        table.add_row(name, f"{m['value']:.4g}", se, m["unit"], m["estimator"])
    console.print(table)


def _held_out(run: str, split: str | None, data_dir: str | None, limit: int | None) -> tuple[Any, Any]:
    """The run's config and one split of its dataset (the first ``limit`` examples); ``split`` None
    takes the first of test, valid and train that the dataset has."""
    from simulacra.config import RunConfig
    from simulacra.data import load_dataset
    from simulacra.train.checkpoint import load_run_config

    config = RunConfig.from_dict(load_run_config(run)["run"])
    if data_dir:
        config.data.data_dir = data_dir
    data = load_dataset(config.data, seed=config.train.seed)
    part = (data.test or data.valid or data.train) if split is None else getattr(data, split)
    if part is None:
        raise ConfigError(f"dataset {data.name!r} has no {split} split; use --split train or valid")
    if limit is not None:
        from simulacra.data.info import Split

        part = Split(part.x[:limit], None if part.y is None else part.y[:limit])
    return config, part
