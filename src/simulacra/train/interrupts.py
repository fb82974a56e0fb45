"""Ctrl-C and SIGTERM end a run cleanly: a checkpoint, the current weights, then a clear exit.

``with GracefulInterrupt() as interrupt: fit(..., callbacks=[interrupt])`` installs handlers for
SIGINT and SIGTERM (in the main thread) for the duration of the block. The first signal asks the
loop to stop after the step in progress: it writes a resumable checkpoint and the run's current
weights (``model.safetensors``, so the run can be sampled and evaluated at once) and returns with
``FitResult.interrupted`` set; resuming continues exactly. A second signal interrupts at once
(``KeyboardInterrupt``); checkpoints are written atomically, so the previous one stays intact.
Under torchrun every rank receives the signal; the ranks agree on the step to stop at through a
small all-reduce every ``check_every`` steps.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from simulacra.train.callbacks import Callback, TrainState
from simulacra.train.distributed import all_reduce_max, is_distributed

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_STATUS = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143}
"""The exit status of a process ended by a signal, as shells report it: 128 + the signal number."""


class GracefulInterrupt(Callback):
    """Turn SIGINT/SIGTERM into "stop after this step, checkpoint, exit" (see the module docstring).

    Args:
        check_every: under DDP, how often (in steps) the ranks agree on whether a signal came.
    """

    def __init__(self, check_every: int = 10) -> None:
        self.check_every = max(1, int(check_every))
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # a second signal: stop now
        self.received = int(signum)

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[int(sig)] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_step_end(self, state: TrainState) -> None:
        received = self.received
        if is_distributed():
            if state.step % self.check_every:
                return
            received = int(all_reduce_max(received or 0)) or None
        if received is not None:
            state.interrupted = received
            state.stop_requested = True
