"""The mathematics of the GAN family: optimal discriminators, the value of the game, the
Wasserstein critic, gradient penalties, f-GAN bounds, spectral normalization, DiffAugment, the
loop's alternation of the players, a GAN that learns a 2-D mixture, and bad input.

Expectations over 1-D densities are sums on a grid (E_P[φ] = Σ_i p(x_i) φ(x_i) Δx), so critics
are fitted with plain Adam on exact expectations in a fraction of a second, and every bound is
checked against a closed form or a quadrature of the same integrand. (Fitting a critic to
finite samples instead is ill-posed for some divergences: where only Q has samples, the
empirical reverse-KL bound grows without limit.)
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Normal

from simulacra.config import TrainConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.data.transforms import CenteredRange
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.metrics.evaluate import evaluate
from simulacra.metrics.modes import mode_coverage
from simulacra.models.base import ExactLikelihood, require
from simulacra.models.gan import GAN, auc
from simulacra.models.zoo import build_model
from simulacra.nn.adversarial import ConvFeatures, DCGANGenerator, DiffAugment, Discriminator, MLPFeatures
from simulacra.objectives.adversarial import (
    DIVERGENCES,
    LOSSES,
    R1,
    gradient_penalty,
    r1_penalty,
)
from simulacra.objectives.kernel import mmd2
from simulacra.train import fit

TOY = DataInfo((2,), "real")
DIGITS = DataInfo((1, 8, 8), "unit", num_classes=10, levels=17)


def quantiles(dist: Normal, n: int) -> Tensor:
    """x_i = F⁻¹((i + ½)/n), (n,) float64: a deterministic sample whose means converge fast."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return dist.icdf(u)


def gaussian(mean: float, std: float) -> Normal:
    return Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))


P, Q = gaussian(0.0, 1.0), gaussian(0.5, 1.2)
GRID = torch.linspace(-5.0, 5.5, 400, dtype=torch.float64)  # P and Q outside it: < 1e-5
DX = GRID[1] - GRID[0]
WP, WQ = P.log_prob(GRID).exp() * DX, Q.log_prob(GRID).exp() * DX  # quadrature weights of E_P, E_Q


def expected_discriminator_loss(loss: Any, v: Any) -> Tensor:
    """E_P[φ_real(v)] + E_Q[φ_fake(v)] by quadrature on GRID: the discriminator loss on infinitely
    many examples, for a critic v: (N, 1) -> (N,)."""
    out = v(GRID[:, None])
    return (WP * loss.real(out)).sum() + (WQ * loss.fake(out)).sum()


def critic_net(hidden: int, dim: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1)
    ).double()


def fit_critic(
    objective: Any, steps: int = 300, lr: float = 1e-2, hidden: int = 16, dim: int = 1
) -> nn.Module:
    """Minimise ``objective(v)`` (v: x (N, 1) -> (N,)) over a fresh MLP with Adam."""
    torch.manual_seed(0)
    net = critic_net(hidden, dim)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        objective(lambda x: net(x).squeeze(-1)).backward()
        opt.step()
    return net


# -- the minimax game ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["minimax", "least-squares"])
def test_the_discriminator_converges_to_p_over_p_plus_q(name: str) -> None:
    # for a fixed G, D*(x) = p(x) / (p(x) + q(x)): Goodfellow et al. (2014), Proposition 1, for
    # D = σ(v); Mao et al. (2017), Proposition 1 with a = 0, b = 1, for the least-squares D = v
    loss = LOSSES.get(name)
    net = fit_critic(lambda v: expected_discriminator_loss(loss, v), steps=600, hidden=32)
    with torch.no_grad():
        learned = loss.output(net(GRID[:, None]).squeeze(-1))  # the reported D
    optimal = WP / (WP + WQ)
    # the error where the data are, (∫ ½(p + q)(D − D*)²)^½, and the worst error on [−2.5, 3]
    rms = (0.5 * (WP + WQ) * (learned - optimal).square()).sum().sqrt().item()
    inner = (GRID > -2.5) & (GRID < 3.0)
    assert rms < 0.004 and (learned - optimal)[inner].abs().max() < 0.02


