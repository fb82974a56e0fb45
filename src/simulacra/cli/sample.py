"""``simulacra sample | evaluate | interpolate RUN``: use a trained run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.cli.common import (
    _at_least,
    _console,
    _held_out,
    _load_run,
    _output_path,
    _print_metrics,
    check_file_destination,
    save_array,
)
from simulacra.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from simulacra.report.pictures import sample_labels, save_samples

    _at_least(args.n, 1, "-n")
    model, weights = _load_run(args.run, args.device, args.weights)
    text = model.info.vocabulary is not None  # token sequences are written as text
    out = _output_path(args.output, Path(args.run) / ("samples.txt" if text else "samples.png"), text=text)
    if args.save_tensor is not None:  # checked before the samples are drawn and the picture written
        if Path(args.save_tensor).suffix != ".npy":
            raise ConfigError(f"--save-tensor {args.save_tensor!r}: expected a file ending in .npy")
        check_file_destination(Path(args.save_tensor), "--save-tensor")
    from simulacra.models.base import DomainTranslation, ImageTranslation

    c, n = None, args.n
    if isinstance(model, DomainTranslation):  # cyclegan: round trips of held-out images of both domains
        return _sample_translations(model, args, out, weights)
    if isinstance(model, ImageTranslation):  # pix2pix: translations of held-out images' observations
        if args.label is not None:
            raise ConfigError(f"{model.preset_name} is not conditional; drop --label")
        _, part = _held_out(args.run, None, None, args.n)
        c = model.observe(part.x.to(torch.get_default_dtype()).to(model.device))
        n = c.shape[0]
    elif model.conditional:
        if args.label is None:
            c = sample_labels(model, args.n)
        else:
            label = model.info.label_index(args.label)
            c = torch.full((args.n,), label, dtype=torch.long, device=model.device)
    elif args.label is not None:
        raise ConfigError(f"{model.preset_name} is not conditional; drop --label")
    options: dict[str, Any] = {}
    mcmc = {"step_size": args.step_size, "init": args.chain_init}
    if "step_size" in model.sample_options:  # energy-based models: MCMC steps, step size, chain start
        if args.sampler is not None or args.guidance is not None:
            raise ConfigError(
                f"{model.preset_name} samples by MCMC; --sampler and --guidance apply to diffusion"
            )
        if args.step_size is not None and not (args.step_size > 0 and math.isfinite(args.step_size)):
            raise ConfigError(f"--step-size must be a positive number; found {args.step_size}")
        mcmc["steps"] = args.sampler_steps
        options.update({k: v for k, v in mcmc.items() if v is not None})
    elif any(v is not None for v in mcmc.values()):
        from simulacra.errors import CapabilityError

        raise CapabilityError("--step-size and --chain-init apply to energy-based models (ebm, jem)")
    elif (args.sampler, args.sampler_steps, args.guidance) != (None, None, None):
        from simulacra.models.base import DiffusionSampling, require
        from simulacra.samplers import resolve_sampler

        hint = "--sampler, --sampler-steps and --guidance apply to diffusion models"
        if not isinstance(model, DiffusionSampling) and "sampler" in model.sample_options:
            # a diffusion model in latent space (lsgm): the sampler draws z, then z is decoded
            if args.sampler is None or args.guidance is not None:
                raise ConfigError(
                    f"{model.preset_name} draws its latents with --sampler NAME (and --sampler-steps); "
                    "--guidance and --sampler-steps alone apply to diffusion models in data space"
                )
            options["sampler"] = resolve_sampler(args.sampler, steps=args.sampler_steps)
        else:
            diffusion = require(model, DiffusionSampling, "denoiser", hint)
            if args.sampler is not None:  # the sampler's own defaults, --sampler-steps overriding its steps
                options["sampler"] = resolve_sampler(args.sampler, steps=args.sampler_steps)
            elif args.sampler_steps is not None:  # the model's default sampler on another grid
                options["sampler"] = diffusion.sampler.with_options(steps=args.sampler_steps)
            if args.guidance is not None:
                options["guidance"] = args.guidance
    decoding = {
        k: v
        for k, v in (("temperature", args.temperature), ("top_k", args.top_k), ("rejection", args.rejection))
        if v is not None
    }
    unsupported = sorted(set(decoding) - model.sample_options)
    if unsupported:
        from simulacra.errors import CapabilityError

        flags = " and ".join("--" + k.replace("_", "-") for k in unsupported)
        raise CapabilityError(
            f"{model.preset_name} takes no {flags} (--temperature: autoregressive models, flows and hierarchical VAEs; "
            "--top-k: autoregressive models; --rejection: GANs)"
        )
    options.update(decoding)
    generator = torch.Generator(model.device).manual_seed(args.seed)
    x = model.sample(n, c, generator=generator, **options).cpu()
    title = f"{model.preset_name}: {n} samples ({model.describe_sampling(options)}; {weights.describe()})"
    save_samples(model, x, out, title=title)
    if args.save_tensor:
        save_array(args.save_tensor, x)
    print(f"wrote {args.n} samples to {out} ({weights.describe()})")
    return 0


def _sample_translations(model: Any, args: argparse.Namespace, out: Path, weights: Any) -> int:
    """``sample`` on a domain-translation model: the first -n held-out images, each translated to
    the other domain and back (a picture), the translations saved with --save-tensor."""
    import torch

    from simulacra.report.pictures import domain_examples, round_trips_picture

    if args.label is not None:
        raise ConfigError(
            f"{model.preset_name} takes no --label; `simulacra translate --to` picks the direction"
        )
    _, part = _held_out(args.run, None, None, args.n)
    groups = domain_examples(model, part, args.n)
    with torch.no_grad():
        round_trips_picture(model, groups, out)
        if args.save_tensor:
            moved = torch.cat([model.translate(x, way).cpu() for x, way in groups if len(x)])
            save_array(args.save_tensor, moved.clamp(0, 1))
    print(f"wrote translations of {len(part)} held-out images to {out} ({weights.describe()})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a run with the registered metrics (``--metric``, default nll, and for a model with
    discrete latents codes too) on a held-out split."""
    from simulacra.metrics.evaluate import METRICS, EvalOptions, estimates_as_dicts, evaluate
    from simulacra.train.checkpoint import atomic_write_json

    _at_least(args.k, 1, "--k")
    _at_least(args.limit, 1, "--limit")
    _at_least(args.samples, 2, "--samples")
    model, weights = _load_run(args.run, args.device, args.weights)
    metrics_wanted = args.metric or ["nll", *(["codes"] if METRICS.get("codes").applies_to(model) else [])]
    _, part = _held_out(args.run, args.split, args.data_dir, args.limit)
    path = Path(args.run) / "metrics.json"
    stored = _stored_metrics(path)  # read first: a corrupt record fails before the work
    options = EvalOptions(
        num_samples=args.k, max_samples=args.samples, seed=args.seed, progress=True, features=args.features
    )
    _announce_duration(model, part, metrics_wanted, options)
    start = time.perf_counter()
    results = estimates_as_dicts(evaluate(model, part, metrics_wanted, options))
    seconds = time.perf_counter() - start
    title = f"{args.split} split, {len(part)} examples, {weights.describe()} ({seconds:.1f} s)"
    _print_metrics(_console(), results, title=title)
    stored.setdefault("evaluations", []).append(
        {
            "split": args.split,
            "k": args.k,
            "weights": weights.kind,
            "weights_step": weights.step,
            "seconds": round(seconds, 2),
            "metrics": results,
        }
    )
    atomic_write_json(path, stored)
    return 0


