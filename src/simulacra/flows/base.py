"""Transforms: bijections z = f(x; c) that return their log-Jacobian-determinant in the same pass.

Convention (the *normalizing* direction, as in RealNVP, MAF and Glow): ``forward`` maps data x to
the base space z and returns ``log|det ∂f/∂x|``; ``inverse`` maps z back to x and returns
``log|det ∂f⁻¹/∂z|`` at z, which equals ``−log|det ∂f/∂x|`` at x = f⁻¹(z). A flow's density is then

    log p(x | c) = log p_Z(f(x; c)) + log|det ∂f/∂x|                         (forward pass)
    log p(x | c) = log p_Z(z) − log|det ∂f⁻¹/∂z|,   x = f⁻¹(z; c)            (inverse pass)

Shapes: a transform acts on a batch (B, *event_shape) (vectors (B, D), images (B, C, H, W));
the log-determinants have shape (B,), summed over the event. The context ``c`` is a (B, C_c)
feature tensor (or None) and reaches every transform that accepts one.

:class:`Elementwise` maps are the univariate monotonic bijections y = h(x; θ) that coupling and
autoregressive transforms apply to each coordinate, with parameters θ computed by a conditioner.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def sum_event(t: Tensor, event_dims: int) -> Tensor:
    """Sum the last ``event_dims`` dimensions of ``t`` (elementwise log-derivatives -> (B,))."""
    return t.sum(tuple(range(-event_dims, 0))) if event_dims > 0 else t


class Transform(nn.Module, abc.ABC):
    """A bijection z = f(x; c) with its log|det J| (see the module docstring for the convention).

    Attributes:
        event_dims: how many trailing dimensions form one example (1 for vectors, 3 for images).
    """

    event_dims: int = 1

    @abc.abstractmethod
    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, *event) -> (z (B, *event), log|det ∂f/∂x| (B,))."""

    @abc.abstractmethod
    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z (B, *event) -> (x (B, *event), log|det ∂f⁻¹/∂z| (B,))."""


class Composed(Transform):
    """f = f_K ∘ … ∘ f_1: ``forward`` applies the transforms in order, ``inverse`` in reverse.

    log|det ∂f/∂x| = Σ_k log|det ∂f_k/∂h_{k−1}| (chain rule), accumulated in one pass.
    """

    def __init__(self, transforms: Iterable[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        dims = {t.event_dims for t in self.transforms}
        self.event_dims = max(dims) if dims else 1

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total: Tensor | None = None
        for t in self.transforms:
            x, ladj = t(x, c)
            total = ladj if total is None else total + ladj
        return x, (x.new_zeros(x.shape[0]) if total is None else total)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total: Tensor | None = None
        for t in reversed(self.transforms):
            z, ladj = t.inverse(z, c)
            total = ladj if total is None else total + ladj
        return z, (z.new_zeros(z.shape[0]) if total is None else total)

    def __len__(self) -> int:
        return len(self.transforms)


class Inverse(Transform):
    """f⁻¹ as a transform: swaps ``forward`` and ``inverse``.

    Inverse autoregressive flows (Kingma et al. 2016) are ``Inverse(MaskedAutoregressive(...))``:
    sampling becomes the one-pass direction and density evaluation the D-pass one.
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform
        self.event_dims = transform.event_dims

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, c)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, c)


class Elementwise(nn.Module, abc.ABC):
    """A univariate monotonic bijection y = h(x; θ), applied coordinate by coordinate.

    Attributes:
        num_params: P, the number of parameters θ per coordinate that a conditioner must output.

    ``forward(x, params)`` and ``inverse(y, params)`` take x or y of any shape S and params of
    shape (*S, P), and return the image and the elementwise log|h'| (shape S): ``log h'(x)`` for
    ``forward``, ``log (h⁻¹)'(y) = −log h'(x)`` for ``inverse``.
    """

    num_params: int

    @abc.abstractmethod
    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]: ...

    @abc.abstractmethod
    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]: ...


def soft_clamp(t: Tensor, bound: float) -> Tensor:
    """bound · tanh(t / bound): ≈ t near 0, smoothly limited to (−bound, bound)."""
    return bound * torch.tanh(t / bound)


class Affine(Elementwise):
    """y = x · exp(s) + t with θ = (t, s̃) and s = bound · tanh(s̃ / bound) (RealNVP, MAF).

    The soft clamp keeps the scale in (e^−bound, e^bound), which keeps deep stacks stable.
    log|h'(x)| = s.
    """

    num_params = 2

    def __init__(self, bound: float = 3.0) -> None:
        super().__init__()
        self.bound = float(bound)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = params.unbind(-1)
        return shift, soft_clamp(raw, self.bound)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._split(params)
        return x * log_scale.exp() + shift, log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._split(params)
        return (y - shift) * torch.exp(-log_scale), -log_scale


class Additive(Elementwise):
    """y = x + t (NICE, Dinh et al. 2015): volume preserving, log|h'| = 0."""

    num_params = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x + params[..., 0], torch.zeros_like(x)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return y - params[..., 0], torch.zeros_like(y)


class Reshape(Transform):
    """z = x reshaped from events of ``in_shape`` to ``out_shape`` (e.g. images to vectors); log|det| = 0."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        super().__init__()
        if torch.Size(in_shape).numel() != torch.Size(out_shape).numel():
            raise ValueError(f"cannot reshape events of shape {in_shape} to {out_shape}")
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.event_dims = len(self.in_shape)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], *self.out_shape), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.reshape(z.shape[0], *self.in_shape), z.new_zeros(z.shape[0])


class ElementwiseTransform(Transform):
    """z_i = h(x_i; θ_i) with θ = NN(c) from the context, or learned constants when ``conditioner``
    is None: a diagonal affine layer, or the Gaussian step z = μ(c) + σ(c) ε of an amortized posterior
    (in the normalizing direction, ε = (z − μ(c)) / σ(c)).

    Args:
        elementwise: the map h.
        features: D (vectors (B, D)).
        conditioner: module (B, C_c) -> (B, D·P), or None for parameters θ of shape (D, P).
    """

    def __init__(self, elementwise: Elementwise, features: int, conditioner: nn.Module | None = None) -> None:
        super().__init__()
        self.elementwise = elementwise
        self.features = int(features)
        self.conditioner = conditioner
        self.params = (
            nn.Parameter(torch.zeros(self.features, elementwise.num_params)) if conditioner is None else None
        )

    def _params(self, x: Tensor, c: Tensor | None) -> Tensor:
        if self.conditioner is None:
            return self.params.expand(x.shape[0], -1, -1)
        if c is None:
            raise ValueError("this transform is conditional: it needs a context c of shape (B, C_c)")
        return self.conditioner(c).reshape(x.shape[0], self.features, self.elementwise.num_params)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, ladj = self.elementwise(x, self._params(x, c))
        return z, ladj.sum(-1)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, ladj = self.elementwise.inverse(z, self._params(z, c))
        return x, ladj.sum(-1)
