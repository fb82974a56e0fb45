"""Normalizing-flow presets: realnvp, maf, iaf, nsf, nsf-coupling, torus, glow, umnn, cnf and posterior."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn

from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, positive_int
from simulacra.flows.base import Affine, Composed, Reshape, Transform
from simulacra.flows.circular import AngleDomain, AngleFeatures, CircularSpline, UniformCircle
from simulacra.flows.continuous import ConcatSquashField, ContinuousFlow
from simulacra.flows.coupling import Coupling, alternating_mask, channel_mask, checkerboard_mask
from simulacra.flows.flow import LazyFlow
from simulacra.flows.glow import ActNorm, InvertibleConv1x1, MultiScale, squeezed_shapes
from simulacra.flows.monotonic import UMNN
from simulacra.flows.permutation import Standardize
from simulacra.flows.recipes import FLOW_RECIPES, flow_layers, maf_layers, realnvp_layers
from simulacra.flows.splines import RationalQuadraticSpline
from simulacra.models.flow import FlowModel
from simulacra.models.zoo._common import _flow_context
from simulacra.models.zoo._registry import ACCELERATOR_IMAGE_DEFAULTS, MODELS
from simulacra.nn.conv import CouplingConvNet
from simulacra.nn.embeddings import Standardization
from simulacra.nn.mlp import MLP

# -- normalizing flows --------------------------------------------------------------------------
# Every flow is FlowModel(info, LazyFlow(transforms, ...)): the presets differ only in the list of
# transforms. Vector presets flatten image data first (and dequantize it: see _dequantizer).


def _dequantizer(info: DataInfo, dequantization: str) -> nn.Module | None:
    """Dequantizer for discrete data (levels or binary), None for continuous data."""
    if info.levels is None and info.support != "binary":
        return None
    from simulacra.flows.dequantization import DEQUANTIZERS

    return DEQUANTIZERS.build({"name": dequantization}, info=info)


def _vector_flow(
    info: DataInfo,
    layers: Sequence[Transform],
    context: nn.Module | None,
    conditional: bool,
    dequantization: str,
) -> FlowModel:
    """FlowModel over vectors; images are reshaped to (D,) first (a volume-preserving step)."""
    transforms: list[Transform] = []
    dequantizer = _dequantizer(info, dequantization)
    if dequantizer is not None:
        transforms += list(dequantizer.preprocessing())
    if len(info.event_shape) != 1:
        transforms.append(Reshape(tuple(info.event_shape), (info.dim,)))
    flow = LazyFlow(transforms + list(layers), info.event_shape, context=context, base_shape=(info.dim,))
    return FlowModel(info, flow, dequantizer, conditional=conditional)


@MODELS.register("realnvp", "RealNVP (Dinh et al. 2017): affine coupling layers with alternating masks")
def realnvp(
    info: DataInfo,
    transforms: int | None = None,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    batchnorm: bool = False,
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    architecture: str | None = None,
    levels: int = 2,
) -> FlowModel:
    """Affine couplings z_B = x_B·exp(s(x_A)) + t(x_A) on vectors (images are flattened);
    ``conditional`` feeds the one-hot label (or a learned ``embedding_dim`` embedding) to every layer.

    ``architecture`` is "vector" (``transforms`` = 8 couplings of MLPs, the default for vectors) or
    "multiscale" (the default for images; RealNVP §3.6, see :func:`_multiscale_realnvp`)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    if _realnvp_architecture(info, architecture) == "multiscale":
        layers = _multiscale_realnvp(
            info, 3 if transforms is None else transforms, hidden, activation, batchnorm, levels, cf
        )
        return _image_flow(info, layers, context, conditional, dequantization)
    transforms = 8 if transforms is None else transforms
    layers = realnvp_layers(info.dim, transforms, hidden, activation, cf, batchnorm=batchnorm)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register("maf", "masked autoregressive flow (Papamakarios et al. 2017): affine MADE layers")
