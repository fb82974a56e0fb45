"""Held-out log-likelihoods: exact, bounds and importance-sampled estimates, with standard errors.

Every estimate is reported in nats per example and in bits per dimension, with the estimator
named (``exact``, ``ELBO``, ``IWAE k=…``) and the standard error of the mean over examples.

The importance-sampled estimate (Burda, Grosse & Salakhutdinov 2016, "Importance weighted
autoencoders"; Rezende, Mohamed & Wierstra 2014, appendix E) is

    log p̂(x) = log (1/k) Σ_{i=1}^{k} exp w_i,    w_i = log p(x, z_i) − log q(z_i | x),  z_i ~ q(z | x),

a lower bound on log p(x) in expectation that tightens monotonically in k and converges to
log p(x) as k → ∞.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.data.info import LN2, DataInfo
from simulacra.errors import CapabilityError, DataError
from simulacra.models.base import (
    ExactLikelihood,
    GenerativeModel,
    ImportanceWeighted,
    LikelihoodBound,
    LikelihoodReport,
)
from simulacra.progress import progress as show_progress


@dataclass
class Estimate:
    """A scalar estimate with its standard error.

    Attributes:
        value: the mean over examples (e.g. NLL in nats per example, or bits/dim).
        stderr: standard error of that mean, std(per-example values) / sqrt(n).
        estimator: how the per-example values were obtained: ``"exact"``, ``"ELBO"``, ``"IWAE k=5000"``.
        unit: ``"nats"`` or ``"bits/dim"``.
        n: number of examples averaged.
    """

    value: float
    stderr: float
    estimator: str
    unit: str
    n: int

    def __str__(self) -> str:
        return f"{self.value:.2f} ± {self.stderr:.2f} {self.unit} ({self.estimator}, n={self.n})"

    @classmethod
    def pooled(cls, parts: Sequence[Estimate]) -> Estimate:
        """The estimate over the union of the examples of ``parts`` (disjoint sets, one estimator):
        mean Σ n_i m_i / N, and the standard error of the pooled per-example values, exactly as
        :meth:`from_values` would give on them all (sum of squares within and between parts)."""
        if not parts:
            raise DataError("cannot pool 0 estimates")
        n = sum(p.n for p in parts)
        mean = sum(p.n * p.value for p in parts) / n
        within = sum((p.n - 1) * p.stderr**2 * p.n for p in parts if p.n > 1)
        between = sum(p.n * (p.value - mean) ** 2 for p in parts)
        stderr = math.sqrt((within + between) / (n - 1) / n) if n > 1 else float("nan")
        first = parts[0]
        return cls(mean, stderr, first.estimator, first.unit, n)

    @classmethod
    def from_values(cls, values: Tensor, estimator: str, unit: str) -> Estimate:
        """Mean and standard error std/√n (Bessel-corrected std) of per-example ``values`` (N,)."""
        values = values.detach().double().flatten()
        n = values.numel()
        if n == 0:
            raise DataError("cannot estimate a mean from 0 examples")
        stderr = values.std(correction=1).item() / math.sqrt(n) if n > 1 else float("nan")
        return cls(values.mean().item(), stderr, estimator, unit, n)


# --------------------------------------------------------------------------- bits per dimension


def dequantization_offset(info: DataInfo, *, discrete_likelihood: bool = False) -> float:
    """Nats per example to add to a continuous NLL so it measures the discrete data, D·ln(L − 1).

    The project stores discrete data with ``L = info.levels`` values per dimension scaled to
    [0, 1] as x = k / (L − 1), k ∈ {0, …, L − 1} (bins of width 1/(L − 1)). A continuous density p
    on the scaled data, evaluated on uniformly dequantized x = (k + u)/(L − 1), u ~ U[0, 1)^D, is a
    density p_y(y) = p(y / (L − 1)) · (L − 1)^{−D} on the integer scale y = k + u, whose bins have
    unit width, so by Jensen (Theis, van den Oord & Bethge 2016, "A note on the evaluation of
    generative models")

        log P(k) = log ∫_{[0,1)^D} p_y(k + u) du ≥ E_u[log p(x)] − D · ln(L − 1).

    Hence NLL_discrete ≤ NLL_continuous + D · ln(L − 1): the offset is D · ln(L − 1) nats, and the
    bits/dim of the sum is an upper bound on the discrete model's bits/dim (the number reported
    for 8-bit images, L = 256). Without dequantization noise at evaluation the sum is not a bound,
    only the conventional figure.

    No offset applies when the likelihood is already discrete (Bernoulli, categorical,
    discretized logistic: ``discrete_likelihood=True``), for ``"binary"`` data (only modelled by
    Bernoulli likelihoods here), for ``"real"`` data or when ``levels`` is unknown.

    Args:
        info: the data's shape, support and number of levels.
        discrete_likelihood: True when the model assigns probabilities, not densities.

    Returns:
        the offset in nats per example (0.0 where none applies).
    """
    if discrete_likelihood or info.support != "unit" or info.levels is None or info.levels < 2:
        return 0.0
    return info.dim * math.log(info.levels - 1)


def bits_per_dim(nll_nats: float | Tensor, info: DataInfo, *, offset: float = 0.0) -> float | Tensor:
    """Bits per dimension of a negative log-likelihood, (NLL + offset) / (D · ln 2).

    Args:
        nll_nats: NLL in nats per example; a float or a tensor of any shape (elementwise).
        info: gives D = ``info.dim``, the number of scalar dimensions of one example.
        offset: nats per example to add first, e.g. :func:`dequantization_offset` for a
            continuous density on discrete data.

    Returns:
        bits/dim, of the same type (and shape) as ``nll_nats``.
    """
    return (nll_nats + offset) / (info.dim * LN2)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def evaluation_mode(model: object) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode (dropout off, batch-norm running statistics) for the
    duration of the block, restoring each submodule's ``training`` flag afterwards."""
    modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
    flags = [m.training for m in modules]
    if modules:
        model.eval()
    try:
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.training = flag


