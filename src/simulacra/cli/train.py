"""``simulacra train``: configure, fit, then picture and score the finished run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from simulacra.cli.common import (
    DEFAULT_RUN_ROOT,
    _console,
    _density_picture,
    _has_2d_density,
    _mmd_metrics,
    _per_character,
    _print_metrics,
    _sample_labels,
    _save_text,
)
from simulacra.data.info import DataInfo, Split
from simulacra.errors import ConfigError

if TYPE_CHECKING:
    from simulacra.models.base import GenerativeModel


def _train_raw_config(args: argparse.Namespace) -> dict[str, Any]:
    """Merge config file, flags and --set overrides (in that order of precedence, last wins)."""
    from simulacra.config import apply_overrides, load_config

    raw: dict[str, Any] = load_config(args.config) if args.config else {}
    raw = {k: dict(v) for k, v in raw.items()}
    if args.model:
        raw.setdefault("model", {})["name"] = args.model
    if "name" not in raw.get("model", {}):
        raise ConfigError(
            "which model? give one, e.g. `simulacra train vae --data digits` (see `simulacra models`)"
        )
    data = raw.setdefault("data", {})
    train = raw.setdefault("train", {})
    for key, value in (("name", args.data), ("data_dir", args.data_dir), ("binarize", args.binarize)):
        if value is not None:
            data[key] = value
    if args.steps is not None:
        train["steps"] = args.steps
    if args.epochs is not None:
        train["epochs"] = args.epochs
        if args.steps is None:
            train.pop("steps", None)
    for key in ("batch_size", "lr", "seed", "device"):
        value = getattr(args, key)
        if value is not None:
            train[key] = value
    return apply_overrides(raw, args.overrides)


def _default_out(raw: dict[str, Any]) -> Path:
    data = Path(str(raw.get("data", {}).get("name", "digits"))).stem
    return DEFAULT_RUN_ROOT / f"{raw['model']['name']}-{data}"


def cmd_train(args: argparse.Namespace) -> int:
    from simulacra.config import RunConfig
    from simulacra.data import load_dataset
    from simulacra.models.zoo import build_model
    from simulacra.train import fit
    from simulacra.train.checkpoint import load_run_config
    from simulacra.train.distributed import cleanup, init_from_env
    from simulacra.viz.grids import save_examples

    if args.resume:
        run_dir = Path(args.resume)
        raw = load_run_config(run_dir)["run"]
        if args.overrides or args.model or args.config:
            raise ConfigError("--resume continues a run as it was configured; drop MODEL, --config and --set")
    else:
        raw = _train_raw_config(args)
        run_dir = Path(args.out) if args.out else _default_out(raw)
    config = RunConfig.from_dict(raw)

    dist = init_from_env(config.train.device)
    if args.overwrite and not args.resume and dist.is_main:
        _remove_run(run_dir)
    if dist.world_size > 1:
        torch.distributed.barrier()
    try:
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        data = load_dataset(config.data, seed=config.train.seed)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, data.info)  # on --resume, fit restores the saved state
        console = _console()
        if dist.is_main:
            n_params = sum(p.numel() for p in model.parameters())
            console.print(
                f"[bold]{config.model['name']}[/] on [bold]{data.name}[/] "
                f"({len(data.train)} train examples of shape {tuple(data.info.event_shape)}, "
                f"{n_params:,} parameters) -> {run_dir}"
            )
        result = fit(
            model,
            data,
            config.train,
            run_dir=run_dir,
            run_config=config.to_dict(),
            resume=bool(args.resume),
            progress=not args.no_progress,
            sample_writer=lambda x, path: save_examples(x, data.info, path),
        )
        if dist.is_main:
            _after_training(model, data, run_dir, config, result, args, console)
    finally:
        cleanup()
    return 0


def _remove_run(run_dir: Path) -> None:
    """Delete a previous run in ``run_dir`` (only a folder that holds a run, never anything else)."""
    if not run_dir.exists():
        return
    if not (run_dir / "config.json").is_file():
        raise ConfigError(
            f"--overwrite: {str(run_dir)!r} exists but holds no run (no config.json); not deleting it"
        )
    import shutil

    shutil.rmtree(run_dir)


def _after_training(
    model: GenerativeModel, data: Any, run_dir: Path, config: Any, result: Any, args: Any, console: Any
) -> None:
    """Pictures and held-out metrics of a finished run (rank 0 only)."""
    from simulacra.errors import CapabilityError
    from simulacra.models.base import ImportanceWeighted, PostHocPrior
    from simulacra.tasks.posthoc import fit_latent_density
    from simulacra.train.checkpoint import save_model
    from simulacra.viz.plots import plot_metrics

    model.eval()
    if isinstance(model, PostHocPrior):
        fit_latent_density(model, data.train.x, data.train.y if model.conditional else None)
        save_model(model, run_dir, config.to_dict())
    held_out = data.test or data.valid or data.train
    pictures = _pictures(model, data.info, held_out, run_dir, seed=config.train.seed)
    metrics: dict[str, Any] = {
        "model": config.model["name"],
        "data": data.name,
        "steps": result.steps,
        "train_seconds": round(result.wall_time, 2),
        "examples_per_s": round(result.examples_per_s, 1),
    }
    n_eval = min(len(held_out), 1000)
    try:
        k = args.eval_samples or (200 if isinstance(model, ImportanceWeighted) else 1)
        metrics["test"] = _nll_metrics(model, held_out, n_eval, k, seed=config.train.seed)
    except CapabilityError:
        metrics["test"] = {}  # e.g. an auto-encoder has no likelihood; MMD below scores its samples
    metrics["test"].update(_mmd_metrics(model, held_out, n_eval, seed=config.train.seed))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if (run_dir / "metrics.jsonl").is_file():
        plot_metrics(run_dir / "metrics.jsonl", run_dir / "training.png")
        pictures.append("training.png")
    _print_metrics(console, metrics.get("test", {}), title=f"held-out metrics ({n_eval} examples)")
    console.print(f"wrote {run_dir}/: model.safetensors, metrics.json, " + ", ".join(pictures))


def _pictures(
    model: GenerativeModel, info: DataInfo, held_out: Split, run_dir: Path, *, seed: int
) -> list[str]:
    from simulacra.models.base import LatentVariableModel
    from simulacra.tasks.interpolate import interpolate
    from simulacra.tasks.manifold import encode_means, latent_manifold
    from simulacra.tasks.reconstruct import reconstruct
    from simulacra.viz.grids import save_examples, save_grid
    from simulacra.viz.plots import plot_latent_scatter

    written = []
    generator = torch.Generator().manual_seed(seed)
    c = _sample_labels(model, 64, info)
    if info.vocabulary is not None:  # token sequences: the samples as text
        samples = model.sample(16, None if c is None else c[:16], generator=generator).cpu()
        _save_text(samples, info, run_dir / "samples.txt")
        return ["samples.txt"]
    if _has_2d_density(model):
        samples = model.sample(2000, generator=generator).cpu()
        _density_picture(model, samples, run_dir / "samples.png", held_out.x)
    else:
        save_examples(model.sample(64, c, generator=generator).cpu(), info, run_dir / "samples.png")
    written.append("samples.png")
    if not isinstance(model, LatentVariableModel):
        return written
    with torch.no_grad():
        x = held_out.x[:32].to(model.device)
        y = held_out.y[:32].to(model.device) if (model.conditional and held_out.y is not None) else None
        if info.is_image:
            rec = reconstruct(model, x, y)
            # rows alternate originals and reconstructions, up to 8 per row
            cols = min(8, len(x))
            n = (len(x) // cols) * cols
            shape = (n // cols, cols, *x.shape[1:])
            pairs = torch.stack([x[:n].reshape(shape), rec[:n].reshape(shape)], 1)
            save_grid(pairs.reshape(-1, *x.shape[1:]).cpu(), run_dir / "reconstructions.png", nrow=cols)
            written.append("reconstructions.png")
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
                save_grid(torch.cat(rows).cpu(), run_dir / "interpolation.png", nrow=10)
                written.append("interpolation.png")
        latent_dim = encode_means(model, x[:2], y[:2] if y is not None else None).shape[-1]
        if latent_dim == 2 and info.is_image and not model.conditional:
            save_grid(latent_manifold(model, n=20).cpu(), run_dir / "manifold.png", nrow=20)
            written.append("manifold.png")
        if held_out.y is not None:
            n = min(len(held_out), 2000)
            yy = held_out.y[:n].to(model.device)
            z = encode_means(model, held_out.x[:n].to(model.device), yy if model.conditional else None)
            plot_latent_scatter(z.cpu(), held_out.y[:n], run_dir / "latents.png")
            written.append("latents.png")
    return written


def _nll_metrics(model: GenerativeModel, split: Split, n: int, k: int, *, seed: int) -> dict[str, Any]:
    from simulacra.metrics.likelihood import evaluate_nll

    x = split.x[:n].to(model.device)
    c = split.y[:n].to(model.device) if model.conditional and split.y is not None else None
    estimates = evaluate_nll(model, x, c, num_samples=k, generator=torch.Generator().manual_seed(seed))
    return _per_character(
        {
            name: {"value": e.value, "stderr": e.stderr, "estimator": e.estimator, "unit": e.unit, "n": e.n}
            for name, e in estimates.items()
        },
        model.info,
    )