def test_the_value_at_the_optimum_is_minus_log_4_plus_twice_the_jensen_shannon_divergence() -> None:
    # Theorem 1: C(G) = V(D*, G) = −log 4 + 2 JS(P ‖ Q); −log 4 exactly when G reproduces the data
    p = gaussian(0.0, 1.0)
    loss = LOSSES.get("minimax")
    for q in (p, Normal(torch.tensor(1.0, dtype=torch.float64), 0.7)):
        x = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
        dx = x[1] - x[0]
        lp, lq = p.log_prob(x), q.log_prob(x)
        logit = lp - lq  # D* = σ(log p − log q)
        # V = ∫ p log D* + ∫ q log(1 − D*), by quadrature of the loss's own terms
        value = -(torch.sum(lp.exp() * loss.real(logit)) + torch.sum(lq.exp() * loss.fake(logit))) * dx
        m = torch.logaddexp(lp, lq) - math.log(2)
        js = 0.5 * torch.sum(lp.exp() * (lp - m) + lq.exp() * (lq - m)) * dx
        assert value.item() == pytest.approx(-math.log(4) + 2 * js.item(), abs=1e-8)
        if q is p:
            assert value.item() == pytest.approx(-math.log(4), abs=1e-10)
            assert value.item() == pytest.approx(loss.equilibrium_value, abs=1e-10)
            same = torch.zeros(7, dtype=torch.float64)  # D* = ½ everywhere
            assert loss.value(same, same).item() == pytest.approx(-math.log(4), abs=1e-12)


def test_the_saturating_generator_loss_vanishes_where_the_non_saturating_one_does_not() -> None:
    # Goodfellow et al. (2014), §3: when D rejects G(z) (v → −∞), d/dv log(1 − σ(v)) → 0
    v = torch.tensor([-8.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(LOSSES.get("minimax").generator_loss(v), v)
    (g_ns,) = torch.autograd.grad(LOSSES.get("non-saturating").generator_loss(v), v)
    assert abs(g_minimax.item()) < 1e-3 and abs(g_ns.item()) > 0.99


# -- Wasserstein and penalties -----------------------------------------------------------------


def test_the_wgan_gp_critic_estimates_the_wasserstein_distance_between_two_gaussians() -> None:
    # equal covariances: W1(N(μ1, I), N(μ2, I)) = ‖μ1 − μ2‖, attained by f(x) = ⟨u, x⟩, u the unit
    # vector from μ2 to μ1. In two dimensions: on a line the penalty's double well |f'| = 1 can
    # trap a critic that starts with the wrong sign; in the plane the circle of gradients is connected.
    side = quantiles(gaussian(0.0, 1.0), 30)
    real = torch.cartesian_prod(side, side)  # (900, 2), a quantile grid of N(0, I)
    shift = torch.tensor([0.9, 1.2], dtype=torch.float64)  # ‖shift‖ = 1.5
    fake = real + shift
    loss = LOSSES.get("wasserstein")
    g = torch.Generator().manual_seed(0)

    def objective(v: Any) -> Tensor:
        return loss.discriminator_loss(v(real), v(fake)) + gradient_penalty(v, real, fake, 10.0, generator=g)

    net = fit_critic(objective, dim=2)
    with torch.no_grad():
        estimate = loss.value(net(real).squeeze(-1), net(fake).squeeze(-1)).item()
    # the penalty is soft: max_s 1.5 s − λ (s − 1)² has s* = 1 + W/(2λ), so the critic's estimate
    # is W (1 + W/(2λ)) = 1.6125; divided by the critic's gradient norm (its Lipschitz constant) it is W
    assert estimate == pytest.approx(1.5 * (1 + 1.5 / 20), rel=0.01)
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    assert estimate / grad.norm(dim=1).mean().item() == pytest.approx(1.5, rel=0.01)


def _finite_difference_gradient(f: Any, x: Tensor, h: float = 1e-6) -> Tensor:
    """∇_x f(x) per example by central differences, (B, D) for x (B, D) and f: (B, D) -> (B,)."""
    grad = torch.zeros_like(x)
    for d in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, d] = h
        grad[:, d] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


def test_the_gradient_penalty_and_r1_equal_finite_difference_computations() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()

    def critic(x: Tensor) -> Tensor:
        return net(x).squeeze(-1)

    real, fake = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64) + 2
    gp = gradient_penalty(critic, real, fake, 10.0, generator=torch.Generator().manual_seed(5))
    eps = torch.rand((6, 1), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x_hat = eps * real + (1 - eps) * fake
    with torch.no_grad():
        norms = _finite_difference_gradient(critic, x_hat).norm(dim=1)
        expected = 10.0 * (norms - 1).square().mean()
        r1_expected = 0.5 * 3.0 * _finite_difference_gradient(critic, real).square().sum(1).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-7)
    assert r1_penalty(critic, real, 3.0).item() == pytest.approx(r1_expected.item(), rel=1e-7)
    # the penalties train the critic: their gradients reach its weights
    gp.backward()  # (the last bias does not change ∇_x D, so it gets no gradient)
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in (net[0], net[2]))
    # lazy R1: every k-th update only, with weight γ·k
    lazy = R1(3.0, every=4)
    assert [lazy.active(u) for u in range(5)] == [True, False, False, False, True]
    assert lazy(critic, real, fake, 1).item() == 0.0
    assert lazy(critic, real, fake, 4).item() == pytest.approx(4 * r1_expected.item(), rel=1e-7)


