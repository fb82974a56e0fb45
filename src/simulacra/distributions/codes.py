"""Distributions over grids of discrete codes (the latents of a VQ-VAE), and of their codebook vectors.

* :class:`FactorizedCodes`: a lazy prior p(k) = Π_{positions (i, j)} Cat(k_ij; π_ij), whose
  per-position frequencies π are fitted to the codes of the training data (the VQ-VAE's first
  stage: a prior good enough to sample and to bound log p(x) before an autoregressive one is
  trained).
* :class:`CodebookVectors`: the distribution of z = e_k (the codebook vectors at a grid of codes
  k ~ p(k)), the prior over the VQ-VAE's continuous latent z_q; a discrete distribution on the
  codebook's points, so ``log_prob(z)`` is the log-probability of the codes of z.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, constraints

from simulacra.errors import ConfigError, DataError
from simulacra.nn.quantize import nearest_codes


class FactorizedCodes(nn.Module):
    """p(k) = Π_{ij} π_ij[k_ij] over code grids k ∈ {0 … K−1}^{h×w}, fitted by counting.

    ``fit(codes)`` sets π_ij[k] = (n_ij[k] + α) / (N + K α), the frequency of code k at position
    (i, j) among N training grids with add-α (Laplace) smoothing, so that a code never seen at a
    position keeps a finite probability. Before fitting, π is uniform (log p(k) = −h w log K).

    Args:
        grid_shape: (h, w).
        num_codes: K.
        smoothing: α > 0.

    ``forward(c=None, n=None)`` returns the distribution with batch shape (n,) (or () when n is
    None) and event shape (h, w), over int64 codes; the context is ignored (an unconditional prior).
    """

    def __init__(self, grid_shape: Sequence[int], num_codes: int, smoothing: float = 1.0) -> None:
        super().__init__()
        if not float(smoothing) > 0:
            raise ConfigError(f"the code prior's smoothing must be positive; found {smoothing!r}")
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.num_codes, self.smoothing = int(num_codes), float(smoothing)
        self.register_buffer("logits", torch.zeros(*self.grid_shape, self.num_codes))

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        logits = self.logits.log_softmax(-1)
        if n is not None:
            logits = logits.expand(n, *logits.shape)
        return Independent(Categorical(logits=logits, validate_args=False), 2, validate_args=False)

    @torch.no_grad()
    def fit(self, codes: Tensor) -> None:
        """Set π to the smoothed frequencies of ``codes`` (N, h, w) int64."""
        if tuple(codes.shape[1:]) != self.grid_shape:
            raise DataError(f"expected codes of shape (N, {self.grid_shape}); found {tuple(codes.shape)}")
        flat = codes.reshape(codes.shape[0], -1).to(self.logits.device)  # (N, h·w)
        counts = torch.zeros(flat.shape[1], self.num_codes, device=flat.device)
        counts.scatter_add_(1, flat.t(), torch.ones_like(flat.t(), dtype=counts.dtype))  # (h·w, K)
        total = codes.shape[0] + self.num_codes * self.smoothing
        probs = (counts + self.smoothing) / total
        self.logits.copy_(probs.log().reshape(*self.grid_shape, self.num_codes))


class CodebookVectors(Distribution):
    """z = e_k with k ~ p(k): codebook vectors at a grid of codes, (*batch, D, h, w).

    ``sample`` draws k from ``codes`` and looks the vectors up; ``log_prob(z)`` is
    log p(k(z)) with k(z) the nearest codes (exact for z on the codebook's points, where the
    distribution puts its mass); ``mean`` is not defined (a discrete set of points).

    Args:
        codes: a distribution over int64 code grids, batch (*batch), event (h, w).
        codebook: (K, D).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, codes: Distribution, codebook: Tensor) -> None:
        self.codes, self.codebook = codes, codebook
        h, w = codes.event_shape
        super().__init__(codes.batch_shape, torch.Size((codebook.shape[1], h, w)), validate_args=False)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        k = self.codes.sample(torch.Size(sample_shape))  # (*sample, *batch, h, w)
        return self.codebook[k].movedim(-1, -3)  # (*sample, *batch, D, h, w)

    def log_prob(self, value: Tensor) -> Tensor:
        lead = value.shape[:-3]
        vectors = value.movedim(-3, -1)  # (..., h, w, D)
        k = nearest_codes(vectors.reshape(-1, self.codebook.shape[1]), self.codebook)
        return self.codes.log_prob(k.reshape(*lead, *vectors.shape[-3:-1]))
