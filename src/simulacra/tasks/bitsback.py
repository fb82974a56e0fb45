"""Bits-back coding with ANS (BB-ANS): lossless compression with a VAE or a hierarchical VAE.

A latent-variable model gives x the probability p(x) = ∫ p(x | z) p(z) dz, which no coder can
evaluate; bits-back coding (Wallace 1990; Hinton & van Camp 1993; Frey & Hinton 1997) reaches the
variational bound instead. On a stack coder (rANS) it is BB-ANS (Townsend, Bird & Barber 2019).
Per example the encoder

    pops  ẑ ~ Q(ẑ | x)    (a latent *decoded* from the bits already on the stack: bits back),
    pushes x under p(x | ẑ),
    pushes ẑ under P(ẑ),

and the stack grows by −log2 p(x | ẑ) − log2 P(ẑ) + log2 Q(ẑ | x) bits, on average the negative
ELBO of the discretized model. The decoder runs the steps backwards (pop ẑ under P, pop x under
p(x | ẑ), push ẑ under Q(ẑ | x)) and so returns the bits it was given to the stack.

**Discretization.** Each latent coordinate is one of K = 2^b buckets of equal mass 1/K under its
prior N(μ_p, σ_p²): in u = (z − μ_p)/σ_p bucket k is [e_k, e_{k+1}) with e_k = Φ⁻¹(k/K), and it
stands for its centre ẑ = μ_p + σ_p Φ⁻¹((k + ½)/K) everywhere ẑ is used (the decoder network,
the conditionals of lower groups). So P(ẑ) = 1/K exactly (b bits a coordinate), and a diagonal
Gaussian posterior N(μ, σ²) gives bucket k the mass Φ((e_{k+1} − m)/s) − Φ((e_k − m)/s) with
m = (μ − μ_p)/σ_p, s = σ/σ_p, quantized to integer weights ≥ 1 of total 2^24
(:func:`~simulacra.tasks.compress.quantize`), so every bucket can be coded. With fine buckets
P(ẑ) ≈ p(ẑ) Δ and Q(ẑ | x) ≈ q(ẑ | x) Δ: the widths cancel and the rate is the ELBO's integrand
at ẑ. For a VAE the prior is N(0, I) and the buckets are the fixed ones of BB-ANS; for a hierarchy
they follow each group's conditional prior p(z_i | ẑ_{>i}), known to the decoder when it pops
z_i (HiLLoC's choice): the fixed N(0, 1) buckets cost 58 nats an image at b = 10 on our 3-group
``hvae`` (BENCHMARKS.md §24b), its lower groups' conditionals being far narrower than N(0, 1). Fewer
buckets is not worse here: each bucket weighs at least 2^−24, so a popped ẑ lands in an
implausible bucket with probability about K·2^−24 per coordinate; b = 10 is the default
(:data:`LATENT_BITS`, measured against 8 and 12). The likelihood p(x | z) must be discrete
(Bernoulli for binary data, categorical or discretized logistic for grey levels), the posterior a
diagonal Gaussian, the prior N(0, I) (a VAE) or the hierarchy's Gaussian conditionals.

**Hierarchies** (``hvae``, ``lvae``) are coded over their groups in top-down order, as HiLLoC
does (Townsend et al. 2020): pop ẑ_L ~ Q(z_L | x), then ẑ_{L−1} ~ Q(z_{L−1} | x, ẑ_L), … (each
conditional computed from the discretized groups above), push x under p(x | ẑ), push ẑ_1 under
P(z_1 | ẑ_{>1}) first and ẑ_L under P(z_L) last, so the decoder pops the groups top-down.
Bit-Swap (Kingma et al. 2019) interleaves pops and pushes group by group to need fewer initial
bits, but it needs a bottom-up Markov inference chain q(z_{i+1} | z_i); our posteriors are
top-down, q(z_i | x, z_{>i}), so it does not apply, and the growing batches below keep the initial
bits small anyway.

**Initial bits.** The first pop needs bits on the stack. The encoder starts from a fixed stack of
pseudo-random words (:func:`seed_words`, which the decoder also makes), and the batches grow
from one example (1, 2, 3, …, by a quarter up to a cap: :func:`schedule`), so that what earlier
examples pushed pays for the pops of the next batch. Seed words the pops never reached lie
unchanged at the bottom of the final stack: the file leaves them out and the decoder puts them
back. The cost is the part of the seed that was used, measured (``details["initial_bits"]``).

**Determinism** as in :mod:`simulacra.tasks.compress`: a float64 copy of the model, one torch
thread, the same batch composition on both sides (the decoder walks the batches in reverse), and
integer tables handed to the coder exactly. The decoder must end with the seed on its stack.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from simulacra.distributions.heads import (
    BernoulliHead,
    CategoricalHead,
    DiscretizedLogisticHead,
    DiscretizedLogisticMixtureHead,
    is_discrete,
)
from simulacra.distributions.lazy import Amortized
from simulacra.distributions.standard import StandardNormal
from simulacra.errors import CapabilityError, ConfigError
from simulacra.models.base import GenerativeModel
from simulacra.models.hierarchical import HierarchicalVAE
from simulacra.models.vae import VAE
from simulacra.tasks.compress import (
    MAX_BATCH,
    PRECISION,
    TABLE_ENTRIES,
    Compressed,
    CompressedFileError,
    coder_table,
    file_header,
    one_coding_thread,
    pack,
    quantize,
    symbols_of,
)

CODER = "bb-ans-constriction"
LATENT_BITS = 10  # 2^10 buckets per latent coordinate (measured against 8 and 12: BENCHMARKS.md §24)
GROWTH = 1.25  # each batch a quarter larger than the last, up to the cap

# group index (0 = z_1, nearest the data), p(z_i | z_>i), q(z_i | x, z_>i) or None -> z_i
Choose = Callable[[int, Normal, Normal | None], Tensor]

__all__ = [
    "CODER",
    "LATENT_BITS",
    "bucket_centres",
    "bucket_edges",
    "bucket_weights",
    "codes",
    "compress",
    "decode",
    "Discretization",
    "level_weights",
    "levels_of",
    "schedule",
    "seed_words",
    "walk",
]


# ----------------------------------------------------------------------------- the buckets


def bucket_edges(bits: int) -> Tensor:
    """e_k = Φ⁻¹(k / K), k = 0, …, K = 2^bits, float64 (K + 1,): the edges of K buckets of equal
    mass 1/K under N(0, 1), e_0 = −∞ and e_K = +∞."""
    k = torch.arange(2**bits + 1, dtype=torch.float64)
    return torch.special.ndtri(k / 2**bits)


def bucket_centres(bits: int) -> Tensor:
    """ẑ_k = Φ⁻¹((k + ½) / K), float64 (K,): the value that stands for bucket k (its median
    under N(0, 1), finite also for the two unbounded buckets)."""
    k = torch.arange(2**bits, dtype=torch.float64)
    return torch.special.ndtri((k + 0.5) / 2**bits)


def bucket_weights(dist: Normal, edges: Tensor) -> np.ndarray:
    """The quantized bucket masses of N(μ, σ²) per coordinate, (m, K) int64, m = dist.loc.numel():

    w_k ≈ 2^24 [Φ((e_{k+1} − μ)/σ) − Φ((e_k − μ)/σ)],  every w_k ≥ 1, Σ_k w_k = 2^24.
    """
    loc, scale = dist.loc.reshape(-1, 1), dist.scale.reshape(-1, 1)
    cdf = torch.special.ndtr((edges - loc) / scale)  # (m, K + 1), 0 and 1 at the infinite edges
    return quantize((cdf[:, 1:] - cdf[:, :-1]).numpy())


def level_weights(likelihood: Distribution, levels: int) -> np.ndarray:
    """The quantized probabilities of the L = ``levels`` grid values l/(L − 1) of every entry,
    (n·D, L) int64, from a factorized discrete likelihood p(x | z) (batch (n,), an
    :class:`Independent` over the data's event): softmax over l of log p(x_d = l/(L − 1) | z)."""
    if not isinstance(likelihood, Independent):
        raise CapabilityError(
            f"bits-back coding needs a factorized likelihood; found {type(likelihood).__name__}"
        )
    base = likelihood.base_dist
    shape = base.batch_shape  # (n, *event)
    log_p = torch.stack(
        [base.log_prob(torch.full(shape, v / (levels - 1), dtype=torch.float64)) for v in range(levels)], -1
    )  # (n, *event, L)
    return quantize(torch.softmax(log_p.reshape(-1, levels), 1).numpy())


# ----------------------------------------------------------------------------- the models


def _normal(dist: Distribution, what: str) -> Normal:
    """The Normal of a diagonal Gaussian (an Independent Normal, or a Normal)."""
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if type(base) is not Normal:
        raise CapabilityError(
            f"bits-back coding needs a diagonal Gaussian {what}; this model's is {type(base).__name__}"
        )
    return base


def _head(model: VAE | HierarchicalVAE) -> nn.Module:
    if isinstance(model, HierarchicalVAE):
        return model.head
    return model.decoder.head if isinstance(model.decoder, Amortized) else model.decoder


def codes(model: GenerativeModel) -> bool:
    """Whether ``model`` is a latent-variable family this module codes (a VAE or a hierarchical
    VAE); :func:`levels_of` says whether the particular model can."""
    return isinstance(model, VAE | HierarchicalVAE)


def levels_of(model: GenerativeModel) -> int:
    """L, the number of values per entry that p(x | z) assigns probabilities to.

    Raises:
        CapabilityError: not a VAE or hierarchical VAE; a continuous likelihood (Gaussian); a
            Bernoulli likelihood on data that are not binary; a conditional VAE; a prior other
            than N(0, I); a posterior other than a diagonal Gaussian (an IAF).
    """
    if not isinstance(model, VAE | HierarchicalVAE):
        raise CapabilityError(
            f"{type(model).__name__} cannot compress: lossless coding is implemented for "
            "autoregressive models (made, nade, pixelcnn, gated-pixelcnn, transformer) and, by "
            "bits-back coding, for VAEs and hierarchical VAEs"
        )
    head = _head(model)
    if not is_discrete(head):
        raise CapabilityError(
            f"this VAE's likelihood ({type(head).__name__}) gives densities, not probabilities; "
            "bits-back coding needs a discrete likelihood (bernoulli for binary data, categorical "
            "or logistic for grey levels)"
        )
    if isinstance(head, BernoulliHead):
        if model.info.support != "binary":
            raise CapabilityError(
                "a Bernoulli likelihood gives probabilities to 0 and 1 only; this model's data are "
                f"{model.info.support} with {model.info.levels} levels (train with likelihood=categorical "
                "or logistic to code them)"
            )
        levels = 2
    elif isinstance(head, CategoricalHead | DiscretizedLogisticHead | DiscretizedLogisticMixtureHead):
        levels = head.levels
    else:
        raise CapabilityError(f"bits-back coding does not know the likelihood {type(head).__name__}")
    if isinstance(model, HierarchicalVAE) and model.top_prior is not None:
        raise CapabilityError(
            f"bits-back coding here needs the top group's prior N(0, I); this hierarchy's is "
            f"{type(model.top_prior).__name__}"
        )
    if isinstance(model, VAE):
        if model.conditional:
            raise CapabilityError(
                "a conditional VAE needs its labels to code; compress codes unconditional models"
            )
        if not isinstance(model.prior_module, StandardNormal):
            raise CapabilityError(
                f"bits-back coding here needs the prior N(0, I); this VAE's is "
                f"{type(model.prior_module).__name__} (a VampPrior, flow or diffusion prior is not supported)"
            )
        like = next(model.parameters())
        with torch.no_grad():
            probe = torch.zeros(1, *model.info.event_shape, dtype=like.dtype, device=like.device)
            _normal(model.encode(probe), "posterior q(z | x)")
    return levels


def _latent_dim(model: VAE | HierarchicalVAE) -> int:
    if isinstance(model, HierarchicalVAE):
        return model.latent_dim
    return math.prod(model.prior_module.event_shape)  # a StandardNormal (levels_of)


def walk(model: VAE | HierarchicalVAE, n: int, x: Tensor | None, choose: Choose) -> Distribution:
    """The model's top-down pass with every latent group chosen by ``choose`` (top group first),
    given the posteriors when x (n, *event) is given; returns p(x | ẑ)."""
    if isinstance(model, HierarchicalVAE):
        return model.top_down(n, None if x is None else model.bottom_up(x), choose)
    q = None if x is None else _normal(model.encode(x), "posterior q(z | x)")
    z = choose(0, _normal(model.prior(None, n), "prior"), q)
    return model.decode(z)


# ----------------------------------------------------------------------------- the stack


def seed_words(count: int) -> np.ndarray:
    """``count`` pseudo-random uint32 words (SHAKE-256 of a fixed string; the last one nonzero):
    the stack the encoder starts from and the decoder must end with."""
    words = np.frombuffer(hashlib.shake_256(b"simulacra bits-back seed").digest(4 * count), dtype="<u4")
    words = words.astype(np.uint32)
    words[-1] |= 1
    return words


def schedule(n: int, cap: int) -> list[tuple[int, int]]:
    """The batches (start, stop) of n examples: sizes 1, 2, 3, …, s_{k+1} = max(s_k + 1, ⌊1.25 s_k⌋),
    at most ``cap``: a small first pop, then batches that the bits already pushed pay for."""
    batches, start, size = [], 0, 1
    while start < n:
        stop = min(n, start + size)
        batches.append((start, stop))
        start, size = stop, min(cap, max(size + 1, int(size * GROWTH)))
    return batches


def _information(symbols: np.ndarray, weights: np.ndarray) -> float:
    """Σ −log2 (w[s] / 2^24) bits of the symbols under their quantized tables."""
    return float(np.sum(PRECISION - np.log2(weights[np.arange(len(symbols)), symbols])))


@dataclass
class _Stack:
    """The rANS stack, and the information of what was pushed and popped, by kind (bits)."""

    coder: Any
    family: Any
    bits: dict[str, float] = field(default_factory=dict)

    @classmethod
    def on(cls, words: np.ndarray) -> _Stack:
        import constriction

        return cls(
            constriction.stream.stack.AnsCoder(words), constriction.stream.model.Categorical(perfect=False)
        )

    def push(self, symbols: np.ndarray, weights: np.ndarray, kind: str) -> None:
        self.coder.encode_reverse(symbols.astype(np.int32).reshape(-1), self.family, coder_table(weights))
        self.bits[kind] = self.bits.get(kind, 0.0) + _information(symbols.reshape(-1), weights)

    def pop(self, weights: np.ndarray, kind: str) -> np.ndarray:
        try:
            symbols = np.asarray(self.coder.decode(self.family, coder_table(weights)), dtype=np.int64)
        except (ValueError, RuntimeError, AssertionError):  # words that no encoder wrote
            raise CompressedFileError("the file is corrupted: its code cannot be decoded") from None
        self.bits[kind] = self.bits.get(kind, 0.0) + _information(symbols, weights)
        return symbols


@dataclass
class Discretization:
    """The latents as both sides code them: a float64 copy of the model, K = 2^b buckets of equal
    prior mass per coordinate (edges e_k and centres in the prior's standardized coordinate), and
    the data's grid of ``levels`` values. Build it with :meth:`of`."""

    model: VAE | HierarchicalVAE
    levels: int
    edges: Tensor
    centres: Tensor

    @classmethod
    def of(cls, model: VAE | HierarchicalVAE, levels: int, bits: int) -> Discretization:
        coder_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
        return cls(coder_model, levels, bucket_edges(bits), bucket_centres(bits))

    def values(self, symbols: np.ndarray) -> Tensor:
        """x (n, *event) float64 on the grid l/(L − 1) for symbols (n, D)."""
        x = torch.from_numpy(symbols.astype(np.float64)) / (self.levels - 1)
        return x.reshape(len(symbols), *self.model.info.event_shape)

    def latent(self, k: np.ndarray, prior: Normal) -> Tensor:
        """ẑ = μ_p + σ_p ẑ_k, the value of bucket k of each coordinate under its prior N(μ_p, σ_p²),
        shaped as the prior's batch."""
        return prior.loc + prior.scale * self.centres[torch.from_numpy(k)].reshape(prior.loc.shape)

    def posterior_weights(self, q: Normal, prior: Normal) -> np.ndarray:
        """Q(bucket k | x) for every coordinate, (m, K): the buckets of the prior N(μ_p, σ_p²)
        are those of N(0, 1) in u = (z − μ_p)/σ_p, where q is N((μ_q − μ_p)/σ_p, (σ_q/σ_p)²)."""
        return bucket_weights(Normal((q.loc - prior.loc) / prior.scale, q.scale / prior.scale), self.edges)

    def prior_weights(self, prior: Normal) -> np.ndarray:
        """P(bucket k) = 1/K for every coordinate, (m, K): 2^(24 − b) each, exactly."""
        m, buckets = prior.loc.numel(), len(self.centres)
        return np.full((m, buckets), 2**PRECISION // buckets, dtype=np.int64)


def _encode_batch(setup: Discretization, stack: _Stack, symbols: np.ndarray) -> None:
    """Pop ẑ ~ Q(z | x) group by group (top first), push x under p(x | ẑ), push ẑ under P (the
    bottom group first, so the top one is popped first when decoding)."""
    pushes: list[tuple[np.ndarray, np.ndarray]] = []

    def choose(i: int, p: Normal, q: Normal | None) -> Tensor:
        assert q is not None  # x is given
        k = stack.pop(setup.posterior_weights(q, p), "bits_back")
        pushes.append((k, setup.prior_weights(p)))
        return setup.latent(k, p)

    likelihood = walk(setup.model, len(symbols), setup.values(symbols), choose)
    stack.push(symbols, level_weights(likelihood, setup.levels), "bits_x")
    for k, weights in reversed(pushes):
        stack.push(k, weights, "bits_latent")


def _decode_batch(setup: Discretization, stack: _Stack, n: int, dim: int) -> np.ndarray:
    """The inverse of :func:`_encode_batch`: pop ẑ under P top-down, pop x under p(x | ẑ), push ẑ
    back under Q(z | x) (the bottom group first). Returns the symbols (n, D)."""
    popped: list[np.ndarray] = []

    def from_prior(i: int, p: Normal, q: Normal | None) -> Tensor:
        popped.append(stack.pop(setup.prior_weights(p), "bits_latent"))
        return setup.latent(popped[-1], p)

    likelihood = walk(setup.model, n, None, from_prior)
    symbols = stack.pop(level_weights(likelihood, setup.levels), "bits_x").reshape(n, dim)
    chosen = iter(popped)
    posteriors: list[tuple[np.ndarray, np.ndarray]] = []

    def again(i: int, p: Normal, q: Normal | None) -> Tensor:
        assert q is not None  # x is given
        k = next(chosen)
        posteriors.append((k, setup.posterior_weights(q, p)))
        return setup.latent(k, p)

    walk(setup.model, n, setup.values(symbols), again)
    for k, weights in reversed(posteriors):
        stack.push(k, weights, "bits_back")
    return symbols


# ----------------------------------------------------------------------------- the file


def _default_batch(model: VAE | HierarchicalVAE, levels: int, bits: int) -> int:
    """The largest batch whose tables stay under 2^23 numbers (at most 1000)."""
    per_example = _latent_dim(model) * (2**bits + 1) + model.info.dim * levels
    return max(1, min(MAX_BATCH, TABLE_ENTRIES // per_example))


def _seed_count(model: VAE | HierarchicalVAE, cap: int) -> int:
    """Words enough for any batch's pops (each latent coordinate takes at most 24 bits)."""
    return math.ceil(PRECISION * _latent_dim(model) * cap / 32) + 2


def compress(
    model: GenerativeModel,
    x: np.ndarray,
    *,
    batch_size: int | None = None,
    channels_last: bool = False,
    latent_bits: int | None = None,
) -> Compressed:
    """Code x (N, *shape) losslessly by bits-back coding with a VAE or hierarchical VAE (BB-ANS;
    see the module docstring); the file's length approaches the negative ELBO, Σ_n
    −log2 p(x_n | ẑ_n) − log2 P(ẑ_n) + log2 Q(ẑ_n | x_n) bits, plus the initial bits and a header.

    Args:
        model: an unconditional :class:`VAE` (prior N(0, I), diagonal Gaussian posterior) or
            :class:`HierarchicalVAE`, with a discrete likelihood.
        x: N examples on the likelihood's grid (see :func:`~simulacra.tasks.compress.symbols_of`).
        batch_size: the largest batch (default: tables under 2^23 numbers); batches grow to it
            from 1 (:func:`schedule`).
        channels_last: x is images (N, H, W, C), coded as (N, C, H, W) and restored as given.
        latent_bits: b, 2^b buckets per latent coordinate (default :data:`LATENT_BITS`).

    Returns:
        a :class:`~simulacra.tasks.compress.Compressed` whose ``ideal_bits`` is the net information
        pushed (x and latents minus the bits popped back) and whose ``details`` split it:
        ``bits_x``, ``bits_latent``, ``bits_back``, and ``initial_bits`` (seed bits the pops
        used, paid in the file), ``header_bits``.
    """
    levels = levels_of(model)
    assert isinstance(model, VAE | HierarchicalVAE)  # levels_of refuses the others
    bits = LATENT_BITS if latent_bits is None else int(latent_bits)
    if not 1 <= bits <= 20:
        raise ConfigError(
            f"latent_bits must be in 1..20 (2^b buckets per latent coordinate); found {latent_bits}"
        )
    x = np.asarray(x)
    symbols = symbols_of(x, levels, model.info, channels_last)
    cap = _default_batch(model, levels, bits) if batch_size is None else int(batch_size)
    if cap < 1:
        raise ConfigError(f"batch_size must be at least 1; found {batch_size}")
    cap = min(cap, len(symbols))  # the seed holds enough words for the largest batch's pops
    seed = seed_words(_seed_count(model, cap))
    stack = _Stack.on(seed.copy())
    with one_coding_thread(), torch.no_grad():
        setup = Discretization.of(model, levels, bits)
        for start, stop in schedule(len(symbols), cap):
            _encode_batch(setup, stack, symbols[start:stop])
    final = np.asarray(stack.coder.get_compressed(), dtype=np.uint32)
    same = final[: len(seed)] == seed[: len(final)]
    kept = int(np.argmin(same)) if not same.all() else len(same)  # seed words never reached
    words = final[kept:]
    header = file_header(
        model,
        x,
        CODER,
        channels_last,
        len(words),
        model=type(model).__name__,
        levels=levels,
        latent_bits=bits,
        latent_dim=_latent_dim(model),
        batch_size=cap,
        seed_words=len(seed),
        seed_kept=kept,
    )
    data = pack(header, words)
    details = dict(stack.bits)
    details["initial_bits"] = 32.0 * (len(seed) - kept)
    details["header_bits"] = 8.0 * len(data) - 32.0 * len(words)
    ideal = details.get("bits_x", 0.0) + details.get("bits_latent", 0.0) - details.get("bits_back", 0.0)
    return Compressed(data, header, 32 * len(words), ideal, len(symbols) * model.info.dim, details)


def decode(model: GenerativeModel, header: dict[str, Any], words: np.ndarray) -> tuple[np.ndarray, bool]:
    """The symbols (N, D) of a file :func:`compress` wrote (its header and words, as
    :func:`~simulacra.tasks.compress.read_header` returns them), and whether the decoder's stack
    came back to the seed the encoder started from."""
    levels = levels_of(model)
    assert isinstance(model, VAE | HierarchicalVAE)
    try:
        bits, cap, n = int(header["latent_bits"]), int(header["batch_size"]), int(header["examples"])
        count, kept = int(header["seed_words"]), int(header["seed_kept"])
        fits = int(header["levels"]) == levels and int(header["latent_dim"]) == _latent_dim(model)
    except (KeyError, TypeError, ValueError):
        raise CompressedFileError("the file's header is corrupted") from None
    if not fits or not 1 <= bits <= 20 or not 0 <= kept <= count or count > 2**26:
        raise CompressedFileError("the file's header does not fit this model")
    seed = seed_words(count)
    stack = _Stack.on(np.concatenate([seed[:kept], words]))
    parts: list[np.ndarray] = []
    with one_coding_thread(), torch.no_grad():
        setup = Discretization.of(model, levels, bits)
        for start, stop in reversed(schedule(n, cap)):
            parts.append(_decode_batch(setup, stack, stop - start, model.info.dim))
    back = np.asarray(stack.coder.get_compressed(), dtype=np.uint32)
    return np.concatenate(parts[::-1]), bool(np.array_equal(back, seed))
