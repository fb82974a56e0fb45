"""Hierarchical VAEs (models/hierarchical.py): the mathematics on a two-level linear-Gaussian
hierarchy, where log p(x), the exact posterior and the KL of the joint are known in closed form;
temperature and top-k reconstructions against a hand-written top-down pass; the merges; free
bits, KL balancing, and zero groups refused from Python and from the CLI."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, kl_divergence

from simulacra.cli import main
from simulacra.data.info import DataInfo
from simulacra.distributions.heads import GaussianHead
from simulacra.distributions.ladder import PrecisionWeighted, RelativeToPrior, precision_weighted
from simulacra.distributions.standard import StandardNormal
from simulacra.errors import CapabilityError, ConfigError
from simulacra.metrics.likelihood import importance_sampled_log_likelihood
from simulacra.models.hierarchical import HierarchicalVAE
from simulacra.models.latent_prior import VampPrior
from simulacra.models.zoo import build_model
from simulacra.nn.ladder import Ladder, PosteriorCell, TopDownCell
from simulacra.nn.mlp import GatedLinear
from simulacra.objectives.variational import importance_weighted_bound

from presets import TINY

MIN = 1e-3  # the scale floor of the merge and of the priors


def raw(scale: Tensor) -> Tensor:
    """s with softplus(s) + MIN = scale."""
    return torch.log(torch.expm1(scale - MIN))


class Params(nn.Module):
    """v (n, D) -> [w·v + b, r] (n, 2D): a Gaussian's location affine in v, a fixed raw scale."""

    def __init__(self, w: Tensor, b: Tensor, r: Tensor) -> None:
        super().__init__()
        self.w, self.b, self.r = nn.Parameter(w), nn.Parameter(b), nn.Parameter(r)

    def forward(self, v: Tensor) -> Tensor:
        return torch.cat([self.w * v + self.b, self.r.expand_as(v)], 1)


class Scale(nn.Module):
    def __init__(self, c: Tensor) -> None:
        super().__init__()
        self.c = nn.Parameter(c)

    def forward(self, v: Tensor) -> Tensor:
        return self.c * v


# p(z2) = N(0, 1), p(z1 | z2) = N(a z2, s1²), p(x | z1) = N(c z1, sx²), per dimension
D = 3
A = torch.tensor([0.8, -1.5, 2.0], dtype=torch.float64)
S1 = torch.tensor([0.6, 1.2, 0.3], dtype=torch.float64)
C = torch.tensor([1.3, 0.7, -0.9], dtype=torch.float64)
SX = 0.5


def linear_gaussian(exact: bool = True, top_prior: Callable[..., nn.Module] | None = None) -> HierarchicalVAE:
    """The two-level model as a ladder of linear cells with LVAE's merge. ``exact``: the bottom-up
    estimates are the likelihood's, N(x / c, sx² / c²) for z_1 and N(x / (c a), (c² s1² + sx²) /
    (c a)²) for z_2, so that the precision-weighted posterior is the exact p(z_1, z_2 | x);
    otherwise they are perturbed (a valid but inexact posterior). ``top_prior``: the factory of a
    learned p(z_2) (it receives the model's q(z_2 | x))."""
    zero = torch.zeros(D, dtype=torch.float64)
    w1, r1 = 1 / C, raw(SX / C.abs())
    w2, r2 = 1 / (C * A), raw((C**2 * S1**2 + SX**2).sqrt() / (C * A).abs())
    if not exact:
        w1, r1, w2, r2 = 0.7 * w1, r1 + 0.8, 1.4 * w2, r2 - 0.5
    ladder = Ladder(
        up=[nn.Flatten(), nn.Identity()],
        posterior=[PosteriorCell(Params(w1, zero + 0.1 * (not exact), r1), False),
                   PosteriorCell(Params(w2, zero, r2), False)],
        prior=[Params(A.clone(), zero.clone(), raw(S1))],
        down=[TopDownCell(nn.Identity(), False), TopDownCell(nn.Identity(), False)],
        out=Scale(C.clone()),
        latent_shapes=[(D,), (D,)],
    )  # fmt: skip
    info = DataInfo(event_shape=(D,), support="real")
    return HierarchicalVAE(
        info, ladder, PrecisionWeighted(MIN), GaussianHead(D, std=SX), min_std=MIN, top_prior=top_prior
    ).double()


