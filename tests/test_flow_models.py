"""Every vector flow preset learns a known 2-D density: its NLL approaches the entropy, its density
integrates to one, and its samples have the moments of its density (the density and the sampler
are the same model, so both must fit).

Target: a correlated, shifted Gaussian N(μ, Σ), whose entropy ½ log((2πe)² det Σ) is exact, so
E_p[−log q] − H(p) = KL(p ‖ q) ≥ 0 is measured, not guessed. The trained density q is integrated
by the midpoint rule on a grid covering μ ± 7σ: ∫q = 1 fails when a log-determinant has the wrong
sign (training then inflates q), and q's mean and covariance from the grid are what the samples
must reproduce, within a few standard errors (``moment_z_scores``).
"""

from __future__ import annotations

import math

import pytest
import torch

import simulacra.models  # noqa: F401  (registers every preset)
from simulacra.data.info import DataInfo
from simulacra.models.flow import FlowModel
from simulacra.models.zoo import MODELS, build_model

from presets import TINY

TOY = DataInfo(event_shape=(2,), support="real")
MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
ENTROPY = 0.5 * math.log((2 * math.pi * math.e) ** 2 * torch.linalg.det(COV).item())
SAMPLES = 2000  # a shift of 0.2 is 8.9 standard errors of the first coordinate's mean
Z_MAX = 4.5  # |z| above this for any of the five moment statistics rejects the samples

# tiny settings, Adam steps and learning rate per preset; every vector flow preset must appear here
TRAIN: dict[str, tuple[dict, int, float]] = {
    "realnvp": ({"transforms": 4, "hidden": [32]}, 400, 5e-3),
    "maf": ({"transforms": 2, "hidden": [32]}, 400, 5e-3),
    "iaf": ({"transforms": 2, "hidden": [32]}, 400, 5e-3),
    "nsf": ({"transforms": 2, "hidden": [32]}, 400, 5e-3),
    "nsf-coupling": ({"transforms": 2, "hidden": [32]}, 400, 1e-2),
    "umnn": ({"transforms": 1, "hidden": [32], "integrand_hidden": [32], "nodes": 12}, 300, 5e-3),
    "cnf": ({"hidden": [32]}, 80, 1e-2),
}
IMAGE_OR_MANIFOLD = {"glow", "torus"}
CONDITIONAL_ONLY = {"posterior"}  # needs a continuous context x; learns p(θ | x) in test_posterior.py


def _flow_presets() -> list[str]:
    """Every flow preset but the image and manifold ones. Presets are built with their tiny
    settings (tests/presets.py), which must build: a preset that fails raises here."""
    names = []
    for name in MODELS.names():
        if name in IMAGE_OR_MANIFOLD | CONDITIONAL_ONLY or name.startswith("test-"):
            continue
        kwargs, info = TINY[name]
        if isinstance(build_model({"name": name, **kwargs}, info), FlowModel):
            names.append(name)
    return names


def _target(n: int, g: torch.Generator) -> torch.Tensor:
    return MEAN + torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(COV).T


