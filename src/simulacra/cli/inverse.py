"""``simulacra inpaint | super-resolve | denoise | colorize RUN``: inverse problems with a trained
diffusion model, or a pix2pix trained for that problem (see :mod:`simulacra.tasks.inverse`).

The observation is an image file (``--image``, never resized: it must have the model's size, or
for super-resolution the size divided by the factor) or, without ``--image``, ``--examples K``
held-out images of the run's own dataset (its test split, else valid, else train), degraded here
(masked, block-averaged, noised or made grey) so that the picture can show the truth beside the
answer. A conditional model is given ``--label``, else the held-out examples' own labels. The
output PNG has one row per observation: the observation, ``-n`` solutions, and the original when
it is known.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.cli.common import _held_out, _load_run, _output_path, integer, seed_arg
from simulacra.errors import CapabilityError, ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from simulacra.models.base import GenerativeModel

MASK_KINDS = ("center", "left", "right", "top", "bottom", "random")
"""The built-in masks, :data:`simulacra.data.degradations.MASKS` spelled out so that the parser is
built without importing torch (a test checks that the two agree)."""

VERBS = {
    "inpaint": "fill a masked region (diffusion: RePaint with --resample > 1; autoregressive: exact "
    "completion, e.g. --mask-kind bottom under a raster order; VAE: importance resampling)",
    "super-resolve": "upsample x2 or x4 consistently with the low-resolution image",
    "denoise": "remove Gaussian noise of a known standard deviation",
    "colorize": "colour a grey image (models of colour images)",
}


def add_parsers(sub: Any) -> None:
    """Add the four verbs to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    for verb, text in VERBS.items():
        p = sub.add_parser(verb, help=text if verb == "inpaint" else f"diffusion models: {text}")
        p.add_argument("run", help="a run directory written by `simulacra train`")
        p.add_argument(
            "--weights",
            choices=["ema", "raw"],
            default=None,
            help="the moving average (default) or raw weights",
        )
        p.add_argument("--image", default=None, help="the observation (PNG/JPEG); default: held-out examples")
        p.add_argument(
            "--examples", type=integer, default=4, help="held-out images to degrade when no --image"
        )
        p.add_argument("-n", type=integer, default=3, help="solutions per observation")
        p.add_argument("-o", "--output", default=None, help=f"PNG to write (default RUN/{verb}.png)")
        p.add_argument(
            "--sampler-steps", type=integer, default=None, help="sampler grid points (default: the model's)"
        )
        p.add_argument("--label", default=None, help="class label (index or name) for conditional models")
        p.add_argument("--seed", type=seed_arg, default=0, help="seeds the masks, the noise and the sampler")
        p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
        p.add_argument(
            "--data-dir", default=None, help="folder with downloaded data, if it moved since training"
        )
        if verb == "inpaint":
            p.add_argument(
                "--mask", default=None, help="PNG: white = the region to fill (the model's image size)"
            )
            p.add_argument(
                "--mask-kind", choices=MASK_KINDS, default="center", help="built-in mask when no --mask"
            )
            p.add_argument(
                "--resample", type=integer, default=5, help="RePaint repetitions per step (1 = replacement)"
            )
        if verb in ("super-resolve", "colorize"):
            p.add_argument("--resample", type=integer, default=1, help="RePaint-style repetitions per step")
        if verb == "super-resolve":
            p.add_argument(
                "--factor", type=integer, choices=[2, 4], default=2, help="upsampling factor (default 2)"
            )
        if verb == "denoise":
            p.add_argument("--noise", type=float, default=0.2, help="noise standard deviation (data units)")
            p.add_argument("--sampler", default="ancestral", help="a stochastic sampler draws from p(x | y)")