def log_marginal(x: Tensor) -> Tensor:
    """log p(x) = Σ_d log N(x_d; 0, c²(a² + s1²) + sx²), (B,)."""
    var = C**2 * (A**2 + S1**2) + SX**2
    return (-0.5 * (x**2 / var + torch.log(2 * math.pi * var))).sum(1)


def joint_kl(model: HierarchicalVAE, x: Tensor) -> Tensor:
    """KL(q(z_1, z_2 | x) ‖ p(z_1, z_2)) in closed form, (B,): both are Gaussians over (z_1, z_2)
    per dimension; q(z_2 | x) = N(m2, v2) and q(z_1 | z_2, x) = N(α + β z_2, v1) from the
    precision-weighted merges of the cells' bottom-up estimates with the priors."""
    post1, post2 = (cell.net for cell in model.ladder.posterior)
    to_scale = nn.functional.softplus
    mu1, sd1 = post1.w * x + post1.b, to_scale(post1.r) + MIN
    mu2, sd2 = post2.w * x + post2.b, to_scale(post2.r) + MIN
    v2 = 1 / (1 + sd2**-2)
    m2 = v2 * mu2 / sd2**2
    v1 = 1 / (S1**-2 + sd1**-2)
    beta, alpha = v1 * A / S1**2, v1 * mu1 / sd1**2
    q_loc = torch.stack([alpha + beta * m2, m2], -1)  # (B, D, 2)
    q_cov = torch.stack(
        [torch.stack([beta**2 * v2 + v1, beta * v2], -1), torch.stack([beta * v2, v2], -1)], -2
    )
    p_cov = torch.stack([torch.stack([A**2 + S1**2, A], -1), torch.stack([A, torch.ones_like(A)], -1)], -2)
    q = MultivariateNormal(q_loc, q_cov)
    p = MultivariateNormal(torch.zeros_like(q_loc), p_cov.expand_as(q_cov))
    return kl_divergence(q, p).sum(-1)


def data(n: int, seed: int = 0) -> Tensor:
    return torch.randn(n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2


def test_with_the_exact_posterior_every_importance_weight_is_log_px() -> None:
    """log w = log p(x, z) − log q(z | x) = log p(x) for every z when q is the exact posterior,
    so the ELBO, every IWAE bound and the batched IS estimator all equal log p(x)."""
    model, x = linear_gaussian(exact=True), data(6)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, num_samples=7, generator=torch.Generator().manual_seed(1))
        assert log_w.shape == (7, 6)
        torch.testing.assert_close(log_w, log_marginal(x).expand(7, -1), rtol=0, atol=1e-9)
        estimate = importance_sampled_log_likelihood(model, x, num_samples=5, generator=torch.Generator())
        torch.testing.assert_close(estimate, log_marginal(x), rtol=0, atol=1e-9)
        # the closed-form-KL ELBO estimate is unbiased: its mean over many draws is log p(x)
        xs = x[:1].expand(4000, -1)
        bound = model.log_prob_bound(xs, generator=torch.Generator().manual_seed(2))
        assert abs(float(bound.mean() - log_marginal(x[:1]))) < 4 * float(bound.std()) / math.sqrt(4000)