def maf(
    info: DataInfo,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    batchnorm: bool = False,
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    inverse: bool = False,
) -> FlowModel:
    """z_i = x_i·exp(s_i(x_<i)) + t_i(x_<i), orders alternating between layers; one pass for
    log p, D passes to sample. ``inverse=True`` is the IAF (the ``iaf`` preset)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers = maf_layers(info.dim, transforms, hidden, activation, cf, inverse=inverse, batchnorm=batchnorm)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register("iaf", "inverse autoregressive flow (Kingma et al. 2016): MAF inverted, one-pass sampling")
def iaf(info: DataInfo, inverse: bool = True, **kwargs: Any) -> FlowModel:
    """The inverse of a MAF: sampling takes one pass, log p takes D passes (slow to train on
    data; its use is as a posterior or wherever samples are scored by the flow itself). Other
    keywords as ``maf``."""
    return maf(info, inverse=inverse, **kwargs)


# -- flows: neural spline flows and the torus (flows/splines.py, flows/circular.py) -------------
# NSF is MAF or RealNVP with a rational-quadratic spline as the elementwise map; the torus flow
# couples circular splines over a base uniform on [-π, π)^D.


@MODELS.register("nsf", "neural spline flow (Durkan et al. 2019): rational-quadratic splines in MADE layers")
def nsf(
    info: DataInfo,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    bins: int = 8,
    bound: float = 5.0,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    coupling: bool = False,
) -> FlowModel:
    """Autoregressive NSF: z_i = h(x_i; θ_i(x_<i)), h a monotonic rational-quadratic spline with
    ``bins`` bins on [-bound, bound] (identity outside), orders alternating between layers; one
    pass for log p, D passes to sample. ``coupling=True``: spline couplings z_B = h(x_B; θ(x_A))
    with alternating masks instead, one pass both ways (the ``nsf-coupling`` preset)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    spline = partial(RationalQuadraticSpline, bins=bins, bound=bound)
    layers = flow_layers(info.dim, transforms, hidden, activation, cf, elementwise=spline, coupling=coupling)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register("nsf-coupling", "coupling neural spline flow (Durkan et al. 2019): spline couplings")
def nsf_coupling(info: DataInfo, coupling: bool = True, **kwargs: Any) -> FlowModel:
    """The ``nsf`` preset with spline couplings (alternating masks) instead of MADE layers."""
    return nsf(info, coupling=coupling, **kwargs)


@MODELS.register("torus", "circular spline flow on the torus (Rezende et al. 2020): angles in [-π, π)")
def torus(
    info: DataInfo,
    transforms: int = 4,
    hidden: Sequence[int] = (64, 64),
    bins: int = 8,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
) -> FlowModel:
    """Density on T^D of angles θ ∈ [-π, π)^D (D ≥ 2): couplings θ_B' = wrap(h(θ_B) + φ) of
    circular rational-quadratic splines whose parameters read (cos θ_A, sin θ_A), alternating
    which angles move, over a base uniform on [-π, π)^D. Data outside [-π, π) raise a DataError."""
    if len(info.event_shape) != 1 or info.dim < 2 or info.support != "real" or info.levels is not None:
        raise ConfigError(
            "the torus flow models vectors of D ≥ 2 continuous angles (event shape (D,), support 'real'); "
            f"found event shape {tuple(info.event_shape)}, support {info.support!r}, levels {info.levels}"
        )
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers: list[Transform] = [AngleDomain()]
    for i in range(positive_int(transforms, "transforms")):
        h = CircularSpline(bins)
        mask = alternating_mask(info.dim, i % 2)
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        net = AngleFeatures(n_a, MLP(2 * n_a + cf, hidden, n_b * h.num_params, activation))
        layers.append(Coupling(mask, net, h))
    flow = LazyFlow(layers, info.event_shape, base=UniformCircle(info.dim), context=context)
    return FlowModel(info, flow, conditional=conditional)


