"""``simulacra report RUN [RUN ...] -o report.html``: one self-contained HTML page of the runs
(:mod:`simulacra.report.html`): their settings, held-out figures, curves and pictures; with several
runs, their figures side by side; with ``--compare``, the ``simulacra compare`` table too."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulacra.cli.common import check_file_destination, distinct_runs, integer, output_file
from simulacra.errors import ConfigError


def add_parser(sub: Any) -> None:
    """Add the ``report`` verb to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    p = sub.add_parser("report", help="one self-contained HTML page of trained runs (pictures embedded)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `simulacra train`")
    p.add_argument(
        "-o", "--output", default=None, help="the .html file (default RUN/report.html for one run)"
    )
    p.add_argument("--title", default=None, help="the page's title")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also put the `simulacra compare` table on the page (scored once, then read from RUN/compare.json)",
    )
    p.add_argument("--samples", type=integer, default=500, help="with --compare: samples per run")
    p.add_argument(
        "--limit",
        type=integer,
        default=500,
        help="with --compare: held-out examples (the first N of the split)",
    )
    p.add_argument("--features", default=None, help="with --compare: a feature network (.safetensors)")


def cmd_report(args: argparse.Namespace) -> int:
    from simulacra.report.html import render_report
    from simulacra.train.checkpoint import atomic_write_bytes

    if args.output is None:
        if len(args.runs) > 1:
            raise ConfigError("several runs need -o FILE.html (one run writes RUN/report.html)")
        out = Path(args.runs[0]) / "report.html"
        check_file_destination(out, "-o")
    else:
        out = output_file(args.output, (".html", ".htm"))
    distinct_runs(args.runs)
    compare_table = None
    if args.compare:  # scored (or read from each run's cache) before anything is written
        from simulacra.cli.compare import compare_rows
        from simulacra.report.compare import render

        rows, _ = compare_rows(args.runs, features=args.features, samples=args.samples, limit=args.limit)
        compare_table = render(rows, "html")
    page = render_report([Path(run) for run in args.runs], title=args.title, compare_table=compare_table)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, page.encode("utf-8"))
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB, {len(args.runs)} run{'s' if len(args.runs) > 1 else ''})")
    return 0


__all__ = ["add_parser", "cmd_report"]
