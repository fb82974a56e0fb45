"""Outlier (out-of-distribution) scores from a trained generative model.

Every score is a number per example (or per batch, for the typicality test) where **higher means
more anomalous**; each :class:`Score` states its unit and what it computes. Scores depend on
capabilities, not classes:

* ``nll`` / ``bpd``: −log p(x) in nats, and in bits per dimension, from the model's exact
  log-likelihood (:class:`ExactLikelihood`), its importance-sampled estimate
  (:class:`ImportanceWeighted`, Burda et al. 2016) or its bound (:class:`LikelihoodBound`).
  A raw likelihood is known to fail: models trained on one image set give *higher* likelihood to
  simpler images of another (Nalisnick et al. 2019, "Do deep generative models know what they
  don't know?"), because p(x) is dominated by low-level statistics such as the number of
  constant pixels.
* ``llr``: the likelihood ratio of Ren et al. (2019, "Likelihood ratios for out-of-distribution
  detection"), score = log p_background(x) − log p_model(x) (their −LLR), where the background
  model is the same kind of model trained on inputs perturbed at a rate μ (``data.perturb``,
  :class:`simulacra.data.transforms.Perturbation`); it divides out what both models capture,
  the background statistics.
* ``complexity``: the input-complexity correction of Serrà et al. (2020, "Input complexity and
  out-of-distribution detection with likelihood-based generative models"),
  S(x) = −log₂ p(x)/D − L(x)/D, bits/dim of the model minus bits/dim of a lossless compressor
  (PNG for 8-bit images, lzma for anything) on the same example.
* ``hllr``: the hierarchical likelihood ratio of Havtorn et al. (2021, "Hierarchical VAEs know
  what they don't know"), score = L − L^{>k}: the bound with every latent group from the
  posterior minus the bound with the bottom k groups drawn from the prior, so that x is explained
  by its high-level latents alone (:class:`LatentHierarchy`). The low-level statistics that
  dominate a raw likelihood enter both terms and cancel; what is left measures how well the
  semantic latents fit x.
* ``energy``: E(x) of an energy-based model (:class:`EnergyBased`), −log p(x) up to log Z.
* the typicality test (Nalisnick et al. 2019b, "Detecting out-of-distribution inputs to deep
  generative models using typicality"): a batch of M examples is out of distribution when
  |−(1/M) Σ log p(x_m) − Ĥ| > ε_α, Ĥ the mean NLL of training data and ε_α a bootstrap quantile
  (:class:`TypicalityTest`).
"""

from __future__ import annotations

import io
import lzma
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from simulacra.data.info import LN2, DataInfo
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.metrics.likelihood import (
    default_batch_size,
    dequantization_offset,
    evaluation_mode,
    importance_sampled_log_likelihood,
    model_device,
    seeded,
)
from simulacra.models.base import (
    EnergyBased,
    ExactLikelihood,
    GenerativeModel,
    ImportanceWeighted,
    LatentHierarchy,
    LikelihoodBound,
    LikelihoodReport,
    model_name,
)

COMPRESSORS: tuple[str, ...] = ("png", "lzma")
"""Lossless compressors of the input-complexity score."""

__all__ = [
    "COMPRESSORS",
    "ESTIMATORS",
    "Score",
    "TypicalityTest",
    "available_estimators",
    "bits_per_dim_score",
    "complexity_score",
    "compressed_bits",
    "default_compressor",
    "energy_score",
    "has_likelihood",
    "hierarchical_llr_score",
    "likelihood_ratio_score",
    "log_likelihood",
    "nll_score",
]


@dataclass(frozen=True)
class Score:
    """One outlier score of N examples; higher means more anomalous.

    Attributes:
        name: ``nll``, ``bpd``, ``llr``, ``hllr``, ``complexity`` or ``energy``.
        values: (N,) float64 on the CPU.
        unit: ``nats``, ``bits/dim`` or ``energy`` (nats up to the unknown log Z).
        meaning: what is computed and how (the estimator, the compressor), for reports.
    """

    name: str
    values: Tensor
    unit: str
    meaning: str


