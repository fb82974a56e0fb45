"""Lossless compression with an autoregressive model: entropy coding by asymmetric numeral systems.

A model with a discrete likelihood is a code: by the chain rule,

    −log2 p(x) = Σ_{t=1}^{D} −log2 p(x_{o(t)} | x_{o(<t)})   bits,

and an entropy coder turns every conditional into a code whose length approaches this sum (Shannon
1948). Here the coder is rANS (Duda 2009) from the ``constriction`` package (Bamler 2022), a
stack: the last symbol pushed is the first popped, so the encoder pushes the positions in
reverse and the decoder pops them forward, recomputing each conditional from the prefix it has
already decoded (:meth:`Autoregressive.conditionals_in_order`, the loop sampling uses).
A VAE or hierarchical VAE is coded by bits-back coding instead, on the same stack, tables and file
format (:mod:`simulacra.tasks.bitsback`; :func:`compress` and :func:`decompress` dispatch to it).

**Determinism.** Decoding works only if the decoder's probability tables are bit-for-bit the
encoder's. Both sides therefore

* run the same arithmetic: a float64 copy of the model, the same walk (the incremental step of
  NADE or a Transformer, or one pass on the partial x otherwise) over the same batches, with
  positions not yet known set to 0 on both sides;
* at one torch intra-op thread, whatever the caller's setting (restored afterwards), so a
  reduction is never split differently;
* quantize each conditional to integer weights w_l ≥ 1 with Σ_l w_l = 2^24
  (:func:`quantize`), and hand the coder these integers exactly (:func:`coder_table`).

So the file decodes exactly in another process and at another thread count on the same build
of torch. The header also carries the sha256 of the data: a decoding that went wrong anyway
(another torch or CPU whose kernels round differently) is refused with an error, never returned.

**The file**: :data:`MAGIC` (8 bytes), a little-endian u32 length and a JSON header of that
length, the rANS words (little-endian u32), and the sha256 of all the bytes before it (32
bytes; a truncated or corrupted file is refused before any decoding). The header holds the
format version, the coder, the model's checksum (:func:`model_checksum`) so a file is refused by
another model, the array's dtype and shape, the number of examples, the coding settings
(precision, levels, batch size, mask; bits-back coding adds its own), the number of words and the
sha256 of the data (:func:`file_header`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from simulacra.data.info import DataInfo
from simulacra.errors import CapabilityError, DataError
from simulacra.models.autoregressive import Autoregressive, MaskEnsemble
from simulacra.models.base import GenerativeModel

MAGIC = b"\x89SIMANS\n"  # 8 bytes: a high byte (not text), the name, a newline (caught by text mode)
FORMAT_VERSION = 1
PRECISION = 24  # bits of the fixed-point probabilities (constriction's default categorical)
TABLE_ENTRIES = 2**23  # float64 entries of the tables one batch keeps: positions × rows × levels
MAX_BATCH = 1000
DIGEST = 32  # the sha256 of everything before it ends the file

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "PRECISION",
    "Compressed",
    "coder_table",
    "compress",
    "decompress",
    "file_header",
    "model_checksum",
    "one_coding_thread",
    "pack",
    "quantize",
    "read_header",
    "symbols_of",
]


class CompressedFileError(DataError):
    """A compressed file that cannot be decoded: truncated, corrupted, or meant for another model."""


@dataclass(frozen=True)
class Compressed:
    """A compressed file and what it cost.

    Attributes:
        data: the whole file (header and words), bytes.
        header: the header's fields.
        payload_bits: 32 × the number of rANS words, bits.
        ideal_bits: Σ −log2 of the quantized probability of every coded symbol, bits: the length
            an ideal entropy coder would reach with the same tables.
        dims: the number of coded entries, N × D.
        details: what a coder reports besides, bits (bits-back coding: the bits pushed for x
            and for the latents, the bits popped back, the initial bits; see
            :func:`simulacra.tasks.bitsback.compress`).
    """

    data: bytes
    header: dict[str, Any]
    payload_bits: int
    ideal_bits: float
    dims: int
    details: dict[str, float] = field(default_factory=dict)

    @property
    def file_bits_per_dim(self) -> float:
        """The whole file's length in bits per coded entry (bits/dim), header included."""
        return 8 * len(self.data) / self.dims


