"""Reconstruction, interpolation and latent manifolds on a linear latent-variable model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.tasks.interpolate import interpolate, lerp, slerp
from simulacra.tasks.manifold import encode_means, latent_manifold, manifold_grid
from simulacra.tasks.reconstruct import reconstruct


class LinearLVM(nn.Module):
    """q(z | x) = N(A vec(x), 0.1²), p(x | z, c) = N(W z + b + c·e, 0.2²) on images (1, 2, 3).

    Records whether it was called in training mode, to check that tasks switch to eval mode.
    """

    event_shape = (1, 2, 3)

    def __init__(self, latent: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.A = nn.Parameter(torch.randn(latent, 6, generator=g))
        self.W = nn.Parameter(torch.randn(6, latent, generator=g))
        self.b = nn.Parameter(torch.randn(6, generator=g))
        self.latent = latent
        self.modes: list[bool] = []

    def prior(self, c: Tensor | None = None) -> Distribution:
        return Independent(Normal(torch.zeros(self.latent), torch.ones(self.latent)), 1)

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        self.modes.append(self.training)
        return Independent(Normal(x.reshape(x.shape[0], -1) @ self.A.T, 0.1), 1)

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution:
        mean = z @ self.W.T + self.b
        if c is not None:
            mean = mean + c.float()[:, None]
        return Independent(Normal(mean.reshape(-1, *self.event_shape), 0.2), 3)

    def mean_of(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            return self.decode(z, c).mean


def test_reconstruct_is_the_decoder_mean_at_the_encoder_mean() -> None:
    model = LinearLVM()
    x = torch.randn(10, 1, 2, 3)
    c = torch.arange(10)
    rec = reconstruct(model, x, c, batch_size=3)
    with torch.no_grad():
        expected = (x.reshape(10, 6) @ model.A.T) @ model.W.T + model.b + c[:, None]
    torch.testing.assert_close(rec, expected.reshape(10, 1, 2, 3))
    assert not rec.requires_grad
    assert model.modes and not any(model.modes) and model.training  # eval inside, restored after


def test_lerp_and_slerp() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(lerp(a, b, 0.5), torch.tensor([0.5, 0.5]))
    t = torch.linspace(0, 1, 7)
    path = slerp(a, b, t)
    assert path.shape == (7, 2)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path[3], torch.tensor([1.0, 1.0]) / math.sqrt(2))  # halfway round
    # equal-norm endpoints: the norm stays constant along the arc
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(16, generator=g), torch.randn(16, generator=g)
    v = v * u.norm() / v.norm()
    torch.testing.assert_close(slerp(u, v, t).norm(dim=-1), u.norm().expand(7))
    # constant angular speed: equal angles between successive points
    p = slerp(u, v, t)
    cos = (p[1:] * p[:-1]).sum(-1) / (p[1:].norm(dim=-1) * p[:-1].norm(dim=-1))
    torch.testing.assert_close(cos, cos[0].expand(6))
    # nearly parallel end points fall back to lerp, without NaN
    w = 2 * u
    torch.testing.assert_close(slerp(u, w, t), lerp(u, w, t))
    assert torch.isfinite(slerp(torch.zeros(3), torch.zeros(3), t)).all()


def test_interpolate_shapes_and_end_points() -> None:
    model = LinearLVM()
    x = torch.randn(2, 1, 2, 3)
    rec = reconstruct(model, x)
    for method in ("linear", "spherical"):
        path = interpolate(model, x[0], x[1], steps=6, method=method)
        assert path.shape == (6, 1, 2, 3)
        torch.testing.assert_close(path[0], rec[0])
        torch.testing.assert_close(path[-1], rec[1])
    # a batch of one is accepted too, and the linear midpoint decodes the midpoint code
    mid = interpolate(model, x[:1], x[1:], steps=3)[1]
    z = encode_means(model, x)
    torch.testing.assert_close(mid, model.mean_of(z.mean(0, keepdim=True))[0])
    # the label of the pair reaches the decoder at every step
    with_c = interpolate(model, x[:1], x[1:], torch.tensor([3]), steps=4)
    torch.testing.assert_close(with_c, interpolate(model, x[:1], x[1:], steps=4) + 3)


def test_interpolate_rejects_bad_arguments() -> None:
    model, x = LinearLVM(), torch.randn(2, 1, 2, 3)
    with pytest.raises(ConfigError, match="valid methods: linear, spherical"):
        interpolate(model, x[0], x[1], method="cubic")
    with pytest.raises(ConfigError, match="at least 2 steps"):
        interpolate(model, x[0], x[1], steps=1)
    with pytest.raises(DataError, match="one example"):
        interpolate(model, x, x)
    with pytest.raises(CapabilityError, match="has no latent space"):
        interpolate(object(), x[0], x[1])  # type: ignore[arg-type]


def test_latent_manifold_grid_and_corners() -> None:
    model = LinearLVM()
    n = 5
    images = latent_manifold(model, n=n)
    assert images.shape == (n * n, 1, 2, 3)
    g = manifold_grid(n)
    torch.testing.assert_close(g, torch.special.ndtri((torch.arange(n) + 0.5) / n))
    torch.testing.assert_close(g, -g.flip(0))  # symmetric about 0
    lo, hi = g[0].item(), g[-1].item()
    corners = {0: (lo, hi), n - 1: (hi, hi), n * (n - 1): (lo, lo), n * n - 1: (hi, lo)}  # z₂ grows upwards
    for index, z in corners.items():
        torch.testing.assert_close(images[index], model.mean_of(torch.tensor([z]))[0])
    torch.testing.assert_close(
        latent_manifold(model, n=3, c=torch.tensor(2)), latent_manifold(model, n=3) + 2
    )


def test_latent_manifold_needs_a_2d_latent() -> None:
    with pytest.raises(CapabilityError, match="latent manifold needs a 2-D latent; this model has 16"):
        latent_manifold(LinearLVM(latent=16))


def test_encode_means() -> None:
    model = LinearLVM(latent=3)
    x = torch.randn(7, 1, 2, 3)
    z = encode_means(model, x, batch_size=2)
    assert z.shape == (7, 3)
    with torch.no_grad():
        torch.testing.assert_close(z, x.reshape(7, 6) @ model.A.T)