def _stored_metrics(path: Path) -> dict[str, Any]:
    """The run's ``metrics.json`` ({} when it has none), to which an evaluation is appended.

    Raises:
        CheckpointError: the file is not a JSON object with a list of ``evaluations``.
    """
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is corrupt (not valid JSON: {err}); move it away to record this evaluation"
        ) from None
    if not isinstance(stored, dict) or not isinstance(stored.get("evaluations", []), list):
        raise CheckpointError(
            f"{path} is corrupt: expected a JSON object with a list of 'evaluations'; move it away to "
            "record this evaluation"
        )
    return stored


def _announce_duration(model: Any, part: Any, metrics: list[str], options: Any) -> None:
    """Time each metric on its first batch (a tenth of the examples, as the likelihoods batch
    them) and say how long the whole run will take when that is more than a few seconds."""
    from simulacra.metrics.evaluate import METRICS, seconds_per_example
    from simulacra.metrics.likelihood import default_batch_size

    parts = []
    for name in metrics:
        metric = METRICS.get(name)
        if not metric.applies_to(model):
            continue  # evaluate() says why, with the alternatives
        count = len(part) if metric.requires else min(len(part), options.max_samples)
        if metric.requires:  # the first call of the likelihood, as evaluate() will make it
            first = default_batch_size(count, model.info.dim)
            probe = dataclasses.replace(options, batch_size=first)
        else:  # a tenth of the samples
            first, probe = max(2, math.ceil(count / 10)), options
        per_item = seconds_per_example(model, part, name, probe, probe=first)
        parts.append((name, per_item, count))
    total = sum(per_item * count for _, per_item, count in parts)
    if total > 5:
        detail = ", ".join(f"{name}: {count} × {per_item:.3g} s" for name, per_item, count in parts)
        print(f"estimated duration: about {_duration(total)} ({detail}); --limit N scores fewer examples")


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def _save_paths(x: torch.Tensor, model: Any, out: Path, points: int) -> None:
    """Interpolation paths x (paths · points, *event) as a picture: one path per row."""
    from simulacra.viz.grids import save_examples, save_grid

    if model.info.is_image:
        save_grid(x, out, nrow=points)
    else:
        save_examples(x, model.info, out)