@pytest.mark.parametrize("exact", [True, False])
def test_the_group_kls_sum_to_the_kl_of_the_joint(exact: bool) -> None:
    """E_q(z_2)[KL(q(z_1 | z_2, x) ‖ p(z_1 | z_2))] + KL(q(z_2 | x) ‖ p(z_2)) = KL(q(z_1, z_2 | x) ‖ p(z_1, z_2)):
    the top group's KL exactly, the sum within Monte Carlo error over draws of z_2."""
    model, x = linear_gaussian(exact), data(3, seed=4)
    n = 20000
    with torch.no_grad():
        kl = model.kl_per_group(x.repeat_interleave(n, 0), generator=torch.Generator().manual_seed(3))
    kl = kl.reshape(3, n, 2)
    target = joint_kl(model, x)
    total = kl.sum(-1)
    err = (total.mean(1) - target).abs()
    assert bool((err < 4 * total.std(1) / math.sqrt(n) + 1e-9).all()), (total.mean(1), target)
    # z_2 is the top group: its KL does not depend on a draw
    assert torch.allclose(kl[:, :, 1], kl[:, :1, 1].expand(-1, n))


def test_iwae_bounds_order_and_approach_log_px() -> None:
    """With an inexact posterior: ELBO = L_1 < L_8 < L_64 < log p(x), and L_64 is close to it."""
    model, x = linear_gaussian(exact=False), data(1, seed=5)
    reps, g = 400, torch.Generator().manual_seed(6)
    bounds = []
    with torch.no_grad():
        for k in (1, 8, 64):
            log_w = model.log_importance_weights(x.expand(reps, -1), num_samples=k, generator=g)
            bounds.append(importance_weighted_bound(log_w))
    means = [float(b.mean()) for b in bounds]
    errors = [float(b.std()) / math.sqrt(reps) for b in bounds]
    log_px = float(log_marginal(x))
    assert means[0] + 3 * (errors[0] + errors[1]) < means[1] < means[2] - 3 * (errors[1] + errors[2]) + 1e-3
    assert means[2] < log_px + 3 * errors[2]
    assert log_px - means[2] < 0.5 * (log_px - means[0])


@pytest.mark.parametrize("exact", [True, False])
def test_weights_with_the_bottom_groups_from_the_prior_still_average_to_px(exact: bool) -> None:
    """L^{>s} (Havtorn et al. 2021): with z_{≤s} ~ p(z_{≤s} | z_{>s}) and only the groups above
    weighted, E[exp w] = p(x) for s = 1 and for s = L (every group from the prior), exact posterior
    or not; s = 0 is the ordinary weights, draw for draw. With the exact posterior L^{>0} = log p(x)
    for every draw while L^{>1} is a strict lower bound (Jensen), so L − L^{>1} > 0."""
    model, x = linear_gaussian(exact), data(2, seed=7)
    n = 200_000
    log_px = log_marginal(x)
    with torch.no_grad():
        plain = model.log_importance_weights(x, num_samples=5, generator=torch.Generator().manual_seed(8))
        zero = model.log_importance_weights(
            x, num_samples=5, skip=0, generator=torch.Generator().manual_seed(8)
        )
        torch.testing.assert_close(plain, zero, rtol=0, atol=0)
        for skip in (1, 2):
            log_w = model.log_importance_weights(
                x, num_samples=n, skip=skip, generator=torch.Generator().manual_seed(9)
            )
            ratio = torch.exp(log_w - log_px)  # (n, B), mean 1 when unbiased
            err = (ratio.mean(0) - 1).abs()
            assert bool((err < 5 * ratio.std(0) / math.sqrt(n)).all()), (skip, ratio.mean(0), ratio.std(0))
            if exact and skip == 1:  # a strict lower bound in expectation, by a margin the draws resolve
                gap = log_px - log_w.mean(0)
                assert bool((gap > 5 * log_w.std(0) / math.sqrt(n)).all()), gap
    with pytest.raises(ConfigError, match="skip must be between 0 and the 2 latent groups; found 3"):
        model.log_importance_weights(x, num_samples=2, skip=3)