# -- f-GAN ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_each_conjugate_is_the_convex_conjugate_of_f_and_stable_in_the_raw_output(name: str) -> None:
    div = DIVERGENCES.get(name)
    v = torch.linspace(-3, 3, 13, dtype=torch.float64)
    t = div.activation(v)
    torch.testing.assert_close(div.conjugate_of_activation(v), div.conjugate(t))
    # f*(t) = sup_u (t u − f(u)), by a fine search over the domain of f: u > 0, except Pearson's
    # f(u) = (u − 1)², convex on all of ℝ, whose conjugate there is Nowozin's t²/4 + t
    u = torch.logspace(-6, 3, 400_001, dtype=torch.float64)
    if name == "pearson":
        u = torch.cat([-u.flip(0), u])
    sup = (t[:, None] * u[None, :] - div.f(u)[None, :]).max(dim=1).values
    torch.testing.assert_close(div.conjugate(t), sup, rtol=1e-4, atol=1e-4)


def _gaussian_kl(p: Normal, q: Normal) -> float:
    return float(torch.log(q.scale / p.scale) + (p.scale**2 + (p.loc - q.loc) ** 2) / (2 * q.scale**2) - 0.5)


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_each_f_gan_bound_approaches_its_divergence_from_below(name: str) -> None:
    # Nowozin et al. (2016), eq. 4: D_f(P ‖ Q) ≥ E_P[T] − E_Q[f*(T)], equality at T = f'(p/q)
    div = DIVERGENCES.get(name)
    loss = div.loss()
    net = fit_critic(lambda v: expected_discriminator_loss(loss, v))
    with torch.no_grad():
        bound = -expected_discriminator_loss(loss, lambda x: net(x).squeeze(-1)).item()
    exact = (WQ * div.f(WP / WQ)).sum().item()  # ∫ q f(p/q) by the same quadrature
    closed = {"kl": _gaussian_kl(P, Q), "reverse-kl": _gaussian_kl(Q, P)}
    if name in closed:
        assert exact == pytest.approx(closed[name], rel=2e-3)
    # Fenchel–Young, p T − q f*(T) ≤ q f(p/q) at every grid point: the bound never exceeds it
    assert bound <= exact + 1e-12
    assert bound >= exact * (1 - 0.005), f"{name}: bound {bound:.5f} far below D_f = {exact:.5f}"


# -- networks ---------------------------------------------------------------------------------


def test_spectral_normalization_bounds_the_top_singular_value_by_one() -> None:
    torch.manual_seed(0)
    disc = Discriminator(ConvFeatures((3, 12, 12), (4, 8)), 8 * 3 * 3, num_classes=3, spectral=True)
    x, c = torch.randn(5, 3, 12, 12), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        for _ in range(100):  # one power iteration per training forward
            disc(x, c)
    disc.eval()
    layers = [m for m in disc.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert len(layers) == 3
    for m in layers:
        w, original = m.weight, m.parametrizations.weight.original
        top = torch.linalg.svdvals(w.reshape(w.shape[0], -1))[0].item()
        sigma = torch.linalg.svdvals(original.reshape(original.shape[0], -1))[0].item()
        assert top <= 1 + 1e-4 and top == pytest.approx(1.0, abs=1e-3)
        assert (original / w).flatten()[0].item() == pytest.approx(sigma, rel=1e-3)  # W / σ̂, σ̂ = σ


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (2, 7, 10)])
def test_dcgan_networks_fit_any_image_size(shape: tuple[int, int, int]) -> None:
    gen = DCGANGenerator(5, shape, (16, 8, 4))
    features = ConvFeatures(shape, (4, 8, 16))
    x = gen(torch.randn(3, 5))
    assert x.shape == (3, *shape) and x.abs().max() <= 1
    assert Discriminator(features, features.out_features)(x).shape == (3,)
    assert MLPFeatures(10, [6, 4])(torch.randn(3, 10)).shape == (3, 4)