def has_likelihood(model: object) -> bool:
    """Whether ``model`` gives log p(x): an exact value, an importance-sampled estimate or a bound."""
    return isinstance(model, ExactLikelihood | ImportanceWeighted | LikelihoodBound)


def _batched_values(
    fn: object, model: object, x: Tensor, c: Tensor | None, batch_size: int, generator: torch.Generator | None
) -> Tensor:
    """Concatenate ``fn(x_b, c_b) -> (B,)`` over batches of ``x`` (N, ...), no gradients, eval
    mode, the global RNG seeded from ``generator``; (N,) float64 on the CPU."""
    device = model_device(model, x)
    out = []
    with torch.inference_mode(), evaluation_mode(model), seeded(generator, device):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device)
            cb = None if c is None else c[start : start + batch_size].to(device)
            out.append(fn(xb, cb).double().cpu())  # type: ignore[operator]
    return torch.cat(out)


ESTIMATORS = ("auto", "exact", "iwae", "bound")
"""The likelihood estimators :func:`log_likelihood` takes, "auto" first."""


def available_estimators(model: object) -> list[str]:
    """The estimators of log p(x) a model offers, best first: "exact", "iwae", "bound"."""
    kinds = (("exact", ExactLikelihood), ("iwae", ImportanceWeighted), ("bound", LikelihoodBound))
    return [name for name, capability in kinds if isinstance(model, capability)]


def log_likelihood(
    model: object,
    x: Tensor,
    c: Tensor | None = None,
    *,
    num_samples: int = 100,
    batch_size: int | None = None,
    estimator: str = "auto",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, str]:
    """log p(x) of each example, with the estimator asked for (by default the best the model
    affords), and the estimator's name.

    * ``"exact"`` — :class:`ExactLikelihood`: ``log_prob(x)`` (flows: a one-draw dequantization
      bound on discrete data; autoregressive models: exact; diffusion: the probability-flow ODE,
      many network calls per example);
    * ``"iwae"`` — :class:`ImportanceWeighted` (VAE family): log (1/k) Σ_i exp w_i with
      k = ``num_samples`` (Burda et al. 2016);
    * ``"bound"`` — :class:`LikelihoodBound`: the model's one-draw lower bound (a VAE's ELBO,
      a diffusion model's discrete-time VLB); E[bound] ≤ E[IWAE_k] ≤ log p(x).
    * ``"auto"`` — the first of these the model has.

    Scores of in- and out-of-distribution sets must come from one estimator: a bound's gap to
    log p(x) differs from example to example, so two estimators are not interchangeable.

    Args:
        model: the model, on its device.
        x: (N, *event_shape) examples in the model's space.
        c: (N, ...) context or None.
        num_samples: k, importance samples per example ("iwae").
        batch_size: examples per call (chosen from the dimension when None).
        estimator: "auto", "exact", "iwae" or "bound".
        generator: seeds the stochastic estimates.

    Returns:
        ((N,) float64 log p(x) in nats on the CPU, the estimator's name).

    Raises:
        CapabilityError: a model with no likelihood or bound (a GAN; an EBM: use its energy), or
            without the estimator asked for (the message names the ones it has).
    """
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"expected examples (N, *event_shape) with N ≥ 1; found shape {tuple(x.shape)}")
    if estimator not in ESTIMATORS:
        raise ConfigError(
            f"unknown likelihood estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
        )
    batch = batch_size or default_batch_size(x.shape[0], x[0].numel())
    offered = available_estimators(model)
    if estimator == "auto":
        if not offered:
            hint = "; use the energy score" if isinstance(model, EnergyBased) else ""
            raise CapabilityError(f"{model_name(model)} has no likelihood or bound{hint}")
        estimator = offered[0]
    elif estimator not in offered:
        has = f"it offers {', '.join(offered)}" if offered else "it has no likelihood or bound"
        raise CapabilityError(f"{model_name(model)} has no {estimator!r} likelihood estimator; {has}")
    if estimator == "exact":
        name = model.likelihood_estimator if isinstance(model, LikelihoodReport) else "exact"
        return _batched_values(model.log_prob, model, x, c, batch, generator), name
    if estimator == "iwae":
        log_p = importance_sampled_log_likelihood(
            model, x, c, num_samples=num_samples, batch_size=batch_size, generator=generator
        )
        return log_p.double().cpu(), f"IWAE k={num_samples}"
    if isinstance(model, LikelihoodBound):
        name = model.bound_name if isinstance(model, LikelihoodReport) else "bound"

        def bound(xb: Tensor, cb: Tensor | None) -> Tensor:
            return model.log_prob_bound(xb, cb, num_samples=1)

        return _batched_values(bound, model, x, c, batch, generator), name
    raise AssertionError(estimator)  # every name in ESTIMATORS is handled above


