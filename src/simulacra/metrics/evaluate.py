"""One evaluation for every family: metrics registered with the capability each needs.

    evaluate(model, split, ["nll", "mmd", "fid"]) -> {"nll": Estimate, "bpd": Estimate, "mmd": ..., ...}

Every metric is a :class:`Metric` in :data:`METRICS`: a name, the capabilities a model needs for
it (any one of them; none for metrics on samples, which every model draws), and the function that
computes its :class:`~simulacra.metrics.likelihood.Estimate` s. A model that lacks what a metric
needs gets one :class:`~simulacra.errors.CapabilityError` saying what it lacks and which metrics
it can have instead ("gan has no likelihood; use --metric mmd or fid"). ``simulacra evaluate``
and the figures written after training call :func:`evaluate`; so can any script.

Registered: ``nll`` (the best likelihood estimate the model affords, with bits/dim; see
:func:`~simulacra.metrics.likelihood.evaluate_nll`), ``mmd`` (MMD² between samples and held-out
data, with a permutation-test p-value), ``fid`` (Fréchet distance of a feature network's features,
for images; the network is given in :class:`EvalOptions`, or for 1×28×28 grey images it is the
one shipped in the package), and on the same features ``kid``, ``prdc`` and ``classes``; every
estimate of these names the features it used; ``codes`` for models with discrete latents (the
prior's bits per code, the reconstruction error, codebook usage).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from simulacra.data.info import DataInfo, Split
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.metrics.features import class_histogram_kl, kid, manifold_metrics
from simulacra.metrics.fid import (
    FeatureClassifier,
    extract_features,
    frechet_bootstrap_sd,
    frechet_distance,
    gaussian_fit,
    load_feature_classifier,
    shipped_feature_network,
)
from simulacra.metrics.likelihood import Estimate, evaluate_nll
from simulacra.metrics.two_sample import classifier_two_sample_test, mmd, mmd_permutation_test
from simulacra.models.base import (
    DomainTranslation,
    ExactLikelihood,
    GenerativeModel,
    ImageTranslation,
    ImportanceWeighted,
    LikelihoodBound,
)
from simulacra.models.vqvae import DiscreteLatent
from simulacra.registry import Registry


@dataclass
class EvalOptions:
    """Settings shared by the metrics.

    Attributes:
        num_samples: k, importance samples per example for the VAE family's ``nll``.
        max_samples: samples drawn for sample metrics (``mmd``, ``fid``), at most the split's size.
        seed: seeds every random choice (importance samples, samples, permutations).
        progress: show progress bars.
        features: the feature network of ``fid``, ``kid``, ``prdc`` and ``classes`` (a
            :class:`FeatureClassifier` or the path of one saved with
            :func:`~simulacra.metrics.fid.save_feature_classifier`); None: the shipped MNIST
            network for the images it reads (:func:`feature_network`), else an error.
        sample_options: options given to ``model.sample`` (e.g. a diffusion model's sampler).
        batch_size: examples per likelihood call (None: a tenth of the examples, see
            :func:`~simulacra.metrics.likelihood.default_batch_size`).
    """

    num_samples: int = 1000
    max_samples: int = 500
    seed: int = 0
    progress: bool = False
    features: FeatureClassifier | str | Path | None = None
    sample_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    samples_cache: dict[tuple[int, int, int, int], Tensor] | None = field(
        default=None, repr=False, compare=False
    )


MetricFn = Callable[[GenerativeModel, Split, EvalOptions], dict[str, Estimate]]


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: its name (``--metric NAME``).
        requires: capabilities of which a model needs one (runtime-checkable protocols); empty
            when every model qualifies.
        requirement: what ``requires`` means, in words ("a likelihood").
        compute: ``(model, split, options) -> {name: Estimate}``.
        images: the metric compares images (a model of other data cannot have it).
    """

    name: str
    requires: tuple[type, ...]
    requirement: str
    compute: MetricFn
    images: bool = False

    def applies_to(self, model: object) -> bool:
        if self.images and not getattr(getattr(model, "info", None), "is_image", False):
            return False
        return not self.requires or any(isinstance(model, cap) for cap in self.requires)


METRICS: Registry[Metric] = Registry("metric")


def register(
    name: str, description: str, requires: tuple[type, ...] = (), requirement: str = "", images: bool = False
) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register ``compute`` as the metric ``name`` needing one of ``requires`` (and
    image data when ``images``)."""

    def decorator(compute: MetricFn) -> MetricFn:
        METRICS.register(name, description)(Metric(name, requires, requirement, compute, images))
        return compute

    return decorator


def available_metrics(model: object) -> list[str]:
    """The registered metrics ``model`` has what it takes for."""
    return [name for name in METRICS.names() if METRICS.get(name).applies_to(model)]


def evaluate(
    model: GenerativeModel,
    split: Split,
    metrics: Sequence[str] | str = ("nll",),
    options: EvalOptions | None = None,
    **settings: Any,
) -> dict[str, Estimate]:
    """Compute ``metrics`` of ``model`` on ``split`` (held-out data), in the order given.

    Args:
        model: a trained model (put in eval mode here; its device is used).
        split: examples (N, *event) and labels; a conditional model is given the labels.
        metrics: names registered in :data:`METRICS`.
        options: :class:`EvalOptions`; or give its fields as keyword ``settings``.

    Returns:
        ``{entry: Estimate}``, e.g. ``nll`` and ``bpd`` (nats, bits/dim), ``mmd``, ``fid``.

    Raises:
        UnknownNameError: a metric name :data:`METRICS` lacks.
        CapabilityError: the model lacks what a metric needs (the message lists what it can have).
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if options is None:
        options = EvalOptions(**settings)
    elif settings:
        raise ConfigError("give evaluate() either options= or keyword settings, not both")
    chosen = [METRICS.get(n) for n in names]
    for metric in chosen:
        if not metric.applies_to(model):
            others = [n for n in available_metrics(model) if n != metric.name]
            hint = f"; use {' or '.join(f'--metric {n}' for n in others)}" if others else ""
            if metric.images and not model.info.is_image:
                raise CapabilityError(
                    f"{metric.name} compares images; {model.preset_name} models examples of shape "
                    f"{tuple(model.info.event_shape)}{hint}"
                )
            raise CapabilityError(
                f"{model.preset_name} has no {metric.requirement} for {metric.name!r}{hint}"
            )
    if len(split) == 0:
        raise DataError("cannot evaluate on an empty split")
    was_training = model.training
    model.eval()
    try:
        results: dict[str, Estimate] = {}
        shared = dataclasses.replace(options, samples_cache={})  # the metrics of this call share samples
        for metric in chosen:
            results.update(metric.compute(model, split, shared))
    finally:
        model.train(was_training)
    return results


# --------------------------------------------------------------------------- the metrics


def _labels(model: GenerativeModel, split: Split, n: int | None = None) -> Tensor | None:
    """The context of n samples: the held-out labels of a conditional model, the observations of
    the held-out images for an image-translation model (its samples are their translations)."""
    if isinstance(model, ImageTranslation):
        return model.observe((split.x if n is None else split.x[:n]).to(model.device))
    if not model.conditional or split.y is None:
        return None
    y = split.y if n is None else split.y[:n]
    return y.to(model.device)


def per_character(results: dict[str, Estimate], info: DataInfo) -> dict[str, Estimate]:
    """For character sequences (``text:PATH``) bits/dim are bits per character: report ``bpc``."""
    if info.vocabulary is not None and "bpd" in results:
        bpd = results.pop("bpd")
        results["bpc"] = Estimate(bpd.value, bpd.stderr, bpd.estimator, "bits/character", bpd.n)
    return results


@register(
    "nll",
    "held-out negative log-likelihood in nats and bits/dim (exact, importance-sampled, or a bound)",
    requires=(ExactLikelihood, ImportanceWeighted, LikelihoodBound),
    requirement="likelihood",
)
def _nll(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    results = evaluate_nll(
        model,
        split.x.to(model.device),
        _labels(model, split),
        num_samples=options.num_samples,
        generator=torch.Generator().manual_seed(options.seed),
        progress=options.progress,
        batch_size=options.batch_size,
    )
    return per_character(results, model.info)


def compared_split(model: GenerativeModel, split: Split) -> tuple[Split, Tensor]:
    """(the held-out examples that condition the samples, the held-out examples (N, *event) that
    the samples are compared with). For most models both are ``split``; for a domain-translation
    model (CycleGAN) the samples are translations of the images of domain A and are compared with
    those of domain B (as many of each)."""
    if isinstance(model, DomainTranslation):
        a, b = model.split(split.x, split.y)
        m = min(len(a), len(b))
        if m < 2:
            names = " and ".join(model.domain_names)
            raise DataError(
                f"the held-out split has {len(a)} and {len(b)} images of the domains {names}; "
                "comparing translations needs at least 2 of each"
            )
        return Split(a[:m]), b[:m]
    return split, split.x


def draw_samples(
    model: GenerativeModel, split: Split, n: int, options: EvalOptions, *, offset: int = 1
) -> Tensor:
    """n samples (n, *event) on the CPU, with the labels of the first n held-out examples for a
    conditional model, under a generator seeded ``options.seed + offset``. A domain-translation
    model's samples are the translations (A -> B) of the first n examples of ``split``. Within one
    :func:`evaluate` call the draw is made once and shared by the metrics that ask for it (it is
    the same draw: the same generator seed, labels and count)."""
    if isinstance(model, DomainTranslation):
        return model.translate(split.x[:n].to(model.device), "a->b").detach().cpu()
    key = (split.x.data_ptr(), len(split), n, offset)
    cache = options.samples_cache
    if cache is not None and key in cache:  # the same draw, asked by another metric of one evaluate call
        return cache[key]
    generator = torch.Generator().manual_seed(options.seed + offset)
    samples = model.sample(n, _labels(model, split, n), generator=generator, **options.sample_options)
    samples = samples.detach().cpu()
    if cache is not None:
        cache[key] = samples
    return samples


def _sample_count(split: Split, options: EvalOptions) -> int:
    if options.max_samples < 2:
        raise ConfigError(f"sample metrics need at least 2 samples; found max_samples={options.max_samples}")
    return min(len(split), options.max_samples)


def mmd_estimates(samples: Tensor, data: Tensor, seed: int = 0) -> dict[str, Estimate]:
    """MMD² between samples (n, *event) and held-out data (m, *event), and the p-value of its
    permutation test (200 permutations, seeded ``seed + 2``). Held-out examples with a missing
    entry (NaN, data of a model trained on incomplete data) are left out: the statistic compares
    complete examples (NaN when fewer than two are complete)."""
    complete = ~torch.isnan(data).flatten(1).any(1) if data.is_floating_point() else None
    if complete is not None and not bool(complete.all()):
        data = data[complete]
        if data.shape[0] < 2:
            note = "MMD² needs two complete held-out examples"
            n = samples.shape[0]
            return {
                "mmd": Estimate(math.nan, math.nan, note, "", n),
                "mmd_p_value": Estimate(math.nan, math.nan, note, "", n),
            }
        samples = samples[: max(2, min(samples.shape[0], data.shape[0]))]
    value = mmd(samples, data)
    p = mmd_permutation_test(samples, data, 200, torch.Generator().manual_seed(seed + 2))
    kernel = "Gaussian kernel, median bandwidth"
    n = samples.shape[0]
    return {
        "mmd": Estimate(value, math.nan, f"MMD² ({kernel})", "", n),
        "mmd_p_value": Estimate(
            p, math.nan, f"permutation test of MMD² = 0 (200 permutations, {kernel})", "", n
        ),
    }


@register("mmd", "MMD² between samples and held-out data (Gaussian kernel), with a permutation p-value")
def _mmd(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    split, reference = compared_split(model, split)
    n = _sample_count(split, options)
    samples = draw_samples(model, split, n, options)
    return mmd_estimates(samples, reference[:n].cpu(), options.seed)


SHIPPED_IMAGE_SHAPE = (1, 28, 28)
"""The images the shipped MNIST feature network reads (grey, values in [0, 1])."""


def shipped_network_applies(info: DataInfo, classes: bool = False) -> bool:
    """Whether the image metrics of data described by ``info`` take the shipped MNIST feature
    network (:func:`~simulacra.metrics.fid.shipped_feature_network`) when none is given: 1×28×28
    grey images with values in [0, 1] (not standardized), and 10 classes when ``classes``."""
    return (
        tuple(info.event_shape) == SHIPPED_IMAGE_SHAPE
        and info.support in ("unit", "binary")
        and info.standardization is None
        and (not classes or info.num_classes == 10)
    )


def _described(path: Path) -> str:
    """``FILE.safetensors`` and, where ``FILE.json`` beside it (``simulacra features train``) has
    it, the network's held-out accuracy."""
    try:
        record = json.loads(path.with_suffix(".json").read_text())
        scored = float(record.get("test_accuracy", record.get("held_out_accuracy")))
    except (OSError, ValueError, TypeError, AttributeError):
        return path.name
    return f"{path.name} ({100 * scored:.1f}% held-out accuracy)" if math.isfinite(scored) else path.name


def feature_network(
    options: EvalOptions, info: DataInfo, metric: str = "fid", classes: bool = False
) -> tuple[FeatureClassifier, str]:
    """The feature network of an image ``metric`` and the words naming it in the estimates: the
    one in ``options.features`` (an object or a saved file), else, for data the shipped MNIST
    network reads (:func:`shipped_network_applies`; ``classes``: the metric needs the data's
    classes), that network, "simulacra MNIST classifier (99.4% test accuracy, shipped)".

    Raises:
        ConfigError: no network given, and the data are not what the shipped network reads.
    """
    features = options.features
    if isinstance(features, FeatureClassifier):
        return features, "given feature network"
    if features is not None:
        return load_feature_classifier(features), _described(Path(features))
    if shipped_network_applies(info, classes):
        net, record = shipped_feature_network("mnist")
        return net, f"{record['name']} ({100 * record['test_accuracy']:.1f}% test accuracy, shipped)"
    shape = "×".join(str(s) for s in info.event_shape)
    why = (
        f"the shipped MNIST network tells 10 classes, these data have {info.num_classes}"
        if shipped_network_applies(info)
        else f"the shipped MNIST network reads 1×28×28 grey images in [0, 1], these are {shape}"
        + (" standardized" if info.standardization is not None else "")
    )
    raise ConfigError(
        f"{metric} needs a feature network: give --features FILE (a classifier saved by "
        "simulacra.metrics.fid.save_feature_classifier), or train one with "
        f"`simulacra features train --data NAME|PATH -o FILE.safetensors` ({why})"
    )


def check_image_shape(net: FeatureClassifier, label: str, shape: tuple[int, ...], maker: str) -> None:
    """Raise :class:`DataError` unless images of ``shape`` (C, H, W), made by ``maker``, are what
    ``net`` reads: its channels, and its training images' shape where its file records it."""
    trained_on = net.config.get("image_shape")
    if shape[0] != net.config["in_channels"] or (trained_on is not None and tuple(trained_on) != shape):
        wanted = (
            f"images of shape {tuple(trained_on)}"
            if trained_on is not None
            else f"images of {net.config['in_channels']} channel(s)"
        )
        raise DataError(f"the feature network {label} reads {wanted}; {maker} makes {shape}")


def _image_features(
    model: GenerativeModel, split: Split, options: EvalOptions, metric: str
) -> tuple[Tensor, Tensor, str, int]:
    """(features of n samples, features of n held-out images, the feature network's name, n)."""
    if not model.info.is_image:
        raise CapabilityError(
            f"{metric} compares image features; {model.preset_name} models examples of shape {model.info.event_shape}"
        )
    net, label = feature_network(options, model.info, metric)
    split, reference = compared_split(model, split)
    n = _sample_count(split, options)
    samples = draw_samples(model, split, n, options)
    check_image_shape(net, label, tuple(samples.shape[1:]), model.preset_name)
    features = extract_features(net, samples), extract_features(net, reference[:n].cpu())
    if not all(bool(torch.isfinite(f).all()) for f in features):
        raise DataError(f"{metric} needs finite images; found NaN or inf")
    return features[0], features[1], label, n


@register(
    "fid",
    "Fréchet distance between the features of samples and held-out images (a feature network)",
    images=True,
)
def _fid(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    fake, real, label, n = _image_features(model, split, options, "fid")
    value = frechet_distance(*gaussian_fit(fake), *gaussian_fit(real))
    sd = frechet_bootstrap_sd(real, fake, generator=torch.Generator().manual_seed(options.seed))
    estimator = f"FID ({n} samples vs {n} images, ± the sd over 50 bootstrap resamplings; features: {label})"
    return {"fid": Estimate(value, sd, estimator, "", n)}


@register(
    "kid",
    "kernel inception distance: unbiased cubic-kernel MMD² of features, mean ± sd over 100 subsets",
    images=True,
)
def _kid(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    fake, real, label, n = _image_features(model, split, options, "kid")
    m = min(1000, max(2, n // 2))  # subsets of half the samples at most, so that they differ
    mean, sd = kid(
        real, fake, subsets=100, subset_size=m, generator=torch.Generator().manual_seed(options.seed)
    )
    estimator = (
        f"KID (100 subsets of {m} from {n} samples and {n} images, ± the sd over subsets; features: {label})"
    )
    return {"kid": Estimate(mean, sd, estimator, "", n)}


@register(
    "prdc",
    "precision and recall (k = 3), density and coverage (k = 5) of sample features against held-out images",
    images=True,
)
def _prdc(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    fake, real, label, n = _image_features(model, split, options, "prdc")
    found = manifold_metrics(real, fake)
    where = f"{n} samples vs {n} images, ± the s.e. over points; features: {label}"
    return {
        "precision": Estimate(found.precision, found.precision_se, f"precision, k = 3 ({where})", "share", n),
        "recall": Estimate(found.recall, found.recall_se, f"recall, k = 3 ({where})", "share", n),
        "density": Estimate(found.density, found.density_se, f"density, k = 5 ({where})", "", n),
        "coverage": Estimate(found.coverage, found.coverage_se, f"coverage, k = 5 ({where})", "share", n),
    }


@register(
    "c2st",
    "classifier two-sample test: held-out accuracy of an MLP telling samples from held-out data "
    "(0.5: indistinguishable), with its exact binomial interval and p-value",
)
def _c2st(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    split, reference = compared_split(model, split)
    n = _sample_count(split, options)
    samples, data = draw_samples(model, split, n, options), reference[:n].cpu()
    info = model.info
    if info.is_image and (options.features is not None or shipped_network_applies(info)):
        net, label = feature_network(options, info, "c2st")
        check_image_shape(net, label, tuple(samples.shape[1:]), model.preset_name)
        samples, data = extract_features(net, samples), extract_features(net, data)
        what = f"features: {label}"
    else:
        what = "raw values"
    complete = ~torch.isnan(data.flatten(1)).any(1)  # a model of incomplete data: complete examples
    found = classifier_two_sample_test(samples, data[complete], seed=options.seed)
    words = (
        f"C2ST accuracy (MLP trained on {found.n_train}, scored on {found.n_test} held-out of {n} samples "
        f"and {n} examples; {what}; {100 * found.level:.0f}% exact interval "
        f"[{found.low:.3f}, {found.high:.3f}], ± the binomial s.e.)"
    )
    return {
        "c2st": Estimate(found.accuracy, found.stderr, words, "share", found.n_test),
        "c2st_p_value": Estimate(
            found.p_value, math.nan, "exact one-sided binomial test of C2ST accuracy = 0.5", "", found.n_test
        ),
    }


@register(
    "classes",
    "class histogram of samples (the feature network's classes) against the held-out labels: KL and classes reached",
    images=True,
)
def _classes(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    if split.y is None or model.info.num_classes is None:
        raise CapabilityError("classes compares class histograms; these data have no labels")
    net, label = feature_network(options, model.info, "classes", classes=True)
    k = int(model.info.num_classes)
    if net.config["num_classes"] != k:
        raise DataError(
            f"the feature network {label} tells {net.config['num_classes']} classes; the data have {k}"
        )
    samples_split, _ = compared_split(model, split)
    n = _sample_count(samples_split, options)
    samples = draw_samples(model, samples_split, n, options)
    check_image_shape(net, label, tuple(samples.shape[1:]), model.preset_name)
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        predicted = torch.cat([net(b.to(device).float()).argmax(1).cpu() for b in samples.split(500)])
    kl, reached, _ = class_histogram_kl(predicted, split.y, k)
    where = f"{n} samples against {len(split.y)} held-out labels; classes by: {label}"
    return {
        "class_kl": Estimate(kl, math.nan, f"KL(sample classes ‖ data classes) ({where})", "nats", n),
        "classes_reached": Estimate(
            float(reached), math.nan, f"classes with a sample, of {k} ({where})", "", n
        ),
    }


@register(
    "cycle",
    "cycle-consistency error of a domain translation: mean |F(G(a)) − a| and |G(F(b)) − b| per image",
    requires=(DomainTranslation,),
    requirement="translation between two domains",
)
def _cycle(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    assert isinstance(model, DomainTranslation)
    a, b = model.split(split.x, split.y)
    results = {}
    for key, images, there, back in (("cycle_a", a, "a->b", "b->a"), ("cycle_b", b, "b->a", "a->b")):
        if len(images) == 0:
            continue
        x = images.to(model.device)
        errors = (model.translate(model.translate(x, there), back) - x).abs().flatten(1).mean(1).cpu()
        stderr = float(errors.std() / math.sqrt(len(errors))) if len(errors) > 1 else math.nan
        name = model.domain_names[0 if key == "cycle_a" else 1]
        results[key] = Estimate(
            float(errors.mean()),
            stderr,
            f"mean |round trip − image| over the {name} images",
            "data units",
            len(errors),
        )
    if not results:
        raise DataError("the held-out split has no image of either domain")
    return results


@register(
    "codes",
    "discrete latents: the prior's bits per code, reconstruction error at the codes, codebook usage",
    requires=(DiscreteLatent,),
    requirement="discrete latent codes",
)
def _codes(model: GenerativeModel, split: Split, options: EvalOptions) -> dict[str, Estimate]:
    """For x in the split, its codes k(x) (h, w): ``bits_per_code`` = −log₂ p(k(x)) / (h w) under
    the model's prior; ``rec_mse`` = mean over entries of (E[x | z_q(x)] − x)²; ``rec_nll`` =
    −log p(x | z_q(x)) in nats; ``codebook_usage`` (fraction of the K codes that some k(x) uses)
    and ``code_perplexity`` (exp of the entropy of the codes' frequencies)."""
    assert isinstance(model, DiscreteLatent)
    batch = options.batch_size or 100  # a discretized-logistic mean costs L evaluations per entry
    bits, mse, nll, codes = [], [], [], []
    with torch.no_grad():
        for start in range(0, len(split), batch):
            x = split.x[start : start + batch].to(model.device)
            c = (
                None
                if not model.conditional or split.y is None
                else split.y[start : start + batch].to(model.device)
            )
            k = model.codes(x, c)  # (B, h, w)
            bits.append((-model.code_log_prob(k, c) / (k[0].numel() * math.log(2.0))).double().cpu())
            px = model.reconstruction(x, c)
            mse.append((px.mean - x).pow(2).flatten(1).mean(1).double().cpu())
            nll.append((-px.log_prob(x)).double().cpu())
            codes.append(k.cpu())
    found = torch.cat(codes)
    counts = torch.bincount(found.reshape(-1), minlength=model.num_codes).double()
    p = counts / counts.sum()
    perplexity = float(torch.exp(-(p * torch.log(p.clamp(min=1e-300))).sum()))
    n, k_codes = len(found), model.num_codes
    where = f"codes of {n} held-out examples"
    return {
        "bits_per_code": Estimate.from_values(
            torch.cat(bits), f"prior: {model.code_prior_name}", "bits/code"
        ),
        "rec_mse": Estimate.from_values(
            torch.cat(mse), "decoder mean at z_q(x), per entry", "squared data units"
        ),
        "rec_nll": Estimate.from_values(torch.cat(nll), "−log p(x | z_q(x))", "nats"),
        "codebook_usage": Estimate(
            float((counts > 0).double().mean()), math.nan, f"codes used, of {k_codes} ({where})", "share", n
        ),
        "code_perplexity": Estimate(
            perplexity, math.nan, f"exp(entropy of code frequencies) ({where})", "codes", n
        ),
    }


def seconds_per_example(
    model: GenerativeModel, split: Split, metric: str, options: EvalOptions, *, probe: int = 8
) -> float:
    """Wall seconds per example that ``metric`` costs on ``model``, timed on the first ``probe``
    examples of ``split`` (for ``mmd`` and ``fid``: per sample drawn). An estimate to plan or
    announce a long evaluation; the probe itself is the cost of ``probe`` examples."""
    metric_ = METRICS.get(metric)
    n = max(2, min(probe, len(split)))
    part = Split(split.x[:n], None if split.y is None else split.y[:n])
    if metric_.requires:
        model.prepare_likelihood()  # one-time work (an EBM's log Z) is not a cost per example
    started = time.perf_counter()
    if metric_.requires:  # a likelihood: score the examples
        evaluate(model, part, [metric], dataclasses.replace(options, progress=False))
    else:  # a sample metric: its cost is drawing the samples
        draw_samples(model, part, n, options)
    return (time.perf_counter() - started) / n


def estimates_as_dicts(results: dict[str, Estimate]) -> dict[str, dict[str, Any]]:
    """``{name: {"value", "stderr", "estimator", "unit", "n"}}`` for JSON files and tables: strict
    JSON, so a statistic without a standard error has ``"stderr": None`` and a ``"stderr_note"``."""
    out: dict[str, dict[str, Any]] = {}
    for name, e in results.items():
        entry: dict[str, Any] = {
            "value": e.value,
            "stderr": e.stderr,
            "estimator": e.estimator,
            "unit": e.unit,
            "n": e.n,
        }
        if not math.isfinite(e.stderr):
            entry["stderr"] = None
            entry["stderr_note"] = "one example" if e.n < 2 else "no standard error for this statistic"
        if not math.isfinite(e.value):
            entry["value"] = None
            entry["value_note"] = f"not finite ({e.value})"
        out[name] = entry
    return out
