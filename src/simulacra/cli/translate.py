"""``simulacra translate RUN``: images of one domain as images of the other, with a trained
domain-translation model (CycleGAN, trained on two ``--data`` sources).

The inputs are image files (``--image``, repeatable, never resized: they must have the model's
size) or, without ``--image``, the first ``--examples K`` held-out images of the source domain.
``--to`` names the target domain (default the second, B). The picture has one row per input: the
input, its translation, and the translation translated back (the cycle the model was trained to
close); ``--save-tensor`` writes the translations as ``.npy`` (K, C, H, W) in [0, 1].
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.cli.common import (
    _held_out,
    _load_run,
    _output_path,
    check_file_destination,
    integer,
    save_array,
)
from simulacra.errors import CapabilityError, ConfigError, DataError

if TYPE_CHECKING:
    import torch

HELP = "translate images between the two domains of a cyclegan run (two --data sources)"


def add_parser(sub: Any) -> None:
    """Add the ``translate`` verb to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    p = sub.add_parser("translate", help=HELP)
    p.add_argument("run", help="a run directory written by `simulacra train`")
    p.add_argument(
        "--weights", choices=["ema", "raw"], default=None, help="the moving average (default) or raw weights"
    )
    p.add_argument("--to", default=None, help="the target domain: its name, or a / b (default b)")
    p.add_argument(
        "--image",
        action="append",
        default=None,
        help="an input image (PNG/JPEG), repeatable; default: held-out",
    )
    p.add_argument(
        "--examples", type=integer, default=8, help="held-out images of the source domain when no --image"
    )
    p.add_argument("-o", "--output", default=None, help="picture to write (default RUN/translations.png)")
    p.add_argument("--save-tensor", default=None, help="also save the translations as .npy")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--data-dir", default=None, help="folder with downloaded data, if it moved since training")


def direction(names: tuple[str, str], to: str | None) -> str:
    """``"a->b"`` or ``"b->a"`` for a target domain given by name or as ``a``/``b`` (None: b)."""
    if to is None or to.lower() == "b" or to == names[1]:
        return "a->b"
    if to.lower() == "a" or to == names[0]:
        return "b->a"
    raise ConfigError(f"--to {to!r}: the domains are {names[0]!r} (a) and {names[1]!r} (b)")


def _inputs(args: argparse.Namespace, model: Any, source: int) -> torch.Tensor:
    """(K, C, H, W) in [0, 1]: the ``--image`` files, else held-out images of the source domain."""
    import torch

    if args.image:
        from simulacra.cli.inverse import _read

        c, h, w = model.event_shape
        return torch.cat([_read(path, c, (h, w), "--image") for path in args.image])
    _, part = _held_out(args.run, None, args.data_dir, None)
    images = model.split(part.x, part.y)[source][: args.examples]
    if len(images) == 0:
        raise DataError(f"the held-out data have no image of {model.domain_names[source]!r}; give --image")
    return images


def cmd_translate(args: argparse.Namespace) -> int:
    import torch

    from simulacra.models.base import DomainTranslation
    from simulacra.report.pictures import round_trips_picture

    if args.examples < 1:
        raise ConfigError(f"--examples must be >= 1; found {args.examples}")
    out = _output_path(args.output, Path(args.run) / "translations.png")
    if args.save_tensor is not None:
        if Path(args.save_tensor).suffix != ".npy":
            raise ConfigError(f"--save-tensor {args.save_tensor!r}: expected a file ending in .npy")
        check_file_destination(Path(args.save_tensor), "--save-tensor")
    model, weights = _load_run(args.run, args.device, args.weights)
    if not isinstance(model, DomainTranslation):
        raise CapabilityError(
            f"{model.preset_name} does not translate between two domains (a cyclegan does); "
            "a pix2pix answers super-resolve, inpaint or colorize"
        )
    way = direction(model.domain_names, args.to)
    source = 0 if way == "a->b" else 1
    x = _inputs(args, model, source).to(torch.get_default_dtype())
    model.eval()
    with torch.no_grad():
        translated = model.translate(x, way).cpu()
        round_trips_picture(model, [(x, way)], out)
    if args.save_tensor:
        save_array(args.save_tensor, translated.clamp(0, 1))
    src, dst = model.domain_names if source == 0 else model.domain_names[::-1]
    print(f"translated {len(x)} images from {src} to {dst}: {out} ({weights.describe()})")
    return 0


__all__ = ["add_parser", "cmd_translate", "direction"]
