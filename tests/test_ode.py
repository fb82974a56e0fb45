"""The Runge–Kutta solvers (src/simulacra/numerics/ode.py) against closed-form solutions.

* exact solutions: exponential decay, the harmonic oscillator over a full period (tensor and
  tuple states), the time-dependent dy/dt = t·y, integrated forwards and backwards;
* observed orders of convergence: halving the step divides the error by 2^p (euler 1, heun 2,
  rk4 4), and dopri5's global error scales with its tolerance;
* dopri5's bookkeeping: 6 evaluations per attempted step after the first two (FSAL), the PI and
  standard controllers, the max_steps error;
* gradients through the solver equal the analytic sensitivities of y(T) = y0 exp(aT).
"""

from __future__ import annotations

import math

import pytest
import torch

from simulacra.errors import ConfigError, UnknownNameError
from simulacra.numerics.ode import ODE_METHODS, ODESolverError, odeint

F64 = torch.float64


def _decay(t: float, y: torch.Tensor) -> torch.Tensor:
    return -0.7 * y


def _oscillator(t: float, y: torch.Tensor) -> torch.Tensor:
    """q' = p, p' = −q on y = (..., 2): a rotation with period 2π."""
    return torch.stack([y[..., 1], -y[..., 0]], -1)


Y0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)


@pytest.mark.parametrize(
    ("method", "steps", "tol"), [("dopri5", None, 1e-8), ("rk4", 200, 1e-9), ("heun", 2000, 1e-6)]
)
def test_exponential_decay(method: str, steps: int | None, tol: float) -> None:
    out = odeint(_decay, Y0, 0.0, 3.0, method=method, steps=steps, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.y, Y0 * math.exp(-0.7 * 3.0), atol=tol, rtol=0)


def test_harmonic_oscillator_returns_after_one_period() -> None:
    y0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=F64)
    out = odeint(_oscillator, y0, 0.0, 2 * math.pi, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.y, y0, atol=1e-8, rtol=0)
    # a quarter period rotates (q, p) to (p, −q)
    quarter = odeint(_oscillator, y0, 0.0, math.pi / 2, rtol=1e-10, atol=1e-10).y
    torch.testing.assert_close(quarter, torch.stack([y0[:, 1], -y0[:, 0]], -1), atol=1e-8, rtol=0)


def test_tuple_states_are_integrated_jointly() -> None:
    """(q, p) as a tuple gives the same answer as the stacked tensor, and keeps its structure."""
    q0, p0 = torch.tensor([1.0, 0.3], dtype=F64), torch.tensor([0.0, -2.0], dtype=F64)
    out = odeint(lambda t, s: (s[1], -s[0]), (q0, p0), 0.0, 1.0, rtol=1e-10, atol=1e-10)
    assert isinstance(out.y, tuple) and len(out.y) == 2
    torch.testing.assert_close(out.y[0], q0 * math.cos(1.0) + p0 * math.sin(1.0), atol=1e-9, rtol=0)
    torch.testing.assert_close(out.y[1], p0 * math.cos(1.0) - q0 * math.sin(1.0), atol=1e-9, rtol=0)


@pytest.mark.parametrize(("method", "steps"), [("dopri5", None), ("rk4", 400)])
def test_time_dependent_field_forwards_and_backwards(method: str, steps: int | None) -> None:
    """dy/dt = t·y has y(t1) = y(t0) exp((t1² − t0²)/2); from 2 back to 0.5 it runs backwards."""
    fwd = odeint(lambda t, y: t * y, Y0, 0.5, 2.0, method=method, steps=steps, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fwd.y, Y0 * math.exp((4.0 - 0.25) / 2), atol=1e-7, rtol=1e-9)
    back = odeint(lambda t, y: t * y, fwd.y, 2.0, 0.5, method=method, steps=steps, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(back.y, Y0, atol=1e-8, rtol=1e-9)


def test_backward_integration_inverts_a_nonlinear_forward() -> None:
    def f(t: float, y: torch.Tensor) -> torch.Tensor:
        return torch.sin(y) + 0.5 * math.cos(3 * t) * y

    y1 = odeint(f, Y0, 0.0, 1.5, rtol=1e-10, atol=1e-10).y
    assert (y1 - Y0).abs().max() > 0.1  # the map is far from the identity
    torch.testing.assert_close(odeint(f, y1, 1.5, 0.0, rtol=1e-10, atol=1e-10).y, Y0, atol=1e-8, rtol=0)


def _error(method: str, steps: int) -> float:
    y = odeint(lambda t, y: t * y, Y0, 0.0, 1.5, method=method, steps=steps).y
    return (y - Y0 * math.exp(1.5**2 / 2)).abs().max().item()


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_observed_order_of_convergence(method: str, order: int) -> None:
    """Halving the step divides the global error by 2^p: log2(e(h) / e(h/2)) ≈ p."""
    errors = [_error(method, n) for n in (40, 80, 160)]
    observed = [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:])]
    assert observed == pytest.approx([order, order], abs=0.15), observed
    assert ODE_METHODS.get(method).order == order