def test_a_learned_top_prior_takes_the_monte_carlo_path_and_keeps_the_bound_exact() -> None:
    """The top group's prior given as a module (the path of the VampPrior and the MAF: log p(z_L)
    from the module, its KL as log q − log p at the drawn z) with N(0, I) as that module is the
    same model: with the exact posterior every weight is still log p(x), the one-draw ELBO with
    the Monte Carlo top KL is unbiased for it, and the KL of z_2 averages to the closed form."""
    exact, x = linear_gaussian(exact=True), data(4, seed=11)
    model = linear_gaussian(exact=True, top_prior=lambda encoder: StandardNormal(D))
    assert model.top_prior is not None and exact.top_prior is None
    with torch.no_grad():
        log_w = model.log_importance_weights(x, num_samples=5, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(log_w, log_marginal(x).expand(5, -1), rtol=0, atol=1e-9)
        n = 20000
        xs = x[:1].expand(n, -1)
        bound = model.log_prob_bound(xs, generator=torch.Generator().manual_seed(2))
        assert abs(float(bound.mean() - log_marginal(x[:1]))) < 4 * float(bound.std()) / math.sqrt(n)
        kl = model.kl_per_group(xs, generator=torch.Generator().manual_seed(3))[:, 1]
        closed = exact.kl_per_group(x[:1])[0, 1]
        assert abs(float(kl.mean() - closed)) < 4 * float(kl.std()) / math.sqrt(n)
        # drawn at temperature 1 from the module, the top group is N(0, I)
        z = model.prior(n=n).rsample()[:, D:]
        assert float(z.mean(0).abs().max()) < 0.05 and float((z.std(0) - 1).abs().max()) < 0.05


def grey_digits(n: int, seed: int) -> Tensor:
    """n random 8×8 images on the 17 grey levels of TINY's digits."""
    return torch.randint(0, 17, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed)) / 16.0


def test_training_on_the_iwae_bound() -> None:
    """``num_samples`` = k: the loss is −L_k of the model's own importance weights (the same draws),
    with β inside each weight during warm-up; on the exact posterior it is −log p(x); free bits,
    which clamp the one-draw KL, are refused with it."""
    kwargs, info = TINY["hvae"]
    torch.manual_seed(0)
    model = build_model({"name": "hvae", **kwargs, "beta": 1.0, "num_samples": 4}, info)
    x = grey_digits(6, seed=8)
    torch.manual_seed(1)
    out = model.loss(x)
    torch.manual_seed(1)
    log_w = model.log_importance_weights(x, num_samples=4)
    torch.testing.assert_close(out.loss, -importance_weighted_bound(log_w).mean())
    torch.testing.assert_close(out.metrics["iwae"], importance_weighted_bound(log_w).mean())
    torch.testing.assert_close(out.metrics["elbo"], log_w.mean())
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # β weights log p(z) − log q(z) inside each weight: β = 0 leaves L_k of log p(x | z) alone
    model.set_loss_weight("kl", 0.0)
    torch.manual_seed(1)
    rec_only = model.loss(x).loss
    torch.manual_seed(1)
    log_px, _, _ = model._weighted_pass(x, 4)
    torch.testing.assert_close(rec_only, -importance_weighted_bound(log_px).mean())
    exact = linear_gaussian(exact=True)
    exact.num_samples = 3
    xs = data(5, seed=9)
    torch.testing.assert_close(exact.loss(xs).loss, -log_marginal(xs).mean(), rtol=0, atol=1e-9)
    with pytest.raises(ConfigError, match="free bits clamp the one-draw ELBO's KL"):
        build_model({"name": "hvae", **kwargs, "free_bits": 0.5, "num_samples": 4}, info)
    with pytest.raises(ConfigError, match="num_samples"):
        build_model({"name": "lvae", "groups": 2, "latent_dim": 3, "hidden": 8, "num_samples": 0}, info)


def _twins(components: int = 3) -> tuple[HierarchicalVAE, HierarchicalVAE]:
    """hvae-vamp and the N(0, I) hvae with the same weights (everything but the pseudo-inputs)."""
    kwargs, info = TINY["hvae"]
    torch.manual_seed(0)
    vamp = build_model(
        {"name": "hvae-vamp", **kwargs, "prior": {"name": "vamp", "components": components}}, info
    )
    plain = build_model({"name": "hvae", **kwargs}, info)
    missing, unexpected = plain.load_state_dict(vamp.state_dict(), strict=False)
    assert not missing and all(k.startswith("top_prior.") for k in unexpected)
    return vamp, plain


