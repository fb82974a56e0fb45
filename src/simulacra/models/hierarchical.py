"""Top-down hierarchical VAEs: the ladder VAE and NVAE/VDVAE-style residual hierarchies, one class.

``HierarchicalVAE(info, ladder, merge, head)`` is the model

    p(x, z_1..z_L) = p(z_L) Π_{i<L} p(z_i | z_{>i}) p(x | z_{≥1}),
    q(z_1..z_L | x) = Π_i q(z_i | x, z_{>i}),

with a *shared top-down path*: one deterministic state d_i, computed from z_{>i} by the decoder's
cells, parameterizes the prior p(z_i | z_{>i}) = N(μ_p(d_i), σ_p(d_i)²) and, merged with the
bottom-up features b_i of x, the posterior q(z_i | x, z_{>i}) (Sønderby et al. 2016; Kingma et al.
2016; Vahdat & Kautz 2020; Child 2021). The networks are a
:class:`~simulacra.nn.ladder.Ladder` (MLP cells for vectors, convolutional cells for images);
how the posterior is formed is the ``merge``
(:class:`~simulacra.distributions.ladder.PrecisionWeighted`, LVAE's, or
:class:`~simulacra.distributions.ladder.RelativeToPrior`, NVAE's); LVAE and ``hvae`` differ only in
those choices.

The bound, with every KL in closed form given the sampled z_{>i}:

    log p(x) ≥ E_q[log p(x | z)] − Σ_i E_q[KL(q(z_i | x, z_{>i}) ‖ p(z_i | z_{>i}))].

The top group's prior p(z_L) is N(0, I) by default, or any learned prior over the flattened z_L
(``top_prior``: the VampPrior, a mixture of q(z_L | u_k) at learned pseudo-inputs, as in Tomczak &
Welling's hierarchical VampPrior VAE, or a MAF); its KL is then the one-draw Monte Carlo estimate
log q(z_L | x) − log p(z_L), and q(z_L | x) is parameterized relative to N(0, I).

Training keeps what the papers needed for stability: a KL weight β that the KL warm-up callback
anneals, free bits per group (Kingma et al. 2016), KL balancing between groups during warm-up
(Vahdat & Kautz 2020, App. A), softplus-bounded scales, and gradient clipping and skipping
(Child 2021; declared as the model's training settings). Each group's KL is logged (``kl/1`` … ``kl/L``, z_1 nearest the data)
so that posterior collapse is visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MixtureSameFamily, Normal, constraints

from simulacra.data.info import DataInfo
from simulacra.distributions.heads import is_discrete
from simulacra.distributions.standard import sample_from, softplus_std
from simulacra.errors import ConfigError, positive_int
from simulacra.models.base import GenerativeModel, GroupSettings, LossOutput, check_batch
from simulacra.nn.ladder import Ladder, group_sizes
from simulacra.objectives.variational import importance_weighted_bound
from simulacra.processes.gaussian import noise_like


@dataclass
class HierarchyPass:
    """One top-down pass of a hierarchy, groups listed bottom (z_1) to top (z_L).

    Attributes:
        z: the latent of each group, (n, *group_shape).
        log_q: log q(z_i | x, z_{>i}) (n,) nats for the groups drawn from the posterior, None for
            groups drawn from the prior.
        log_p: log p(z_i | z_{>i}) (n,) nats for the same groups, None elsewhere.
        kl: KL(q(z_i | x, z_{>i}) ‖ p(z_i | z_{>i})) (n,) nats in closed form, None elsewhere
            (for the top group under a learned prior: log q − log p at the drawn z, its one-draw
            Monte Carlo estimate).
        likelihood: p(x | z), batch (n,), the data's event shape.
    """

    z: list[Tensor]
    log_q: list[Tensor | None]
    log_p: list[Tensor | None]
    kl: list[Tensor | None]
    likelihood: Distribution


def _sum_event(t: Tensor) -> Tensor:
    """(n, *shape) -> (n,): sum over everything but the first axis."""
    return t.flatten(1).sum(1)


def gaussian_kl(q_loc: Tensor, q_scale: Tensor, p_loc: Tensor, p_scale: Tensor) -> Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over the event, (n,) nats:
    Σ_d log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²) / (2σ_p²) − ½."""
    ratio = q_scale / p_scale
    terms = -torch.log(ratio) + 0.5 * (ratio.square() + ((q_loc - p_loc) / p_scale).square()) - 0.5
    return _sum_event(terms)