# -- flows: Glow and image flows (flows/glow.py) ------------------------------------------------
# Image flows keep the (C, H, W) shape throughout: a logit step, then one MultiScale transform
# (squeeze, couplings with convolutional conditioners, half the channels factored out per scale).


def _image_flow(
    info: DataInfo,
    layers: Sequence[Transform],
    context: nn.Module | None,
    conditional: bool,
    dequantization: str,
) -> FlowModel:
    """FlowModel over images (no flattening); the base is a standard normal over (C, H, W)."""
    dequantizer = _dequantizer(info, dequantization)
    pre = [] if dequantizer is None else list(dequantizer.preprocessing())
    flow = LazyFlow(pre + list(layers), info.event_shape, context=context)
    return FlowModel(info, flow, dequantizer, conditional=conditional)


def _image_coupling(mask: Tensor, hidden: Sequence[int], activation: str, context_features: int) -> Coupling:
    """Affine coupling on images (C, H, W) whose conditioner is a CouplingConvNet (C + C_c -> 2C)."""
    c = mask.shape[0]
    return Coupling(mask, CouplingConvNet(c + context_features, 2 * c, hidden, activation), Affine())


def _realnvp_architecture(info: DataInfo, architecture: str | None) -> str:
    chosen = architecture or ("multiscale" if info.is_image else "vector")
    if chosen not in ("vector", "multiscale"):
        raise ConfigError(f'realnvp architecture must be "vector" or "multiscale"; found {architecture!r}')
    if chosen == "multiscale" and not info.is_image:
        raise ConfigError(f"the multiscale realnvp needs images (C, H, W); found {tuple(info.event_shape)}")
    return chosen