def builtin_mask(kind: str, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """(C, H, W) mask, 1 = kept (:func:`simulacra.data.degradations.image_mask`)."""
    from simulacra.data.degradations import image_mask

    return image_mask(kind, shape, generator)


def _read(path: str, channels: int, size: tuple[int, int], what: str) -> torch.Tensor:
    """An image file as (1, ``channels``, H, W) in [0, 1]; colour made grey or grey repeated to fit,
    and (H, W) checked against ``size``."""
    import torch

    from simulacra.data.files import read_image

    x = read_image(Path(path))  # (C, H, W) in [0, 1]
    if tuple(x.shape[-2:]) != size:
        raise DataError(
            f"{what} {str(path)!r} is {x.shape[-1]}x{x.shape[-2]} pixels (W x H); "
            f"expected {size[1]}x{size[0]} (images are never resized)"
        )
    if x.shape[0] != channels:
        x = x.mean(0, keepdim=True) if channels == 1 else x.mean(0, keepdim=True).expand(channels, -1, -1)
    return x[None].to(torch.get_default_dtype())


def _labels(
    args: argparse.Namespace, model: GenerativeModel, known: torch.Tensor | None, m: int
) -> torch.Tensor | None:
    """(m · n,) class labels for a conditional model: ``--label``, else the held-out examples'
    own labels, else labels cycling through the classes; None for an unconditional model."""
    import torch

    if not model.conditional:
        if args.label is not None:
            raise ConfigError(f"{model.preset_name} is not conditional; drop --label")
        return None
    if args.label is not None:
        label = model.info.label_index(args.label)
        return torch.full((m * args.n,), label, dtype=torch.long, device=model.device)
    if known is not None:
        return known.long().repeat_interleave(args.n).to(model.device)
    from simulacra.report.pictures import sample_labels

    return sample_labels(model, m * args.n)


def cmd_inverse(args: argparse.Namespace) -> int:
    """Run one of the four verbs (``args.command``) and write the picture of its solutions."""
    import torch
    import torch.nn.functional as F

    from simulacra.models.base import Completion, DiffusionSampling, ImageTranslation, require
    from simulacra.samplers import resolve_sampler
    from simulacra.tasks import inverse
    from simulacra.viz.grids import save_grid

    verb = args.command
    if args.n < 1 or args.examples < 1:
        raise ConfigError(f"-n and --examples must be at least 1; found {args.n} and {args.examples}")
    if args.sampler_steps is not None and args.sampler_steps < 1:
        raise ConfigError(f"--sampler-steps must be at least 1, got {args.sampler_steps}")
    path = _output_path(args.output, Path(args.run) / f"{verb}.png")
    model, weights = _load_run(args.run, args.device, args.weights)
    translates = isinstance(model, ImageTranslation) and verb != "denoise"  # pix2pix, one task
    completes = verb == "inpaint" and isinstance(model, Completion)  # autoregressive models and VAEs inpaint
    if not (translates or completes):
        needs = (
            "inpainting needs a diffusion model (e.g. ddpm), an autoregressive one (e.g. pixelcnn) or a "
            "VAE, or a pix2pix trained for it"
            if verb == "inpaint"
            else f"{verb} needs a diffusion model (e.g. ddpm) or a pix2pix trained for it"
        )
        require(model, DiffusionSampling, "denoiser", needs)
    shape = tuple(int(s) for s in model.info.event_shape)
    if not model.info.is_image:
        raise DataError(f"{verb} works on images (C, H, W); this model's examples have shape {shape}")
    c, h, w = shape
    if verb == "colorize" and c < 2:
        raise CapabilityError(
            f"{model.preset_name} models grey images (1 channel); colorize needs a model of colour "
            "images (3 channels)"
        )
    data_generator = torch.Generator().manual_seed(args.seed)  # masks and noise, on the CPU
    generator = torch.Generator(model.device).manual_seed(args.seed)  # the sampler's
    truth = known = None
    if args.image is None:
        _, part = _held_out(args.run, None, args.data_dir, args.examples)  # test, else valid or train
        truth = part.x.to(torch.get_default_dtype())  # (m, C, H, W)
        known = part.y
        if tuple(truth.shape[1:]) != shape:
            raise DataError(
                f"the run's dataset has examples of shape {tuple(truth.shape[1:])} but the model's are "
                f"{shape}: its config.json names another dataset; pass --image FILE instead"
            )

    # y: the observation (what the task is given); shown: y as pictured, (m, C, H, W)
    solve: Callable[..., torch.Tensor]
    if verb == "inpaint":
        if args.mask is not None:
            hole = _read(args.mask, 1, (h, w), "the mask")[0, 0] > 0.5  # (H, W), white = fill
            mask = (~hole).to(torch.get_default_dtype()).expand(c, h, w)
        else:
            mask = builtin_mask(args.mask_kind, (c, h, w), data_generator)
        y = truth if truth is not None else _read(args.image, c, (h, w), "the image")
        shown = y * mask + 0.5 * (1 - mask)  # the hole in grey

        def solve(obs: torch.Tensor, **kw: Any) -> torch.Tensor:
            if translates or isinstance(model, Completion):  # one pass, or exact: no resampling
                return inverse.inpaint(
                    model, obs, mask, c=kw["c"], generator=kw["generator"], steps=kw["steps"]
                )
            return inverse.inpaint(model, obs, mask, resample=args.resample, **kw)

    elif verb == "super-resolve":
        factor = args.factor
        if h % factor or w % factor:
            raise DataError(f"x{factor} super-resolution needs H and W divisible by {factor}; found {h}x{w}")
        low = (h // factor, w // factor)
        y = F.avg_pool2d(truth, factor) if truth is not None else _read(args.image, c, low, "the image")
        shown = F.interpolate(y, scale_factor=factor, mode="nearest")

        def solve(obs: torch.Tensor, **kw: Any) -> torch.Tensor:
            return inverse.super_resolve(model, obs, factor, resample=args.resample, **kw)

    elif verb == "denoise":
        if not args.noise > 0:
            raise ConfigError(f"--noise must be positive; found {args.noise}")
        sampler = resolve_sampler(args.sampler)  # --sampler-steps, when given, overrides its grid
        if truth is not None:
            y = truth + args.noise * torch.randn(truth.shape, generator=data_generator).to(truth)
        else:
            y = _read(args.image, c, (h, w), "the image")  # already noisy, with std --noise
        shown = y

        def solve(obs: torch.Tensor, **kw: Any) -> torch.Tensor:
            return inverse.denoise_observation(model, obs, args.noise, sampler=sampler, **kw)

    else:  # colorize
        source = truth if truth is not None else _read(args.image, c, (h, w), "the image")
        y = source.mean(1, keepdim=True)  # (m, 1, H, W)
        shown = y.expand(-1, c, -1, -1)

        def solve(obs: torch.Tensor, **kw: Any) -> torch.Tensor:
            return inverse.colorize(model, obs, resample=args.resample, **kw)

    m = y.shape[0]
    labels = _labels(args, model, known, m)
    repeated = y.repeat_interleave(args.n, dim=0).to(model.device)  # (m · n, C', H', W')
    out = solve(repeated, c=labels, steps=args.sampler_steps, generator=generator)
    out = out.cpu().reshape(m, args.n, c, h, w)
    columns = [shown[:, None], out] + ([] if truth is None else [truth[:, None]])
    grid = torch.cat(columns, dim=1)  # (m, 1 + n [+ 1], C, H, W)
    save_grid(grid.reshape(-1, c, h, w), path, grid.shape[1])
    what = "observation | solutions" + (" | original" if truth is not None else "")
    print(f"wrote {path} ({m} rows: {what}; {weights.describe()})")
    return 0
