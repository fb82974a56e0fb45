"""Shared fixtures: every test is seeded and runs torch on one thread.

Threads. Every test runs torch on one intra-op thread: the tensors here are tiny, and a thread
pool per test process oversubscribes the cores as soon as the machine has other work (the
suite took 97 s on a quiet 2-core machine but half an hour at load average 10 with torch's
default pools). ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` are set to 1 before torch is
imported, so the processes that tests spawn (the CLI, torchrun, DDP workers) inherit one thread
too. A test that genuinely needs more threads says so with ``@pytest.mark.threads(n)``; the
count is restored to 1 after it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before torch is imported here, and inherited by every subprocess
os.environ.setdefault("MPLBACKEND", "Agg")

import random  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # torch may have been imported (by a plugin) before the variables were set


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "threads(n): run this test on n torch intra-op threads instead of the default 1"
    )


@pytest.fixture(autouse=True)
def _threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """One intra-op thread, or the count of a ``threads(n)`` marker; reset after every test
    (``fit(..., TrainConfig(num_threads=k))`` changes the process-wide count)."""
    marker = request.node.get_closest_marker("threads")
    torch.set_num_threads(int(marker.args[0]) if marker else 1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
