"""Rejection sampling from a proposal reweighted by a log-ratio: p(x) ∝ q(x)·exp(w(x)).

Given proposals x ~ q with their log weights w(x), accept each with probability exp(w(x) − M),
M ≥ sup w: accepted points are exact draws from q(x)·exp(w(x)) / Z, Z = E_q[exp w], and a
proposal is accepted with probability Z·exp(−M) (von Neumann 1951).

The use here is *discriminator rejection sampling* (DRS; Azadi et al. 2019): for a GAN whose
discriminator D is a classifier of real against generated data, its optimum D* = p_data /
(p_data + p_g) makes the logit w(x) = log D/(1 − D) = log p_data(x)/p_g(x), so the generator's
samples reweighted by exp(w) are draws from p_data to the extent that D is optimal; the
rejection step removes what the generator puts where the data have no mass (between modes).

M is not known: as in DRS it is the largest w of a burn-in of proposals, raised whenever a later
proposal exceeds it. A point with w > M at the time it is seen is accepted with probability 1,
so the draws are exact only where w ≤ M; :class:`RejectionStats` reports how many proposals
exceeded the bound so a caller can tell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from simulacra.errors import ConfigError, SamplingError

# propose(slots (k,) long, generator) -> (x (k, ...), w (k,)): one proposal for each slot
Proposal = Callable[[Tensor, torch.Generator | None], tuple[Tensor, Tensor]]

__all__ = ["Proposal", "RejectionStats", "rejection_sample"]


@dataclass(frozen=True)
class RejectionStats:
    """What a rejection run did.

    Attributes:
        proposals: proposals drawn after the burn-in.
        accepted: proposals accepted, ≥ n (a slot given several proposals in one round keeps
            the first it accepts).
        log_bound: the final M.
        above_bound: proposals whose w exceeded M when they were drawn (accepted with
            probability 1; the draws are exact when this is 0).
    """

    proposals: int
    accepted: int
    log_bound: float
    above_bound: int

    @property
    def acceptance_rate(self) -> float:
        """accepted / proposals: Z·e^{−M} when M bounds w."""
        return self.accepted / max(self.proposals, 1)


def rejection_sample(
    propose: Proposal,
    n: int,
    *,
    burn_in: int = 10_000,
    chunk: int = 8192,
    max_proposals: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, RejectionStats]:
    """n draws from q(x)·exp(w(x)) / Z by rejection, slot by slot (slot i keeps whatever
    ``propose`` attaches to it, e.g. the label of a conditional model's i-th draw).

    Args:
        propose: ``(slots (k,), generator) -> (x (k, ...), w (k,))``, one proposal x ~ q(·| slot)
            and its log weight w(x) (nats) for every slot listed.
        n: number of draws.
        burn_in: proposals (over the slots in turn) whose largest w starts M.
        chunk: proposals per round at most (memory).
        max_proposals: give up after this many proposals (default 10,000 · n): a weight whose
            mass is far from its maximum makes rejection hopeless, and the error says so.
        generator: proposals and uniform draws (None: the global RNG).

    Returns:
        (x (n, ...), :class:`RejectionStats`).

    Raises:
        SamplingError: more than ``max_proposals`` proposals before n were accepted.
    """
    if n < 1 or burn_in < 1 or chunk < 1:
        raise ConfigError(f"n, burn_in and chunk must be at least 1; found {n}, {burn_in}, {chunk}")
    budget = 10_000 * n if max_proposals is None else int(max_proposals)
    log_bound = -math.inf
    for start in range(0, burn_in, chunk):
        slots = torch.arange(start, min(start + chunk, burn_in)) % n
        _, w = propose(slots, generator)
        log_bound = max(log_bound, float(w.max()))
    out: Tensor | None = None
    missing = torch.arange(n)
    proposals = above = accepted = 0
    rate = 1.0  # acceptance so far (sets how many proposals each missing slot gets per round)
    while missing.numel():
        if proposals >= budget:
            raise SamplingError(
                f"rejection sampling accepted {n - missing.numel()} of {n} draws in {proposals} proposals "
                f"(acceptance {rate:.1e}); the weights are too uneven for it"
            )
        reps = max(1, min(chunk // missing.numel(), math.ceil(1.5 / max(rate, 1e-6))))
        slots = missing.repeat(reps)[:chunk] if missing.numel() * reps > chunk else missing.repeat(reps)
        x, w = propose(slots, generator)
        w = w.detach().to(torch.float64).cpu()
        above += int((w > log_bound).sum())
        u = torch.rand(w.shape, generator=generator, dtype=torch.float64, device=_device(generator)).cpu()
        accept = u < torch.exp(w - log_bound)  # always true where w > M
        log_bound = max(log_bound, float(w.max()))
        proposals += int(slots.numel())
        accepted += int(accept.sum())
        if out is None:
            out = x.new_empty((n, *x.shape[1:]))
        first: dict[int, int] = {}  # slot -> its first accepted proposal this round
        for j, s in zip(torch.nonzero(accept).flatten().tolist(), slots[accept].tolist(), strict=True):
            first.setdefault(s, j)
        if first:
            chosen = torch.tensor(list(first), dtype=torch.long)
            out[chosen] = x[torch.tensor(list(first.values()), dtype=torch.long)]
            filled = torch.zeros(n, dtype=torch.bool)
            filled[chosen] = True
            missing = missing[~filled[missing]]
        rate = (n - missing.numel()) / proposals
    assert out is not None
    return out, RejectionStats(proposals, accepted, log_bound, above)


def _device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device