def moment_z_scores(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """z-scores of the sample mean and covariance of x (n, 2) against a distribution's (mean, cov).

    With cov = L Lᵀ, w = L⁻¹(x − mean) has mean 0 and covariance I under that distribution, so
    √n w̄_i ~ N(0, 1), and for near-Gaussian data (S_w − I)_ii / √(2/n) and (S_w)_12 / √(1/n) are
    approximately N(0, 1) too. Returns the five z-scores (two means, three covariance entries).
    """
    n = x.shape[0]
    w = (x.double() - mean.double()) @ torch.linalg.inv(torch.linalg.cholesky(cov.double())).T
    s = torch.cov(w.T)
    return torch.stack(
        [
            *(w.mean(0) * math.sqrt(n)),
            (s[0, 0] - 1) / math.sqrt(2 / n),
            s[0, 1] / math.sqrt(1 / n),
            (s[1, 1] - 1) / math.sqrt(2 / n),
        ]
    )


def _grid_moments(model: FlowModel, h: float = 0.1) -> tuple[float, torch.Tensor, torch.Tensor]:
    """∫q, and q's mean and covariance, by the midpoint rule on μ ± 7 (every σ of the target is 1)."""
    axis = torch.arange(-7 + h / 2, 7, h)
    grid = torch.cartesian_prod(axis + MEAN[0], axis + MEAN[1])
    with torch.no_grad():
        q = model.log_prob(grid).double().exp() * h * h
    grid = grid.double()
    mass = q.sum()
    mean = (q[:, None] * grid).sum(0) / mass
    d = grid - mean
    cov = (q[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / mass
    return float(mass), mean, cov


def test_every_vector_flow_preset_is_trained_here() -> None:
    missing = sorted(set(_flow_presets()) - set(TRAIN))
    assert not missing, f"add training settings for {missing} to TRAIN"


@pytest.mark.parametrize("seed", range(4))
def test_the_sample_check_rejects_a_shift_and_a_scale(seed: int) -> None:
    """Exact target draws pass; the same draws shifted by 0.2 or scaled by 1.2 (about the mean,
    or about the origin) fail."""
    x = _target(SAMPLES, torch.Generator().manual_seed(100 + seed))
    assert moment_z_scores(x, MEAN, COV).abs().max() < Z_MAX
    for wrong in (x + 0.2, MEAN + 1.2 * (x - MEAN), 1.2 * x):
        assert moment_z_scores(wrong, MEAN, COV).abs().max() > Z_MAX + 1


@pytest.mark.parametrize("name", TRAIN)
def test_flow_learns_a_gaussian(name: str) -> None:
    kwargs, steps, lr = TRAIN[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, TOY)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = model.loss(_target(256, g)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = _target(4000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        kl = -model.log_prob(test).mean().item() - ENTROPY
        samples = model.sample(SAMPLES, generator=torch.Generator().manual_seed(3))
    assert -0.05 < kl < 0.08, f"KL(p‖q) ≈ {kl:.3f} nats"
    mass, mean, cov = _grid_moments(model)
    assert mass == pytest.approx(1.0, abs=0.01), f"∫q = {mass:.4f}: q is not a normalized density"
    z = moment_z_scores(samples, mean, cov)
    assert z.abs().max() < Z_MAX, f"samples disagree with q's moments: z = {z.tolist()}"


@pytest.mark.parametrize("name", TRAIN)
def test_far_tails_are_finite(name: str) -> None:
    """log p(x) at points 50 standard deviations out, and samples of 8σ base draws, stay finite."""
    kwargs, _, _ = TRAIN[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, TOY).eval()
    far = torch.tensor([[50.0, -50.0], [-50.0, 50.0], [50.0, 50.0], [0.0, -50.0]])
    with torch.no_grad():
        assert torch.isfinite(model.log_prob(far)).all()
        flow = model.distribution()
        x, log_det = flow.transform.inverse(torch.full((3, 2), 8.0) * torch.tensor([[1.0], [-1.0], [1.0]]))
        assert torch.isfinite(x).all() and torch.isfinite(log_det).all()


def test_sampling_at_a_temperature_scales_the_gaussian_base() -> None:
    """T = 1 is exact sampling; as T -> 0 every draw tends to the image of the base's mean; a
    flow on the torus (uniform base) has no temperature."""
    from simulacra.errors import ConfigError

    kwargs, info = TINY["maf"]
    torch.manual_seed(0)
    model = build_model({"name": "maf", **{k: v for k, v in kwargs.items() if k != "conditional"}}, TOY)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(model.sample(50, generator=g(), temperature=1.0), model.sample(50, generator=g()))
    cold = model.sample(50, generator=g(), temperature=1e-5)
    centre = model.distribution().center
    torch.testing.assert_close(cold, centre.expand_as(cold), atol=1e-3, rtol=0)
    spread = [model.sample(2000, generator=g(), temperature=t).std(0).mean().item() for t in (0.5, 1.0)]
    assert spread[0] < 0.75 * spread[1]
    assert model.describe_sampling({"temperature": 0.5}).startswith("Gaussian base at temperature 0.5")
    kwargs, info = TINY["torus"]
    torus = build_model({"name": "torus", **kwargs}, info)
    with pytest.raises(ConfigError, match="Gaussian base"):
        torus.sample(3, temperature=0.5)