@pytest.mark.parametrize("controller", ["pi", "standard"])
def test_dopri5_meets_its_tolerance(controller: str) -> None:
    """The global error tracks the tolerance, and tighter tolerances cost more evaluations."""
    exact = Y0 * math.exp(1.5**2 / 2)
    nfevs = []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        out = odeint(lambda t, y: t * y, Y0, 0.0, 1.5, rtol=tol, atol=tol, controller=controller)
        error = ((out.y - exact).abs() / (tol + tol * exact.abs())).max().item()
        assert error < 2.0, f"tol {tol}: error {error} tolerances"
        # FSAL: f(t0), f for the first-step guess, then 6 new stages per attempted step
        assert out.nfev == 2 + 6 * (out.steps + out.rejected)
        nfevs.append(out.nfev)
    assert nfevs == sorted(nfevs) and nfevs[-1] > 2 * nfevs[0]


def test_a_given_first_step_skips_the_selection() -> None:
    out = odeint(_decay, Y0, 0.0, 2.0, rtol=1e-8, atol=1e-8, first_step=0.05)
    assert out.nfev == 1 + 6 * (out.steps + out.rejected)
    torch.testing.assert_close(out.y, Y0 * math.exp(-1.4), atol=1e-7, rtol=0)


def test_dopri5_in_float32() -> None:
    """Tolerances below float32's resolution are raised, not chased into a step-size underflow."""
    y0 = Y0.float()
    out = odeint(_decay, y0, 0.0, 2.0, rtol=1e-12, atol=1e-12)
    assert out.y.dtype == torch.float32
    torch.testing.assert_close(out.y, y0 * math.exp(-1.4), atol=1e-5, rtol=1e-5)


def test_gradients_through_the_solver_match_the_sensitivities() -> None:
    """y(T) = y0 exp(aT): ∂y(T)/∂y0 = exp(aT), ∂y(T)/∂a = T y0 exp(aT)."""
    T = 1.3
    for method, steps in (("dopri5", None), ("rk4", 100)):
        y0 = torch.tensor([0.8, -1.2], dtype=F64, requires_grad=True)
        a = torch.tensor(-0.6, dtype=F64, requires_grad=True)
        y = odeint(lambda t, y, a=a: a * y, y0, 0.0, T, method=method, steps=steps, rtol=1e-10, atol=1e-10).y
        g_y0, g_a = torch.autograd.grad(y.sum(), (y0, a))
        growth = math.exp(-0.6 * T)
        torch.testing.assert_close(g_y0, torch.full((2,), growth, dtype=F64), atol=1e-8, rtol=0)
        torch.testing.assert_close(g_a, T * y0.detach().sum() * growth, atol=1e-8, rtol=0)


def test_zero_span_and_bad_arguments() -> None:
    assert odeint(_decay, Y0, 1.0, 1.0).nfev == 0
    with pytest.raises(ConfigError, match="steps"):
        odeint(_decay, Y0, 0.0, 1.0, method="rk4")
    with pytest.raises(ConfigError, match="chooses its own steps"):
        odeint(_decay, Y0, 0.0, 1.0, steps=10)
    with pytest.raises(UnknownNameError):
        odeint(_decay, Y0, 0.0, 1.0, method="dopri8")
    with pytest.raises(ConfigError, match="floating-point"):
        odeint(_decay, torch.arange(3), 0.0, 1.0)
    with pytest.raises(ODESolverError, match="max_steps"):
        odeint(lambda t, y: math.cos(50 * t) * y, Y0, 0.0, 10.0, rtol=1e-10, atol=1e-10, max_steps=20)
