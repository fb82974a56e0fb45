"""What every side-by-side comparison with another library shares (issue 19's protocol).

* Both clocks: wall time (``time.perf_counter``) and the process's CPU time over all its threads
  (``time.process_time``), measured around the same region (:class:`Stopwatch`). A library that
  runs in a subprocess (pythae, in its own environment) measures its region itself and reports
  both figures.
* Alternation: the libraries take turns inside every repeat, and the order rotates from one
  repeat to the next (:func:`alternate`), so a slow spell of the machine hits all of them.
* Ratios per repeat: peer time / our time, for wall and CPU time, summarised by the median and
  the range (min, max) over the repeats (:func:`ratio_summary`); > 1 means we are faster.
* The machine: the processor model and torch's threads, in every record (``_machine.machine``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    """Seconds of wall time and of process CPU time (all threads) over one measured region."""

    wall: float = 0.0
    cpu: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall, "cpu_s": self.cpu}


@dataclass
class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.timing``: wall and CPU seconds of the block."""

    timing: Timing = field(default_factory=Timing)

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def alternate(repeats: int, contenders: dict[str, Callable[[int], Any]]) -> dict[str, list[Any]]:
    """Run every contender once per repeat, ``contenders[name](repeat)``, in an order that
    rotates by one place each repeat (A B C, B C A, C A B, …); returns each name's results in
    repeat order."""
    names = list(contenders)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(contenders[name](repeat))
    return results


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratio_summary(peer: Sequence[Timing], ours: Sequence[Timing]) -> dict[str, Any]:
    """Per-repeat ratios peer / ours of wall and of CPU time (paired by repeat, so each ratio
    compares runs made side by side): their median, min and max, and every ratio."""
    if len(peer) != len(ours) or not peer:
        raise ValueError(f"need one timing per repeat on each side, got {len(peer)} and {len(ours)}")
    wall = [p.wall / o.wall for p, o in zip(peer, ours, strict=True)]
    cpu = [p.cpu / o.cpu for p, o in zip(peer, ours, strict=True)]
    return {
        "wall": _spread(wall),
        "cpu": _spread(cpu),
        "wall_ratios": [round(r, 4) for r in wall],
        "cpu_ratios": [round(r, 4) for r in cpu],
        "repeats": len(wall),
    }


def time_summary(timings: Sequence[Timing]) -> dict[str, Any]:
    """Median and range of the wall and CPU seconds of one contender's repeats."""
    return {
        "wall_s": _spread([t.wall for t in timings]),
        "cpu_s": _spread([t.cpu for t in timings]),
    }


def describe(summary: dict[str, Any]) -> str:
    """'1.23× wall (1.20–1.31), 1.25× CPU (1.21–1.30)' from :func:`ratio_summary`."""
    w, c = summary["wall"], summary["cpu"]
    return (
        f"{w['median']:.2f}x wall ({w['min']:.2f}-{w['max']:.2f}), "
        f"{c['median']:.2f}x CPU ({c['min']:.2f}-{c['max']:.2f})"
    )


def matmul_peak(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matrix-product rate in GFLOP/s at ``threads`` torch threads: the best
    of ``repeats`` square ``size`` × ``size`` products (2·size³ FLOP each), after a warm-up."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / best / 1e9