def _interpolate_codes(model: Any, args: argparse.Namespace, out: Path, weights: Any) -> int:
    """A model without an encoder (a GAN): paths between pairs of codes drawn from its prior, one
    label per path for a conditional model (the labels the training data have, in turn)."""
    import torch

    from simulacra.report.pictures import sample_labels
    from simulacra.tasks.interpolate import interpolate_codes

    method = "spherical" if args.method is None else args.method
    c = sample_labels(model, args.pairs) if model.conditional else None
    g = torch.Generator().manual_seed(args.seed)
    x = interpolate_codes(model, args.pairs, c, steps=args.points, method=method, generator=g)
    _save_paths(x, model, out, args.points)
    print(
        f"wrote {args.pairs} {method} paths of {args.points} points between codes drawn from the "
        f"prior to {out} ({weights.describe()})"
    )
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    import torch

    from simulacra.models.base import LatentGenerator, LatentVariableModel, require
    from simulacra.tasks.interpolate import interpolate

    out = _output_path(args.output, Path(args.run) / "interpolation.png")
    model, weights = _load_run(args.run, "cpu", args.weights)
    if args.pairs < 1 or args.points < 2:
        raise ConfigError(f"--pairs must be ≥ 1 and --points ≥ 2; found {args.pairs} and {args.points}")
    if isinstance(model, LatentGenerator) and not isinstance(model, LatentVariableModel):
        return _interpolate_codes(model, args, out, weights)
    require(
        model,
        LatentVariableModel,
        "latent space to interpolate in",
        "it needs an encoder (a VAE or AE) or a GAN",
    )
    method = args.method or "linear"
    _, part = _held_out(args.run, "test", args.data_dir, None)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(part), generator=g)[: 2 * args.pairs]
    if len(idx) < 2:
        raise ConfigError("interpolation needs at least two held-out examples")
    rows = []
    with torch.no_grad():
        for i in range(len(idx) // 2):
            a, b = idx[2 * i : 2 * i + 1], idx[2 * i + 1 : 2 * i + 2]
            c = part.y[a] if model.conditional and part.y is not None else None
            rows.append(interpolate(model, part.x[a], part.x[b], c, steps=args.points, method=method))
    _save_paths(torch.cat(rows), model, out, args.points)
    print(
        f"wrote {len(rows)} {method} interpolations of {args.points} points to {out} ({weights.describe()})"
    )
    return 0