def test_a_vamp_top_prior_is_the_mixture_of_top_posteriors_at_its_pseudo_inputs() -> None:
    """p(z_L) = (1/K) Σ_k q(z_L | u_k): the joint prior density differs from the N(0, I) twin's by
    log p(z_L) − log N(z_L; 0, I) exactly, the posterior is the twin's, and at temperature 0 the top
    group is the mean of one component."""
    vamp, plain = _twins()
    prior = vamp.top_prior
    x = grey_digits(5, seed=3)
    with torch.no_grad():
        z = vamp.prior(n=5).rsample()
        top = z[:, -math.prod(vamp.ladder.latent_shapes[-1]) :]
        q = vamp.top_posterior(prior.inputs())  # (K,) components
        mixture = torch.logsumexp(q.log_prob(top.unsqueeze(1)), 1) - math.log(3)  # (5, K) -> (5,)
        standard = torch.distributions.Normal(0.0, 1.0).log_prob(top).sum(1)
        torch.testing.assert_close(
            vamp.prior(n=5).log_prob(z) - plain.prior(n=5).log_prob(z), mixture - standard
        )
        zq = vamp.encode(x).rsample()
        torch.testing.assert_close(vamp.encode(x).log_prob(zq), plain.encode(x).log_prob(zq))
        cold = vamp.descend(6, temperature=[1.0, 0.0], generator=torch.Generator().manual_seed(4)).z[-1]
        assert all(bool(((q.mean - row).abs().amax(1) < 1e-6).any()) for row in cold.flatten(1))


def test_a_vamp_top_prior_keeps_the_iwae_bounds_ordered() -> None:
    """On the linear-Gaussian hierarchy with a VampPrior of 3 pseudo-inputs over z_2 (no longer a
    Gaussian model, the posterior inexact): ELBO = L_1 < L_8 < L_64 in expectation, by margins
    the draws resolve, and the pseudo-inputs get a gradient from the bound."""
    info = DataInfo(event_shape=(D,), support="real")
    model = linear_gaussian(exact=False, top_prior=lambda encoder: VampPrior(encoder, info, 3))
    x, reps, g = data(1, seed=12), 400, torch.Generator().manual_seed(13)
    with torch.no_grad():
        means, errors = [], []
        for k in (1, 8, 64):
            b = importance_weighted_bound(
                model.log_importance_weights(x.expand(reps, -1), num_samples=k, generator=g)
            )
            means.append(float(b.mean()))
            errors.append(float(b.std()) / math.sqrt(reps))
    assert means[0] + 3 * (errors[0] + errors[1]) < means[1] < means[2] - 3 * (errors[1] + errors[2])
    model.loss(data(8)).loss.backward()
    assert float(model.top_prior.pseudo_inputs.grad.abs().sum()) > 0


def test_top_priors_that_do_not_fit_are_refused() -> None:
    from simulacra.tasks.bitsback import levels_of

    kwargs, info = TINY["hvae"]
    with pytest.raises(ConfigError, match="top group takes the prior normal, vamp, maf; found 'diffusion'"):
        build_model({"name": "hvae", **kwargs, "prior": "diffusion"}, info)
    with pytest.raises(ConfigError, match="top group takes the prior normal, vamp, maf; found 'gamma'$"):
        build_model({"name": "lvae", "groups": 2, "latent_dim": 3, "hidden": 8, "prior": "gamma"}, info)
    flow = build_model({"name": "hvae", **kwargs, "prior": "maf"}, info)
    assert flow.sample(3, temperature=[0.5, 1.0]).shape == (3, *info.event_shape)
    with pytest.raises(ConfigError, match="draws at temperature 1 only; found 0.5"):
        flow.sample(3, temperature=[1.0, 0.5])
    binary = DataInfo(event_shape=(1, 8, 8), support="binary", levels=2)
    vamp = build_model({"name": "hvae-vamp", **kwargs, "likelihood": "bernoulli"}, binary)
    with pytest.raises(CapabilityError, match="top group's prior N\\(0, I\\); this hierarchy's is VampPrior"):
        levels_of(vamp)


