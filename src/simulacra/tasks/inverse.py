"""Inverse problems solved with a trained diffusion model: inpainting, super-resolution,
colorization and denoising, without retraining (the prior is the model, the measurement is given).

**Projection measurements** (inpainting, super-resolution, colorization). The measurement keeps
P x, where P is an orthogonal projection of the event space: P x = m ⊙ x for a mask m
(inpainting, imputation), P x = up(avgpool_f(x)) for a block average (super-resolution ×f: the
low-resolution image, repeated f × f, is P x), P x = the channel mean broadcast to every channel
(colorization from a grey image). Given y = P x, sampling alternates the model's reverse step on
the whole event with the forward process applied to the measurement (Choi et al. 2021, "ILVR";
Lugmayr et al. 2022, "RePaint"):

    x_s ~ q(x_s | x_t, x̂₀(x_t, t)),          y_s = α_s y + σ_s P ε,
    x_s ← x_s − P x_s + y_s,

so the measured component always carries exactly the noise level of step s. Replacement alone
harmonises the two parts only through the next steps; RePaint's resampling (``resample`` = r > 1)
goes back to t with q(x_t | x_s) = N(α_{t|s} x_s, σ²_{t|s} I) and repeats the step r times, which
lets the unknown part adapt to the known one. The last step returns x̂₀ − P x̂₀ + y: the
measurement is kept exactly.

**Denoising** of y = x + σ_y ε (SDEdit-style, Meng et al. 2022, with the exact noise level): at the
time t* with σ(t*)/α(t*) = σ_y, α(t*) y = α x + σ(t*) ε has exactly the law of x_{t*} given x,
so any sampler started at t* from α(t*) y draws from the model's p(x | y).

**Translation models** (pix2pix, :class:`~simulacra.models.base.ImageTranslation`) were trained on
one degradation: ``inpaint``, ``super_resolve`` and ``colorize`` hand them the observation when
it is the one they learnt (the same mask, factor or task), in one pass of their generator.

Everything here works on the model's space (for [0, 1] data the model sees 2x − 1); the functions
``inpaint``, ``super_resolve``, ``colorize`` and ``denoise_observation`` take data-space inputs
and a trained diffusion model (:class:`~simulacra.samplers.base.DiffusionSampling`), map the
observation into model space with its ``to_model`` (deterministic: no dequantization noise) and
the answer back with its ``from_model``, which rounds discrete data to their levels as samples are.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from simulacra.data.degradations import (
    Colorization,
    Degradation,
    Inpainting,
    Projection,
    SuperResolution,
    block_average,
    channel_mean,
    image_mask,
    mask_projection,
)
from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, DataError
from simulacra.models.base import (
    Completion,
    DiffusionSampling,
    GenerativeModel,
    ImageTranslation,
    model_name,
    require,
)
from simulacra.processes.gaussian import Denoise, expand, noise_like, q_posterior, transition
from simulacra.processes.schedules import NoiseSchedule
from simulacra.samplers import Ancestral, Sampler, check_sampler


def sample_given_projection(
    denoise: Denoise,
    process: NoiseSchedule,
    y: Tensor,
    project: Projection,
    times: Tensor,
    *,
    resample: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draws x with P x = y from the model's conditional (ILVR replacement, RePaint resampling).

    Args:
        denoise: the model's posterior mean x̂₀(x_t (B, *event), t (B,)).
        process: the noise schedule.
        y: (B, *event) the measurement in model space, with P y = y.
        project: the orthogonal projection P.
        times: (N,) decreasing grid from t_0 (≤ 1) to t_min.
        resample: r ≥ 1 repetitions of each step (RePaint; 1 = plain replacement).
        generator: for the prior draw and every noise.

    Returns:
        (B, *event) samples in model space; P x = y exactly.
    """
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 1:
        raise ConfigError(f"resample must be an integer >= 1; found {resample!r}")
    if times.dim() != 1 or times.numel() < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ConfigError("times must be a decreasing 1-D grid of at least 2 points")
    times = times.to(y.device)
    first = times[0].to(y.dtype).expand(y.shape[0])
    alpha0, sigma0 = process.alpha_sigma(first)
    x = process.prior_std * noise_like(y, generator)  # the prior on the unknown part
    x = x - project(x) + expand(alpha0, y) * y + expand(sigma0, y) * project(noise_like(y, generator))
    for t, s in zip(times[:-1], times[1:]):
        tt, ss = t.to(y.dtype).expand(y.shape[0]), s.to(y.dtype).expand(y.shape[0])
        alpha_s, sigma_s = process.alpha_sigma(ss)
        for r in range(resample):
            mean, var = q_posterior(process, x, denoise(x, tt), tt, ss)
            x_s = mean + expand(var.sqrt(), x) * noise_like(x, generator)
            known = expand(alpha_s, y) * y + expand(sigma_s, y) * project(noise_like(y, generator))
            x_s = x_s - project(x_s) + known
            if r < resample - 1:  # back to t through q(x_t | x_s), then the step again
                a, v = transition(process, ss, tt)
                x = expand(a, x_s) * x_s + expand(v.sqrt(), x_s) * noise_like(x_s, generator)
        x = x_s
    x0 = denoise(x, times[-1].to(y.dtype).expand(y.shape[0]))
    return x0 - project(x0) + y


