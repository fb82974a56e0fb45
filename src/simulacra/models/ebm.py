"""Energy-based models: an unnormalised density p(x) = exp(−E(x)) / Z, one class for every variant.

``EBM(info, energy, kernel, objective)`` composes an energy network E_θ (:mod:`simulacra.nn.energy`,
or any discriminator-shaped module x (B, *event) [, c] -> (B,)), an MCMC kernel that draws from
p_θ (:mod:`simulacra.samplers.mcmc`: SGLD as IGEBM and JEM use it, ULA, MALA, HMC) and an
estimator of the maximum-likelihood gradient (:mod:`simulacra.objectives.contrastive`):

* contrastive divergence, whose negative samples come from chains of the kernel started at the
  data (CD-k, Hinton 2002), at noise (short-run chains, Nijkamp et al. 2019) or at a replay buffer
  of persistent chains (PCD, Tieleman 2008; IGEBM, Du & Mordatch 2019);
* score matching (exact, sliced, denoising), which needs no samples;
* noise-contrastive estimation against a fitted Gaussian (or any noise model), which learns log Z.

Where the model lives. Bounded data ([0, 1]: grey levels, binary) are mapped to [−1, 1]^D (y = 2x − 1)
and real-valued data (standardized by default) live in the box [−b, b]^D (``box``, b = 5 by default:
five standard deviations of standardized data, and room for the 2-D toys, which reach 4.3). The density is defined on that box, p(y) = exp(−E(y)) 1[y ∈ box] / Z, so Z
is finite for any energy network, chains never leave it (SGLD clamps, MALA/HMC reject), and
uniform noise on the box is the chains' fresh start and the base of annealed importance sampling.

Discrete data. Data with L levels per dimension (binary: L = 2; 8-bit images: L = 256), stored as
x = k/(L − 1), are modelled through their dequantization bins, which tile [0, 1]: level k owns
[k/L, (k + 1)/L) and the box point y = 2v − 1 of v in it. Training reads v = (k + u)/L, u ~ U[0, 1)^D
(fresh each batch), so the model is a density on the box; ``log_prob`` is the uniform-dequantization
bound on the probability of the levels,

    log P(k) ≥ E_u[log p_v((k + u)/L)] − D log L,    log p_v(v) = −E(2v − 1) − log Z + D log 2,

in nats of the discrete data (bits/dim need no further offset), and the probabilities of all L^D
level vectors sum to at most one. ``energy`` reads the bins' centres (k + ½)/L; samples are
quantized back, k = ⌊L v⌋. Without the bins a density evaluated at the points k/(L − 1) is no
probability at all (on binary data, any value).

The partition function. For one- and two-dimensional data Z is computed by quadrature on a grid
over the box after training (:class:`~simulacra.models.base.SecondStage`): ``log_prob`` is then exact
up to the grid's discretisation. In higher dimensions ``log_prob`` uses an annealed importance
sampling estimate of log Z (with its standard error), computed on first use and kept with the
weights it belongs to; the estimator is named in every report. An AIS estimate of log Z is a
stochastic lower bound (by Jensen's inequality E[log Ẑ] ≤ log Z), so the NLL it gives is optimistic.

JEM (Grathwohl et al. 2020) is this class with a :class:`~simulacra.nn.energy.ClassifierEnergy` and
``classify_weight`` > 0: the loss adds the cross-entropy of p(y | x) = softmax f(x) to the
objective on the marginal E(x) = −logsumexp f(x), so one network classifies, samples and scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.data.info import DataInfo
from simulacra.data.transforms import CenteredRange, bin_centres, discrete_levels, quantize
from simulacra.data.transforms import dequantize as uniform_dequantize
from simulacra.errors import CapabilityError, ConfigError, DataError, TrainingError, positive_int
from simulacra.models.base import (
    ExactLikelihood,
    GenerativeModel,
    GroupSettings,
    LossOutput,
    check_batch,
    check_context,
    copy_weights,
    mark_local,
    model_name,
)
from simulacra.nn.energy import ClassifierEnergy
from simulacra.objectives.contrastive import NCE, EnergyObjective
from simulacra.objectives.score import score_matching_exact, score_matching_sliced
from simulacra.samplers.mcmc import Kernel, ReplayBuffer, run_chain
from simulacra.samplers.partition import LogZEstimate, ais_log_z_on_box, quadrature_log_z

TRAIN_DEFAULTS: dict[str, Any] = {"lr": 1e-4, "betas": (0.0, 0.999), "patience": None}
"""How an EBM trains unless the user says otherwise: Adam with β1 = 0 (IGEBM, JEM) and lr 1e-4 on
images, no early stopping (the contrastive loss does not fall steadily); the presets set lr 1e-3
for vectors."""

CHAIN_STARTS = ("buffer", "noise", "data")
"""Where the chains that give CD's negative samples start: a replay buffer of persistent chains
(PCD), uniform noise on the box (short-run), or the data batch itself (CD-k)."""


class ModelNoise(nn.Module):
    """A trained model with an exact likelihood as the noise of NCE (flow contrastive estimation,
    Gao et al. 2020): the closer the noise is to the data, the harder the classification and the
    more NCE learns per noise draw (Gutmann & Hyvärinen 2012).

    Real-valued data only, where the EBM's model space is the data space (bounded data are
    rescaled to [−1, 1] and a flow's likelihood of discrete levels is not a density there). The
    model is frozen: its parameters never train (``requires_grad`` off) and it stays in eval mode
    whatever mode the EBM is in (a batch-normalizing flow keeps its running statistics).

    Args:
        model: an :class:`ExactLikelihood` model of real-valued data (a flow).
    """

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        if not isinstance(model, ExactLikelihood):
            raise ConfigError(
                f"NCE's noise must have an exact likelihood (a flow or an autoregressive model); "
                f"{model.preset_name} has none"
            )
        if model.info.support != "real":
            raise ConfigError(
                f"a trained model as NCE's noise needs real-valued data; found {model.info.support} data "
                "(the noise is then the fitted Gaussian: drop stage_one / --init)"
            )
        self.model = model.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ModelNoise:
        """Stay in eval mode: the noise is fixed."""
        return super().train(False)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the model, (n, *event)."""
        return self.model.sample(n, generator=generator)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p_noise(x), (B,) nats."""
        likelihood: ExactLikelihood = self.model  # type: ignore[assignment]
        return likelihood.log_prob(x)


class TiltedEnergy(nn.Module):
    """E(y) = E_θ(y, c) − log p_base(y): a base density tilted by a learnt energy,
    p(y) ∝ p_base(y) exp(−E_θ(y)) (a residual energy-based model; Deng et al. 2020, Xiao et al.
    2021 with a flow as the base).

    Against NCE whose noise is the base, the classifier's log-ratio is −E_θ − log Z: the energy
    starts from the base (E_θ = 0 gives p = p_base) and learns only the correction. The base is
    NCE's own noise module, referenced here and not registered a second time (it is saved once,
    with the objective).

    Args:
        net: the learnt energy ``(y (B, *event), c) -> (B,)``.
        base: the frozen :class:`ModelNoise` whose log-density is subtracted.
    """

    def __init__(self, net: nn.Module, base: ModelNoise) -> None:
        super().__init__()
        self.net = net
        object.__setattr__(self, "base", base)  # a reference: the objective owns the module

    def forward(self, y: Tensor, c: Tensor | None = None) -> Tensor:
        """E(y) (B,) for y (B, *event)."""
        base: ModelNoise = self.base  # type: ignore[assignment]
        return self.net(y, c) - base.log_prob(y)


class EBM(GenerativeModel):
    """p(x) ∝ exp(−E(x)) on a box, trained by ``objective``, sampled by ``kernel``.

    Args:
        info: shape and support of one example.
        energy: module ``(y (B, *event), c) -> E (B,)`` in model space (bounded data in [−1, 1]).
        kernel: the MCMC transition used for negative samples and for ``sample``; its ``bounds``
            are set to the box.
        objective: an :class:`~simulacra.objectives.contrastive.EnergyObjective`.
        steps: kernel steps per training batch (CD-k's k, a short run's length).
        chains: where training chains start, one of :data:`CHAIN_STARTS`.
        buffer_size: persistent chains kept when ``chains == "buffer"``.
        reinit_prob: probability that a buffer chain restarts from noise (IGEBM: 0.05).
        sample_steps: kernel steps of ``sample`` (default ``steps``).
        box: half-width b of the box [−b, b]^D for real-valued data (bounded data: [−1, 1]).
        conditional: the energy reads labels c (E(x, c)), and every method needs them.
        classify_weight: weight of the cross-entropy of the energy's classifier (JEM); needs a
            :class:`~simulacra.nn.energy.ClassifierEnergy` and labelled data.
        max_energy_gap: training stops with an error when |E(samples) − E(data)| exceeds this
            (the energies have drifted apart: the sampler no longer follows the model).
        quadrature_points: grid points per axis for log Z in one or two dimensions.
        ais_chains, ais_distributions, ais_step_size: annealed importance sampling of log Z in
            higher dimensions (MALA in the box's tanh coordinates, starting at this step size and
            adapting it to an acceptance rate of 0.6).
        settings: per-group update settings for the loop.
        train_defaults: training settings the model declares (default :data:`TRAIN_DEFAULTS`).
    """

    loss_description = "energy objective (contrastive divergence, score matching or NCE)"
    sample_options = frozenset({"steps", "step_size", "init"})

    log_z: Tensor
    log_z_stderr: Tensor
    log_z_record: Tensor

    def __init__(
        self,
        info: DataInfo,
        energy: nn.Module,
        kernel: Kernel,
        objective: EnergyObjective,
        *,
        steps: int = 60,
        chains: str = "buffer",
        buffer_size: int = 10_000,
        reinit_prob: float = 0.05,
        sample_steps: int | None = None,
        box: float = 5.0,
        conditional: bool = False,
        classify_weight: float = 0.0,
        max_energy_gap: float = 1e4,
        quadrature_points: int = 512,
        ais_chains: int = 100,
        ais_distributions: int = 1000,
        ais_step_size: float = 0.05,
        settings: Mapping[str, GroupSettings] | None = None,
        train_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(info)
        if conditional and info.num_classes is None:
            raise ConfigError("a conditional EBM needs labelled data (DataInfo.num_classes); found None")
        if chains not in CHAIN_STARTS:
            raise ConfigError(f"unknown chain start {chains!r}; expected one of {', '.join(CHAIN_STARTS)}")
        if not (box > 0 and math.isfinite(box)):
            raise ConfigError(f"box must be a positive half-width; found {box}")
        if classify_weight < 0 or (classify_weight > 0 and not isinstance(energy, ClassifierEnergy)):
            raise ConfigError("classify_weight > 0 needs a ClassifierEnergy (JEM) and must not be negative")
        if classify_weight > 0 and not conditional:
            raise ConfigError("JEM's classifier learns from labels: build it with conditional=True")
        if not max_energy_gap > 0:
            raise ConfigError(f"max_energy_gap must be positive; found {max_energy_gap}")
        self.net = energy
        self.objective = objective
        if isinstance(objective, NCE) and isinstance(objective.noise, ModelNoise):
            self.starts_from = "a trained flow of these data (NCE's noise), e.g. a maf or nsf run"
        self.steps = positive_int(steps, "steps")
        self.sample_steps = positive_int(sample_steps if sample_steps is not None else steps, "sample_steps")
        self.chains = chains
        self.conditional = bool(conditional)
        self.classify_weight = float(classify_weight)
        self.max_energy_gap = float(max_energy_gap)
        self.quadrature_points = positive_int(quadrature_points, "quadrature_points")
        self.ais_chains = positive_int(ais_chains, "ais_chains")
        self.ais_distributions = positive_int(ais_distributions, "ais_distributions")
        if not ais_step_size > 0:
            raise ConfigError(f"ais_step_size must be positive; found {ais_step_size}")
        self.ais_step_size = float(ais_step_size)
        self.range = CenteredRange.for_data(info)
        self.levels = discrete_levels(info)  # None for continuous data: no bins
        half = 1.0 if self.range.bounded else float(box)
        self.bounds = (-half, half)
        # the chains live on the box: SGLD clamps to it, MALA and HMC reject what leaves it
        if dataclasses.is_dataclass(kernel) and hasattr(kernel, "bounds"):
            kernel = dataclasses.replace(kernel, bounds=self.bounds)  # type: ignore[type-var]
        self.kernel = kernel
        self.buffer = ReplayBuffer(buffer_size, info.event_shape, reinit_prob) if chains == "buffer" else None
        if self.buffer is not None:  # each process keeps its own chains, and the EMA leaves them out
            mark_local(self.buffer, *dict(self.buffer.named_buffers(recurse=False)))
        # log Z, its standard error and (method: 0 none yet, 1 quadrature, 2 AIS; grid points or
        # distributions; chains; a fingerprint of the weights it was computed for)
        self.register_buffer("log_z", torch.zeros((), dtype=torch.float64))
        self.register_buffer("log_z_stderr", torch.zeros((), dtype=torch.float64))
        self.register_buffer("log_z_record", torch.zeros(5, dtype=torch.float64))
        mark_local(self, "log_z", "log_z_stderr", "log_z_record")
        self.declare_training(settings, TRAIN_DEFAULTS if train_defaults is None else train_defaults)

    # -- data space <-> model space ----------------------------------------------------------

    def to_model(
        self, x: Tensor, generator: torch.Generator | None = None, *, dequantize: bool = False
    ) -> Tensor:
        """Model space (B, *event): y = 2v − 1 for [0, 1] data, real values unchanged. For discrete
        data v is a point of x's bin: (k + u)/L with u ~ U[0, 1)^D drawn with ``generator`` when
        ``dequantize`` (training, likelihoods), else the bin's centre (k + ½)/L; for continuous
        [0, 1] data v = x."""
        if self.levels is not None:
            x = uniform_dequantize(x, self.levels, generator) if dequantize else bin_centres(x, self.levels)
        return self.range.forward(x)

    def from_model(self, y: Tensor) -> Tensor:
        """Data space (B, *event): for discrete data the level whose bin holds v = (y + 1)/2; for
        continuous [0, 1] data v clamped to [0, 1]; real values unchanged."""
        if self.levels is not None:
            return quantize(((y + 1.0) / 2.0).clamp(0.0, 1.0), self.levels)
        return self.range.inverse(y)

    @property
    def log_det(self) -> float:
        """What turns log p(y) into ``log_prob``'s value in data space: log |dy/dv| = D log 2 for
        bounded data (y = 2v − 1), minus D log L for discrete data (the uniform dequantization's
        log q(v | k)); 0 for real values."""
        value = self.info.dim * math.log(self.range.scale)
        if self.levels is not None:
            value -= self.info.dim * math.log(self.levels)
        return value

    @property
    def discrete_likelihood(self) -> bool:
        """True for discrete data: ``log_prob`` is a bound on the levels' probability (no offset)."""
        return self.levels is not None

    def energy(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """E(y), y = the model-space image of x (B, *event) in data space (the bin centre for
        discrete data); (B,). p(x) ∝ exp(−E)."""
        check_batch(self, x, c)
        return self.net(self.to_model(x), c if self.conditional else None)

    def _energy_fn(self, c: Tensor | None) -> Callable[[Tensor], Tensor]:
        """y (B, *event) -> E(y, c) (B,) in model space; JEM's objective works on the marginal."""
        labels = c if self.conditional and not isinstance(self.net, ClassifierEnergy) else None
        return lambda y: self.net(y, labels)

    def _log_density(self, c: Tensor | None) -> Callable[[Tensor], Tensor]:
        energy = self._energy_fn(c)
        return lambda y: -energy(y)

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n points drawn uniformly on the box, (n, *event), model space."""
        lo, hi = self.bounds
        where = generator.device if generator is not None else self.device  # then moved to the model's
        u = torch.rand((n, *self.event_shape), generator=generator, device=where).to(self.device)
        return lo + (hi - lo) * u

    def _check_box(self, y: Tensor) -> None:
        lo, hi = self.bounds
        if not self.range.bounded and bool(((y < lo) | (y > hi)).any()):
            worst = float(y.abs().max())
            raise DataError(
                f"{self.preset_name} lives in the box [{lo:g}, {hi:g}]^D and the data reach {worst:.3g}; "
                "standardize the data (the default for real-valued tables) or widen it with --set model.box=..."
            )

    # -- training ------------------------------------------------------------------------------

    def check_training(self, batch_size: int) -> None:
        if self.buffer is not None and self.objective.needs_samples and batch_size > self.buffer.size:
            raise ConfigError(
                f"a replay buffer of {self.buffer.size} chains cannot start a batch of {batch_size}; "
                "raise model.buffer_size or lower the batch size"
            )

    def negatives(
        self,
        n: int,
        c: Tensor | None = None,
        data: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n negative samples (n, *event) in model space: the ends of ``steps``-step chains of the
        kernel on p_θ, started where ``chains`` says (``data``: the model-space batch, for CD-k);
        the buffer is updated with the chain ends. The energy runs in eval mode (spectral norm's
        power iteration does not advance), and the samples carry no graph."""
        if self.chains == "data":
            if data is None:
                raise DataError("CD-k starts its chains at the data batch; none was given")
            start, slots = data.detach(), None
        elif self.chains == "buffer":
            assert self.buffer is not None
            slots, start = self.buffer.draw(n, lambda k: self.noise(k, generator), generator)
        else:
            start, slots = self.noise(n, generator), None
        was_training = self.net.training
        self.net.eval()
        try:
            chain = run_chain(self.kernel, start, self._log_density(c), self.steps, generator)
        finally:
            self.net.train(was_training)
        y = chain.state.x.detach()
        if slots is not None:
            assert self.buffer is not None
            self.buffer.update(slots, y)
        return y

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """The objective on a batch x (B, *event) (labels c (B,) when conditional).

        Metrics: the objective's (CD: ``energy_data``, ``energy_samples``, ``energy_gap``;
        NCE: ``nce_accuracy``, ``log_z``), the kernel's ``accept_rate`` where it has one, and for
        JEM ``ce`` (nats) and ``accuracy``."""
        check_batch(self, x, c)
        y = self.to_model(x, dequantize=True)
        if self.training:
            self._check_box(y)
        samples = None
        if self.objective.needs_samples:
            samples = self.negatives(x.shape[0], c, data=y)
        loss, metrics = self.objective(self._energy_fn(c), y, samples)
        metrics = dict(metrics)
        if self.classify_weight > 0:
            assert isinstance(self.net, ClassifierEnergy) and c is not None
            logits = self.net.logits(y)
            ce = F.cross_entropy(logits, c.long())
            loss = loss + self.classify_weight * ce
            metrics["ce"] = ce.detach()
            metrics["accuracy"] = (logits.argmax(1) == c).float().mean()
        gap = metrics.get("energy_gap")
        if self.training and gap is not None:
            value = float(gap)
            if not math.isfinite(value) or abs(value) > self.max_energy_gap:
                raise TrainingError(
                    f"training diverged: the energy gap E(samples) − E(data) reached {value:.4g} "
                    f"(limit {self.max_energy_gap:g}): the chains no longer follow the model; lower the "
                    "learning rate, raise the L2 energy penalty (--set model.alpha=...) or the sampler's "
                    "steps (a run's last checkpoint keeps the weights from before)"
                )
        return LossOutput(loss, metrics)

    def initialize_from(self, trained: GenerativeModel) -> None:
        """Take NCE's noise model from ``trained``, a finished run of the same preset and
        architecture (``simulacra train ebm --set model.objective=nce --init FLOW_RUN``).

        Raises:
            ConfigError: this EBM's noise is not a trained model, or ``trained`` is another
                preset or architecture.
        """
        noise = self.objective.noise if isinstance(self.objective, NCE) else None
        if not isinstance(noise, ModelNoise):
            super().initialize_from(trained)
            return
        inner = noise.model
        if not isinstance(inner, GenerativeModel) or trained.preset_name != inner.preset_name:
            raise ConfigError(
                f"{self.preset_name}'s NCE noise is a {model_name(inner)}; the run holds a {trained.preset_name}"
            )
        copy_weights(inner, trained, f"{self.preset_name}'s NCE noise")
        noise.eval()

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """The score-matching objective (the Fisher divergence to the data up to a constant) on a
        held-out batch x (B, *event), (B,): exact for D ≤ 8, else sliced with 4 fixed projections.
        It needs no samples and no log Z, so it compares weights of any objective."""
        check_batch(self, x, c)
        y = self.to_model(x)
        energy = self._energy_fn(c)
        if self.info.dim <= 8:
            return score_matching_exact(energy, y).detach()
        generator = torch.Generator(y.device).manual_seed(0)
        return score_matching_sliced(energy, y, projections=4, generator=generator).detach()

    # -- the partition function ----------------------------------------------------------------

    def _fingerprint(self) -> tuple[float, float]:
        """(Σ θ, Σ θ²) over the energy's parameters: tells which weights a log Z belongs to."""
        with torch.no_grad():
            params = [p.detach().double() for p in self.net.parameters()]
            return float(sum(p.sum() for p in params)), float(sum(p.square().sum() for p in params))

    def _stored_estimate(self) -> LogZEstimate | None:
        kind, size, chains, s1, s2 = self.log_z_record.tolist()
        if kind == 0:
            return None
        f1, f2 = self._fingerprint()
        if not (math.isclose(s1, f1, rel_tol=1e-9, abs_tol=1e-9) and math.isclose(s2, f2, rel_tol=1e-9)):
            return None  # the weights changed since
        if kind == 1:
            return LogZEstimate(
                float(self.log_z), 0.0, f"quadrature, {int(size)} points per axis", 0, 0, math.nan, math.nan
            )
        return LogZEstimate(
            float(self.log_z),
            float(self.log_z_stderr),
            f"AIS, {int(size)} distributions, {int(chains)} chains, adaptive MALA in tanh coordinates",
            int(size),
            int(chains),
            math.nan,
            math.nan,
        )

    def estimate_log_z(
        self,
        *,
        num_chains: int | None = None,
        num_distributions: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LogZEstimate:
        """log Z of the model-space density on the box, kept with the weights (``log_prob`` uses
        it until they change): by quadrature for D ≤ 2, else by AIS from the uniform distribution
        on the box (``num_chains``, ``num_distributions``: default ``ais_chains``,
        ``ais_distributions``). The energy runs in eval mode."""
        lo, hi = self.bounds
        energy = self._energy_fn(None)
        was_training = self.training
        self.eval()
        try:
            if self.info.dim <= 2:
                d = self.info.dim
                shape = self.event_shape
                estimate = quadrature_log_z(
                    lambda y: -energy(y.reshape(-1, *shape)),
                    [lo] * d,
                    [hi] * d,
                    self.quadrature_points,
                    device=self.device,
                )
                record = (1.0, float(self.quadrature_points), 0.0)
            else:
                chains = num_chains or self.ais_chains
                temps = num_distributions or self.ais_distributions
                estimate = ais_log_z_on_box(
                    lambda y: -energy(y),
                    lo,
                    hi,
                    self.event_shape,
                    num_chains=chains,
                    num_distributions=temps,
                    step_size=self.ais_step_size,
                    generator=generator,
                    device=self.device,
                )
                record = (2.0, float(temps), float(chains))
        finally:
            self.train(was_training)
        self.log_z.fill_(estimate.log_z)
        self.log_z_stderr.fill_(estimate.stderr)
        self.log_z_record.copy_(torch.tensor([*record, *self._fingerprint()], dtype=torch.float64))
        return estimate

    def partition(self) -> LogZEstimate:
        """The stored log Z of the current weights, estimated now when there is none
        (:meth:`estimate_log_z` with the model's settings, a fixed seed)."""
        stored = self._stored_estimate()
        if stored is not None:
            return stored
        generator = torch.Generator(self.device).manual_seed(0)
        return self.estimate_log_z(generator=generator)

    def prepare_likelihood(self) -> None:
        """Estimate log Z now when the stored value does not belong to the current weights."""
        if not self.conditional or isinstance(self.net, ClassifierEnergy):  # else log_prob says why not
            self.partition()

    def log_prob(
        self, x: Tensor, c: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """log p(x) in nats (B,), data space: −E(y) − log Z + :attr:`log_det`, −inf outside the
        box; for discrete data a one-draw uniform-dequantization bound on log P(x) (y drawn in x's
        bin with ``generator``).

        Exact up to the quadrature grid for D ≤ 2; elsewhere log Z is an AIS estimate (see
        :attr:`likelihood_estimator`). A conditional energy is scored by its marginal only when it
        is JEM's (log p(x) = logsumexp f(x) − log Z); other conditional EBMs have a log Z per
        label, which is not estimated: they raise :class:`CapabilityError`."""
        if isinstance(self.net, ClassifierEnergy):  # the marginal: labels, when given, are not read
            check_batch(self, x, c if c is not None else torch.zeros(x.shape[0], dtype=torch.long))
        else:
            check_batch(self, x, c)
        if self.conditional and not isinstance(self.net, ClassifierEnergy):
            raise CapabilityError(
                f"{self.preset_name} is a conditional EBM: its log Z depends on the label and is not "
                "estimated; use --metric mmd or fid"
            )
        log_z = self.partition().log_z
        y = self.to_model(x, generator, dequantize=True)
        with torch.no_grad():
            log_p = -self.net(y, None).double() - log_z + self.log_det
        lo, hi = self.bounds
        inside = ((y >= lo) & (y <= hi)).flatten(1).all(1)
        return torch.where(inside, log_p, torch.full_like(log_p, -math.inf)).to(x.dtype)

    @property
    def likelihood_estimator(self) -> str:
        stored = self._stored_estimate()
        bins = "" if self.levels is None else ", uniform dequantization bound (1 draw)"
        if stored is None:
            return "log Z not yet estimated" + bins
        if stored.num_distributions == 0:
            return f"exact (log Z by {stored.method} of the box){bins}"
        return (
            f"estimate: log Z by {stored.method} = {stored.log_z:.3f} ± {stored.stderr:.3f} nats{bins} "
            "(AIS is a stochastic lower bound on log Z: the NLL is optimistic by its bias)"
        )

    def second_stage(self, x: Tensor, c: Tensor | None = None) -> dict[str, float]:
        """After training: log Z by quadrature when D ≤ 2 (cheap; ``log_z`` is logged). In higher
        dimensions AIS runs when a likelihood is first asked for, not here."""
        if self.info.dim > 2:
            return {}
        return {"log_z": self.estimate_log_z().log_z}

    # -- sampling --------------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        step_size: float | None = None,
        init: str | None = None,
    ) -> Tensor:
        """n samples (n, *event_shape), data space: chains of the kernel on p_θ (given labels c
        (n,) when conditional).

        Options:
            steps: kernel steps (default ``sample_steps``).
            step_size: the kernel's step size (default: the training kernel's).
            init: ``"noise"`` (uniform on the box) or ``"buffer"`` (the persistent chains, IGEBM's
                way; default when the model has a filled buffer).
        """
        check_context(self, c, n)
        steps = positive_int(self.sample_steps if steps is None else steps, "steps")
        kernel = self.kernel
        if step_size is not None:
            kernel = dataclasses.replace(kernel, step_size=float(step_size))  # type: ignore[type-var]
        init = init or self.default_init()
        if init == "buffer":
            if self.buffer is None or not self.buffer.num_filled > 0:
                raise ConfigError(f"{self.preset_name} has no filled replay buffer; use init='noise'")
            where = generator.device if generator is not None else self.buffer.chains.device
            picks = torch.randint(self.buffer.size, (n,), generator=generator, device=where)
            start = self.buffer.chains[picks.to(self.buffer.chains.device)].clone()
        elif init == "noise":
            start = self.noise(n, generator)
        else:
            raise ConfigError(f"unknown chain start {init!r}; expected 'noise' or 'buffer'")
        was_training = self.training
        self.eval()
        try:
            chain = run_chain(kernel, start.to(self.device), self._log_density(c), steps, generator)
        finally:
            self.train(was_training)
        return self.from_model(chain.state.x)

    def default_init(self) -> str:
        """``buffer`` when the model keeps filled persistent chains, else ``noise``."""
        return "buffer" if self.buffer is not None and self.buffer.num_filled > 0 else "noise"

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        options = options or {}
        kernel = type(self.kernel).__name__
        step = options.get("step_size", getattr(self.kernel, "step_size", None))
        return (
            f"{kernel} (step {step:g}), {options.get('steps', self.sample_steps)} steps "
            f"from {options.get('init') or self.default_init()}"
        )

    # -- JEM -------------------------------------------------------------------------------------

    def class_log_probs(self, x: Tensor) -> Tensor:
        """log p(y | x) (B, K) of JEM's classifier for images x (B, *event) in data space."""
        if not isinstance(self.net, ClassifierEnergy):
            raise CapabilityError(f"{self.preset_name} has no classifier; JEM (preset jem) has one")
        with torch.no_grad():
            return torch.log_softmax(self.net.logits(self.to_model(x)), dim=-1)


__all__ = ["CHAIN_STARTS", "EBM", "TRAIN_DEFAULTS"]
