"""Markov chain Monte Carlo kernels for any differentiable log-density, in numpyro's init/step style.

A kernel moves B chains at once. ``init(x0, log_prob)`` evaluates the log-density and its
gradient at the starting points; ``step(state, log_prob, generator)`` makes one transition; the
state carries everything the next step needs (position, log-density, gradient) and the
acceptance statistics. ``log_prob(x (B, *event)) -> (B,)`` is any differentiable unnormalised
log-density in nats: a flow's ``log_prob``, an energy's negative −E(x), a posterior.

The Langevin kernels follow the diffusion dx = ∇ log p(x) dt + √2 dw, whose stationary law is p,
discretised with step ε (Roberts & Tweedie 1996):

* :class:`UnadjustedLangevin` (ULA): x' = x + ε ∇ log p(x) + √(2ε) z, z ~ N(0, I). Cheap, but
  the discretisation biases its stationary law: for p = N(0, σ²) the chain is the AR(1)
  x' = (1 − ε/σ²) x + √(2ε) z, whose stationary variance is σ² / (1 − ε/(2σ²)) > σ².
* :class:`SGLD`, the update as energy-based models use it (IGEBM, Du & Mordatch 2019; JEM,
  Grathwohl et al. 2020): x' = x + ε ∇ log p(x) + s z with the noise scale s decoupled from ε
  (JEM: ε = 1, s = 0.01 on log p = −E). s = √(2ε) is ULA exactly; any other s samples another
  law. For p = N(0, σ²) the chain is the AR(1) x' = a x + s z with a = 1 − ε/σ², whose variance
  after t steps is a^{2t} v₀ + s² (1 − a^{2t}) / (1 − a²) and whose stationary variance
  (0 < ε < 2σ²) is

      v∞ = s² / (1 − a²) = s² σ⁴ / (ε (2σ² − ε)),

  ≈ σ² · s²/(2ε) for small ε: as ε → 0 the chain samples the tempered law p^{1/T} with
  temperature T = s²/(2ε) (T < 1 sharpens p towards its modes, as JEM's settings do).
* :class:`MALA` (Metropolis-adjusted Langevin): the ULA proposal, accepted with probability

      min(1, p(x') q(x | x') / (p(x) q(x' | x))),   q(x' | x) = N(x'; x + ε ∇ log p(x), 2ε I),

  which makes p exactly invariant; the acceptance rate tends to 1 as ε → 0.
* :class:`HMC` (Hamiltonian Monte Carlo, Duane et al. 1987; Neal 2011): momentum p ~ N(0, I)
  (unit mass), L leapfrog steps of H(x, p) = −log p(x) + ½‖p‖²,

      p ← p + ε/2 ∇ log p(x),   x ← x + ε p,   p ← p + ε/2 ∇ log p(x),

  and the end point accepted with probability min(1, exp(H(x, p) − H(x', p'))). The leapfrog
  map is reversible and volume-preserving, so p is exactly invariant; as ε → 0, H is conserved
  and the acceptance rate tends to 1.

Bounded supports. Every kernel takes ``bounds = (lo, hi)``, a box [lo, hi] for every coordinate
(images in [−1, 1]). ULA and SGLD clamp the positions into the box after every step, as IGEBM
does: simple, and biased (the clamped chain piles mass on the faces of the box). MALA and HMC
reject every proposal that leaves the box (for HMC, every trajectory with a leapfrog position
outside it), which is exact for the target restricted to the box, p(x) 1[x ∈ box] / Z_box. The
log-density is only ever evaluated inside the box (at the clamped point of a proposal that is
rejected anyway), so a log_prob undefined outside the box is safe.

:class:`ReplayBuffer` keeps persistent chains between the updates of an energy-based model
(Du & Mordatch 2019): each batch of chains starts from stored chain ends, or, with a small
probability, from fresh noise.

The kernels need gradients, so they turn autograd on internally (even under ``torch.no_grad``
or ``torch.inference_mode``); the states they return hold no graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError, DataError
from simulacra.processes.gaussian import noise_like

LogDensity = Callable[[Tensor], Tensor]
"""``log_prob(x (B, *event)) -> (B,)``: a differentiable unnormalised log-density, nats."""

Bounds = tuple[float, float]
"""A box support (lo, hi) for every coordinate, lo < hi, both finite."""


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
    the caller's mode (a log p that does not depend on x has gradient 0)."""
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        value = log_prob(x)
        if value.shape != (x.shape[0],):
            raise DataError(
                f"log_prob must return one value per chain, shape ({x.shape[0]},); found {tuple(value.shape)}"
            )
        if value.requires_grad:
            (grad,) = torch.autograd.grad(value.sum(), x, allow_unused=True, materialize_grads=True)
        else:  # log p does not depend on x (a uniform density): ∇ log p = 0
            grad = torch.zeros_like(x)
    return value.detach(), grad.detach()