def _multiscale_realnvp(
    info: DataInfo,
    transforms: int,
    hidden: Sequence[int],
    activation: str,
    batchnorm: bool,
    levels: int,
    context_features: int,
) -> list[Transform]:
    """RealNVP's image model (Dinh et al. 2017 §3.6): at each of ``levels`` scales ``transforms``
    checkerboard couplings, a squeeze, ``transforms`` channel couplings and half of the channels
    factored out; then ``transforms + 1`` checkerboard couplings at the coarsest scale."""
    if batchnorm:
        raise ConfigError(
            'batchnorm applies to the vector realnvp; use architecture="vector" or glow (ActNorm)'
        )
    transforms = positive_int(transforms, "transforms")
    shapes = squeezed_shapes(info.event_shape, positive_int(levels, "levels"), "realnvp")
    c, h, w = shapes[-1]
    last = (2 * c, h // 2, w // 2)
    inner: Transform = Composed(
        [
            _image_coupling(checkerboard_mask(last, i % 2), hidden, activation, context_features)
            for i in range(transforms + 1)
        ]
    )
    for c, h, w in reversed(shapes):
        squeezed = (4 * c, h // 2, w // 2)
        pre = [
            _image_coupling(checkerboard_mask((c, h, w), i % 2), hidden, activation, context_features)
            for i in range(transforms)
        ]
        post = [
            _image_coupling(channel_mask(squeezed, i % 2), hidden, activation, context_features)
            for i in range(transforms)
        ]
        inner = MultiScale(pre, post, inner, keep=2 * c)
    return [inner]


@MODELS.register(
    "glow", "Glow (Kingma & Dhariwal 2018): multi-scale ActNorm, 1x1 convolutions, affine couplings"
)
def glow(
    info: DataInfo,
    levels: int = 2,
    steps: int = 4,
    hidden: int = 64,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
    learned_prior: bool = True,
) -> FlowModel:
    """At each of ``levels`` scales: squeeze, ``steps`` steps of ActNorm → invertible 1×1
    convolution (LU) → affine coupling (channel halves, conditioner 3×3 conv → 1×1 conv → 3×3 conv
    of ``hidden`` channels), then half of the channels factored out. Vector data get ``levels·steps``
    steps of ActNorm → LU linear map → MLP coupling instead (no scales).

    ``learned_prior``: Glow's prior N(μ(h₁), σ(h₁)²) on each factored-out half h₂ given the kept
    half h₁, written as one more affine coupling h₂ -> (h₂ − μ(h₁))/σ(h₁) before the split (the
    standard normal base then scores the result; the densities are the same)."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    levels, steps, hidden = (
        positive_int(v, n) for v, n in ((levels, "levels"), (steps, "steps"), (hidden, "hidden"))
    )
    if not info.is_image:
        d = info.dim
        layers: list[Transform] = []
        for i in range(levels * steps):
            mask = alternating_mask(d, i % 2)
            n_a, n_b = int(mask.sum()), int((~mask).sum())
            net = MLP(n_a + cf, [hidden, hidden], 2 * n_b, activation)
            layers += [
                ActNorm(d, event_dims=1),
                InvertibleConv1x1(d, event_dims=1),
                Coupling(mask, net, Affine()),
            ]
        return _vector_flow(info, layers, context, conditional, dequantization)
    inner: Transform | None = None
    for c, h, w in reversed(squeezed_shapes(info.event_shape, levels, "glow")):
        shape = (4 * c, h // 2, w // 2)
        post: list[Transform] = []
        for i in range(steps):
            coupling = _image_coupling(channel_mask(shape, i % 2), (hidden, hidden), activation, cf)
            post += [ActNorm(shape[0]), InvertibleConv1x1(shape[0]), coupling]
        if inner is not None and learned_prior:  # channel_mask parity 0 keeps the first 2c channels: h₁
            post.append(_image_coupling(channel_mask(shape, 0), (hidden,), activation, cf))
        inner = MultiScale((), post, inner, keep=None if inner is None else 2 * c)
    return _image_flow(info, [inner], context, conditional, dequantization)


# -- flows: UMNN and continuous flows (flows/monotonic.py, flows/continuous.py) -----------------
# UMNN-MAF is MAF with an integral of a positive network as the elementwise map; the CNF is one
# (or a few) FFJORD blocks, each an ODE solve over [0, T].


@MODELS.register("umnn", "unconstrained monotonic neural networks (Wehenkel & Louppe 2019) in MADE layers")
def umnn(
    info: DataInfo,
    transforms: int = 3,
    hidden: Sequence[int] = (64, 64),
    integrand_embedding: int = 10,
    integrand_hidden: Sequence[int] = (64, 64),
    nodes: int = 24,
    activation: str = "relu",
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
) -> FlowModel:
    """UMNN-MAF: z_i = β_i + ∫_0^{x_i} f(t; e_i) dt with f > 0 a network of (t, e_i), (e_i, β_i) =
    MADE(x_<i); Clenshaw–Curtis quadrature on ``nodes`` + 1 points; one pass for log p, D
    bisections to sample."""
    context, cf = _flow_context(info, conditional, embedding_dim)

    def elementwise() -> UMNN:
        return UMNN(integrand_embedding, integrand_hidden, nodes)

    layers = flow_layers(info.dim, transforms, hidden, activation, cf, elementwise=elementwise)
    return _vector_flow(info, layers, context, conditional, dequantization)


@MODELS.register(
    "cnf", "continuous normalizing flow (FFJORD, Grathwohl et al. 2019): an ODE-defined bijection"
)
def cnf(
    info: DataInfo,
    transforms: int = 1,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    time_length: float = 1.0,
    trace: str = "auto",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    train_rtol: float | None = None,
    train_atol: float | None = None,
    steps: int | None = None,
    conditional: bool = False,
    embedding_dim: int | None = None,
    dequantization: str = "uniform",
) -> FlowModel:
    """dz/dt = g(z, t; c) over [0, ``time_length``] with a concatsquash MLP g; log|det| =
    ∫ tr(∂g/∂z) dt, exact for D ≤ 10 and Hutchinson's estimate above (``trace``); ``rtol``/``atol``
    for evaluation, ``train_rtol``/``train_atol`` (looser, faster) while training."""
    context, cf = _flow_context(info, conditional, embedding_dim)
    layers: list[Transform] = [
        ContinuousFlow(
            ConcatSquashField(info.dim, hidden, cf, activation),
            time_length,
            trace=trace,
            method=method,
            rtol=rtol,
            atol=atol,
            steps=steps,
            train_rtol=train_rtol,
            train_atol=train_atol,
        )
        for _ in range(positive_int(transforms, "transforms"))
    ]
    return _vector_flow(info, layers, context, conditional, dequantization)


# -- flows: conditional density estimation (neural posterior estimation) ------------------------
# q(θ | x) for simulation-based inference: a flow recipe over standardized θ reading standardized
# x; the standardization is part of the model, so a checkpoint reloads the whole estimator.


@MODELS.register(
    "posterior",
    "neural posterior estimator (Papamakarios & Murray 2016): a flow q(θ | x) on standardized θ, x",
)
def posterior(
    info: DataInfo,
    context_dim: int,
    flow: str = "maf",
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    embedding_dim: int | None = None,
) -> FlowModel:
    """q(θ | x) = q̃((θ − m_θ)/s_θ | x̃) / Π_d s_θ,d with x̃ = (x − m_x)/s_x, for θ (D,) = ``info``'s
    event and a continuous context x (``context_dim``,): q̃ is the recipe ``flow`` of
    :data:`~simulacra.flows.recipes.FLOW_RECIPES` (``maf``, ``realnvp``, ``nsf``, ``nsf-coupling``)
    with ``transforms`` layers; ``embedding_dim`` maps x̃ through an MLP (context_dim → hidden[0]
    → embedding_dim, trained jointly) before the layers read it. m and s are buffers, the
    identity until set from training pairs (:func:`posterior_standardizations`); log_prob(θ, x)
    and sample(n, x) take x (B, context_dim) as the context c."""
    if len(info.event_shape) != 1 or info.support != "real" or info.levels is not None:
        raise ConfigError(
            "the posterior flow models real vectors θ (event shape (D,), support 'real'); found event "
            f"shape {tuple(info.event_shape)}, support {info.support!r}, levels {info.levels}"
        )
    x_dim = positive_int(context_dim, "context_dim")
    context: nn.Module = Standardization(x_dim)
    if embedding_dim is not None:
        embedding = MLP(x_dim, list(hidden)[:1], positive_int(embedding_dim, "embedding_dim"), activation)
        context = nn.Sequential(context, embedding)
    features = x_dim if embedding_dim is None else embedding_dim
    layers = FLOW_RECIPES.get(flow)(info.dim, transforms, list(hidden), activation, features)
    lazy = LazyFlow([Standardize(info.dim), *layers], info.event_shape, context=context)
    return FlowModel(info, lazy, conditional=True)


def posterior_standardizations(model: FlowModel) -> tuple[Standardize, Standardization]:
    """The standardizations of θ (the flow's first layer) and of x (its context's first module)
    in a model built by the ``posterior`` preset, e.g. to set them from training pairs.

    Raises:
        ConfigError: the model was not built by the ``posterior`` preset.
    """
    transform, context = model.flow.transform, model.flow.context
    theta = transform.transforms[0] if isinstance(transform, Composed) and len(transform) else None
    x = context[0] if isinstance(context, nn.Sequential) else context
    if not isinstance(theta, Standardize) or not isinstance(x, Standardization):
        raise ConfigError(
            f"expected a model of the 'posterior' preset (standardized θ and x); found {model.preset_name!r}"
        )
    return theta, x


# On a GPU: more steps per scale and wider couplings (Kingma & Dhariwal used 32 steps of 512
# channels on larger images); the signature's sizes suit a 2-core CPU.
ACCELERATOR_IMAGE_DEFAULTS["glow"] = {"steps": 16, "hidden": 256}