def test_diffaugment_is_deterministic_differentiable_and_keeps_shapes() -> None:
    augment = DiffAugment("color,translation,cutout")
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(3)
    d = augment(x)
    torch.manual_seed(3)
    assert torch.equal(d, augment(x))  # the global RNG without a generator
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # translation moves a single lit pixel by at most 1/8 of the side, or out of the image
    dot = torch.zeros(64, 1, 16, 16)
    dot[:, :, 8, 8] = 1
    moved = DiffAugment("translation")(dot, torch.Generator().manual_seed(0))
    rows, cols = moved[:, 0].nonzero()[:, 1], moved[:, 0].nonzero()[:, 2]
    assert (
        moved.sum(dim=(1, 2, 3)).eq(1).all() and (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2
    )
    assert len({(r, c) for r, c in zip(rows.tolist(), cols.tolist())}) > 5
    # cutout zeroes an 8 × 8 square (clipped at the border) of a 16 × 16 image
    zeroed = (DiffAugment("cutout")(torch.ones(64, 1, 16, 16), torch.Generator().manual_seed(0)) == 0).sum(
        (1, 2, 3)
    )
    assert zeroed.max() == 64 and zeroed.min() >= 16


# -- the model on the loop --------------------------------------------------------------------


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def test_the_loop_alternates_the_players_and_updates_only_the_named_group() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "wgan-gp", "latent_dim": 2, "hidden": [8], "critic_updates": 3}, TOY)
    calls: list[tuple[str, dict[str, Tensor]]] = []
    model.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((kwargs["group"], _snapshot(m))), with_kwargs=True
    )
    data = Dataset("toy", TOY, Split(torch.randn(64, 2)))
    fit(model, data, TrainConfig(steps=2, batch_size=16, log_every=1, eval_every=0), progress=False)
    assert [g for g, _ in calls] == (["discriminator"] * 3 + ["generator"]) * 2
    after = [s for _, s in calls[1:]] + [_snapshot(model)]
    for (group, before), later in zip(calls, after):
        changed = {k.split(".")[0] for k in before if not torch.equal(before[k], later[k])}
        assert changed == {group}, f"a {group} update changed {changed}"
    assert int(model.update_count) == 6
    # the declared settings: 5 critic updates per generator update; Adam's β = (0, 0.9) and lr 1e-4
    # as training defaults beneath the user's (TrainConfig.for_model; simulacra train)
    wgan = build_model("wgan-gp", TOY)
    assert wgan.optimizer_settings()["discriminator"].updates == 5
    config = TrainConfig.for_model(wgan, steps=3)
    assert (config.lr, config.betas, config.ema_decay, config.patience) == (1e-4, (0.0, 0.9), 0.999, None)
    assert TrainConfig.for_model(wgan, lr=1e-3, ema_decay=None).lr == 1e-3


