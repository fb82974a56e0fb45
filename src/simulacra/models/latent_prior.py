"""Learned priors p(z) for the VAE: the VampPrior and a score-based diffusion over z (LSGM).

Each is a lazy prior module, ``prior(c=None, n=None) -> Distribution`` with batch shape ``(n,)``
and event shape ``(D,)``, that the one :class:`~simulacra.models.vae.VAE` class takes as its
``prior``; the ELBO uses the Monte Carlo KL ``log q(z | x) − log p(z)`` at z ~ q(z | x) when no
closed form exists (:func:`~simulacra.distributions.kl.kl_divergence_or_mc`). The standard normal
and the MAF prior live in :mod:`simulacra.distributions.standard` and :mod:`simulacra.flows.flow`;
the zoo chooses among all four by name (:data:`simulacra.models.zoo._priors.LATENT_PRIORS`).

* :class:`VampPrior` (Tomczak & Welling 2018): p(z) = (1/K) Σ_k q(z | u_k), the mixture of the
  encoder's posteriors at K learned pseudo-inputs u_k.
* :class:`LatentDiffusion` (LSGM, Vahdat, Kreis & Kautz 2021): p(z) is the marginal at t ≈ 0 of
  a score-based diffusion model over z with the *mixed score parameterization*

      ε_θ(z_t, t) = (1 − m) ⊙ σ_t z_t / (α_t² + σ_t²) + m ⊙ ε'_θ(z_t, t),   m = sigmoid(ℓ) ∈ (0, 1)^D,

  whose first term is the exact ε-prediction of the standard normal N(0, I) (its score is
  −z_t/(α_t² + σ_t²)): m = 0 is the N(0, I) prior exactly, and the network ε'_θ learns only the
  correction (the residual of q(z) from a Gaussian). Its ``log_prob`` is the continuous-time
  variational bound on log p(z) (:meth:`LatentDiffusion.log_prob_bound`), so −ELBO stays an upper
  bound on −log p(x) in expectation, and that bound's cross-entropy term is denoising score
  matching with the likelihood weighting g²/σ² (Song et al. 2021b; LSGM eq. 6); or, for
  evaluation, the probability-flow ODE log-density of z (``likelihood="ode"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal, constraints

from simulacra.data.info import DataInfo
from simulacra.distributions.standard import batch_shape_of
from simulacra.errors import ConfigError, DataError, positive_int
from simulacra.processes.gaussian import batch_time, convert, expand, q_sample
from simulacra.processes.schedules import NoiseSchedule
from simulacra.samplers import Sampler, check_sampler, time_grid
from simulacra.samplers.ode import log_prob as pf_ode_log_prob

LIKELIHOODS = ("bound", "ode")
"""What :meth:`LatentDiffusion.log_prob` returns: the variational bound (training) or the PF-ODE."""


# -- the VampPrior -----------------------------------------------------------------------------


class VampPrior(nn.Module):
    """p(z) = (1/K) Σ_k q(z | u_k): a mixture of the VAE's posteriors at learned pseudo-inputs.

    Tomczak & Welling (2018), "VAE with a VampPrior": the prior that maximises the ELBO for a given
    encoder is the aggregate posterior (1/N) Σ_n q(z | x_n); the VampPrior approximates it with
    K ≪ N learned pseudo-inputs u_k, which couples prior and encoder. With K = 1 it is the single
    Gaussian q(z | u_1).

    The encoder belongs to the VAE: it is held by a plain reference, not registered as a
    submodule of the prior, so its weights appear once in ``state_dict`` (safetensors refuses
    shared tensors) and the VAE moves, saves and loads them. The pseudo-inputs are parameters of
    the prior. For data in [0, 1] (binary, grey levels) u = sigmoid(η), which keeps them in the
    data's range; for real data u = η.

    Args:
        encoder: the VAE's encoder ``(x (B, *event), c) -> q(z | x)``, an ``Independent(Normal)``
            with batch (B,) (a diagonal Gaussian posterior).
        info: the data's shape and support (the pseudo-inputs have ``info.event_shape``).
        components: K ≥ 1 pseudo-inputs.
        init_std: η is initialised N(0, init_std²): u near 0.5 for bounded data (random in the
            data's range), near 0 for real data.
    """

    def __init__(
        self,
        encoder: Callable[..., Distribution],
        info: DataInfo,
        components: int = 500,
        init_std: float = 1.0,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "_encoder", encoder)  # a reference, not a submodule: see the docstring
        self.bounded = info.support != "real"
        k = positive_int(components, "the VampPrior's components")
        self.pseudo_inputs = nn.Parameter(float(init_std) * torch.randn(k, *info.event_shape))

    @property
    def components(self) -> int:
        """K, the number of pseudo-inputs."""
        return self.pseudo_inputs.shape[0]

    def inputs(self) -> Tensor:
        """The pseudo-inputs u_k in the data's space, (K, *event)."""
        return torch.sigmoid(self.pseudo_inputs) if self.bounded else self.pseudo_inputs

    def components_distribution(self) -> Independent:
        """q(z | u_k), an ``Independent(Normal)`` with batch (K,)."""
        q = self._encoder(self.inputs(), None)
        if not isinstance(q, Independent) or not isinstance(q.base_dist, Normal):
            raise ConfigError(
                "the VampPrior needs a diagonal Gaussian posterior (posterior='gaussian'); "
                f"the encoder returns {type(q).__name__}"
            )
        return q

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        """p(z) as a ``MixtureSameFamily`` with batch ``(n,)`` (or ``()``) and the latent event shape:
        ``log_prob`` (log-sum-exp over the K components), ``sample`` (no ``rsample``)."""
        if c is not None:
            raise ConfigError("the VampPrior is unconditional; use it with an unconditional VAE")
        q = self.components_distribution()
        loc, scale = q.base_dist.loc, q.base_dist.scale  # (K, *latent)
        batch = batch_shape_of(None, n)
        loc = loc.expand(*batch, *loc.shape)
        scale = scale.expand(*batch, *scale.shape)
        mixture = Categorical(logits=loc.new_zeros(*batch, self.components), validate_args=False)
        parts = Independent(Normal(loc, scale, validate_args=False), q.reinterpreted_batch_ndims)
        return MixtureSameFamily(mixture, parts, validate_args=False)


# -- a score-based diffusion prior over z (LSGM) ------------------------------------------------


class LatentDiffusion(nn.Module):
    """p(z), z ∈ R^D: a score-based diffusion model over the VAE's latent (LSGM's prior).

    The process q(z_t | z) = N(α_t z, σ_t² I) of a :class:`NoiseSchedule` runs from the latent z at
    t = 0; its reverse, with the mixed ε-prediction of the module docstring, defines p(z). For a
    latent z the continuous-time variational bound (Song et al. 2021b, Kingma et al. 2021) is

        log p(z) ≥ E_{q(z₀|z)}[log p(z | z₀)] − KL(q(z_1 | z) ‖ N(0, s² I))
                   − ½ ∫_{t_min}^{1} (g_t² / σ_t²) E‖ε − ε_θ(z_t, t)‖² dt,

    with z₀ the latent at t_min, s = ``process.prior_std`` and the decoder
    p(z | z₀) = N(x̂₀(z₀), σ²/(α² + σ²) I) at t_min (the exact posterior when p(z) = N(0, I)).
    Because g²/σ² = −dλ/dt (λ = log α²/σ²), drawing λ uniformly on [λ(1), λ(t_min)] (importance
    sampling of t, as LSGM does for the likelihood weighting) makes the integrand's weight the
    constant ½ (λ(t_min) − λ(1)): one draw of t per latent gives an unbiased estimate of the bound
    whose variance stays bounded as t → 0. The bound is tight (equality in expectation) when the
    denoiser is the exact one of the true p(z); with m = 0 (the mixing logit at −∞) that is
    N(0, I), and the bound averages to log N(z; 0, I).

    Args:
        dim: D, the latent dimension.
        network: ε'_θ, ``(z_t (B, D), t (B,), c) -> (B, D)`` (e.g. :class:`~simulacra.nn.time.TimeMLP`).
        process: the noise schedule (VP by default in the zoo).
        mixing_logit: the initial logit ℓ of the mixing coefficient m = sigmoid(ℓ), one per
            dimension (LSGM starts at −6, close to the normal prior).
        sampler: the diffusion sampler ``sample`` uses by default (any :class:`Sampler`);
            ``sample_steps`` its grid points when the sampler's ``steps`` is None.
        likelihood: what :meth:`log_prob` returns, ``bound`` (stochastic, differentiable: training)
            or ``ode`` (the probability-flow ODE log-density, for evaluation); settable.
        weighting: how the prior's parameters learn in training mode: ``likelihood``, from the
            bound itself (g²/σ²-weighted score matching); ``eps``, from the unweighted denoising
            loss, while the encoder still gets the bound's gradient (LSGM's split, see :meth:`log_prob`).
        bound_draws: R, the draws of (t, ε) whose bounds :meth:`log_prob` averages (still a lower
            bound in expectation, variance / R); settable (more for evaluation).
        rtol, atol: the ODE solver's tolerances for ``ode``.
    """

    def __init__(
        self,
        dim: int,
        network: nn.Module,
        process: NoiseSchedule,
        *,
        mixing_logit: float = -6.0,
        sampler: Sampler,
        sample_steps: int = 100,
        likelihood: str = "bound",
        weighting: str = "likelihood",
        bound_draws: int = 1,
        rtol: float = 1e-5,
        atol: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dim = positive_int(dim, "the latent dimension")
        self.network = network
        self.process = process
        self.mixing_logit = nn.Parameter(torch.full((self.dim,), float(mixing_logit)))
        self.sampler = check_sampler(sampler)
        self.sample_steps = positive_int(sample_steps, "sample_steps")
        self.likelihood = likelihood
        self.bound_draws = positive_int(bound_draws, "bound_draws")
        if weighting not in ("likelihood", "eps"):
            raise ConfigError(
                f"the latent diffusion's weighting must be 'likelihood' or 'eps'; found {weighting!r}"
            )
        self.weighting = weighting
        self.rtol, self.atol = float(rtol), float(atol)

    @property
    def likelihood(self) -> str:
        """``bound`` or ``ode``: what :meth:`log_prob` computes."""
        return self._likelihood

    @likelihood.setter
    def likelihood(self, value: str) -> None:
        if value not in LIKELIHOODS:
            raise ConfigError(
                f"the latent diffusion's likelihood must be one of {LIKELIHOODS}; found {value!r}"
            )
        self._likelihood = value

    # -- the mixed score parameterization ----------------------------------------------------

    def mixing(self) -> Tensor:
        """m = sigmoid(ℓ) ∈ [0, 1]^D, the weight of the learned correction."""
        return torch.sigmoid(self.mixing_logit)

    def normal_eps(self, z_t: Tensor, t: Tensor) -> Tensor:
        """ε of N(0, I): σ z_t/(α² + σ²), σ times minus the score −z_t/(α² + σ²) of the marginal
        N(0, (α² + σ²) I); (B, D) for z_t (B, D), t (B,)."""
        alpha, sigma = self.process.alpha_sigma(batch_time(t).to(z_t.dtype))
        a, s = expand(alpha, z_t), expand(sigma, z_t)
        return s * z_t / (a * a + s * s)

    def correction(self, z_t: Tensor, t: Tensor, *, detach_parameters: bool = False) -> Tensor:
        """δ = ε_θ − ε_normal = m ⊙ (ε'_θ(z_t, t) − ε_normal), (B, D); exactly 0 where m = 0 (no
        network pass when m = 0 everywhere). ``detach_parameters``: the same values, with
        gradients to z_t only (not to θ)."""
        m = self.mixing()
        if not bool((m > 0).any()):
            return torch.zeros_like(z_t)
        if detach_parameters:
            params = {name: p.detach() for name, p in self.network.named_parameters()}
            eps = torch.func.functional_call(self.network, params, (z_t, t, None))
            return m.detach() * (eps - self.normal_eps(z_t, t))
        return m * (self.network(z_t, t, None) - self.normal_eps(z_t, t))

    def eps(self, z_t: Tensor, t: Tensor) -> Tensor:
        """ε_θ(z_t, t) = (1 − m) σ z_t/(α² + σ²) + m ε'_θ(z_t, t), (B, D) for z_t (B, D), t (B,)."""
        return self.normal_eps(z_t, t) + self.correction(z_t, t)

    def denoise(self, z_t: Tensor, t: Tensor) -> Tensor:
        """The posterior mean x̂₀ = (z_t − σ ε_θ)/α, (B, D): what the samplers and the PF-ODE read."""
        alpha, sigma = self.process.alpha_sigma(batch_time(t).to(z_t.dtype))
        return convert(self.eps(z_t, t), "eps", "x0", z_t, alpha, sigma)

    # -- likelihoods -----------------------------------------------------------------------------

    def _flat(self, z: Tensor) -> Tensor:
        if z.shape[-1] != self.dim:
            raise DataError(
                f"the latent diffusion prior scores latents (..., {self.dim}); found {tuple(z.shape)}"
            )
        return z.reshape(-1, self.dim)

    def log_prob_bound(
        self,
        z: Tensor,
        *,
        control_variate: bool = True,
        detach_parameters: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A one-draw unbiased estimate of the variational lower bound on log p(z) (class
        docstring), nats, shape ``z.shape[:-1]``; differentiable in z and the parameters.

        Terms: the diffusion term ½ (λ(t_min) − λ(1)) ‖ε − ε_θ(z_t, t)‖² at t with λ(t) uniform,
        the prior term KL(N(α₁ z, σ₁² I) ‖ N(0, s² I)) in closed form, and the decoder term
        log N(z; x̂₀(z₀, t_min), v I), v = σ²/(α² + σ²) at t_min, at one draw z₀ ~ q(z_{t_min} | z).

        ``control_variate`` (default): the same estimator minus its value for the normal prior
        (m = 0), plus that value's expectation, log N(z; 0, I) in closed form (the bound is tight
        there). With ε_θ = ε_N + δ the diffusion term becomes ½ Δλ (‖δ‖² − 2 ⟨ε − ε_N, δ⟩) and the
        decoder term −((σ/α)² ‖δ₀‖² + 2 (σ/α) ⟨z − x̂_N, δ₀⟩)/(2v): same expectation, and a
        variance that vanishes with the correction δ (the one-draw bound of N(0, I) alone has a
        standard deviation of ~7 nats per latent dimension on the VP process).
        ``detach_parameters``: the same value with gradients to z only.
        """
        flat = self._flat(z)  # (B, D)
        b, d, p = flat.shape[0], self.dim, self.process
        ends = p.log_snr(torch.tensor([1.0, p.t_min], dtype=torch.float64))
        lam_lo, lam_hi = float(ends[0]), float(ends[1])
        gen_device = generator.device if generator is not None else None
        u = torch.rand(b, generator=generator, dtype=torch.float64, device=gen_device)
        t = p.time_at_log_snr(lam_lo + (lam_hi - lam_lo) * u).to(device=flat.device, dtype=flat.dtype)
        z_t, eps = q_sample(p, flat, t, generator=generator)
        detach = detach_parameters
        residual = eps - self.normal_eps(z_t, t)  # (B, D)
        delta = self.correction(z_t, t, detach_parameters=detach)
        # the decoder at t_min: x̂₀ = x̂_N − (σ/α) δ₀ with x̂_N = α z₀/(α² + σ²)
        t0 = flat.new_full((b,), p.t_min)
        z0, _ = q_sample(p, flat, t0, generator=generator)
        alpha0, sigma0 = (float(v) for v in p.alpha_sigma(torch.tensor(p.t_min, dtype=torch.float64)))
        var0, ratio = sigma0**2 / (alpha0**2 + sigma0**2), sigma0 / alpha0
        miss_n = flat - alpha0 * z0 / (alpha0**2 + sigma0**2)  # z − x̂_N, (B, D)
        delta0 = self.correction(z0, t0, detach_parameters=detach)
        weight = 0.5 * (lam_hi - lam_lo)
        if control_variate:
            excess_diffusion = weight * (delta.pow(2) - 2 * residual * delta).sum(1)
            excess_decoder = -(ratio**2 * delta0.pow(2) + 2 * ratio * miss_n * delta0).sum(1) / (2 * var0)
            log_normal = -0.5 * flat.pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)
            return (log_normal - excess_diffusion + excess_decoder).reshape(z.shape[:-1])
        diffusion = weight * (residual - delta).pow(2).sum(1)
        alpha1, sigma1 = (float(v) for v in p.alpha_sigma(torch.tensor(1.0, dtype=torch.float64)))
        s2 = p.prior_std**2
        kl_prior = 0.5 * (
            d * sigma1**2 / s2 + alpha1**2 * flat.pow(2).sum(1) / s2 - d - d * math.log(sigma1**2 / s2)
        )
        decoder = -0.5 * (miss_n + ratio * delta0).pow(2).sum(1) / var0 - 0.5 * d * math.log(
            2 * math.pi * var0
        )
        return (decoder - kl_prior - diffusion).reshape(z.shape[:-1])

    def log_prob_ode(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """log p_{t_min}(z) in nats through the probability-flow ODE (exact trace for D ≤ 10, else
        Hutchinson's unbiased estimate with ``generator``); shape ``z.shape[:-1]``, no gradients."""
        flat = self._flat(z)
        log_p = pf_ode_log_prob(
            self.denoise, self.process, flat, rtol=self.rtol, atol=self.atol, generator=generator
        )
        return log_p.reshape(z.shape[:-1])

    def denoising_loss(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """½ ‖ε − ε_θ(z_t, t)‖² at t ~ U(t_min, 1): the unweighted denoising score-matching loss
        (Ho et al.'s L_simple; LSGM's reweighted objective for the prior), (B,) for z (B, D). Its
        minimiser is the same score as the bound's, with a far smaller gradient variance."""
        flat = self._flat(z)
        t_min = self.process.t_min
        gen_device = generator.device if generator is not None else None
        u = torch.rand(flat.shape[0], generator=generator, dtype=flat.dtype, device=gen_device)
        t = (t_min + (1.0 - t_min) * u).to(flat.device)
        z_t, eps = q_sample(self.process, flat, t, generator=generator)
        return 0.5 * (eps - self.eps(z_t, t)).pow(2).sum(1).reshape(z.shape[:-1])

    def log_prob(self, z: Tensor) -> Tensor:
        """:meth:`log_prob_bound` (averaged over ``bound_draws`` draws) or :meth:`log_prob_ode`, as
        ``likelihood`` says; shape ``z.shape[:-1]``.

        In training mode with ``weighting="eps"`` the value is the bound but the gradients are
        split as in LSGM (Vahdat et al. 2021, §3.3): to z (the encoder) from the bound with θ held
        fixed, to θ (the prior) from :meth:`denoising_loss` at z held fixed."""
        if self.likelihood == "ode":
            return self.log_prob_ode(z)
        if self.training and self.weighting == "eps" and torch.is_grad_enabled():
            if z.requires_grad:
                bound = self.log_prob_bound(z, detach_parameters=True)
            else:
                with torch.no_grad():
                    bound = self.log_prob_bound(z)
            surrogate = self.denoising_loss(z.detach())
            return bound - (surrogate - surrogate.detach())
        r = self.bound_draws
        if r == 1:
            return self.log_prob_bound(z)
        return self.log_prob_bound(z.unsqueeze(0).expand(r, *z.shape)).mean(0)

    # -- sampling --------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self, n: int, *, sampler: Sampler | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """n latents (n, D): z_1 ~ N(0, s² I) moved from t = 1 to t_min by ``sampler`` (default
        the module's; any of :data:`~simulacra.samplers.SAMPLERS`), then denoised."""
        sampler = self.sampler if sampler is None else check_sampler(sampler)
        times = time_grid(self.process, int(sampler.steps or self.sample_steps), sampler.spacing)
        device = self.mixing_logit.device
        z = torch.randn((n, self.dim), generator=generator, device=generator.device if generator else device)
        z = z.to(device=device, dtype=self.mixing_logit.dtype) * self.process.prior_std
        return sampler(self.denoise, self.process, z, times, generator=generator)

    def forward(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        """p(z) with batch shape ``(n,)`` (or ``()``) and event (D,): a
        :class:`LatentDiffusionDistribution` whose ``log_prob`` is this module's."""
        if c is not None:
            raise ConfigError("the latent diffusion prior is unconditional; use it with an unconditional VAE")
        return LatentDiffusionDistribution(self, batch_shape_of(None, n))


class LatentDiffusionDistribution(Distribution):
    """The torch.distributions face of a :class:`LatentDiffusion`: ``log_prob(z)`` (…, D) -> (…,)
    (the bound or the PF-ODE, see ``prior.likelihood``), ``sample`` by the prior's sampler. No
    closed-form KL is registered, so the ELBO uses ``log q(z | x) − log p(z)`` at z ~ q."""

    arg_constraints: dict[str, Any] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, prior: LatentDiffusion, batch_shape: tuple[int, ...]) -> None:
        self.prior = prior
        super().__init__(torch.Size(batch_shape), torch.Size((prior.dim,)), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.prior.log_prob(value)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))  # (*sample, *batch, D)
        n = math.prod(shape[:-1])
        return self.prior.sample(n).reshape(shape)
