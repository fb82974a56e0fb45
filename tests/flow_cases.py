"""The table of transforms that tests/test_flows.py checks: one entry per transform and setting.

Each case builds a small, randomly initialised transform over events of ``shape`` (with a context
of ``context`` features when > 0). Sections are grouped by module; add a case for every new
transform (a transform missing here is not tested by the table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from simulacra.flows.autoregressive import MaskedAutoregressive
from simulacra.flows.base import Additive, Affine, Composed, Inverse, Reshape, Transform
from simulacra.flows.circular import AngleFeatures, CircularSpline
from simulacra.flows.continuous import ConcatSquashField, ContinuousFlow
from simulacra.flows.coupling import Coupling, alternating_mask, channel_mask, checkerboard_mask
from simulacra.flows.dequantization import Logit
from simulacra.flows.glow import ActNorm, InvertibleConv1x1, MultiScale, Squeeze
from simulacra.flows.monotonic import UMNN
from simulacra.flows.permutation import BatchNorm, Permutation, Standardize
from simulacra.flows.splines import RationalQuadraticSpline
from simulacra.nn.conv import ConvEncoder  # noqa: F401  (kept for image conditioners below)
from simulacra.nn.masked import MADE
from simulacra.nn.mlp import MLP


@dataclass(frozen=True)
class Case:
    build: Callable[[], Transform]
    shape: tuple[int, ...]
    context: int = 0
    # the density test integrates exp(log p) over [-bound, bound]^D (D ≤ 2 only)
    density: bool = True
    # the transform's domain when it is not all of R^shape: "unit" = (0, 1)
    domain: str = "real"
    # far-tail inputs are checked unless the domain is bounded
    tails: bool = True
    # the shape of z when it differs from x's
    out_shape: tuple[int, ...] | None = None


def _vector_coupling(d: int, elementwise: Callable, context: int = 0, parity: int = 0) -> Coupling:
    mask = alternating_mask(d, parity)
    h = elementwise()
    n_a, n_b = int(mask.sum()), int((~mask).sum())
    return Coupling(mask, MLP(n_a + context, [16], n_b * h.num_params, "tanh"), h)


def _made(d: int, p: int, context: int = 0, order: list[int] | None = None) -> MADE:
    return MADE(d, [16, 16], p, context, order, "tanh")


class _Conv(torch.nn.Module):
    """A small conditioner for image couplings: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(c_in, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, c_out, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _batchnorm(d: int) -> BatchNorm:
    bn = BatchNorm(d)
    with torch.no_grad():  # non-trivial statistics, evaluation mode (a fixed bijection)
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.log_gamma.normal_(0, 0.3)
        bn.beta.normal_()
    return bn.eval()


def _standardize(d: int) -> Standardize:
    layer = Standardize(d)  # statistics of shifted, scaled draws: m ≠ 0, s ≠ 1
    layer.fit(torch.randn(50, d) * torch.linspace(0.5, 2.0, d) + torch.arange(d))
    return layer


CASES: dict[str, Case] = {
    # -- base, coupling, autoregressive, permutations (flows/base.py, coupling.py, autoregressive.py,
    #    permutation.py, dequantization.py)
    "affine-coupling-2d": Case(lambda: _vector_coupling(2, Affine), (2,)),
    "affine-coupling-5d-context": Case(lambda: _vector_coupling(5, Affine, context=3, parity=1), (5,), 3),
    "additive-coupling-4d": Case(lambda: _vector_coupling(4, Additive), (4,)),
    "affine-coupling-1d-context": Case(lambda: _vector_coupling(1, Affine, context=2), (1,), 2),
    "maf-3d": Case(lambda: MaskedAutoregressive(_made(3, 2), Affine()), (3,)),
    "maf-2d-reversed-context": Case(lambda: MaskedAutoregressive(_made(2, 2, 2, [1, 0]), Affine()), (2,), 2),
    "iaf-4d": Case(lambda: Inverse(MaskedAutoregressive(_made(4, 2), Affine())), (4,)),
    "checkerboard-coupling": Case(
        lambda: Coupling(checkerboard_mask((2, 4, 4)), _Conv(2, 4), Affine()), (2, 4, 4), density=False
    ),
    "channel-coupling-context": Case(
        lambda: Coupling(channel_mask((2, 3, 3), 1), _Conv(2 + 2, 4), Affine()), (2, 3, 3), 2, density=False
    ),
    "reverse": Case(lambda: Permutation.reverse(3), (3,)),
    "permutation-2d": Case(lambda: Permutation([1, 0]), (2,)),
    "batchnorm-eval": Case(lambda: _batchnorm(2), (2,)),
    "standardize": Case(lambda: _standardize(2), (2,)),
    "reshape": Case(lambda: Reshape((2, 2), (4,)), (2, 2), density=False, out_shape=(4,)),
    "logit": Case(lambda: Logit(0.0), (2,), domain="unit", tails=False),
    "logit-alpha": Case(lambda: Logit(0.05), (1,), domain="unit", density=False, tails=False),
    "composed": Case(
        lambda: Composed(
            [_vector_coupling(2, Affine), Permutation([1, 0]), MaskedAutoregressive(_made(2, 2), Affine())]
        ),
        (2,),
    ),
    # -- splines (flows/splines.py), circular (flows/circular.py): cases below ------------------
    "spline-coupling-2d": Case(lambda: _vector_coupling(2, lambda: RationalQuadraticSpline(5, 3.0)), (2,)),
    "spline-maf-3d-context": Case(
        lambda: MaskedAutoregressive(_made(3, 11, 2, [2, 0, 1]), RationalQuadraticSpline(4, 2.0)), (3,), 2
    ),
    # bound 1.5: the density grid spans the spline and both identity tails
    "spline-1d-context": Case(
        lambda: _vector_coupling(1, lambda: RationalQuadraticSpline(6, 1.5), 2), (1,), 2
    ),
    "circular-spline-torus": Case(
        lambda: Composed(
            [
                Coupling(
                    alternating_mask(2, p), AngleFeatures(1, MLP(2, [16], 13, "tanh")), CircularSpline(4)
                )
                for p in (0, 1)
            ]
        ),
        (2,),
        domain="circle",
        tails=False,
    ),
    "circular-spline-torus-context": Case(
        lambda: Coupling(
            alternating_mask(3, 1), AngleFeatures(1, MLP(2 + 2, [16], 2 * 16, "tanh")), CircularSpline(5)
        ),
        (3,),
        2,
        domain="circle",
        tails=False,
    ),
    # -- glow (flows/glow.py): cases below ------------------------------------------------------
    "actnorm-2d": Case(lambda: ActNorm(2, event_dims=1).initialize(torch.randn(64, 2) * 2 + 1), (2,)),
    "actnorm-image": Case(
        lambda: ActNorm(3).initialize(torch.randn(8, 3, 2, 2) * 3 - 1), (3, 2, 2), density=False
    ),
    "invconv-2d": Case(lambda: InvertibleConv1x1(2, event_dims=1), (2,)),
    "invconv-image": Case(lambda: InvertibleConv1x1(4), (4, 2, 3), density=False),
    "squeeze": Case(lambda: Squeeze(), (2, 4, 2), density=False, out_shape=(8, 2, 1)),
    "multiscale-one-level": Case(
        lambda: MultiScale(
            [Coupling(checkerboard_mask((2, 4, 4)), _Conv(2, 4), Affine())],
            [
                ActNorm(8).initialize(torch.randn(4, 8, 2, 2) + 0.5),
                InvertibleConv1x1(8),
                Coupling(channel_mask((8, 2, 2)), _Conv(8, 16), Affine()),
            ],
            inner=Coupling(channel_mask((4, 2, 2), 1), _Conv(4, 8), Affine()),
            keep=4,
        ),
        (2, 4, 4),
        density=False,
    ),
    # -- monotonic (flows/monotonic.py), continuous (flows/continuous.py): cases below ---------
    "umnn-maf-2d": Case(lambda: MaskedAutoregressive(_made(2, 4), UMNN(3, [8], nodes=16)), (2,)),
    "umnn-1d-context": Case(lambda: MaskedAutoregressive(_made(1, 3, 2), UMNN(2, [8], nodes=16)), (1,), 2),
    # tight tolerances: the table compares with autograd and inverts to 1e-6 in float64; the
    # 160 000-point density grid would take seconds of ODE solves (tests/test_continuous.py checks ∫p = 1 in 1-D)
    "cnf-2d-exact-context": Case(
        lambda: ContinuousFlow(ConcatSquashField(2, [8], 2), trace="exact", rtol=1e-9, atol=1e-9),
        (2,),
        2,
        density=False,
    ),
}
