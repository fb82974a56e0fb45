"""Rational-quadratic splines (flows/splines.py) and flows on the circle and torus (flows/circular.py).

The spline's defining properties (Gregory & Delbourgo 1982; Durkan et al. 2019): identity outside
[−B, B], strictly increasing, h(x_k) = y_k and h'(x_k) = d_k at the knots, value and derivative
continuous at ±B; its analytic inverse is accurate in float32 at the bin edges. The circular
spline (Rezende et al. 2020) fixes ±π before its rotation and has equal end derivatives, so it is
a diffeomorphism of the circle; a torus flow's density integrates to 1 over [−π, π]².
"""

from __future__ import annotations

import math

import pytest
import torch

from simulacra.data import toys
from simulacra.data.info import DataInfo
from simulacra.errors import ConfigError, DataError
from simulacra.flows.circular import CircularSpline, UniformCircle, wrap
from simulacra.flows.splines import RationalQuadraticSpline, rq_forward, rq_inverse
from simulacra.models.zoo import build_model

F64 = torch.float64


def _params(shape: tuple[int, ...], p: int, scale: float = 2.0, seed: int = 0, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, p, generator=g, dtype=F64)).to(dtype)


def _derivative(spline, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """h'(x) elementwise by autograd (independent of the closed-form log-derivative)."""
    x = x.clone().requires_grad_(True)
    (y, _) = spline(x, params)
    (g,) = torch.autograd.grad(y.sum(), x)
    return g


def test_identity_outside_the_bound_and_for_zero_parameters() -> None:
    s = RationalQuadraticSpline(bins=6, bound=2.0)
    x = torch.cat([torch.linspace(-50, -2.0001, 50, dtype=F64), torch.linspace(2.0001, 50, 50, dtype=F64)])
    p = _params((100,), s.num_params, scale=3.0)
    for direction in (s.forward, s.inverse):
        y, log_d = direction(x, p)
        assert torch.equal(y, x) and torch.equal(log_d, torch.zeros_like(x))
    inner = torch.linspace(-2, 2, 101, dtype=F64)
    y, log_d = s(inner, torch.zeros(101, s.num_params, dtype=F64))  # equal bins, unit derivatives
    torch.testing.assert_close(y, inner, atol=1e-14, rtol=0)
    torch.testing.assert_close(log_d, torch.zeros_like(inner), atol=1e-13, rtol=0)


def test_strictly_increasing_with_matching_log_derivative() -> None:
    s = RationalQuadraticSpline(bins=8, bound=3.0)
    x = torch.linspace(-3.5, 3.5, 20001, dtype=F64)
    for seed in range(5):
        p = _params((), s.num_params, scale=3.0, seed=seed).expand(len(x), -1)  # one spline, dense grid
        y, log_d = s(x, p)
        assert (y.diff() > 0).all(), f"not strictly increasing (seed {seed})"
        torch.testing.assert_close(log_d, _derivative(s, x, p).log(), atol=1e-9, rtol=1e-9)
        # the inverse is the inverse on the whole grid, and the log-derivatives cancel
        x_back, log_d_inv = s.inverse(y, p)
        torch.testing.assert_close(x_back, x, atol=1e-9, rtol=0)
        torch.testing.assert_close(log_d + log_d_inv, torch.zeros_like(x), atol=1e-9, rtol=0)


def test_knots_are_interpolated_exactly() -> None:
    s = RationalQuadraticSpline(bins=5, bound=4.0)
    p = _params((7,), s.num_params, scale=2.0)
    knots, dk = s.knots(p)  # (7, 2, 6), (7, 6)
    xk, yk = knots[:, 0], knots[:, 1]
    assert torch.equal(xk[:, 0], torch.full((7,), -4.0, dtype=F64)) and torch.equal(xk[:, -1], xk[:, 0].neg())
    assert torch.equal(dk[:, 0], torch.ones(7, dtype=F64)) and torch.equal(
        dk[:, -1], torch.ones(7, dtype=F64)
    )
    assert (xk.diff() >= 2 * 4.0 * s.min_bin * (1 - 1e-12)).all() and (yk.diff() > 0).all()
    pk = p[:, None].expand(-1, 6, -1)  # the spline of row i at its own knots
    y, log_d = s(xk, pk)
    torch.testing.assert_close(y, yk, atol=1e-14, rtol=1e-14)  # h(x_k) = y_k
    torch.testing.assert_close(log_d, dk.log(), atol=1e-12, rtol=1e-12)  # h'(x_k) = d_k
    x_back, _ = s.inverse(yk, pk)
    torch.testing.assert_close(x_back, xk, atol=1e-12, rtol=1e-12)
    # both one-sided derivatives at the interior knots equal d_k: h is C¹
    eps = 1e-10  # |h''| can reach 1e4 in narrow bins: the one-sided limits need a small step
    inner = xk[:, 1:-1]
    for side in (-eps, eps):
        g = _derivative(s, inner + side, pk[:, 1:-1])
        torch.testing.assert_close(g, dk[:, 1:-1], atol=1e-5, rtol=1e-5)


def test_value_and_derivative_are_continuous_at_the_bound() -> None:
    """h(±B) = ±B and h'(±B) = 1 from inside, as the identity tails outside: h(B − ε) − (B − ε) = O(ε²)
    and log h'(B − ε) = O(ε)."""
    b = 2.5
    s = RationalQuadraticSpline(bins=7, bound=b)
    p = _params((6,), s.num_params, scale=3.0)
    for edge in (-b, b):
        inward = -math.copysign(1.0, edge)
        y, ld = s(torch.full((6,), edge, dtype=F64), p)
        assert torch.equal(y, torch.full((6,), edge, dtype=F64))
        torch.testing.assert_close(ld, torch.zeros(6, dtype=F64), atol=1e-12, rtol=0)
        gaps, slopes = [], []
        for eps in (1e-6, 1e-7, 1e-8):
            x_in = torch.full((6,), edge + inward * eps, dtype=F64)
            y_in, ld_in = s(x_in, p)
            gaps.append(float((y_in - x_in).abs().max()))
            slopes.append(float(ld_in.abs().max()))
            y_out, ld_out = s(torch.full((6,), edge - inward * eps, dtype=F64), p)
            assert (
                torch.equal(y_out, torch.full((6,), edge - inward * eps, dtype=F64))
                and ld_out.abs().max() == 0
            )
        # O(ε²) and O(ε): each tenfold step inwards shrinks them ~100× and ~10×
        assert gaps[1] < gaps[0] / 50 and gaps[2] < gaps[1] / 50 and gaps[2] < 1e-9
        assert slopes[1] < slopes[0] / 8 and slopes[2] < slopes[1] / 8 and slopes[2] < 1e-2


def test_float32_inverse_is_accurate_at_bin_edges() -> None:
    """Points at and 1e-7 … 1e-3 around every knot of 64 random splines, in float32.

    The error of x = h⁻¹(y) is measured in y-units, |Δx| h'(x): a float32 y is only known to a few
    ulps (≈ 5e-7 at |y| = 5), and where h' is small that alone moves x by ulp / h' (likewise the
    error of h(h⁻¹(y)) in x-units). Taking the root
    of the quadratic in a form that cancels (2c / (−b − √Δ) with b < 0), or from the far end of
    the bin, fails this by 5–1000×.
    """
    s = RationalQuadraticSpline(bins=8, bound=5.0)
    p = _params((64,), s.num_params, scale=3.0, dtype=torch.float32)
    knots, _ = s.knots(p)
    xk, yk = knots[:, 0], knots[:, 1]  # (64, 9)
    offsets = torch.tensor([-1e-3, -1e-5, -1e-7, 0.0, 1e-7, 1e-5, 1e-3])
    pk = p[:, None, None].expand(-1, 9, len(offsets), -1)
    x = (xk[..., None] + offsets).clamp(-5, 5)  # (64, 9, 7) points at and around every x-knot
    y, log_d = s(x, pk)
    x_back, log_d_inv = s.inverse(y, pk)
    assert x.dtype == y.dtype == x_back.dtype == log_d.dtype == torch.float32
    assert ((x_back - x).abs() * log_d.exp()).max() < 2e-6
    y_edges = (yk[..., None] + offsets).clamp(-5, 5)  # and around every y-knot
    x2, log_d_inv2 = s.inverse(y_edges, pk)
    y2, _ = s(x2, pk)
    assert torch.isfinite(x2).all() and ((y2 - y_edges).abs() * log_d_inv2.exp()).max() < 2e-6  # in x-units
    # the float32 evaluation agrees with float64 arithmetic on the same (float32) knots to a few ulps
    knots32, dk32 = s.knots(pk)
    y64, _ = rq_forward(x.double(), knots32.double(), dk32.double())
    assert (y64 - y.double()).abs().max() < 2e-6
    x64, _ = rq_inverse(y_edges.double(), knots32.double(), dk32.double())
    assert ((x64 - x2.double()).abs() * log_d_inv2.double().neg().exp()).max() < 5e-6
    # with parameters of a typical scale (knot derivatives ≳ 0.05) the log-derivatives cancel too;
    # with the extreme ones above, y near a knot where h' ~ 1e-3 carries too few bits to say
    # which side of the knot x lies on, and log h' changes by O(1) within 1e-5 of it
    p1 = _params((64,), s.num_params, scale=1.0, dtype=torch.float32)
    pk1 = p1[:, None, None].expand(-1, 9, len(offsets), -1)
    x1 = (s.knots(p1)[0][:, 0][..., None] + offsets).clamp(-5, 5)
    y1, log_d1 = s(x1, pk1)
    x1_back, log_d1_inv = s.inverse(y1, pk1)
    assert (x1_back - x1).abs().max() < 2e-5
    assert (log_d1 + log_d1_inv).abs().max() < 5e-3


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 2, 2)])
def test_any_shape_and_dtype_with_gradients(shape: tuple[int, ...]) -> None:
    s = RationalQuadraticSpline(bins=4, bound=1.0)
    for dtype in (torch.float32, F64):
        x = (torch.rand(shape, dtype=dtype) * 1.8 - 0.9).requires_grad_(True)  # inside [-B, B]
        p = torch.randn(*shape, s.num_params, dtype=dtype, requires_grad=True)
        y, log_d = s(x, p)
        x_back, _ = s.inverse(y, p)
        assert y.shape == log_d.shape == torch.Size(shape) and y.dtype == log_d.dtype == dtype
        (y.sum() + log_d.sum() + x_back.sum()).backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