@contextlib.contextmanager
def seeded(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Run the block on the global RNG of ``device`` re-seeded from ``generator``, then restore it.

    Capabilities such as ``log_importance_weights`` take no generator, so reproducibility comes
    from forking the global RNG (CPU, and the CUDA device when ``device`` is one) and seeding it
    with a number drawn from ``generator``. With ``generator=None`` the global RNG is used as is.
    """
    if generator is None:
        yield
        return
    seed = draw_seed(generator)
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def draw_seed(generator: torch.Generator) -> int:
    """A 62-bit seed drawn from ``generator`` (on whichever device it lives)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def model_device(model: object, x: Tensor) -> torch.device:
    """The device of a :class:`GenerativeModel`, else the data's device (for stand-ins that
    implement a capability without being a module with a device)."""
    return model.device if isinstance(model, GenerativeModel) else x.device


def _slice_c(c: Tensor | None, start: int, stop: int, device: torch.device) -> Tensor | None:
    return None if c is None else c[start:stop].to(device, non_blocking=True)


def _check_inputs(x: Tensor, c: Tensor | None) -> None:
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"expected a batch x of shape (N, *event_shape) with N ≥ 1, got {tuple(x.shape)}")
    if c is not None and c.shape[0] != x.shape[0]:
        raise DataError(f"x has {x.shape[0]} examples but c has {c.shape[0]}")


