"""Lazy distributions: modules whose ``forward`` returns a :class:`torch.distributions.Distribution`.

The idea comes from zuko: a distribution whose parameters are learned (or depend on a context)
is an ``nn.Module`` that *builds* the distribution when called, ``p = module(c)``. Parameters and
buffers live on the module (so they move with ``.to(device)`` and save in safetensors); the
returned object speaks torch.distributions (``log_prob`` (B,), ``rsample``, ``mean``).

Conventions used across simulacra:

* a **head** maps features to a distribution over one example: ``head(features) -> p``;
* a **prior** maps an optional context and a batch size to p(z | c): ``prior(c=None, n=None)``;
  the batch shape is ``c.shape[:1]`` when ``c`` is given, else ``(n,)``, else ``()``;
* an **amortized** conditional ``q(y | x, c) = head(net(x, c))`` (:class:`Amortized`).
"""

from __future__ import annotations

import abc

from torch import Tensor, nn
from torch.distributions import Distribution


class LazyDistribution(nn.Module, abc.ABC):
    """A module whose ``forward(c)`` returns a :class:`Distribution` (p(· | c))."""

    @abc.abstractmethod
    def forward(self, c: Tensor | None = None) -> Distribution:
        """The distribution given the context (features, labels, or None)."""


class Amortized(nn.Module):
    """``p(y | x, c) = head(net(x, c))``: an amortized conditional distribution.

    Used for the VAE encoder q(z | x, c) (``head`` = a diagonal Gaussian) and decoder
    p(x | z, c) (``head`` = a likelihood head). ``net`` is any module ``(x, c) -> features``,
    e.g. :class:`simulacra.nn.ContextNet`.
    """

    def __init__(self, net: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.head = head

    def forward(self, x: Tensor, c: Tensor | None = None) -> Distribution:
        """(B, ...) inputs and optional (B,) context -> a distribution with batch shape (B,)."""
        return self.head(self.net(x, c))

    def validate(self, y: Tensor) -> None:
        """Check that ``y`` lies in the head's support (see the head's ``validate``)."""
        check = getattr(self.head, "validate", None)
        if check is not None:
            check(y)