def _ring(n: int, std: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    angles = torch.arange(8) * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
    return centres[torch.randint(0, 8, (n,), generator=generator)] + std * torch.randn(
        n, 2, generator=generator
    ), centres


def test_mode_coverage_counts_high_quality_samples_per_mode() -> None:
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    on_two = torch.cat([centres[0] + 0.1 * torch.randn(30, 2).clamp(-2, 2), centres[1].expand(19, 2)])
    far = torch.full((51, 2), 5.0)  # 5√2 ≈ 7.1 from every centre: beyond 3σ = 0.9
    cover = mode_coverage(torch.cat([on_two, far]), centres, std=0.3)
    assert cover.counts.tolist() == [30, 19, 0] and cover.modes == 1  # 19 < 20 does not cover a mode
    assert cover.high_quality == pytest.approx(49 / 100)
    with pytest.raises(DataError, match="centres"):
        mode_coverage(torch.zeros(4, 3), centres, std=0.3)


def test_a_gan_learns_the_modes_of_a_ring_of_gaussians() -> None:
    std = 0.1
    x, centres = _ring(2000, std, torch.Generator().manual_seed(0))
    valid, _ = _ring(256, std, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = build_model({"name": "gan", "latent_dim": 4, "hidden": [64, 64]}, TOY)
    data = Dataset("ring", TOY, Split(x), Split(valid))
    config = TrainConfig.for_model(  # β = (0.5, 0.999) from the model; a larger lr, no EMA
        model,
        steps=600,
        batch_size=128,
        log_every=100,
        eval_every=100,
        keep_best=False,
        lr=2e-3,
        ema_decay=None,
    )
    result = fit(model, data, config, progress=False)
    samples = model.eval().sample(2500, generator=torch.Generator().manual_seed(2))
    learned = mode_coverage(samples, centres, std)
    # chance: a Gaussian with the data's mean and covariance (no notion of the modes)
    g = torch.Generator().manual_seed(3)
    moments = x.mean(0) + torch.randn(2500, 2, generator=g) @ torch.linalg.cholesky(torch.cov(x.T)).T
    chance = mode_coverage(moments, centres, std)
    assert learned.modes >= 7 and learned.modes > chance.modes
    assert learned.high_quality > 2 * chance.high_quality
    # the validation score is an MMD² that fell while the GAN learned
    with torch.no_grad():
        fresh = build_model({"name": "gan", "latent_dim": 4, "hidden": [64, 64]}, TOY).eval()
        assert model.validation_score(valid).item() < 0.5 * fresh.validation_score(valid).item()
    assert result.best_valid_loss is not None and math.isfinite(result.best_valid_loss)
    assert {"d_real", "d_fake", "d_auc", "value", "loss/discriminator", "loss/generator"} <= set(
        result.metrics
    )
    # each player's gradient norm is logged without clipping, and it is the norm of the gradient
    assert all(result.metrics[f"grad_norm/{g}"] > 0 for g in ("discriminator", "generator"))
    model.zero_grad()
    model.loss(x[:128], group="generator").loss.backward()
    grads = [p.grad for p in model.generator.parameters() if p.grad is not None]
    by_hand = torch.sqrt(sum((g**2).sum() for g in grads))
    assert torch.nn.utils.get_total_norm(grads).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_the_validation_score_is_the_mmd_of_samples_to_held_out_data() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "lsgan", "latent_dim": 2, "hidden": [8]}, TOY).eval()
    valid = torch.randn(32, 2)
    torch.manual_seed(5)
    score = model.validation_score(valid)
    torch.manual_seed(5)
    fake = model.generate(32)
    assert score.item() == pytest.approx(mmd2(fake, valid, unbiased=False).item(), rel=1e-6)
    assert model.validation_score(valid[:1]).item() >= 0  # a last batch of one example is scored too
    # MMD² itself: zero in expectation for one distribution, positive between two
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    assert abs(mmd2(a, b).item()) < 0.01 and mmd2(a + 1, b).item() > 0.1


def test_a_conditional_gan_generates_from_labels_in_the_data_range() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "sngan", "latent_dim": 4, "channels": [4, 8], "conditional": True}, DIGITS)
    x = torch.rand(6, 1, 8, 8)
    c = torch.arange(6)
    out = model(x, c, group="discriminator")
    assert 0 <= out.metrics["d_auc"].item() <= 1
    samples = model.eval().sample(6, c, generator=torch.Generator().manual_seed(0))
    assert samples.min() >= 0 and samples.max() <= 1
    assert torch.allclose(samples * 16, (samples * 16).round(), atol=1e-5)  # on the 17 grey levels
    assert torch.equal(model.from_model(model.to_model(x.round())), x.round())
    assert model.to_model(x).min() >= -1 and model.to_model(x).max() <= 1  # the tanh generator's range
    real = torch.randn(4, 2)  # real-valued data: no map at all
    assert torch.equal(CenteredRange.for_data(TOY).forward(real), real)
    assert torch.equal(CenteredRange.for_data(TOY).inverse(real), real)


