"""Every vector flow preset learns a known 2-D density: its NLL approaches the entropy and its
samples agree with the target (the density and the sampler are the same model, so both must fit).

Target: a correlated, shifted Gaussian N(μ, Σ), whose entropy ½ log((2πe)² det Σ) is exact, so
E_p[−log q] − H(p) = KL(p ‖ q) ≥ 0 is measured, not guessed.
"""

from __future__ import annotations

import math

import pytest
import torch

import simulacra.models  # noqa: F401  (registers every preset)
from simulacra.data.info import DataInfo
from simulacra.metrics.two_sample import mmd
from simulacra.models.flow import FlowModel
from simulacra.models.zoo import MODELS, build_model

TOY = DataInfo(event_shape=(2,), support="real")
MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
ENTROPY = 0.5 * math.log((2 * math.pi * math.e) ** 2 * torch.linalg.det(COV).item())

# tiny settings and a training length per preset; every vector flow preset must appear here
TRAIN: dict[str, tuple[dict, int]] = {
    "realnvp": ({"transforms": 4, "hidden": [32]}, 400),
    "maf": ({"transforms": 2, "hidden": [32]}, 400),
    "iaf": ({"transforms": 2, "hidden": [32]}, 400),
    "nsf": ({"transforms": 2, "hidden": [32]}, 400),
    "nsf-coupling": ({"transforms": 4, "hidden": [32]}, 1500),
    "umnn": ({"transforms": 2, "hidden": [32]}, 300),
    "cnf": ({"hidden": [32]}, 150),
}
IMAGE_OR_MANIFOLD = {"glow", "torus"}


def _flow_presets() -> list[str]:
    names = []
    for name in MODELS.names():
        if name in IMAGE_OR_MANIFOLD or name.startswith("test-"):
            continue
        try:
            model = build_model(name, TOY)
        except Exception:  # presets that need labels or images
            continue
        if isinstance(model, FlowModel):
            names.append(name)
    return names


def _target(n: int, g: torch.Generator) -> torch.Tensor:
    return MEAN + torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(COV).T


def test_every_vector_flow_preset_is_trained_here() -> None:
    missing = sorted(set(_flow_presets()) - set(TRAIN))
    assert not missing, f"add training settings for {missing} to TRAIN"


@pytest.mark.parametrize("name", [n for n in TRAIN if n in MODELS.names()])
def test_flow_learns_a_gaussian(name: str) -> None:
    kwargs, steps = TRAIN[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, TOY)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
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
        samples = model.sample(1000, generator=torch.Generator().manual_seed(3))
    assert -0.05 < kl < 0.08, f"KL(p‖q) ≈ {kl:.3f} nats"
    baseline = mmd(_target(1000, torch.Generator().manual_seed(4)), test[:1000])
    assert mmd(samples, test[:1000]) < baseline + 0.01


@pytest.mark.parametrize("name", [n for n in TRAIN if n in MODELS.names()])
def test_far_tails_are_finite(name: str, one_thread: None) -> None:
    """log p(x) at points 50 standard deviations out, and samples of 8σ base draws, stay finite."""
    kwargs, _ = TRAIN[name]
    torch.manual_seed(0)
    model = build_model({"name": name, **kwargs}, TOY).eval()
    far = torch.tensor([[50.0, -50.0], [-50.0, 50.0], [50.0, 50.0], [0.0, -50.0]])
    with torch.no_grad():
        assert torch.isfinite(model.log_prob(far)).all()
        flow = model.distribution()
        x, log_det = flow.transform.inverse(torch.full((3, 2), 8.0) * torch.tensor([[1.0], [-1.0], [1.0]]))
        assert torch.isfinite(x).all() and torch.isfinite(log_det).all()
