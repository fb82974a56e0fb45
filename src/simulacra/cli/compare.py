"""``simulacra compare RUN [RUN ...]``: runs of any families on one table (see
:mod:`simulacra.report.compare`), printed and written with ``-o`` as Markdown, CSV or JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulacra.cli.common import (
    _at_least,
    _console,
    _held_out,
    _load_run,
    distinct_runs,
    integer,
    output_file,
    seed_arg,
)

FORMATS = {".md": "md", ".csv": "csv", ".json": "json"}


def add_parser(sub: Any) -> None:
    """Add the ``compare`` verb to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    p = sub.add_parser(
        "compare", help="put trained runs of any families on one table (the same held-out data)"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `simulacra train`")
    p.add_argument(
        "--metric",
        action="append",
        help="a registered metric, repeatable (default: nll, mmd, c2st, and fid, kid, prdc, classes with "
        "--features or on 1x28x28 grey images, which the shipped MNIST network reads)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="a feature network (.safetensors) for the image metrics (default for 1x28x28 grey "
        "images: the shipped MNIST classifier)",
    )
    p.add_argument("--samples", type=integer, default=500, help="samples per run for the sample metrics")
    p.add_argument("--limit", type=integer, default=500, help="held-out examples (the first N of the split)")
    p.add_argument("--k", type=integer, default=100, help="importance samples per example (VAE family)")
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="seeds importance samples and samples (default 0)"
    )
    p.add_argument("-o", "--output", default=None, help="also write the table: .md, .csv or .json")
    p.add_argument(
        "--weights", choices=["ema", "raw"], default=None, help="the moving average (default) or raw"
    )
    p.add_argument("--no-cache", action="store_true", help="score again instead of reading RUN/compare.json")
    p.add_argument("--data-dir", default=None, help="folder with downloaded data, if it moved since training")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")


def compare_rows(
    runs: list[str],
    *,
    metrics: list[str] | None = None,
    features: str | None = None,
    samples: int = 500,
    limit: int = 500,
    k: int = 100,
    seed: int = 0,
    weights: str | None = None,
    use_cache: bool = True,
    data_dir: str | None = None,
    device: str = "cpu",
    say: Any = print,
) -> tuple[list[Any], int]:
    """The ``compare`` table's rows for ``runs`` (each run's row, cached in RUN/compare.json, then
    the data-vs-data floor) and the number of held-out examples they were scored on. Checks every
    argument before any work; runs on different data are refused."""
    from simulacra.data.info import Split
    from simulacra.metrics.evaluate import EvalOptions
    from simulacra.report.compare import check_same_data, floor_row, score_run
    from simulacra.train.checkpoint import load_run_config

    _at_least(samples, 2, "--samples")
    _at_least(limit, 1, "--limit")
    _at_least(k, 1, "--k")
    distinct_runs(runs)
    if features is not None:
        from simulacra.metrics.fid import load_feature_classifier

        load_feature_classifier(features)  # a missing or corrupt file fails before any work
    configs = {run: load_run_config(run)["run"].get("data", {}) for run in runs}
    check_same_data(configs)
    _, part = _held_out(runs[0], None, data_dir, 2 * limit)  # scored, then the floor's
    held_out = Split(part.x[:limit], None if part.y is None else part.y[:limit])
    rest = Split(part.x[limit:], None if part.y is None else part.y[limit:])
    options = EvalOptions(num_samples=k, max_samples=samples, seed=seed, features=features)
    rows = []
    for run in runs:
        model, loaded = _load_run(run, device, weights)
        rows.append(
            score_run(Path(run), model, held_out, loaded, metrics, options, use_cache=use_cache, say=say)
        )
    chosen = metrics or sorted({name for row in rows for name in row.figures})
    if len(rest) < 2:  # a small split: its two halves instead
        half = len(held_out) // 2
        rest = Split(held_out.x[:half])
        held_out = Split(held_out.x[half : 2 * half])
    floor = floor_row(held_out, rest, chosen, options, model.info)
    if floor is not None:
        rows.append(floor)
    return rows, len(held_out)


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from simulacra.report.compare import render, table
    from simulacra.train.checkpoint import atomic_write_bytes

    out = None if args.output is None else output_file(args.output, tuple(FORMATS))
    console = _console()
    rows, n_held_out = compare_rows(
        args.runs,
        metrics=args.metric,
        features=args.features,
        samples=args.samples,
        limit=args.limit,
        k=args.k,
        seed=args.seed,
        weights=args.weights,
        use_cache=not args.no_cache,
        data_dir=args.data_dir,
        device=args.device,
        say=console.print,
    )
    header, cells = table(rows)  # shown with a column per run (a figure per line fits a terminal)
    shown = Table(title=f"{len(rows)} runs on {n_held_out} held-out examples, {args.samples} samples each")
    shown.add_column(header[0], style="bold")
    for line in cells:
        shown.add_column(line[0])
    for i, name in enumerate(header[1:], start=1):
        shown.add_row(name, *(line[i] for line in cells))
    console.print(shown)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, render(rows, FORMATS[out.suffix.lower()]).encode())
        console.print(f"wrote {out}")
    return 0


__all__ = ["add_parser", "cmd_compare", "compare_rows"]