def nll_score(log_p: Tensor, estimator: str) -> Score:
    """−log p(x) in nats per example (higher = less likely = more anomalous)."""
    return Score("nll", -log_p.double().cpu(), "nats", f"−log p(x), {estimator}")


def bits_per_dim_score(log_p: Tensor, info: DataInfo, *, discrete_likelihood: bool, estimator: str) -> Score:
    """(−log p(x) + offset)/(D ln 2) in bits/dim, the offset D ln(L − 1) when a continuous
    density models discrete data (:func:`~simulacra.metrics.likelihood.dequantization_offset`),
    so that it is comparable with a compressor's bits/dim. For real-valued data it is a density's
    −log₂ p per dimension (its ranking of examples is that of ``nll``)."""
    offset = dequantization_offset(info, discrete_likelihood=discrete_likelihood)
    values = (-log_p.double().cpu() + offset) / (info.dim * LN2)
    return Score("bpd", values, "bits/dim", f"−log₂ p(x)/D, {estimator}")


def likelihood_ratio_score(log_p_model: Tensor, log_p_background: Tensor, *, estimators: str = "") -> Score:
    """log p_background(x) − log p_model(x) in nats (Ren et al. 2019's −LLR): high when the
    model explains an example no better than a model of perturbed data does."""
    if log_p_model.shape != log_p_background.shape:
        raise DataError(
            f"model and background scores differ in shape: {tuple(log_p_model.shape)} and "
            f"{tuple(log_p_background.shape)}"
        )
    meaning = "log p_background(x) − log p(x) (Ren et al. 2019)" + (f", {estimators}" if estimators else "")
    return Score("llr", (log_p_background - log_p_model).double().cpu(), "nats", meaning)


