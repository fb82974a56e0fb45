"""Flow models: exact-likelihood generative models x ~ p(x | c) given by a normalizing flow.

``FlowModel(info, flow, dequantizer)`` trains by maximum likelihood, −E[log p(x | c)] in nats.
For continuous data (2-D toys, tabular data) log p is the flow's exact density. For discrete data
(images with L levels) a dequantizer maps x to a continuous y ~ q(y | x) inside x's bin and

    log P(x) ≥ E_q[log p(y) − log q(y | x)]                    (Theis et al. 2016; Ho et al. 2019)

is what ``log_prob`` returns (one draw of y): a stochastic lower bound on the log-probability of
the discrete x, so bits/dim need no further offset (``discrete_likelihood`` is then True).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from simulacra.data.info import LN2, DataInfo
from simulacra.flows.flow import Flow, LazyFlow
from simulacra.models.base import GenerativeModel, LossOutput, check_batch, check_context


class FlowModel(GenerativeModel):
    """p(x | c) = p_Z(f(x; c)) |det ∂f/∂x|, optionally on dequantized discrete data.

    Args:
        info: shape and support of one example.
        flow: a :class:`LazyFlow` over ``info.event_shape``; its ``context`` module embeds labels
            when ``conditional``.
        dequantizer: None for continuous data, else a module with ``forward(x, c) -> (y,
            log q(y | x))`` and ``quantize(y) -> x`` (uniform or variational dequantization).
        conditional: the flow reads a context (labels (B,) or features (B, C_c)).
    """

    loss_description = "NLL (nats per example)"

    def __init__(
        self,
        info: DataInfo,
        flow: LazyFlow,
        dequantizer: nn.Module | None = None,
        conditional: bool = False,
    ) -> None:
        super().__init__(info)
        self.flow = flow
        self.dequantizer = dequantizer
        self.conditional = bool(conditional)

    @property
    def discrete_likelihood(self) -> bool:
        """True when ``log_prob`` scores the discrete data (a dequantization bound)."""
        return self.dequantizer is not None

    @property
    def likelihood_estimator(self) -> str:
        """How ``log_prob`` is obtained, for reports."""
        if self.dequantizer is None:
            return "exact"
        return f"exact flow, {getattr(self.dequantizer, 'name', 'dequantization')} bound (1 draw)"

    def support_bounds(self) -> tuple[float, float] | None:
        """The interval of the base distribution's support when it is one (the torus flow's
        [−π, π)), else None."""
        support = self.distribution().base.support
        support = getattr(support, "base_constraint", support)  # independent(interval) -> interval
        lower, upper = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
        if lower is None or upper is None:
            return None
        return float(torch.as_tensor(lower).min()), float(torch.as_tensor(upper).max())

    def distribution(self, c: Tensor | None = None) -> Flow:
        """The flow p(· | c) as a torch Distribution (batch shape (len(c),) or ())."""
        return self.flow(c if self.conditional else None)

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """log p(x | c) in nats, shape (B,) (a one-draw dequantization bound for discrete data)."""
        check_batch(self, x, c)
        if self.dequantizer is None:
            return self.distribution(c).log_prob(x)
        y, log_q = self.dequantizer(x, c if self.conditional else None)
        return self.distribution(c).log_prob(y) - log_q

    def loss(self, x: Tensor, c: Tensor | None = None, *, group: str = "main") -> LossOutput:
        log_p = self.log_prob(x, c)
        nll = -log_p.mean()
        bpd = nll.detach() / (self.info.dim * LN2)
        return LossOutput(nll, {"nll": nll.detach(), "bpd": bpd})

    sample_options = frozenset({"temperature"})

    def describe_sampling(self, options: dict[str, Any] | None = None) -> str:
        """``exact draws``, or ``base at temperature T`` (:meth:`Flow.sample_at_temperature`)."""
        t = (options or {}).get("temperature", 1.0)
        return "exact draws" if t == 1.0 else f"Gaussian base at temperature {t:g} (z ~ N(0, {t:g}² I))"

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        """n draws (n, *event_shape); with a context c (n, ...) row i is drawn given c[i].
        ``temperature`` T < 1 draws the Gaussian base with its deviations scaled by T (Glow's
        reduced-temperature samples: sharper, less varied), T = 1 exact draws."""
        check_context(self, c, n)
        if self.conditional:
            y = self.distribution(c).sample_at_temperature(temperature, (), generator=generator)
        else:
            y = self.distribution().sample_at_temperature(temperature, (n,), generator=generator)
        return y if self.dequantizer is None else self.dequantizer.quantize(y)
