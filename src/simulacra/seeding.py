"""Derived seeds: independent, reproducible random streams from one run seed.

A run has one seed; every random stream it needs (the batch permutation of each epoch, a
toy dataset's train/valid/test draws, dynamic binarization at each step, each DDP rank) gets its
own seed derived from the run seed and the stream's name, so that the streams are unrelated yet
a run can be repeated or resumed exactly. :func:`derive_seed` is the one derivation, used by
:mod:`simulacra.data` and :mod:`simulacra.train` alike.
"""

from __future__ import annotations

import hashlib

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of Steele, Lea & Flood's (2014) SplitMix64 finalizer on a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _mix_integers(parts: tuple[int, ...]) -> int:
    """h_0 = 0, h_k = splitmix64(h_{k−1} ⊕ (p_k mod 2^64)); the seed is h_K >> 1 (63 bits)."""
    h = 0
    for p in parts:
        h = _splitmix64(h ^ (p & _MASK64))
    return h >> 1


def _hash_tagged(parts: tuple[int | str, ...]) -> int:
    """The first 8 bytes of BLAKE2b(repr(parts)), little-endian, mod 2^63."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed determined by ``parts``, stable across processes, platforms and versions.

    Distinct tuples give (with overwhelming probability) unrelated generator streams. Two
    mixing rules, each kept so that the streams drawn before they shared this function stay
    bit-identical (data splits, toy draws and training batches behind published numbers):

    * integers only, e.g. ``(seed, SALT_PERMUTATION, epoch)`` (training streams): the SplitMix64
      chain h_0 = 0, h_k = splitmix64(h_{k−1} ⊕ p_k), seed = h_K >> 1;
    * with string tags, e.g. ``(seed, "moons", "train")`` (dataset streams): the tuple is hashed
      whole, seed = BLAKE2b-64(repr(parts)) mod 2^63.

    Args:
        parts: integers (a seed, a salt, an epoch, a rank, a step) and string tags (a dataset,
            a split); integer-like values (numpy integers, bools) are read with ``int``.

    Returns:
        an integer in [0, 2^63), suitable for ``torch.Generator.manual_seed``.
    """
    normalized = tuple(p if isinstance(p, str) else int(p) for p in parts)
    if any(isinstance(p, str) for p in normalized):
        return _hash_tagged(normalized)
    return _mix_integers(normalized)  # type: ignore[arg-type]  (no strings in this branch)


def generator_for(*parts: int | str, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``derive_seed(*parts)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))


def rng_devices(device: torch.device | str) -> list[int]:
    """The CUDA device indices whose RNG ``torch.random.fork_rng(devices=...)`` must save for
    work on ``device``: ``[index]`` for a CUDA device (the current one when it has no index), ``[]``
    for the CPU and other devices."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]