# ----------------------------------------------------------------------------- checksums


def model_checksum(model: torch.nn.Module) -> str:
    """sha256 (hex) of the model's state: every entry of ``state_dict`` in name order, its name,
    dtype, shape and bytes. Two models give the same checksum exactly when they hold the same
    weights and buffers (the same run, the same ``--weights``)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(
            tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes()
        )
    return digest.hexdigest()


def _array_checksum(x: np.ndarray) -> str:
    """sha256 (hex) of an array's dtype, shape and bytes (C order)."""
    digest = hashlib.sha256(f"{x.dtype.str}|{tuple(x.shape)}|".encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- quantization


def quantize(probabilities: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Integer weights w (n, L), every w ≥ 1 and Σ_l w_l = 2^precision, approximating p (n, L).

        w_l = 1 + ⌊p_l (2^precision − L)⌋,  the remainder (< L) added to the likeliest value

    (p renormalized first; ties go to the lowest index). Elementwise float64 arithmetic: the
    same p give the same w on any machine. A value whose probability is below 2^−precision
    costs at most ``precision`` bits; a likely one loses at most about L·2^−precision nats.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(f"expected probabilities of shape (n, L) with L >= 2; found {p.shape}")
    levels = p.shape[1]
    if levels >= 2**precision:
        raise DataError(f"{levels} values do not fit {precision}-bit probabilities")
    if not np.isfinite(p).all() or (p < 0).any():
        raise DataError("probabilities must be finite and nonnegative")
    total = p.sum(1, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / levels)
    free = 2**precision - levels
    weights = np.floor(p * free).astype(np.int64)
    remainder = free - weights.sum(1)  # in [0, L): each floor loses less than 1
    weights[np.arange(len(p)), p.argmax(1)] += remainder
    return weights + 1


def coder_table(weights: np.ndarray) -> np.ndarray:
    """What constriction's categorical family must be given to use the weights w exactly.

    Its fast quantizer maps nonnegative p (n, L) to the left cumulatives
    ⌊(Σ_{j<l} p_j) · (2^24 − L) / Σ_j p_j⌋ + l. With p_l = w_l − 1 (integers, Σ = 2^24 − L,
    all exact in float64) the scale is exactly 1 and the cumulatives are Σ_{j<l} w_j: the
    coder's weights are w, bit for bit.
    """
    return (weights - 1).astype(np.float64)


# ----------------------------------------------------------------------------- the walk


@contextlib.contextmanager
def one_coding_thread() -> Iterator[None]:
    """torch at one intra-op thread inside the block (the coder's arithmetic never depends on
    how the caller set threads), the caller's setting restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _coding_copy(model: Autoregressive, mask: int | None) -> Autoregressive:
    """A float64 copy of the model in eval mode, on the CPU, with mask ``mask`` of a MADE ensemble."""
    coder_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    if mask is not None:
        cast(MaskEnsemble, coder_model.net).use_mask(mask)  # a MaskEnsemble: see _mask_of
    return coder_model


def _walk_batch(model: Autoregressive, n: int, code: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
    """Code n examples position by position: ``code(i, w)`` gets the quantized table w (n, L)
    of entry i and returns its symbols (n,) (the known ones when encoding, the decoded ones when
    decoding), which are written into x before the next conditional is computed. Returns the
    symbols (n, D)."""
    levels, dim = int(model.levels or 0), model.info.dim
    grid = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    x = torch.zeros(n, dim, dtype=torch.float64)
    symbols = np.zeros((n, dim), dtype=np.int32)
    with torch.no_grad():
        for _, i, features in model.conditionals_in_order(x):
            probabilities = torch.softmax(model.level_log_probs(features), 1).numpy()  # (n, L)
            s = np.asarray(code(i, quantize(probabilities)), dtype=np.int32)
            symbols[:, i] = s
            x[:, i] = grid[torch.from_numpy(s).long()]
    return symbols


def _mask_of(model: Autoregressive) -> int | None:
    """The current mask of a MADE with several masks (the one mask the coder uses), else None."""
    net = model.net
    return int(net.mask_index) if isinstance(net, MaskEnsemble) and model.num_masks > 1 else None


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + batch_size)) for start in range(0, n, batch_size)]


# ----------------------------------------------------------------------------- symbols


def _check_model(model: GenerativeModel) -> Autoregressive:
    if not isinstance(model, Autoregressive):
        raise CapabilityError(
            f"{type(model).__name__} cannot compress: lossless coding is implemented for "
            "autoregressive models (made, nade, pixelcnn, gated-pixelcnn, transformer) and, by "
            "bits-back coding, for VAEs and hierarchical VAEs"
        )
    if model.levels is None:
        raise CapabilityError(
            "this autoregressive model has a density per entry, not probabilities; lossless coding "
            "needs a discrete likelihood (bernoulli, categorical or discretized logistic head)"
        )
    if model.conditional:
        raise CapabilityError(
            "a conditional model needs its context to code; compress codes unconditional models"
        )
    return model


def _to_symbols(x: np.ndarray, levels: int, info: DataInfo) -> np.ndarray:
    """The symbols (N, D) of an array (N, *shape) whose examples hold D = ``info.dim`` entries on
    a grid of L = ``levels`` values: integers 0..L−1 (uint8 0..255 for 256 levels), booleans, or
    floats l/(L−1). Refused unless the values map back to exactly this array (:func:`_from_symbols`)."""
    dim = info.dim
    if x.ndim < 2 or math.prod(x.shape[1:]) != dim:
        raise DataError(
            f"expected examples of {dim} entries (shape {tuple(info.event_shape)}); "
            f"found an array of shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise DataError("the data hold no example")
    if x.dtype.kind not in "biuf":
        raise DataError(f"expected numbers or booleans; found dtype {x.dtype}")
    flat = x.reshape(x.shape[0], dim)
    if x.dtype.kind == "f":
        if not np.isfinite(flat).all():
            raise DataError("the data hold NaN or infinite values; lossless coding needs every entry")
        symbols = np.rint(flat.astype(np.float64) * (levels - 1))
    else:
        symbols = flat.astype(np.int64)
    if symbols.min() < 0 or symbols.max() > levels - 1:
        raise DataError(
            f"the model codes {levels} values per entry; found values outside them "
            f"(min {flat.min()}, max {flat.max()})"
        )
    symbols = symbols.astype(np.int32)
    if not np.array_equal(_from_symbols(symbols, levels, x.dtype, x.shape), x):
        raise DataError(
            f"the data are not on the model's grid of {levels} values (integers 0..{levels - 1} or "
            f"floats k/{levels - 1}); they could not be restored exactly"
        )
    return symbols


def _from_symbols(symbols: np.ndarray, levels: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The array (shape, dtype) that symbols (N, D) stand for: the integers themselves, or l/(L−1)
    divided in the array's own float type (as the data loaders divide: uint8 / 255 in float32)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = symbols.astype(dtype) / dtype.type(levels - 1)
    else:
        values = symbols.astype(dtype)
    return values.reshape(shape)


# ----------------------------------------------------------------------------- the file


def pack(header: dict[str, Any], words: np.ndarray) -> bytes:
    """A compressed file: MAGIC, the JSON header's length and text, the rANS words (uint32,
    little-endian), and the sha256 of all of it, which :func:`read_header` checks."""
    text = json.dumps(header, sort_keys=True).encode()
    body = MAGIC + struct.pack("<I", len(text)) + text + words.astype("<u4").tobytes()
    return body + hashlib.sha256(body).digest()


def read_header(blob: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """The header and the rANS words (uint32) of a compressed file; :class:`CompressedFileError`
    when it is not one, is truncated, or is corrupted (the sha256 that ends the file)."""
    if len(blob) < len(MAGIC) + 4 or not blob.startswith(MAGIC):
        raise CompressedFileError("not a simulacra compressed file (no SIMANS signature at its start)")
    (length,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    if len(blob) < start + length:
        raise CompressedFileError(
            f"the file is truncated: its header needs {start + length} bytes, it has {len(blob)}"
        )
    try:
        header = json.loads(blob[start : start + length].decode())
        version, num_words = int(header["format_version"]), int(header["num_words"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CompressedFileError("the file is corrupted: its header cannot be read") from None
    expected = start + length + 4 * num_words + DIGEST
    if len(blob) != expected:
        state = "truncated" if len(blob) < expected else "longer than its header says"
        raise CompressedFileError(f"the file is {state}: {len(blob)} bytes, its header says {expected}")
    if hashlib.sha256(blob[:-DIGEST]).digest() != blob[-DIGEST:]:
        raise CompressedFileError("the file is corrupted: its bytes do not match the sha256 that ends it")
    if version != FORMAT_VERSION:
        raise CompressedFileError(f"format version {version}; this simulacra reads version {FORMAT_VERSION}")
    payload = blob[start + length : -DIGEST]
    return header, np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def symbols_of(x: np.ndarray, levels: int, info: DataInfo, channels_last: bool) -> np.ndarray:
    """The symbols (N, D) that code x (N, *shape) on a grid of ``levels`` values, images stored
    channels last (N, H, W, C) read as (N, C, H, W) (see ``_to_symbols``)."""
    if channels_last and x.ndim != 4:
        raise DataError(f"channels_last needs images (N, H, W, C); found shape {x.shape}")
    return _to_symbols(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if channels_last else x, levels, info)


def file_header(
    model: GenerativeModel, x: np.ndarray, coder: str, channels_last: bool, num_words: int, /, **settings: Any
) -> dict[str, Any]:
    """The header fields every compressed file has (format, model checksum, the array's dtype,
    shape, layout and sha256, the number of words), with the coder's own ``settings``."""
    return {
        "format_version": FORMAT_VERSION,
        "coder": coder,
        "precision": PRECISION,
        "model_sha256": model_checksum(model),
        "examples": len(x),
        "dims_per_example": model.info.dim,
        "dtype": x.dtype.str,
        "shape": list(x.shape),
        "channels_last": bool(channels_last),
        "data_sha256": _array_checksum(x),
        "num_words": int(num_words),
        "torch": torch.__version__,
        **settings,
    }


def compress(
    model: GenerativeModel,
    x: np.ndarray,
    *,
    batch_size: int | None = None,
    channels_last: bool = False,
    latent_bits: int | None = None,
) -> Compressed:
    """Code the array x (N, *shape) losslessly with the model's conditionals (rANS, 24-bit
    probabilities); the file's length approaches −log2 p(x) bits plus a fixed header.

    A VAE or hierarchical VAE is coded by bits-back coding instead (:mod:`simulacra.tasks.bitsback`),
    whose length approaches the negative ELBO.

    Args:
        model: an unconditional :class:`Autoregressive` model with a discrete head (its
            current MADE mask when it has several), or a VAE (see :func:`bitsback.compress`).
        x: N examples of ``info.dim`` entries each, on the model's grid (see ``_to_symbols``);
            any layout whose row-major flattening is the model's (N, D).
        batch_size: examples per walk (default: what keeps the tables under 2^23 numbers, at
            most 1000); stored in the header, the decoder uses the same batches. For bits-back
            coding, the largest batch.
        channels_last: x is images (N, H, W, C), coded as (N, C, H, W) and restored as given.
        latent_bits: bits-back coding only: b, each latent coordinate coded as one of 2^b buckets.

    Returns:
        a :class:`Compressed`: the file's bytes, its header, and the ideal length in bits.
    """
    if not isinstance(model, Autoregressive):
        from simulacra.tasks import bitsback  # it builds on this module

        if bitsback.codes(model):
            return bitsback.compress(
                model, x, batch_size=batch_size, channels_last=channels_last, latent_bits=latent_bits
            )
    model = _check_model(model)
    if latent_bits is not None:
        raise CapabilityError("latent_bits is a setting of bits-back coding (VAEs); this model has no latent")
    x = np.asarray(x)
    levels, dim = int(model.levels or 0), model.info.dim
    symbols = symbols_of(x, levels, model.info, channels_last)
    n = len(symbols)
    if batch_size is None:
        batch_size = max(1, min(MAX_BATCH, TABLE_ENTRIES // (dim * levels)))
    mask = _mask_of(model)
    coder_model = _coding_copy(model, mask)
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    family = constriction.stream.model.Categorical(perfect=False)
    ideal = 0.0
    with one_coding_thread():
        for start, stop in reversed(_batches(n, batch_size)):  # a stack: the last batch goes in first
            known = symbols[start:stop]
            tables: list[tuple[int, np.ndarray]] = []

            def remember(i: int, weights: np.ndarray, known: np.ndarray = known) -> np.ndarray:
                tables.append((i, weights))  # noqa: B023  (consumed before the next batch)
                return known[:, i]

            _walk_batch(coder_model, stop - start, remember)
            for i, weights in reversed(tables):
                s = known[:, i]
                coder.encode_reverse(s, family, coder_table(weights))
                ideal += float(np.sum(PRECISION - np.log2(weights[np.arange(len(s)), s])))
    words = np.asarray(coder.get_compressed(), dtype=np.uint32)
    header = file_header(
        model,
        x,
        "rans-constriction",
        channels_last,
        len(words),
        model=type(model.net).__name__,
        levels=levels,
        mask=mask,
        batch_size=batch_size,
    )
    return Compressed(pack(header, words), header, 32 * len(words), ideal, n * dim)


def decompress(model: GenerativeModel, blob: bytes) -> np.ndarray:
    """The array a file written by :func:`compress` holds, exactly (dtype and shape included).

    Raises :class:`CompressedFileError` (a :class:`DataError`) when the file is not one, is
    truncated or corrupted, was written with another model (checksum), or decodes to data
    whose sha256 differs from the encoder's (never returned).
    """
    header, words = read_header(blob)
    if header["model_sha256"] != model_checksum(model):
        raise CompressedFileError(
            "the file was compressed with another model (its model checksum "
            f"{header['model_sha256'][:12]}… differs from this run's {model_checksum(model)[:12]}…); "
            "decode it with the run (and --weights) that compressed it"
        )
    try:
        levels, n, dim = int(header["levels"]), int(header["examples"]), int(header["dims_per_example"])
        batch_size = int(header["batch_size"])
        dtype, shape = np.dtype(header["dtype"]), tuple(int(s) for s in header["shape"])
    except (KeyError, TypeError, ValueError):
        raise CompressedFileError("the file's header is corrupted") from None
    if dim != model.info.dim or batch_size < 1 or n < 1 or levels < 2:
        raise CompressedFileError("the file's header does not fit this model")
    if header.get("coder") == "bb-ans-constriction":
        from simulacra.tasks import bitsback  # it builds on this module

        symbols, complete = bitsback.decode(model, header, words)
    else:
        symbols, complete = _decode_autoregressive(model, header, words)
    if header.get("channels_last"):
        n_, h, w, ch = shape
        x = _from_symbols(symbols, levels, dtype, (n_, ch, h, w)).transpose(0, 2, 3, 1).copy()
    else:
        x = _from_symbols(symbols, levels, dtype, shape)
    if not complete or _array_checksum(x) != header["data_sha256"]:
        raise CompressedFileError(
            "decoding did not reproduce the data (their sha256 differs): the file is corrupted, or "
            f"this torch ({torch.__version__}) computes the model's probabilities differently from "
            f"the one that encoded it ({header.get('torch')})"
        )
    return x


def _decode_autoregressive(
    model: GenerativeModel, header: dict[str, Any], words: np.ndarray
) -> tuple[np.ndarray, bool]:
    """The symbols (N, D) of an autoregressive model's file, and whether the coder came out empty."""
    model = _check_model(model)
    levels, n, batch_size, mask = (
        int(header["levels"]),
        int(header["examples"]),
        int(header["batch_size"]),
        header["mask"],
    )
    if levels != model.levels:
        raise CompressedFileError("the file's header does not fit this model")
    import constriction

    coder = constriction.stream.stack.AnsCoder(words)
    family = constriction.stream.model.Categorical(perfect=False)
    coder_model = _coding_copy(model, mask)

    def pop(_: int, weights: np.ndarray) -> np.ndarray:
        try:
            return coder.decode(family, coder_table(weights))
        except (ValueError, RuntimeError, AssertionError):  # words that no encoder wrote
            raise CompressedFileError("the file is corrupted: its code cannot be decoded") from None

    parts = []
    with one_coding_thread():
        for start, stop in _batches(n, batch_size):
            parts.append(_walk_batch(coder_model, stop - start, pop))
    return np.concatenate(parts), bool(coder.is_empty())
