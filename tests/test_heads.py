"""Decoder heads and standard distributions: normalization, closed forms, support checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from simulacra.data.info import DataInfo
from simulacra.distributions import (
    HEADS,
    BernoulliHead,
    CategoricalHead,
    DiagonalGaussian,
    DiscretizedLogisticHead,
    GaussianHead,
    PointMass,
    StandardNormal,
    head_for,
    is_discrete,
    sample_from,
)
from simulacra.errors import ConfigError, DataError, UnknownNameError


def _all_values(levels: int, event_shape: tuple[int, ...]) -> torch.Tensor:
    """Every point of the grid {k / (L-1)}^D, shape (L^D, *event_shape)."""
    d = math.prod(event_shape)
    grid = [k / (levels - 1) for k in range(levels)]
    return torch.tensor(list(itertools.product(grid, repeat=d))).reshape(-1, *event_shape)


@pytest.mark.parametrize(
    ("head", "levels"),
    [
        (BernoulliHead((2, 2)), 2),
        (CategoricalHead((2, 2), levels=3), 3),
        (DiscretizedLogisticHead((2, 2), levels=3), 3),
        (DiscretizedLogisticHead((3,), levels=5), 5),
    ],
    ids=["bernoulli", "categorical", "logistic-3", "logistic-5"],
)
def test_discrete_heads_sum_to_one(head: torch.nn.Module, levels: int) -> None:
    """Σ_x p(x | h) = 1 over the whole discrete space, for random features."""
    event_shape = head.event_shape
    d = math.prod(event_shape)
    features = 2 * torch.randn(1, head.params_per_dim * d)
    values = _all_values(levels, event_shape)  # (L^D, *event)
    dist = head(features.expand(values.shape[0], -1))
    assert dist.batch_shape == (values.shape[0],) and dist.event_shape == event_shape
    total = dist.log_prob(values).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0), atol=1e-5, rtol=0)
    # the mean in data units is Σ_x x p(x)
    mean = (dist.log_prob(values).exp()[:, None] * values.flatten(1)).sum(0)
    torch.testing.assert_close(dist.mean[0].flatten(), mean, atol=1e-5, rtol=0)


def test_logistic_edges_and_interior_match_cdf_differences() -> None:
    levels, mu, s = 4, 0.4, 0.2
    head = DiscretizedLogisticHead((1,), levels)
    features = torch.tensor([[mu, math.log(s)]])
    cdf = lambda y: 1 / (1 + math.exp(-(y - mu) / s))  # noqa: E731
    h = 0.5 / (levels - 1)
    expected = [cdf(h)] + [cdf(k / 3 + h) - cdf(k / 3 - h) for k in (1, 2)] + [1 - cdf(1 - h)]
    got = [head(features).log_prob(torch.tensor([[k / 3]])).exp().item() for k in range(levels)]
    assert got == pytest.approx(expected, abs=1e-6)


def test_logistic_is_stable_for_tiny_scales_and_far_tails() -> None:
    """The log-probability stays finite and accurate where σ(a) − σ(b) underflows in float32."""
    head = DiscretizedLogisticHead((1,), 256)
    x = torch.tensor([[0.0], [100 / 255], [1.0], [100 / 255], [0.0]])
    mu = torch.tensor([0.0, 100 / 255, 1.0, 0.9, 1.0])
    features = torch.stack([mu, torch.full((5,), -8.0)], 1)
    lp = head(features).log_prob(x)
    assert torch.isfinite(lp).all()
    s, h = math.exp(-8.0), 0.5 / 255
    logsig = lambda t: -math.log1p(math.exp(-t)) if t > -30 else t  # noqa: E731
    centre = math.log(1 / (1 + math.exp(-h / s)) - 1 / (1 + math.exp(h / s)))
    far_interior = logsig((100 / 255 + h - 0.9) / s) + logsig(-(100 / 255 - h - 0.9) / s)
    far_interior += math.log(-math.expm1(-2 * h / s))
    expected = [logsig(h / s), centre, logsig(h / s), far_interior, logsig((h - 1.0) / s)]
    assert lp.tolist() == pytest.approx(expected, rel=1e-4)


def test_categorical_log_prob_is_log_softmax_of_the_bin() -> None:
    head = CategoricalHead((1,), levels=5)
    logits = torch.randn(1, 5)
    x = torch.tensor([[3 / 4]])
    torch.testing.assert_close(head(logits).log_prob(x), logits.log_softmax(-1)[:, 3])
    draws = sample_from(head(logits.expand(2000, 5)), (), torch.Generator().manual_seed(0))
    assert set((draws * 4).round().unique().tolist()) <= {0, 1, 2, 3, 4}


def test_gaussian_learned_matches_closed_form() -> None:
    head = GaussianHead((3,), std="learned", min_std=1e-3)
    assert head.params_per_dim == 2
    mu, raw, x = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    sigma = torch.nn.functional.softplus(raw) + 1e-3
    expected = (-0.5 * ((x - mu) / sigma) ** 2 - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(1)
    dist = head(torch.cat([mu, raw], 1))
    torch.testing.assert_close(dist.log_prob(x), expected)
    torch.testing.assert_close(dist.mean, mu)


def test_gaussian_fixed_is_scaled_mse() -> None:
    head = GaussianHead((1, 2, 2), std=0.5)
    mu, x = torch.randn(3, 4), torch.randn(3, 1, 2, 2)
    sq = ((x.flatten(1) - mu) ** 2).sum(1)
    expected = -sq / (2 * 0.25) - 4 * math.log(0.5) - 2 * math.log(2 * math.pi)
    torch.testing.assert_close(head(mu).log_prob(x), expected)


def test_conv_layout_features_are_read_per_parameter() -> None:
    """A (B, P·C, H, W) conv output is read as (B, P, C, H, W): channel block p is parameter p."""
    head = GaussianHead((2, 3, 3), std="learned")
    feats = torch.zeros(1, 4, 3, 3)
    feats[:, :2] = 5.0  # the means
    assert torch.allclose(head(feats).mean, torch.full((1, 2, 3, 3), 5.0))


def test_head_for_picks_and_checks() -> None:
    assert isinstance(head_for(DataInfo((4,), "binary")), BernoulliHead)
    # "auto" is always a normalized likelihood of the data: discrete levels get a discrete one
    assert isinstance(head_for(DataInfo((4,), "unit", levels=17)), CategoricalHead)
    assert isinstance(head_for(DataInfo((4,), "unit", levels=256)), DiscretizedLogisticHead)
    assert isinstance(head_for(DataInfo((4,), "unit")), GaussianHead)
    assert isinstance(head_for(DataInfo((4,), "unit"), "bernoulli"), BernoulliHead)
    auto_real = head_for(DataInfo((4,), "real"))
    assert isinstance(auto_real, GaussianHead) and auto_real.params_per_dim == 2
    assert is_discrete(BernoulliHead((4,))) and is_discrete(CategoricalHead((4,), 3))
    assert is_discrete(DiscretizedLogisticHead((4,), 256)) and not is_discrete(auto_real)
    assert head_for(DataInfo((4,), "unit", levels=17), "categorical").params_per_dim == 17
    with pytest.raises(ConfigError, match="levels"):
        head_for(DataInfo((4,), "unit"), "logistic")
    with pytest.raises(ConfigError, match="real"):
        head_for(DataInfo((4,), "real"), "bernoulli")
    with pytest.raises(UnknownNameError, match="logistic"):
        head_for(DataInfo((4,), "unit"), "logistc")
    assert set(HEADS.names()) == {
        "bernoulli",
        "gaussian",
        "gaussian-learned",
        "categorical",
        "logistic",
        "logistic-mixture",
        "gaussian-mixture",
        "student-t",
    }


def test_support_validation() -> None:
    BernoulliHead((2,)).validate(torch.tensor([[0.0, 0.5]]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        BernoulliHead((2,)).validate(torch.tensor([[0.0, 1.5]]))
    with pytest.raises(DataError, match="shape"):
        BernoulliHead((2,)).validate(torch.zeros(3, 3))
    with pytest.raises(DataError, match="grid"):
        CategoricalHead((1,), 5).validate(torch.tensor([[0.1]]))
    with pytest.raises(DataError, match="NaN"):
        GaussianHead((1,)).validate(torch.tensor([[float("nan")]]))


def test_standard_normal_and_diagonal_gaussian_shapes() -> None:
    prior = StandardNormal(3)
    assert prior().batch_shape == () and prior().event_shape == (3,)
    assert prior(n=5).batch_shape == (5,)
    assert prior(torch.zeros(4, dtype=torch.long)).batch_shape == (4,)
    q = DiagonalGaussian(3)(torch.zeros(2, 6))
    torch.testing.assert_close(q.stddev, torch.full((2, 3), math.log(2) + 1e-4))


def test_point_mass() -> None:
    z = torch.randn(4, 3, requires_grad=True)
    q = PointMass(z)
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    draw = sample_from(q, (2,), torch.Generator().manual_seed(0))
    torch.testing.assert_close(draw, z.expand(2, 4, 3))
    draw.sum().backward()  # the draw is differentiable in z
    assert torch.equal(z.grad, torch.full((4, 3), 2.0))
    other = z.detach().clone()
    other[1, 0] += 1
    assert q.log_prob(other).tolist() == [0.0, -math.inf, 0.0, 0.0]


def test_sample_from_is_reproducible_and_leaves_global_rng_alone() -> None:
    dist = DiscretizedLogisticHead((5,), 17)(torch.randn(3, 10))
    state = torch.get_rng_state()
    a = sample_from(dist, (4,), torch.Generator().manual_seed(7))
    b = sample_from(dist, (4,), torch.Generator().manual_seed(7))
    c = sample_from(dist, (4,), torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (4, 3, 5) and torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(7)
    first, second = sample_from(StandardNormal(2)(n=3), (), g), sample_from(StandardNormal(2)(n=3), (), g)
    assert not torch.equal(first, second)  # the generator advances


@pytest.mark.parametrize("scale", [0.1, 3.0, 40.0, 300.0])
def test_logit_bernoulli_matches_torch_in_value_and_gradient(scale: float) -> None:
    """The log1p-free Bernoulli log-probability equals torch's (float64) for any logit size,
    including confident logits where exp(−|l|) underflows, and its gradient is x − σ(l)."""
    from torch.distributions import Bernoulli

    from simulacra.distributions.heads import LogitBernoulli, softplus

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(400, 50, generator=g, dtype=torch.float64) * scale).requires_grad_(True)
    x = torch.bernoulli(torch.full_like(logits, 0.3), generator=g)
    ours = LogitBernoulli(logits=logits).log_prob(x)
    torch.testing.assert_close(ours, Bernoulli(logits=logits).log_prob(x), rtol=0, atol=1e-12)
    exact = torch.logaddexp(torch.zeros_like(logits), logits)  # log(1 + e^l), stable in float64
    torch.testing.assert_close(softplus(logits), exact, rtol=1e-15, atol=1e-12)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    torch.testing.assert_close(grad, x - torch.sigmoid(logits), rtol=0, atol=1e-12)
    grey = torch.rand(400, 50, generator=g, dtype=torch.float64)  # cross-entropy on grey levels
    bce = -torch.nn.functional.binary_cross_entropy_with_logits(logits, grey, reduction="none")
    with torch.no_grad():  # the evaluation path (log1p-free softplus) gives the same values
        for target, reference in ((x, Bernoulli(logits=logits).log_prob(x)), (grey, bce)):
            fast = LogitBernoulli(logits=logits).log_prob(target)
            torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-9)