def default_batch_size(num_examples: int, dim: int) -> int:
    """Examples per call of a likelihood over ``num_examples`` examples of dimension ``dim``: at
    most 2²¹ numbers per call, and at least ten calls, so that progress can be seen (and the first
    call timed to foresee the rest)."""
    return max(1, min(num_examples, 2**21 // max(1, dim), math.ceil(num_examples / 10)))


def chunk_sizes(
    num_examples: int, dim: int, num_samples: int, max_elements: int, batch_size: int | None = None
) -> tuple[int, int]:
    """Examples per call B and samples per call K with K · B · D ≤ ``max_elements``.

    Whole sample sets are preferred (K = k, as many examples as fit), since each call encodes
    its B examples once; only when one example's k samples exceed the budget is k split.
    An explicit ``batch_size`` fixes B and K takes what is left of the budget (at least 1).
    """
    per_sample = max(1, dim)
    if batch_size is not None:
        b = max(1, min(batch_size, num_examples))
        return b, max(1, min(num_samples, max_elements // (b * per_sample)))
    b = max_elements // (num_samples * per_sample)
    if b >= 1:
        return min(b, num_examples), num_samples
    return 1, max(1, min(num_samples, max_elements // per_sample))


# --------------------------------------------------------------------------- estimators


def importance_sampled_log_likelihood(
    model: ImportanceWeighted,
    x: Tensor,
    c: Tensor | None = None,
    *,
    num_samples: int = 5000,
    batch_size: int | None = None,
    max_elements: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """Importance-sampled estimate of log p(x) for each example (Burda et al. 2016).

        log p̂(x) = logsumexp_{i=1..k} w_i − log k,    w_i = log p(x, z_i) − log q(z_i | x)

    The k weights of B examples are drawn by ``model.log_importance_weights`` in calls of K
    samples, with K · B · D ≤ ``max_elements`` (D = dimension of one example), so that k = 5000
    fits in memory; per-chunk results combine by a running log-add-exp, which is exact:
    logsumexp over all weights = logaddexp over chunks of the chunk logsumexps. Runs under
    ``torch.inference_mode`` and in eval mode, without host synchronisation between chunks.

    Args:
        model: exposes ``log_importance_weights(x, c, num_samples) -> (num_samples, B)``.
        x: (N, *event_shape) data; moved batch by batch to the model's device.
        c: (N, ...) context (labels) or None.
        num_samples: k, the number of importance samples per example.
        batch_size: examples per call; chosen from ``max_elements`` when None.
        max_elements: memory budget, in elements of a (K, B, D) tensor; when None, 2²⁶ on
            an accelerator (large calls amortise kernel launches) and 2²⁰ on CPU, where calls
            whose tensors stay in cache are fastest (an MNIST VAE, k = 500: 2²⁰ is 1.7× faster
            than 2²¹ and 2²⁶, and 1.3× faster than 2¹⁸, which splits k).
        generator: seeds the global RNG (forked, restored afterwards) for reproducibility.
        progress: show a progress bar over examples.

    Returns:
        (N,) float64 estimates of log p(x) in nats, on the model's device.
    """
    _check_inputs(x, c)
    if num_samples < 1:
        raise DataError(f"num_samples must be at least 1, got {num_samples}")
    n, dim = x.shape[0], x[0].numel()
    device = model_device(model, x)
    if max_elements is None:
        max_elements = 2**20 if device.type == "cpu" else 2**26
    b, k_chunk = chunk_sizes(n, dim, num_samples, max_elements, batch_size)
    log_k = math.log(num_samples)
    out = []
    with show_progress(n, f"log p(x), IWAE k={num_samples}", progress) as bar:
        with torch.inference_mode(), evaluation_mode(model), seeded(generator, device):
            for start in range(0, n, b):
                xb = x[start : start + b].to(device, non_blocking=True)
                cb = _slice_c(c, start, start + b, device)
                acc: Tensor | None = None
                for k_start in range(0, num_samples, k_chunk):
                    k = min(k_chunk, num_samples - k_start)
                    w = model.log_importance_weights(xb, cb, num_samples=k)  # (k, B)
                    lse = torch.logsumexp(w.double(), dim=0)  # (B,)
                    acc = lse if acc is None else torch.logaddexp(acc, lse)
                out.append(acc - log_k)
                bar.advance(xb.shape[0])
    return torch.cat(out)


def _batched(
    fn: Callable[[Tensor, Tensor | None], Tensor],
    model: object,
    x: Tensor,
    c: Tensor | None,
    batch_size: int,
    generator: torch.Generator | None,
    progress: bool = False,
    description: str = "",
) -> Tensor:
    """Concatenate ``fn(x_batch, c_batch) -> (B,)`` over batches, no grad, eval mode, seeded."""
    device = model_device(model, x)
    out = []
    with show_progress(x.shape[0], description, progress) as bar:
        with torch.inference_mode(), evaluation_mode(model), seeded(generator, device):
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size].to(device, non_blocking=True)
                out.append(fn(xb, _slice_c(c, start, start + batch_size, device)).double())
                bar.advance(xb.shape[0])
    return torch.cat(out)


def _bound_of(model: LikelihoodBound) -> Callable[[Tensor, Tensor | None], Tensor]:
    """x, c -> the model's one-sample bound log_prob_bound(x, c, num_samples=1), (B,)."""
    return lambda xb, cb: model.log_prob_bound(xb, cb, num_samples=1)


def evaluate_nll(
    model: LikelihoodReport,
    x: Tensor,
    c: Tensor | None = None,
    *,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
    progress: bool = False,
    batch_size: int | None = None,
    info: DataInfo | None = None,
    discrete_likelihood: bool | None = None,
) -> dict[str, Estimate]:
    """Held-out negative log-likelihood with the best estimator the model affords.

    * ``ExactLikelihood`` (flows, autoregressive): ``"nll"`` = −log p(x), estimator ``exact``.
    * ``ImportanceWeighted`` (VAE family): ``"nll"`` = −log p̂(x) with k = ``num_samples``
      importance samples (estimator ``IWAE k=…``, see :func:`importance_sampled_log_likelihood`)
      and ``"elbo_nll"`` = −ELBO from one sample per example (``log_prob_bound(num_samples=1)``,
      or the single importance weight, whose expectation is the ELBO).
    * ``LikelihoodBound``: ``"bound_nll"`` = −bound (one sample per example), alone or beside
      the exact value (diffusion: the PF-ODE log-likelihood and the variational bound).
    * anything else raises :class:`CapabilityError`.

    The estimators are named by the model's declarations (:class:`LikelihoodReport`:
    ``likelihood_estimator``, ``bound_name``), which every :class:`GenerativeModel` makes.

    Each ``*_nll`` (nats per example) comes with a ``*_bpd`` (bits/dim, including
    :func:`dequantization_offset` when a continuous density models discrete data). Standard
    errors are std(per-example values)/√N.

    Args:
        model: the model, on its device, with one of the capabilities above.
        x: (N, *event_shape) held-out data.
        c: (N, ...) context or None.
        num_samples: k for the importance-sampled estimate.
        generator: makes stochastic estimates reproducible.
        progress: show progress bars.
        batch_size: examples per call (chosen automatically when None).
        info: the data's :class:`DataInfo`; defaults to ``model.info``.
        discrete_likelihood: whether the model assigns probabilities (Bernoulli, categorical,
            discretized logistic) rather than densities; defaults to ``model.discrete_likelihood``.

    Returns:
        ``{name: Estimate}`` in nats (``*_nll``) and bits/dim (``*_bpd``).
    """
    _check_inputs(x, c)
    info = info or model.info
    if discrete_likelihood is None:
        discrete_likelihood = model.discrete_likelihood
    offset = dequantization_offset(info, discrete_likelihood=bool(discrete_likelihood))
    dim = x[0].numel()
    default_batch = default_batch_size(x.shape[0], dim)
    results: dict[str, Estimate] = {}

    # bits/dim mean something for discrete data and images; a real-valued table gets nats per
    # dimension, and (standardized) its NLL in the original units too
    in_bits = info.support != "real" or info.is_image or info.levels is not None

    # incomplete examples (NaN where missing; MIWAE): log p(x_obs) is spread over the observed
    # entries of each example, not over all D
    missing = bool(torch.isnan(x).any())
    observed = torch.isfinite(x.detach()).flatten(1).sum(1).clamp(min=1).double().cpu() if missing else None

    def add(prefix: str, log_p: Tensor, estimator: str) -> None:
        nll = -log_p.detach().double().cpu()

        def name(unit: str) -> str:
            return f"{prefix}_{unit}" if prefix else unit

        results[name("nll")] = Estimate.from_values(nll, estimator, "nats")
        note = estimator if observed is None else f"{estimator}; per observed entry"
        if in_bits:
            if observed is None:
                bpd = bits_per_dim(nll, info, offset=offset)
            else:
                bpd = (nll + offset * observed / info.dim) / (observed * LN2)
            results[name("bpd")] = Estimate.from_values(bpd, note, "bits/dim")
        else:
            dims = info.dim if observed is None else observed
            results[name("nll_per_dim")] = Estimate.from_values(nll / dims, note, "nats/dim")
        if info.standardization is not None:
            note = f"{estimator}; original units: standardized NLL + Σ log s = + {info.log_scale:.4g} nats"
            results[name("nll_original")] = Estimate.from_values(nll + info.log_scale, note, "nats")

    if isinstance(model, ExactLikelihood):
        batch = batch_size or default_batch
        log_p = _batched(model.log_prob, model, x, c, batch, generator, progress, "log p(x)")
        add("", log_p, model.likelihood_estimator)
        if isinstance(model, LikelihoodBound):  # e.g. diffusion: the PF-ODE value and the VLB
            bound = _batched(_bound_of(model), model, x, c, batch, generator, progress, model.bound_name)
            add("bound", bound, model.bound_name)
    elif isinstance(model, ImportanceWeighted):
        # a second stream for the ELBO, so that it does not depend on how k is chunked
        seeds = None if generator is None else torch.Generator().manual_seed(draw_seed(generator))
        log_p = importance_sampled_log_likelihood(
            model,
            x,
            c,
            num_samples=num_samples,
            batch_size=batch_size,
            generator=generator,
            progress=progress,
        )
        add("", log_p, f"IWAE k={num_samples}")
        if isinstance(model, LikelihoodBound):

            def elbo(xb: Tensor, cb: Tensor | None) -> Tensor:
                return model.log_prob_bound(xb, cb, num_samples=1)
        else:

            def elbo(xb: Tensor, cb: Tensor | None) -> Tensor:
                return model.log_importance_weights(xb, cb, num_samples=1)[0]

        add("elbo", _batched(elbo, model, x, c, batch_size or default_batch, seeds, progress, "ELBO"), "ELBO")
    elif isinstance(model, LikelihoodBound):
        bound = _batched(
            _bound_of(model), model, x, c, batch_size or default_batch, generator, progress, model.bound_name
        )
        add("bound", bound, model.bound_name)
    else:
        raise CapabilityError(f"{model.preset_name} has no likelihood; use --metric mmd")
    return results
