"""Coupling transforms (NICE, Dinh et al. 2015; RealNVP, Dinh et al. 2017; NSF, Durkan et al. 2019).

A binary mask b splits x into a conditioning part x_A (b = 1) and a transformed part x_B (b = 0):

    z_A = x_A,    z_B = h(x_B; θ),    θ = NN(x_A, c),

so the Jacobian is triangular and log|det ∂z/∂x| = Σ_{i ∈ B} log h'(x_i; θ_i); the inverse is
x_B = h⁻¹(z_B; NN(z_A, c)), one pass in both directions. h is any :class:`Elementwise` map: affine
(RealNVP), additive (NICE), rational-quadratic spline (NSF).

Vectors (B, D): the conditioner reads [x_A, c] (B, |A| + C_c) and returns (B, |B|·P).
Images (B, C, H, W): the conditioner reads [x ⊙ b, c as constant channels] (B, C + C_c, H, W)
(or a spatial context (B, C_s, H, W) as it is) and returns (B, P·C, H, W), of which the entries
where b = 0 are used (checkerboard and channel masks of RealNVP §3.4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError, DataError
from simulacra.flows.base import Elementwise, Transform, sum_event


def alternating_mask(features: int, parity: int = 0) -> Tensor:
    """(D,) bool mask with True on every other coordinate, starting at ``parity`` (0 or 1).

    For D = 1 the mask is all False (the single coordinate is transformed from the context alone).
    """
    mask = (torch.arange(features) + parity) % 2 == 0
    if features == 1:
        mask[:] = False
    return mask


def checkerboard_mask(shape: Sequence[int], parity: int = 0) -> Tensor:
    """(C, H, W) bool checkerboard: True where (h + w + parity) is even, in every channel."""
    c, h, w = shape
    grid = (torch.arange(h)[:, None] + torch.arange(w)[None, :] + parity) % 2 == 0
    return grid.expand(c, h, w).clone()


def channel_mask(shape: Sequence[int], parity: int = 0) -> Tensor:
    """(C, H, W) bool mask with True on the first ⌈C/2⌉ channels (``parity`` = 1: the others)."""
    c, h, w = shape
    if c < 2:
        raise ConfigError(f"a channel mask needs at least 2 channels; found {c} (squeeze first)")
    first = torch.arange(c) < (c + 1) // 2
    keep = first if parity == 0 else ~first
    return keep[:, None, None].expand(c, h, w).clone()


class Coupling(Transform):
    """z_A = x_A, z_B = h(x_B; NN(x_A, c)) for a fixed boolean ``mask`` over the event.

    Args:
        mask: bool tensor of the event shape, True on the conditioning part A. For vectors at
            least one coordinate must be False.
        conditioner: vectors: module (B, |A| + C_c) -> (B, |B|·P); images: module
            (B, C + C_c, H, W) -> (B, P·C, H, W).
        elementwise: the map h with P = ``elementwise.num_params`` parameters per coordinate.
    """

    def __init__(self, mask: Tensor, conditioner: nn.Module, elementwise: Elementwise) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if bool(mask.all()):
            raise ConfigError("a coupling mask must leave at least one coordinate to transform")
        self.event_dims = mask.dim()
        self.register_buffer("mask", mask)
        if self.event_dims == 1:
            self.register_buffer("idx_a", torch.nonzero(mask).flatten())
            self.register_buffer("idx_b", torch.nonzero(~mask).flatten())
        self.conditioner = conditioner
        self.elementwise = elementwise

    def _params_vector(self, x_a: Tensor, c: Tensor | None, n_b: int) -> Tensor:
        h = x_a if c is None else torch.cat([x_a, c.to(x_a.dtype)], dim=-1)
        return self.conditioner(h).reshape(x_a.shape[0], n_b, self.elementwise.num_params)

    def _params_image(self, x: Tensor, c: Tensor | None) -> Tensor:
        h = x * self.mask
        if c is not None:
            # a vector context (B, C_c) becomes constant channels; a spatial one (B, C_s, H, W)
            # (e.g. the data, for a variational dequantizer) is read pixel by pixel
            e = (
                c.to(x.dtype)
                if c.dim() == 4
                else c.to(x.dtype).reshape(*c.shape, 1, 1).expand(-1, -1, *x.shape[2:])
            )
            h = torch.cat([h, e], dim=1)
        p = self.conditioner(h)  # (B, P·C, H, W)
        b, _, hh, ww = p.shape
        return p.reshape(b, self.elementwise.num_params, x.shape[1], hh, ww).movedim(1, -1)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.mask.shape):
            raise DataError(f"coupling over events of shape {tuple(self.mask.shape)}; found {tuple(x.shape)}")

    def _couple(self, x: Tensor, c: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        self._check(x)
        h = self.elementwise.inverse if inverse else self.elementwise.forward
        if self.event_dims == 1:
            x_b = x[:, self.idx_b]
            params = self._params_vector(x[:, self.idx_a], c, x_b.shape[1])
            y_b, ladj = h(x_b, params)
            y = x.index_copy(1, self.idx_b, y_b)
            return y, ladj.sum(-1)
        params = self._params_image(x, c)
        y, ladj = h(x, params)
        keep = self.mask
        return torch.where(keep, x, y), sum_event(torch.where(keep, 0.0, ladj), self.event_dims)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, c, inverse=False)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z, c, inverse=True)
