"""The interface's declarations and capabilities, for every registered preset.

What metrics, tasks and the CLI read about a model is declared on ``GenerativeModel`` (preset
name and spec, likelihood report, sampling options) and checked here against the models; every
``sample`` owns its gradient mode; diffusion models are ``DiffusionSampling`` with exact data <->
model maps; sampler objects carry their defaults and options; autoregressive networks state what
they offer through protocols.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch

import simulacra.models  # noqa: F401  (registers every preset)
from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, DataError, UnknownNameError
from simulacra.models.autoregressive import AutoregressiveNet, IncrementalNet, LocalFeatures, MaskEnsemble
from simulacra.models.base import (
    DiffusionSampling,
    GenerativeModel,
    LikelihoodReport,
    SecondStage,
    check_batch,
    require,
)
from simulacra.models.zoo import MODELS, build_model
from simulacra.samplers import (
    DDIM,
    SAMPLERS,
    Ancestral,
    DPMSolver,
    EulerMaruyama,
    Heun,
    PredictorCorrector,
    ProbabilityFlowODE,
    Sampler,
    resolve_sampler,
)
from simulacra.tasks.inverse import inpaint
from simulacra.train.checkpoint import load_model, save_model

from presets import TINY, context_for, draw

NAMES = [n for n in MODELS.names() if not n.startswith("test-")]


def _build(name: str, **overrides: object) -> GenerativeModel:
    kwargs, info = TINY[name]
    torch.manual_seed(0)
    return build_model({"name": name, **kwargs, **overrides}, info)


def _labels(model: GenerativeModel, n: int) -> torch.Tensor | None:
    return context_for(model, n)


# -- every preset ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_sample_owns_its_gradient_mode(name: str) -> None:
    """Called with gradients on, ``sample`` (``translate`` for a CycleGAN) returns a tensor that needs no gradient and records no
    graph: callers never wrap it in ``torch.no_grad``."""
    model = _build(name).eval()
    assert torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters())
    x = draw(model, 3, 0)  # a CycleGAN's translations
    assert x.shape == (3, *model.event_shape)
    assert not x.requires_grad and x.grad_fn is None
    assert torch.is_grad_enabled()  # and the caller's mode is left as it was


@pytest.mark.parametrize("name", NAMES)
def test_declarations(name: str) -> None:
    """The preset's name and spec, the likelihood report and the sampling options are declared,
    and ``sample_options`` names exactly the keyword options ``sample`` takes."""
    model = _build(name)
    assert model.preset_name == name and model.spec is not None and model.spec["name"] == name
    assert isinstance(model, LikelihoodReport)
    assert isinstance(model.discrete_likelihood, bool)
    assert isinstance(model.likelihood_estimator, str) and isinstance(model.bound_name, str)
    params = inspect.signature(model.sample).parameters
    keywords = {p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY} - {"generator"}
    assert model.sample_options == keywords


def test_declaration_values() -> None:
    assert _build("vae").bound_name == "ELBO" and _build("ddpm").bound_name == "VLB"
    assert "PF-ODE" in _build("score-sde").likelihood_estimator
    assert _build("made").likelihood_estimator == "exact, mixture of 3 masks (log-mean-exp)"
    assert _build("nade").discrete_likelihood and not _build("realnvp").discrete_likelihood
    assert isinstance(_build("ae"), SecondStage) and not isinstance(_build("vae"), SecondStage)


def test_a_model_not_built_from_a_preset_is_named_by_its_class() -> None:
    from simulacra.models.diffusion import Diffusion
    from simulacra.nn.time import TimeMLP
    from simulacra.processes import SCHEDULES

    info = DataInfo((2,), num_classes=3)
    model = Diffusion(info, TimeMLP((2,), [8], num_classes=3), SCHEDULES.build("vp"), conditional=True)
    assert model.preset_name == "Diffusion" and model.spec is None
    with pytest.raises(
        DataError, match=r"Diffusion is conditional: it needs a context c, \(4,\) labels in \[0, 3\)"
    ):
        check_batch(model, torch.zeros(4, 2))
    with pytest.raises(DataError, match=r"expected a batch of shape \(B, 2\); found \(4, 3\)"):
        check_batch(model, torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(DataError, match="expected a context c with 4 rows"):
        check_batch(model, torch.zeros(4, 2), torch.zeros(3))


# -- diffusion sampling -----------------------------------------------------------------------------


def test_only_diffusion_models_are_diffusion_sampling() -> None:
    diffusion = {n for n in NAMES if isinstance(_build(n), DiffusionSampling)}
    assert diffusion == {"ddpm", "score-sde"}
    model = require(_build("ddpm"), DiffusionSampling, "denoiser")
    assert model.scale == 2.0 and model.default_steps == 10
    with pytest.raises(Exception, match="vae has no denoiser; use a diffusion model"):
        require(_build("vae"), DiffusionSampling, "denoiser", "use a diffusion model")


def test_data_and_model_space_maps() -> None:
    """to_model without dequantization is the affine map y = 2x − 1, inverted exactly by
    from_model; dequantized, y stays inside x's bin, so from_model rounds back to x's level."""
    model = _build("ddpm")  # [0, 1] data on 17 levels
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 17, (5, *model.event_shape), generator=g) / 16
    y = model.to_model(x, dequantize=False)
    torch.testing.assert_close(y, 2 * x - 1)
    assert torch.equal(model.from_model(y), x)
    noisy = model.to_model(x, torch.Generator().manual_seed(1))
    assert not torch.equal(noisy, y) and (noisy - y).abs().max() <= 1 / 16 + 1e-6  # half a bin, doubled
    assert torch.equal(model.from_model(noisy), x)
    real = _build("score-sde")
    z = torch.randn(4, *real.event_shape)
    assert torch.equal(real.to_model(z, torch.Generator().manual_seed(0)), z) and torch.equal(
        real.from_model(z), z
    )


def test_inverse_tasks_return_data_on_the_levels_and_keep_the_observation() -> None:
    """The inverse tasks map back with the model's from_model: like samples, their answers lie on
    the data's levels (the observed entries, already on them, are kept exactly)."""
    model = _build("ddpm", conditional=False).eval()
    x = torch.randint(0, 17, (2, *model.event_shape), generator=torch.Generator().manual_seed(0)) / 16
    mask = torch.zeros(model.event_shape)
    mask[..., :4] = 1
    out = inpaint(model, x, mask, steps=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out * 16, (out * 16).round(), atol=0, rtol=0)
    assert torch.equal(out * mask, x * mask)