class TopDownLatents(Distribution):
    """The joint distribution of a hierarchy's latent groups as one vector, z = (z_1, …, z_L)
    flattened and concatenated (z_1 first), batch (n,), event (Σ_i |z_i|,): the prior
    p(z) = p(z_L) Π p(z_i | z_{>i}) without ``features``, the posterior q(z | x) with them.

    ``rsample`` runs the top-down pass (:meth:`HierarchicalVAE.descend`); ``log_prob`` runs it with
    the given z in place of draws and sums log p(z_i | z_{>i}) (or log q); ``mean`` is the path of
    conditional means (each group's mean given the means above it), which is what the
    reconstruction and interpolation tasks decode.
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: HierarchicalVAE, n: int, features: list[Tensor] | None = None) -> None:
        self.model, self.n, self.features = model, int(n), features
        super().__init__(torch.Size((self.n,)), torch.Size((model.latent_dim,)), validate_args=False)

    def _repeated(self, m: int) -> list[Tensor] | None:
        if self.features is None:
            return None
        return [b.repeat(m, *([1] * (b.dim() - 1))) for b in self.features]

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        m = math.prod(sample_shape)
        out = self.model.descend(m * self.n, self._repeated(m))
        return self.model.flatten_latents(out.z).reshape(*sample_shape, self.n, -1)

    @property
    def mean(self) -> Tensor:
        if self.features is None:
            out = self.model.descend(self.n, temperature=[0.0] * self.model.levels)
        else:
            out = self.model.descend(self.n, self.features, posterior_mean=True)
        return self.model.flatten_latents(out.z)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(z) (prior) or log q(z | x) (posterior) in nats, shape ``value.shape[:-1]``."""
        lead = value.shape[:-1]
        m = math.prod(lead) // self.n
        out = self.model.descend(m * self.n, self._repeated(m), given=value.reshape(-1, value.shape[-1]))
        terms = out.log_q if self.features is not None else out.log_p
        return torch.stack([t for t in terms if t is not None]).sum(0).reshape(lead)