def _manual_pass(model: HierarchicalVAE, n: int, x: Tensor | None) -> Tensor:
    """E[x | z] with every group at its prior mean (x None) or its posterior mean (x given),
    written out from the cells."""
    ladder, d = model.ladder, model.ladder.start(n)
    features = model.bottom_up(x) if x is not None else None
    for i in reversed(range(ladder.levels)):
        shape = ladder.latent_shapes[i]
        if i == ladder.levels - 1:
            loc, scale = torch.zeros(n, *shape), torch.ones(n, *shape)
        else:
            h = ladder.prior[i](d).reshape(n, 2, *shape)
            loc, scale = h[:, 0], nn.functional.softplus(h[:, 1]) + model.min_std
        z = loc
        if features is not None:
            z = model.merge(ladder.posterior[i](features[i], d).reshape(n, 2, *shape), loc, scale)[0]
        d = ladder.down[i](d, z)
    return model.head(ladder.out(d)).mean


@pytest.mark.parametrize("name", ["lvae", "hvae"])
def test_temperature_zero_follows_the_prior_means(name: str) -> None:
    kwargs, info = TINY[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, info)
    a = model.sample(4, generator=torch.Generator().manual_seed(1), temperature=0.0)
    b = model.sample(4, generator=torch.Generator().manual_seed(2), temperature=[0.0, 0.0])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(a, _manual_pass(model, 4, None))
    # a temperature on one group only changes the samples
    c = model.sample(4, generator=torch.Generator().manual_seed(1), temperature=[1.0, 0.0])
    assert not torch.allclose(a, c)
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(2, temperature=[1.0])