def test_a_discriminator_that_wins_outright_for_long_raises_a_warning() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "gan", "latent_dim": 2, "hidden": [8]}, TOY)
    assert isinstance(model, GAN)
    model.collapse_patience = 150
    far = torch.randn(16, 2) + 20.0  # data the generator does not reach: D soon separates them
    opt = torch.optim.Adam(model.discriminator.parameters(), lr=1e-2)
    with pytest.warns(RuntimeWarning, match="collapsed game"):  # the running AUC is high from ~400 on
        for _ in range(700):
            opt.zero_grad()
            model(far, group="discriminator").loss.backward()
            opt.step()
    assert float(model.auc_average) >= model.collapse_auc and int(model.update_count) == 700
    # a game that D does not win: no warning (the running AUC stays far below 0.98)
    torch.manual_seed(0)
    even = build_model({"name": "gan", "latent_dim": 2, "hidden": [8]}, TOY)
    even.collapse_patience = 150
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(300):
            even(torch.randn(16, 2), group="discriminator")  # no updates: D stays at chance
    assert float(even.auc_average) < 0.9


def test_the_collapse_warning_waits_for_a_long_unbroken_win() -> None:
    """D wins the first updates of a healthy game too: a win of 400 updates, then an even game,
    gives no warning with a patience of 500; a win of 600 in a row does."""
    torch.manual_seed(0)
    model = build_model({"name": "gan", "latent_dim": 2, "hidden": [8]}, TOY)
    assert isinstance(model, GAN)
    model.collapse_patience = 500
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for value in [1.0] * 400 + [0.6] * 400:
            model._count(torch.tensor(value))
    with pytest.warns(RuntimeWarning, match="for the last 5"):
        for _ in range(1000):
            model._count(torch.tensor(1.0))


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_gets_one_clear_error() -> None:
    model = build_model({"name": "gan", "latent_dim": 2, "hidden": [8]}, TOY)
    split = Split(torch.randn(8, 2))
    with pytest.raises(CapabilityError, match="no likelihood.*--metric mmd"):
        evaluate(model, split, ["nll"])
    assert set(evaluate(model, split, ["mmd"], max_samples=8)) == {"mmd", "mmd_p_value"}
    with pytest.raises(CapabilityError, match="gan has no exact likelihood"):
        require(model, ExactLikelihood, "exact likelihood")
    conditional = build_model({"name": "gan", "latent_dim": 2, "channels": [4], "conditional": True}, DIGITS)
    with pytest.raises(DataError, match="conditional: it needs a context c"):
        conditional.sample(3)
    data = Dataset("toy", TOY, Split(torch.randn(32, 2)))
    for updates in (0, -1):
        with pytest.raises(ConfigError, match="integer >= 1"):
            fit(
                model,
                data,
                TrainConfig(steps=1, groups={"discriminator": {"updates": updates}}),
                progress=False,
            )
        with pytest.raises(ConfigError, match="critic_updates must be a positive integer"):
            build_model({"name": "wgan-gp", "critic_updates": updates}, TOY)
    with pytest.raises(ConfigError, match="DiffAugment transforms images"):
        build_model({"name": "gan", "augment": "color"}, TOY)


