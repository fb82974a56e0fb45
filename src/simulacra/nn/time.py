"""Time-conditioned networks for denoisers: sinusoidal time embeddings and an MLP for vectors.

A denoiser maps (x_t, t, c) to a prediction with x_t's shape. Time enters through the sinusoidal
embedding of the Transformer (Vaswani et al. 2017) as used by DDPM (Ho et al. 2020),

    e(t)_k = sin(s t ω_k),  e(t)_{k + K} = cos(s t ω_k),  ω_k = 10000^{−k/(K−1)},  k < K = dim/2

(t ∈ [0, 1], s = 100), followed by a small MLP; a class label c adds a learned embedding, with one extra row (index
``num_classes``) for "no label", which classifier-free guidance trains by label dropout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError, DataError
from simulacra.nn.mlp import ACTIVATIONS


class SinusoidalEmbedding(nn.Module):
    """t (B,) -> (B, dim): [sin(s t ω), cos(s t ω)] with geometric frequencies ω (see module doc).

    Args:
        dim: an even embedding size.
        scale: s, the highest frequency. 1000 would map t ∈ [0, 1] to DDPM's step indices, but
            then an (untrained) network oscillates in t with period ~0.006 and the probability-flow
            ODE needs ~4× more evaluations; 100 keeps the network smooth in t.
    """

    def __init__(self, dim: int, scale: float = 100.0) -> None:
        super().__init__()
        if int(dim) < 2 or int(dim) % 2:
            raise ConfigError(f"the sinusoidal embedding needs an even dim >= 2; found {dim}")
        half = int(dim) // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("freqs", float(scale) * freqs, persistent=False)
        self.dim = int(dim)

    def forward(self, t: Tensor) -> Tensor:
        angles = t.to(self.freqs.dtype)[:, None] * self.freqs  # (B, K)
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class TimeEmbedding(nn.Module):
    """(t (B,), c (B,) or None) -> (B, dim): MLP(sinusoidal(t)) + E[c].

    Args:
        dim: output size.
        num_classes: K labels for a conditional network (the table has K + 1 rows, the last
            one the null label ∅ of classifier-free guidance), or None.
        activation: a name in :data:`ACTIVATIONS`.
    """

    def __init__(self, dim: int, num_classes: int | None = None, activation: str = "silu") -> None:
        super().__init__()
        act = ACTIVATIONS.get(activation)
        self.sinusoidal = SinusoidalEmbedding(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), act(), nn.Linear(dim, dim))
        self.num_classes = None if num_classes is None else int(num_classes)
        self.classes = None if num_classes is None else nn.Embedding(int(num_classes) + 1, dim)
        self.dim = int(dim)

    def forward(self, t: Tensor, c: Tensor | None = None) -> Tensor:
        e = self.mlp(self.sinusoidal(t))
        if self.classes is None:
            return e
        if c is None or c.dim() != 1 or c.shape[0] != t.shape[0]:
            found = None if c is None else tuple(c.shape)
            raise DataError(
                f"this denoiser is conditional: it needs labels c of shape ({t.shape[0]},); found {found}"
            )
        return e + self.classes(c.long())


class TimeMLP(nn.Module):
    """A time-conditioned MLP denoiser for vectors: (x_t (B, *event), t (B,), c) -> (B, *event).

        h_0 = x_t (flattened),  h_l = φ(W_l h_{l−1} + b_l + P_l e(t, c)),  out = W_out h_L + b_out,

    i.e. every hidden layer is shifted by a projection of the time (and label) embedding.

    Args:
        event_shape: shape of one example (flattened to D inputs and outputs).
        hidden: hidden widths.
        embedding_dim: size of the time embedding.
        num_classes: labels of a conditional denoiser, or None.
        activation: a name in :data:`ACTIVATIONS` (smooth ones keep the PF-ODE smooth).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        hidden: Sequence[int] = (256, 256, 256),
        embedding_dim: int = 64,
        num_classes: int | None = None,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        d = math.prod(self.event_shape)
        sizes = [d, *(int(h) for h in hidden)]
        if len(sizes) < 2:
            raise ConfigError("TimeMLP needs at least one hidden layer; found hidden=[]")
        self.embedding = TimeEmbedding(embedding_dim, num_classes, activation)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.projections = nn.ModuleList(nn.Linear(int(embedding_dim), b) for b in sizes[1:])
        self.act = ACTIVATIONS.get(activation)()
        self.out = nn.Linear(sizes[-1], d)

    def forward(self, x: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
        e = self.embedding(t, c)  # (B, E)
        h = x.flatten(1)
        for layer, proj in zip(self.layers, self.projections):
            h = self.act(layer(h) + proj(e))
        return self.out(h).reshape(x.shape)
