"""The suite's thread policy (tests/conftest.py): one torch thread per test process, inherited by
the processes tests spawn, unless a test asks for more with ``@pytest.mark.threads(n)``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch


def test_tests_run_torch_on_one_thread_and_subprocesses_inherit_it() -> None:
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    child = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == "1"


@pytest.mark.threads(2)
def test_the_threads_marker_sets_the_count_for_one_test() -> None:
    assert torch.get_num_threads() == 2