class _BottomFromPrior(torch.nn.Module):
    """``model``'s importance weights with its bottom ``skip`` groups drawn from the prior, as the
    batched IWAE estimator calls them."""

    def __init__(self, model: LatentHierarchy, skip: int) -> None:
        super().__init__()
        self.model, self.skip = model, skip

    def log_importance_weights(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        return self.model.log_importance_weights(x, c, num_samples, skip=self.skip)


def hierarchical_llr_score(
    model: LatentHierarchy,
    x: Tensor,
    c: Tensor | None = None,
    *,
    skip: int = 1,
    num_samples: int = 100,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Score:
    """L − L^{>k} in nats (Havtorn et al. 2021's LLR^{>k}, k = ``skip``): high when an example's
    high-level latents explain it much worse than the whole hierarchy does.

    L is the importance-weighted bound with every group from the posterior (the IWAE estimate of
    log p(x) for ``num_samples`` = k > 1, the one-draw ELBO for 1), L^{>k} the same bound with
    z_1..z_k drawn from the conditional prior p(z_{≤k} | z_{>k}); both are lower bounds on
    log p(x) with one estimator, so their difference is ≥ 0 on average for any x. Havtorn et al.
    found k = 1 or 2 best on 3-level models, for inputs a raw likelihood ranks wrongly.

    Args:
        model: a :class:`LatentHierarchy` (hierarchical VAE) with L groups.
        x: (N, *event_shape) examples in the model's space.
        c: (N, ...) context or None.
        skip: k, 1 ≤ k < L: how many of the lowest groups come from the prior.
        num_samples: importance samples per example for each bound.
        batch_size: examples per call (chosen from the memory budget when None).
        generator: seeds the draws of both bounds.

    Returns:
        a :class:`Score` of (N,) values in nats.
    """
    if not isinstance(model, LatentHierarchy):
        raise CapabilityError(
            f"{model_name(model)} has no hierarchy of latent groups; the hierarchical likelihood ratio "
            "needs a hierarchical VAE (hvae, lvae)"
        )
    levels = int(model.levels)
    if not 1 <= int(skip) < levels:
        raise ConfigError(
            f"the hierarchical likelihood ratio skips 1 to {levels - 1} of the {levels} latent groups; "
            f"found skip={skip}"
            + (" (a one-group model has nothing above its only group)" if levels < 2 else "")
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"expected examples (N, *event_shape) with N ≥ 1; found shape {tuple(x.shape)}")
    if num_samples < 1:
        raise ConfigError(f"num_samples must be at least 1; found {num_samples}")
    device = model_device(model, x)
    x, c = x.to(device), None if c is None else c.to(device)
    bounds = []
    for s in (0, int(skip)):
        log_p = importance_sampled_log_likelihood(
            _BottomFromPrior(model, s),
            x,
            c,
            num_samples=num_samples,
            batch_size=batch_size,
            generator=generator,
        )
        bounds.append(log_p.double().cpu())
    estimator = f"IWAE k={num_samples}" if num_samples > 1 else "one draw"
    meaning = f"L − L^{{>{skip}}} of {levels} groups (Havtorn et al. 2021), {estimator}"
    return Score("hllr", bounds[0] - bounds[1], "nats", meaning)


def energy_score(
    model: EnergyBased, x: Tensor, c: Tensor | None = None, *, batch_size: int | None = None
) -> Score:
    """E(x) of an energy-based model, p(x) ∝ exp(−E(x)): higher = more anomalous.

    A label-conditional model without labels ``c`` is scored by its marginal energy
    E(x) = −log Σ_y exp(−E(x, y)) over the K labels of ``model.info``, which for JEM's
    classifier energy (E(x, y) = −f(x)[y]) is exactly its E(x) = −logsumexp_y f(x)[y]
    (Grathwohl et al. 2020).

    Args:
        model: an :class:`EnergyBased` model.
        x: (N, *event_shape) examples in the data's space.
        c: (N,) labels or None.
        batch_size: examples per call.

    Returns:
        a :class:`Score` of (N,) energies.
    """
    if not isinstance(model, EnergyBased):
        raise CapabilityError(f"{model_name(model)} has no energy")
    batch = batch_size or default_batch_size(x.shape[0], x[0].numel())
    classes = _marginal_labels(model, c)
    if classes is None:
        values = _batched_values(model.energy, model, x, c, batch, None)
        return Score("energy", values, "energy", "E(x), p(x) ∝ exp(−E(x))")

    def marginal(xb: Tensor, _: Tensor | None) -> Tensor:
        energies = [model.energy(xb, torch.full((xb.shape[0],), k, device=xb.device)) for k in range(classes)]
        return -torch.logsumexp(-torch.stack(energies).double(), dim=0)

    values = _batched_values(marginal, model, x, None, batch, None)
    return Score("energy", values, "energy", f"E(x) = −log Σ_y exp(−E(x, y)) over {classes} labels")


def _marginal_labels(model: object, c: Tensor | None) -> int | None:
    """K when ``model`` is label-conditional and no labels are given (its energy is then
    marginalised over the K labels), else None."""
    if c is not None or not (isinstance(model, GenerativeModel) and model.conditional):
        return None
    classes = model.info.num_classes
    if not classes:
        raise CapabilityError(
            f"{model_name(model)} needs a context c that it does not say how to marginalise"
        )
    return int(classes)


# ----------------------------------------------------------------------------- input complexity


def _levels(info: DataInfo) -> int | None:
    """Values per entry of discrete data (2 for binary), None for continuous data."""
    if info.support == "binary":
        return 2
    if info.support == "unit" and info.levels is not None and info.levels >= 2:
        return info.levels
    return None


def default_compressor(info: DataInfo) -> str:
    """``png`` for images of at most 256 levels with 1 or 3 channels, else ``lzma``."""
    levels = _levels(info)
    if info.is_image and info.event_shape[0] in (1, 3) and levels is not None and levels <= 256:
        return "png"
    return "lzma"


def _png_bytes(image: np.ndarray) -> int:
    """Length in bytes of one (C, H, W) uint8 image as a PNG at the highest compression."""
    from PIL import Image

    array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", optimize=True, compress_level=9)
    return len(buffer.getvalue())


def _lzma_bytes(data: bytes) -> int:
    """Length in bytes of raw LZMA2 (no container header) of ``data`` at preset 9e, with a
    dictionary just large enough for it (the preset's 64 MiB one codes a small example no
    better, and costs 100 ms per call to set up)."""
    dict_size = max(4096, 1 << max(0, len(data) - 1).bit_length())
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size}]
    return len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters))


