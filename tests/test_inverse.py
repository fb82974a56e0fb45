"""Inverse problems with a diffusion prior, checked on Gaussian data where the answer is exact.

For data N(μ, Σ) the optimal denoiser is known in closed form, and so are the conditionals the
tasks target: p(x_u | x_o) for inpainting and p(x | y) for y = x + σ_y ε.
"""

from __future__ import annotations

import pytest
import torch

from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.processes import SCHEDULES, gaussian_denoiser
from simulacra.samplers import Ancestral, time_grid
from simulacra.tasks.inverse import (
    block_average,
    channel_mean,
    denoising_time,
    inpaint,
    mask_projection,
    sample_given_projection,
    super_resolve,
)

D = 4
MEAN = torch.tensor([1.0, -0.5, 0.3, 0.0])
_A = torch.tensor(
    [[0.8, 0.3, -0.2, 0.1], [0.0, 0.6, 0.4, -0.3], [0.5, -0.4, 0.7, 0.2], [-0.3, 0.2, 0.1, 0.9]]
)
COV = _A @ _A.T + 0.2 * torch.eye(D)
N = 4000


def _vp():
    return SCHEDULES.build({"name": "vp"})


@pytest.mark.parametrize(
    "project",
    [
        mask_projection(torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0]).reshape(1, 6, 1, 1)),
        block_average(2),
        channel_mean,
    ],
    ids=["mask", "block-average", "channel-mean"],
)
def test_measurements_are_orthogonal_projections(project) -> None:
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(2, 3, 6, 4, 4, generator=g).unbind(0)
    px = project(x)
    torch.testing.assert_close(project(px), px)  # P² = P
    torch.testing.assert_close((px * z).sum(), (x * project(z)).sum())  # P = Pᵀ


def test_denoising_time_has_the_noise_level() -> None:
    process = _vp()
    t = denoising_time(process, 0.7)
    alpha, sigma = process.alpha_sigma(torch.tensor(t, dtype=torch.float64))
    assert float(sigma / alpha) == pytest.approx(0.7, rel=1e-6)
    with pytest.raises(ConfigError, match="outside what the process covers"):
        denoising_time(process, 1e6)


def test_inpainting_keeps_the_observed_entries_and_resampling_approaches_the_exact_conditional() -> None:
    process = _vp()
    denoise = gaussian_denoiser(process, MEAN, COV)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0])
    x_obs = torch.tensor([2.0, -1.0, 0.0, 0.0])
    o, u = mask.bool(), ~mask.bool()
    exact_mean = MEAN[u] + COV[u][:, o] @ torch.linalg.solve(COV[o][:, o], x_obs[o] - MEAN[o])
    errors = {}
    for resample in (1, 10):
        g = torch.Generator().manual_seed(1)
        y = (x_obs * mask).expand(N, D).clone()
        x = sample_given_projection(
            denoise, process, y, mask_projection(mask), time_grid(process, 50), resample=resample, generator=g
        )
        assert torch.equal(x[:, o], y[:, o])  # the measurement is kept exactly
        errors[resample] = float((x[:, u].mean(0) - exact_mean).abs().max())
    # replacement alone is biased (the known part reaches the unknown one only through the
    # denoiser); RePaint's resampling removes most of it (Monte Carlo s.e. of a mean ≈ 0.015)
    assert errors[10] < 0.1
    assert errors[10] < 0.5 * errors[1]


def test_denoising_from_the_matching_time_samples_the_exact_posterior() -> None:
    process = _vp()
    denoise = gaussian_denoiser(process, MEAN, COV)
    noise_std = 0.7
    y = torch.tensor([1.5, 0.0, -1.0, 0.5])
    gain = COV @ torch.linalg.inv(COV + noise_std**2 * torch.eye(D))
    post_mean, post_cov = MEAN + gain @ (y - MEAN), COV - gain @ COV
    t_star = denoising_time(process, noise_std)
    grid = time_grid(process, 200)
    times = torch.cat([torch.tensor([t_star], dtype=grid.dtype), grid[grid < t_star]])
    alpha = float(process.alpha(torch.tensor(t_star, dtype=torch.float64)))
    g = torch.Generator().manual_seed(2)
    x = Ancestral()(denoise, process, (alpha * y).expand(N, D).clone(), times, generator=g)
    torch.testing.assert_close(x.mean(0), post_mean, atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), post_cov, atol=0.06, rtol=0)


# -- the model-level tasks on a tiny trained-shape model ------------------------------------------


@pytest.fixture(scope="module")
def tiny_image_model():
    """An untrained tiny image ddpm on real-valued images (no clamp to [0, 1] at the end)."""
    from simulacra.data.info import DataInfo
    from simulacra.models.zoo import build_model

    info = DataInfo(event_shape=(1, 8, 8), support="real")
    torch.manual_seed(0)
    return build_model({"name": "ddpm", "timesteps": 10, "channels": [4, 8]}, info).eval()


def test_inpaint_and_super_resolve_keep_the_measurement(tiny_image_model) -> None:
    model = tiny_image_model
    c, h, w = model.info.event_shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, c, h, w, generator=g)
    mask = torch.zeros(c, h, w)
    mask[..., : w // 2] = 1
    out = inpaint(model, x, mask, steps=5, generator=g)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out * mask, x * mask, atol=1e-5, rtol=0)
    assert not torch.allclose(out * (1 - mask), x * (1 - mask))  # the hole was filled anew
    low = torch.nn.functional.avg_pool2d(x, 2)
    high = super_resolve(model, low, 2, steps=5, generator=g)
    assert high.shape == x.shape
    # exact up to float32 rounding, which scales with the solution's magnitude (an untrained
    # model's solutions reach far outside the data's range)
    tol = 1e-5 * max(1.0, float(high.abs().max()))
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(high, 2), low, atol=tol, rtol=0)


def test_inverse_tasks_reject_bad_inputs(tiny_image_model) -> None:
    model = tiny_image_model
    c, h, w = model.info.event_shape
    with pytest.raises(DataError, match="expected a batch of shape"):
        inpaint(model, torch.rand(2, c, h + 1, w), torch.ones(c, h + 1, w))
    with pytest.raises(DataError, match="only 0 .missing. and 1"):
        inpaint(model, torch.rand(2, c, h, w), torch.full((c, h, w), 0.5))
    with pytest.raises(ConfigError, match="factor must be an integer >= 2"):
        super_resolve(model, torch.rand(2, c, h, w), 1)
    with pytest.raises(CapabilityError, match="needs a diffusion model"):
        inpaint(torch.nn.Linear(2, 2), torch.rand(2, 2), torch.ones(2))


def test_colorize_and_denoise_on_a_colour_model() -> None:
    from simulacra.data.info import DataInfo
    from simulacra.models.zoo import build_model
    from simulacra.tasks.inverse import colorize, denoise_observation

    info = DataInfo(event_shape=(3, 8, 8), support="real")
    torch.manual_seed(0)
    model = build_model({"name": "ddpm", "timesteps": 10, "channels": [4, 8]}, info).eval()
    g = torch.Generator().manual_seed(0)
    grey = torch.randn(2, 1, 8, 8, generator=g)
    out = colorize(model, grey, steps=5, generator=g)
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out.mean(1, keepdim=True), grey, atol=1e-4, rtol=0)  # the grey part is kept
    assert out.std(1).mean() > 1e-3  # and colour was added
    noisy = torch.randn(2, 3, 8, 8, generator=g)
    clean = denoise_observation(model, noisy, 0.5, steps=10, generator=g)
    assert clean.shape == noisy.shape and bool(torch.isfinite(clean).all())
