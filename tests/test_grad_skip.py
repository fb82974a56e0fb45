"""Gradient skipping (GroupSettings.grad_skip, VDVAE's stabiliser): an update whose gradient norm
exceeds the threshold, or is not finite, leaves the weights and the optimizer state as they were;
the fraction of skipped updates is logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from simulacra.config import TrainConfig
from simulacra.data.info import Dataset, Split
from simulacra.errors import ConfigError
from simulacra.models.zoo import build_model
from simulacra.train import fit

from presets import TINY


def _run(tmp_path: Path, skip: float | None, steps: int = 4) -> tuple[torch.nn.Module, dict, list[dict]]:
    kwargs, info = TINY["lvae"]
    torch.manual_seed(0)
    model = build_model({"name": "lvae", **kwargs, "grad_skip": skip}, info)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(16, *info.event_shape, generator=torch.Generator().manual_seed(0)).mul(16).round().div(16)
    config = TrainConfig(steps=steps, batch_size=8, log_every=1, eval_every=0)
    fit(model, Dataset("synthetic", info, Split(x, None)), config, run_dir=tmp_path, progress=False)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return model, before, [line for line in lines if "loss" in line]


def test_updates_above_the_threshold_are_skipped(tmp_path: Path) -> None:
    model, before, lines = _run(tmp_path / "skip", 1e-6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [line["skipped"] for line in lines] == [1.0] * 4
    model, before, lines = _run(tmp_path / "keep", 1e9)
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [line["skipped"] for line in lines] == [0.0] * 4


def test_a_non_finite_gradient_is_skipped(tmp_path: Path) -> None:
    """A NaN in one weight's gradient: the norm is NaN, so the update is skipped, not applied."""
    kwargs, info = TINY["lvae"]
    torch.manual_seed(0)
    model = build_model({"name": "lvae", **kwargs, "grad_skip": 1e9, "grad_clip": None}, info)
    weight = next(model.parameters())
    weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    before = weight.detach().clone()
    x = torch.rand(16, *info.event_shape, generator=torch.Generator().manual_seed(0)).mul(16).round().div(16)
    config = TrainConfig(steps=2, batch_size=8, log_every=1, eval_every=0)
    fit(model, Dataset("synthetic", info, Split(x, None)), config, run_dir=tmp_path, progress=False)
    assert torch.equal(weight.detach(), before)


def test_a_bad_threshold_is_a_config_error() -> None:
    kwargs, info = TINY["lvae"]
    model = build_model({"name": "lvae", **kwargs}, info)
    x = torch.zeros(4, *info.event_shape)
    config = TrainConfig(steps=1, batch_size=4, groups={"main": {"grad_skip": -1.0}})
    with pytest.raises(ConfigError, match="grad_skip of group 'main'"):
        fit(model, Dataset("synthetic", info, Split(x, None)), config, progress=False)