class HierarchicalVAE(GenerativeModel):
    """A VAE with L latent groups on a shared top-down path (see the module docstring).

    Args:
        info: shape and support of one example.
        ladder: the cells (:func:`~simulacra.nn.ladder.mlp_ladder` / ``conv_ladder``); its
            ``out`` gives the head's features.
        merge: (h, μ_p, σ_p) -> (μ_q, σ_q): how a group's posterior is formed from its raw
            parameters h (B, 2, *group_shape) and its prior.
        head: likelihood head (``distributions.heads.head_for``): features -> p(x | z).
        beta: KL weight β of the loss (the KL warm-up callback anneals it).
        free_bits: λ ≥ 0 nats per latent dimension: a group whose batch-mean KL is below
            λ·|z_i| is not pushed further towards its prior (Kingma et al. 2016, per group).
        kl_balance: while β < 1, weight group i's KL by γ_i ∝ (its batch-mean KL per dimension
            + 0.01), normalized to mean 1, so that no group collapses during warm-up (NVAE).
        min_std: floor of the prior scales σ_p = softplus(s) + min_std.
        grad_clip: gradient-norm bound, the model's training default (None: none).
        grad_skip: skip updates whose gradient norm exceeds it (VDVAE; None: never), the
            group's declared setting (a run overrides it with ``train.groups.main.grad_skip``).
        num_samples: k ≥ 1; k > 1 trains on the IWAE bound with k draws of the whole hierarchy
            (Burda et al. 2016; β weights log p(z) − log q(z) inside each weight; free bits and KL
            balancing belong to the one-draw ELBO and are refused or off).
        top_prior: None for p(z_L) = N(0, I), or a factory that receives :meth:`top_posterior`
            (the encoder ``(x, c) -> q(z_L | x)`` a VampPrior mixes) and returns a lazy prior
            module ``(c, n) -> p(z_L)`` over the flattened top group (batch (n,), event (|z_L|,)).
    """

    loss_description = "negative variational bound (nats per example)"
    bound_name = "ELBO"
    sample_options = frozenset({"mean", "temperature"})

    def __init__(
        self,
        info: DataInfo,
        ladder: Ladder,
        merge: nn.Module,
        head: nn.Module,
        *,
        beta: float = 1.0,
        free_bits: float = 0.0,
        kl_balance: bool = False,
        min_std: float = 1e-3,
        grad_clip: float | None = None,
        grad_skip: float | None = None,
        num_samples: int = 1,
        top_prior: Callable[[Callable[..., Distribution]], nn.Module] | None = None,
    ) -> None:
        super().__init__(info)
        if not math.isfinite(beta) or beta < 0:
            raise ConfigError(f"beta must be a finite number >= 0; found {beta}")
        if not math.isfinite(free_bits) or free_bits < 0:
            raise ConfigError(f"free_bits must be a finite number >= 0 nats; found {free_bits}")
        self.ladder, self.merge, self.head = ladder, merge, head
        self.beta, self.free_bits, self.kl_balance = float(beta), float(free_bits), bool(kl_balance)
        self.min_std = float(min_std)
        self.num_samples = positive_int(num_samples, "num_samples")
        if self.num_samples > 1 and self.free_bits > 0:
            raise ConfigError("free bits clamp the one-draw ELBO's KL: use num_samples=1 with free_bits > 0")
        # a learned p(z_L): its module holds the pseudo-inputs or the flow; top_posterior is how
        # the VampPrior reaches this model's encoder (a bound method, not a submodule)
        self.top_prior: nn.Module | None = None if top_prior is None else top_prior(self.top_posterior)
        self.register_buffer(
            "_sizes", torch.tensor(group_sizes(ladder), dtype=torch.float32), persistent=False
        )
        # the clip is a training default (beneath --set train.grad_clip); skipping has no run-wide
        # setting, so it is the group's declared setting (train.groups.main.grad_skip overrides it)
        skip = None if grad_skip is None else float(grad_skip)
        defaults = {} if grad_clip is None else {"grad_clip": float(grad_clip)}
        self.declare_training({"main": GroupSettings(grad_skip=skip)}, defaults)

    @property
    def levels(self) -> int:
        """L, the number of latent groups."""
        return self.ladder.levels

    @property
    def discrete_likelihood(self) -> bool:
        """True when p(x | z) assigns probabilities (no dequantization offset in bits/dim)."""
        return is_discrete(self.head)

    # -- the top-down pass --------------------------------------------------------------------

    def bottom_up(self, x: Tensor) -> list[Tensor]:
        """The encoder's features b_1..b_L of x (B, *event)."""
        features, b = [], x
        for cell in self.ladder.up:
            b = cell(b)
            features.append(b)
        return features

    def top_posterior(self, x: Tensor, c: Tensor | None = None) -> Independent:
        """q(z_L | x) over the flattened top group, batch (B,), event (|z_L|,): the posterior the
        top-down pass starts from (relative to N(0, I)). A VampPrior over z_L mixes it at its
        pseudo-inputs."""
        n = x.shape[0]
        top = self.levels - 1
        shape = self.ladder.latent_shapes[top]
        features = self.bottom_up(x)[top]
        h = self.ladder.posterior[top](features, self.ladder.start(n)).reshape(n, 2, *shape)
        zeros = torch.zeros((n, *shape), dtype=h.dtype, device=h.device)
        loc, scale = self.merge(h, zeros, torch.ones_like(zeros))
        return Independent(Normal(loc.flatten(1), scale.flatten(1), validate_args=False), 1)

    def _draw_top(self, prior: Distribution, tau: float, n: int, generator: torch.Generator | None) -> Tensor:
        """z_L (n, |z_L|) from a learned top prior at temperature τ: τ = 1 draws from it; for a
        mixture of diagonal Gaussians (the VampPrior) τ scales the chosen component's scale (τ = 0:
        the component's mean); other priors draw at τ = 1 only."""
        if tau == 1.0:
            return sample_from(prior, (), generator)
        if isinstance(prior, MixtureSameFamily) and isinstance(prior.component_distribution, Independent):
            k = sample_from(prior.mixture_distribution, (), generator)  # (n,)
            normal = prior.component_distribution.base_dist
            rows = torch.arange(n, device=k.device)
            loc, scale = normal.loc[rows, k], normal.scale[rows, k]
            return loc if tau == 0 else loc + tau * scale * noise_like(loc, generator)
        raise ConfigError(
            f"the top group's {type(self.top_prior).__name__} prior draws at temperature 1 only; found {tau}"
        )

    def _prior_at(self, i: int, d: Tensor | None, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(μ_p, σ_p) of group i given the state d_i (N(0, I) at the top), (n, *shape) each."""
        shape = self.ladder.latent_shapes[i]
        if i == self.levels - 1:
            zeros = torch.zeros((n, *shape), dtype=like.dtype, device=like.device)
            return zeros, torch.ones_like(zeros)
        h = self.ladder.prior[i](d).reshape(n, 2, *shape)
        return h[:, 0], softplus_std(h[:, 1], self.min_std)

    def descend(
        self,
        n: int,
        features: list[Tensor] | None = None,
        *,
        keep: int | None = None,
        temperature: Sequence[float] | None = None,
        posterior_mean: bool = False,
        given: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> HierarchyPass:
        """Run the top-down path from z_L to p(x | z) for n rows.

        Group i (top first) is drawn from q(z_i | x, z_{>i}) when it is among the top ``keep``
        groups and ``features`` (the bottom-up b_1..b_L, (n, ...) each) are given, else from the
        prior as z_i = μ_p + τ_i σ_p ε (τ_i = ``temperature[i]``, bottom first; τ = 0: the prior
        mean, no draw).

        Args:
            n: number of rows.
            features: :meth:`bottom_up` of the rows, or None (prior only).
            keep: how many top groups take the posterior (default: all, when features are given).
            temperature: τ_1..τ_L for the groups drawn from the prior (default 1).
            posterior_mean: the posterior groups take their means instead of a draw.
            given: z (n, Σ|z_i|) as :meth:`flatten_latents` lays it out: every group takes its
                value from it instead of a draw, and ``log_p`` (and ``log_q`` for posterior
                groups) are its log-densities.
            generator: makes the draws reproducible.
        """
        levels = self.levels
        keep = (levels if features is not None else 0) if keep is None else int(keep)
        taus = [1.0] * levels if temperature is None else list(temperature)
        z_all: list[Tensor] = [next(self.parameters())] * levels
        log_q: list[Tensor | None] = [None] * levels
        log_p: list[Tensor | None] = [None] * levels
        kl: list[Tensor | None] = [None] * levels
        groups = None if given is None else self.unflatten_latents(given)

        def choose(i: int, prior: Distribution, posterior: Normal | None) -> Tensor:
            if not isinstance(prior, Normal):  # a learned p(z_L) over the flattened top group
                return choose_top(i, prior, posterior)
            p_loc, p_scale = prior.loc, prior.scale
            if posterior is not None:
                q_loc, q_scale = posterior.loc, posterior.scale
                if groups is not None:
                    z = groups[i]
                else:
                    z = q_loc if posterior_mean else q_loc + q_scale * noise_like(q_loc, generator)
                if not posterior_mean or groups is not None:
                    log_q[i] = _sum_event(posterior.log_prob(z))
                    log_p[i] = _sum_event(prior.log_prob(z))
                kl[i] = gaussian_kl(q_loc, q_scale, p_loc, p_scale)
            elif groups is not None:
                z = groups[i]
                log_p[i] = _sum_event(prior.log_prob(z))
            elif taus[i] == 0:
                z = p_loc
            else:
                z = p_loc + taus[i] * p_scale * noise_like(p_loc, generator)
            z_all[i] = z
            return z

        def choose_top(i: int, prior: Distribution, posterior: Normal | None) -> Tensor:
            shape = self.ladder.latent_shapes[i]
            if posterior is not None:
                if groups is not None:
                    z = groups[i]
                else:
                    q_loc, q_scale = posterior.loc, posterior.scale
                    z = q_loc if posterior_mean else q_loc + q_scale * noise_like(q_loc, generator)
                log_q[i] = _sum_event(posterior.log_prob(z))
                log_p[i] = prior.log_prob(z.flatten(1))
                kl[i] = log_q[i] - log_p[i]  # type: ignore[operator]
            elif groups is not None:
                z = groups[i]
                log_p[i] = prior.log_prob(z.flatten(1))
            else:
                z = self._draw_top(prior, taus[i], n, generator).reshape(n, *shape)
            z_all[i] = z
            return z

        likelihood = self.top_down(n, features, choose, keep=keep)
        return HierarchyPass(z_all, log_q, log_p, kl, likelihood)

    def top_down(
        self,
        n: int,
        features: list[Tensor] | None,
        choose: Callable[[int, Distribution, Normal | None], Tensor],
        *,
        keep: int | None = None,
    ) -> Distribution:
        """The top-down path with each group's value chosen by the caller, one group at a time.

        For i = L, …, 1: ``choose(i − 1, p(z_i | z_{>i}), q(z_i | x, z_{>i}))`` returns z_i
        (n, *shape_i), from which the path goes on; the posterior is None without ``features``
        (:meth:`bottom_up` of x) and below the top ``keep`` groups (default: all). Both are
        Normals with batch (n, *shape_i) computed from the values chosen above, except the top
        group's prior under a learned ``top_prior``: that is its distribution over the flattened
        z_L, batch (n,), and the posterior is relative to N(0, I). :meth:`descend`
        draws through it; so does a coder that takes every group from a stack of bits and needs
        each conditional before the next (bits-back coding, :mod:`simulacra.tasks.bitsback`).

        Returns:
            p(x | z_1..z_L), batch (n,), the data's event shape.
        """
        like = next(self.parameters())
        keep = self.levels if keep is None else int(keep)
        d = self.ladder.start(n)
        for i in reversed(range(self.levels)):
            p_loc, p_scale = self._prior_at(i, d, n, like)
            q = None
            if features is not None and i >= self.levels - keep:
                h = self.ladder.posterior[i](features[i], d).reshape(n, 2, *self.ladder.latent_shapes[i])
                q = Normal(*self.merge(h, p_loc, p_scale), validate_args=False)
            prior: Distribution = Normal(p_loc, p_scale, validate_args=False)
            if i == self.levels - 1 and self.top_prior is not None:
                prior = self.top_prior(None, n)
            z = choose(i, prior, q)
            d = self.ladder.down[i](d, z)
        return self.head(self.ladder.out(d))

    @property
    def latent_dim(self) -> int:
        """Σ_i |z_i|, the length of the flattened latent (:meth:`flatten_latents`)."""
        return sum(math.prod(shape) for shape in self.ladder.latent_shapes)

    def flatten_latents(self, z: Sequence[Tensor]) -> Tensor:
        """The groups z_1..z_L ((n, *shape_i) each) as one (n, Σ|z_i|) tensor, z_1 first."""
        return torch.cat([g.flatten(1) for g in z], 1)

    def unflatten_latents(self, z: Tensor) -> list[Tensor]:
        """The inverse of :meth:`flatten_latents`: (n, Σ|z_i|) -> [(n, *shape_i)], z_1 first."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ConfigError(f"expected latents of shape (n, {self.latent_dim}); found {tuple(z.shape)}")
        sizes = [math.prod(shape) for shape in self.ladder.latent_shapes]
        parts = torch.split(z, sizes, 1)
        return [p.reshape(z.shape[0], *shape) for p, shape in zip(parts, self.ladder.latent_shapes)]

    # -- the latent-variable interface (z flattened: z_1 first) ---------------------------------

    def prior(self, c: Tensor | None = None, n: int | None = None) -> Distribution:
        """p(z) = p(z_L) Π p(z_i | z_{>i}) as one :class:`TopDownLatents`, batch (n,) (default 1)."""
        return TopDownLatents(self, 1 if n is None else int(n))

    def encode(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        """q(z | x) = Π q(z_i | x, z_{>i}) as one :class:`TopDownLatents`, batch (B,)."""
        check_batch(self, x)
        return TopDownLatents(self, x.shape[0], self.bottom_up(x))

    def decode(self, z: Tensor, c: Tensor | None = None) -> Distribution:
        """p(x | z) for flattened latents z (n, Σ|z_i|): the top-down path with z in place of draws."""
        return self.descend(z.shape[0], given=z).likelihood

    def _temperatures(self, temperature: float | Sequence[float]) -> list[float]:
        taus = [temperature] * self.levels if isinstance(temperature, int | float) else list(temperature)
        if len(taus) != self.levels or any(not math.isfinite(float(t)) or float(t) < 0 for t in taus):
            raise ConfigError(
                f"temperature must be a number >= 0 or one per latent group ({self.levels}, z_1 first); "
                f"found {temperature!r}"
            )
        return [float(t) for t in taus]

    # -- training ------------------------------------------------------------------------------

    def loss_weights(self) -> dict[str, float]:
        """``{"kl": β}`` (KL warm-up anneals it)."""
        return {"kl": self.beta}

    def set_loss_weight(self, name: str, value: float) -> None:
        """Set the KL weight β (``name="kl"``)."""
        if name != "kl":
            raise ConfigError(f"a hierarchical VAE has one loss weight, 'kl'; found {name!r}")
        self.beta = float(value)

    def group_weights(self, kl: Tensor) -> Tensor:
        """γ (L,) of KL balancing for the per-group KLs ``kl`` (B, L): (KL̄_i / |z_i| + 0.01),
        normalized to mean 1, without gradient; ones when balancing is off or β ≥ 1."""
        if not self.kl_balance or self.beta >= 1.0:
            return torch.ones(kl.shape[1], dtype=kl.dtype, device=kl.device)
        # a learned top prior's KL is a one-draw estimate: its batch mean can dip below 0
        gamma = kl.detach().mean(0).clamp_min(0) / self._sizes.to(kl.dtype) + 0.01
        return gamma / gamma.mean()

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """−E_q log p(x | z) + β Σ_i γ_i max(KL_i, λ|z_i|) averaged over the batch (one draw;
        the clamp applies to a group's batch mean); with ``num_samples`` = k > 1, −L_k, the IWAE
        bound over k draws with β on log p(z) − log q(z) in each weight. Metrics: ``elbo`` (the
        β = 1 bound, one draw), ``iwae`` (L_k, when k > 1), ``rec``, ``kl`` and ``kl/i`` for each
        group i = 1 (nearest the data) … L, nats per example."""
        if self.num_samples > 1:
            return self._iwae_loss(x)
        out = self.descend(x.shape[0], self.bottom_up(x))
        rec = out.likelihood.log_prob(x)  # (B,)
        kl = torch.stack([k for k in out.kl if k is not None], 1)  # (B, L)
        kl_loss = kl
        if self.free_bits > 0:
            floor = self.free_bits * self._sizes.to(kl.dtype)  # (L,)
            kl_loss = torch.where(kl.mean(0) >= floor, kl, floor.expand_as(kl))
        kl_loss = (kl_loss * self.group_weights(kl)).sum(1)
        total = kl.sum(1)
        metrics = {
            "elbo": (rec - total).mean().detach(),
            "rec": rec.mean().detach(),
            "kl": total.mean().detach(),
        }
        for i, value in enumerate(kl.mean(0).detach()):
            metrics[f"kl/{i + 1}"] = value
        return LossOutput((-rec + self.beta * kl_loss).mean(), metrics)

    def _iwae_loss(self, x: Tensor) -> LossOutput:
        """−L_k (the IWAE bound, β inside the weights) for k = ``num_samples`` draws per example."""
        k, batch = self.num_samples, x.shape[0]
        log_px, log_ratio, out = self._weighted_pass(x, k)
        bound = importance_weighted_bound(log_px + log_ratio)  # (B,)
        loss = bound if self.beta == 1.0 else importance_weighted_bound(log_px + self.beta * log_ratio)
        kl = torch.stack([v for v in out.kl if v is not None], 1).reshape(k, batch, -1).mean(0)  # (B, L)
        metrics = {
            "elbo": (log_px + log_ratio).mean().detach(),
            "iwae": bound.mean().detach(),
            "rec": log_px.mean().detach(),
            "kl": kl.sum(1).mean().detach(),
        }
        for i, value in enumerate(kl.mean(0).detach()):
            metrics[f"kl/{i + 1}"] = value
        return LossOutput(-loss.mean(), metrics)

    def validation_score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """−ELBO (B,) nats, the β = 1 bound whatever the warm-up's β and free bits: what keeping
        the best weights on held-out data should compare."""
        with torch.no_grad():
            return -self.log_prob_bound(x, c)

    # -- evaluation ----------------------------------------------------------------------------

    def validate(self, x: Tensor) -> None:
        """Check shape and support of x for the likelihood (synchronises with the host)."""
        check_batch(self, x)
        check = getattr(self.head, "validate", None)
        if check is not None:
            check(x)

    def log_importance_weights(
        self,
        x: Tensor,
        c: Tensor | None = None,
        num_samples: int = 1,
        *,
        skip: int = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log w = log p(x | z) + Σ_i [log p(z_i | z_{>i}) − log q(z_i | x, z_{>i})] for k draws
        z ~ q(z | x) (the whole hierarchy, top-down), (num_samples, B) nats; each is an unbiased
        estimate of the ELBO and ``logsumexp − log k`` is the IWAE bound.

        With ``skip = s`` > 0 the bottom s groups z_1..z_s are drawn from the prior
        p(z_{≤s} | z_{>s}) instead of the posterior, and the sum runs over the groups above only:
        E[exp w] is still p(x), so ``logsumexp − log k`` is the looser bound L^{>s} of Havtorn et
        al. (2021, "Hierarchical VAEs know what they don't know"), in which x must be explained by
        its high-level latents alone. ``skip`` = L draws every group from the prior."""
        if int(num_samples) < 1:
            raise ConfigError(f"importance sampling needs num_samples >= 1; found {num_samples}")
        if not 0 <= int(skip) <= self.levels:
            raise ConfigError(f"skip must be between 0 and the {self.levels} latent groups; found {skip}")
        self.validate(x)
        log_px, log_ratio, _ = self._weighted_pass(x, int(num_samples), skip=int(skip), generator=generator)
        return log_px + log_ratio

    def _weighted_pass(
        self, x: Tensor, k: int, *, skip: int = 0, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, HierarchyPass]:
        """k top-down draws per example (row i·B + b): log p(x | z) and Σ_{i>skip} [log p(z_i | z_{>i})
        − log q(z_i | x, z_{>i})], (k, B) nats each, and the pass itself."""
        batch = x.shape[0]
        features = [b.repeat(k, *([1] * (b.dim() - 1))) for b in self.bottom_up(x)]  # row i·B + b
        out = self.descend(k * batch, features, keep=self.levels - skip, generator=generator)
        log_px = out.likelihood.log_prob(x.repeat(k, *([1] * (x.dim() - 1))))
        log_ratio = torch.zeros_like(log_px)
        for i, (lp, lq) in enumerate(zip(out.log_p, out.log_q)):
            if i < skip:  # drawn from the conditional prior: p / p cancels
                continue
            assert lp is not None and lq is not None
            log_ratio = log_ratio + lp - lq
        return log_px.reshape(k, batch), log_ratio.reshape(k, batch), out

    def log_prob_bound(
        self,
        x: Tensor,
        c: Tensor | None = None,
        num_samples: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A lower bound on log p(x), (B,) nats: the ELBO ``log p(x | z) − Σ_i KL_i`` (one draw,
        closed-form KLs, the top group's by one draw under a learned top prior) for
        ``num_samples = 1``, the IWAE bound with k draws otherwise."""
        if num_samples > 1:
            return importance_weighted_bound(
                self.log_importance_weights(x, c, num_samples, generator=generator)
            )
        if num_samples < 1:
            raise ConfigError(f"log_prob_bound needs num_samples >= 1; found {num_samples}")
        self.validate(x)
        out = self.descend(x.shape[0], self.bottom_up(x), generator=generator)
        kl = sum(k for k in out.kl if k is not None)
        return out.likelihood.log_prob(x) - kl

    @torch.no_grad()
    def kl_per_group(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """KL(q(z_i | x, z_{>i}) ‖ p(z_i | z_{>i})) for each example and group, (B, L) nats,
        z_1 first (one draw of the groups above): near 0 for a collapsed group."""
        out = self.descend(x.shape[0], self.bottom_up(x), generator=generator)
        return torch.stack([k for k in out.kl if k is not None], 1)

    # -- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mean: bool = True,
        temperature: float | Sequence[float] = 1.0,
        **sampler_options: Any,
    ) -> Tensor:
        """z_L ~ N(0, τ_L² I) (a learned top prior: see :meth:`_draw_top`), z_i ~ N(μ_p, (τ_i σ_p)²)
        down the hierarchy, then x = E[x | z]
        (``mean=True``) or x ~ p(x | z).

        Args:
            n: number of samples.
            generator: makes the draw reproducible.
            mean: return the decoder mean instead of a draw from the likelihood.
            temperature: τ for every group, or τ_1..τ_L (z_1, nearest the data, first);
                τ = 0 follows the prior means (NVAE and VDVAE sample at τ ≈ 0.6–0.9).

        Returns:
            (n, *event_shape).
        """
        if sampler_options:
            raise ConfigError(
                f"{self.preset_name}.sample takes mean= and temperature=; found {sorted(sampler_options)}"
            )
        px = self.descend(int(n), temperature=self._temperatures(temperature), generator=generator).likelihood
        return px.mean if mean else sample_from(px, (), generator)

    @torch.no_grad()
    def reconstruct_from_top(
        self,
        x: Tensor,
        groups: int,
        *,
        temperature: float | Sequence[float] = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """E[x | z] with the top ``groups`` groups at their posterior means given x and the others
        drawn from the prior at ``temperature`` (τ = 0: the prior means): what the top levels
        encode (Sønderby et al. 2016, Fig. 5; Child 2021, Fig. 4).

        Args:
            x: (B, *event).
            groups: k in 0..L; k = L is the full reconstruction, k = 0 a sample from the prior.

        Returns:
            (B, *event), the decoder mean.
        """
        if isinstance(groups, bool) or not isinstance(groups, int) or not 0 <= groups <= self.levels:
            raise ConfigError(f"groups must be an integer in [0, {self.levels}]; found {groups!r}")
        self.validate(x)
        taus = self._temperatures(temperature)
        out = self.descend(
            x.shape[0],
            self.bottom_up(x),
            keep=groups,
            temperature=taus,
            posterior_mean=True,
            generator=generator,
        )
        return out.likelihood.mean