@pytest.mark.parametrize("spline", [RationalQuadraticSpline(bins=4, bound=2.0), CircularSpline(bins=3)])
def test_gradients_in_both_directions_match_finite_differences(spline) -> None:
    """gradcheck of (y, log h') with respect to the input and the parameters, forward and inverse
    (the inverse's gradients train flows that are fitted through their samples, e.g. IAF posteriors)."""
    g = torch.Generator().manual_seed(0)
    v = ((torch.rand(6, generator=g, dtype=F64) * 2 - 1) * 2.9).requires_grad_(True)
    p = torch.randn(6, spline.num_params, generator=g, dtype=F64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: spline(a, b), (v, p))
    assert torch.autograd.gradcheck(lambda a, b: spline.inverse(a, b), (v, p))


def test_bad_settings_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="bins"):
        RationalQuadraticSpline(bins=0)
    with pytest.raises(ConfigError, match="min_bin"):
        RationalQuadraticSpline(bins=10, min_bin=0.1)
    with pytest.raises(ConfigError, match="bound"):
        RationalQuadraticSpline(bound=0.0)
    with pytest.raises(ConfigError, match="takes 23 parameters; found 22"):
        RationalQuadraticSpline(bins=8)(torch.zeros(3), torch.zeros(3, 22))
    with pytest.raises(ConfigError, match="takes 13 parameters"):
        CircularSpline(bins=4)(torch.zeros(3), torch.zeros(3, 12))


