"""Autoregressive models: an exact likelihood by the chain rule, in one network pass.

    log p(x | c) = Σ_{t=1}^{D} log p(x_{o(t)} | x_{o(<t)}, c)

for an order o of the D entries of x. ``Autoregressive(info, net, head)`` composes

* a network ``net(x, c) -> (B, D, P)`` whose row i depends only on the entries before i in
  ``net.order`` (NADE, MADE, PixelCNN, gated PixelCNN, a causal Transformer), and
* a likelihood head for one entry, features (N, P) -> a distribution with event shape (1,)
  (Bernoulli, categorical, discretized logistic (mixture), mixture of Gaussians).

One sampling loop serves every network: position by position in the order, each entry drawn
by inverting its conditional CDF at a uniform taken from ``generator`` (one pair of uniforms per
entry, drawn up front). A network that offers ``begin(n, c)`` and ``step(state, t, previous)``
(:class:`IncrementalNet`: NADE's O(D·H) recurrence, the Transformer's key-value cache) is stepped
incrementally; any other network is re-run on the partial sample (or, through
``features_at(x, i, c)`` of a :class:`LocalFeatures` network, on the part that entry i depends
on). Both paths consume the same uniforms, so they give the same samples under one generator.
What a network offers is stated by these protocols, beside :class:`AutoregressiveNet` (the
``order`` every network carries) and :class:`MaskEnsemble` (MADE's orders).

A MADE with ``num_masks`` K > 1 is the uniform mixture of its K (order, connectivity) models,
p(x) = (1/K) Σ_k p_k(x) (Germain et al. 2015 average the K models' probabilities at test time):
``log_prob`` returns log-mean-exp over the masks; training draws one mask per step; sampling
draws a mask per sample, then samples in its order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol, cast, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from simulacra.data.info import LN2, DataInfo
from simulacra.errors import CapabilityError, ConfigError, DataError
from simulacra.models.base import GenerativeModel, LossOutput, check_batch, check_context

# -- what an autoregressive network offers -----------------------------------------------------


@runtime_checkable
class AutoregressiveNet(Protocol):
    """``net(x (B, *event), c) -> (B, D, P)``, row i depending only on the entries before i in
    ``order`` (D,), a permutation of the D entries (a buffer: NADE, MADE, PixelCNN, Transformer)."""

    @property
    def order(self) -> Tensor: ...

    def __call__(self, x: Tensor, c: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class MaskEnsemble(Protocol):
    """A network with K = ``num_masks`` (order, connectivity) masks (MADE; Germain et al. 2015):
    ``use_mask(k)`` switches to mask k, ``mask_index`` is the current one."""

    @property
    def num_masks(self) -> int: ...

    @property
    def mask_index(self) -> int: ...

    def use_mask(self, k: int) -> None: ...


@runtime_checkable
class IncrementalNet(Protocol):
    """A network stepped one position at a time: ``begin(n, c)`` gives the state before the first
    position, ``step(state, t, previous)`` the features (n, P) of position order[t] given the value
    drawn at order[t − 1] (None at t = 0), and the next state."""

    def begin(self, n: int, c: Tensor | None = None) -> Any: ...

    def step(self, state: Any, t: int, previous: Tensor | None) -> tuple[Tensor, Any]: ...


@runtime_checkable
class LocalFeatures(Protocol):
    """A network that computes the features (n, P) of entry ``index`` from the part of x it sees
    (PixelCNN: the rows above and the row itself), cheaper than a full pass."""

    def features_at(self, x: Tensor, index: int, c: Tensor | None = None) -> Tensor: ...


# -- the model ---------------------------------------------------------------------------------


class Autoregressive(GenerativeModel):
    """p(x | c) = Π_t p(x_{o(t)} | x_{o(<t)}, c), each factor ``head(net(x, c)[:, o(t)])``.

    Args:
        info: shape and support of one example.
        net: an :class:`AutoregressiveNet` ``(B, *event_shape), c -> (B, D, P)`` with a buffer
            ``order`` (D,); optionally an :class:`IncrementalNet` (incremental sampling), a
            :class:`LocalFeatures` network, or a :class:`MaskEnsemble` (MADE's orders).
        head: features (N, P) -> a distribution over one entry (event shape (1,)), built for
            ``DataInfo((1,), ...)`` by :func:`simulacra.distributions.heads.head_for`.
        conditional: the net reads a context c.
    """

    loss_description = "NLL (nats per example)"

    def __init__(self, info: DataInfo, net: nn.Module, head: nn.Module, conditional: bool = False) -> None:
        super().__init__(info)
        self.net = net
        self.head = head
        self.conditional = bool(conditional)
        order = net.order if isinstance(net, AutoregressiveNet) else None
        if not isinstance(order, Tensor) or order.shape != (info.dim,):
            raise ConfigError(
                f"the network must carry its order, a permutation of the {info.dim} entries; "
                f"found {None if order is None else tuple(order.shape)}"
            )
        if getattr(head, "params_per_dim", None) is None:
            raise ConfigError("the likelihood head must state params_per_dim")
        self._discrete = bool(getattr(head, "discrete", False))
        # number of values an entry takes (2 for a Bernoulli head), None for a density
        self.levels: int | None = getattr(head, "levels", None) or (2 if self._discrete else None)

    sample_options = frozenset({"conditioned_on", "mask", "temperature", "top_k", "cache"})

    @property
    def discrete_likelihood(self) -> bool:
        """True when the head assigns probabilities (Bernoulli, categorical, discretized logistic)."""
        return self._discrete

    @property
    def order(self) -> Tensor:
        """The autoregressive order o (D,) of the network's current mask."""
        return cast(AutoregressiveNet, self.net).order  # checked in __init__

    def _ensemble(self) -> MaskEnsemble | None:
        """The network as a mask ensemble when it has more than one mask, else None."""
        net = self.net
        return net if isinstance(net, MaskEnsemble) and int(net.num_masks) > 1 else None

    @property
    def num_masks(self) -> int:
        """K, the masks the model averages over (1 for a network without a mask ensemble)."""
        ensemble = self._ensemble()
        return 1 if ensemble is None else int(ensemble.num_masks)

    @property
    def likelihood_estimator(self) -> str:
        k = self.num_masks
        return "exact" if k == 1 else f"exact, mixture of {k} masks (log-mean-exp)"

    # ------------------------------------------------------------------ likelihood

    def conditionals(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(x_i | x_{<i}, c) of every entry in the data's own positions, (B, D) nats."""
        b, d = x.shape[0], self.info.dim
        features = self.net(x, c if self.conditional else None)  # (B, D, P)
        dist = self.head(features.reshape(b * d, -1))
        return dist.log_prob(x.reshape(b * d, 1)).reshape(b, d)

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(x | c) in nats, shape (B,): the chain rule in one pass (K passes for K masks)."""
        check_batch(self, x, c)
        ensemble = self._ensemble()
        if ensemble is None:
            return self.conditionals(x, c).sum(1)
        current, k_total = ensemble.mask_index, int(ensemble.num_masks)
        per_mask = []
        for k in range(k_total):
            ensemble.use_mask(k)
            per_mask.append(self.conditionals(x, c).sum(1))
        ensemble.use_mask(current)
        return torch.logsumexp(torch.stack(per_mask), 0) - math.log(k_total)

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        """Mean NLL in nats; with K > 1 masks, training uses one random mask per step."""
        ensemble = self._ensemble()
        if self.training and ensemble is not None:
            check_batch(self, x, c)
            ensemble.use_mask(int(torch.randint(int(ensemble.num_masks), ())))
            log_p = self.conditionals(x, c).sum(1)
        else:
            log_p = self.log_prob(x, c)
        nll = -log_p.mean()
        bpd = nll.detach() / (self.info.dim * LN2)
        return LossOutput(nll, {"nll": nll.detach(), "bpd": bpd})

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        conditioned_on: Tensor | None = None,
        mask: Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        cache: bool = True,
    ) -> Tensor:
        """n draws (n, *event_shape), entry by entry in the order.

        Args:
            n: number of samples.
            c: (n, ...) context of a conditional model.
            generator: the only source of randomness (a mask index per sample when there are
                several masks, then two uniforms per entry).
            conditioned_on: (n, *event_shape) values to complete (inpainting, imputation).
            mask: (n, *event_shape) booleans, True where the entry is missing and is drawn;
                entries where it is False keep ``conditioned_on``'s value (default: all missing).
                The completion is an exact draw from p(x_missing | x_observed) when every
                observed entry precedes every missing one in the order; otherwise each missing
                entry is drawn given the entries before it only.
            temperature: T > 0; discrete conditionals become ∝ p^{1/T}, Gaussian mixtures get
                weights ∝ π^{1/T} and standard deviations σ·√T. T → 0 approaches greedy decoding.
            top_k: keep only the k most probable values of each discrete conditional.
            cache: use the network's incremental ``step`` when it has one.
        """
        options = self._check_options(n, c, conditioned_on, mask, temperature, top_k)
        shape, device = (n, self.info.dim), self.device
        x = torch.zeros(shape, device=device)
        missing = torch.ones(shape, dtype=torch.bool, device=device)
        if conditioned_on is not None:
            x = conditioned_on.reshape(shape).to(device, x.dtype).clone()
            if mask is not None:
                missing = mask.reshape(shape).to(device).bool()
        g_device = generator.device if generator is not None else torch.device("cpu")
        ensemble = self._ensemble()
        masks = (
            None
            if ensemble is None
            else torch.randint(int(ensemble.num_masks), (n,), generator=generator, device=g_device).to(device)
        )
        u = torch.rand((n, self.info.dim, 2), generator=generator, device=g_device).to(device)
        if ensemble is None or masks is None:
            self._sample_rows(x, missing, u, c, options, cache)
        else:
            current = ensemble.mask_index
            for k in masks.unique().tolist():
                rows = (masks == k).nonzero()[:, 0]
                ensemble.use_mask(k)
                part, sub_c = x[rows], None if c is None else c[rows]
                self._sample_rows(part, missing[rows], u[rows], sub_c, options, cache)
                x[rows] = part
            ensemble.use_mask(current)
        return x.reshape(n, *self.info.event_shape)

    def complete(
        self,
        x: Tensor,
        missing: Tensor,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """x (B, *event_shape) with the entries where ``missing`` (bool, same shape) is True drawn
        from the model given the observed ones (inpainting, imputation): ``sample`` with
        ``conditioned_on=x, mask=missing``. Exact for p(x_missing | x_observed) when every observed
        entry precedes every missing one in the model's order (e.g. the bottom of an image under a
        raster order); otherwise each missing entry sees only the entries before it."""
        return self.sample(x.shape[0], c, generator=generator, conditioned_on=x, mask=missing)

    def _check_options(
        self,
        n: int,
        c: Tensor | None,
        conditioned_on: Tensor | None,
        mask: Tensor | None,
        temperature: float,
        top_k: int | None,
    ) -> dict[str, Any]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer; found {n!r}")
        check_context(self, c, n)
        shape = (n, *self.info.event_shape)
        if conditioned_on is not None and tuple(conditioned_on.shape) != shape:
            raise DataError(f"conditioned_on must have shape {shape}; found {tuple(conditioned_on.shape)}")
        if mask is not None:
            if conditioned_on is None:
                raise ConfigError("a mask needs the values it completes: pass conditioned_on=x as well")
            if tuple(mask.shape) != shape:
                raise DataError(f"mask must have shape {shape}; found {tuple(mask.shape)}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive; found {temperature!r}")
        if top_k is not None:
            if self.levels is None:
                raise ConfigError("top_k applies to discrete outputs; this model has a density per entry")
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ConfigError(f"top_k must be a positive integer; found {top_k!r}")
        return {"temperature": float(temperature), "top_k": top_k}

    def _sample_rows(
        self, x: Tensor, missing: Tensor, u: Tensor, c: Tensor | None, options: dict[str, Any], cache: bool
    ) -> None:
        """Fill the missing entries of x (n, D) in place, position by position in the order."""
        needed = missing.any(0)  # (D,) positions where some row draws
        for t, i, features in self.conditionals_in_order(x, c, cache=cache, needed=needed):
            drawn = self._draw(features, u[:, t], options)
            x[:, i] = torch.where(missing[:, i], drawn, x[:, i])

    def conditionals_in_order(
        self, x: Tensor, c: Tensor | None = None, *, cache: bool = True, needed: Tensor | None = None
    ) -> Iterator[tuple[int, int, Tensor]]:
        """The conditionals of x (n, D) position by position in the order, given what x holds.

        Yields ``(t, i, features)``: i = o(t) and the features (n, P) of p(x_i | x_{o(<t)}, c)
        (the head turns them into a distribution; :meth:`level_log_probs` into a table). The
        caller writes x[:, i] (drawn, decoded, or known) before asking for the next position:
        the features of position t + 1 are computed from x as it is then. One loop for every
        network: :meth:`IncrementalNet.step` when ``cache`` and the network has it (NADE, the
        Transformer), else a pass over the partial x (or ``features_at`` of a
        :class:`LocalFeatures` network). Used by sampling and by the entropy coder
        (:mod:`simulacra.tasks.compress`), so both see the same arithmetic.

        Args:
            x: (n, D) values, filled in place by the caller as positions go by.
            c: (n, ...) context of a conditional model.
            cache: step an :class:`IncrementalNet` incrementally.
            needed: (D,) bools, the positions whose features are wanted; without an incremental
                step, the others are skipped (default: all).
        """
        n = x.shape[0]
        c = c if self.conditional else None
        net = self.net
        stepper = net if cache and isinstance(net, IncrementalNet) else None
        state = None if stepper is None else stepper.begin(n, c)
        previous: Tensor | None = None
        for t, i in enumerate(self.order.tolist()):
            if stepper is not None:
                features, state = stepper.step(state, t, previous)
            elif needed is None or bool(needed[i]):
                image = x.reshape(n, *self.info.event_shape)
                if isinstance(net, LocalFeatures):  # e.g. PixelCNN: only the rows entry i sees
                    features = net.features_at(image, i, c)
                else:
                    features = net(image, c)[:, i]
            else:
                continue
            yield t, i, features
            previous = x[:, i]

    def level_log_probs(self, features: Tensor) -> Tensor:
        """log p(x_i = l / (L − 1)) for the L values of a discrete entry, (n, L) nats, from the
        features (n, P) of its conditional (Bernoulli: L = 2; categorical, discretized logistic:
        L = ``levels``); the values are the grid l / (L − 1), l = 0, …, L − 1."""
        if self.levels is None:
            raise CapabilityError("this model has a density per entry, not probabilities over levels")
        n, levels = features.shape[0], self.levels
        grid = torch.arange(levels, device=features.device, dtype=features.dtype) / (levels - 1)
        dist = self.head(features.repeat(levels, 1))  # row l·n + j: example j, value grid[l]
        return dist.log_prob(grid.repeat_interleave(n)[:, None]).reshape(levels, n).t()  # (n, L)

    def _draw(self, features: Tensor, u: Tensor, options: dict[str, Any]) -> Tensor:
        """One value per row from the head's distribution given features (n, P), by inverting
        its CDF at u[:, 0] (a Gaussian mixture uses u[:, 1] for the Gaussian draw), (n,)."""
        temperature, top_k = options["temperature"], options["top_k"]
        if self.levels is None:
            return self._draw_gaussian_mixture(features, u, temperature)
        levels = self.levels
        grid = torch.arange(levels, device=features.device, dtype=features.dtype) / (levels - 1)
        logits = self.level_log_probs(features) / temperature  # (n, L)
        if top_k is not None and top_k < levels:
            kth = logits.topk(top_k, dim=1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        cdf = torch.softmax(logits, 1).cumsum(1)
        index = (cdf < u[:, :1] * cdf[:, -1:]).sum(1).clamp(max=levels - 1)
        return grid[index]

    def _draw_gaussian_mixture(self, features: Tensor, u: Tensor, temperature: float) -> Tensor:
        """A Gaussian (one component) or a mixture of Gaussians: the component by inverting the
        weights' CDF at u[:, 0], then μ + σ √T Φ^{-1}(u[:, 1])."""
        base = self.head(features).base_dist
        if isinstance(base, Normal):  # gaussian, gaussian-learned: one component
            loc, std = base.loc[:, 0], base.scale[:, 0]
        else:
            mixture = getattr(base, "mixture_distribution", None)
            component = getattr(base, "component_distribution", None)
            if mixture is None or not isinstance(component, Normal):
                raise ConfigError(
                    "sampling a continuous entry needs a discrete head, a Gaussian or a mixture of "
                    f"Gaussians (gaussian-mixture); found {type(base).__name__}"
                )
            weights = torch.softmax(mixture.logits[:, 0] / temperature, -1)  # (n, K)
            cdf = weights.cumsum(-1)
            k = (cdf < u[:, :1] * cdf[:, -1:]).sum(-1).clamp(max=weights.shape[-1] - 1)[:, None]
            loc = component.loc[:, 0].gather(-1, k)[:, 0]
            std = component.scale[:, 0].gather(-1, k)[:, 0]
        z = math.sqrt(2.0) * torch.erfinv((2 * u[:, 1] - 1).clamp(-1 + 1e-7, 1 - 1e-7))
        return loc + std * math.sqrt(temperature) * z
