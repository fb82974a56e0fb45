"""Mixed precision (train.precision = "bf16") and torch.compile (train.compile) in the one loop."""

from __future__ import annotations

import warnings

import pytest
import torch

from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.errors import ConfigError
from simulacra.models.zoo import build_model
from simulacra.train import Callback, TrainState, fit
from simulacra.train import precision as precision_module


def _data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(256, 1, 8, 8, generator=g) < torch.linspace(0.1, 0.9, 64).reshape(1, 1, 8, 8)).float()
    return Dataset("toy-binary", DataInfo(event_shape=(1, 8, 8), support="binary", levels=2), Split(x))


class MatmulDtypes(Callback):
    """Records, at the first step, the dtype a Linear layer's output has inside the forward pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seen: list[torch.dtype] = []
        layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        layer.register_forward_hook(lambda _m, _i, out: self.seen.append(out.dtype))


def _fit(seed: int = 0, **settings: object) -> tuple[torch.nn.Module, list[float], list[torch.dtype]]:
    data = _data()
    torch.manual_seed(seed)
    model = build_model({"name": "vae", "hidden": [32], "latent_dim": 4}, data.info)
    dtypes = MatmulDtypes(model)
    losses: list[float] = []

    class Losses(Callback):
        def on_step_end(self, state: TrainState) -> None:
            losses.append(float(state.metrics.get("loss", float("nan"))))

    config = TrainConfig(steps=30, batch_size=32, lr=1e-2, log_every=1, eval_every=0, **settings)  # type: ignore[arg-type]
    fit(model, data, config, callbacks=[Losses()], progress=False)
    return model, losses, dtypes.seen


@pytest.mark.parametrize(
    ("key", "value"), [("precision", "fp16"), ("precision", None), ("compile", ""), ("compile", 3)]
)
def test_bad_settings_are_refused(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"train.{key}"):
        TrainConfig(**{key: value})  # type: ignore[arg-type]


@pytest.mark.skipif(not precision_module.bf16_supported(torch.device("cpu")), reason="no bf16 matrix units")
def test_bf16_runs_the_forward_in_bf16_with_fp32_master_weights() -> None:
    model32, losses32, dtypes32 = _fit()
    model16, losses16, dtypes16 = _fit(precision="bf16")
    assert dtypes32[0] == torch.float32 and dtypes16[0] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model16.parameters())
    assert all(torch.isfinite(torch.tensor(losses16)))
    assert losses16 != losses32  # a different arithmetic ...
    # ... that trains the same: the last losses agree to within bf16's rounding of a 64-pixel bound
    assert sum(losses16[-5:]) / 5 == pytest.approx(sum(losses32[-5:]) / 5, rel=0.05)
    # evaluation stays float32 after a bf16 run
    with torch.no_grad():
        x = _data().train.x[:8]
        assert model16.log_prob_bound(x).dtype in (torch.float32, torch.float64)


def test_bf16_without_bf16_instructions_warns_and_trains_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: False)
    _, losses32, _ = _fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, losses, dtypes = _fit(precision="bf16")
    assert any("no bf16 matrix" in str(w.message) and "training in fp32" in str(w.message) for w in caught)
    assert dtypes[0] == torch.float32 and losses == losses32


def test_compile_gives_the_same_training_as_eager_pytorch() -> None:
    _, eager, _ = _fit()
    _, compiled, _ = _fit(compile="eager")  # dynamo's graph capture, run by the eager backend
    assert compiled == pytest.approx(eager, rel=1e-5)


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        if state.step >= self.step:
            state.stop_requested = True


@pytest.mark.skipif(not precision_module.bf16_supported(torch.device("cpu")), reason="no bf16 matrix units")
def test_a_bf16_run_stopped_and_resumed_ends_bit_identical(tmp_path) -> None:
    def run(folder: str, *, stop_at: int | None = None, resume: bool = False) -> tuple[torch.nn.Module, int]:
        data = _data()
        torch.manual_seed(0)
        model = build_model({"name": "vae", "hidden": [32], "latent_dim": 4}, data.info)
        config = TrainConfig(
            steps=12, batch_size=32, lr=1e-2, eval_every=0, checkpoint_every=1, precision="bf16"
        )
        callbacks = [_StopAt(stop_at)] if stop_at is not None else []
        fit(
            model, data, config, run_dir=tmp_path / folder, callbacks=callbacks, resume=resume, progress=False
        )
        return model

    whole = run("whole")
    run("parts", stop_at=5)
    resumed = run("parts", resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
