"""``simulacra models | datasets | metrics``: the registries, as tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simulacra.cli.common import _console

CATALOGUE = Path(__file__).with_name("catalogue.json")
"""The registered presets and their one-line descriptions, ``{name: description}`` sorted by name:
what ``simulacra models`` lists without importing torch. Rewrite it with :func:`write_catalogue`
after adding or renaming a preset (``tests/test_cli.py`` checks that it is current)."""


def read_catalogue() -> dict[str, str]:
    """``{preset name: description}`` from :data:`CATALOGUE`."""
    return dict(json.loads(CATALOGUE.read_text(encoding="utf-8")))


def write_catalogue() -> None:
    """Write :data:`CATALOGUE` from the registry of presets (imports them all, and torch)."""
    from simulacra.models.zoo import MODELS

    CATALOGUE.write_text(json.dumps(MODELS.describe(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _print_registry(title: str, described: dict[str, str]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, description in described.items():
        table.add_row(name, description)
    _console().print(table)


def cmd_models(args: argparse.Namespace) -> int:
    """The presets as a table; with ``--details`` or a NAME, each one's settings and defaults.

    The table alone is read from the catalogue shipped with the CLI (:func:`read_catalogue`), so it
    needs no torch; a test keeps the catalogue equal to the registry."""
    if args.name is None and not args.details:
        _print_registry("registered models (`simulacra models NAME` for settings)", read_catalogue())
        return 0
    from simulacra.models.zoo import MODELS

    for name in [args.name] if args.name is not None else MODELS.names():
        _print_model_details(name)
    return 0


def _print_model_details(name: str) -> None:
    """A preset's description, its settings with their defaults (``--set model.KEY=VALUE``), and
    the defaults it takes for images, and the bigger ones on a GPU."""
    import inspect

    from rich.table import Table

    from simulacra.models.zoo import ACCELERATOR_IMAGE_DEFAULTS, IMAGE_DEFAULTS, MODELS

    doc = inspect.getdoc(MODELS.get(name)) or ""
    columns = [
        (title, defaults)
        for title, defaults in (
            ("default for images", IMAGE_DEFAULTS.get(name, {})),
            ("default for images on a GPU (--device cuda)", ACCELERATOR_IMAGE_DEFAULTS.get(name, {})),
        )
        if defaults
    ]
    table = Table(title=f"{name}: {MODELS.describe()[name]}", title_justify="left")
    table.add_column("setting (--set model.KEY=VALUE)", style="bold")
    table.add_column("default")
    for title, _ in columns:
        table.add_column(title)
    for key, default in MODELS.settings(name, skip=("info",)).items():
        shown = "required" if default is inspect.Parameter.empty else _value(default)
        table.add_row(key, shown, *(_value(d[key]) if key in d else "" for _, d in columns))
    console = _console()
    console.print(table)
    if doc:
        console.print(doc + "\n")


def _value(value: object) -> str:
    """A default as it is written with --set (JSON-like: lists, true/false, null)."""
    import json

    try:
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    except TypeError:
        return repr(value)


def cmd_datasets(args: argparse.Namespace) -> int:
    from simulacra.data import DATASETS

    _print_registry(
        "registered datasets (or pass a path: .npz, .npy, .csv, image folder)", DATASETS.describe()
    )
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from simulacra.metrics.evaluate import METRICS

    described = {}
    for name, description in METRICS.describe().items():
        needs = METRICS.get(name).requirement
        images = METRICS.get(name).images
        where = " of images" if images else ""
        described[name] = description + (f" [needs a {needs}]" if needs else f" [any model{where}]")
    _print_registry("registered metrics (simulacra evaluate RUN --metric NAME)", described)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch ``args.dataset`` into ``--to`` (default: where training looks) and say where it is."""
    from simulacra.data.download import download

    path = download(args.dataset, args.to, progress=not args.no_progress, mirrors=args.mirror)
    hint = "" if args.to is None else f" (train with --data-dir {args.to}, or set $SIMULACRA_DATA)"
    print(f"{args.dataset}: {path}{hint}")
    return 0
