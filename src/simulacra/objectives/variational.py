"""Variational objectives: the ELBO (with β and free bits) and the IWAE bound.

Both are plain objects called as ``objective(x, q, decode, prior)`` with

* ``x``: a batch (B, *event_shape);
* ``q``: the approximate posterior q(z | x), a Distribution with batch shape (B,);
* ``decode``: z -> p(x | z). It receives latents of shape (m·B, *latent_shape) where row
  ``i·B + b`` belongs to example ``b`` (so a conditional decoder repeats its context with
  ``c.repeat(m)``), and returns a Distribution with batch shape (m·B,);
* ``prior``: p(z), a Distribution whose batch shape broadcasts against (B,).

They return :class:`VariationalTerms`, per-example (B,) tensors in nats.

**Missing entries** (MIWAE, Mattei & Frellsen 2019). Given ``observed`` (bool, x's shape), the
bounds are those of the observed entries alone, log p(x_obs) ≥ E log (1/k) Σ_i p(x_obs | z_i) p(z_i)
/ q(z_i | x_obs): the likelihood term sums log p(x_d | z) over observed d only
(:func:`~simulacra.distributions.heads.log_prob_observed`), so a missing entry never enters it,
whatever placeholder x holds there. With every entry observed they are the usual bounds.

``beta`` is a mutable attribute so that a KL warm-up callback can anneal it (Bowman et al. 2016);
the reported bound is always the true (β = 1) bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from simulacra.distributions.heads import log_prob_observed
from simulacra.distributions.kl import kl_divergence_or_mc, kl_per_dimension
from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError

Decode = Callable[[Tensor], Distribution]


@dataclass
class VariationalTerms:
    """Per-example (B,) terms of a variational objective, in nats.

    Attributes:
        loss: what to minimise (average it over the batch).
        bound: the lower bound on log p(x) (the β = 1 ELBO, or the IWAE bound).
        reconstruction: an estimate of E_q[log p(x | z)].
        kl: KL(q(z | x) ‖ p(z)) (closed form or Monte Carlo).
    """

    loss: Tensor
    bound: Tensor
    reconstruction: Tensor
    kl: Tensor


def _repeat_rows(x: Tensor, m: int) -> Tensor:
    """(B, ...) -> (m·B, ...), row i·B + b = x[b]."""
    return x.repeat(m, *([1] * (x.dim() - 1)))


def _log_likelihood(px: Distribution, x: Tensor, observed: Tensor | None) -> Tensor:
    """log p(x | z) (B,), over the observed entries only when ``observed`` is given."""
    return px.log_prob(x) if observed is None else log_prob_observed(px, x, observed)


def importance_sample(
    x: Tensor,
    q: Distribution,
    decode: Decode,
    prior: Distribution,
    num_samples: int,
    *,
    observed: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Distribution]:
    """Draw z_i ~ q(z | x), i = 1..k (reparameterized), and score them.

    Args:
        x: (B, *event); entries where ``observed`` is False are ignored.
        observed: bool (B, *event) or None (every entry observed).

    Returns:
        ``(log p(x_obs | z_i), log p(z_i), log q(z_i | x), p(x | z))``: three (k, B) tensors in nats
        and the decoder's distribution at every draw, batch (k·B,) with row ``i·B + b`` for z_i of
        example b (what importance-sampled imputation reads its conditional means and draws from).
    """
    if int(num_samples) < 1:
        raise ConfigError(f"importance sampling needs num_samples >= 1; found {num_samples}")
    k, batch = int(num_samples), x.shape[0]
    z = sample_from(q, (k,), generator)  # (k, B, *latent)
    px = decode(z.reshape(k * batch, *z.shape[2:]))
    mask = None if observed is None else _repeat_rows(observed, k)
    log_px = _log_likelihood(px, _repeat_rows(x, k), mask).reshape(k, batch)
    return log_px, prior.log_prob(z), q.log_prob(z), px


def _weight_terms(
    x: Tensor,
    q: Distribution,
    decode: Decode,
    prior: Distribution,
    num_samples: int,
    generator: torch.Generator | None,
    observed: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """log p(x_obs | z_i), log p(z_i), log q(z_i | x) for z_i ~ q reparameterized, each (k, B)."""
    log_px, log_pz, log_qz, _ = importance_sample(
        x, q, decode, prior, num_samples, observed=observed, generator=generator
    )
    return log_px, log_pz, log_qz


def log_importance_weights(
    x: Tensor,
    q: Distribution,
    decode: Decode,
    prior: Distribution,
    num_samples: int,
    *,
    observed: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``log w_i = log p(x | z_i) + log p(z_i) − log q(z_i | x)``, z_i ~ q(z | x), i = 1..k.

    With ``observed`` (bool, x's shape) the likelihood is that of the observed entries,
    log p(x_obs | z_i) (MIWAE).

    ``logsumexp_i(log w_i) − log k`` is the IWAE bound (Burda et al. 2016); each ``log w_i`` alone
    is an unbiased estimate of the ELBO. Samples are reparameterized, so the weights carry gradients.

    Returns:
        (k, B) log weights in nats.
    """
    log_px, log_pz, log_qz = _weight_terms(x, q, decode, prior, num_samples, generator, observed)
    return log_px + log_pz - log_qz


