"""Learned VAE priors: the VampPrior, the latent diffusion prior of LSGM, and the prior hole.

The mathematics checked: a VampPrior with one pseudo-input is the Gaussian q(z | u₁) and any
VampPrior is a normalized density; the mixed score with m = 0 is the score of N(0, I) exactly;
the latent diffusion's variational bound is tight for N(0, I) (it averages to log N(z; 0, I)), and
its control-variate form has the same mean; the PF-ODE density of the m = 0 model is N(0, I); the
two-stage LSGM with the exact normal score gives the standard VAE's importance weights, trains its
prior only, and refuses a first stage without latents; the prior-hole estimate is 0 when q(z) = p(z)
by construction and the Gaussian KL otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Independent, Normal

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError
from simulacra.metrics.latent import prior_hole
from simulacra.models.latent_prior import LatentDiffusion, VampPrior
from simulacra.models.vae import VAE
from simulacra.models.zoo import build_model
from simulacra.nn.time import TimeMLP
from simulacra.processes.schedules import VP
from simulacra.samplers import DDIM, resolve_sampler

DIGITS = DataInfo(event_shape=(1, 8, 8), support="unit", num_classes=10, levels=17)
TINY_VAE = {"name": "vae", "latent_dim": 2, "hidden": [8]}


def _vamp_vae(components: int) -> VAE:
    torch.manual_seed(0)
    model = build_model({**TINY_VAE, "prior": {"name": "vamp", "components": components}}, DIGITS)
    assert isinstance(model, VAE) and isinstance(model.prior_module, VampPrior)
    return model


def _latent_diffusion(mixing_logit: float) -> LatentDiffusion:
    torch.manual_seed(0)
    prior = LatentDiffusion(2, TimeMLP((2,), [8]), VP(), sampler=resolve_sampler("euler-maruyama"))
    with torch.no_grad():
        prior.mixing_logit.fill_(mixing_logit)
    return prior


# -- the VampPrior -----------------------------------------------------------------------------


def test_a_vamp_prior_with_one_pseudo_input_is_the_gaussian_posterior_at_it() -> None:
    model = _vamp_vae(1)
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(1))
    q = model.encode(model.prior_module.inputs())  # q(z | u₁), batch (1,)
    with torch.no_grad():
        assert torch.allclose(model.prior(n=7).log_prob(z), q.log_prob(z), atol=1e-5)
        assert torch.allclose(model.prior().log_prob(z), q.log_prob(z), atol=1e-5)


def test_a_vamp_prior_integrates_to_one_and_holds_the_encoder_once() -> None:
    model = _vamp_vae(3)
    with torch.no_grad():
        model.prior_module.pseudo_inputs.mul_(3.0)  # spread the components apart
        grid = torch.linspace(-12, 12, 401)
        z = torch.cartesian_prod(grid, grid)  # (401², 2)
        density = model.prior().log_prob(z).exp()
    h = float(grid[1] - grid[0])
    assert abs(float(density.sum()) * h * h - 1.0) < 1e-3
    keys = list(model.state_dict())
    assert "prior_module.pseudo_inputs" in keys
    assert not [k for k in keys if k.startswith("prior_module.") and k != "prior_module.pseudo_inputs"]


# -- the latent diffusion prior (LSGM) ---------------------------------------------------------


def test_the_mixed_score_with_zero_mixing_is_the_normal_score_exactly() -> None:
    prior = _latent_diffusion(-math.inf)
    g = torch.Generator().manual_seed(2)
    z_t, t = 3 * torch.randn(5, 2, generator=g), torch.rand(5, generator=g).clamp_min(1e-3)
    alpha, sigma = prior.process.alpha_sigma(t)
    score = -prior.eps(z_t, t) / sigma[:, None]
    assert torch.allclose(score, -z_t / (alpha**2 + sigma**2)[:, None], rtol=1e-6, atol=0)
    assert torch.allclose(
        prior.denoise(z_t, t), (alpha / (alpha**2 + sigma**2))[:, None] * z_t, rtol=1e-4, atol=2e-5
    )


def test_the_latent_diffusion_bound_is_tight_for_the_normal_prior_and_its_control_variate_unbiased() -> None:
    z = torch.tensor([[0.3, -1.2], [2.0, 0.5], [0.0, 0.0]])
    n = 8000
    torch.manual_seed(3)
    with torch.no_grad():
        exact = _latent_diffusion(-math.inf).log_prob_bound(z.repeat(n, 1), control_variate=False)
        learned = _latent_diffusion(0.0)
        raw = learned.log_prob_bound(z.repeat(n, 1), control_variate=False).reshape(n, 3)
        controlled = learned.log_prob_bound(z.repeat(n, 1)).reshape(n, 3)
    exact = exact.reshape(n, 3)
    log_normal = Independent(Normal(torch.zeros(2), torch.ones(2)), 1).log_prob(z)
    se = exact.std(0) / math.sqrt(n)
    assert (exact.mean(0) - log_normal).abs().max() < 4 * se.max()  # tight: E bound = log N(z; 0, I)
    se2 = torch.sqrt(raw.var(0) / n + controlled.var(0) / n)
    assert ((raw.mean(0) - controlled.mean(0)).abs() < 4 * se2).all()
    assert (controlled.std(0) < raw.std(0)).all()  # what the control variate is for
    assert (controlled.mean(0) < log_normal).all()  # a random network is a worse prior for these z


def test_eps_weighting_gives_the_encoder_the_bound_and_the_prior_the_denoising_loss() -> None:
    prior = _latent_diffusion(0.0)
    prior.weighting = "eps"
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(11)).requires_grad_(True)
    params = [*prior.parameters()]
    torch.manual_seed(12)
    out = prior.log_prob(z)
    got_z, *got_theta = torch.autograd.grad(out.sum(), [z, *params], allow_unused=True)
    torch.manual_seed(12)  # the same draws: the bound first, then the denoising loss
    bound = prior.log_prob_bound(z)
    (want_z,) = torch.autograd.grad(bound.sum(), [z], retain_graph=True)
    want_theta = torch.autograd.grad(-prior.denoising_loss(z.detach()).sum(), params, allow_unused=True)
    assert torch.allclose(out, bound)  # the value is the bound
    assert torch.allclose(got_z, want_z)  # z learns from the bound
    for got, want in zip(got_theta, want_theta):
        assert (got is None and want is None) or torch.allclose(got, want, atol=1e-6)


def test_the_probability_flow_density_of_the_normal_prior_is_the_normal_density() -> None:
    prior = _latent_diffusion(-math.inf)
    prior.rtol = prior.atol = 1e-4
    z = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    log_normal = Independent(Normal(torch.zeros(2), torch.ones(2)), 1).log_prob(z)
    assert torch.allclose(prior.log_prob_ode(z), log_normal, atol=1e-3)


def _digits(n: int, seed: int) -> torch.Tensor:
    """n images on the 17-level grid of DIGITS."""
    return (
        torch.round(16 * torch.rand(n, *DIGITS.event_shape, generator=torch.Generator().manual_seed(seed)))
        / 16
    )


def _two_stage() -> tuple[VAE, VAE]:
    torch.manual_seed(4)
    first = build_model(TINY_VAE, DIGITS)
    torch.manual_seed(5)
    model = build_model({"name": "lsgm", "stage_one": TINY_VAE, "hidden": [8], "sample_steps": 4}, DIGITS)
    assert isinstance(first, VAE) and isinstance(model, VAE)
    model.initialize_from(first)
    return first, model


def test_the_two_stage_lsgm_with_the_exact_normal_score_gives_the_standard_vae_bound() -> None:
    first, model = _two_stage()
    assert isinstance(model.prior_module, LatentDiffusion)
    with torch.no_grad():
        model.prior_module.mixing_logit.fill_(-math.inf)
    x = _digits(6, 6)
    with torch.no_grad():
        w_vae = first.log_importance_weights(x, num_samples=5, generator=torch.Generator().manual_seed(7))
        w_lsgm = model.log_importance_weights(x, num_samples=5, generator=torch.Generator().manual_seed(7))
        # the one-draw ELBO: analytic KL for the VAE, log q − log p at the draw for LSGM; equal means
        elbo_vae = first.log_prob_bound(x.repeat(300, 1, 1, 1)).reshape(300, 6)
        elbo_lsgm = model.log_prob_bound(x.repeat(300, 1, 1, 1)).reshape(300, 6)
    assert torch.allclose(w_vae, w_lsgm, atol=1e-4)
    se = torch.sqrt(elbo_vae.var(0) / 300 + elbo_lsgm.var(0) / 300)
    assert ((elbo_vae.mean(0) - elbo_lsgm.mean(0)).abs() < 4 * se).all()


def test_the_two_stage_lsgm_trains_its_prior_only_and_refuses_a_model_without_latents() -> None:
    first, model = _two_stage()
    assert model.starts_from is not None
    for name, p in model.encoder.state_dict().items():
        assert torch.equal(p, first.encoder.state_dict()[name])
    trainable = {id(p) for p in model.parameter_groups()["main"]}
    assert trainable == {id(p) for p in model.prior_module.parameters()}
    x = _digits(4, 8)
    model.loss(x).loss.backward()
    assert all(p.grad is None for p in [*model.encoder.parameters(), *model.decoder.parameters()])
    assert model.prior_module.mixing_logit.grad is not None
    maf = build_model({"name": "maf", "transforms": 1, "hidden": [4]}, DIGITS)
    with pytest.raises(ConfigError, match="maf.*without latent variables"):
        model.initialize_from(maf)
    with pytest.raises(ConfigError, match="another architecture"):
        model.initialize_from(build_model({**TINY_VAE, "latent_dim": 3}, DIGITS))
    with pytest.raises(ConfigError, match="no latent posterior"):
        build_model({"name": "lsgm", "stage_one": {"name": "maf", "transforms": 1, "hidden": [4]}}, DIGITS)
    joint = build_model({"name": "lsgm", "stage_one": TINY_VAE, "hidden": [8], "joint": True}, DIGITS)
    assert joint.starts_from is None
    assert {id(p) for p in joint.parameter_groups()["main"]} == {id(p) for p in joint.parameters()}
    tuned = build_model({"name": "lsgm", "stage_one": TINY_VAE, "joint": True, "from_vae": True}, DIGITS)
    assert tuned.starts_from is not None and all(p.requires_grad for p in tuned.parameters())


def test_lsgm_samples_with_any_diffusion_sampler_reproducibly() -> None:
    _, model = _two_stage()
    a = model.sample(3, sampler=DDIM(steps=4), generator=torch.Generator().manual_seed(9))
    b = model.sample(3, sampler=DDIM(steps=4), generator=torch.Generator().manual_seed(9))
    assert a.shape == (3, *DIGITS.event_shape) and torch.equal(a, b)
    with pytest.raises(ConfigError, match="latent diffusion"):
        build_model(TINY_VAE, DIGITS).sample(3, sampler=DDIM(steps=4))


# -- the prior hole ----------------------------------------------------------------------------


class _Gaussians:
    """A stand-in latent-variable model: q(z | x_n) = N(x_n, s² I), and a given prior."""

    def __init__(self, s: float, prior: torch.distributions.Distribution) -> None:
        self.s, self._prior = s, prior
        self.event_shape = (2,)

    def prior(self, c: torch.Tensor | None = None) -> torch.distributions.Distribution:
        return self._prior

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.distributions.Distribution:
        return Independent(Normal(x, torch.full_like(x, self.s)), 1)

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.distributions.Distribution:
        return Independent(Normal(z, torch.ones_like(z)), 1)


def test_the_prior_hole_is_zero_when_the_prior_is_the_aggregate_posterior_and_the_kl_otherwise() -> None:
    g = torch.Generator().manual_seed(10)
    s, n = 0.6, 2000
    means = math.sqrt(1 - s**2) * torch.randn(n, 2, generator=g)  # q(z) = N(0, I) for N → ∞
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=torch.zeros(n)),
        Independent(Normal(means, torch.full_like(means, s)), 1),
    )
    exact = prior_hole(_Gaussians(s, mixture), means, generator=g)  # p = q_N by construction
    assert abs(exact.kl) < 1e-5 and exact.points == exact.draws == n
    normal = prior_hole(
        _Gaussians(s, Independent(Normal(torch.zeros(2), torch.ones(2)), 1)), means, generator=g
    )
    assert 0 < normal.kl < 0.1  # q_N ≈ N(0, I): a small positive bias from N finite
    shifted = Independent(Normal(torch.ones(2), torch.ones(2)), 1)  # KL(N(0, I) ‖ N(1, I)) = ½ ‖1‖² = 1
    hole = prior_hole(_Gaussians(s, shifted), means, draws=4000, generator=g)
    assert abs(hole.kl - (1.0 + normal.kl)) < 4 * hole.standard_error + 0.02


# -- the command line: simulacra train lsgm --init RUN -----------------------------------------


def test_simulacra_trains_lsgm_on_a_vae_run_and_refuses_a_run_without_latents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulacra.cli import main
    from simulacra.train.checkpoint import load_model

    common = ["--data", "digits", "--steps", "2", "--no-progress", "--no-eval"]
    vae_run, maf_run = tmp_path / "vae", tmp_path / "maf"
    assert (
        main(
            [
                "train",
                "vae",
                *common,
                "--set",
                "model.hidden=[8]",
                "--set",
                "model.latent_dim=2",
                "--out",
                str(vae_run),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "maf",
                *common,
                "--set",
                "model.hidden=[4]",
                "--set",
                "model.transforms=1",
                "--out",
                str(maf_run),
            ]
        )
        == 0
    )
    lsgm_run = tmp_path / "lsgm"
    lsgm = ["train", "lsgm", *common, "--set", "model.hidden=[8]", "--set", "model.sample_steps=4"]
    assert main([*lsgm, "--init", str(vae_run), "--out", str(lsgm_run)]) == 0
    first, second = load_model(vae_run), load_model(lsgm_run)
    assert isinstance(first, VAE) and isinstance(second, VAE)
    for name, p in first.encoder.state_dict().items():  # the frozen first stage, unchanged by training
        assert torch.equal(p, second.encoder.state_dict()[name])
    grid = tmp_path / "samples.png"
    assert (
        main(
            ["sample", str(lsgm_run), "-n", "4", "--sampler", "ddim", "--sampler-steps", "3", "-o", str(grid)]
        )
        == 0
    )
    assert grid.exists()
    capsys.readouterr()
    for argv, words in [
        ([*lsgm, "--init", str(maf_run)], "no latent posterior"),
        (lsgm, "--init RUN"),
    ]:
        out = tmp_path / "refused"
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
        assert not out.exists()
    for argv, words in [
        (["sample", str(lsgm_run), "--sampler-steps", "3"], "draws its latents with --sampler NAME"),
        (
            ["sample", str(vae_run), "--sampler", "ddim", "-o", str(tmp_path / "no.png")],
            "latent diffusion prior",
        ),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not (tmp_path / "no.png").exists()


def test_a_prior_setting_without_a_name_keeps_the_presets_prior() -> None:
    # `--set model.prior.components=3` on vae-vamp / hvae-vamp gives {"components": 3}: the preset's
    # prior with that setting, not an error about a missing name
    from simulacra.config import apply_overrides

    for preset, extra in (("vae-vamp", {"latent_dim": 2, "hidden": [8]}), ("hvae-vamp", {"arch": "mlp"})):
        raw = apply_overrides({"name": preset, **extra}, ["prior.components=3"])
        assert raw["prior"] == {"components": 3}
        model = build_model(raw, DIGITS)
        vamp = next(m for m in model.modules() if isinstance(m, VampPrior))
        assert vamp.pseudo_inputs.shape[0] == 3
    with pytest.raises(ConfigError):  # N(0, I) takes no settings: still an error
        build_model({**TINY_VAE, "prior": {"name": "normal", "components": 3}}, DIGITS)
