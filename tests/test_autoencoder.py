"""Auto-encoders: corruptions, training-only noise, point-mass codes, post-hoc sampling, PCA."""

from __future__ import annotations

import math

import pytest
import torch

from simulacra.data.info import DataInfo
from simulacra.distributions import PointMass
from simulacra.errors import ConfigError
from simulacra.models import Autoencoder, build_model
from simulacra.objectives import CORRUPTIONS, GaussianNoise, Masking, SaltAndPepper

from presets import TINY

AE_PRESETS = ["ae", "conv-ae", "linear-ae", "dae"]


def test_corruption_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.full((400, 500), 0.5)
    masked = Masking(0.3)(x, generator=g)
    assert abs((masked == 0).float().mean() - 0.3) < 0.005
    assert torch.equal(masked[masked != 0], x[masked != 0])
    noisy = GaussianNoise(0.2)(x, generator=g)
    assert abs((noisy - x).std() - 0.2) < 0.002 and abs((noisy - x).mean()) < 0.002
    sp = SaltAndPepper(0.2)(x, generator=g)
    assert abs((sp == 0).float().mean() - 0.1) < 0.004 and abs((sp == 1).float().mean() - 0.1) < 0.004
    assert ((sp == 0) | (sp == 1) | (sp == 0.5)).all()
    again = Masking(0.3)(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, Masking(0.3)(x, generator=torch.Generator().manual_seed(5)))
    assert set(CORRUPTIONS.names()) == {"gaussian", "masking", "salt-and-pepper"}
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        Masking(1.5)


@pytest.mark.parametrize("name", AE_PRESETS)
def test_loss_gradients_codes_and_sampling(name: str) -> None:
    kwargs, info = TINY[name]
    model = build_model({"name": name, **kwargs}, info)
    assert isinstance(model, Autoencoder)
    x = torch.rand(6, *info.event_shape, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss, -out.metrics["rec"])
    out.loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    q = model.encode(x)
    assert isinstance(q, PointMass) and q.batch_shape == (6,)
    with torch.no_grad():
        model.fit_latent_density(q.mean.detach() + 3.0)
    a = model.sample(4, generator=torch.Generator().manual_seed(0))
    b = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert a.shape == (4, *info.event_shape) and torch.equal(a, b)
    assert float(model.prior(n=2).mean.mean()) == pytest.approx(float(q.mean.detach().mean()) + 3.0, abs=1e-4)


def test_corruption_only_in_training() -> None:
    kwargs, info = TINY["dae"]
    model = build_model({"name": "dae", **kwargs}, info)
    x = torch.rand(8, *info.event_shape)
    model.eval()
    clean = -model.decode(model.encode(x).mean).log_prob(x).mean()
    torch.testing.assert_close(model.loss(x).loss, clean)
    torch.testing.assert_close(model.loss(x).loss, clean)
    model.train()
    first, second = model.loss(x).loss, model.loss(x).loss
    assert not torch.allclose(first, clean) and not torch.allclose(first, second)
    # the target stays the clean x: with an identity corruption the losses agree
    model.corruption = Masking(0.0)
    torch.testing.assert_close(model.loss(x).loss, clean)


def test_gaussian_ae_loss_is_scaled_mse() -> None:
    info = DataInfo((5,), "real")
    model = build_model({"name": "linear-ae", "latent_dim": 2, "std": 0.5}, info)
    x = torch.randn(7, 5)
    with torch.no_grad():
        recon = model.decode(model.encode(x).mean).mean
        mse = ((x - recon) ** 2).sum(1).mean()
        expected = mse / (2 * 0.25) + 5 * math.log(0.5) + 2.5 * math.log(2 * math.pi)
        torch.testing.assert_close(model.loss(x).loss, expected)


def test_linear_ae_spans_the_principal_subspace() -> None:
    """Linear AE with a Gaussian decoder learns the top-2 PCA subspace (Baldi & Hornik 1989)."""
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(5, 5, generator=g)).Q
    scales = torch.tensor([3.0, 2.0, 0.3, 0.2, 0.1])
    x = (torch.randn(2000, 5, generator=g) * scales) @ basis.T + torch.tensor([1.0, -1.0, 0.5, 0.0, 2.0])
    model = build_model({"name": "linear-ae", "latent_dim": 2, "std": 1.0}, DataInfo((5,), "real"))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(400):
        opt.zero_grad()
        model.loss(x).loss.backward()
        opt.step()
    xc = x - x.mean(0)
    pca = torch.linalg.svd(xc, full_matrices=False).Vh[:2].T  # (5, 2)
    decoder = model.decoder.net.net.weight.detach()  # (5, 2): the decoder's columns
    q_dec = torch.linalg.qr(decoder).Q
    cosines = torch.linalg.svdvals(pca.T @ q_dec)  # cosines of the principal angles
    angles = torch.rad2deg(torch.arccos(cosines.clamp(max=1.0)))
    assert angles.max() < 3.0, f"principal angles {angles.tolist()} degrees"


def test_gmm_latent_density_preset() -> None:
    kwargs, info = TINY["ae"]
    model = build_model({"name": "ae", **kwargs, "latent_density": "gmm", "num_components": 2}, info)
    z = torch.cat([torch.randn(50, 3) - 5, torch.randn(50, 3) + 5])
    model.fit_latent_density(z, seed=0)
    draws = model.sample(200, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (200, *info.event_shape)
    assert set(model.latent_density.state_dict()) == {"logits", "means", "scale_tril"}
    with pytest.raises(ConfigError, match="no setting .bogus."):
        build_model({"name": "ae", "latent_density": "normal", "bogus": 1}, info)