def compressed_bits(x: Tensor, info: DataInfo, compressor: str) -> Tensor:
    """L(x): the length in bits of each example compressed losslessly on its own, (N,) float64.

    Discrete data are coded as their integer levels k = round(x (L − 1)) (uint8 when L ≤ 256):
    ``png`` writes 1- or 3-channel images as a PNG (zlib level 9, the file's headers included);
    ``lzma`` codes the bytes as raw LZMA2 at preset 9e, no container (the
    dictionary sized to the example). Continuous data (only
    ``lzma``) are coded as their float32 bytes, so their L(x) measures how regular the bit
    patterns are, not an information content; the score still ranks by it.

    Args:
        x: (N, *event_shape) examples in the model's space.
        info: the data's shape, support and levels.
        compressor: ``png`` or ``lzma``.
    """
    if compressor not in COMPRESSORS:
        raise DataError(f"unknown compressor {compressor!r}; valid compressors: {', '.join(COMPRESSORS)}")
    levels = _levels(info)
    values = x.detach().cpu().double().numpy().reshape(x.shape[0], *info.event_shape)
    if levels is not None:
        ints = np.clip(np.rint(values * (levels - 1)), 0, levels - 1)
        arrays = ints.astype(np.uint8 if levels <= 256 else np.uint16)
    else:
        arrays = values.astype(np.float32)
    if compressor == "png":
        if default_compressor(info) != "png":
            raise DataError(
                f"png compresses 8-bit images of 1 or 3 channels; these data are {info.support} with "
                f"shape {tuple(info.event_shape)} and levels {info.levels}: use the lzma compressor"
            )
        lengths = [_png_bytes(a) for a in arrays]
    else:
        lengths = [_lzma_bytes(np.ascontiguousarray(a).tobytes()) for a in arrays]
    return 8.0 * torch.tensor(lengths, dtype=torch.float64)


def complexity_score(bpd: Score, x: Tensor, info: DataInfo, compressor: str) -> Score:
    """S(x) = bpd_model(x) − L(x)/D in bits/dim (Serrà et al. 2020): the bits the model spends
    beyond what a generic compressor needs; high when the model codes an example worse than its
    simplicity warrants. ``bpd`` is :func:`bits_per_dim_score` of the same examples."""
    if bpd.unit != "bits/dim":
        raise DataError(f"the complexity correction subtracts from bits/dim; found a score in {bpd.unit}")
    complexity = compressed_bits(x, info, compressor) / info.dim
    if complexity.shape != bpd.values.shape:
        raise DataError(f"{len(bpd.values)} model scores for {len(complexity)} examples")
    meaning = f"bits/dim of the model minus {compressor}'s (Serrà et al. 2020); {bpd.meaning}"
    return Score("complexity", bpd.values - complexity, "bits/dim", meaning)


