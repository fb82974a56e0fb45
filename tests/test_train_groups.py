"""What a model declares to the loop: per-group update settings, its validation score, buffers
local to a process, loss weights for schedules, and a second stage after training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import Tensor, nn

from simulacra.config import RunConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.errors import ConfigError
from simulacra.models.base import GenerativeModel, GroupSettings, LossOutput, mark_local
from simulacra.models.zoo import build_model
from simulacra.train import EMA, fit, load_model
from simulacra.train.callbacks import build_callbacks
from simulacra.train.groups import resolve_groups
from simulacra.train.state import EarlyStopping, TrainerState

import toymodels as tm


class Recording(GenerativeModel):
    """Two groups "critic" and "generator" with declared settings; records every batch a group sees."""

    groups = ("critic", "generator")

    def __init__(self, info: DataInfo, settings: dict[str, GroupSettings] | None = None) -> None:
        super().__init__(info)
        self.critic = nn.Linear(info.dim, 1)
        self.generator = nn.Linear(info.dim, info.dim)
        self.settings = settings or {}
        self.seen: list[tuple[str, Tensor]] = []

    def optimizer_settings(self) -> dict[str, GroupSettings]:
        return {g: self.settings.get(g, GroupSettings()) for g in self.groups}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"critic": list(self.critic.parameters()), "generator": list(self.generator.parameters())}

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        self.seen.append((group, x.detach().clone()))
        net = self.critic if group == "critic" else self.generator
        return LossOutput(net(x).pow(2).mean())

    def sample(self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.info.dim, generator=generator)


def _config(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"steps": 4, "batch_size": 16, "lr": 1e-2, "log_every": 100, **kw})


def test_group_settings_resolve_model_then_config_then_run() -> None:
    data = tm.toy_dataset(64)
    model = Recording(
        data.info,
        {
            "critic": GroupSettings(lr=4e-4, betas=(0.0, 0.9), updates=5),
            "generator": GroupSettings(lr_scale=0.5),
        },
    )
    groups = resolve_groups(
        model, _config(weight_decay=0.1, groups={"critic": {"updates": 2, "grad_clip": 1.0}})
    )
    critic, generator = groups["critic"], groups["generator"]
    assert (critic.lr, critic.betas, critic.updates, critic.grad_clip) == (4e-4, (0.0, 0.9), 2, 1.0)
    assert critic.weight_decay == 0.1  # the run's, since neither the model nor the override sets it
    assert (generator.lr, generator.betas, generator.updates) == (0.5e-2, (0.9, 0.999), 1)
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve_groups(model, _config(groups={"critic": {"n_critic": 5}}))
    with pytest.raises(ConfigError, match="names group"):
        resolve_groups(model, _config(groups={"discriminator": {"updates": 5}}))
    with pytest.raises(ConfigError, match="integer >= 1"):
        resolve_groups(model, _config(groups={"critic": {"updates": 0}}))
    with pytest.raises(ConfigError, match="betas"):
        resolve_groups(model, _config(groups={"critic": {"betas": [0.5, 1.5]}}))


def test_each_group_gets_its_own_optimizer_settings() -> None:
    # one Adam step moves every weight with a gradient by about its learning rate (m̂/√v̂ = ±1)
    data = tm.toy_dataset(64)
    model = Recording(data.info, {"critic": GroupSettings(lr=4e-4, betas=(0.0, 0.9))})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, data, _config(steps=1), progress=False)
    moved = {k: (v - before[k]).abs().max().item() for k, v in model.state_dict().items()}
    assert moved["critic.weight"] == pytest.approx(4e-4, rel=1e-3)
    assert moved["generator.weight"] == pytest.approx(1e-2, rel=1e-3)


def test_fresh_batches_per_update_and_shared_ones_otherwise() -> None:
    data = tm.toy_dataset(128)
    shared = Recording(data.info, {"critic": GroupSettings(updates=3)})
    fit(shared, data, _config(steps=2), progress=False)
    per_step = [shared.seen[i : i + 4] for i in range(0, 8, 4)]
    for step in per_step:
        assert [g for g, _ in step] == ["critic"] * 3 + ["generator"]
        assert all(torch.equal(step[0][1], x) for _, x in step)  # one batch for every update
    fresh = Recording(data.info, {"critic": GroupSettings(updates=3, fresh_batch=True)})
    fit(fresh, data, _config(steps=2), progress=False)
    batches = [x for _, x in fresh.seen]
    critic_batches = [batches[i] for i in (0, 1, 2, 4, 5, 6)]
    rows = torch.cat(critic_batches)
    assert len({tuple(r.tolist()) for r in rows}) == rows.shape[0]  # 6 disjoint batches: one epoch of 96
    assert torch.equal(batches[3], batches[0]) and torch.equal(batches[7], batches[4])  # generator: shared
    # the run length in epochs counts every batch read
    again = Recording(data.info, {"critic": GroupSettings(updates=3, fresh_batch=True)})
    result = fit(again, data, _config(steps=None, epochs=2), progress=False)
    assert result.steps == 6  # 8 batches per epoch, 3 per step: ceil(2 · 8 / 3)


class Scripted(GenerativeModel):
    """One scalar w; the training loss pulls w to the data (1), the validation score is (w − 0.3)²
    whatever the data: it falls, then rises, so its best is known."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__(info)
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        return LossOutput((self.w - x).pow(2).mean())

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return (self.w.detach() - 0.3).pow(2).expand(x.shape[0])  # one value per example

    def sample(self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        return self.w.detach().expand(n, 1).clone()


def _scripted_data() -> Dataset:
    return Dataset("scripted", DataInfo((1,)), Split(torch.ones(64, 1)), Split(torch.full((16, 1), 5.0)))


@pytest.mark.parametrize("patience", [None, 3])
def test_the_models_validation_score_drives_best_weights_with_or_without_early_stopping(
    tmp_path: Path, patience: int | None
) -> None:
    data = _scripted_data()
    model = Scripted(data.info)
    trajectory: list[float] = []

    class Track:
        def on_step_end(self, state: Any) -> None:
            trajectory.append(state.model.w.item())

    config = _config(steps=40, lr=0.05, eval_every=1, patience=patience, keep_best=True)
    result = fit(model, data, config, run_dir=tmp_path, callbacks=[Track()], progress=False)
    scores = [(w - 0.3) ** 2 for w in trajectory]
    best = min(range(len(scores)), key=scores.__getitem__)
    assert result.best_step == best + 1 and result.restored_best
    assert model.w.item() == pytest.approx(trajectory[best])
    assert result.best_valid_loss == pytest.approx(scores[best], rel=1e-5)
    if patience is None:
        assert result.steps == 40 and not result.stopped_early  # kept the best without stopping
    else:
        assert result.steps == best + 1 + patience and result.stopped_early
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert min(x["valid_loss"] for x in logged if "valid_loss" in x) == pytest.approx(scores[best], rel=1e-5)
    # the final model on disk holds the best weights too
    saved = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert saved["w"].item() == pytest.approx(trajectory[best])


def test_without_keep_best_the_run_ends_on_its_last_weights() -> None:
    data = _scripted_data()
    model = Scripted(data.info)
    config = _config(steps=30, lr=0.05, eval_every=1, patience=None, keep_best=False)
    result = fit(model, data, config, progress=False)
    assert not result.restored_best and result.best_step is not None and result.best_step < 30
    assert (model.w.item() - 0.3) ** 2 > result.best_valid_loss


def test_validation_is_on_by_default_where_a_validation_split_exists() -> None:
    """About 20 evaluations per run, early stopping after 10 without improvement, the best
    weights kept; nothing of it without a validation split (and asking for it is an error)."""
    data = _scripted_data()
    model = Scripted(data.info)
    result = fit(model, data, _config(steps=200, lr=0.05), progress=False)
    assert result.best_step is not None and result.best_step % 10 == 0  # every 200 / 20 steps
    assert result.stopped_early and result.restored_best and result.steps == result.best_step + 10 * 10
    assert result.summary() == (
        f"trained {result.steps} of 200 steps (stopped early: no better validation score in the last "
        f"evaluations); weights from step {result.best_step}, the best validation score"
    )
    no_valid = Dataset("no-valid", data.info, data.train)
    plain = fit(Scripted(data.info), no_valid, _config(steps=20, lr=0.05), progress=False)
    assert plain.steps == 20 and plain.best_step is None and not plain.restored_best
    assert plain.summary().endswith("the last weights (no validation scores to choose others)")
    with pytest.raises(ConfigError, match="no validation split"):
        fit(Scripted(data.info), no_valid, _config(eval_every=5), progress=False)


def test_trainer_state_round_trips() -> None:
    data = tm.toy_dataset(64)
    model = Recording(data.info)
    groups = resolve_groups(model, _config())
    from simulacra.train.groups import build_optimizers

    optimizers, schedulers = build_optimizers(groups, _config(), 10)
    state = TrainerState(optimizers, schedulers, EarlyStopping(patience=2, keep_best=True))
    model.loss(data.train.x[:8], group="critic").loss.backward()
    optimizers["critic"].step()
    schedulers["critic"].step()
    state.step, state.last_log_step, state.last_metrics = 7, 5, {"loss": 0.25}
    state.early.update(1.5, 4, model.state_dict())
    state.early.update(2.0, 6, model.state_dict())
    state.metrics.add("loss", torch.tensor(0.5))
    saved = state.state_dict(total_steps=10, world_size=1, elapsed=3.0)

    fresh_opt, fresh_sched = build_optimizers(groups, _config(), 10)
    restored = TrainerState(fresh_opt, fresh_sched, EarlyStopping(patience=2, keep_best=True))
    restored.load_state_dict(saved, total_steps=10, device=torch.device("cpu"))
    again = restored.state_dict(total_steps=10, world_size=1, elapsed=0.0)
    assert again["step"] == 7 and again["early_stopping"] == {
        "best": 1.5,
        "best_step": 4,
        "bad_evals": 1,
        "stopped": False,
    }
    assert again["elapsed_s"] == 3.0 and again["last_metrics"] == {"loss": 0.25}
    exp_avg = saved["optimizers"]["critic"]["state"][0]["exp_avg"]
    assert torch.equal(again["optimizers"]["critic"]["state"][0]["exp_avg"], exp_avg)
    assert again["schedulers"] == saved["schedulers"]
    with pytest.raises(Exception, match="planned for 10 steps"):
        restored.load_state_dict(saved, total_steps=11, device=torch.device("cpu"))


class WithLocal(GenerativeModel):
    def __init__(self, info: DataInfo) -> None:
        super().__init__(info)
        self.lin = nn.Linear(info.dim, info.dim)
        self.register_buffer("chains", torch.zeros(3, info.dim))
        mark_local(self, "chains")

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        with torch.no_grad():
            self.chains += 1.0
        return LossOutput((self.lin(x) - x).pow(2).mean())

    def sample(self, n: int, c: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.info.dim, generator=generator)


def test_ema_leaves_local_buffers_alone() -> None:
    data = tm.toy_dataset(64)
    model = WithLocal(data.info)
    ema = EMA(0.5)
    fit(model, data, _config(steps=3), callbacks=[ema], progress=False)
    assert "chains" not in ema.shadow and "lin.weight" in ema.shadow
    with ema.average_weights():
        assert torch.equal(model.chains, torch.full((3, 4), 3.0))  # not averaged, not swapped
    assert torch.equal(model.chains, torch.full((3, 4), 3.0))
    with pytest.raises(ValueError, match="no buffer"):
        mark_local(model, "missing")


def test_an_autoencoders_post_hoc_density_is_fitted_by_fit(tmp_path: Path) -> None:
    data = load_dataset(RunConfig.from_dict({"data": {"name": "moons", "num_samples": 600}}).data)
    torch.manual_seed(0)
    model = build_model({"name": "ae", "latent_dim": 2, "hidden": [16], "latent_density": "gmm"}, data.info)
    result = fit(model, data, _config(steps=30, batch_size=64), run_dir=tmp_path, progress=False)
    assert set(result.second_stage) == {"latent_nll"}
    # the fitted density is the one a GMM fit to the training codes gives, and it is saved
    expected = build_model(
        {"name": "ae", "latent_dim": 2, "hidden": [16], "latent_density": "gmm"}, data.info
    )
    expected.load_state_dict(model.state_dict())
    with torch.no_grad():
        z = expected.eval().encode(data.train.x).mean
    expected.fit_latent_density(z)
    assert torch.allclose(model.latent_density.means, expected.latent_density.means, atol=1e-5)
    assert not torch.equal(model.latent_density.means, torch.zeros_like(model.latent_density.means))
    saved = load_model(tmp_path)
    assert torch.equal(saved.latent_density.means, model.latent_density.means)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["second_stage"]["latent_nll"] == pytest.approx(result.second_stage["latent_nll"])


def test_callbacks_section_and_legacy_train_keys() -> None:
    config = RunConfig.from_dict(
        {"model": {"name": "vae"}, "train": {"kl_warmup_steps": 100, "updates_per_step": {"critic": 5}}}
    )
    assert config.callbacks == {"kl-warmup": {"steps": 100}}
    assert config.train.groups == {"critic": {"updates": 5}}
    (warmup,) = build_callbacks(config.callbacks)
    assert warmup.weight == "kl" and warmup.steps == 100
    again = RunConfig.from_dict(config.to_dict())
    assert again == config
    with pytest.raises(ConfigError, match="has no setting"):
        build_callbacks({"kl-warmup": {"step": 10}})
    with pytest.raises(Exception, match="unknown callback"):
        build_callbacks({"kl-warmup-typo": {}})


def test_kl_warmup_from_the_callbacks_section_reaches_a_vae() -> None:
    data = tm.toy_dataset(64, unit=True)
    model = build_model({"name": "vae", "latent_dim": 2, "hidden": [8]}, data.info)
    betas: list[float] = []

    class Watch:
        def on_step_end(self, state: Any) -> None:
            betas.append(state.model.loss_weights()["kl"])

    fit(
        model,
        data,
        _config(steps=5),
        callbacks=[*build_callbacks({"kl-warmup": {"steps": 4}}), Watch()],
        progress=False,
    )
    assert betas == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