def importance_weighted_bound(log_w: Tensor) -> Tensor:
    """L_k = log (1/k) Σ_i exp(log w_i) over the first axis of log_w (k, B): (B,) nats.

    The IWAE bound of Burda et al. (2016) for log w_i = log p(x, z_i) − log q(z_i | x), z_i ~ q;
    k = 1 gives the one-sample ELBO estimate."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


class ELBO:
    """Evidence lower bound ``E_q[log p(x | z)] − KL(q(z | x) ‖ p(z)) ≤ log p(x)`` (Kingma & Welling 2014).

    Loss per example: ``−log p(x | z) + β · KL`` with one reparameterized draw ``z ~ q`` (β-VAE,
    Higgins et al. 2017, for β ≠ 1). With free bits λ > 0 (Kingma et al. 2016, IAF paper) the KL
    term of the loss becomes ``Σ_j max(λ, KL_j)`` where ``KL_j`` is the KL of latent dimension j
    averaged over the batch: dimensions whose average KL is below λ nats are not pushed further
    towards the prior. Per example this is ``Σ_j (KL_ij if KL̄_j ≥ λ else λ)``, whose batch mean is
    the free-bits objective. The reported ``bound`` is always the true β = 1 ELBO.

    Args:
        beta: weight β of the KL term in the loss (mutable: KL warm-up sets it).
        free_bits: λ ≥ 0, nats per latent dimension (needs factorized q and p).
        analytic_kl: use the closed-form KL when torch has one, else ``log q(z) − log p(z)``.
    """

    def __init__(self, beta: float = 1.0, free_bits: float = 0.0, analytic_kl: bool = True) -> None:
        if beta < 0:
            raise ConfigError(f"ELBO beta must be >= 0; found {beta}")
        if free_bits < 0:
            raise ConfigError(f"ELBO free_bits must be >= 0 nats; found {free_bits}")
        self.beta = float(beta)
        self.free_bits = float(free_bits)
        self.analytic_kl = bool(analytic_kl)

    def __call__(
        self,
        x: Tensor,
        q: Distribution,
        decode: Decode,
        prior: Distribution,
        *,
        observed: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> VariationalTerms:
        z = sample_from(q, (), generator)  # (B, *latent)
        rec = _log_likelihood(decode(z), x, observed)  # (B,), observed entries only when masked
        if self.free_bits > 0:
            kl_dims = kl_per_dimension(q, p=prior, z=z, analytic=self.analytic_kl)  # (B, *latent)
            kl = kl_dims.flatten(1).sum(1)
            mean_dims = kl_dims.mean(0, keepdim=True)
            clamped = torch.where(
                mean_dims >= self.free_bits, kl_dims, torch.full_like(kl_dims, self.free_bits)
            )
            kl_loss = clamped.flatten(1).sum(1)
        else:
            kl = kl_divergence_or_mc(q, prior, z, self.analytic_kl)
            kl_loss = kl
        return VariationalTerms(loss=-rec + self.beta * kl_loss, bound=rec - kl, reconstruction=rec, kl=kl)

    def __repr__(self) -> str:
        return f"ELBO(beta={self.beta}, free_bits={self.free_bits}, analytic_kl={self.analytic_kl})"


class IWAE:
    """Importance-weighted bound ``L_k = E[log (1/k) Σ_i p(x, z_i) / q(z_i | x)]`` (Burda et al. 2016).

    ``L_1`` is the ELBO, ``L_k ≤ L_{k+1} ≤ log p(x)``, and ``L_k → log p(x)`` as k → ∞. The loss is
    ``−L_k`` with reparameterized z_i, whose gradient is the IWAE gradient
    ``−Σ_i w̃_i ∇ log w_i`` with normalized weights ``w̃_i = w_i / Σ_j w_j``.

    For uniformity with :class:`ELBO` the object has a mutable ``beta``: the loss uses the weights
    ``log p(x | z_i) + β (log p(z_i) − log q(z_i | x))`` (β = 1 is IWAE; a warm-up may anneal it).
    ``bound`` is always the β = 1 IWAE bound; ``reconstruction`` and ``kl`` are the k-sample
    Monte Carlo averages of ``log p(x | z_i)`` and ``log q(z_i | x) − log p(z_i)``.

    Given ``observed``, this is MIWAE's bound (Mattei & Frellsen 2019): the same estimator with
    p(x_obs | z_i) in the weights.

    Args:
        num_samples: k ≥ 1.
    """

    def __init__(self, num_samples: int = 5) -> None:
        if int(num_samples) < 1:
            raise ConfigError(f"IWAE needs num_samples >= 1; found {num_samples}")
        self.num_samples = int(num_samples)
        self.beta = 1.0

    def __call__(
        self,
        x: Tensor,
        q: Distribution,
        decode: Decode,
        prior: Distribution,
        *,
        observed: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> VariationalTerms:
        log_px, log_pz, log_qz = _weight_terms(x, q, decode, prior, self.num_samples, generator, observed)
        bound = importance_weighted_bound(log_px + log_pz - log_qz)
        if self.beta == 1.0:
            loss = -bound
        else:
            loss = -importance_weighted_bound(log_px + self.beta * (log_pz - log_qz))
        return VariationalTerms(
            loss=loss, bound=bound, reconstruction=log_px.mean(0), kl=(log_qz - log_pz).mean(0)
        )

    def __repr__(self) -> str:
        return f"IWAE(num_samples={self.num_samples})"
