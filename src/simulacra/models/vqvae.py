"""VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017): discrete latents and a learned prior over them.

Stage one, :class:`VQVAE`: an encoder maps x to a grid of vectors z_e(x) (B, D, h, w), a
:class:`~simulacra.nn.quantize.VectorQuantizer` replaces each by its nearest of K codebook
vectors, z_q = e_{k(x)}, and a decoder gives p(x | z_q). Training minimises

    −log p(x | z_q(x)) + β Σ_{ij} ‖z_e(x)_ij − sg(z_q(x)_ij)‖²

(nats per example) with the straight-through gradient through the quantizer; the codebook is an
EMA of the encoder outputs, so there is no codebook loss term. After training, the model's second
stage fits a factorized prior over the codes (per-position code frequencies,
:class:`~simulacra.distributions.codes.FactorizedCodes`) so that it can sample and bound log p(x).

Stage two, :class:`VQVAEPrior`: the trained VQ-VAE, frozen, with an autoregressive prior over its
code grids (:class:`~simulacra.models.autoregressive.Autoregressive`: the gated PixelCNN or a
Transformer with a categorical head over the K codes), trained on the codes k(x) of the data.
Sampling draws codes from the prior and decodes them.

Both give a lower bound on log p(x): the posterior q(k | x) = δ(k − k(x)) is a point mass, whose
entropy is 0, so

    log p(x) ≥ E_q[log p(x | k) + log p(k) − log q(k | x)] = log p(x | z_q(x)) + log p(k(x)),

a valid bound wherever p(x | z_q) is a likelihood of the data (the ELBO with a one-hot posterior).
The model's prior over codes is reported in bits per code, −log₂ p(k(x)) / (h w).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from simulacra.data.info import LN2, DataInfo
from simulacra.distributions.codes import CodebookVectors, FactorizedCodes
from simulacra.distributions.heads import is_discrete
from simulacra.distributions.standard import PointMass, sample_from
from simulacra.errors import ConfigError
from simulacra.models.autoregressive import Autoregressive
from simulacra.models.base import (
    GenerativeModel,
    LossOutput,
    check_batch,
    check_context,
    copy_weights,
    model_name,
)
from simulacra.nn.quantize import VectorQuantizer, perplexity_of


@runtime_checkable
class DiscreteLatent(Protocol):
    """Models whose latent is a grid of discrete codes (the VQ-VAE family): the codes of x, their
    log-probability under the model's prior, and the decoder's distribution at the codes of x."""

    @property
    def num_codes(self) -> int: ...

    @property
    def code_prior_name(self) -> str: ...

    def codes(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """k(x), (B, h, w) int64."""
        ...

    def code_log_prob(self, codes: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(k) under the model's prior, (B,) nats."""
        ...

    def reconstruction(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        """p(x | z_q(x)), batch (B,)."""
        ...


class VQVAE(GenerativeModel):
    """x -> z_e(x) (B, D, h, w) -> z_q = nearest codes -> p(x | z_q); a factorized code prior.

    Args:
        info: shape and support of one example (images).
        encoder: module x (B, *event) -> z_e (B, D, h, w).
        quantizer: a :class:`VectorQuantizer` over D-vectors.
        decoder: module ``(z_q (B, D, h, w), c) -> p(x | z_q)``, batch (B,), the data's event shape
            (an :class:`~simulacra.distributions.lazy.Amortized` network and head).
        code_prior: the :class:`FactorizedCodes` prior over (h, w) grids of K codes.
    """

    loss_description = "−log p(x | z_q) + commitment (nats per example)"
    bound_name = "ELBO (point-mass posterior over codes)"
    sample_options = frozenset({"mean"})

    def __init__(
        self,
        info: DataInfo,
        encoder: nn.Module,
        quantizer: VectorQuantizer,
        decoder: nn.Module,
        code_prior: FactorizedCodes,
    ) -> None:
        super().__init__(info)
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.code_prior = code_prior
        self.grid_shape: tuple[int, int] = (int(code_prior.grid_shape[0]), int(code_prior.grid_shape[1]))
        if code_prior.num_codes != quantizer.num_codes:
            raise ConfigError(
                f"the code prior has {code_prior.num_codes} codes; the quantizer {quantizer.num_codes}"
            )
        # set by the second stage: the code prior has been fitted to the training codes
        self.register_buffer("prior_fitted", torch.tensor(False))

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    @property
    def discrete_likelihood(self) -> bool:
        return is_discrete(self.decoder)

    @property
    def code_prior_name(self) -> str:
        if bool(self.prior_fitted):
            return "factorized code frequencies of the training set"
        return "uniform over codes (code prior not fitted yet)"

    # -- the maps -------------------------------------------------------------------------------

    def _grid(self, x: Tensor) -> Tensor:
        """z_e(x) as vectors (B, h, w, D)."""
        z = self.encoder(x)  # (B, D, h, w)
        if tuple(z.shape[2:]) != self.grid_shape:
            raise ConfigError(
                f"the encoder gives a {tuple(z.shape[2:])} grid; the prior expects {self.grid_shape}"
            )
        return z.movedim(1, -1)

    def codes(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """k(x) = the nearest codes of z_e(x), (B, h, w) int64 (no codebook update)."""
        check_batch(self, x, c)
        return self.quantizer.codes(self._grid(x))

    def decode_codes(self, codes: Tensor, c: Tensor | None = None) -> Distribution:
        """p(x | z_q = e_k) for codes (B, h, w)."""
        return self.decoder(self.quantizer.lookup(codes).movedim(-1, 1), None)

    def reconstruction(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        """p(x | z_q(x)), batch (B,)."""
        return self.decode_codes(self.codes(x, c))

    def code_log_prob(self, codes: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(k) under the factorized code prior, (B,) nats."""
        return self.code_prior(None, codes.shape[0]).log_prob(codes)

    # -- the latent-variable interface (z = the codebook vectors z_q, (B, D, h, w)) ------------

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        """δ(z − z_q(x)): the point mass at the quantized grid, event (D, h, w)."""
        return PointMass(self.quantizer.lookup(self.codes(x, c)).movedim(-1, 1), event_dim=3)

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution:
        """p(x | z) for grids of vectors z (B, D, h, w)."""
        return self.decoder(z, None)

    def prior(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        """p(z): codebook vectors at codes drawn from the factorized code prior, event (D, h, w)."""
        return CodebookVectors(self.code_prior(None, n), self.quantizer.codebook)

    # -- training -------------------------------------------------------------------------------

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """``mean_b [−log p(x_b | z_q) + β Σ ‖z_e − sg(z_q)‖²]``; in training mode the quantizer
        updates its codebook. Metrics: ``rec`` (log p(x | z_q), nats), ``commitment``, and the
        codebook's ``perplexity``, ``usage`` (fraction of codes in the batch) and ``restarted``."""
        check_batch(self, x, c)
        q = self.quantizer(self._grid(x))
        rec = self.decoder(q.z_q.movedim(-1, 1), None).log_prob(x)  # (B,)
        commitment = q.commitment.flatten(1).sum(1)  # (B,)
        metrics = {
            "rec": rec.mean().detach(),
            "commitment": commitment.mean().detach(),
            "perplexity": q.perplexity,
            "usage": q.usage,
            "restarted": q.restarted,
        }
        return LossOutput((commitment - rec).mean(), metrics)

    @torch.no_grad()
    def second_stage(self, x: Tensor, c: Tensor | None = None, *, batch_size: int = 1024) -> dict[str, float]:
        """Fit the factorized code prior to the codes of the training split x (N, *event).

        Returns ``code_bits`` (bits per code of the training codes under the fitted prior),
        ``codebook_usage`` (fraction of the K codes that some training code uses) and
        ``code_perplexity`` (exp of the entropy of the codes' overall frequencies)."""
        was_training = self.training
        self.eval()
        try:
            device = self.device
            codes = torch.cat([self.codes(xb.to(device)) for xb in x.split(batch_size)])  # (N, h, w)
            self.code_prior.fit(codes)
            self.prior_fitted.fill_(True)
            bits = -self.code_log_prob(codes).mean() / (codes[0].numel() * LN2)
            used = torch.bincount(codes.reshape(-1), minlength=self.num_codes).gt(0).float().mean()
        finally:
            self.train(was_training)
        return {
            "code_bits": float(bits),
            "codebook_usage": float(used),
            "code_perplexity": perplexity_of(codes, self.num_codes),
        }

    # -- evaluation and generation ------------------------------------------------------------

    def validate(self, x: Tensor) -> None:
        """Check shape and support of x for the decoder's likelihood (synchronises with the host)."""
        check = getattr(self.decoder, "validate", None)
        if check is not None:
            check(x)

    def log_prob_bound(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        """log p(x | z_q(x)) + log p(k(x)) ≤ log p(x), (B,) nats (the posterior is a point mass, so
        the bound is deterministic and ``num_samples`` does not change it)."""
        if num_samples < 1:
            raise ConfigError(f"log_prob_bound needs num_samples >= 1; found {num_samples}")
        self.validate(x)
        codes = self.codes(x, c)
        return self.decode_codes(codes).log_prob(x) + self.code_log_prob(codes)

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        what = "decoder mean" if (options or {}).get("mean", True) else "a draw from p(x | z_q)"
        return f"codes from the {self.code_prior_name}, then the {what}"

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
        """k ~ p(k) (the factorized code prior) under ``generator``, then E[x | e_k] (or a draw
        with ``mean=False``). Returns (n, *event_shape)."""
        if sampler_options:
            raise ConfigError(f"VQVAE.sample takes only mean=; found options {sorted(sampler_options)}")
        check_context(self, c, n)
        codes = sample_from(self.code_prior(None, n), (), generator)
        px = self.decode_codes(codes)
        return px.mean if mean else sample_from(px, (), generator)


class AutoregressiveCodes(Distribution):
    """p(k) over (h, w) code grids given by an :class:`Autoregressive` model over K levels, whose
    entries are the codes scaled to the grid k / (K − 1) (the categorical head's convention).

    Args:
        model: the autoregressive prior (event shape (1, h, w) or (h·w,), ``levels`` = K).
        grid_shape: (h, w).
        n: batch size (the batch shape is (n,)).
        temperature: sampling temperature of the prior's conditionals.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.nonnegative_integer
    has_rsample = False

    def __init__(
        self, model: Autoregressive, grid_shape: tuple[int, int], n: int, temperature: float = 1.0
    ) -> None:
        self.model, self.grid_shape, self.n, self.temperature = model, grid_shape, int(n), float(temperature)
        self.levels = int(model.levels or 0)
        super().__init__(torch.Size((self.n,)), torch.Size(grid_shape), validate_args=False)

    def as_data(self, codes: Tensor) -> Tensor:
        """Codes (B, h, w) -> the prior's data (B, *event), values k / (K − 1)."""
        return (codes.to(torch.float32) / (self.levels - 1)).reshape(
            codes.shape[0], *self.model.info.event_shape
        )

    def as_codes(self, x: Tensor) -> Tensor:
        """The prior's data (B, *event) -> codes (B, h, w) int64."""
        return (x * (self.levels - 1)).round().long().reshape(x.shape[0], *self.grid_shape)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = torch.Size(sample_shape)
        total = math.prod(shape) * self.n
        x = self.model.sample(total, temperature=self.temperature)  # global RNG (sample_from forks it)
        return self.as_codes(x).reshape(*shape, self.n, *self.grid_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        lead = value.shape[:-2]
        flat = value.reshape(-1, *self.grid_shape)
        return self.model.log_prob(self.as_data(flat)).reshape(lead)


class VQVAEPrior(GenerativeModel):
    """A trained VQ-VAE, frozen, with an autoregressive prior p(k) over its code grids.

    The loss is the prior's NLL of the codes of x, −log p(k(x)) (nats per example); the codes are
    computed without gradients through the frozen VQ-VAE, whose parameters are not trained (only
    the prior's are in :meth:`parameter_groups`) and which stays in eval mode (its codebook does
    not move). Start it from a finished ``vqvae`` run (:meth:`initialize_from`, ``simulacra train
    vqvae-prior --init RUN``).

    Args:
        info: the images' shape and support (the VQ-VAE's).
        vqvae: the first stage (its weights are copied in by :meth:`initialize_from`).
        prior: an :class:`Autoregressive` model over (1, h, w) or (h·w,) grids of ``levels`` = K.
    """

    starts_from = "a trained vqvae run"
    loss_description = "prior NLL of the codes (nats per example)"
    bound_name = "ELBO (point-mass posterior over codes)"
    sample_options = frozenset({"mean", "temperature"})

    def __init__(self, info: DataInfo, vqvae: VQVAE, prior: Autoregressive) -> None:
        super().__init__(info)
        h, w = vqvae.grid_shape
        if prior.levels != vqvae.num_codes or prior.info.dim != h * w:
            raise ConfigError(
                f"the prior must model {h}×{w} grids of {vqvae.num_codes} codes; found {prior.info.dim} "
                f"entries of {prior.levels} levels"
            )
        self.vqvae = vqvae
        for p in self.vqvae.parameters():
            p.requires_grad_(False)
        self.vqvae.eval()
        self.code_prior = prior

    # -- the first stage ------------------------------------------------------------------------

    def train(self, mode: bool = True) -> VQVAEPrior:
        """Train mode for the prior; the frozen VQ-VAE stays in eval mode."""
        super().train(mode)
        self.vqvae.eval()
        return self

    def initialize_from(self, trained: GenerativeModel) -> None:
        """Copy the weights of a finished ``vqvae`` run into this model's VQ-VAE.

        Raises:
            ConfigError: ``trained`` is not a VQ-VAE, has another architecture, or has not
                finished training (its second stage, which fits the code prior, never ran).
        """
        if not isinstance(trained, VQVAE):
            raise ConfigError(
                f"{self.preset_name} starts from a trained vqvae run; found a {model_name(trained)} model"
            )
        if tuple(trained.info.event_shape) != tuple(self.info.event_shape):
            raise ConfigError(
                f"{self.preset_name} was built for data of shape {tuple(self.info.event_shape)}; the "
                f"{model_name(trained)} run for {tuple(trained.info.event_shape)}"
            )
        copy_weights(self.vqvae, trained, f"{self.preset_name}'s vqvae")
        if not bool(trained.prior_fitted):
            raise ConfigError(
                f"the {model_name(trained)} run has not finished training (its code prior was never "
                "fitted): train the vqvae to the end before its second-stage prior"
            )

    # -- codes ------------------------------------------------------------------------------------

    @property
    def num_codes(self) -> int:
        return self.vqvae.num_codes

    @property
    def discrete_likelihood(self) -> bool:
        return self.vqvae.discrete_likelihood

    @property
    def code_prior_name(self) -> str:
        return f"autoregressive prior ({type(self.code_prior.net).__name__})"

    def _codes_dist(self, n: int, temperature: float = 1.0) -> AutoregressiveCodes:
        return AutoregressiveCodes(self.code_prior, self.vqvae.grid_shape, n, temperature)

    def codes(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """k(x) through the frozen VQ-VAE, (B, h, w) int64, no gradient."""
        with torch.no_grad():
            return self.vqvae.codes(x, c)

    def code_log_prob(self, codes: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(k) under the autoregressive prior, (B,) nats."""
        return self._codes_dist(codes.shape[0]).log_prob(codes)

    def reconstruction(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        return self.vqvae.reconstruction(x, c)

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        return self.vqvae.encode(x, c)

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution:
        return self.vqvae.decode(z, c)

    def prior(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        """p(z): codebook vectors at codes drawn from the autoregressive prior, event (D, h, w)."""
        return CodebookVectors(self._codes_dist(1 if n is None else n), self.vqvae.quantizer.codebook)

    # -- training, evaluation, generation ------------------------------------------------------

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """Mean −log p(k(x)) in nats; metric ``bits_per_code`` = that / (h w ln 2)."""
        codes = self.codes(x, c)
        nll = -self.code_log_prob(codes).mean()
        return LossOutput(
            nll, {"nll": nll.detach(), "bits_per_code": nll.detach() / (codes[0].numel() * LN2)}
        )

    def log_prob_bound(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        """log p(x | z_q(x)) + log p_prior(k(x)) ≤ log p(x), (B,) nats (deterministic)."""
        if num_samples < 1:
            raise ConfigError(f"log_prob_bound needs num_samples >= 1; found {num_samples}")
        self.vqvae.validate(x)
        codes = self.codes(x, c)
        return self.vqvae.decode_codes(codes).log_prob(x) + self.code_log_prob(codes)

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        options = options or {}
        what = "decoder mean" if options.get("mean", True) else "a draw from p(x | z_q)"
        t = options.get("temperature", 1.0)
        return (
            f"codes from the {self.code_prior_name}"
            + (f" at temperature {t}" if t != 1.0 else "")
            + f", then the {what}"
        )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = True,
        temperature: float = 1.0,
        **sampler_options: Any,
    ) -> Tensor:
        """k ~ p(k) from the autoregressive prior (position by position, under ``generator``),
        then E[x | e_k] (or a draw with ``mean=False``). Returns (n, *event_shape)."""
        if sampler_options:
            raise ConfigError(
                f"vqvae-prior sampling takes mean= and temperature=; found options {sorted(sampler_options)}"
            )
        check_context(self, c, n)
        dist = self._codes_dist(n, temperature)
        x = self.code_prior.sample(n, generator=generator, temperature=temperature)
        px = self.vqvae.decode_codes(dist.as_codes(x))
        return px.mean if mean else sample_from(px, (), generator)
