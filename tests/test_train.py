"""The training loop: arithmetic, per-group updates, clipping, schedules, callbacks, logging."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.errors import ConfigError, TrainingError
from simulacra.models.zoo import build_model
from simulacra.train import EMA, Callback, KLWarmup, TimeBudget, TrainState, fit, lr_factor
from simulacra.train.batches import BatchSchedule, plan_steps
from simulacra.train.schedules import SCHEDULES

import toymodels as tm


def _config(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"steps": 20, "batch_size": 32, "lr": 1e-2, "log_every": 10}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


class Recorder(Callback):
    """Records a function of the state after every step."""

    def __init__(self, fn: Callable[[TrainState], Any]) -> None:
        self.fn, self.values = fn, []

    def on_step_end(self, state: TrainState) -> None:
        self.values.append(self.fn(state))


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_tiny_model_learns(tmp_path: Path) -> None:
    data = tm.toy_dataset(512)
    model = build_model("test-toy-det", data.info)
    result = fit(model, data, _config(steps=300, log_every=20), run_dir=tmp_path, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines]
    assert result.steps == 300 and len(lines) == 15
    assert losses[-1] < 0.2 * losses[0]
    assert result.wall_time > 0  # reported; not a speed check (the suite must pass on a loaded machine)
    assert result.metrics["loss"] == pytest.approx(losses[-1])


@pytest.mark.parametrize(
    ("n", "batch", "steps", "epochs", "world", "expected"),
    [
        (100, 32, None, 2.5, 1, (32, 3, 8)),  # 3 steps per epoch (drop last), ceil(7.5)
        (100, 32, 5, 2.5, 1, (32, 3, 5)),  # steps wins
        (100, 1000, None, 3, 1, (100, 1, 3)),  # batch capped at N
        (100, 32, None, 1, 4, (32, 3, 3)),  # global batch split in 4 shards of 8
    ],
)
def test_step_arithmetic(
    n: int, batch: int, steps: int | None, epochs: float, world: int, expected: tuple[int, int, int]
) -> None:
    plan = plan_steps(n, batch, steps=steps, epochs=epochs, world_size=world)
    assert (plan.global_batch, plan.steps_per_epoch, plan.total_steps) == expected
    assert plan.local_batch * world == plan.global_batch


def test_step_arithmetic_errors() -> None:
    with pytest.raises(ConfigError, match="divide evenly among 3"):
        plan_steps(100, 32, steps=None, epochs=1, world_size=3)
    with pytest.raises(ConfigError, match="steps or train.epochs"):
        plan_steps(100, 32, steps=None, epochs=None)


def test_fit_runs_the_planned_number_of_steps() -> None:
    data = tm.toy_dataset(100)
    model = build_model("test-toy-two-group", data.info)
    result = fit(model, data, _config(steps=None, epochs=2.5, batch_size=32), progress=False)
    assert result.steps == 8
    assert model.calls == {"a": 8, "b": 8}


def test_batches_are_stateless_and_cover_each_epoch() -> None:
    sched = BatchSchedule(100, 20, seed=3)
    first = [sched.indices(s).clone() for s in range(10)]
    again = BatchSchedule(100, 20, seed=3)
    assert all(torch.equal(again.indices(s), first[s]) for s in reversed(range(10)))  # any order
    assert torch.equal(torch.cat(first[:5]).sort().values, torch.arange(100))  # epoch 0 is a permutation
    assert not torch.equal(torch.cat(first[:5]), torch.cat(first[5:]))  # epoch 1 reshuffles
    shards = [BatchSchedule(100, 20, seed=3, rank=r, world_size=4).indices(7) for r in range(4)]
    assert torch.equal(torch.cat(shards), first[7])  # DDP shards tile the global batch


def test_updates_per_step_counts_calls_per_group() -> None:
    data = tm.toy_dataset(64)
    model = build_model("test-toy-two-group", data.info)
    fit(model, data, _config(steps=7, groups={"a": {"updates": 3}}), progress=False)
    assert model.calls == {"a": 21, "b": 7}
    with pytest.raises(ConfigError, match="train.groups names group"):
        fit(model, data, _config(steps=1, groups={"generator": {"updates": 2}}), progress=False)


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        state.stop_requested = state.step >= self.step


def test_a_callback_can_stop_training_and_the_model_is_still_written(tmp_path: Path) -> None:
    data = tm.toy_dataset(64)
    model = build_model("test-toy-det", data.info)
    result = fit(model, data, _config(steps=50), run_dir=tmp_path, callbacks=[StopAt(7)], progress=False)
    assert result.steps == 7 and result.stopped_early
    assert (tmp_path / "model.safetensors").is_file()


def test_time_budget_stops_after_its_seconds() -> None:
    ticks = iter(float(t) for t in range(10_000))  # every reading advances one "second"
    budget = TimeBudget(5, check_every=1, clock=lambda: next(ticks))
    data = tm.toy_dataset(64)
    model = build_model("test-toy-det", data.info)
    result = fit(model, data, _config(steps=1000), callbacks=[budget], progress=False)
    assert result.steps == 5 and result.stopped_early
    with pytest.raises(ConfigError, match="positive"):
        TimeBudget(0)


def test_conditional_models_receive_labels() -> None:
    data = tm.toy_dataset(64, labels=True)
    model = tm.ToyDeterministicAE(data.info, conditional=True)
    fit(model, data, _config(steps=2), progress=False)
    assert all(c is not None and c.shape == (32,) and c.dtype == torch.int64 for c in model.contexts)
    plain = tm.ToyDeterministicAE(data.info)
    fit(plain, data, _config(steps=2), progress=False)
    assert all(c is None for c in plain.contexts)


def test_grad_clipping_bounds_the_norm(tmp_path: Path) -> None:
    data = tm.toy_dataset(64)
    data.train.x.mul_(100)  # huge losses: unclipped gradients have norms in the thousands
    model = build_model("test-toy-det", data.info)

    def grad_norm(state: TrainState) -> float:
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in state.model.parameters()])).item()

    rec = Recorder(grad_norm)
    fit(
        model,
        data,
        _config(steps=5, grad_clip=0.5, log_every=1),
        run_dir=tmp_path,
        callbacks=[rec],
        progress=False,
    )
    logged = [json.loads(x)["grad_norm"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert min(logged) > 10  # the pre-clip norm, as logged
    assert max(rec.values) <= 0.5 * (1 + 1e-5)
    assert rec.values[0] == pytest.approx(0.5, rel=1e-4)


def test_a_diverging_loss_stops_training_with_a_clear_error(tmp_path: Path) -> None:
    data = tm.toy_dataset(64)
    model = build_model("test-toy-det", data.info)
    with pytest.raises(TrainingError, match=r"diverged: loss = (nan|inf) by step 3.*grad_clip"):
        fit(model, data, _config(steps=10, lr=1e40, log_every=3), run_dir=tmp_path, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 3  # the line that shows the divergence is written, then it stops


def test_lr_schedules() -> None:
    kw = {"warmup_steps": 10, "total_steps": 110}
    for name in SCHEDULES:
        assert [lr_factor(name, s, **kw) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
        assert lr_factor(name, 9, **kw) == pytest.approx(1.0)
        assert lr_factor(name, 10, **kw) == pytest.approx(1.0)
    assert lr_factor("cosine", 60, **kw) == pytest.approx(0.5)
    assert lr_factor("linear", 60, **kw) == pytest.approx(0.5)
    assert lr_factor("cosine", 35, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("cosine", 109, **kw) < 1e-3 and lr_factor("cosine", 110, **kw) == 0.0
    assert lr_factor("constant", 109, **kw) == 1.0
    with pytest.raises(ConfigError, match="constant, cosine, linear"):
        lr_factor("exponential", 0, **kw)


def test_fit_follows_the_schedule(tmp_path: Path) -> None:
    data = tm.toy_dataset(64)
    model = build_model("test-toy-det", data.info)
    config = _config(steps=12, lr=0.1, lr_schedule="cosine", warmup_steps=2, log_every=1)
    fit(model, data, config, run_dir=tmp_path, progress=False)
    # Each line logs the rate the *next* step uses.
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx(
        [0.1 * lr_factor("cosine", s, warmup_steps=2, total_steps=12) for s in range(1, 13)]
    )
    with pytest.raises(ConfigError, match="valid schedules"):
        fit(model, data, _config(lr_schedule="step"), progress=False)


def test_ema_follows_the_closed_form_recursion() -> None:
    data = tm.toy_dataset(64)
    model = build_model("test-toy", data.info)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trajectory = Recorder(lambda s: {k: v.clone() for k, v in s.model.state_dict().items()})
    ema = EMA(0.8)
    fit(model, data, _config(steps=6), callbacks=[trajectory, ema], progress=False)
    assert any(not torch.equal(initial[k], trajectory.values[0][k]) for k in initial)
    for key, avg in ema.shadow.items():
        expected = trajectory.values[0][key].clone()  # θ̄_1 = θ_1
        for weights in trajectory.values[1:]:
            if expected.is_floating_point():
                expected = 0.8 * expected + 0.2 * weights[key]
            else:
                expected = weights[key]
        torch.testing.assert_close(avg, expected, rtol=1e-6, atol=1e-7)
    current = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.average_weights():
        assert all(torch.equal(model.state_dict()[k], ema.averaged_state()[k]) for k in current)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in current.items())  # swapped back
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        EMA(1.5)


def test_kl_warmup_sets_beta_linearly() -> None:
    data = tm.toy_dataset(64)
    model = build_model({"name": "test-toy", "beta": 2.0}, data.info)
    fit(model, data, _config(steps=7), callbacks=[KLWarmup(4)], progress=False)
    assert model.betas_seen == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0])
    warm = KLWarmup(4)
    with pytest.raises(ConfigError, match="declares no loss weights"):
        fit(build_model("test-toy-det", data.info), data, _config(steps=1), callbacks=[warm], progress=False)


def _scripted_dataset() -> Dataset:
    # Train targets at 1, validation at 0.3: the validation loss of w falls, then rises.
    info = DataInfo((1,))
    return Dataset("scripted", info, Split(torch.ones(64, 1)), Split(torch.full((16, 1), 0.3)))


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path) -> None:
    data = _scripted_dataset()
    model = tm.ToyScalar(data.info)
    trajectory = Recorder(lambda s: s.model.w.item())
    config = _config(steps=50, lr=0.05, eval_every=1, patience=3, log_every=100)
    result = fit(model, data, config, run_dir=tmp_path, callbacks=[trajectory], progress=False)
    valid = [(w - 0.3) ** 2 for w in trajectory.values]
    best = min(range(len(valid)), key=valid.__getitem__)
    assert result.stopped_early and result.steps == best + 1 + 3 < 50
    assert model.w.item() == pytest.approx(trajectory.values[best])
    assert result.best_valid_loss == pytest.approx(valid[best], rel=1e-5)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == result.steps and "loss" in lines[-1]  # the stopping step is logged
    with pytest.raises(ConfigError, match="no validation split"):
        fit(
            tm.ToyScalar(data.info),
            tm.toy_dataset(8, dim=1),
            _config(patience=2, eval_every=1),
            progress=False,
        )


def test_metrics_jsonl_lines(tmp_path: Path) -> None:
    data = tm.toy_dataset(128, valid=32)
    model = build_model("test-toy", data.info)
    fit(model, data, _config(steps=25, log_every=10, eval_every=10), run_dir=tmp_path, progress=True)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "loss" in x]
    evals = [x for x in lines if "valid_loss" in x]
    assert [x["step"] for x in train] == [10, 20, 25] and [x["step"] for x in evals] == [10, 20]
    for line in train:
        assert {"step", "epoch", "lr", "loss", "rec", "kl", "examples_per_s", "elapsed_s"} <= set(line)
        assert all(math.isfinite(v) for v in line.values())
    assert train[0]["epoch"] == pytest.approx(10 / 4)
    assert 0 <= train[0]["elapsed_s"] <= train[-1]["elapsed_s"]  # a running total, never a speed check
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == {"name": "test-toy"} and config["info"]["event_shape"] == [4]


def test_evaluation_does_not_change_the_trajectory() -> None:
    data = tm.toy_dataset(128, valid=32, dynamic_binarization=True)
    runs = []
    for eval_every in (0, 3):
        torch.manual_seed(0)
        model = build_model("test-toy", data.info)
        fit(model, data, _config(steps=12, eval_every=eval_every, ema_decay=0.9), progress=False)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_sample_every_writes_with_a_fixed_generator(tmp_path: Path) -> None:
    data = tm.toy_dataset(64)
    model = build_model("test-toy", data.info)
    written: list[tuple[torch.Tensor, Path]] = []
    fit(
        model,
        data,
        _config(steps=4, sample_every=2),
        run_dir=tmp_path,
        sample_writer=lambda x, p: written.append((x, p)),
        progress=False,
    )
    assert [p.name for _, p in written] == ["step-0000002.png", "step-0000004.png"]
    assert written[0][0].shape == (64, 4) and written[0][1].parent == tmp_path / "samples"
    with pytest.raises(ConfigError, match="sample writer"):
        fit(model, data, _config(sample_every=2), progress=False)
