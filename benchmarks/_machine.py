"""The machine line of every benchmark's results: CPU model, threads and torch version."""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch


def machine() -> str:
    """CPU model, torch's thread count and torch version, e.g. 'Intel(R) Xeon(R) ..., 2 thread(s), torch 2.13.0+cpu'."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def write_record(record: dict, path: Path) -> None:
    """Stamp a benchmark's results with the date, machine and command, write them to ``path``
    (JSON, parent folders created) and print them."""
    record = {
        **record,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