def check_bounds(bounds: Sequence[float] | None) -> Bounds | None:
    """``bounds`` as a (lo, hi) pair of floats, or None; ConfigError unless lo < hi, both finite."""
    if bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ConfigError(f"bounds must be a pair (lo, hi) of numbers; found {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"bounds must be finite with lo < hi; found ({lo}, {hi})")
    return lo, hi


def outside(x: Tensor, bounds: Bounds) -> Tensor:
    """(B,) bool: whether any coordinate of x (B, *event) lies outside the closed box [lo, hi]."""
    lo, hi = bounds
    return ((x < lo) | (x > hi)).flatten(1).any(1)


def _advance(state: MCMCState, x: Tensor, value: Tensor, grad: Tensor, accept_prob: Tensor) -> MCMCState:
    """The next state, with the running mean of the acceptance probabilities updated."""
    k = state.num_steps + 1
    mean = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / k
    return MCMCState(x, value, grad, accept_prob, mean, k)


def _metropolis(
    state: MCMCState,
    proposal: Tensor,
    value: Tensor,
    grad: Tensor,
    log_ratio: Tensor,
    generator: torch.Generator | None,
) -> MCMCState:
    """Accept each chain's proposal with probability min(1, exp(log_ratio)) (B,); NaN ratios
    (a proposal off the support) count as −∞."""
    log_ratio = torch.where(torch.isnan(log_ratio), -math.inf, log_ratio)
    where = generator.device if generator is not None else value.device
    u = torch.rand(value.shape, generator=generator, dtype=value.dtype, device=where).to(value.device)
    accept = torch.log(u) < log_ratio  # (B,)
    keep = accept.reshape(-1, *([1] * (proposal.dim() - 1)))
    return _advance(
        state,
        torch.where(keep, proposal, state.x),
        torch.where(accept, value, state.log_prob),
        torch.where(keep, grad, state.grad),
        log_ratio.clamp(max=0.0).exp(),
    )


class _GradientKernel:
    """What the kernels here share: the step size ε > 0, the optional box and ``init``.

    ``clamps`` says how the box is kept: clamping positions into it (ULA, SGLD) or rejecting
    proposals that leave it (MALA, HMC)."""

    step_size: float
    bounds: Bounds | None
    clamps: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (self.step_size > 0 and math.isfinite(self.step_size)):
            raise ConfigError(f"a step size must be positive and finite; found {self.step_size}")
        object.__setattr__(self, "bounds", check_bounds(self.bounds))

    def init(self, x0: Tensor, log_prob: LogDensity) -> MCMCState:
        """The state at x0 (B, *event): log p and ∇ log p there, acceptance statistics at 1.

        With ``bounds``, a clamping kernel clamps x0 into the box; a rejecting kernel needs x0
        inside it (DataError otherwise)."""
        if x0.dim() < 1 or x0.shape[0] == 0:
            raise DataError(f"x0 must be a batch of chains (B, *event) with B ≥ 1; found {tuple(x0.shape)}")
        if self.bounds is not None:
            if self.clamps:
                x0 = x0.clamp(*self.bounds)
            elif bool(outside(x0, self.bounds).any()):
                lo, hi = self.bounds
                raise DataError(
                    f"{type(self).__name__} with bounds ({lo}, {hi}) needs starting points inside the box; "
                    f"found values in [{float(x0.min()):.4g}, {float(x0.max()):.4g}]"
                )
        value, grad = value_and_grad(log_prob, x0)
        ones = torch.ones_like(value)
        return MCMCState(x0.detach(), value, grad, ones, ones, 0)

    def _inside(self, x: Tensor) -> Tensor:
        """x clamped into the box (x itself without bounds)."""
        return x if self.bounds is None else x.clamp(*self.bounds)


def _langevin_step(
    kernel: _GradientKernel,
    state: MCMCState,
    log_prob: LogDensity,
    noise_scale: float,
    generator: torch.Generator | None,
) -> MCMCState:
    """x' = clamp(x + ε ∇ log p(x) + s z), z ~ N(0, I), every move kept (ULA and SGLD)."""
    z = noise_like(state.x, generator)
    x = kernel._inside(state.x + kernel.step_size * state.grad + noise_scale * z)
    value, grad = value_and_grad(log_prob, x)
    return _advance(state, x, value, grad, torch.ones_like(value))


@dataclass(frozen=True)
class SGLD(_GradientKernel):
    """Langevin dynamics as energy-based models run it (IGEBM, Du & Mordatch 2019; JEM,
    Grathwohl et al. 2020): x' = x + ε ∇ log p(x) + s z, z ~ N(0, I), every move kept.

    With s = √(2ε) (``noise_scale=None``) this is ULA exactly. Any other s samples another law:
    for p = N(0, σ²) the stationary variance is s² σ⁴ / (ε (2σ² − ε)) (for 0 < ε < 2σ²), ≈ σ²
    s²/(2ε) for small ε, i.e. the tempered law p^{1/T} with T = s²/(2ε); JEM's ε = 1, s = 0.01
    on log p = −E gives T = 5·10⁻⁵, nearly noiseless gradient ascent on log p.

    Args:
        step_size: ε > 0, the gradient step.
        noise_scale: s ≥ 0, the standard deviation of the injected noise; None means √(2ε).
        bounds: optional box (lo, hi) for every coordinate; positions are clamped into it after
            every step (biased: mass piles on the faces).
    """

    step_size: float
    noise_scale: float | None = None
    bounds: Bounds | None = None
    clamps: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.noise_scale
        if s is not None and not (s >= 0 and math.isfinite(s)):
            raise ConfigError(
                f"an SGLD noise scale must be non-negative and finite, or None for √(2ε); found {s}"
            )

    @property
    def noise(self) -> float:
        """The noise scale s in use: ``noise_scale``, or √(2ε) when it is None."""
        return math.sqrt(2.0 * self.step_size) if self.noise_scale is None else self.noise_scale

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        return _langevin_step(self, state, log_prob, self.noise, generator)


@dataclass(frozen=True)
class UnadjustedLangevin(_GradientKernel):
    """ULA: x' = x + ε ∇ log p(x) + √(2ε) z, every proposal kept (Roberts & Tweedie 1996); the
    same chain as ``SGLD(ε)``.

    Biased by O(ε): for p = N(0, σ²) its stationary variance is σ² / (1 − ε/(2σ²)).

    Args:
        step_size: ε > 0.
        bounds: optional box (lo, hi) for every coordinate; positions are clamped into it.
    """

    step_size: float
    bounds: Bounds | None = None
    clamps: ClassVar[bool] = True

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        return _langevin_step(self, state, log_prob, math.sqrt(2.0 * self.step_size), generator)


@dataclass(frozen=True)
class MALA(_GradientKernel):
    """Metropolis-adjusted Langevin (Roberts & Tweedie 1996): the ULA proposal
    x' ~ q(· | x) = N(x + ε ∇ log p(x), 2ε I), accepted with probability
    min(1, p(x') q(x | x') / (p(x) q(x' | x))); p is exactly invariant.

    Args:
        step_size: ε > 0; the acceptance rate tends to 1 as ε → 0.
        bounds: optional box (lo, hi) for every coordinate; proposals leaving it are rejected,
            which leaves p restricted to the box exactly invariant.
    """

    step_size: float
    bounds: Bounds | None = None

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        eps = self.step_size
        x = state.x
        proposal = x + eps * state.grad + math.sqrt(2.0 * eps) * noise_like(x, generator)
        value, grad = value_and_grad(log_prob, self._inside(proposal))

        def log_q(to: Tensor, start: Tensor, start_grad: Tensor) -> Tensor:
            """log N(to; start + ε ∇ log p(start), 2ε I) up to a constant, (B,)."""
            return -(to - start - eps * start_grad).flatten(1).square().sum(1) / (4.0 * eps)

        log_ratio = value - state.log_prob + log_q(x, proposal, grad) - log_q(proposal, x, state.grad)
        if self.bounds is not None:
            log_ratio = torch.where(outside(proposal, self.bounds), -math.inf, log_ratio)
        return _metropolis(state, proposal, value, grad, log_ratio, generator)


@dataclass(frozen=True)
class HMC(_GradientKernel):
    """Hamiltonian Monte Carlo with unit mass (Duane et al. 1987; Neal 2011, "MCMC using
    Hamiltonian dynamics"): momentum p ~ N(0, I), L leapfrog steps of size ε on
    H(x, p) = −log p(x) + ½‖p‖², the end point accepted with probability
    min(1, exp(H(x, p) − H(x', p'))); the target is exactly invariant.

    One step costs L evaluations of log p and its gradient.

    Args:
        step_size: ε > 0, the leapfrog step; the acceptance rate tends to 1 as ε → 0.
        num_leapfrog: L ≥ 1 leapfrog steps per proposal.
        bounds: optional box (lo, hi) for every coordinate; a trajectory with any leapfrog
            position outside it is rejected (a criterion symmetric under time reversal, so p
            restricted to the box stays exactly invariant).
    """

    step_size: float
    num_leapfrog: int = 10
    bounds: Bounds | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.num_leapfrog
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"HMC needs num_leapfrog >= 1 leapfrog steps per proposal; found {n!r}")

    def step(
        self, state: MCMCState, log_prob: LogDensity, generator: torch.Generator | None = None
    ) -> MCMCState:
        eps = self.step_size
        momentum0 = noise_like(state.x, generator)  # (B, *event)
        x, grad = state.x, state.grad
        momentum = momentum0 + 0.5 * eps * grad
        left = torch.zeros(state.log_prob.shape, dtype=torch.bool, device=x.device)  # (B,)
        for i in range(self.num_leapfrog):
            x = x + eps * momentum
            if self.bounds is not None:
                left = left | outside(x, self.bounds)
            value, grad = value_and_grad(log_prob, self._inside(x))
            momentum = momentum + (eps if i < self.num_leapfrog - 1 else 0.5 * eps) * grad

        def kinetic(p: Tensor) -> Tensor:
            return 0.5 * p.flatten(1).square().sum(1)  # (B,)

        log_ratio = value - state.log_prob - kinetic(momentum) + kinetic(momentum0)
        log_ratio = torch.where(left, -math.inf, log_ratio)
        return _metropolis(state, x, value, grad, log_ratio, generator)


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