def test_simulacra_train_applies_the_gans_training_defaults_beneath_the_users(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`simulacra train wgan-gp` trains with the preset's Adam (lr 1e-4, β = (0, 0.9)), an EMA and
    no early stopping, says so, and records them; what the user sets wins (--lr, --set); a GAN asked
    for a likelihood is one error line, exit status 2, nothing written."""
    import json

    from simulacra.cli import main

    tiny = ["--data", "moons", "--steps", "3", "--batch-size", "16", "--no-progress", "--no-eval"]
    tiny += ["--set", "model.hidden=[8]", "--set", "model.latent_dim=2", "--set", "model.critic_updates=2"]
    assert main(["train", "wgan-gp", *tiny, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "wgan-gp's training defaults: lr=0.0001, betas=(0.0, 0.9), ema_decay=0.999, patience=None" in out
    train = json.loads((tmp_path / "a" / "config.json").read_text())["run"]["train"]
    assert (train["lr"], train["betas"], train["ema_decay"], train["patience"]) == (
        1e-4,
        [0.0, 0.9],
        0.999,
        None,
    )
    assert (tmp_path / "a" / "ema.safetensors").is_file()
    mine = ["--lr", "1e-3", "--set", "train.ema_decay=null", "--set", "train.betas=[0.9, 0.99]"]
    assert main(["train", "wgan-gp", *tiny, *mine, "--out", str(tmp_path / "b")]) == 0
    assert "training defaults: patience=None (yours win" in capsys.readouterr().out
    train = json.loads((tmp_path / "b" / "config.json").read_text())["run"]["train"]
    assert (train["lr"], train["betas"], train["ema_decay"]) == (1e-3, [0.9, 0.99], None)
    before = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert main(["evaluate", str(tmp_path / "a"), "--metric", "nll"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no likelihood" in err[0] and "mmd" in err[0]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == before


def test_interpolation_between_codes_decodes_the_ends_and_keeps_the_norm(tmp_path: Any) -> None:
    """A GAN has no encoder: interpolation runs between pairs of codes drawn from its prior. The
    ends are G at the drawn codes, spherical paths keep ‖z‖ between the ends' norms (the middle of a
    linear path falls inside), the draw is reproducible, and `simulacra interpolate` writes it."""
    from simulacra.cli import main
    from simulacra.models.base import LatentGenerator, LatentVariableModel
    from simulacra.tasks.interpolate import _path, interpolate_codes

    torch.manual_seed(0)
    model = build_model({"name": "gan", "latent_dim": 6, "hidden": [16]}, TOY).eval()
    assert isinstance(model, LatentGenerator) and not isinstance(model, LatentVariableModel)
    x = interpolate_codes(model, 2, steps=5, generator=torch.Generator().manual_seed(3))
    again = interpolate_codes(model, 2, steps=5, generator=torch.Generator().manual_seed(3))
    assert x.shape == (10, 2) and torch.equal(x, again)
    z = sample_from_prior = model.prior().sample((2,)).reshape(2, 6)
    t = torch.linspace(0, 1, 5)
    spherical, linear = _path(z[0], z[1], t, "spherical"), _path(z[0], z[1], t, "linear")
    assert torch.allclose(
        model.decode_latent(spherical[[0, -1]]), model.decode_latent(sample_from_prior), atol=1e-6
    )
    lo, hi = sorted(z.norm(dim=1).tolist())
    assert all(lo - 1e-5 <= n <= hi + 1e-5 for n in spherical.norm(dim=1).tolist())
    assert linear[2].norm() < spherical[2].norm()
    run = tmp_path / "run"
    tiny = ["--steps", "2", "--batch-size", "16", "--no-progress", "--no-eval", "--set", "model.hidden=[8]"]
    assert main(["train", "gan", "--data", "moons", *tiny, "--out", str(run)]) == 0
    assert main(["interpolate", str(run), "--pairs", "2", "--points", "4"]) == 0
    assert (run / "interpolation.png").is_file()


def test_packing_lets_the_discriminator_see_a_collapsed_generator() -> None:
    """PacGAN: D judges m examples at once (consecutive ones, concatenated). Against a generator
    that draws from the data's own distribution but twice in a row the same value (half the
    diversity), an unpacked D can do no better than chance (each example alone is distributed as
    the data), while a D judging pairs sees that a pair's two members are equal and separates
    real from generated outright."""
    one_d = DataInfo((1,), "real")
    real = torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
    collapsed = torch.randn(2048, 1, generator=torch.Generator().manual_seed(1)).repeat_interleave(2, 0)
    aucs = {}
    for m in (1, 2):
        torch.manual_seed(1)
        model = build_model({"name": "gan", "latent_dim": 1, "hidden": [32, 32], "pack": m}, one_d)
        viewed = model.view(real[:6])
        assert viewed.shape == (6 // m, m) and torch.equal(viewed[0], real[:m].reshape(-1))
        opt = torch.optim.Adam(model.discriminator.parameters(), lr=3e-3)
        for step in range(300):
            batch = slice(128 * (step % 32), 128 * (step % 32 + 1))
            v_real, v_fake = model.critic(real[batch]), model.critic(collapsed[batch])
            loss = model.adversarial_loss.discriminator_loss(v_real, v_fake)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            aucs[m] = auc(model.critic(real[:2048]), model.critic(collapsed[:2048])).item()
    assert aucs[2] > 0.97 and abs(aucs[1] - 0.5) < 0.05, aucs
    with pytest.raises(ConfigError, match="packing"):
        build_model({"name": "gan", "pack": 2, "conditional": True}, DataInfo((2,), "real", num_classes=3))


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (["--set", "model.critic_updates=0"], "critic_updates must be a positive integer"),
        (["--set", "train.groups.discriminator.updates=-1"], "updates"),
        (["--set", "model.pack=0"], "pack must be a positive integer"),
        (["--set", "model.r1=1", "--set", "model.gp_weight=10"], "choose one penalty"),
    ],
)
def test_bad_gan_settings_are_one_error_line_and_nothing_written(
    settings: list[str], words: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulacra.cli import main

    out = tmp_path / "run"
    argv = ["train", "gan", "--data", "moons", "--steps", "2", "--no-progress", "--no-eval", *settings]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not out.exists()


# ----------------------------------------------------------------------------- rejection sampling


def test_rejection_sampling_draws_from_the_reweighted_proposal() -> None:
    """Proposals N(0, 1) weighted by w = log N(x; 1, 0.5²)/N(x; 0, 1) (bounded above: sup w =
    log 2 + 2/3) give draws of N(1, 0.5²), accepted at the rate e^{−M} (Z = 1); each slot keeps
    what the proposal attached to it."""
    from simulacra.samplers.rejection import rejection_sample

    target, base = gaussian(1.0, 0.5), gaussian(0.0, 1.0)

    def propose(slots: Tensor, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
        x = torch.randn(slots.numel(), generator=g, dtype=torch.float64)
        return torch.stack([x, slots.double()], 1), target.log_prob(x) - base.log_prob(x)

    n = 4000
    out, stats = rejection_sample(propose, n, burn_in=20_000, generator=torch.Generator().manual_seed(0))
    x = out[:, 0]
    assert torch.equal(out[:, 1], torch.arange(n, dtype=torch.float64))  # slot i is slot i's draw
    assert abs(float(x.mean()) - 1.0) < 4 * 0.5 / math.sqrt(n)
    assert abs(float(x.std()) - 0.5) < 4 * 0.5 / math.sqrt(2 * n)
    sup = math.log(2.0) + 2.0 / 3.0
    assert sup - 0.05 < stats.log_bound <= sup + 1e-9 and stats.above_bound < n // 100
    assert (
        abs(stats.acceptance_rate - math.exp(-stats.log_bound)) < 4 * math.sqrt(0.25 / stats.proposals) + 0.01
    )


def _ratio_gan(loss: str) -> GAN:
    """A 1-D GAN whose generator is the identity on z ~ N(0, 1) and whose discriminator outputs
    the optimal raw value for the data N(1, 0.5²) under ``loss``: D* = p/(p + q) as a logit for
    the classifier losses, as itself for least squares."""
    from simulacra.distributions.standard import StandardNormal

    data, base = gaussian(1.0, 0.5), gaussian(0.0, 1.0)

    class Identity(nn.Module):
        def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
            return z

    class Optimal(nn.Module):
        def forward(self, y: Tensor, c: Tensor | None = None) -> Tensor:
            w = (data.log_prob(y[:, 0].double()) - base.log_prob(y[:, 0].double())).float()
            return torch.sigmoid(w) if loss == "least-squares" else w

    return GAN(DataInfo((1,), "real"), Identity(), Optimal(), StandardNormal(1), LOSSES[loss])


@pytest.mark.parametrize("loss", ["non-saturating", "least-squares"])
def test_discriminator_rejection_sampling_with_the_optimal_discriminator_draws_the_data(loss: str) -> None:
    """With D at its optimum, the generator's samples kept with probability exp(w − M) are draws
    of the data distribution (N(1, 0.5²) from a generator of N(0, 1)); plain samples are not."""
    model = _ratio_gan(loss).eval()
    n = 3000
    x = model.sample(n, generator=torch.Generator().manual_seed(1), rejection=True)[:, 0]
    plain = model.sample(n, generator=torch.Generator().manual_seed(1))[:, 0]
    assert abs(float(x.mean()) - 1.0) < 4 * 0.5 / math.sqrt(n) and abs(float(x.std()) - 0.5) < 0.05
    assert abs(float(plain.mean())) < 4 / math.sqrt(n)
    assert model.describe_sampling({"rejection": True}) == "discriminator rejection sampling"


def test_rejection_sampling_needs_a_discriminator_that_estimates_the_ratio() -> None:
    torch.manual_seed(0)
    hinge = build_model({"name": "gan", "loss": "hinge", "latent_dim": 2, "hidden": [8]}, TOY)
    with pytest.raises(CapabilityError, match="hinge loss's discriminator does not estimate"):
        hinge.sample(4, rejection=True)
    packed = build_model({"name": "gan", "latent_dim": 2, "hidden": [8], "pack": 2}, TOY)
    with pytest.raises(CapabilityError, match="judges packs"):
        packed.sample(4, rejection=True)
