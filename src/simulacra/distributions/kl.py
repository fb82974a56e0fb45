"""Kullback-Leibler divergences: closed form where torch knows one, a Monte Carlo estimate else.

``KL(q ‖ p) = E_q[log q(z) − log p(z)]``. torch.distributions registers closed forms for many
pairs (diagonal Gaussians through ``Independent``/``Normal``, multivariate normals, ...); for
the rest (mixtures, flows) the one-sample estimate ``log q(z) − log p(z)`` at a draw ``z ~ q`` is
unbiased.
"""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution, Independent, kl_divergence

from simulacra.errors import ConfigError


def kl_divergence_or_mc(q: Distribution, p: Distribution, z: Tensor, analytic: bool = True) -> Tensor:
    """KL(q ‖ p) in nats, shape = the broadcast batch shape (e.g. (B,)).

    Args:
        q, p: distributions over the same event space.
        z: a draw from ``q`` (batch shape + event shape), used when no closed form is registered
            (or ``analytic`` is False): then the result is ``log q(z) − log p(z)``.
        analytic: use the closed form when torch has one.
    """
    if analytic:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            pass
    return q.log_prob(z) - p.log_prob(z)


def kl_per_dimension(q: Distribution, p: Distribution, z: Tensor, analytic: bool = True) -> Tensor:
    """KL of each latent dimension, (B, *event_shape), for factorized q and p.

    For ``q = Π_j q_j`` and ``p = Π_j p_j`` (both :class:`Independent`), ``KL(q ‖ p) = Σ_j KL(q_j ‖ p_j)``;
    this returns the terms ``KL(q_j ‖ p_j)`` (closed form, or ``log q_j(z_j) − log p_j(z_j)``).
    Free bits (Kingma et al. 2016) clamp these per dimension.

    Raises:
        ConfigError: q or p does not factorize over dimensions.
    """
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        raise ConfigError(
            "free bits need a factorized posterior and prior (Independent distributions); "
            f"found q={type(q).__name__}, p={type(p).__name__}"
        )
    return kl_divergence_or_mc(q.base_dist, p.base_dist, z, analytic)
