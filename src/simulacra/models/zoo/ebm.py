"""Energy-based presets: ebm (any objective, any kernel) and jem.

Both are configurations of :class:`~simulacra.models.ebm.EBM`. The energy network follows the data:
an MLP with Swish for vectors, strided convolutions with Swish and spectral normalization for
images (a class projection when ``conditional``). The kernel is SGLD with IGEBM/JEM's decoupled
step size and noise scale on images, the correct unadjusted Langevin (noise √(2ε)) on vectors;
``kernel`` picks ``mala`` or ``hmc`` instead. Images get their settings from
:data:`~simulacra.models.zoo._registry.IMAGE_DEFAULTS` (shown by ``simulacra models ebm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from simulacra.data.info import DataInfo
from simulacra.distributions.standard import BoxUniform, FittedGaussian
from simulacra.errors import ConfigError, positive_int
from simulacra.models.ebm import EBM, TRAIN_DEFAULTS, ModelNoise, TiltedEnergy
from simulacra.models.zoo._registry import ACCELERATOR_IMAGE_DEFAULTS, IMAGE_DEFAULTS, MODELS, build_model
from simulacra.nn.adversarial import ConvFeatures, Discriminator, MLPFeatures
from simulacra.nn.energy import ClassifierEnergy
from simulacra.objectives.contrastive import NCE, ContrastiveDivergence, EnergyObjective, ScoreMatching
from simulacra.samplers.mcmc import HMC, MALA, SGLD, Kernel

OBJECTIVES = ("cd", "sliced", "exact", "denoising", "nce")
NCE_NOISES = ("gaussian", "uniform")
"""NCE's fixed noises: a Gaussian fitted to the data (widened 1.2×), or uniform on the model's box."""
KERNELS = ("sgld", "mala", "hmc")

VECTOR_TRAIN = {**TRAIN_DEFAULTS, "lr": 1e-3, "betas": (0.9, 0.999)}
"""Vectors train at lr 1e-3 with Adam's usual betas; images at :data:`TRAIN_DEFAULTS` (1e-4, β1 = 0)."""


def _features(info: DataInfo, hidden: Sequence[int], channels: Sequence[int]) -> tuple[nn.Module, int]:
    """φ with Swish: an MLP for vectors, strided convolutions for images; (module, F)."""
    if info.is_image:
        conv = ConvFeatures(
            info.event_shape, [positive_int(c, "each channel count") for c in channels], "silu"
        )
        return conv, conv.out_features
    mlp = MLPFeatures(info.dim, [positive_int(h, "each hidden size") for h in hidden], "silu")
    return mlp, mlp.out_features


def _kernel(
    name: str, step_size: float, noise_scale: float | None, bounds: tuple[float, float], leapfrog: int
) -> Kernel:
    if name == "sgld":
        return SGLD(step_size, noise_scale, bounds=bounds)
    if noise_scale is not None:
        raise ConfigError(f"noise_scale applies to kernel='sgld'; {name} draws its own noise")
    if name == "mala":
        return MALA(step_size, bounds=bounds)
    if name == "hmc":
        return HMC(step_size, positive_int(leapfrog, "num_leapfrog"), bounds=bounds)
    raise ConfigError(f"unknown kernel {name!r}; expected one of {', '.join(KERNELS)}")


def _objective(
    info: DataInfo,
    name: str,
    alpha: float,
    sigma: float,
    projections: int,
    ratio: int,
    noise_model: ModelNoise | None = None,
    noise: str = "gaussian",
    bounds: tuple[float, float] = (-1.0, 1.0),
) -> EnergyObjective:
    if noise_model is not None and name != "nce":
        raise ConfigError(f"a trained noise model (stage_one, --init) is NCE's; found objective={name!r}")
    if name == "cd":
        return ContrastiveDivergence(alpha)
    if name in ("sliced", "exact", "denoising"):
        return ScoreMatching(name, sigma, positive_int(projections, "projections"))
    if name == "nce":
        if noise not in NCE_NOISES:
            raise ConfigError(f"unknown nce_noise {noise!r}; expected one of {', '.join(NCE_NOISES)}")
        if noise_model is not None:
            return NCE(noise_model, positive_int(ratio, "nce_ratio"))
        fixed = (
            FittedGaussian(info.event_shape) if noise == "gaussian" else BoxUniform(info.event_shape, *bounds)
        )
        return NCE(fixed, positive_int(ratio, "nce_ratio"))
    raise ConfigError(f"unknown objective {name!r}; expected one of {', '.join(OBJECTIVES)}")


def _bounds(info: DataInfo, box: float) -> tuple[float, float]:
    return (-1.0, 1.0) if info.support != "real" else (-float(box), float(box))


