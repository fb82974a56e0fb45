"""Masked autoregressive transforms: MAF (Papamakarios et al. 2017) and IAF (Kingma et al. 2016).

    z_i = h(x_i; θ_i(x_<i, c)),    θ = MADE(x, c)    (all i at once: one network pass)

The Jacobian ∂z/∂x is triangular in the MADE's order, so log|det ∂z/∂x| = Σ_i log h'(x_i; θ_i).
Density evaluation (``forward``) takes one pass; inversion takes D passes, since x_i needs x_<i:
after pass k the first k coordinates (in the order) are exact. An IAF is the inverse,
``Inverse(MaskedAutoregressive(...))``: one pass to sample, D passes to evaluate a density.
With h a rational-quadratic spline this is the autoregressive neural spline flow (Durkan et al. 2019).
"""

from __future__ import annotations

import torch
from torch import Tensor

from simulacra.errors import DataError
from simulacra.flows.base import Elementwise, Transform
from simulacra.nn.masked import MADE


class MaskedAutoregressive(Transform):
    """z = h(x; MADE(x, c)) coordinate-wise, with the MADE's autoregressive order.

    Args:
        made: a :class:`MADE` with ``params_per_dim = elementwise.num_params``.
        elementwise: the monotonic map h (affine for MAF, a spline for NSF).
    """

    event_dims = 1

    def __init__(self, made: MADE, elementwise: Elementwise) -> None:
        super().__init__()
        if made.params_per_dim != elementwise.num_params:
            raise ValueError(
                f"the MADE outputs {made.params_per_dim} parameters per dimension; "
                f"the elementwise map needs {elementwise.num_params}"
            )
        self.made = made
        self.elementwise = elementwise

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.made.features:
            raise DataError(f"expected (B, {self.made.features}) inputs; found {tuple(x.shape)}")

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x)
        z, ladj = self.elementwise(x, self.made(x, c))
        return z, ladj.sum(-1)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """D passes: pass k fixes coordinate order[k]; the last pass gives every θ_i exactly."""
        self._check(z)
        x = torch.zeros_like(z)
        ladj = torch.zeros_like(z)
        for _ in range(self.made.features):
            x, ladj = self.elementwise.inverse(z, self.made(x, c))
        return x, ladj.sum(-1)
