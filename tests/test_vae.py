"""The VAE family: presets, loss and gradients, bounds, sampling, conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simulacra.data.info import DataInfo
from simulacra.distributions import sample_from
from simulacra.errors import ConfigError, DataError
from simulacra.models import VAE, build_model
from simulacra.models.base import ImportanceWeighted, LatentVariableModel, LikelihoodBound
from simulacra.objectives import ELBO, IWAE

from presets import DIGITS, TINY

VAE_PRESETS = ["vae", "conv-vae", "beta-vae", "iwae", "cvae"]


def _batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    x = torch.randint(0, 17, (n, 1, 8, 8), generator=g) / 16
    return x, torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("name", VAE_PRESETS)
def test_loss_gradients_and_sampling(name: str) -> None:
    kwargs, info = TINY[name]
    model = build_model({"name": name, **kwargs}, info)
    assert isinstance(model, VAE)
    for capability in (LikelihoodBound, ImportanceWeighted, LatentVariableModel):
        assert isinstance(model, capability)
    x, c = _batch()
    out = model(x, c)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert set(out.metrics) == {"elbo", "kl", "rec"}
    if name == "iwae":  # log mean_i w_i ≥ mean_i log w_i (Jensen)
        assert out.metrics["elbo"] >= out.metrics["rec"] - out.metrics["kl"]
    else:
        torch.testing.assert_close(out.metrics["elbo"], out.metrics["rec"] - out.metrics["kl"])
    out.loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    cs = c[:4]
    a = model.sample(4, cs, generator=torch.Generator().manual_seed(0))
    b = model.sample(4, cs, generator=torch.Generator().manual_seed(0))
    d = model.sample(4, cs, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, *info.event_shape) and torch.equal(a, b) and not torch.equal(a, d)
    assert ((a >= 0) & (a <= 1)).all()  # means in data units
    draw = model.sample(4, cs, generator=torch.Generator().manual_seed(0), mean=False)
    # "auto" is the 17-level categorical likelihood on digits: draws lie on the grid k/16
    assert model.discrete_likelihood
    torch.testing.assert_close(draw * 16, (draw * 16).round())


def test_bounds_and_importance_weights() -> None:
    kwargs, info = TINY["vae"]
    model = build_model({"name": "vae", **kwargs}, info)
    x, _ = _batch(3)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, num_samples=4000, generator=torch.Generator().manual_seed(0))
        assert log_w.shape == (4000, 3)
        # each log weight is an unbiased ELBO estimate; the k = 1 bound uses the closed-form KL
        elbo = torch.stack(
            [model.log_prob_bound(x, generator=torch.Generator().manual_seed(s)) for s in range(400)]
        )
        assert (
            abs(elbo.mean(0) - log_w.mean(0)) < 4 * (log_w.std(0) / math.sqrt(4000) + elbo.std(0) / 20)
        ).all()
        iwae = torch.logsumexp(log_w.reshape(100, 40, 3), 1) - math.log(40)  # 100 draws of L_40
        assert (iwae.mean(0) > log_w.mean(0)).all()
        bound = model.log_prob_bound(x, num_samples=40, generator=torch.Generator().manual_seed(0))
        assert bound.shape == (3,)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.log_prob_bound(x + 2)


def test_presets_configure_the_objective_and_architecture() -> None:
    info = DataInfo((1, 28, 28), "binary")
    burda = build_model({"name": "vae", "hidden": [200, 200], "latent_dim": 50, "activation": "tanh"}, info)
    linears = [m for m in burda.encoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 200), (200, 200), (200, 100)]
    assert any(isinstance(m, nn.Tanh) for m in burda.modules())
    assert isinstance(burda.objective, ELBO) and burda.objective.beta == 1.0
    iwae = build_model({"name": "iwae", "hidden": [200, 200], "latent_dim": 50, "num_samples": 50}, info)
    assert isinstance(iwae.objective, IWAE) and iwae.objective.num_samples == 50
    assert build_model("iwae", info).objective.num_samples == 5
    assert build_model("beta-vae", info).objective.beta == 4.0
    assert build_model({"name": "vae", "free_bits": 0.5}, info).objective.free_bits == 0.5
    assert build_model({"name": "vae", "num_samples": 3}, info).objective.num_samples == 3


def test_preset_errors() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("cvae", DataInfo((4,), "binary"))
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model({"name": "vae", "latent_dim": 0}, DIGITS)
    with pytest.raises(ConfigError, match="free bits"):
        build_model({"name": "vae", "num_samples": 5, "free_bits": 1.0}, DIGITS)
    with pytest.raises(ConfigError, match="images"):
        build_model("conv-vae", DataInfo((4,), "real"))
    with pytest.raises(ConfigError, match="no setting 'latnet_dim'. Did you mean 'latent_dim'"):
        build_model({"name": "vae", "latnet_dim": 3}, DIGITS)


def test_cvae_depends_on_the_label() -> None:
    kwargs, info = TINY["cvae"]
    model = build_model({"name": "cvae", **kwargs}, info)
    assert model.conditional
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    zeros = model.sample(5, torch.zeros(5, dtype=torch.long), generator=g())
    ones = model.sample(5, torch.ones(5, dtype=torch.long), generator=g())
    assert not torch.allclose(zeros, ones)
    x, c = _batch(4)
    assert not torch.allclose(model.encode(x, c).mean, model.encode(x, (c + 1) % 10).mean)
    with pytest.raises(DataError, match="conditional"):
        model.sample(5)
    with pytest.raises(DataError, match="conditional"):
        model.loss(x)
    with pytest.raises(DataError, match="5 rows"):
        model.sample(5, torch.zeros(3, dtype=torch.long))


def test_iwae_conditional_decoder_sees_repeated_labels() -> None:
    """With k samples the decoder gets (k·B) latents; the labels are repeated in the same order."""
    kwargs, info = TINY["cvae"]
    model = build_model({"name": "cvae", **kwargs}, info)
    x, c = _batch(3)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, c, 2, generator=torch.Generator().manual_seed(0))
        z = sample_from(model.encode(x, c), (2,), torch.Generator().manual_seed(0))  # the same draws
    assert log_w.shape == (2, 3)
    with torch.no_grad():  # recompute the weights sample by sample, with the labels unrepeated
        manual = torch.stack(
            [
                model.decode(z[i], c).log_prob(x)
                + model.prior(c).log_prob(z[i])
                - model.encode(x, c).log_prob(z[i])
                for i in range(2)
            ]
        )
    torch.testing.assert_close(log_w, manual)


@pytest.mark.parametrize("likelihood", ["categorical", "logistic", "gaussian-learned", "gaussian"])
def test_other_likelihoods(likelihood: str) -> None:
    """Each decoder likelihood p(x | z) is a product of normalized per-pixel distributions on the
    data's support: changing pixel j to s changes log p by log p_j(s) − log p_j(x_j), so
    log p(x) = −Σ_j log Σ_s p_j(s) / p_j(x_j) (sum over the 17 levels for the discrete heads, a
    midpoint rule on [−6, 7] for the Gaussians). The loss is −(rec − KL) and draws lie on the
    support (the level grid k/16 for the discrete heads)."""
    torch.manual_seed(0)
    model = build_model(
        {"name": "conv-vae", "latent_dim": 2, "channels": [4], "likelihood": likelihood}, DIGITS
    )
    discrete = likelihood in ("categorical", "logistic")
    assert model.discrete_likelihood == discrete
    x, _ = _batch(3)
    out = model.loss(x)
    torch.testing.assert_close(out.metrics["elbo"], out.metrics["rec"] - out.metrics["kl"])
    torch.testing.assert_close(out.loss, -out.metrics["elbo"])
    if discrete:
        assert out.metrics["rec"] < 0  # a log-probability of discrete data
    with torch.no_grad():
        p = model.decode(torch.randn(1, 2, generator=torch.Generator().manual_seed(1)))
        support, log_w = (
            (torch.arange(17) / 16, torch.zeros(17))
            if discrete
            else (torch.arange(-6, 7, 0.005) + 0.0025, torch.full((2600,), math.log(0.005)))
        )
        k, d = len(support), model.info.dim
        one = x[:1].reshape(1, d)
        edited = one.repeat(d * k, 1).reshape(d, k, d)
        edited[torch.arange(d), :, torch.arange(d)] = support  # example (j, s): pixel j set to s
        log_p = p.log_prob(x[:1])
        ratios = p.log_prob(edited.reshape(d * k, *model.info.event_shape)).reshape(d, k) - log_p
        torch.testing.assert_close(-torch.logsumexp(ratios + log_w, 1).sum(), log_p[0], rtol=1e-5, atol=1e-2)
        draws = model.sample(2, generator=torch.Generator().manual_seed(0), mean=False)
    assert draws.shape == (2, 1, 8, 8) and torch.isfinite(draws).all()
    if discrete:
        assert ((draws >= 0) & (draws <= 1)).all()
        torch.testing.assert_close(draws * 16, (draws * 16).round())
    else:
        assert not torch.equal(draws * 16, (draws * 16).round())  # continuous draws, off the grid


def test_short_training_improves_the_elbo() -> None:
    """A few Adam steps on two repeated binary patterns raise the ELBO well above its start, and
    it stays below the best mean log-likelihood, log ½."""
    info = DataInfo((12,), "binary")
    x = torch.tensor([[1.0] * 6 + [0.0] * 6, [0.0] * 6 + [1.0] * 6]).repeat(16, 1)
    model = build_model({"name": "vae", "latent_dim": 2, "hidden": [16]}, info)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = model.loss(x).metrics["elbo"]
    for _ in range(150):
        opt.zero_grad()
        model.loss(x).loss.backward()
        opt.step()
    with torch.no_grad():
        end = model.log_prob_bound(x, num_samples=20).mean()
    assert end > start + 4 and end > -2.0
    # ... but not above what any normalized model can reach: the bound is ≤ log p(x), and for two
    # equiprobable patterns mean log p(x) = ½ log p(x₁) + ½ log p(x₂) ≤ log ½ (Gibbs), so a bound
    # above −log 2 means a wrong sign (a KL added instead of subtracted, a log-det flipped)
    assert end < -math.log(2) + 0.05, f"bound {float(end):.3f} above log ½"
