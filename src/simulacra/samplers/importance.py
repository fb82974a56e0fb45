"""Imputation by importance sampling: the self-normalized conditional mean and sampling-importance-resampling.

For a latent-variable model p(x, z) = p(z) p(x | z) with a proposal q(z | x_obs), draws
z_1..z_K ~ q and weights w_i = p(x_obs | z_i) p(z_i) / q(z_i | x_obs) give (Mattei & Frellsen 2019,
§4):

* **single imputation** by self-normalized importance sampling (SNIS) of the conditional mean,
  E[x_miss | x_obs] ≈ Σ_i w̃_i E[x_miss | z_i], w̃_i = w_i / Σ_j w_j — consistent as K → ∞
  because p(x_miss | x_obs) = ∫ p(x_miss | z) p(z | x_obs) dz when the entries are independent
  given z;
* **multiple imputation** by sampling-importance-resampling (SIR, Rubin 1988): draw
  x̃_i ~ p(x | z_i), then pick i with probability w̃_i; the pick is a draw from
  p(x_miss | x_obs) as K → ∞.

K is split into chunks that fit in memory. The mean is accumulated with a running log-sum of the
weights; SIR keeps, for each of the M draws, one candidate and replaces it by a pick from a new
chunk with probability W_chunk / W_so_far (weighted reservoir sampling), which selects particle i
with probability w_i / Σ_j w_j over all chunks, exactly as one multinomial draw over all K would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError

ImportanceDraw = Callable[[int], tuple[Tensor, Distribution]]
"""``draw(k) -> (log w (k, B), p(x | z_i))``: k fresh importance draws for a batch of B examples;
the distribution has batch (k·B,) (row ``i·B + b`` for z_i of example b) and the data's event."""

ELEMENTS_PER_CHUNK = 1 << 22
"""The default chunk of K holds at most this many values of the data (k · B · D), ~16 MB in float32."""


def chunk_for(batch: int, dim: int, elements: int = ELEMENTS_PER_CHUNK) -> int:
    """Importance draws per chunk for ``batch`` examples of ``dim`` entries: ⌊elements / (B·D)⌋, ≥ 1."""
    return max(1, elements // max(1, batch * dim))


@torch.no_grad()
def importance_impute(
    draw: ImportanceDraw,
    num_samples: int,
    *,
    multiple: int = 0,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """SNIS conditional means and M SIR draws from K importance draws, taken in chunks.

    Args:
        draw: makes k importance draws (see :data:`ImportanceDraw`).
        num_samples: K ≥ 1, importance draws per example (Mattei & Frellsen use 10,000 for
            single imputation; 1,000 is close on their tables).
        multiple: M ≥ 0 SIR draws per example (0: none).
        chunk_size: draws per call of ``draw`` (default: ``num_samples``; callers size it with
            :func:`chunk_for`).
        generator: for the draws of ``draw``'s caller and the resampling.

    Returns:
        ``(mean, draws)``: Σ_i w̃_i E[x | z_i], (B, *event), every entry (the caller keeps the
        observed ones), and (M, B, *event) SIR draws x̃ ~ p(x | z_i) with i picked ∝ w_i, or None
        when M = 0.
    """
    k_total = int(num_samples)
    if k_total < 1:
        raise ConfigError(f"importance-sampled imputation needs num_samples >= 1; found {num_samples}")
    if multiple < 0:
        raise ConfigError(f"the number of multiple imputations must be >= 0; found {multiple}")
    chunk = k_total if chunk_size is None else max(1, int(chunk_size))
    log_total: Tensor | None = None  # (B,) log Σ w over the chunks so far
    mean: Tensor | None = None  # (B, *event) Σ w̃ E[x | z] over the chunks so far
    draws: Tensor | None = None  # (M, B, *event)
    done = 0
    while done < k_total:
        k = min(chunk, k_total - done)
        log_w, px = draw(k)  # (k, B), batch (k·B,)
        batch = log_w.shape[1]
        values = px.mean.reshape(k, batch, *px.event_shape)  # (k, B, *event)
        log_chunk = torch.logsumexp(log_w, 0)  # (B,)
        new_total = log_chunk if log_total is None else torch.logaddexp(log_total, log_chunk)
        weights = torch.exp(log_w - new_total).reshape(k, batch, *([1] * (values.dim() - 2)))
        part = (weights * values).sum(0)
        if mean is None:
            mean = part
        else:
            mean = mean * torch.exp(log_total - new_total).reshape(batch, *([1] * (values.dim() - 2))) + part
        if multiple:
            candidates = sample_from(px, (), generator).reshape(k, batch, *px.event_shape)
            probs = torch.softmax(log_w.T, -1)  # (B, k)
            picks = torch.multinomial(probs, multiple, replacement=True, generator=generator)  # (B, M)
            flat = candidates.reshape(k, batch, -1)  # (k, B, D)
            rows = torch.arange(batch, device=flat.device)
            chosen = flat[picks.T, rows]  # (M, B, D)
            chosen = chosen.reshape(multiple, batch, *px.event_shape)
            if draws is None:
                draws = chosen
            else:  # keep the old pick with probability W_so_far / W_total
                p_new = torch.exp(log_chunk - new_total)  # (B,)
                u = torch.rand((multiple, batch), generator=generator, device=p_new.device, dtype=p_new.dtype)
                take = (u < p_new).reshape(multiple, batch, *([1] * (chosen.dim() - 2)))
                draws = torch.where(take, chosen, draws)
        log_total = new_total
        done += k
    assert mean is not None
    return mean, draws


__all__ = ["ELEMENTS_PER_CHUNK", "ImportanceDraw", "chunk_for", "importance_impute"]