class ReplayBuffer(nn.Module):
    """Persistent chains for an energy-based model (Du & Mordatch 2019, "Implicit generation
    and generalization in energy-based models", section 3.1; JEM keeps 10,000 chains with
    reinitialisation probability 0.05).

    Each training step :meth:`draw` picks n distinct stored chains uniformly and starts each from
    its stored position, or from fresh noise with probability ``reinit_prob`` (and always while a
    slot has never been written); the model runs its sampler from there and :meth:`update`
    writes the chain ends back. The chains and the fill marks are registered buffers, so they
    are saved with the model's ``state_dict`` and move with ``.to(device)``; a new buffer is
    empty.

    Args:
        size: number of stored chains, ≥ 1.
        event_shape: the shape of one example, e.g. (1, 28, 28).
        reinit_prob: probability in [0, 1] that a drawn chain restarts from noise.

    Buffers:
        chains: (size, *event_shape) the stored chain ends.
        filled: (size,) bool, whether each slot has been written.
    """

    chains: Tensor
    filled: Tensor

    def __init__(self, size: int, event_shape: Sequence[int], reinit_prob: float = 0.05) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"a replay buffer needs size >= 1 chains; found {size!r}")
        if not 0.0 <= reinit_prob <= 1.0:
            raise ConfigError(f"reinit_prob is a probability in [0, 1]; found {reinit_prob}")
        self.size = size
        self.event_shape = tuple(int(d) for d in event_shape)
        self.reinit_prob = float(reinit_prob)
        self.register_buffer("chains", torch.zeros(size, *self.event_shape))
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool))

    def extra_repr(self) -> str:
        return f"size={self.size}, event_shape={self.event_shape}, reinit_prob={self.reinit_prob}"

    @property
    def num_filled(self) -> int:
        """How many slots hold a chain."""
        return int(self.filled.sum())

    def draw(
        self, n: int, noise: Callable[[int], Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Starting points for n chains.

        Args:
            n: batch size, 1 ≤ n ≤ size.
            noise: ``noise(k)`` returns k fresh starting points (k, *event_shape), e.g. uniform
                on [−1, 1]; called once, only when some chain restarts (k ≥ 1).
            generator: source of the slot choice and the restart coin flips (on its device).

        Returns:
            (indices (n,) long: n distinct slots chosen uniformly, starts (n, *event_shape)):
            each start is its slot's stored chain, or fresh noise with probability
            ``reinit_prob`` or when the slot has never been written.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"a replay buffer draws n >= 1 chains; found {n!r}")
        if n > self.size:
            raise ConfigError(
                f"a replay buffer of {self.size} chains cannot start a batch of {n}; "
                "raise buffer_size or lower the batch size"
            )
        device = self.chains.device
        rng_device = generator.device if generator is not None else device
        indices = torch.randperm(self.size, generator=generator, device=rng_device)[:n].to(device)
        coins = torch.rand(n, generator=generator, device=rng_device).to(device)
        fresh = (coins < self.reinit_prob) | ~self.filled[indices]  # (n,)
        starts = self.chains[indices].clone()  # (n, *event)
        k = int(fresh.sum())
        if k:
            z = noise(k)
            if tuple(z.shape) != (k, *self.event_shape):
                raise DataError(
                    f"noise({k}) must return ({k}, {', '.join(map(str, self.event_shape))}) starting points; "
                    f"found {tuple(z.shape)}"
                )
            starts[fresh] = z.detach().to(starts)
        return indices, starts

    @torch.no_grad()
    def update(self, indices: Tensor, x: Tensor) -> None:
        """Store the chain ends x (n, *event_shape) (detached) in slots ``indices`` (n,) and mark
        them filled."""
        if indices.dim() != 1 or tuple(x.shape) != (indices.shape[0], *self.event_shape):
            raise DataError(
                f"update needs indices (n,) and chains (n, {', '.join(map(str, self.event_shape))}); "
                f"found {tuple(indices.shape)} and {tuple(x.shape)}"
            )
        indices = indices.to(self.chains.device)
        self.chains[indices] = x.detach().to(self.chains)
        self.filled[indices] = True


__all__ = [
    "HMC",
    "MALA",
    "SGLD",
    "Bounds",
    "Chain",
    "Kernel",
    "LogDensity",
    "MCMCState",
    "ReplayBuffer",
    "UnadjustedLangevin",
    "check_bounds",
    "outside",
    "run_chain",
    "value_and_grad",
]
