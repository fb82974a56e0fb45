"""Deterministic (and denoising) auto-encoders with a post-hoc latent density.

``z = f(x̃, c)``, ``p(x | z, c)`` a likelihood head; the loss is ``−log p(x | z = f(x̃))`` averaged
over the batch, where x̃ = x, or a corrupted copy of x in training for a denoising auto-encoder
(Vincent et al. 2008). The target is always the clean x. With a Bernoulli head the loss is the
binary cross-entropy, with a fixed-σ Gaussian head ``‖x − x̂‖² / (2σ²) + const``; a linear encoder
and decoder with the Gaussian head then span the principal subspace (Baldi & Hornik 1989).

For generation a density p(z) is fitted to the codes after training (``fit_latent_density``) and
draws from it are decoded (Ghosh et al. 2020).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from simulacra.data.info import DataInfo
from simulacra.distributions.heads import is_discrete
from simulacra.distributions.standard import PointMass, sample_from
from simulacra.errors import ConfigError
from simulacra.models.base import GenerativeModel, LossOutput, check_context


class Autoencoder(GenerativeModel):
    """z = f(x, c), x ~ p(x | z, c); the prior is a post-hoc density fitted to the codes.

    Args:
        info: shape and support of one example.
        encoder: module ``(x (B, *event), c) -> z (B, latent_dim)``.
        decoder: module ``(z, c) -> p(x | z, c)``, batch (B,), the data's event shape.
        latent_density: lazy module ``(c, n) -> p(z)`` with ``fit(z)`` (see
            :mod:`simulacra.samplers.latent`).
        corruption: None, or a module ``x -> x̃`` applied to the input in training mode only.
        conditional: encoder and decoder see labels ``c``.
    """

    loss_description = "reconstruction −log p(x | z) (nats per example)"

    def __init__(
        self,
        info: DataInfo,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_density: nn.Module,
        corruption: nn.Module | None = None,
        conditional: bool = False,
    ) -> None:
        super().__init__(info)
        self.encoder = encoder
        self.decoder = decoder
        self.latent_density = latent_density
        self.corruption = corruption
        self.conditional = bool(conditional)

    def _context(self, c: Tensor | None, n: int) -> Tensor | None:
        check_context(self, c, n)
        return c if self.conditional else None

    sample_options = frozenset({"mean"})

    @property
    def discrete_likelihood(self) -> bool:
        """True when p(x | z) assigns probabilities (no dequantization offset in bits/dim)."""
        return is_discrete(self.decoder)

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        """The point mass δ(z − f(x, c)), batch (B,), event (latent_dim,)."""
        return PointMass(self.encoder(x, self._context(c, x.shape[0])))

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution:
        """p(x | z, c), batch (B,)."""
        return self.decoder(z, self._context(c, z.shape[0]))

    def prior(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        """The fitted latent density p(z) (N(0, I) or its initial state before fitting)."""
        return self.latent_density(None, n if c is None else c.shape[0])

    @torch.no_grad()
    def fit_latent_density(self, z: Tensor, **kwargs: Any) -> None:
        """Fit p(z) to codes (N, latent_dim), e.g. ``encode(x_train).mean``."""
        self.latent_density.fit(z, **kwargs)

    @torch.no_grad()
    def second_stage(self, x: Tensor, c: Tensor | None = None, *, batch_size: int = 1024) -> dict[str, float]:
        """Fit the post-hoc density p(z) to the codes z_n = f(x_n, c_n) of the training split
        x (N, *event) (eval mode, no corruption). Returns ``latent_nll``, the mean −log p(z_n) of
        the codes under the fitted density, in nats."""
        was_training = self.training
        self.eval()
        try:
            device = self.device
            codes = [
                self.encode(xb.to(device), None if c is None else c[i : i + batch_size].to(device)).mean
                for i, xb in zip(range(0, x.shape[0], batch_size), x.split(batch_size))
            ]
            z = torch.cat(codes)  # (N, latent_dim)
            self.fit_latent_density(z)
            latent_nll = -self.prior(None, z.shape[0]).log_prob(z).mean()
        finally:
            self.train(was_training)
        return {"latent_nll": float(latent_nll)}

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """``mean_b −log p(x_b | z_b = f(x̃_b))``; x̃ is corrupted in training mode only. Metric
        ``rec`` = mean log p(x | z) in nats."""
        c = self._context(c, x.shape[0])
        x_in = self.corruption(x) if self.corruption is not None and self.training else x
        rec = self.decoder(self.encoder(x_in, c), c).log_prob(x)  # (B,)
        return LossOutput(-rec.mean(), {"rec": rec.mean().detach()})

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = True,
        **sampler_options: Any,
    ) -> Tensor:
        """z ~ p(z) (the fitted density) under ``generator``, then the decoder mean E[x | z, c]
        (or a draw with ``mean=False``). Returns (n, *event_shape)."""
        if sampler_options:
            raise ConfigError(f"Autoencoder.sample takes only mean=; found options {sorted(sampler_options)}")
        check_context(self, c, n)
        z = sample_from(self.prior(None, n), (), generator)
        px = self.decode(z, c)
        return px.mean if mean else sample_from(px, (), generator)
