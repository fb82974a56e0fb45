"""One contract for every registered model (STYLE.md §10).

For each preset: a finite loss for every optimizer group, each group's loss giving gradients to
every parameter of that group, samples of the right shape that are reproducible under a
generator (a CycleGAN's translations, as it draws nothing of its own), a save/load round trip that restores the same weights and the same samples, and a
training run that is stopped after one step and resumed ending bit-identical to one that was not
interrupted. The GAN presets are the zoo's multi-group models; ``test-adversarial``
(tests/toymodels.py, a toy GAN) stays as the smallest one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import simulacra.models  # noqa: F401  (registers every preset)
from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.models.zoo import MODELS, build_model
from simulacra.train import Callback, TrainState, fit, load_trainer_state
from simulacra.train.checkpoint import flatten_state, load_model, save_model

import toymodels  # noqa: F401  (registers the test-* presets)
from presets import TINY, context_for, draw

PRESETS = [n for n in MODELS.names() if not n.startswith("test-")]
NAMES = [*PRESETS, "test-adversarial"]


def _batch(info: DataInfo, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, *info.event_shape)
    if info.support == "binary":
        x = torch.bernoulli(torch.full(shape, 0.3), generator=g)
    elif info.support == "unit":
        x = torch.rand(shape, generator=g)
        if info.levels:
            x = torch.round(x * (info.levels - 1)) / (info.levels - 1)
    else:
        x = torch.randn(shape, generator=g)
    y = torch.randint(0, info.num_classes, (n,), generator=g) if info.num_classes else None
    return x, y


def _build(name: str) -> torch.nn.Module:
    kwargs, info = TINY[name]
    torch.manual_seed(0)
    return build_model({"name": name, **kwargs}, info)


def test_every_preset_has_tiny_settings() -> None:
    missing = sorted(set(PRESETS) - set(TINY))
    assert not missing, f"add tiny kwargs for {missing} to tests/presets.py"


def test_the_contract_covers_a_multi_group_model() -> None:
    assert any(len(_build(name).groups) > 1 for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_and_each_group_reaches_its_parameters(name: str) -> None:
    """For every group g: g's loss is a finite scalar and gives a finite, non-zero gradient to
    every parameter in ``parameter_groups()[g]``; the groups together cover every trainable
    parameter, once."""
    model = _build(name)
    x, y = _batch(model.info, 8)
    c = context_for(model, 8, y)
    groups = model.parameter_groups()
    assert set(groups) == set(model.groups)
    names = {id(p): n for n, p in model.named_parameters()}
    owned = [id(p) for params in groups.values() for p in params]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(owned) == len(set(owned)), "a parameter belongs to two groups"
    assert set(owned) == trainable, "parameter_groups must cover every trainable parameter"
    for group in model.groups:
        model.zero_grad(set_to_none=True)
        out = model(x, c, group=group)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"{name}/{group}: loss {out.loss}"
        for key, value in out.metrics.items():
            assert torch.isfinite(value).all(), f"{name}/{group}: metric {key} = {value}"
        out.loss.backward()
        missed = [names[id(p)] for p in groups[group] if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missed, f"{name}: the {group!r} loss gives no gradient to {missed}"
        for param in groups[group]:
            assert torch.isfinite(param.grad).all(), f"{name}/{group}: non-finite gradient"


@pytest.mark.parametrize("name", NAMES)
def test_samples_have_the_right_shape_and_are_reproducible(name: str) -> None:
    model = _build(name).eval()
    with torch.no_grad():
        a, b, d = draw(model, 5, 3), draw(model, 5, 3), draw(model, 5, 4)
    assert a.shape == (5, *model.info.event_shape)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b), "same generator seed must give the same samples"
    assert not torch.equal(a, d) or name in {"linear-ae"}, "another seed should give other samples"


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    model = _build(name).eval()
    with torch.no_grad():  # perturb the weights away from their initial values
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(model, tmp_path)
    loaded = load_model(tmp_path).eval()
    assert type(loaded) is type(model)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    with torch.no_grad():
        a, b = draw(model, 3, 0), draw(loaded, 3, 0)
    assert torch.equal(a, b)


# -- stop and resume ---------------------------------------------------------------------------


class _StopAt(Callback):
    """Ask the loop to stop at the end of step ``step`` (as a time budget does)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            state.stop_requested = True


def _fit(name: str, run: Path, *, resume: bool = False, stop_at: int | None = None) -> torch.nn.Module:
    """Two steps of ``fit`` on 8 synthetic examples of the preset's data, with a checkpoint after
    every step and an EMA (a callback with state); the model is built the way every run builds
    it (seed first)."""
    model = _build(name)
    x, y = _batch(model.info, 8, seed=1)
    data = Dataset("synthetic", model.info, Split(x, context_for(model, 8, y) if model.conditional else y))
    config = TrainConfig(
        steps=2, batch_size=4, lr=1e-2, checkpoint_every=1, log_every=1, ema_decay=0.5, seed=3
    )
    callbacks = [_StopAt(stop_at)] if stop_at is not None else []
    result = fit(model, data, config, run_dir=run, callbacks=callbacks, resume=resume, progress=False)
    assert result.steps == (stop_at or 2)
    return model


TIMING = {"elapsed_s", "examples_per_s", "wall_time"}  # wall-clock readings differ between runs


def _without_timing(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list | tuple):
        return type(obj)(_without_timing(v) for v in obj)
    return obj


def _final_state(run: Path) -> dict[str, object]:
    """The last checkpoint as JSON + tensors: weights, optimizer and scheduler states, RNG
    states, EMA, accumulated metrics (everything but wall-clock readings)."""
    checkpoint = load_trainer_state(run)
    trainer = _without_timing(checkpoint.trainer_state)
    encoded, tensors = flatten_state({"trainer": trainer, "extra": checkpoint.extra})
    return {"step": checkpoint.step, "json": encoded, "tensors": tensors, "model": checkpoint.model_state}


@pytest.mark.parametrize("name", NAMES)
def test_a_stopped_and_resumed_run_ends_bit_identical(name: str, tmp_path: Path) -> None:
    whole = _fit(name, tmp_path / "whole")
    _fit(name, tmp_path / "parts", stop_at=1)
    resumed = _fit(name, tmp_path / "parts", resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{name}: weights differ after resume: {differ[:5]}"
    ref, got = _final_state(tmp_path / "whole"), _final_state(tmp_path / "parts")
    assert got["step"] == ref["step"] == 2 and got["json"] == ref["json"]
    for part in ("tensors", "model"):
        assert got[part].keys() == ref[part].keys()
        differ = [k for k in ref[part] if not torch.equal(ref[part][k], got[part][k])]
        assert not differ, f"{name}: checkpoint {part} differ after resume: {differ[:5]}"
