"""``simulacra report RUN [RUN ...] -o report.html``: one self-contained HTML page of the runs
(:mod:`simulacra.report.html`): their settings, held-out figures, curves and pictures; with several
runs, their figures side by side."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulacra.cli.common import check_file_destination, distinct_runs, output_file
from simulacra.errors import ConfigError


def add_parser(sub: Any) -> None:
    """Add the ``report`` verb to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    p = sub.add_parser("report", help="one self-contained HTML page of trained runs (pictures embedded)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `simulacra train`")
    p.add_argument(
        "-o", "--output", default=None, help="the .html file (default RUN/report.html for one run)"
    )
    p.add_argument("--title", default=None, help="the page's title")


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
    page = render_report([Path(run) for run in args.runs], title=args.title)  # every run read first
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, page.encode("utf-8"))
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB, {len(args.runs)} run{'s' if len(args.runs) > 1 else ''})")
    return 0


__all__ = ["add_parser", "cmd_report"]
