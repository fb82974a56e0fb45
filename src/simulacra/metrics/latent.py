"""The prior hole: how far the aggregate posterior q(z) lies from the prior p(z).

A VAE samples z ~ p(z) and decodes, but its decoder was trained on z ~ q(z | x); where p puts mass
that the aggregate posterior q(z) = E_{p_data(x)} q(z | x) does not (the "prior hole", Rosca et
al. 2018; Tomczak & Welling 2018; LSGM's motivation), samples decode to poor images. The ELBO
averaged over the data splits as

    E_data ELBO = E_data E_q log p(x | z) − I_q(x; z) − KL(q(z) ‖ p(z))

(Hoffman & Johnson 2016), so KL(q(z) ‖ p(z)) is the part of the bound a better prior can win back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Independent

from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError, DataError, positive_int
from simulacra.models.base import LatentVariableModel


@dataclass(frozen=True)
class PriorHole:
    """An estimate of KL(q_N(z) ‖ p(z)) in nats.

    Attributes:
        kl: the estimate (mean over the draws).
        standard_error: its Monte Carlo standard error (std of the draws / √M).
        points: N, the examples whose posteriors make up q_N.
        draws: M, the draws z_m ~ q_N.
        estimator: how it was obtained, in words (names how log p(z) was computed).
    """

    kl: float
    standard_error: float
    points: int
    draws: int
    estimator: str


@torch.no_grad()
def prior_hole(
    model: LatentVariableModel,
    x: Tensor,
    *,
    draws: int | None = None,
    chunk_size: int = 256,
    log_prior: str = "the prior's log_prob",
    generator: torch.Generator | None = None,
) -> PriorHole:
    """KL(q_N(z) ‖ p(z)) = E_{z ~ q_N}[log q_N(z) − log p(z)], q_N(z) = (1/N) Σ_n q(z | x_n).

    The aggregate posterior of the N given examples is a mixture of N posteriors, so log q_N(z) is
    computed exactly (log-sum-exp over the N components, minus log N) and the expectation is a
    plain Monte Carlo average over M draws z_m ~ q_N (example n_m uniform, then z_m ~ q(z | x_{n_m})):
    an unbiased estimate of KL(q_N ‖ p), with the standard error of the mean. As an estimate of the
    population quantity KL(q ‖ p), q = E_data q(z | x), it is biased upwards: KL is convex in its
    first argument and q = E[q_N], so E[KL(q_N ‖ p)] ≥ KL(q ‖ p), with a bias that shrinks as N
    grows (a mixture of N posteriors is more peaked than q). When log p(z) is itself a stochastic
    lower bound (a latent diffusion prior's variational bound), the estimate is an upper bound on
    KL(q_N ‖ p) in expectation; name it with ``log_prior``.

    Args:
        model: a latent-variable model whose ``encode`` returns a diagonal Gaussian
            (``Independent``) q(z | x) with batch (B,), and whose ``prior()`` has a ``log_prob``.
        x: (N, *event) examples (a held-out split).
        draws: M (default N, one draw per example: a stratified draw from q_N).
        chunk_size: draws scored against the N components at a time (memory M_chunk · N · D).
        log_prior: how ``prior().log_prob`` computes log p(z), for the report.
        generator: makes the draws reproducible.

    Returns:
        a :class:`PriorHole` (nats).
    """
    if x.shape[0] < 1:
        raise DataError("the prior-hole estimate needs at least one example")
    n = x.shape[0]
    q = model.encode(x)
    if not isinstance(q, Independent):
        raise ConfigError(
            f"the prior-hole estimate needs a factorized posterior q(z | x) whose density broadcasts; found {type(q).__name__}"
        )
    m = n if draws is None else positive_int(draws, "draws")
    reps = math.ceil(m / n)  # draws per example, then a random subset of M: n_m uniform for each draw
    z = sample_from(q, (reps,), generator).reshape(reps * n, *q.event_shape)
    if reps * n > m:
        keep = torch.randperm(reps * n, generator=generator, device=generator.device if generator else None)[
            :m
        ]
        z = z[keep.to(z.device)]
    chunk = positive_int(chunk_size, "chunk_size")
    log_q = torch.cat(
        [
            torch.logsumexp(q.log_prob(z[i : i + chunk].unsqueeze(1)), dim=1) - math.log(n)  # (chunk,)
            for i in range(0, z.shape[0], chunk)
        ]
    )
    log_p = model.prior().log_prob(z)  # (M,)
    values = (log_q - log_p).double()
    se = float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else float("nan")
    estimator = (
        f"KL(q_N(z) ‖ p(z)), q_N the aggregate posterior of N = {n} examples (exact mixture), "
        f"M = {z.shape[0]} draws, log p(z) by {log_prior}"
    )
    return PriorHole(float(values.mean()), se, n, int(z.shape[0]), estimator)
