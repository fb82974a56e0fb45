"""UMNN (src/simulacra/flows/monotonic.py): quadrature, monotonicity, inverse and derivatives.

* Clenshaw–Curtis with n intervals integrates every polynomial of degree ≤ n exactly (and not
  degree n + 2), and e^s to 1e-10;
* a UMNN with a constant integrand is the affine map β + softplus(b)·x;
* h is strictly increasing, and log h'(x) (the forward's second output) equals autograd's;
* the bisection inverse reaches float resolution, also far out; its gradients are the implicit
  ones (∂x/∂y = 1/h'(x), gradcheck in θ).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from simulacra.errors import ConfigError
from simulacra.flows.monotonic import UMNN, clenshaw_curtis

F64 = torch.float64


@pytest.mark.parametrize("n", [1, 2, 7, 8, 16])
def test_clenshaw_curtis_is_exact_for_polynomials_of_degree_n(n: int) -> None:
    s, w = clenshaw_curtis(n)
    assert s.shape == w.shape == (n + 1,) and (w > 0).all()
    for k in range(n + 1):
        exact = 2 / (k + 1) if k % 2 == 0 else 0.0
        assert (w * s**k).sum().item() == pytest.approx(exact, abs=1e-13), f"n={n}, degree {k}"
    k = n + 2 if n % 2 == 0 else n + 1  # the first even degree beyond exactness
    assert abs((w * s**k).sum().item() - 2 / (k + 1)) > 1e-9


def test_clenshaw_curtis_integrates_exp() -> None:
    s, w = clenshaw_curtis(16)
    assert (w * s.exp()).sum().item() == pytest.approx(math.e - 1 / math.e, abs=1e-10)
    with pytest.raises(ConfigError):
        clenshaw_curtis(0)


def _umnn(positive: str = "softplus", seed: int = 0) -> UMNN:
    torch.manual_seed(seed)
    return UMNN(3, [16, 16], nodes=24, positive=positive).double()


def _params(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, 4, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_constant_integrand_gives_an_affine_map() -> None:
    u = _umnn()
    with torch.no_grad():
        for p in u.integrand.parameters():
            p.zero_()
        u.integrand[-1].bias.fill_(0.3)
    x = torch.linspace(-5, 5, 11, dtype=F64)
    params = _params((11,))
    y, log_d = u(x, params)
    slope = F.softplus(torch.tensor(0.3, dtype=F64))
    torch.testing.assert_close(y, params[:, -1] + slope * x)
    torch.testing.assert_close(log_d, slope.log().expand(11))


@pytest.mark.parametrize("positive", ["softplus", "elu"])
def test_umnn_is_strictly_increasing(positive: str) -> None:
    u = _umnn(positive)
    x = torch.linspace(-20, 20, 2001, dtype=F64).unsqueeze(0).expand(3, -1)  # 3 parameter sets
    params = _params((3, 1)).expand(3, 2001, 4)
    with torch.no_grad():
        y, log_d = u(x, params)
    assert (y.diff(dim=-1) > 0).all()
    assert torch.isfinite(log_d).all()


@pytest.mark.parametrize("positive", ["softplus", "elu"])
def test_log_derivative_equals_autograd(positive: str) -> None:
    u = _umnn(positive)
    x = (torch.randn(6, 3, dtype=F64) * 3).requires_grad_(True)
    y, log_d = u(x, _params((6, 3)))
    (dy,) = torch.autograd.grad(y.sum(), x)  # coordinates are independent: the diagonal
    torch.testing.assert_close(log_d, dy.log(), atol=1e-10, rtol=0)


def test_bisection_inverse_reaches_float_resolution() -> None:
    u = _umnn()
    x = torch.cat([torch.randn(40, dtype=F64) * 3, torch.tensor([0.0, 1e-9, -250.0, 400.0], dtype=F64)])
    params = _params((44,))
    with torch.no_grad():
        y, log_d = u(x, params)
        x_back, log_d_inv = u.inverse(y, params)
    torch.testing.assert_close(x_back, x, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(log_d_inv, -log_d, atol=1e-12, rtol=0)
    # float32: the same to float32's resolution
    u32 = u.float()
    with torch.no_grad():
        y32, _ = u32(x.float(), params.float())
        back32, _ = u32.inverse(y32, params.float())
    torch.testing.assert_close(back32, x.float(), atol=1e-5, rtol=1e-5)


def test_inverse_gradients_are_the_implicit_ones() -> None:
    """x = h⁻¹(y; θ): ∂x/∂y = 1/h'(x) and ∂x/∂θ = −(∂h/∂θ)(x) / h'(x) (implicit function theorem),
    and a central finite difference in θ agrees."""
    u = _umnn()
    y = torch.randn(5, dtype=F64, requires_grad=True)
    params = _params((5,)).requires_grad_(True)
    x, log_d_inv = u.inverse(y, params)
    dx_dy, dx_dp = torch.autograd.grad(x.sum(), (y, params))
    torch.testing.assert_close(dx_dy, log_d_inv.detach().exp(), atol=1e-10, rtol=0)
    p_fixed = params.detach().requires_grad_(True)
    h, log_d = u(x.detach(), p_fixed)
    (dh_dp,) = torch.autograd.grad(h.sum(), p_fixed)
    torch.testing.assert_close(dx_dp, -dh_dp / log_d.detach().exp().unsqueeze(-1), atol=1e-10, rtol=0)
    step = torch.zeros_like(params).normal_() * 1e-5
    with torch.no_grad():
        fd = (u.inverse(y, params + step)[0] - u.inverse(y, params - step)[0]) / 2
    torch.testing.assert_close(fd, (dx_dp * step).sum(-1), atol=1e-10, rtol=1e-6)


def test_bad_settings_are_reported() -> None:
    with pytest.raises(ConfigError, match="positive"):
        UMNN(positive="relu")
    with pytest.raises(ConfigError, match="parameters per coordinate"):
        _umnn()(torch.zeros(2, dtype=F64), torch.zeros(2, 3, dtype=F64))