@MODELS.register("ebm")
def ebm(
    info: DataInfo,
    objective: str = "cd",
    kernel: str = "sgld",
    step_size: float = 0.01,
    noise_scale: float | None = None,
    steps: int = 50,
    chains: str = "buffer",
    buffer_size: int = 10_000,
    reinit_prob: float = 0.05,
    sample_steps: int = 500,
    alpha: float = 0.1,
    sigma: float = 0.1,
    projections: int = 1,
    nce_ratio: int = 1,
    nce_noise: str = "gaussian",
    hidden: Sequence[int] = (128, 128, 128),
    channels: Sequence[int] = (32, 64, 128),
    spectral: bool = False,
    conditional: bool = False,
    box: float = 5.0,
    num_leapfrog: int = 10,
    quadrature_points: int = 512,
    ais_chains: int = 100,
    ais_distributions: int = 1000,
    ais_step_size: float = 0.05,
    stage_one: Mapping[str, Any] | None = None,
    tilt: bool = True,
) -> EBM:
    """Energy-based model p(x) ∝ exp(−E(x)): ``objective`` cd (with ``chains`` buffer = PCD, data =
    CD-k, noise = short-run; L2 energy penalty ``alpha``), sliced/exact/denoising score matching
    (``sigma``) or nce; ``kernel`` sgld/mala/hmc with ``step_size`` (and sgld's ``noise_scale``).
    NCE's noise (``nce_noise``) is a Gaussian fitted to the data or uniform on the box, or on
    real-valued data a trained flow given by
    ``stage_one`` (its spec; ``simulacra train ebm --set model.objective=nce --init FLOW_RUN``
    fills it and takes the flow's weights); with ``tilt`` the density is then the flow tilted by the
    energy, p ∝ p_flow · exp(−E), so that the energy learns only what the flow misses."""
    noise_model = None if stage_one is None else ModelNoise(build_model(stage_one, info))
    features, width = _features(info, hidden, channels)
    num_classes = info.num_classes if conditional else None
    if conditional and num_classes is None:
        raise ConfigError("a conditional EBM needs labelled data; found no labels")
    # no output bias: the density ignores an offset of the energy, and CD's gradient is blind to it
    energy: nn.Module = Discriminator(features, width, num_classes, spectral=spectral, bias=False)
    if noise_model is not None and tilt:
        energy = TiltedEnergy(energy, noise_model)
    bounds = _bounds(info, box)
    return EBM(
        info,
        energy,
        _kernel(kernel, step_size, noise_scale, bounds, num_leapfrog),
        _objective(info, objective, alpha, sigma, projections, nce_ratio, noise_model, nce_noise, bounds),
        steps=steps,
        chains=chains,
        buffer_size=buffer_size,
        reinit_prob=reinit_prob,
        sample_steps=sample_steps,
        box=box,
        conditional=conditional,
        quadrature_points=quadrature_points,
        ais_chains=ais_chains,
        ais_distributions=ais_distributions,
        ais_step_size=ais_step_size,
        train_defaults=TRAIN_DEFAULTS if info.is_image else VECTOR_TRAIN,
    )


@MODELS.register("jem")
def jem(
    info: DataInfo,
    step_size: float = 0.01,
    noise_scale: float | None = None,
    steps: int = 20,
    buffer_size: int = 10_000,
    reinit_prob: float = 0.05,
    sample_steps: int = 100,
    alpha: float = 0.1,
    classify_weight: float = 1.0,
    hidden: Sequence[int] = (256, 256, 256),
    channels: Sequence[int] = (32, 64, 128),
    spectral: bool = True,
    box: float = 5.0,
) -> EBM:
    """JEM (Grathwohl et al. 2020): a classifier's logits f(x) as an energy, E(x) = −logsumexp f(x),
    trained on cross-entropy and persistent SGLD contrastive divergence; it classifies, samples
    and scores inputs."""
    if info.num_classes is None:
        raise ConfigError("JEM is a classifier: it needs labelled data; found no labels")
    features, width = _features(info, hidden, channels)
    bounds = _bounds(info, box)
    return EBM(
        info,
        ClassifierEnergy(features, width, info.num_classes, spectral=spectral),
        SGLD(step_size, noise_scale, bounds=bounds),
        ContrastiveDivergence(alpha),
        steps=steps,
        chains="buffer",
        buffer_size=buffer_size,
        reinit_prob=reinit_prob,
        sample_steps=sample_steps,
        box=box,
        conditional=True,
        classify_weight=classify_weight,
        train_defaults=TRAIN_DEFAULTS if info.is_image else VECTOR_TRAIN,
    )


# images: SGLD with step 40 and noise 0.01 on [−1, 1], 40 steps from a replay buffer, the L2 energy
# penalty α = 1 and a spectrally normalized Swish network (IGEBM's recipe). The spectral norm keeps
# ∇E small, so the step must be large: on MNIST the buffer was still noise after 1,000 updates at
# step 1 (JEM's, for a network without it), noisy blobs after 250 at step 10, strokes at step 40
IMAGE_DEFAULTS["ebm"] = {
    "step_size": 40.0,
    "noise_scale": 0.01,
    "steps": 40,
    "sample_steps": 100,
    "alpha": 1.0,
    "spectral": True,
}

IMAGE_DEFAULTS["jem"] = {
    "step_size": 40.0,
    "noise_scale": 0.01,
}  # JEM's SGLD noise; the step for a spectral norm

# wider networks where a GPU trains them at a useful rate; the signatures' widths are the 2-core CPU's
for _name in ("ebm", "jem"):
    ACCELERATOR_IMAGE_DEFAULTS[_name] = {"channels": (64, 128, 256)}

__all__ = ["KERNELS", "OBJECTIVES", "ebm", "jem"]
