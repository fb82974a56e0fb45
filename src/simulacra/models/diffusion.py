"""Gaussian diffusion models (DDPM, score SDEs): the model predicts, the process defines the
noise, the sampler steps.

``Diffusion(info, denoiser, process, prediction, weighting)`` trains a network to denoise
x_t = α(t) y + σ(t) ε, where y is the data mapped to the model's space ([0, 1] data to [−1, 1],
discrete data first dequantized inside their bins), by the weighted regression of
:func:`simulacra.objectives.score.denoising_loss`: on the grid t = i/T of a discrete-time DDPM
(``timesteps=T``, Ho et al. 2020) or on t ~ U(t_min, 1) for continuous-time score SDEs
(``timesteps=None``, Song et al. 2021). Whatever the network predicts (ε, x₀, v or the score),
samplers see one canonical form, the posterior mean x̂₀ = E[y | x_t], and any sampler object is
chosen at sampling time: ``model.sample(n, sampler=DPMSolver(steps=20))`` (a
:class:`~simulacra.samplers.base.Sampler`; the model is their
:class:`~simulacra.samplers.base.DiffusionSampling`).

A conditional model drops labels with probability ``label_dropout`` while training, replacing
them by the null label ∅, so that one network gives both p(x | c) and p(x); sampling with
guidance scale w uses (Ho & Salimans 2022)

    x̂₀_w(x_t, c) = x̂₀(x_t, ∅) + w (x̂₀(x_t, c) − x̂₀(x_t, ∅)),

(equivalently in ε or the score, the conversions being affine): w = 0 is the unconditional
model, w = 1 the conditional one, w > 1 sharpens it.

Likelihoods: ``log_prob`` is the probability-flow ODE's exact log-density (Song et al. 2021), with
the change of scale of the data map and, for discrete data, the uniform-dequantization bound
log P(x) ≥ E_u[log p(x + (u − ½)Δ)] + D log Δ (Δ the bin width; Theis et al. 2016);
``log_prob_bound`` is the discrete-time variational bound (Ho et al. 2020).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from simulacra.data.info import DataInfo
from simulacra.data.transforms import CenteredRange
from simulacra.errors import ConfigError, DataError
from simulacra.models.base import GenerativeModel, LossOutput, check_batch, check_context
from simulacra.objectives.score import (
    WEIGHTINGS,
    check_time_sampling,
    denoising_loss,
    sample_times,
    variational_bound,
)
from simulacra.processes.gaussian import Denoise, batch_time, check_parameterization, convert
from simulacra.processes.schedules import NoiseSchedule
from simulacra.samplers import Ancestral, DPMSolver, Sampler, check_sampler, time_grid
from simulacra.samplers.ode import log_prob as pf_ode_log_prob


class Diffusion(GenerativeModel):
    """A Gaussian diffusion model over ``info.event_shape``.

    Args:
        info: shape and support of one example.
        denoiser: a network ``(x_t (B, *event), t (B,), c (B,) or None) -> (B, *event)``
            predicting ``prediction``; a conditional one reads labels in {0, …, K} (K = ∅).
        process: the noise schedule (:class:`NoiseSchedule`).
        prediction: what the network predicts: ``eps``, ``x0``, ``v`` or ``score``.
        weighting: the loss weighting (a name in :data:`WEIGHTINGS`; default: ``prediction``).
        timesteps: T for a discrete-time DDPM (training times i/T, i = 1..T), None for
            continuous time (t ~ U(t_min, 1)).
        time_sampling: ``uniform`` training times, or ``importance``: log SNR uniform, each
            example's loss reweighted so that the objective is unchanged (with the
            ``likelihood`` weighting, the maximum-likelihood training of Song et al. 2021b; see
            :func:`~simulacra.objectives.score.sample_times`).
        conditional: the denoiser reads labels (needs ``info.num_classes``).
        label_dropout: probability of replacing a label by ∅ while training (classifier-free
            guidance); only for conditional models.
        sampler: the default :class:`Sampler` (default ``Ancestral()``); ``sample_steps`` the
            grid points of a sampler whose ``steps`` is None (T for a discrete model when None,
            else 1000); ``guidance`` the default guidance scale.
        trace, rtol, atol: how ``log_prob`` solves the PF-ODE (exact or Hutchinson trace).
    """

    def __init__(
        self,
        info: DataInfo,
        denoiser: nn.Module,
        process: NoiseSchedule,
        *,
        prediction: str = "eps",
        weighting: str | None = None,
        timesteps: int | None = 1000,
        time_sampling: str = "uniform",
        conditional: bool = False,
        label_dropout: float = 0.1,
        sampler: Sampler | None = None,
        sample_steps: int | None = None,
        guidance: float = 1.0,
        trace: str = "auto",
        rtol: float = 1e-5,
        atol: float = 1e-5,
    ) -> None:
        super().__init__(info)
        self.prediction = check_parameterization(prediction)
        if weighting is not None and weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
        if timesteps is not None and (
            isinstance(timesteps, bool) or int(timesteps) != timesteps or timesteps < 2
        ):
            raise ConfigError(
                f"timesteps must be an integer >= 2 (or None for continuous time); found {timesteps!r}"
            )
        if not 0.0 <= label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1); found {label_dropout}")
        if conditional and info.num_classes is None:
            raise ConfigError(
                "a conditional diffusion model needs labelled data (DataInfo.num_classes); found None"
            )
        self.denoiser = denoiser
        self.process = process
        self.weighting = weighting
        self.timesteps = None if timesteps is None else int(timesteps)
        self.time_sampling = check_time_sampling(time_sampling)
        self.conditional = bool(conditional)
        self.label_dropout = float(label_dropout) if conditional else 0.0
        self.sampler = Ancestral() if sampler is None else check_sampler(sampler)
        self.sample_steps = sample_steps
        self.guidance = float(guidance)
        for name, value in (("rtol", rtol), ("atol", atol)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ConfigError(
                    f"the probability-flow ODE's {name} must be a number in (0, 1); found {value!r}"
                )
        self.trace, self.rtol, self.atol = trace, float(rtol), float(atol)
        # y = scale · x + shift maps [0, 1] data (binary, grey levels) to [−1, 1]
        self.range = CenteredRange.for_data(info)
        self.scale, self.shift, self.bin_width = self.range.scale, self.range.shift, self.range.bin_width

    # -- data space <-> model space ----------------------------------------------------------

    def to_model(
        self, x: Tensor, generator: torch.Generator | None = None, *, dequantize: bool = True
    ) -> Tensor:
        """y = scale · (x + (u − ½) Δ) + shift, u ~ U[0, 1)^D drawn with ``generator`` for
        discrete data (Δ the bin width; training and likelihoods); ``dequantize=False`` gives the
        deterministic y = scale · x + shift (an observation of an inverse problem). (B, *event)."""
        if dequantize and self.bin_width is not None:
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + (u - 0.5) * self.bin_width
        return self.range.forward(x)

    def from_model(self, y: Tensor) -> Tensor:
        """x = (y − shift)/scale, in [0, 1] for bounded data and rounded to the nearest level
        (the centre of the bin y was dequantized in) for discrete data. (B, *event)."""
        return self.range.inverse(y)

    # -- the denoiser ------------------------------------------------------------------------

    def predict(self, x_t: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
        """The network's raw prediction (``self.prediction``) at (x_t, t), model space, (B, *event).
        For a conditional model, c (B,) holds labels in {0, …, K}, K = ``num_classes`` meaning ∅."""
        return self.denoiser(x_t, t, c if self.conditional else None)

    def _null(self, n: int, device: torch.device) -> Tensor:
        return torch.full((n,), int(self.info.num_classes or 0), dtype=torch.long, device=device)

    def denoiser_fn(
        self, c: Tensor | None = None, guidance: float | None = None, *, clip: bool = False
    ) -> Denoise:
        """The canonical x̂₀(x_t, t) for samplers: converted from the network's parameterisation,
        with classifier-free guidance of scale ``guidance`` (default ``self.guidance``) when the
        model is conditional. ``clip`` clamps x̂₀ to the data's range [−1, 1] in model space for
        bounded data (Ho et al. 2020 clip when sampling: an x̂₀ far outside the data's range,
        frequent at high noise in an under-trained model, otherwise drives the deterministic
        samplers off the data); never used for likelihoods, whose ODE needs the smooth field."""
        denoise = self._denoiser_fn(c, guidance)
        if not clip or self.info.support == "real":
            return denoise
        return lambda x, t: denoise(x, t).clamp(-1.0, 1.0)

    def _denoiser_fn(self, c: Tensor | None, guidance: float | None) -> Denoise:
        w = self.guidance if guidance is None else float(guidance)

        def x0_of(x: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
            alpha, sigma = self.process.alpha_sigma(batch_time(t))  # once per step, not per example
            return convert(self.predict(x, t, labels), self.prediction, "x0", x, alpha, sigma)

        def tile(labels: Tensor, x: Tensor) -> Tensor:
            # x may stack k copies of the batch (the PF-ODE's exact trace): labels follow suit
            return labels if labels.shape[0] == x.shape[0] else labels.repeat(x.shape[0] // labels.shape[0])

        if not self.conditional:
            return lambda x, t: x0_of(x, t, None)
        if c is None:
            raise DataError("a conditional diffusion model needs labels c to denoise")
        labels = c.long()
        null = self._null(labels.shape[0], labels.device)
        if w == 1.0:
            return lambda x, t: x0_of(x, t, tile(labels, x))
        if w == 0.0:
            return lambda x, t: x0_of(x, t, tile(null, x))

        def guided(x: Tensor, t: Tensor) -> Tensor:
            both = x0_of(torch.cat([x, x]), torch.cat([t, t]), torch.cat([tile(labels, x), tile(null, x)]))
            cond, uncond = both.chunk(2)
            return uncond + w * (cond - uncond)

        return guided

    # -- training ----------------------------------------------------------------------------

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """Weighted denoising loss (mean over the batch and the D dimensions; with importance
        sampled times, each example's term carries its factor 1/((1 − t_min) p(t)))."""
        check_batch(self, x, c)
        y = self.to_model(x)
        t, factor = sample_times(
            self.process, x.shape[0], timesteps=self.timesteps, method=self.time_sampling,
            device=x.device, dtype=x.dtype,
        )  # fmt: skip
        labels = None
        if self.conditional and c is not None:
            labels = c.long()
            if self.label_dropout > 0:
                drop = torch.rand(labels.shape, device=labels.device) < self.label_dropout
                labels = torch.where(drop, self._null(labels.shape[0], labels.device), labels)
        per_example = denoising_loss(
            lambda x_t, tt: self.predict(x_t, tt, labels),
            self.process,
            y,
            t,
            prediction=self.prediction,
            weighting=self.weighting,
        )
        loss = (factor * per_example).mean()
        return LossOutput(loss, {"denoising": loss.detach()})

    # -- sampling ----------------------------------------------------------------------------

    @property
    def t_min(self) -> float:
        """The smallest time the model uses: 1/T in discrete time, else the process's t_min."""
        return self.process.t_min if self.timesteps is None else 1.0 / self.timesteps

    @property
    def default_steps(self) -> int:
        """Grid points of a sampler whose ``steps`` is None: ``sample_steps``, else T, else 1000."""
        return int(self.sample_steps or self.timesteps or 1000)

    def time_grid(self, steps: int, spacing: str = "time") -> Tensor:
        """The decreasing sampling grid of ``steps`` points from 1 to t_min (float64); for a
        discrete-time model the points are rounded to the training grid i/T (duplicates dropped)."""
        if self.timesteps is None:
            return time_grid(self.process, steps, spacing)
        grid = time_grid(self.process, steps, spacing, t_min=self.t_min)
        index = torch.unique(torch.round(grid * self.timesteps).clamp(1, self.timesteps))
        return index.flip(0) / self.timesteps

    sample_options = frozenset({"sampler", "guidance", "clip"})
    loss_description = "weighted denoising loss (mean squared error per dimension)"

    def fast_sample_options(self) -> dict[str, Any]:
        """DPM-Solver++(2M) on 20 log-SNR-spaced points: close to the 1000-step samplers' quality
        at a fiftieth of their cost (BENCHMARKS §9-11)."""
        return {"sampler": DPMSolver()}

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        """``"dpm-solver, 20 grid points"``: the sampler (the model's default when ``options`` name none)."""
        sampler = (options or {}).get("sampler") or self.sampler
        return f"{sampler.name}, {len(sampler.grid(self))} grid points"

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        sampler: Sampler | None = None,
        guidance: float | None = None,
        clip: bool = True,
    ) -> Tensor:
        """n draws (n, *event_shape): y ~ N(0, s² I) at t = 1, moved to t_min by ``sampler``.

        Args:
            n: number of samples.
            c: (n,) labels of a conditional model.
            generator: the prior draw and every noise of the sampler.
            sampler: a :class:`Sampler` (default the model's, ``self.sampler``); its ``steps``
                None takes :attr:`default_steps`.
            guidance: the classifier-free guidance scale of a conditional model (default the model's).
            clip: clamp x̂₀ to the data's range for bounded data (see :meth:`denoiser_fn`).
        """
        check_context(self, c, n)
        if guidance is not None and not self.conditional:
            raise ConfigError("guidance applies to conditional models; this diffusion model is unconditional")
        sampler = self.sampler if sampler is None else check_sampler(sampler)
        times = sampler.grid(self)
        prior = torch.randn((n, *self.event_shape), generator=generator, device=self.device)
        x = prior * self.process.prior_std
        y = sampler.run(self, x, times=times, c=c, guidance=guidance, clip=bool(clip), generator=generator)
        return self.from_model(y)

    # -- likelihoods -------------------------------------------------------------------------

    @property
    def discrete_likelihood(self) -> bool:
        """True when ``log_prob`` scores discrete data (a dequantization bound)."""
        return self.bin_width is not None

    @property
    def likelihood_estimator(self) -> str:
        """How ``log_prob`` is obtained, for reports."""
        exact = self.trace == "exact" or (self.trace == "auto" and self.info.dim <= 10)
        name = f"PF-ODE ({'exact' if exact else 'Hutchinson'} trace)"
        return name if self.bin_width is None else f"{name}, uniform dequantization bound (1 draw)"

    bound_name = "VLB"

    def log_prob(
        self, x: Tensor, c: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """log p(x | c) in nats, (B,), through the probability-flow ODE (a one-draw dequantization
        bound for discrete data; Hutchinson's probe and the dequantization noise use ``generator``)."""
        check_batch(self, x, c)
        y = self.to_model(x, generator)
        log_p = pf_ode_log_prob(
            self.denoiser_fn(c, 1.0), self.process, y, t_min=self.t_min, trace=self.trace, rtol=self.rtol,
            atol=self.atol, generator=generator,
        )  # fmt: skip
        d = self.info.dim
        log_p = log_p + d * math.log(self.scale)  # density of x = (y − shift)/scale
        if self.bin_width is not None:
            log_p = log_p + d * math.log(self.bin_width)
        return log_p

    def log_prob_bound(
        self,
        x: Tensor,
        c: Tensor | None = None,
        num_samples: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The discrete-time variational bound (on the grid i/T; for a continuous model on 1000
        points equally spaced in λ = log SNR from t_min to 1, which a t_min far below 1/1000
        needs: BENCHMARKS §34), averaged over ``num_samples`` draws; nats, (B,), ≤ log p(x | c)
        in expectation."""
        check_batch(self, x, c)
        if num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1; found {num_samples}")
        if self.timesteps is not None:
            times = torch.linspace(self.t_min, 1.0, self.timesteps, dtype=torch.float64)
        else:  # equal steps of λ: on equal steps of t, the first term alone spans SNR(t_min) − SNR(1/1000)
            times = time_grid(self.process, 1000, "log-snr").flip(0)
        denoise = self.denoiser_fn(c, 1.0)
        total = x.new_zeros(x.shape[0])
        for _ in range(num_samples):
            y = self.to_model(x, generator)
            total = total + variational_bound(denoise, self.process, y, times, generator=generator)
        log_p = total / num_samples + self.info.dim * math.log(self.scale)
        if self.bin_width is not None:
            log_p = log_p + self.info.dim * math.log(self.bin_width)
        return log_p