# ----------------------------------------------------------------------------- typicality


@dataclass(frozen=True)
class TypicalityTest:
    """The typicality test of Nalisnick, Matsukawa, Teh & Lakshminarayanan (2019) for batches
    of M examples.

        T(x_1..M) = | −(1/M) Σ_m log p(x_m) − Ĥ |,   reject "in distribution" when T > ε_α,

    Ĥ the mean NLL of training data (an estimate of the model's entropy where it matches the
    data) and ε_α the (1 − α) quantile of T over batches of M drawn with replacement from
    held-out in-distribution data (bootstrap), so that in-distribution batches are rejected with
    probability about α.

    Attributes:
        entropy: Ĥ, nats per example.
        threshold: ε_α, nats per example.
        batch_size: M.
        alpha: the test's level α.
    """

    entropy: float
    threshold: float
    batch_size: int
    alpha: float

    @classmethod
    def fit(
        cls,
        reference_log_p: Tensor,
        batch_size: int,
        *,
        alpha: float = 0.01,
        calibration_log_p: Tensor | None = None,
        bootstraps: int = 1000,
        generator: torch.Generator | None = None,
    ) -> TypicalityTest:
        """Ĥ from ``reference_log_p`` (N,) (log p of training examples) and ε_α by ``bootstraps``
        batches of ``batch_size`` drawn with replacement from ``calibration_log_p`` (held-out
        in-distribution examples; the reference itself when None)."""
        if batch_size < 1:
            raise DataError(f"the typicality test's batch size M must be at least 1; found {batch_size}")
        if not 0 < alpha < 1:
            raise DataError(f"the typicality test's level alpha must be in (0, 1); found {alpha}")
        if bootstraps < 1:
            raise DataError(f"bootstraps must be at least 1; found {bootstraps}")
        reference = reference_log_p.detach().double().cpu().flatten()
        calibration = reference if calibration_log_p is None else calibration_log_p.detach().double().cpu()
        if reference.numel() == 0 or calibration.numel() == 0:
            raise DataError(
                "the typicality test needs log-likelihoods of in-distribution examples; found none"
            )
        entropy = float(-reference.mean())
        draws = torch.randint(0, calibration.numel(), (bootstraps, batch_size), generator=generator)
        statistic = (-calibration.flatten()[draws].mean(1) - entropy).abs()  # (bootstraps,)
        threshold = float(torch.quantile(statistic, 1 - alpha))
        return cls(entropy, threshold, batch_size, float(alpha))

    def statistic(self, log_p: Tensor) -> Tensor:
        """T of consecutive batches of M of ``log_p`` (N,), (⌊N/M⌋,) nats; a remainder of fewer
        than M examples is left out."""
        values = log_p.detach().double().cpu().flatten()
        count = values.numel() // self.batch_size
        if count == 0:
            raise DataError(
                f"the typicality test needs batches of {self.batch_size} examples; found only {values.numel()}"
            )
        batches = values[: count * self.batch_size].reshape(count, self.batch_size)
        return (-batches.mean(1) - self.entropy).abs()

    def rejects(self, log_p: Tensor) -> Tensor:
        """(⌊N/M⌋,) bool: whether each batch of M is declared out of distribution at level α."""
        return self.statistic(log_p) > self.threshold

    def describe(self) -> str:
        return (
            f"|−mean log p over batches of {self.batch_size} − Ĥ|, Ĥ = {self.entropy:.4g} nats, "
            f"ε = {self.threshold:.4g} at α = {self.alpha:g} (Nalisnick et al. 2019)"
        )
