"""Post-hoc latent densities: moment and EM fits, buffers, shapes, reproducible draws."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MixtureSameFamily

from simulacra.distributions import sample_from
from simulacra.errors import DataError
from simulacra.samplers import (
    LATENT_DENSITIES,
    DiagonalGaussianDensity,
    GaussianMixtureDensity,
    StandardNormalDensity,
)


def test_registry_names() -> None:
    assert set(LATENT_DENSITIES.names()) == {"normal", "gaussian", "gmm"}
    assert isinstance(LATENT_DENSITIES.build("gmm", dim=2), GaussianMixtureDensity)


def test_diagonal_gaussian_fit_recovers_moments() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.tensor([1.0, -2.0, 0.5]) + torch.tensor([0.5, 2.0, 1.0]) * torch.randn(20_000, 3, generator=g)
    density = DiagonalGaussianDensity(3).fit(z)
    torch.testing.assert_close(density.loc, torch.tensor([1.0, -2.0, 0.5]), atol=0.05, rtol=0)
    torch.testing.assert_close(density.scale, torch.tensor([0.5, 2.0, 1.0]), atol=0.05, rtol=0)
    assert set(density.state_dict()) == {"loc", "scale"}  # buffers: saved with the model
    p = density(n=7)
    assert p.batch_shape == (7,) and p.event_shape == (3,)


def test_gmm_fit_recovers_separated_means() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    weights = torch.tensor([0.5, 0.3, 0.2])
    labels = torch.multinomial(weights, 3000, replacement=True, generator=g)
    z = centres[labels] + 0.5 * torch.randn(3000, 2, generator=g)
    for covariance in ("full", "diag"):
        density = GaussianMixtureDensity(2, num_components=3, covariance=covariance).fit(z, seed=0)
        order = density.means[:, 0].argsort()  # -6, 0, 6 on the first axis
        torch.testing.assert_close(density.means[order], centres[[0, 2, 1]], atol=0.1, rtol=0)
        torch.testing.assert_close(density.logits.exp()[order], weights[[0, 2, 1]], atol=0.03, rtol=0)
        cov = density.scale_tril @ density.scale_tril.mT
        torch.testing.assert_close(cov, 0.25 * torch.eye(2).expand(3, 2, 2), atol=0.04, rtol=0)
        p = density(n=5)
        assert isinstance(p, MixtureSameFamily) and p.batch_shape == (5,) and p.event_shape == (2,)
        # the density integrates to about 1 on a grid covering the mass
        axis = torch.linspace(-10, 10, 201)
        grid = torch.cartesian_prod(axis, torch.linspace(-4, 12, 161))
        mass = density().log_prob(grid).exp().sum() * (axis[1] - axis[0]) * 0.1
        assert abs(float(mass) - 1) < 0.01
    assert set(density.state_dict()) == {"logits", "means", "scale_tril"}


def test_unfitted_and_normal_densities_are_standard_normal() -> None:
    z = torch.randn(5, 2)
    ref = StandardNormalDensity(2)().log_prob(z)
    torch.testing.assert_close(GaussianMixtureDensity(2, 4)().log_prob(z), ref)
    torch.testing.assert_close(DiagonalGaussianDensity(2)().log_prob(z), ref)
    torch.testing.assert_close(StandardNormalDensity(2).fit(z + 10)().log_prob(z), ref)


def test_draws_are_reproducible_under_a_generator_and_follow_the_mixture() -> None:
    """Draws depend only on the generator (the global RNG is neither used nor advanced), and they
    come from the fitted mixture: component frequencies are its weights, and each component's
    draws have its mean and covariance (within 5 standard errors)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    labels = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), 600, replacement=True, generator=g)
    density = GaussianMixtureDensity(2, 3).fit(centres[labels] + torch.randn(600, 2, generator=g), seed=1)
    global_rng = torch.get_rng_state()
    a = sample_from(density(n=4), (), torch.Generator().manual_seed(3))
    b = sample_from(density(n=4), (), torch.Generator().manual_seed(3))
    c = sample_from(density(n=4), (), torch.Generator().manual_seed(4))
    assert a.shape == (4, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), global_rng)

    n = 20_000
    z = sample_from(density(n=n), (), torch.Generator().manual_seed(5))
    weights, means = density.logits.exp(), density.means
    covs = density.scale_tril @ density.scale_tril.mT
    nearest = torch.cdist(z, means).argmin(1)  # the components are ≥ 10 apart: nearest mean = component
    freq = torch.bincount(nearest, minlength=3) / n
    assert ((freq - weights).abs() < 5 * (weights * (1 - weights) / n).sqrt()).all(), (freq, weights)
    for k in range(3):
        zk = z[nearest == k]
        se_mean = (covs[k].diagonal() / len(zk)).sqrt()
        assert ((zk.mean(0) - means[k]).abs() < 5 * se_mean).all(), k
        se_var = covs[k].diagonal() * (2 / len(zk)) ** 0.5
        assert ((torch.cov(zk.T).diagonal() - covs[k].diagonal()).abs() < 5 * se_var).all(), k


def test_fit_checks_codes() -> None:
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        DiagonalGaussianDensity(3).fit(torch.randn(10, 2))
    with pytest.raises(DataError, match="at least 4"):
        GaussianMixtureDensity(3, 4).fit(torch.randn(2, 3))
