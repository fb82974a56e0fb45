"""Progress of long work, for a person watching a terminal or reading a log.

``with progress(total, "nll (IWAE k=200)") as bar: ... bar.advance(n)``. On a terminal it is a
rich progress bar (cleared when done); when the output is piped or redirected (a log file, CI),
plain lines instead, at most one per ``every`` seconds and at the end, such as
``nll (IWAE k=200): 300/1000 (30%), 12 s, about 28 s left``. Disabled, it does nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class Progress:
    """Counts units of work done out of ``total`` and shows it (see the module docstring)."""

    def __init__(
        self, total: int, description: str, *, stream: TextIO | None = None, every: float = 10.0
    ) -> None:
        self.total, self.description = max(0, int(total)), description
        self.stream = stream if stream is not None else sys.stderr
        self.every = float(every)
        self.done = 0
        self._start = time.perf_counter()
        self._last_line = self._start
        self._bar: Any = None
        self._task: Any = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn(description),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._task = self._bar.add_task(description, total=self.total)
            self._bar.start()

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more units done."""
        self.done += int(n)
        if self._bar is not None:
            self._bar.advance(self._task, n)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every and self.done < self.total:
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        share = self.done / self.total if self.total else 1.0
        left = f", about {elapsed * (1 - share) / share:.0f} s left" if 0 < share < 1 else ""
        print(
            f"{self.description}: {self.done}/{self.total} ({100 * share:.0f}%), {elapsed:.0f} s{left}",
            file=self.stream,
            flush=True,
        )
        self._last_line = now

    def close(self) -> None:
        """End the display (a final plain line when not on a terminal)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.done:
            self._line(time.perf_counter())


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass


@contextmanager
def progress(
    total: int, description: str, enabled: bool = True, **kwargs: Any
) -> Iterator[Progress | _Silent]:
    """A :class:`Progress` for the block (a no-op when ``enabled`` is False)."""
    if not enabled:
        yield _Silent()
        return
    bar = Progress(total, description, **kwargs)
    try:
        yield bar
    finally:
        bar.close()