@pytest.mark.parametrize("name", ["nsf", "nsf-coupling"])
def test_conditional_nsf_presets_are_normalized_for_every_label(name: str) -> None:
    """∫ p(x | c) dx = 1 for each label c on a grid over [-8, 8]², and the label changes p."""
    torch.manual_seed(0)
    info = DataInfo(event_shape=(2,), support="real", num_classes=3)
    model = build_model({"name": name, "transforms": 2, "hidden": [16], "bins": 5, "conditional": True}, info)
    with torch.no_grad():  # move away from the near-identity initialisation
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    n = 240
    edges = torch.linspace(-8, 8, n + 1)
    mids = (edges[1:] + edges[:-1]) / 2
    grid = torch.stack(torch.meshgrid(mids, mids, indexing="ij"), -1).reshape(-1, 2)
    densities = []
    with torch.no_grad():
        for label in range(3):
            log_p = model.log_prob(grid, torch.full((len(grid),), label))
            densities.append(log_p.double().exp())
            mass = float(densities[-1].sum() * (16 / n) ** 2)
            assert mass == pytest.approx(1.0, abs=3e-3), f"label {label}: ∫p = {mass}"
    assert (densities[0] - densities[1]).abs().max() > 1e-3
    x = model.sample(4, torch.tensor([0, 1, 2, 0]), generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 2) and torch.isfinite(x).all()