# -- sampler objects ----------------------------------------------------------------------------------


def test_every_sampler_name_resolves_to_its_object_with_defaults() -> None:
    classes = {
        "ancestral": Ancestral, "ddim": DDIM, "euler-maruyama": EulerMaruyama, "pc": PredictorCorrector,
        "dpm-solver": DPMSolver, "ode": ProbabilityFlowODE, "heun": Heun,
    }  # fmt: skip
    assert set(SAMPLERS.names()) == set(classes)
    for name, cls in classes.items():
        sampler = resolve_sampler(name)
        assert type(sampler) is cls and sampler == cls() and cls.name == name
    assert resolve_sampler("dpm-solver") == DPMSolver(steps=20, spacing="log-snr", lower_order_final=True)
    assert DDIM().eta == 0.0 and PredictorCorrector().snr == 0.16 and ProbabilityFlowODE().method == "dopri5"
    assert Ancestral().steps is None and Ancestral().spacing == "time"


def test_sampler_options_and_specs() -> None:
    assert resolve_sampler("ddim", steps=50, eta=0.5) == DDIM(steps=50, eta=0.5)
    assert resolve_sampler("ddim", steps=None) == DDIM()  # None keeps the default
    assert resolve_sampler({"name": "pc", "snr": 0.2}, steps=7) == PredictorCorrector(steps=7, snr=0.2)
    assert DPMSolver().with_options(steps=8) == DPMSolver(steps=8)
    with pytest.raises(UnknownNameError, match="Did you mean 'ddim'"):
        resolve_sampler("ddmi")
    with pytest.raises(
        ConfigError, match="sampler 'ddim' has no option 'snr'; its options: steps, spacing, eta"
    ):
        resolve_sampler("ddim", snr=0.1)
    with pytest.raises(ConfigError, match="has no option 'eta'"):
        Ancestral().with_options(eta=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DDIM().eta = 1.0  # type: ignore[misc]


def test_a_samplers_grid_defaults_to_the_models() -> None:
    ddpm, sde = _build("ddpm"), _build("score-sde")
    assert len(Ancestral().grid(ddpm)) == 10 and len(Ancestral().grid(sde)) == 10  # T, sample_steps
    assert len(DDIM(steps=4).grid(sde)) == 4
    torch.testing.assert_close(DPMSolver().grid(sde), sde.time_grid(20, "log-snr"))


def test_the_preset_turns_the_config_name_into_the_models_default_sampler(tmp_path: Path) -> None:
    """A config's ``sampler = "..."`` (or ``{name, options}``) becomes a Sampler object in the
    preset; the checkpoint keeps the string and loads back into the same object."""
    model = _build("score-sde", sampler={"name": "ddim", "eta": 0.5})
    assert model.sampler == DDIM(eta=0.5) and isinstance(model.sampler, Sampler)
    assert _build("ddpm").sampler == Ancestral() and _build("score-sde").sampler == EulerMaruyama()
    run = tmp_path / "run"
    model = _build("score-sde", sampler="dpm-solver")
    save_model(model, run)
    loaded = load_model(run)
    assert loaded.sampler == DPMSolver() and loaded.spec["sampler"] == "dpm-solver"
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(loaded.sample(4, generator=g()), model.sample(4, generator=g()))
    assert torch.equal(model.sample(4, generator=g()), model.sample(4, generator=g(), sampler=DPMSolver()))
    with pytest.raises(UnknownNameError, match="sampler"):
        _build("ddpm", sampler="dpm-solve")


# -- autoregressive networks ----------------------------------------------------------------------------


def test_autoregressive_networks_state_what_they_offer() -> None:
    nets = {
        name: _build(name).net
        for name in ("nade", "rnade", "made", "pixelcnn", "gated-pixelcnn", "transformer")
    }
    assert all(isinstance(net, AutoregressiveNet) for net in nets.values())
    assert {n for n, net in nets.items() if isinstance(net, IncrementalNet)} == {
        "nade",
        "rnade",
        "transformer",
    }
    assert {n for n, net in nets.items() if isinstance(net, LocalFeatures)} == {"pixelcnn", "gated-pixelcnn"}
    assert {n for n, net in nets.items() if isinstance(net, MaskEnsemble)} == {"made"}
    assert _build("made").num_masks == 3 and _build("nade").num_masks == 1
    assert _build("made", num_masks=1).num_masks == 1