def denoising_time(process: NoiseSchedule, noise_std: float) -> float:
    """t* with σ(t*)/α(t*) = ``noise_std`` (model units), i.e. λ(t*) = −2 log σ_y."""
    if not noise_std > 0 or not math.isfinite(noise_std):
        raise ConfigError(f"the noise standard deviation must be positive and finite; found {noise_std}")
    lam = torch.tensor(-2.0 * math.log(noise_std), dtype=torch.float64)
    bounds = process.log_snr(torch.tensor([1.0, process.t_min], dtype=torch.float64))
    if not float(bounds[0]) <= float(lam) <= float(bounds[1]):
        raise ConfigError(
            f"noise std {noise_std:g} (model units) is outside what the process covers: "
            f"σ/α runs from {math.exp(-float(bounds[1]) / 2):.3g} to {math.exp(-float(bounds[0]) / 2):.3g}"
        )
    return float(process.time_at_log_snr(lam))


# -- model-level tasks (data space in and out) -------------------------------------------------


def _diffusion(model: object, what: str) -> DiffusionSampling:
    """``model`` as a diffusion model, else a CapabilityError saying that ``what`` needs one."""
    hint = f"{what} needs a diffusion model (a denoiser and a noise process)"
    return require(model, DiffusionSampling, "denoiser", hint)


