"""The ``simulacra`` command line: train, sample, evaluate, interpolate, models, datasets.

Strings (model, dataset, metric names) are resolved here, once, through the registries. Every
user error is a :class:`SimulacraError`, printed as one ``error: ...`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from simulacra.errors import CheckpointError, ConfigError, SimulacraError

DEFAULT_RUN_ROOT = Path("runs")


# --------------------------------------------------------------------------- parsing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simulacra",
        description="Train, sample, score and compare deep generative models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (or resume a run)")
    p.add_argument("model", nargs="?", help="a registered model (see `simulacra models`)")
    p.add_argument("--data", help="dataset name (see `simulacra datasets`) or a path (.npz/.npy/.csv/folder)")
    p.add_argument("--data-dir", help="folder with downloaded data (default $SIMULACRA_DATA)")
    p.add_argument("--binarize", choices=["static", "dynamic"], help="binarize grey-level data")
    p.add_argument("--epochs", type=float, help="training length in passes over the training split")
    p.add_argument("--steps", type=int, help="training length in optimizer steps (wins over --epochs)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--out", help="run directory (default runs/<model>-<data>)")
    p.add_argument("--config", help="a TOML or JSON file with [model], [data], [train] sections")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.latent_dim=32 --set train.lr=3e-4",
    )
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out if there is one")
    p.add_argument(
        "--eval-samples", type=int, default=None, help="importance samples k for the final test NLL"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("run")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("-o", "--output", default=None, help="PNG to write (default RUN/samples.png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, default=None, help="class label for conditional models")
    p.add_argument("--save-tensor", default=None, help="also save the samples as .npy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sampler", default=None, help="diffusion: ancestral, ddim, pc, dpm-solver, ode, ...")
    p.add_argument("--steps", type=int, default=None, help="diffusion models: the sampler's grid points")
    p.add_argument(
        "--guidance", type=float, default=None, help="conditional diffusion: guidance scale (0 unconditional)"
    )
    p.add_argument(
        "--temperature", type=float, default=None, help="autoregressive models: draw from p^(1/T) per entry"
    )
    p.add_argument(
        "--top-k", type=int, default=None, help="autoregressive models: keep the k likeliest values"
    )

    p = sub.add_parser("evaluate", help="score a trained run on held-out data")
    p.add_argument("run")
    p.add_argument("--metric", action="append", choices=["nll", "mmd"], help="nll (default) and/or mmd")
    p.add_argument("--k", type=int, default=1000, help="importance samples per example (VAE family)")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("interpolate", help="decode paths between encodings of held-out examples")
    p.add_argument("run")
    p.add_argument("-o", "--output", default=None, help="PNG to write (default RUN/interpolation.png)")
    p.add_argument("--method", choices=["linear", "spherical"], default="linear")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)

    p = sub.add_parser(
        "posterior", help="neural posterior estimation on a simulator, with calibration checks"
    )
    p.add_argument("simulator", help="a registered simulator: gaussian-linear, two-moons")
    p.add_argument(
        "--flow", default="nsf", help="conditional flow: nsf (default), nsf-coupling, maf or realnvp"
    )
    p.add_argument("--simulations", type=int, default=10000, help="training pairs (θ, x) to simulate")
    p.add_argument(
        "--steps", type=int, default=3000, help="maximum optimizer steps (early stopping on 10%% held out)"
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--transforms", type=int, default=5, help="flow layers")
    p.add_argument("--hidden", default="64,64", help="hidden widths of each layer's network, e.g. 64,64")
    p.add_argument("--observation", default=None, help="x_o as 'x1,x2,...' (default: the task's own)")
    p.add_argument("--samples", type=int, default=10000, help="posterior draws for the plot and metrics")
    p.add_argument("--sbc-trials", type=int, default=200, help="calibration trials (θ*, x) ~ p(θ, x)")
    p.add_argument("--sbc-samples", type=int, default=100, help="posterior draws per calibration trial")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default runs/posterior-<simulator>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("models", help="list the registered models")
    sub.add_parser("datasets", help="list the registered datasets")
    return parser


# --------------------------------------------------------------------------- helpers


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} was asked for but CUDA is not available; use --device cpu or auto"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None


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


# --------------------------------------------------------------------------- commands


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

    device = _resolve_device(config.train.device)
    dist = init_from_env(device)
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
    model: Any, data: Any, run_dir: Path, config: Any, result: Any, args: Any, console: Any
) -> None:
    """Pictures and held-out metrics of a finished run (rank 0 only)."""
    from simulacra.errors import CapabilityError
    from simulacra.models.base import ImportanceWeighted
    from simulacra.tasks.posthoc import fit_latent_density
    from simulacra.train.checkpoint import save_model
    from simulacra.viz.plots import plot_metrics

    model.eval()
    if hasattr(model, "fit_latent_density"):
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


def _pictures(model: Any, info: Any, held_out: Any, run_dir: Path, *, seed: int) -> list[str]:
    from simulacra.models.base import LatentVariableModel
    from simulacra.tasks.interpolate import interpolate
    from simulacra.tasks.manifold import encode_means, latent_manifold
    from simulacra.tasks.reconstruct import reconstruct
    from simulacra.viz.grids import save_examples, save_grid
    from simulacra.viz.plots import plot_latent_scatter

    written = []
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
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


def _has_2d_density(model: Any) -> bool:
    """An unconditional model with an exact density over 2-D vectors: pictured as a heat map.
    Not diffusion models: their density is a probability-flow ODE solve (minutes on the grid)."""
    from simulacra.models.base import Denoiser, ExactLikelihood

    return (
        isinstance(model, ExactLikelihood)
        and not isinstance(model, Denoiser)
        and tuple(model.info.event_shape) == (2,)
        and not getattr(model, "conditional", False)
    )


def _density_picture(model: Any, samples: torch.Tensor, path: Path, data: torch.Tensor | None = None) -> None:
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

    def log_prob(points: torch.Tensor) -> torch.Tensor:
        return model.log_prob(points.to(model.device, torch.get_default_dtype())).cpu()

    with torch.no_grad():
        plot_density_2d(log_prob, samples, path, bounds)


def _support_interval(model: Any) -> tuple[float, float] | None:
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


def _sample_labels(model: Any, n: int, info: Any) -> torch.Tensor | None:
    if not getattr(model, "conditional", False):
        return None
    k = info.num_classes or 1
    return (torch.arange(n) % k).to(model.device)


def _nll_metrics(model: Any, split: Any, n: int, k: int, *, seed: int) -> dict[str, Any]:
    from simulacra.metrics.likelihood import evaluate_nll

    x = split.x[:n].to(model.device)
    c = split.y[:n].to(model.device) if getattr(model, "conditional", False) and split.y is not None else None
    estimates = evaluate_nll(model, x, c, num_samples=k, generator=torch.Generator().manual_seed(seed))
    return _per_character(
        {
            name: {"value": e.value, "stderr": e.stderr, "estimator": e.estimator, "unit": e.unit, "n": e.n}
            for name, e in estimates.items()
        },
        model.info,
    )


def _per_character(metrics: dict[str, Any], info: Any) -> dict[str, Any]:
    """For character sequences (text:PATH) bits/dim are bits per character: report them as ``bpc``."""
    if getattr(info, "vocabulary", None) is not None and "bpd" in metrics:
        metrics["bpc"] = {**metrics.pop("bpd"), "unit": "bits/character"}
    return metrics


def _save_text(x: torch.Tensor, info: Any, path: Path) -> None:
    """Decode token sequences (N, T) with ``info.vocabulary`` and write them, one blank line apart."""
    from simulacra.data.text import decode

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(decode(x, info.vocabulary)) + "\n", encoding="utf-8")


def _mmd_metrics(model: Any, split: Any, n: int, *, seed: int) -> dict[str, Any]:
    from simulacra.metrics.two_sample import mmd

    generator = torch.Generator().manual_seed(seed + 1)
    n = min(n, 500)
    with torch.no_grad():
        c = (
            split.y[:n].to(model.device)
            if getattr(model, "conditional", False) and split.y is not None
            else None
        )
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


def cmd_sample(args: argparse.Namespace) -> int:
    from simulacra.train.checkpoint import load_model
    from simulacra.viz.grids import save_examples

    if args.n < 1:
        raise ConfigError(f"-n must be at least 1, got {args.n}")
    model = load_model(args.run, device=_resolve_device(args.device))
    c = None
    if model.conditional:
        if args.label is None:
            c = _sample_labels(model, args.n, model.info)
        else:
            k = model.info.num_classes or 0
            if not 0 <= args.label < k:
                raise ConfigError(f"--label must be in 0..{k - 1}, got {args.label}")
            c = torch.full((args.n,), args.label, dtype=torch.long, device=model.device)
    elif args.label is not None:
        raise ConfigError(f"{model.preset_name} is not conditional; drop --label")
    options = {
        key: value
        for key, value in (("sampler", args.sampler), ("steps", args.steps), ("guidance", args.guidance))
        if value is not None
    }
    if options:
        from simulacra.models.base import Denoiser, require

        require(model, Denoiser, "denoiser", "--sampler, --steps and --guidance apply to diffusion models")
    decoding = {k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k)) if v is not None}
    if decoding and not set(decoding) <= set(inspect.signature(model.sample).parameters):
        from simulacra.errors import CapabilityError

        raise CapabilityError(
            f"{model.preset_name}: --temperature and --top-k apply to autoregressive models"
        )
    options.update(decoding)
    with torch.no_grad():
        generator = torch.Generator(model.device).manual_seed(args.seed)
        x = model.sample(args.n, c, generator=generator, **options).cpu()
    text = model.info.vocabulary is not None  # token sequences are written as text
    out = Path(args.output) if args.output else Path(args.run) / ("samples.txt" if text else "samples.png")
    if text:
        _save_text(x, model.info, out)
    elif _has_2d_density(model):
        _density_picture(model, x, out)
    else:
        save_examples(x, model.info, out)
    if args.save_tensor:
        import numpy as np

        np.save(args.save_tensor, x.numpy())
    print(f"wrote {args.n} samples to {out}")
    return 0


def _held_out(run: str, split: str, data_dir: str | None, limit: int | None) -> tuple[Any, Any]:
    from simulacra.config import RunConfig
    from simulacra.data import load_dataset
    from simulacra.train.checkpoint import load_run_config

    config = RunConfig.from_dict(load_run_config(run)["run"])
    if data_dir:
        config.data.data_dir = data_dir
    data = load_dataset(config.data, seed=config.train.seed)
    part = getattr(data, split)
    if part is None:
        raise ConfigError(f"dataset {data.name!r} has no {split} split; use --split train or valid")
    if limit is not None:
        from simulacra.data.info import Split

        part = Split(part.x[:limit], None if part.y is None else part.y[:limit])
    return config, part


def cmd_evaluate(args: argparse.Namespace) -> int:
    from simulacra.train.checkpoint import load_model

    metrics_wanted = args.metric or ["nll"]
    model = load_model(args.run, device=_resolve_device(args.device))
    model.eval()
    _, part = _held_out(args.run, args.split, args.data_dir, args.limit)
    results: dict[str, Any] = {}
    start = time.perf_counter()
    if "nll" in metrics_wanted:
        from simulacra.metrics.likelihood import evaluate_nll

        c = part.y.to(model.device) if model.conditional and part.y is not None else None
        estimates = evaluate_nll(
            model,
            part.x.to(model.device),
            c,
            num_samples=args.k,
            generator=torch.Generator().manual_seed(args.seed),
            progress=True,
        )
        for name, e in estimates.items():
            results[name] = {
                "value": e.value,
                "stderr": e.stderr,
                "estimator": e.estimator,
                "unit": e.unit,
                "n": e.n,
            }
    _per_character(results, model.info)
    if "mmd" in metrics_wanted:
        results.update(_mmd_metrics(model, part, len(part), seed=args.seed))
    seconds = time.perf_counter() - start
    _print_metrics(_console(), results, title=f"{args.split} split, {len(part)} examples ({seconds:.1f} s)")
    path = Path(args.run) / "metrics.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored.setdefault("evaluations", []).append(
        {"split": args.split, "k": args.k, "seconds": round(seconds, 2), "metrics": results}
    )
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(stored, indent=2) + "\n")
    os.replace(tmp, path)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from simulacra.models.base import LatentVariableModel, require
    from simulacra.tasks.interpolate import interpolate
    from simulacra.train.checkpoint import load_model
    from simulacra.viz.grids import save_examples

    model = load_model(args.run)
    require(model, LatentVariableModel, "latent space to interpolate in")
    _, part = _held_out(args.run, "test", args.data_dir, None)
    if args.pairs < 1 or args.steps < 2:
        raise ConfigError("--pairs must be ≥ 1 and --steps ≥ 2")
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(part), generator=g)[: 2 * args.pairs]
    if len(idx) < 2:
        raise ConfigError("interpolation needs at least two held-out examples")
    rows = []
    with torch.no_grad():
        for i in range(len(idx) // 2):
            a, b = idx[2 * i : 2 * i + 1], idx[2 * i + 1 : 2 * i + 2]
            c = part.y[a] if model.conditional and part.y is not None else None
            rows.append(interpolate(model, part.x[a], part.x[b], c, steps=args.steps, method=args.method))
    out = Path(args.output) if args.output else Path(args.run) / "interpolation.png"
    x = torch.cat(rows)
    if model.info.is_image:
        from simulacra.viz.grids import save_grid

        save_grid(x, out, nrow=args.steps)
    else:
        save_examples(x, model.info, out)
    print(f"wrote {len(rows)} {args.method} interpolations of {args.steps} steps to {out}")
    return 0


def _float_list(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ConfigError(
            f"{what} must be comma-separated numbers, e.g. '0.1,-0.2'; found {text!r}"
        ) from None


def cmd_posterior(args: argparse.Namespace) -> int:
    """Train q(θ | x) on simulations, then picture it at x_o and check its calibration."""
    from simulacra.tasks.calibration import expected_coverage, posterior_agreement, sbc_ranks
    from simulacra.tasks.posterior import ExactPosterior, build_simulator, train_posterior
    from simulacra.viz.posterior import plot_calibration, plot_corner

    simulator = build_simulator(args.simulator)
    hidden = [int(h) for h in _float_list(args.hidden, "--hidden")]
    for name in ("simulations", "steps", "samples", "sbc_trials", "sbc_samples"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.observation is None:
        x_obs = simulator.default_observation()
    else:
        x_obs = simulator.check_x(torch.tensor(_float_list(args.observation, "--observation")))
    out = Path(args.out) if args.out else DEFAULT_RUN_ROOT / f"posterior-{args.simulator}"
    console = _console()
    console.print(
        f"[bold]{args.flow}[/] posterior for [bold]{simulator.name}[/] (θ ∈ R^{simulator.theta_dim}, "
        f"x ∈ R^{simulator.x_dim}) from {args.simulations} simulations -> {out}"
    )
    estimator = train_posterior(
        simulator,
        args.flow,
        args.simulations,
        transforms=args.transforms,
        hidden=hidden,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress,
    )
    estimator.save(out)
    generator = torch.Generator().manual_seed(args.seed + 1)
    draws = estimator.sample(x_obs, args.samples, generator)
    exact = simulator.true_posterior(x_obs)
    reference = ExactPosterior(simulator) if exact is not None else None
    observed = ", ".join(f"{v:.3g}" for v in x_obs.tolist())
    ref_draws = reference.sample(x_obs, args.samples, generator) if reference is not None else None
    plot_corner(
        draws, out / "posterior.png", reference=ref_draws, title=f"{simulator.name}: q(θ | x = ({observed}))"
    )
    metrics: dict[str, Any] = {
        "simulator": simulator.spec(),
        "flow": args.flow,
        "observation": x_obs.tolist(),
        "training": estimator.training_summary,
        "posterior": {},
    }
    if reference is not None:
        metrics["posterior"] = posterior_agreement(
            estimator, reference, x_obs, min(args.samples, 5000), generator
        )
    sbc = sbc_ranks(estimator, simulator, args.sbc_trials, args.sbc_samples, generator)
    coverage = expected_coverage(estimator, simulator, args.sbc_trials, args.sbc_samples, generator)
    plot_calibration(sbc, coverage, out / "calibration.png")
    metrics["calibration"] = {
        "trials": args.sbc_trials,
        "posterior_samples": args.sbc_samples,
        "sbc": {"bins": sbc.bins, "chi2": sbc.statistics.tolist(), "p_values": sbc.p_values.tolist()},
        "coverage": {
            "levels": coverage.levels.tolist(),
            "coverage": coverage.coverage.tolist(),
            "stderr": coverage.stderr.tolist(),
            "max_error": coverage.max_error,
        },
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    table = dict(metrics["posterior"])
    table["sbc_min_p"] = {
        "value": float(sbc.p_values.min()),
        "stderr": float("nan"),
        "estimator": f"SBC χ² p-value, min over θ ({args.sbc_trials} trials, {sbc.bins} bins)",
        "unit": "",
    }
    table["coverage_max_error"] = {
        "value": coverage.max_error,
        "stderr": float("nan"),
        "estimator": "max over c of |HPD coverage(c) − c|",
        "unit": "",
    }
    seconds = estimator.training_summary["seconds"]
    _print_metrics(console, table, title=f"posterior at x_o = ({observed}), trained in {seconds:.1f} s")
    console.print(
        f"wrote {out}/: posterior.safetensors, posterior.json, posterior.png, calibration.png, metrics.json"
    )
    return 0


def _print_registry(title: str, described: dict[str, str]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, description in described.items():
        table.add_row(name, description)
    _console().print(table)


def cmd_models(args: argparse.Namespace) -> int:
    from simulacra.models.zoo import MODELS

    _print_registry("registered models", MODELS.describe())
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from simulacra.data import DATASETS

    _print_registry(
        "registered datasets (or pass a path: .npz, .npy, .csv, image folder)", DATASETS.describe()
    )
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "evaluate": cmd_evaluate,
    "interpolate": cmd_interpolate,
    "models": cmd_models,
    "datasets": cmd_datasets,
    "posterior": cmd_posterior,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``simulacra`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SimulacraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as err:  # a path the user gave that a lower layer did not check
        print(f"error: {CheckpointError.__name__}: no such file: {err.filename}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
