"""The side-by-side protocol of the library comparisons (benchmarks/_fair.py): the order in which
libraries take turns, the per-repeat ratios and their summary, and both clocks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _fair import Stopwatch, Timing, alternate, describe, ratio_summary, time_summary  # noqa: E402


def test_alternate_rotates_the_order_every_repeat_and_keeps_results_per_library():
    calls: list[tuple[str, int]] = []

    def contender(name: str):
        def run(repeat: int) -> str:
            calls.append((name, repeat))
            return f"{name}{repeat}"

        return run

    results = alternate(4, {name: contender(name) for name in "abc"})
    orders = ["".join(name for name, r in calls if r == repeat) for repeat in range(4)]
    assert orders == ["abc", "bca", "cab", "abc"]
    assert results == {name: [f"{name}{r}" for r in range(4)] for name in "abc"}


def test_ratio_summary_pairs_repeats_and_reports_median_and_range():
    peer = [Timing(3.0, 6.0), Timing(2.0, 2.0), Timing(5.0, 4.0)]
    ours = [Timing(1.0, 2.0), Timing(2.0, 1.0), Timing(2.0, 4.0)]
    summary = ratio_summary(peer, ours)
    assert summary["wall_ratios"] == [3.0, 1.0, 2.5]
    assert summary["wall"] == {"median": 2.5, "min": 1.0, "max": 3.0}
    assert summary["cpu"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert describe(summary) == "2.50x wall (1.00-3.00), 2.00x CPU (1.00-3.00)"
    assert time_summary(ours)["wall_s"] == {"median": 2.0, "min": 1.0, "max": 2.0}
    with pytest.raises(ValueError, match="one timing per repeat"):
        ratio_summary(peer, ours[:2])


def test_stopwatch_measures_wall_and_cpu_time():
    with Stopwatch() as busy:
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass
    with Stopwatch() as idle:
        time.sleep(0.05)
    assert busy.timing.wall >= 0.05 and busy.timing.cpu >= 0.02
    assert idle.timing.wall >= 0.05 and idle.timing.cpu < 0.03
