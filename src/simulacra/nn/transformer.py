"""A causal (decoder-only) Transformer over token sequences, with a key-value cache.

Tokens k_1..k_T (stored, as all discrete data here, on the grid x = k / (V − 1)) are read
shifted right behind a start token: position t sees [BOS, k_1, …, k_{t−1}] through causal
self-attention (Vaswani et al. 2017; the pre-LayerNorm GPT-2 layout of Radford et al. 2019),
and its output parametrises p(k_t | k_<t). Attention of a query at t over keys s ≤ t::

    Attn(q_t, K, V) = Σ_{s ≤ t} softmax_s(q_t · k_s / √d_head) v_s

Sampling recomputes nothing: :meth:`CausalTransformer.step` appends the new token's keys and
values to a cache per layer and attends from that one query, O(T·d) per token instead of a
full O(T²·d) pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.errors import ConfigError


class _Block(nn.Module):
    """x + Attn(LN(x)), then + MLP(LN(x)) (pre-LN), with causal multi-head attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout)
        )
        self.dropout = dropout

    def _split(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, d = y.shape
        q, k, v = self.qkv(y).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, heads, T, d_head)

    def _merge(self, x: Tensor, att: Tensor) -> Tensor:
        b, _, t, _ = att.shape
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, -1))
        return x + self.mlp(self.ln2(x))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._split(self.ln1(x))
        p = self.dropout if self.training else 0.0
        return self._merge(x, F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p))

    def step(self, x: Tensor, cache: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One new position x (B, 1, dim) attending over the cached keys/values and itself."""
        q, k, v = self._split(self.ln1(x))
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        return self._merge(x, F.scaled_dot_product_attention(q, k, v)), (k, v)


class CausalTransformer(nn.Module):
    """x (B, T) tokens on the grid k / (V − 1) -> features (B, T, P) of p(k_t | k_<t).

    Args:
        length: T, the sequence length (the context window).
        vocab: V, the number of token values.
        params_per_dim: P (V for a categorical output).
        dim: model width d.
        layers: Transformer blocks.
        heads: attention heads (``dim`` must be divisible by it).
        mlp_ratio: hidden width of each block's MLP in units of d.
        dropout: dropout on attention weights and MLP outputs while training.
    """

    def __init__(
        self,
        length: int,
        vocab: int,
        params_per_dim: int,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if int(dim) % int(heads):
            raise ConfigError(
                f"the Transformer's dim must be divisible by heads; found dim={dim}, heads={heads}"
            )
        if int(vocab) < 2 or int(length) < 1:
            raise ConfigError(f"the Transformer needs vocab >= 2 and length >= 1; found {vocab}, {length}")
        self.length, self.vocab = int(length), int(vocab)
        self.register_buffer("order", torch.arange(self.length))
        self.embed = nn.Embedding(self.vocab + 1, dim)  # the last token is BOS
        self.position = nn.Parameter(torch.randn(self.length, dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads, mlp_ratio, dropout) for _ in range(int(layers)))
        self.ln = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, int(params_per_dim))

    def tokens(self, x: Tensor) -> Tensor:
        """Grid values k / (V − 1) -> integer tokens k (same shape)."""
        return (x * (self.vocab - 1)).round().long().clamp(0, self.vocab - 1)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, T) grid values -> (B, T, P) features; position t reads tokens < t only."""
        k = self.tokens(x.reshape(x.shape[0], self.length))
        bos = torch.full_like(k[:, :1], self.vocab)
        h = self.embed(torch.cat([bos, k[:, :-1]], 1)) + self.position  # (B, T, d)
        for block in self.blocks:
            h = block(h)
        return self.out(self.ln(h))

    def begin(self, n: int, c: Tensor | None = None) -> dict[str, Any]:
        """An empty key-value cache (one entry per block) for ``n`` sequences."""
        return {"n": int(n), "cache": [None] * len(self.blocks)}

    def step(self, state: dict[str, Any], t: int, previous: Tensor | None) -> tuple[Tensor, dict[str, Any]]:
        """Features (n, P) of position t given the token at t − 1 (None at t = 0) and the cache."""
        if previous is None:
            k = torch.full((state["n"],), self.vocab, dtype=torch.long, device=self.position.device)
        else:
            k = self.tokens(previous)
        h = (self.embed(k) + self.position[t])[:, None]  # (n, 1, d)
        cache = []
        for block, entry in zip(self.blocks, state["cache"]):
            h, entry = block.step(h, entry)
            cache.append(entry)
        return self.out(self.ln(h[:, 0])), {"n": state["n"], "cache": cache}
