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


def test_draws_are_reproducible_under_a_generator() -> None:
    density = GaussianMixtureDensity(2, 3).fit(torch.randn(100, 2), seed=1)
    a = sample_from(density(n=4), (), torch.Generator().manual_seed(3))
    b = sample_from(density(n=4), (), torch.Generator().manual_seed(3))
    assert a.shape == (4, 2) and torch.equal(a, b)


def test_fit_checks_codes() -> None:
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        DiagonalGaussianDensity(3).fit(torch.randn(10, 2))
    with pytest.raises(DataError, match="at least 4"):
        GaussianMixtureDensity(3, 4).fit(torch.randn(2, 3))