# ----------------------------------------------------------------------------- circle and torus


def test_circular_spline_fixes_the_ends_and_closes_smoothly() -> None:
    s = CircularSpline(bins=6)
    p = _params((10,), s.num_params, scale=2.0)
    knots, dk, phi = s.knots(p)
    torch.testing.assert_close(dk[:, 0], dk[:, -1], atol=0, rtol=0)  # equal end derivatives
    no_shift = torch.cat([p[:, :-1], torch.zeros(10, 1, dtype=F64)], dim=1)
    ends = torch.tensor([-math.pi, math.pi - 1e-12], dtype=F64).expand(10, 2)
    y, log_d = s(ends, no_shift[:, None].expand(-1, 2, -1))
    torch.testing.assert_close(
        y[:, 0], torch.full((10,), -math.pi, dtype=F64), atol=1e-14, rtol=0
    )  # -π -> -π
    torch.testing.assert_close(y[:, 1], torch.full((10,), math.pi, dtype=F64), atol=1e-10, rtol=0)  # π -> π
    torch.testing.assert_close(log_d[:, 0], log_d[:, 1], atol=1e-9, rtol=0)  # h'(-π) = h'(π)
    # with the rotation: -π -> wrap(-π + φ), and the map is continuous across -π ≡ π
    y, log_d = s(ends, p[:, None].expand(-1, 2, -1))
    torch.testing.assert_close(y[:, 0], wrap(-math.pi + phi), atol=1e-12, rtol=0)
    gap = wrap(y[:, 1] - y[:, 0])
    assert gap.abs().max() < 1e-9


def test_circular_spline_is_a_bijection_of_the_circle() -> None:
    s = CircularSpline(bins=8)
    theta = torch.linspace(-math.pi, math.pi, 4001, dtype=F64)[:-1]
    for seed in range(3):
        p = _params((), s.num_params, scale=3.0, seed=seed).expand(len(theta), -1)
        y, log_d = s(theta, p)
        assert ((y >= -math.pi) & (y < math.pi)).all()
        # orientation-preserving: the image winds once around the circle, every step forward
        steps = wrap(y.roll(-1) - y)
        assert (steps > 0).all()
        assert steps.sum().item() == pytest.approx(2 * math.pi, abs=1e-9)
        torch.testing.assert_close(log_d, _derivative(s, theta, p).log(), atol=1e-9, rtol=1e-9)
        back, log_d_inv = s.inverse(y, p)
        torch.testing.assert_close(wrap(back - theta), torch.zeros_like(theta), atol=1e-9, rtol=0)
        torch.testing.assert_close(log_d + log_d_inv, torch.zeros_like(theta), atol=1e-9, rtol=0)
        # inputs are read modulo 2π
        y_shifted, _ = s(theta + 2 * math.pi, p)
        torch.testing.assert_close(wrap(y_shifted - y), torch.zeros_like(y), atol=1e-9, rtol=0)


