"""What the tests of lossless coding share (test_compress.py, test_bitsback.py): models moved away
from their initialization, data on a model's grid, and decoding in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulacra.data.info import DataInfo
from simulacra.models.zoo import build_model


def perturbed(name: str, kwargs: dict[str, Any], info: DataInfo, seed: int = 0) -> torch.nn.Module:
    """The preset ``name`` with its weights moved by 0.3 N(0, 1) noise: confident, uneven
    conditionals (and, for a VAE, posteriors away from the prior)."""
    torch.manual_seed(seed)
    model = build_model({"name": name, **kwargs}, info).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def grid_data(info: DataInfo, n: int = 40, seed: int = 1) -> np.ndarray:
    """n examples (uint8) of uniformly drawn levels 0..L−1."""
    assert info.levels is not None
    return np.random.default_rng(seed).integers(0, info.levels, (n, *info.event_shape)).astype(np.uint8)


_DECODE = """
import json, sys, numpy as np, torch
torch.set_num_threads(2)
from simulacra.data.info import DataInfo
from simulacra.models.zoo import build_model
from simulacra.tasks.compress import decompress
for i, (spec, info) in enumerate(json.loads(sys.argv[2])):
    info = DataInfo(tuple(info["event_shape"]), info["support"], levels=info["levels"])
    model = build_model(spec, info).eval()
    model.load_state_dict(torch.load(f"{sys.argv[1]}/w{i}.pt", weights_only=True))
    np.save(f"{sys.argv[1]}/y{i}.npy", decompress(model, open(f"{sys.argv[1]}/x{i}.sim", "rb").read()))
assert torch.get_num_threads() == 2
"""


def decode_in_fresh_process(
    files: list[tuple[dict[str, Any], DataInfo, torch.nn.Module, bytes]], folder: Path
) -> list[np.ndarray]:
    """Decode every (preset spec, data info, model, file) in one new Python process at 2 torch
    threads, each model rebuilt from its spec with the given model's weights; the decoded arrays."""
    described = []
    for i, (spec, info, model, blob) in enumerate(files):
        torch.save(model.state_dict(), folder / f"w{i}.pt")
        (folder / f"x{i}.sim").write_bytes(blob)
        described.append(
            (spec, {"event_shape": list(info.event_shape), "support": info.support, "levels": info.levels})
        )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", _DECODE, str(folder), json.dumps(described)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [np.load(folder / f"y{i}.npy") for i in range(len(files))]