@pytest.mark.parametrize("name", ["lvae", "hvae"])
def test_reconstructions_from_the_top_groups(name: str) -> None:
    """k = L: the full reconstruction (posterior means throughout, no draw); k = 0: a draw from the
    prior, which does not depend on x."""
    kwargs, info = TINY[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, info)
    x = torch.rand(5, *info.event_shape, generator=torch.Generator().manual_seed(0)).mul(16).round().div(16)
    full = model.reconstruct_from_top(x, model.levels, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(full, _manual_pass(model, 5, x))
    other = x.flip(0)
    none_a = model.reconstruct_from_top(x, 0, generator=torch.Generator().manual_seed(3))
    none_b = model.reconstruct_from_top(other, 0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(none_a, none_b)
    top1_a = model.reconstruct_from_top(x, 1, temperature=0.0)
    top1_b = model.reconstruct_from_top(other, 1, temperature=0.0)
    assert not torch.equal(top1_a, top1_b)  # the top group reads x
    with pytest.raises(ConfigError, match="groups"):
        model.reconstruct_from_top(x, model.levels + 1)


@pytest.mark.parametrize("name", ["lvae", "hvae"])
def test_the_hierarchy_is_a_latent_variable_model_whose_densities_make_its_weights(name: str) -> None:
    """encode/decode/prior over the flattened groups: log p(x | z) + log p(z) − log q(z | x) at a
    draw z ~ q is the importance weight the model computes itself for the same draw; the decoded
    posterior means are the full reconstruction; interpolation runs on it."""
    from simulacra.models.base import LatentVariableModel
    from simulacra.tasks.interpolate import interpolate
    from simulacra.tasks.reconstruct import reconstruct

    kwargs, info = TINY[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, info).eval()
    assert isinstance(model, LatentVariableModel)
    x = torch.rand(5, *info.event_shape, generator=torch.Generator().manual_seed(0)).mul(16).round().div(16)
    with torch.no_grad():
        q = model.encode(x)
        torch.manual_seed(7)
        z = q.rsample()
        assert z.shape == (5, model.latent_dim)
        log_w = model.decode(z).log_prob(x) + model.prior(n=5).log_prob(z) - q.log_prob(z)
        torch.manual_seed(7)
        torch.testing.assert_close(log_w, model.log_importance_weights(x, num_samples=1)[0])
        torch.testing.assert_close(model.decode(q.mean).mean, model.reconstruct_from_top(x, model.levels))
    torch.testing.assert_close(reconstruct(model, x), model.reconstruct_from_top(x, model.levels))
    assert interpolate(model, x[0], x[1], steps=4).shape == (4, *info.event_shape)
    draws = model.prior(n=3).sample((2,))
    assert draws.shape == (2, 3, model.latent_dim) and model.prior(n=3).log_prob(draws).shape == (2, 3)


def test_the_precision_weighted_merge_is_the_normalized_product() -> None:
    """log N(v; μ_a, σ_a²) + log N(v; μ_b, σ_b²) − log N(v; μ, σ²) does not depend on v."""
    g = torch.Generator().manual_seed(0)
    loc_a, loc_b = torch.randn(4, generator=g), torch.randn(4, generator=g)
    scale_a, scale_b = torch.rand(4, generator=g) + 0.2, torch.rand(4, generator=g) + 0.2
    loc, scale = precision_weighted(loc_a, scale_a, loc_b, scale_b)
    normal = torch.distributions.Normal
    v = torch.linspace(-3, 3, 7)[:, None]
    gap = (
        normal(loc_a, scale_a).log_prob(v)
        + normal(loc_b, scale_b).log_prob(v)
        - normal(loc, scale).log_prob(v)
    )
    torch.testing.assert_close(gap, gap[:1].expand_as(gap))
    h = torch.stack([loc_a, torch.log(torch.expm1(scale_a - 1e-3))])[None]
    merged = PrecisionWeighted(1e-3)(h, loc_b[None], scale_b[None])
    torch.testing.assert_close(merged[0][0], loc)
    torch.testing.assert_close(merged[1][0], scale)


def test_the_relative_posterior_is_the_prior_at_zero_and_its_kl_ignores_the_prior_mean() -> None:
    from simulacra.models.hierarchical import gaussian_kl

    merge = RelativeToPrior(min_scale=0.0)
    loc, scale = torch.randn(2, 3), torch.rand(2, 3) + 0.5
    q_loc, q_scale = merge(torch.zeros(2, 2, 3), loc, scale)
    torch.testing.assert_close(q_loc, loc)
    torch.testing.assert_close(q_scale, scale)
    h = torch.randn(2, 2, 3)
    q = merge(h, loc, torch.ones_like(scale))
    shifted = merge(h, loc + 5.0, torch.ones_like(scale))
    torch.testing.assert_close(
        gaussian_kl(*q, loc, torch.ones_like(scale)), gaussian_kl(*shifted, loc + 5.0, torch.ones_like(scale))
    )


def test_free_bits_per_group_and_kl_balancing() -> None:
    kwargs, info = TINY["lvae"]
    torch.manual_seed(0)
    model = build_model({"name": "lvae", **kwargs, "free_bits": 100.0}, info)
    x = torch.rand(16, *info.event_shape, generator=torch.Generator().manual_seed(0)).mul(16).round().div(16)
    torch.manual_seed(1)
    out = model.loss(x)
    # every group is below its floor λ|z_i|: the KL term is the constant λ Σ|z_i|
    rec = out.metrics["rec"]
    torch.testing.assert_close(out.loss, -rec + 100.0 * (3 + 2))
    kl = torch.stack([out.metrics["kl/1"], out.metrics["kl/2"]])
    torch.testing.assert_close(kl.sum(), out.metrics["kl"])
    torch.testing.assert_close(out.metrics["elbo"], rec - out.metrics["kl"])
    model.kl_balance = True
    per_group = torch.tensor([[3.0, 0.2], [1.0, 0.6]])  # (B, L); groups of 3 and 2 units
    model.set_loss_weight("kl", 0.5)
    gamma = model.group_weights(per_group)
    expected = torch.tensor([2.0 / 3 + 0.01, 0.4 / 2 + 0.01])
    torch.testing.assert_close(gamma, expected / expected.mean())
    model.set_loss_weight("kl", 1.0)  # balancing acts during the warm-up only
    torch.testing.assert_close(model.group_weights(per_group), torch.ones(2))


@pytest.mark.parametrize("name", ["lvae", "hvae"])
def test_no_nan_at_batch_64_with_a_high_learning_rate(name: str) -> None:
    """40 Adam steps at lr 1e-2, batch 64, β warmed up from 0, on binary 8×8 images (digits-like)."""
    info = DataInfo(event_shape=(1, 8, 8), support="binary", levels=2)
    torch.manual_seed(0)
    model = build_model({"name": name, "groups": 3, "latent_dim": 4, "hidden": 16}, info)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(256, 1, 8, 8, generator=g) < torch.linspace(0.1, 0.9, 64).reshape(1, 1, 8, 8)).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        model.set_loss_weight("kl", min(1.0, step / 20))
        batch = x[torch.randint(0, 256, (64,), generator=g)]
        opt.zero_grad()
        loss = model.loss(batch).loss
        assert torch.isfinite(loss), f"step {step}: {loss}"
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_zero_groups_is_a_config_error() -> None:
    info = TINY["lvae"][1]
    for name in ("lvae", "hvae"):
        with pytest.raises(ConfigError, match="at least one latent group|groups >= 1"):
            build_model({"name": name, "groups": 0}, info)
    with pytest.raises(ConfigError, match="one size per latent group"):
        build_model({"name": "lvae", "groups": 2, "latent_dim": [4, 4, 4]}, info)


def test_zero_groups_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "lvae", "--data", "digits", "--steps", "2", "--no-progress", "--out", str(out)]
    assert main([*argv, "--set", "model.groups=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "groups" in err[0], err
    assert not out.exists()


def test_gated_mlp_cells_train_and_refuse_conv_or_non_booleans() -> None:
    info = DataInfo(event_shape=(12,), support="binary", levels=2)
    spec = {"name": "hvae", "groups": 2, "latent_dim": 3, "hidden": 16, "gated": True}
    torch.manual_seed(0)
    model = build_model(spec, info)
    assert sum(isinstance(m, GatedLinear) for m in model.modules()) == 4  # two up blocks, two down cells
    x = (torch.rand(32, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    model.loss(x).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ConfigError, match="gated must be true or false"):
        build_model({**spec, "gated": "yes"}, info)
    with pytest.raises(ConfigError, match="gated is an option of the MLP cells"):
        build_model({"name": "hvae", "groups": 2, "gated": True}, TINY["hvae"][1])


def test_dropout_in_the_mlp_cells_acts_while_training_only() -> None:
    info = DataInfo(event_shape=(12,), support="binary", levels=2)
    spec = {"name": "hvae", "groups": 2, "latent_dim": 3, "hidden": 16, "dropout": 0.5}
    torch.manual_seed(0)
    model = build_model(spec, info)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 4  # two up blocks, two down cells
    x = (torch.rand(32, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    model.eval()
    torch.testing.assert_close(model.log_prob_bound(x, generator=g()), model.log_prob_bound(x, generator=g()))
    model.train()
    assert not torch.allclose(model.log_prob_bound(x, generator=g()), model.log_prob_bound(x, generator=g()))
    for bad in (1.0, -0.1, "0.2"):
        with pytest.raises(ConfigError, match="dropout must be (a probability in \\[0, 1\\)|a number)"):
            build_model({**spec, "dropout": bad}, info)
    with pytest.raises(ConfigError, match="dropout is an option of the MLP cells"):
        build_model({"name": "hvae", "groups": 2, "dropout": 0.1}, TINY["hvae"][1])
