"""Vector quantization: the discrete bottleneck of the VQ-VAE (van den Oord et al. 2017).

A codebook e_1 … e_K ∈ ℝ^D maps each encoder output z ∈ ℝ^D to its nearest code,

    k(z) = argmin_k ‖z − e_k‖²,    z_q = e_{k(z)},

and the decoder reads z_q. The argmin has no gradient; the straight-through estimator passes
the decoder's gradient to the encoder unchanged, z_q^ST = z + sg(z_q − z) (so ∂z_q^ST/∂z = I).
The encoder is pulled toward its code by the commitment loss β ‖z − sg(z_q)‖².

The codebook is not trained by gradients but as an exponential moving average of the encoder
outputs assigned to each code (the paper's appendix A.1), with decay γ:

    N_k ← γ N_k + (1 − γ) n_k,        n_k = #{i : k(z_i) = k}
    m_k ← γ m_k + (1 − γ) s_k,        s_k = Σ_{i : k(z_i) = k} z_i
    e_k = m_k / Ñ_k,                  Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j

(Ñ is the Laplace-smoothed count of Sonnet's implementation, so that a code with no
assignments does not divide by zero). Two additions keep the codebook in use (as in
vector-quantize-pytorch): the codebook starts from k-means on the first training batch, and a
code whose EMA count N_k falls below a threshold ("dead") is restarted at an encoder output of
the current batch.

The statistics are buffers updated in training mode only. Under ``torch.distributed`` the batch
statistics n_k, s_k are summed over the processes before the update, and the random choices
(k-means' start, restarts) are made on process 0 and broadcast, so every process holds the same
codebook. Randomness comes from the global torch RNG (which the training loop saves and restores),
so a stopped and resumed run ends bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from simulacra.errors import ConfigError


@dataclass
class Quantized:
    """What :class:`VectorQuantizer` returns for encoder outputs z (..., D).

    Attributes:
        z_q: the straight-through codes z + sg(e_k(z) − z), (..., D): the value of e_k(z), the
            gradient of z.
        indices: k(z), (...) int64.
        commitment: β ‖z − sg(e_k(z))‖² per vector, (...); differentiable in z.
        perplexity: exp(−Σ_k p_k log p_k) of the batch's code frequencies p_k (scalar, detached):
            K when every code is used equally, 1 when one code takes everything.
        usage: fraction of the K codes used by at least one vector of the batch (scalar, detached).
        restarted: number of dead codes restarted in this call (scalar, detached; 0 in eval mode).
    """

    z_q: Tensor
    indices: Tensor
    commitment: Tensor
    perplexity: Tensor
    usage: Tensor
    restarted: Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def nearest_codes(z: Tensor, codebook: Tensor) -> Tensor:
    """argmin_k ‖z_i − e_k‖² for z (N, D) and a codebook (K, D): (N,) int64, ties to the lower k.

    Expands ‖z‖² − 2 z·e + ‖e‖² (one matrix product, no (N, K, D) tensor)."""
    distances = (z * z).sum(1, keepdim=True) - 2 * z @ codebook.t() + (codebook * codebook).sum(1)[None]
    return distances.argmin(1)


def kmeans(z: Tensor, k: int, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on z (N, D): centres (k, D) and cluster sizes (k,).

    Starts from k rows of z drawn from the global RNG (without replacement when N ≥ k); a
    centre whose cluster empties keeps its value."""
    n = z.shape[0]
    if n >= k:
        start = torch.randperm(n, device=z.device)[:k]
    else:
        start = torch.randint(n, (k,), device=z.device)
    centres = z[start].clone()
    counts = torch.zeros(k, dtype=z.dtype, device=z.device)
    for _ in range(max(1, int(iterations))):
        assign = nearest_codes(z, centres)
        counts = torch.bincount(assign, minlength=k).to(z.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assign, z)
        filled = counts > 0
        centres = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centres)
    return centres, counts


