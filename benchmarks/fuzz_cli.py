"""Fuzz the command line for a while: random invocations (the strategies of
``tests/cli_strategies.py`` that ``tests/test_fuzz_cli.py`` runs briefly), run in-process, every
promise of ``tests/cli_harness.py`` checked.

    python benchmarks/fuzz_cli.py --minutes 10            # batches of examples, seeds 0, 1, 2, ...
    python benchmarks/fuzz_cli.py --examples 2000 --seed 7

Prints and writes ``benchmarks/results/fuzz-cli.json``: the cases tried, the exit statuses (per
verb), the seconds spent, and each distinct broken promise with the first case that broke it.
Failures do not stop the run (they are collected, not shrunk); the exit status is 1 when any.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the strategies live beside the test that uses them

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

import cli_harness as ch  # noqa: E402
import cli_strategies as cs  # noqa: E402
from _machine import write_record  # noqa: E402

BATCH = 250  # examples per hypothesis run: a fresh seed each, so the run covers new ground


VERBS = ("train", "sample", "evaluate", "interpolate", "inpaint", "super-resolve", "denoise", "colorize",
         "translate", "compare", "report", "features", "posterior", "download", "models", "datasets",
         "metrics")  # fmt: skip


def _verb(case: cs.Case) -> str:
    """The command a case runs; ``(other)`` for argv made of random tokens and options only."""
    first = next((a for a in case.argv if not a.startswith("-")), None)
    return first if first in VERBS else "(other)"


def fuzz(minutes: float | None, examples: int | None, first_seed: int, out: Path) -> dict[str, Any]:
    """Run batches of cases until ``minutes`` or ``examples`` run out; the record as a dict."""
    import torch

    torch.set_num_threads(1)
    deadline = time.monotonic() + 60 * minutes if minutes else float("inf")
    budget = examples if examples else sys.maxsize
    statuses: collections.Counter[str] = collections.Counter()
    per_verb: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures: dict[str, dict[str, Any]] = {}
    seconds: list[float] = []
    slowest: list[tuple[float, str]] = []
    errors: collections.Counter[str] = collections.Counter()
    tried = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simulacra-fuzz-") as tmp:
        harness = ch.Harness(Path(tmp))
        batch_seed = first_seed
        while tried < budget and time.monotonic() < deadline:

            @seed(batch_seed)
            @settings(
                max_examples=min(BATCH, budget - tried),
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=cs.cli_cases())
            def batch(case: cs.Case) -> None:
                nonlocal tried
                if time.monotonic() >= deadline or tried >= budget:
                    return
                with ch.quiet_warnings():
                    outcome = harness.run(case)
                tried += 1
                seconds.append(outcome.seconds)
                slowest.append((outcome.seconds, " ".join(case.argv)))
                slowest.sort(reverse=True)
                del slowest[5:]
                if outcome.seconds > 5:
                    print(f"slow case ({outcome.seconds:.1f} s): {case!r}", flush=True)
                for line in outcome.stderr.splitlines()[-1:]:
                    if outcome.status == 2:
                        errors[f"{_verb(case)}: {line[:60]}"] += 1
                status = "raised" if outcome.raised else str(outcome.status)
                statuses[status] += 1
                per_verb[_verb(case)][status] += 1
                for problem in ch.check(outcome):
                    kind = problem.split(":")[0][:80]
                    if outcome.raised:
                        kind += " | " + outcome.raised.strip().splitlines()[-1][:120]
                    entry = failures.setdefault(kind, {"count": 0, "first": ch.describe(outcome, [problem])})
                    entry["count"] += 1

            batch()
            batch_seed += 1
            print(f"{tried} cases, {time.perf_counter() - started:.0f} s, statuses {dict(statuses)}, "
                  f"{len(failures)} kinds of failure", flush=True)  # fmt: skip
    record = {
        "cases": tried,
        "seconds": round(time.perf_counter() - started, 1),
        "seeds": [first_seed, batch_seed - 1],
        "statuses": dict(statuses),
        "statuses_per_verb": {verb: dict(c) for verb, c in sorted(per_verb.items())},
        "median_case_s": round(sorted(seconds)[len(seconds) // 2], 4) if seconds else None,
        "slowest_case_s": round(max(seconds), 2) if seconds else None,
        "slowest_cases": [{"seconds": round(s, 2), "argv": a} for s, a in slowest],
        "commonest_errors": dict(errors.most_common(40)),
        "failures": failures,
    }
    write_record(record, out)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=None, help="time budget (default 10 unless --examples)"
    )
    parser.add_argument("--examples", type=int, default=None, help="number of cases instead of a time budget")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first batch (default 0)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fuzz-cli.json", help="JSON record")
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None or args.examples else 10.0
    record = fuzz(minutes, args.examples, args.seed, args.out)
    for kind, entry in record["failures"].items():
        print(f"\n== {kind} ({entry['count']} cases)\n{entry['first']}")
    print(f"\n{record['cases']} cases in {record['seconds']} s; {len(record['failures'])} kinds of failure")
    return 1 if record["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
