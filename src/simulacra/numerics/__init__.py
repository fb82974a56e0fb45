"""Numerical methods on tensors that know nothing of networks, data or models.

:mod:`simulacra.numerics.ode`: explicit Runge–Kutta solvers (dopri5, rk4, heun, euler) for
dy/dt = f(t, y), used by continuous normalizing flows (:mod:`simulacra.flows.continuous`) and
the probability-flow ODE of diffusion models (:mod:`simulacra.samplers.ode`).
"""

from simulacra.numerics.ode import ODE_METHODS, ODESolution, ODESolverError, odeint, rms_norm

__all__ = ["ODE_METHODS", "ODESolution", "ODESolverError", "odeint", "rms_norm"]
