"""One contract for every registered model (STYLE.md §10).

For each preset: a finite loss for every optimizer group, gradients reaching every parameter,
samples of the right shape that are reproducible under a generator, and a save/load round trip
that restores the same weights and the same samples.
"""

from __future__ import annotations

import pytest
import torch

import simulacra.models  # noqa: F401  (registers every preset)
from simulacra.data.info import DataInfo
from simulacra.models.zoo import MODELS, build_model
from simulacra.train.checkpoint import load_model, save_model

from presets import TINY, context_for

NAMES = [n for n in MODELS.names() if not n.startswith("test-")]


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
    missing = sorted(set(NAMES) - set(TINY))
    assert not missing, f"add tiny kwargs for {missing} to tests/presets.py"


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_and_gradients_reach_every_parameter(name: str) -> None:
    model = _build(name)
    x, y = _batch(model.info, 8)
    c = context_for(model, 8, y)
    groups = model.parameter_groups()
    assert set(groups) == set(model.groups)
    covered = {id(p) for params in groups.values() for p in params}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert {id(p) for _, p in trainable} == covered, "parameter_groups must cover every trainable parameter"
    for group in model.groups:
        model.zero_grad(set_to_none=True)
        out = model(x, c, group=group)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"{name}/{group}: loss {out.loss}"
        for key, value in out.metrics.items():
            assert torch.isfinite(value).all(), f"{name}/{group}: metric {key} = {value}"
        out.loss.backward()
        for param in groups[group]:
            assert param.grad is not None, f"{name}/{group}: no gradient reaches a parameter"
            assert torch.isfinite(param.grad).all()
    reached = [n for n, p in trainable if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(reached) == len(trainable) or len(model.groups) > 1, (
        f"{name}: zero gradient for {sorted(set(n for n, _ in trainable) - set(reached))}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_samples_have_the_right_shape_and_are_reproducible(name: str) -> None:
    model = _build(name).eval()
    c = context_for(model, 5)
    with torch.no_grad():
        a = model.sample(5, c, generator=torch.Generator().manual_seed(3))
        b = model.sample(5, c, generator=torch.Generator().manual_seed(3))
        d = model.sample(5, c, generator=torch.Generator().manual_seed(4))
    assert a.shape == (5, *model.info.event_shape)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b), "same generator seed must give the same samples"
    assert not torch.equal(a, d) or name in {"linear-ae"}, "another seed should give other samples"


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name: str, tmp_path) -> None:
    model = _build(name).eval()
    x, y = _batch(model.info, 4)
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
    c = context_for(model, 3)
    with torch.no_grad():
        a = model.sample(3, c, generator=torch.Generator().manual_seed(0))
        b = loaded.sample(3, c, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