def _check_batch(info: DataInfo, x: Tensor, what: str) -> None:
    if tuple(x.shape[1:]) != tuple(info.event_shape):
        raise DataError(
            f"{what}: expected a batch of shape (B, {', '.join(map(str, info.event_shape))}); found {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"{what}: the input holds NaN or infinite values")


@torch.no_grad()
def solve_projection(
    model: DiffusionSampling,
    x_observed: Tensor,
    project: Projection,
    *,
    c: Tensor | None = None,
    steps: int | None = None,
    resample: int = 1,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
    what: str = "the inverse problem",
) -> Tensor:
    """x with P x = P x_observed from a trained diffusion model, data space in and out, (B, *event);
    ``steps`` grid points (default the model's ``default_steps``)."""
    model = _diffusion(model, what)
    _check_batch(model.info, x_observed, what)
    y = project(model.to_model(x_observed.to(model.device), dequantize=False))
    times = model.time_grid(int(steps or model.default_steps))
    out = sample_given_projection(
        model.denoiser_fn(c, guidance, clip=True),
        model.process,
        y,
        project,
        times,
        resample=resample,
        generator=generator,
    )
    return model.from_model(out)


def inpaint(model: GenerativeModel, x: Tensor, mask: Tensor, **options: Any) -> Tensor:
    """Fill the entries of x (B, *event) where ``mask`` is 0 (mask 1 = kept), data space.

    A diffusion model solves it by projection (options as :func:`solve_projection`; ``resample``
    > 1 is RePaint); a model with :class:`~simulacra.models.base.Completion` draws the missing
    entries given the observed ones (an autoregressive model entry by entry, a VAE by
    sampling-importance-resampling; options ``c`` and ``generator``).
    """
    if mask.shape != x.shape and mask.shape != x.shape[1:]:
        raise DataError(
            f"the mask must have the batch's shape {tuple(x.shape)} or one example's; found {tuple(mask.shape)}"
        )
    if isinstance(model, ImageTranslation):
        _check_batch(model.info, x, "inpainting")
        kind = model.degradation.kind if isinstance(model.degradation, Inpainting) else None
        keep = mask.to(x).expand_as(x)
        if kind is None or kind == "random" or not torch.equal(keep[0], image_mask(kind, x.shape[1:]).to(x)):
            raise ConfigError(
                f"{model_name(model)} was trained for {model.degradation.describe()}; it fills no other mask"
            )
        return _translate(model, x * keep + 0.5 * (1 - keep), Inpainting(kind), **options)
    if isinstance(model, Completion):
        _check_batch(model.info, x, "inpainting")
        x = x.to(model.device)
        return _complete(model, x, (mask.to(model.device) == 0).expand_as(x), **options)
    diffusion = _diffusion(model, "inpainting")
    project = mask_projection(mask.to(diffusion.device))
    return solve_projection(diffusion, x, project, what="inpainting", **options)


def _complete(
    model: Completion,
    x: Tensor,
    missing: Tensor,
    *,
    c: Tensor | None = None,
    generator: torch.Generator | None = None,
    steps: int | None = None,
    resample: int = 1,
    guidance: float | None = None,
) -> Tensor:
    """Inpainting by the model's completion; the sampler options do not apply."""
    _refuse_sampler_options(
        steps,
        resample,
        guidance,
        f"{model_name(model)} completes the missing entries itself, without a diffusion sampler",
    )
    return model.complete(x, missing, c, generator=generator)


def _refuse_sampler_options(steps: int | None, resample: int, guidance: float | None, why: str) -> None:
    """Raise :class:`ConfigError` naming the diffusion sampler's options that were given to a model
    that solves the problem without a sampler (``why`` says how it does)."""
    given = {"steps": steps, "resample": resample if resample != 1 else None, "guidance": guidance}
    extra = [name for name, value in given.items() if value is not None]
    if extra:
        raise ConfigError(f"{', '.join(extra)} apply to diffusion models; {why}")


def _translate(
    model: ImageTranslation,
    y: Tensor,
    wanted: Degradation,
    *,
    c: Tensor | None = None,
    generator: torch.Generator | None = None,
    steps: int | None = None,
    resample: int = 1,
    guidance: float | None = None,
) -> Tensor:
    """x̂ for observations y = P x (B, *event), data space, when P is the model's degradation;
    the sampler options do not apply (one pass of the generator)."""
    if model.degradation != wanted:
        raise ConfigError(
            f"{model_name(model)} was trained for {model.degradation.describe()}, not {wanted.describe()}"
        )
    _refuse_sampler_options(steps, resample, guidance, "pix2pix translates in one pass")
    return model.translate(y, generator=generator)


def super_resolve(model: GenerativeModel, low: Tensor, factor: int, **options: Any) -> Tensor:
    """High-resolution images (B, C, f·h, f·w) whose f × f block means are ``low`` (B, C, h, w):
    by projection for a diffusion model, by translation for a pix2pix trained for x``factor``."""
    if low.dim() != 4:
        raise DataError(f"super-resolution takes images (B, C, h, w); found {tuple(low.shape)}")
    project = block_average(factor)
    up = F.interpolate(low, scale_factor=factor, mode="nearest")
    if isinstance(model, ImageTranslation):
        _check_batch(model.info, up, f"super-resolution x{factor}")
        return _translate(model, up, SuperResolution(factor), **options)
    return solve_projection(model, up, project, what=f"super-resolution x{factor}", **options)


def colorize(model: GenerativeModel, grey: Tensor, **options: Any) -> Tensor:
    """Colour images (B, C, H, W) whose channel mean is ``grey`` ((B, 1, H, W) or already C channels)."""
    channels = int(model.info.event_shape[0])
    if channels < 2:
        raise DataError(f"colorization needs a model of colour images; this one has {channels} channel")
    grey = grey.expand(-1, channels, -1, -1) if grey.shape[1] == 1 else channel_mean(grey)
    if isinstance(model, ImageTranslation):
        _check_batch(model.info, grey, "colorization")
        return _translate(model, grey, Colorization(), **options)
    return solve_projection(model, grey, channel_mean, what="colorization", **options)


@torch.no_grad()
def denoise_observation(
    model: DiffusionSampling,
    y: Tensor,
    noise_std: float,
    *,
    c: Tensor | None = None,
    sampler: Sampler | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A draw from the model's p(x | y) for y = x + σ_y ε (σ_y = ``noise_std`` in data units),
    (B, *event) in and out: start the sampler at t* (σ/α = σ_y) from α(t*) y.

    ``sampler`` is any :class:`Sampler` (default ``Ancestral()``: a stochastic one draws from
    p(x | y)); its grid, cut at t*, gives the steps (``steps``, when given, overrides its own)."""
    model = _diffusion(model, "denoising")
    _check_batch(model.info, y, "denoising")
    sampler = Ancestral() if sampler is None else check_sampler(sampler)
    if steps is not None:
        sampler = sampler.with_options(steps=steps)
    x = model.to_model(y.to(model.device), dequantize=False)
    t_star = denoising_time(model.process, float(noise_std) * model.scale)
    grid = sampler.grid(model)
    grid = grid[grid < t_star]
    times = torch.cat([torch.tensor([t_star], dtype=grid.dtype), grid])
    if times.numel() < 2:
        raise ConfigError("the noise level is below the sampler's finest step; use more steps")
    alpha = model.process.alpha(torch.tensor(t_star, dtype=torch.float64))
    out = sampler.run(model, float(alpha) * x, times=times, c=c, guidance=guidance, generator=generator)
    return model.from_model(out)
