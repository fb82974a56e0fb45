"""``simulacra models | datasets | metrics``: the registries, as tables."""

from __future__ import annotations

import argparse

from simulacra.cli.common import _console


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


def cmd_metrics(args: argparse.Namespace) -> int:
    from simulacra.metrics.evaluate import METRICS

    described = {}
    for name, description in METRICS.describe().items():
        needs = METRICS.get(name).requirement
        described[name] = description + (f" [needs a {needs}]" if needs else " [any model]")
    _print_registry("registered metrics (simulacra evaluate RUN --metric NAME)", described)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch ``args.dataset`` into ``--to`` (default: where training looks) and say where it is."""
    from simulacra.data.download import download

    path = download(args.dataset, args.to, progress=not args.no_progress, mirrors=args.mirror)
    hint = "" if args.to is None else f" (train with --data-dir {args.to}, or set $SIMULACRA_DATA)"
    print(f"{args.dataset}: {path}{hint}")
    return 0
