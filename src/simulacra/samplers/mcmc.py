"""Markov chain Monte Carlo kernels for any differentiable log-density, in numpyro's init/step style.

A kernel moves B chains at once. ``init(x0, log_prob)`` evaluates the log-density and its
gradient at the starting points; ``step(state, log_prob, generator)`` makes one transition; the
state carries everything the next step needs (position, log-density, gradient) and the
acceptance statistics. ``log_prob(x (B, *event)) -> (B,)`` is any differentiable unnormalised
log-density in nats: a flow's ``log_prob``, an energy's negative −E(x), a posterior.

Both kernels here follow the Langevin diffusion dx = ∇ log p(x) dt + √2 dw, whose stationary law
is p, discretised with step ε (Roberts & Tweedie 1996):

* :class:`UnadjustedLangevin` (ULA): x' = x + ε ∇ log p(x) + √(2ε) z, z ~ N(0, I). Cheap, but
  the discretisation biases its stationary law: for p = N(0, σ²) the chain is the AR(1)
  x' = (1 − ε/σ²) x + √(2ε) z, whose stationary variance is σ² / (1 − ε/(2σ²)) > σ².
* :class:`MALA` (Metropolis-adjusted Langevin): the same proposal, accepted with probability

      min(1, p(x') q(x | x') / (p(x) q(x' | x))),   q(x' | x) = N(x'; x + ε ∇ log p(x), 2ε I),

  which makes p exactly invariant; the acceptance rate tends to 1 as ε → 0.

The kernels need gradients, so they turn autograd on internally (even under ``torch.no_grad``
or ``torch.inference_mode``); the states they return hold no graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from simulacra.errors import ConfigError, DataError
from simulacra.processes.gaussian import noise_like

LogDensity = Callable[[Tensor], Tensor]
"""``log_prob(x (B, *event)) -> (B,)``: a differentiable unnormalised log-density, nats."""


@dataclass(frozen=True)
class MCMCState:
    """Where B chains stand after ``num_steps`` transitions.

    Attributes:
        x: (B, *event) positions.
        log_prob: (B,) log p(x), nats.
        grad: (B, *event) ∇ₓ log p(x).
        accept_prob: (B,) acceptance probability of the last proposal (1 for ULA, and before
            the first step).
        mean_accept_prob: (B,) the acceptance probabilities averaged over all steps so far.
        num_steps: transitions made since ``init``.
    """

    x: Tensor
    log_prob: Tensor
    grad: Tensor
    accept_prob: Tensor
    mean_accept_prob: Tensor
    num_steps: int = 0

    @property
    def acceptance_rate(self) -> float:
        """The mean acceptance probability over steps and chains, in [0, 1]."""
        return float(self.mean_accept_prob.mean())


@runtime_checkable
class Kernel(Protocol):
    """A Markov transition kernel on B parallel chains (numpyro's ``init``/``sample`` split)."""

    def init(self, x0: Tensor, log_prob: LogDensity) -> MCMCState:
        """The state at the starting points x0 (B, *event)."""
        ...

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        """One transition of every chain, its randomness drawn from ``generator``."""
        ...


def value_and_grad(log_prob: LogDensity, x: Tensor) -> tuple[Tensor, Tensor]:
    """(log p(x) (B,), ∇ₓ log p(x) (B, *event)), both detached; autograd is on inside, whatever
    the caller's mode."""
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        value = log_prob(x)
        if value.shape != (x.shape[0],):
            raise DataError(
                f"log_prob must return one value per chain, shape ({x.shape[0]},); found {tuple(value.shape)}"
            )
        (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad.detach()


def _advance(state: MCMCState, x: Tensor, value: Tensor, grad: Tensor, accept_prob: Tensor) -> MCMCState:
    """The next state, with the running mean of the acceptance probabilities updated."""
    k = state.num_steps + 1
    mean = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / k
    return MCMCState(x, value, grad, accept_prob, mean, k)


@dataclass(frozen=True)
class _Langevin:
    """What both Langevin kernels share: the step size ε > 0 and ``init``."""

    step_size: float

    def __post_init__(self) -> None:
        if not (self.step_size > 0 and math.isfinite(self.step_size)):
            raise ConfigError(f"a Langevin step size must be positive and finite; found {self.step_size}")

    def init(self, x0: Tensor, log_prob: LogDensity) -> MCMCState:
        """The state at x0 (B, *event): log p and ∇ log p there, acceptance statistics at 1."""
        if x0.dim() < 1 or x0.shape[0] == 0:
            raise DataError(f"x0 must be a batch of chains (B, *event) with B ≥ 1; found {tuple(x0.shape)}")
        value, grad = value_and_grad(log_prob, x0)
        ones = torch.ones_like(value)
        return MCMCState(x0.detach(), value, grad, ones, ones, 0)

    def propose(self, state: MCMCState, generator: torch.Generator | None) -> Tensor:
        """x' = x + ε ∇ log p(x) + √(2ε) z, z ~ N(0, I), (B, *event)."""
        z = noise_like(state.x, generator)
        return state.x + self.step_size * state.grad + math.sqrt(2.0 * self.step_size) * z


@dataclass(frozen=True)
class UnadjustedLangevin(_Langevin):
    """ULA: x' = x + ε ∇ log p(x) + √(2ε) z, every proposal kept (Roberts & Tweedie 1996).

    Biased by O(ε): for p = N(0, σ²) its stationary variance is σ² / (1 − ε/(2σ²)).

    Args:
        step_size: ε > 0.
    """

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        x = self.propose(state, generator)
        value, grad = value_and_grad(log_prob, x)
        return _advance(state, x, value, grad, torch.ones_like(value))


@dataclass(frozen=True)
class MALA(_Langevin):
    """Metropolis-adjusted Langevin (Roberts & Tweedie 1996): the ULA proposal
    x' ~ q(· | x) = N(x + ε ∇ log p(x), 2ε I), accepted with probability
    min(1, p(x') q(x | x') / (p(x) q(x' | x))); p is exactly invariant.

    Args:
        step_size: ε > 0; the acceptance rate tends to 1 as ε → 0.
    """

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        eps = self.step_size
        x, proposal = state.x, self.propose(state, generator)
        value, grad = value_and_grad(log_prob, proposal)

        def log_q(to: Tensor, start: Tensor, start_grad: Tensor) -> Tensor:
            """log N(to; start + ε ∇ log p(start), 2ε I) up to a constant, (B,)."""
            return -(to - start - eps * start_grad).flatten(1).square().sum(1) / (4.0 * eps)

        log_ratio = value - state.log_prob + log_q(x, proposal, grad) - log_q(proposal, x, state.grad)
        log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)  # a proposal off the support: rejected
        u = torch.rand(value.shape, generator=generator, dtype=value.dtype, device=value.device)
        accept = torch.log(u) < log_ratio  # (B,)
        keep = accept.reshape(-1, *([1] * (x.dim() - 1)))
        return _advance(
            state,
            torch.where(keep, proposal, x),
            torch.where(accept, value, state.log_prob),
            torch.where(keep, grad, state.grad),
            log_ratio.clamp(max=0.0).exp(),
        )


class Chain(NamedTuple):
    """What :func:`run_chain` returns: the final state and the positions it kept."""

    state: MCMCState
    samples: Tensor
    """(S, B, *event): the positions after every ``thin``-th step (S = steps // thin)."""


def run_chain(
    kernel: Kernel,
    x0: Tensor,
    log_prob: LogDensity,
    steps: int,
    generator: torch.Generator | None = None,
    *,
    thin: int | None = None,
) -> Chain:
    """Run B chains from x0 (B, *event) for ``steps`` transitions of ``kernel``.

    Args:
        kernel: e.g. ``MALA(step_size=0.1)``.
        x0: (B, *event) starting points.
        log_prob: the target's log-density, x (B, *event) -> (B,), differentiable.
        steps: transitions, ≥ 1.
        generator: the only source of randomness.
        thin: keep the positions after every ``thin``-th step (default: only the last).

    Returns:
        :class:`Chain`: the final :class:`MCMCState` and the kept positions (S, B, *event).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"a chain needs steps >= 1; found {steps!r}")
    thin = steps if thin is None else thin
    if isinstance(thin, bool) or not isinstance(thin, int) or not 1 <= thin <= steps:
        raise ConfigError(f"thin must be an integer in [1, steps={steps}]; found {thin!r}")
    state = kernel.init(x0, log_prob)
    kept = []
    for i in range(1, steps + 1):
        state = kernel.step(state, log_prob, generator)
        if i % thin == 0:
            kept.append(state.x)
    return Chain(state, torch.stack(kept))


__all__ = [
    "MALA",
    "Chain",
    "Kernel",
    "LogDensity",
    "MCMCState",
    "UnadjustedLangevin",
    "run_chain",
    "value_and_grad",
]
