"""Diffusion presets: ddpm and score-sde."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, positive_int
from simulacra.models.diffusion import Diffusion
from simulacra.models.zoo._registry import ACCELERATOR_IMAGE_DEFAULTS, MODELS, PREVIOUS_DEFAULTS
from simulacra.nn.time import TimeMLP
from simulacra.nn.unet import UNet
from simulacra.processes.schedules import SCHEDULES
from simulacra.samplers import resolve_sampler

# -- diffusion ----------------------------------------------------------------------------------
# Every diffusion model is Diffusion(info, denoiser, process, prediction, weighting): DDPM is the
# discrete-time model (timesteps T) on a linear or cosine schedule, score-sde the continuous-time
# one on a VP, sub-VP or VE SDE. The denoiser is a time-conditioned MLP for vectors and a UNet for
# images; the sampler is chosen at sampling time (the preset only sets the default: a name, or
# {"name": ..., options}, from the config file, resolved here into a Sampler object).


def _denoiser(
    info: DataInfo,
    arch: str,
    hidden: Sequence[int],
    channels: Sequence[int],
    attention_resolution: int,
    conditional: bool,
) -> nn.Module:
    """TimeMLP (``mlp``) or UNet (``unet``); ``auto`` picks the UNet for images."""
    num_classes = info.num_classes if conditional else None
    arch = ("unet" if info.is_image else "mlp") if arch == "auto" else arch
    if arch == "mlp":
        hidden = [positive_int(h, "each hidden size") for h in hidden]
        return TimeMLP(info.event_shape, hidden, num_classes=num_classes)
    if arch != "unet":
        raise ConfigError(f"unknown denoiser architecture {arch!r}; expected 'auto', 'mlp' or 'unet'")
    if not info.is_image:
        raise ConfigError(f"the UNet denoiser needs images (C, H, W); found event_shape {info.event_shape}")
    return UNet(
        info.event_shape, channels, attention_resolution=attention_resolution, num_classes=num_classes
    )


@MODELS.register("ddpm", "DDPM (Ho et al. 2020): discrete-time diffusion, linear or cosine schedule")
def ddpm(
    info: DataInfo,
    schedule: str = "linear",
    timesteps: int = 1000,
    prediction: str = "eps",
    weighting: str | None = None,
    time_sampling: str = "uniform",
    arch: str = "auto",
    hidden: Sequence[int] = (256, 256, 256),
    channels: Sequence[int] = (16, 32),
    attention_resolution: int = 8,
    conditional: bool = False,
    label_dropout: float = 0.1,
    sampler: str | Mapping[str, Any] = "ancestral",
    sample_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Diffusion:
    """T = ``timesteps`` steps of a ``linear`` (Ho et al.) or ``cosine`` (Nichol & Dhariwal) schedule;
    ``prediction`` eps, x0 or v; ``weighting`` and ``time_sampling`` as in :class:`Diffusion`
    (``likelihood`` with ``importance`` trains for likelihood); a TimeMLP (``hidden``) for
    vectors, a UNet (``channels``) for images; ``conditional`` trains with label dropout for classifier-free guidance; ``sampler``
    the default sampler (a name in ``SAMPLERS`` or ``{"name": ..., options}``); ``rtol`` and ``atol``
    the tolerances of the probability-flow ODE that the likelihood solves (looser: fewer network
    evaluations, a less exact NLL)."""
    if schedule not in ("linear", "cosine"):
        raise ConfigError(f"ddpm's schedule must be 'linear' or 'cosine'; found {schedule!r} (see score-sde)")
    return Diffusion(
        info, _denoiser(info, arch, hidden, channels, attention_resolution, conditional),
        SCHEDULES.build(schedule), prediction=prediction, weighting=weighting,
        timesteps=positive_int(timesteps, "timesteps"), time_sampling=time_sampling, conditional=conditional,
        label_dropout=label_dropout, sampler=resolve_sampler(sampler), sample_steps=sample_steps,
        rtol=rtol, atol=atol,
    )  # fmt: skip


@MODELS.register("score-sde", "score SDE (Song et al. 2021): continuous-time VP, sub-VP or VE diffusion")
def score_sde(
    info: DataInfo,
    sde: str = "vp",
    sigma_max: float = 50.0,
    t_min: float | None = None,
    prediction: str = "eps",
    weighting: str | None = None,
    time_sampling: str = "uniform",
    arch: str = "auto",
    hidden: Sequence[int] = (256, 256, 256),
    channels: Sequence[int] = (16, 32),
    attention_resolution: int = 8,
    conditional: bool = False,
    label_dropout: float = 0.1,
    sampler: str | Mapping[str, Any] = "euler-maruyama",
    sample_steps: int = 1000,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Diffusion:
    """Denoising score matching at t ~ U(t_min, 1) on the ``sde`` vp, subvp or ve (``sigma_max``:
    σ(1) of the VE SDE, about the largest distance between data points; ``t_min``: the smallest
    time trained, sampled and integrated, default the SDE's: 10⁻³ for vp/subvp, 10⁻⁵ for ve;
    likelihoods of discrete data want a σ(t_min) well below the bin width, e.g. 10⁻⁵ for vp,
    Song et al. 2021b); other keywords as ddpm."""
    if sde not in ("vp", "subvp", "ve"):
        raise ConfigError(f"sde must be 'vp', 'subvp' or 've'; found {sde!r}")
    options: dict[str, Any] = {"name": sde} if t_min is None else {"name": sde, "t_min": t_min}
    if sde == "ve":
        options["sigma_max"] = sigma_max
    process = SCHEDULES.build(options)
    return Diffusion(
        info, _denoiser(info, arch, hidden, channels, attention_resolution, conditional), process,
        prediction=prediction, weighting=weighting, timesteps=None, time_sampling=time_sampling,
        conditional=conditional,
        label_dropout=label_dropout, sampler=resolve_sampler(sampler),
        sample_steps=positive_int(sample_steps, "sample_steps"), rtol=rtol, atol=atol,
    )  # fmt: skip


# The signature's UNet (16, 32) is what a 2-core CPU trains at a useful rate on 28×28 images
# (BENCHMARKS §11: FID 8.1 on MNIST after 50 minutes; README, image defaults); on a GPU, images get
# three levels (28×28: 28, 14, 7) with attention at the lowest. Runs recorded before 2026-12-06
# were built with (32, 64).
ACCELERATOR_IMAGE_DEFAULTS["ddpm"] = ACCELERATOR_IMAGE_DEFAULTS["score-sde"] = {"channels": (64, 128, 256)}
PREVIOUS_DEFAULTS["ddpm"] = PREVIOUS_DEFAULTS["score-sde"] = {"channels": [32, 64]}
