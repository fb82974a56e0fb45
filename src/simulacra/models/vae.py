"""The variational auto-encoder family: one class, every variant a configuration.

``VAE(info, encoder, decoder, prior, objective)`` is the model of Kingma & Welling (2014) and
Rezende et al. (2014): a prior p(z | c), a decoder p(x | z, c) and an amortized posterior
q(z | x, c), trained by maximising a variational bound. β-VAE, free bits, IWAE and the
conditional VAE (Sohn et al. 2015) differ only in the objective or in whether the networks see c.
MIWAE (Mattei & Frellsen 2019) is the IWAE trained on incomplete data (``missing=True``).

Every VAE imputes (:meth:`VAE.impute`, :meth:`VAE.complete`) by importance sampling with its
encoder as the proposal (:mod:`simulacra.samplers.importance`); one trained on incomplete data
has an encoder that has learned to read zero-filled inputs, which makes the proposal a good one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from simulacra.data.info import DataInfo
from simulacra.distributions.heads import is_discrete, log_prob_observed
from simulacra.distributions.kl import kl_divergence_or_mc
from simulacra.distributions.standard import sample_from
from simulacra.errors import ConfigError, DataError
from simulacra.models.base import (
    GenerativeModel,
    LatentVariableModel,
    LossOutput,
    check_context,
    copy_weights,
    model_name,
)
from simulacra.models.latent_prior import LatentDiffusion
from simulacra.objectives.variational import ELBO, IWAE, Decode, importance_sample, importance_weighted_bound
from simulacra.objectives.variational import log_importance_weights as _log_weights
from simulacra.samplers.base import Sampler
from simulacra.samplers.importance import chunk_for, importance_impute


class VAE(GenerativeModel):
    """p(x, z | c) = p(z | c) p(x | z, c), with q(z | x, c) trained on a variational bound.

    Args:
        info: shape and support of one example.
        encoder: module ``(x (B, *event), c) -> q(z | x, c)``, a Distribution with batch (B,).
        decoder: module ``(z (B, *latent), c) -> p(x | z, c)``, batch (B,), event = data's.
        prior: lazy module ``(c, n) -> p(z | c)`` (e.g. :class:`StandardNormal`).
        objective: :class:`ELBO` or :class:`IWAE` (any callable with that signature).
        conditional: the networks use ``c`` (labels); then every method needs ``c``.
        missing: the data may have missing entries, given as NaN (MIWAE, Mattei & Frellsen
            2019): the encoder reads x with 0 in their place, and the bound (training,
            ``log_prob_bound``, importance weights) is that of the observed entries,
            log p(x_obs), the likelihood summed over observed entries only.
    """

    loss_description = "negative variational bound (nats per example)"

    def __init__(
        self,
        info: DataInfo,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        objective: ELBO | IWAE | Any,
        conditional: bool = False,
        missing: bool = False,
    ) -> None:
        super().__init__(info)
        self.missing = bool(missing)
        self.encoder = encoder
        self.decoder = decoder
        self.prior_module = prior
        self.objective = objective
        self.conditional = bool(conditional)

    bound_name = "ELBO"
    sample_options = frozenset({"mean", "sampler"})

    @property
    def discrete_likelihood(self) -> bool:
        """True when p(x | z) assigns probabilities (no dequantization offset in bits/dim)."""
        return is_discrete(self.decoder)

    # -- the latent-variable interface -------------------------------------------------------

    def prior(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        """p(z | c), batch shape ``(len(c),)``, else ``(n,)``, else ``()``."""
        return self.prior_module(c if self.conditional else None, n if c is None else c.shape[0])

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        """q(z | x, c) with batch shape (B,)."""
        check_context(self, c, x.shape[0])
        return self.encoder(x, c if self.conditional else None)

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution:
        """p(x | z, c) with batch shape (B,) and the data's event shape."""
        check_context(self, c, z.shape[0])
        return self.decoder(z, c if self.conditional else None)

    def _observed(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(x with 0 for its missing entries, observed mask (bool, x's shape) or None): NaN marks a
        missing entry when the model takes missing data; otherwise x is returned as it is."""
        if not self.missing:
            return x, None
        observed = ~torch.isnan(x)
        return torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device)), observed

    def _decoder_for(self, c: Tensor | None, batch: int) -> Decode:
        """z (m·B, ...) -> p(x | z, c) with c repeated m times (the objectives' convention)."""
        if not self.conditional or c is None:
            return lambda z: self.decoder(z, None)
        return lambda z: self.decoder(z, c.repeat(z.shape[0] // batch, *([1] * (c.dim() - 1))))

    # -- training ------------------------------------------------------------------------------

    def loss_weights(self) -> dict[str, float]:
        """``{"kl": β}``, the objective's KL weight (KL warm-up anneals it)."""
        beta = self.objective.beta
        return {"kl": float(beta.item() if isinstance(beta, Tensor) else beta)}

    def set_loss_weight(self, name: str, value: float) -> None:
        """Set the objective's KL weight β (``name="kl"``)."""
        if name != "kl":
            raise ConfigError(f"a VAE has one loss weight, 'kl'; found {name!r}")
        if isinstance(self.objective.beta, Tensor):
            self.objective.beta.fill_(value)
        else:
            self.objective.beta = float(value)

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """Mean over the batch of the objective's loss; metrics ``elbo`` (the objective's bound),
        ``kl`` and ``rec`` = E_q log p(x | z), nats per example. With ``missing``, NaN entries of x
        are missing and the bound is MIWAE's, over the observed entries."""
        x, observed = self._observed(x)
        q = self.encode(x, c)
        decode, prior = self._decoder_for(c, x.shape[0]), self.prior(c, x.shape[0])
        if observed is None:
            terms = self.objective(x, q, decode, prior)
        else:
            terms = self.objective(x, q, decode, prior, observed=observed)
        metrics = {
            "elbo": terms.bound.mean().detach(),
            "kl": terms.kl.mean().detach(),
            "rec": terms.reconstruction.mean().detach(),
        }
        return LossOutput(terms.loss.mean(), metrics)

    def initialize_from(self, trained: GenerativeModel) -> None:
        """Take the encoder and decoder of ``trained``, a VAE of the same architecture (LSGM's
        first stage: ``simulacra train lsgm --init RUN``); the prior stays this model's own.

        Raises:
            ConfigError: this VAE trains from scratch (``starts_from`` is None), ``trained`` is
                not a VAE, or its encoder or decoder differs in architecture.
        """
        if self.starts_from is None:
            super().initialize_from(trained)
        if not isinstance(trained, VAE):
            has = (
                "a model without a variational posterior"
                if isinstance(trained, LatentVariableModel)
                else ("a model without latent variables")
            )
            raise ConfigError(
                f"{self.preset_name} starts from {self.starts_from}; found {model_name(trained)} "
                f"({type(trained).__name__}), {has}"
            )
        copy_weights(self.encoder, trained.encoder, f"{self.preset_name}'s encoder")
        copy_weights(self.decoder, trained.decoder, f"{self.preset_name}'s decoder")

    # -- evaluation ----------------------------------------------------------------------------

    def validate(self, x: Tensor) -> None:
        """Check shape and support of x for the decoder's likelihood (synchronises with the host);
        with ``missing``, of its observed entries (NaN are missing)."""
        check = getattr(self.decoder, "validate", None)
        if check is not None:
            check(self._observed(x)[0])

    def log_importance_weights(
        self,
        x: Tensor,
        c: Tensor | None = None,
        num_samples: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``log p(x, z_i | c) − log q(z_i | x, c)``, z_i ~ q, shape (num_samples, B), nats; with
        ``missing``, ``log p(x_obs, z_i | c) − log q(z_i | x_obs, c)``."""
        self.validate(x)
        x, observed = self._observed(x)
        q = self.encode(x, c)
        return _log_weights(
            x,
            q,
            self._decoder_for(c, x.shape[0]),
            self.prior(c, x.shape[0]),
            num_samples,
            observed=observed,
            generator=generator,
        )

    def log_prob_bound(
        self,
        x: Tensor,
        c: Tensor | None = None,
        num_samples: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A lower bound on log p(x | c), (B,) nats.

        ``num_samples = 1``: the ELBO ``log p(x | z) − KL(q ‖ p)`` (β = 1; closed-form KL when
        available, one draw z ~ q). ``num_samples = k > 1``: the IWAE bound
        ``logsumexp_i log w_i − log k`` (Burda et al. 2016), tighter as k grows.
        """
        if num_samples > 1:
            return importance_weighted_bound(
                self.log_importance_weights(x, c, num_samples, generator=generator)
            )
        if num_samples < 1:
            raise ConfigError(f"log_prob_bound needs num_samples >= 1; found {num_samples}")
        self.validate(x)
        x, observed = self._observed(x)
        q = self.encode(x, c)
        z = sample_from(q, (), generator)
        px = self.decode(z, c)
        rec = px.log_prob(x) if observed is None else log_prob_observed(px, x, observed)
        return rec - kl_divergence_or_mc(q, self.prior(c, x.shape[0]), z)

    # -- imputation ----------------------------------------------------------------------------

    @torch.no_grad()
    def impute(
        self,
        x: Tensor,
        missing: Tensor,
        c: Tensor | None = None,
        *,
        num_samples: int = 1000,
        multiple: int = 0,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Impute the missing entries by importance sampling with q(z | x_obs) as the proposal.

        Draws z_i ~ q(z | x̊), where x̊ is x with 0 in the missing entries, i = 1..K, with weights
        w_i = p(x_obs | z_i) p(z_i) / q(z_i | x̊); the conditional mean is
        Σ_i w̃_i E[x_miss | z_i] (self-normalized importance sampling) and the multiple
        imputations are sampling-importance-resampling draws (Mattei & Frellsen 2019, §4;
        :func:`~simulacra.samplers.importance.importance_impute`).

        Args:
            x: (B, *event); its missing entries are ignored (any value, NaN included).
            missing: bool (B, *event), True where an entry is missing.
            c: (B,) labels for a conditional model.
            num_samples: K importance draws per example.
            multiple: M ≥ 0 SIR draws per example.
            chunk_size: draws per pass (default: ~4M values of the data at a time).
            generator: makes the draws reproducible.

        Returns:
            ``(completed, draws)``: (B, *event) with the conditional means in the missing entries
            and x (bitwise) elsewhere; (M, B, *event) draws completed the same way, or None.
        """
        check_context(self, c, x.shape[0])
        if tuple(missing.shape) != tuple(x.shape):
            raise DataError(
                f"the missing mask must have x's shape {tuple(x.shape)}; found {tuple(missing.shape)}"
            )
        observed = ~missing.bool()
        filled = torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device))
        q = self.encode(filled, c)
        decode, prior = self._decoder_for(c, x.shape[0]), self.prior(c, x.shape[0])

        def draw(k: int) -> tuple[Tensor, Distribution]:
            log_px, log_pz, log_qz, px = importance_sample(
                filled, q, decode, prior, k, observed=observed, generator=generator
            )
            return log_px + log_pz - log_qz, px

        if chunk_size is None:
            chunk_size = chunk_for(x.shape[0], self.info.dim)
        mean, draws = importance_impute(
            draw, num_samples, multiple=multiple, chunk_size=chunk_size, generator=generator
        )
        completed = torch.where(observed, x, mean.to(x.dtype))
        if draws is not None:
            draws = torch.where(observed, x, draws.to(x.dtype))
        return completed, draws

    @torch.no_grad()
    def complete(
        self,
        x: Tensor,
        missing: Tensor,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """x (B, *event) with the entries where ``missing`` is True drawn from p(x_miss | x_obs) by
        sampling-importance-resampling over 1,000 importance draws (:meth:`impute`)."""
        _, draws = self.impute(x, missing, c, multiple=1, generator=generator)
        assert draws is not None
        return draws[0]

    # -- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = True,
        sampler: Sampler | None = None,
        **sampler_options: Any,
    ) -> Tensor:
        """z ~ p(z | c), then x = E[x | z, c] (``mean=True``, the usual picture) or x ~ p(x | z, c).

        Args:
            n: number of samples.
            c: (n,) labels for a conditional model (required then).
            generator: makes the draw reproducible.
            mean: return the decoder mean instead of a draw from the likelihood.
            sampler: for a latent diffusion prior (LSGM), the diffusion sampler that draws z (any
                :class:`~simulacra.samplers.base.Sampler`; default the prior's own).

        Returns:
            (n, *event_shape).
        """
        if sampler_options:
            raise ConfigError(f"VAE.sample takes mean= and sampler=; found options {sorted(sampler_options)}")
        check_context(self, c, n)
        if sampler is not None:
            if not isinstance(self.prior_module, LatentDiffusion):
                raise ConfigError(
                    f"sampler= draws z from a latent diffusion prior (lsgm); {self.preset_name}'s prior is "
                    f"{type(self.prior_module).__name__}"
                )
            z = self.prior_module.sample(n, sampler=sampler, generator=generator)
        else:
            z = sample_from(self.prior(c, n), (), generator)
        px = self.decode(z, c)
        return px.mean if mean else sample_from(px, (), generator)
