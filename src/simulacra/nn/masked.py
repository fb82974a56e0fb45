"""Masked networks: MADE (Germain et al. 2015, "MADE: Masked autoencoder for distribution estimation").

A MADE is an MLP whose weight matrices are multiplied by binary masks so that output d depends
only on the inputs that precede d in a chosen order: with input degrees m(i) = position of i in
the order (1..D), hidden degrees m(k) ∈ {0, …, D − 1}, a hidden unit k sees input i iff
m(k) ≥ m(i), a later hidden unit k' sees k iff m(k') ≥ m(k), and output d sees hidden k iff
m(d) > m(k). Hence ∂ out_d / ∂ x_i = 0 whenever m(i) ≥ m(d): the network is autoregressive.

An optional context c (B, C_c) feeds every first-layer hidden unit without a mask, so the
conditional outputs p(x_d | x_<d, c) stay autoregressive in x.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.nn.mlp import ACTIVATIONS


class MaskedLinear(nn.Linear):
    """y = (W ⊙ M) x + b with a fixed binary mask M (out_features, in_features), kept as a buffer."""

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(width: int, features: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Degrees of a hidden layer: cyclic 0/1 … D − 1 (deterministic), or uniform draws from that
    range with ``generator`` (the connectivity-agnostic training of Germain et al. §4.2)."""
    low = min(1, features - 1)
    if generator is None:
        return torch.arange(width) % (features - low) + low
    return torch.randint(low, features, (width,), generator=generator)


class MADE(nn.Module):
    """Autoregressive MLP: x (B, D) [, c (B, C_c)] -> parameters (B, D, P) of p(x_d | x_<d, c).

    Args:
        features: D.
        hidden: hidden layer widths.
        params_per_dim: P, the number of outputs per input coordinate.
        context_features: C_c (0 for an unconditional network).
        order: a permutation of 0..D−1 giving the autoregressive order (default 0, 1, …, D − 1):
            output d depends on x_i only when i comes before d in ``order``.
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
        seed: None for deterministic cyclic hidden degrees; an integer draws random degrees.
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int],
        params_per_dim: int,
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
        activation: str = "relu",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if int(features) < 1 or not hidden:
            raise ConfigError(
                f"MADE needs features >= 1 and at least one hidden layer; found {features}, {hidden}"
            )
        self.features = int(features)
        self.params_per_dim = int(params_per_dim)
        order_t = torch.arange(self.features) if order is None else torch.as_tensor(order).long()
        if sorted(order_t.tolist()) != list(range(self.features)):
            raise ConfigError(
                f"order must be a permutation of 0..{self.features - 1}; found {order_t.tolist()}"
            )
        degrees_in = torch.empty(self.features, dtype=torch.long)
        degrees_in[order_t] = torch.arange(1, self.features + 1)  # position in the order, 1..D
        self.register_buffer("order", order_t)
        self.register_buffer("degrees", degrees_in)
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        act = ACTIVATIONS.get(activation)
        layers: list[nn.Module] = []
        previous = degrees_in
        for width in hidden:
            deg = hidden_degrees(int(width), self.features, generator=generator)
            layers.append(MaskedLinear(deg[:, None] >= previous[None, :]))
            layers.append(act())
            previous = deg
        out_deg = degrees_in.repeat_interleave(self.params_per_dim)  # (D·P,), row d·P + p
        layers.append(MaskedLinear(out_deg[:, None] > previous[None, :]))
        self.net = nn.ModuleList(layers)
        self.context = (
            nn.Linear(int(context_features), int(hidden[0]), bias=False) if context_features else None
        )

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, D) inputs and optional (B, C_c) context -> (B, D, P) parameters."""
        layers = iter(self.net)  # (slicing a ModuleList would build a new one on every call)
        h = next(layers)(x)
        if self.context is not None:
            if c is None:
                raise ConfigError("this MADE is conditional: it needs a context c of shape (B, C_c)")
            h = h + self.context(c.to(h.dtype))
        for layer in layers:
            h = layer(h)
        return h.reshape(x.shape[0], self.features, self.params_per_dim)