def test_wrap_returns_representatives_in_the_half_open_interval() -> None:
    for dtype in (torch.float32, F64):
        pi = torch.tensor(math.pi, dtype=dtype)
        x = torch.tensor([-3 * math.pi, -math.pi, 0.0, math.pi, 7.0, -1e-9 - math.pi], dtype=dtype)
        w = wrap(x)
        assert ((w >= -pi) & (w < pi)).all()
        torch.testing.assert_close(torch.cos(w), torch.cos(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.sin(w), torch.sin(x), atol=1e-5, rtol=0)


def test_uniform_circle_base() -> None:
    base = UniformCircle(2)
    p = base(n=3)
    assert p.batch_shape == (3,) and p.event_shape == (2,)
    inside = torch.tensor([[0.0, -math.pi], [3.0, -3.0], [1.0, 2.0]])
    torch.testing.assert_close(p.log_prob(inside), torch.full((3,), -2 * math.log(2 * math.pi)))
    assert torch.isinf(p.log_prob(torch.tensor([[math.pi, 0.0], [0.0, 4.0], [-4.0, 0.0]]))).all()
    draws = base().sample((4000,))
    assert ((draws >= -math.pi) & (draws < math.pi)).all()
    assert draws.mean(0).abs().max() < 0.15  # mean 0, std π/√3 / √4000 ≈ 0.029
    assert base(c=torch.zeros(5, 1)).batch_shape == (5,)
    exact = base.double()().log_prob(torch.zeros(2, dtype=F64))  # ±π rounded in float64, not float32
    assert exact.dtype == F64 and abs(float(exact) + 2 * math.log(2 * math.pi)) < 1e-14


def test_torus_toy_matches_its_density() -> None:
    x = toys.torus(20000, torch.Generator().manual_seed(0))
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    assert ((x >= -math.pi) & (x < math.pi)).all()
    n = 400
    edges = torch.linspace(-math.pi, math.pi, n + 1, dtype=F64)
    mids = (edges[1:] + edges[:-1]) / 2
    grid = torch.stack(torch.meshgrid(mids, mids, indexing="ij"), -1)
    p = toys.torus_log_prob(grid).exp()
    cell = (2 * math.pi / n) ** 2
    assert float(p.sum() * cell) == pytest.approx(1.0, abs=1e-9)
    # Monte Carlo entropy of the samples agrees with the quadrature entropy (sampler = density)
    h_grid = float(-(p * p.log()).sum() * cell)
    log_p = toys.torus_log_prob(x)
    mc, se = float(-log_p.mean()), float(log_p.std() / math.sqrt(len(x)))
    assert abs(mc - h_grid) < 4 * se
    # the circular means of each angle agree with the mixture's: E e^{iθ} = Σ_k w_k A(κ) e^{iμ}
    z = torch.polar(torch.ones_like(x, dtype=F64), x.double()).mean(0)
    z_grid = (p[..., None] * torch.polar(torch.ones_like(grid), grid)).sum((0, 1)) * cell
    assert (z - z_grid).abs().max() < 0.02


def test_trained_torus_flow_is_normalized_and_fits() -> None:
    torch.manual_seed(0)
    info = DataInfo(event_shape=(2,), support="real")
    model = build_model({"name": "torus", "transforms": 2, "hidden": [32], "bins": 6}, info)
    data = toys.torus(2048, torch.Generator().manual_seed(1))
    held_out = toys.torus(2000, torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(3)
    for _ in range(150):
        batch = data[torch.randint(0, len(data), (256,), generator=g)]
        opt.zero_grad()
        model.loss(batch).loss.backward()
        opt.step()
    model.eval()
    n = 300
    edges = torch.linspace(-math.pi, math.pi, n + 1)
    mids = (edges[1:] + edges[:-1]) / 2
    grid = torch.stack(torch.meshgrid(mids, mids, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        log_q = model.log_prob(grid)
        nll = float(-model.log_prob(held_out).mean())
        samples = model.sample(500, generator=torch.Generator().manual_seed(4))
    mass = float(log_q.double().exp().sum() * (2 * math.pi / n) ** 2)
    assert mass == pytest.approx(1.0, abs=2e-3), f"∫q = {mass}"
    entropy = float(-toys.torus_log_prob(held_out).mean())
    uniform = 2 * math.log(2 * math.pi)
    # it learned: far below the uniform's NLL, and within 0.25 nats of the data's entropy
    assert nll < entropy + 0.25 < uniform - 0.5, (nll, entropy, uniform)
    assert ((samples >= -math.pi) & (samples < math.pi)).all()


def test_torus_flow_rejects_data_that_are_not_angles() -> None:
    info = DataInfo(event_shape=(2,), support="real")
    model = build_model({"name": "torus", "transforms": 1, "hidden": [4], "bins": 3}, info)
    for bad in (
        torch.tensor([[0.0, 4.0]]),
        torch.tensor([[math.pi, 0.0]]),
        torch.tensor([[0.0, float("nan")]]),
    ):
        with pytest.raises(DataError, match=r"angles in radians in \[-π, π\)"):
            model.log_prob(bad)
    assert torch.isfinite(model.log_prob(torch.tensor([[-math.pi, 3.14159]]))).all()
    with pytest.raises(ConfigError, match="D ≥ 2"):
        build_model("torus", DataInfo(event_shape=(1,), support="real"))
    with pytest.raises(ConfigError, match="support 'unit'"):
        build_model("torus", DataInfo(event_shape=(1, 8, 8), support="unit", levels=17))