class VectorQuantizer(nn.Module):
    """z (..., D) -> nearest of K codes, with the straight-through gradient and an EMA codebook.

    Args:
        num_codes: K ≥ 2, the codebook size.
        dim: D, the size of one code.
        beta: β, the weight of the commitment loss (0.25 in the paper).
        decay: γ ∈ [0, 1), the EMA decay of the codebook statistics (0.99 in the paper).
        eps: ε > 0 of the Laplace smoothing of the counts.
        kmeans_init: start the codebook from k-means on the first training batch (otherwise from
            uniform draws on [−1/K, 1/K]^D made at construction).
        kmeans_iterations: Lloyd iterations of that k-means.
        restart_threshold: restart a code whose EMA count N_k falls below this (expected
            assignments per batch); 0 turns restarts off.

    Buffers: ``codebook`` (K, D), ``ema_count`` (K,), ``ema_sum`` (K, D), ``initialized`` (bool).
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iterations: int = 10,
        restart_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(num_codes, bool) or not isinstance(num_codes, int) or num_codes < 2:
            raise ConfigError(f"a codebook needs at least 2 codes (num_codes >= 2); found {num_codes!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"the code dimension must be a positive integer; found {dim!r}")
        if not 0.0 <= float(decay) < 1.0:
            raise ConfigError(f"the codebook's EMA decay must be in [0, 1); found {decay!r}")
        if not float(eps) > 0 or not float(beta) >= 0 or not float(restart_threshold) >= 0:
            raise ConfigError(
                f"eps must be > 0, beta and restart_threshold >= 0; found {eps!r}, {beta!r}, {restart_threshold!r}"
            )
        self.num_codes, self.dim = int(num_codes), int(dim)
        self.beta, self.decay, self.eps = float(beta), float(decay), float(eps)
        self.kmeans_iterations = int(kmeans_iterations)
        self.restart_threshold = float(restart_threshold)
        # uniform on [−1/K, 1/K]^D, as the reference implementations initialise the embedding
        codebook = (torch.rand(self.num_codes, self.dim) * 2 - 1) / self.num_codes
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.ones(self.num_codes))
        self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    # -- the maps --------------------------------------------------------------------------

    def forward(self, z: Tensor) -> Quantized:
        """Quantize z (..., D); in training mode, then update the codebook (k-means start on the
        first call, EMA step, dead-code restarts). z_q uses the codebook as it was before the
        update."""
        if z.shape[-1] != self.dim:
            raise ConfigError(f"the quantizer takes vectors of size {self.dim}; found shape {tuple(z.shape)}")
        flat = z.reshape(-1, self.dim)  # (N, D)
        if self.training and not bool(self.initialized):
            self._kmeans_init(flat.detach())
        indices = nearest_codes(flat.detach(), self.codebook)  # (N,)
        e = self.codebook[indices]  # (N, D), no gradient: the codebook is a buffer
        counts = torch.bincount(indices, minlength=self.num_codes).to(flat.dtype)  # (K,)
        restarted = torch.zeros((), device=z.device)
        if self.training:
            counts = self._ema_update(flat.detach(), indices, counts)
            restarted = self._restart_dead(flat.detach())
        commitment = self.beta * (flat - e).pow(2).sum(1)  # (N,), gradient to z only
        z_q = flat + (e - flat).detach()  # straight-through: value e, gradient of z
        p = counts / counts.sum().clamp(min=1)
        entropy = -(p * torch.log(p.clamp(min=1e-30))).sum()
        lead = z.shape[:-1]
        return Quantized(
            z_q=z_q.reshape(z.shape),
            indices=indices.reshape(lead),
            commitment=commitment.reshape(lead),
            perplexity=entropy.exp().detach(),
            usage=(counts > 0).float().mean().detach(),
            restarted=restarted.detach(),
        )

    def lookup(self, indices: Tensor) -> Tensor:
        """e_k for integer codes (...): (..., D)."""
        return self.codebook[indices]

    def codes(self, z: Tensor) -> Tensor:
        """k(z) for z (..., D), no update: (...) int64."""
        return nearest_codes(z.reshape(-1, self.dim), self.codebook).reshape(z.shape[:-1])

    # -- the codebook's training -------------------------------------------------------------

    @torch.no_grad()
    def _kmeans_init(self, z: Tensor) -> None:
        centres, sizes = kmeans(z, self.num_codes, self.kmeans_iterations)
        self.codebook.copy_(centres)
        self.ema_count.copy_(sizes)
        self.ema_sum.copy_(centres * sizes[:, None])
        self.initialized.fill_(True)
        if _distributed():  # process 0's start for every process
            for buffer in (self.codebook, self.ema_count, self.ema_sum):
                dist.broadcast(buffer, 0)

    @torch.no_grad()
    def _ema_update(self, z: Tensor, indices: Tensor, counts: Tensor) -> Tensor:
        """One EMA step from the batch's n_k (``counts``) and s_k; returns n_k (summed over
        processes under torch.distributed)."""
        sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, z)  # (K, D)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        self.codebook.copy_(self.ema_sum / self.smoothed_counts()[:, None])
        return counts

    def smoothed_counts(self) -> Tensor:
        """Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j, (K,)."""
        total = self.ema_count.sum()
        return (self.ema_count + self.eps) / (total + self.num_codes * self.eps) * total

    @torch.no_grad()
    def _restart_dead(self, z: Tensor) -> Tensor:
        """Move every code with N_k < threshold to an encoder output of the batch (drawn from the
        global RNG), with N_k = threshold and m_k = threshold · e_k; returns how many moved."""
        if self.restart_threshold <= 0:
            return torch.zeros((), device=z.device)
        dead = self.ema_count < self.restart_threshold  # (K,)
        count = dead.sum()
        if not bool(count > 0):
            return count.float()
        picks = torch.randint(z.shape[0], (self.num_codes,), device=z.device)  # a fixed-size draw
        fresh = z[picks]  # (K, D)
        self.codebook.copy_(torch.where(dead[:, None], fresh, self.codebook))
        self.ema_count.copy_(
            torch.where(dead, torch.full_like(self.ema_count, self.restart_threshold), self.ema_count)
        )
        self.ema_sum.copy_(torch.where(dead[:, None], fresh * self.restart_threshold, self.ema_sum))
        if _distributed():  # process 0's choices for every process
            for buffer in (self.codebook, self.ema_count, self.ema_sum):
                dist.broadcast(buffer, 0)
        return count.float()

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, decay={self.decay}, "
            f"restart_threshold={self.restart_threshold}"
        )


def perplexity_of(indices: Tensor, num_codes: int) -> float:
    """exp(entropy) of the code frequencies of ``indices`` (any shape), in codes."""
    counts = torch.bincount(indices.reshape(-1), minlength=num_codes).double()
    p = counts / counts.sum().clamp(min=1)
    return float(math.exp(float(-(p * torch.log(p.clamp(min=1e-300))).sum())))
