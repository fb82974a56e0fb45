"""Masked networks: MADE (Germain et al. 2015, "MADE: Masked autoencoder for distribution estimation").

A MADE is an MLP whose weight matrices are multiplied by binary masks so that output d depends
only on the inputs that precede d in a chosen order: with input degrees m(i) = position of i in
the order (1..D), hidden degrees m(k) ∈ {0, …, D − 1}, a hidden unit k sees input i iff
m(k) ≥ m(i), a later hidden unit k' sees k iff m(k') ≥ m(k), and output d sees hidden k iff
m(d) > m(k). Hence ∂ out_d / ∂ x_i = 0 whenever m(i) ≥ m(d): the network is autoregressive.

An optional context c (B, C_c) feeds every first-layer hidden unit without a mask, so the
conditional outputs p(x_d | x_<d, c) stay autoregressive in x. Optional direct connections add
a masked linear map from the inputs to the outputs (output d sees input i iff m(d) > m(i)), the
``direct_input_connect="Output"`` option of Germain et al.'s code: a fully visible sigmoid belief
net in parallel with the hidden layers, so every output sees all of its predecessors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.nn.mlp import ACTIVATIONS


class MaskedLinear(nn.Linear):
    """y = (W ⊙ M) x + b with a fixed binary mask M (out_features, in_features), kept as a buffer."""

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(width: int, features: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Degrees of a hidden layer: cyclic 0/1 … D − 1 (deterministic), or uniform draws from that
    range with ``generator`` (the connectivity-agnostic training of Germain et al. §4.2)."""
    low = min(1, features - 1)
    if generator is None:
        return torch.arange(width) % (features - low) + low
    return torch.randint(low, features, (width,), generator=generator)


class MADE(nn.Module):
    """Autoregressive MLP: x (B, D) [, c (B, C_c)] -> parameters (B, D, P) of p(x_d | x_<d, c).

    Args:
        features: D.
        hidden: hidden layer widths.
        params_per_dim: P, the number of outputs per input coordinate.
        context_features: C_c (0 for an unconditional network).
        order: a permutation of 0..D−1 giving the autoregressive order (default 0, 1, …, D − 1):
            output d depends on x_i only when i comes before d in ``order``.
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
        seed: None for deterministic cyclic hidden degrees; an integer draws random degrees.
        num_masks: how many (order, connectivity) masks the network cycles through (1: a fixed
            mask). Mask 0 is the one described by ``order`` and ``seed``; :meth:`use_mask`
            switches masks, which share the weights (order- and connectivity-agnostic training).
        resample_order: masks k ≥ 1 draw a random order as well as random hidden degrees.
        direct: add masked direct connections from the inputs to the outputs (D·P × D weights).
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int],
        params_per_dim: int,
        context_features: int = 0,
        order: Sequence[int] | Tensor | None = None,
        activation: str = "relu",
        seed: int | None = None,
        num_masks: int = 1,
        resample_order: bool = True,
        direct: bool = False,
    ) -> None:
        super().__init__()
        if int(features) < 1 or not hidden:
            raise ConfigError(
                f"MADE needs features >= 1 and at least one hidden layer; found {features}, {hidden}"
            )
        self.features = int(features)
        self.params_per_dim = int(params_per_dim)
        order_t = torch.arange(self.features) if order is None else torch.as_tensor(order).long()
        if sorted(order_t.tolist()) != list(range(self.features)):
            raise ConfigError(
                f"order must be a permutation of 0..{self.features - 1}; found {order_t.tolist()}"
            )
        self.hidden = [int(w) for w in hidden]
        self.seed = seed
        self.num_masks = int(num_masks)
        if self.num_masks < 1:
            raise ConfigError(f"MADE needs num_masks >= 1; found {num_masks}")
        self.resample_order = bool(resample_order)
        self.register_buffer("initial_order", order_t, persistent=False)
        degrees_in, hidden_deg = self._mask_degrees(0)
        self.register_buffer("order", order_t.clone())
        self.register_buffer("degrees", degrees_in)
        self.mask_index = 0
        act = ACTIVATIONS.get(activation)
        layers: list[nn.Module] = []
        previous = degrees_in
        for deg in hidden_deg:
            layers.append(MaskedLinear(deg[:, None] >= previous[None, :]))
            layers.append(act())
            previous = deg
        out_deg = degrees_in.repeat_interleave(self.params_per_dim)  # (D·P,), row d·P + p
        layers.append(MaskedLinear(out_deg[:, None] > previous[None, :]))
        self.net = nn.ModuleList(layers)
        self.direct = MaskedLinear(out_deg[:, None] > degrees_in[None, :], bias=False) if direct else None
        if self.direct is not None:
            nn.init.zeros_(self.direct.weight)  # starts as the plain MADE
        self.context = (
            nn.Linear(int(context_features), int(hidden[0]), bias=False) if context_features else None
        )

    def _mask_degrees(self, k: int) -> tuple[Tensor, list[Tensor]]:
        """Input degrees (D,) and hidden degrees of mask ``k``: mask 0 is the constructor's order
        and hidden degrees; mask k ≥ 1 draws a random order (when ``resample_order``) and random
        hidden degrees from a generator seeded with (seed, k), so masks are reproducible."""
        if k == 0:
            order = self.initial_order.cpu()  # masks are built on the CPU, then copied
            generator = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))
        else:
            generator = torch.Generator().manual_seed(int(self.seed or 0) * 1_000_003 + k)
            order = (
                torch.randperm(self.features, generator=generator)
                if self.resample_order
                else self.initial_order.cpu()
            )
        degrees_in = torch.empty(self.features, dtype=torch.long)
        degrees_in[order] = torch.arange(1, self.features + 1)  # position in the order, 1..D
        hidden_deg = [hidden_degrees(w, self.features, generator=generator) for w in self.hidden]
        return degrees_in, hidden_deg

    def use_mask(self, k: int) -> None:
        """Switch to mask ``k`` of ``num_masks`` (order and connectivity; Germain et al. 2015 §4.2).

        The weights are shared by all masks; only the binary masks and :attr:`order` change.
        """
        k = int(k)
        if not 0 <= k < self.num_masks:
            raise ConfigError(f"mask index must be in 0..{self.num_masks - 1}; found {k}")
        degrees_in, hidden_deg = self._mask_degrees(k)
        linears = [m for m in self.net if isinstance(m, MaskedLinear)]
        previous = degrees_in
        for layer, deg in zip(linears[:-1], hidden_deg):
            layer.mask.copy_(deg[:, None] >= previous[None, :])
            previous = deg
        out_deg = degrees_in.repeat_interleave(self.params_per_dim)
        linears[-1].mask.copy_(out_deg[:, None] > previous[None, :])
        if self.direct is not None:
            self.direct.mask.copy_(out_deg[:, None] > degrees_in[None, :])
        self.degrees.copy_(degrees_in)
        self.order.copy_(torch.argsort(degrees_in))
        self.mask_index = k

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, D) inputs (or (B, *event) with D entries) and optional (B, C_c) context -> (B, D, P)."""
        x = x.reshape(x.shape[0], -1)
        layers = iter(self.net)  # (slicing a ModuleList would build a new one on every call)
        h = next(layers)(x)
        if self.context is not None:
            if c is None:
                raise ConfigError("this MADE is conditional: it needs a context c of shape (B, C_c)")
            h = h + self.context(c.to(h.dtype))
        for layer in layers:
            h = layer(h)
        if self.direct is not None:
            h = h + self.direct(x)
        return h.reshape(x.shape[0], self.features, self.params_per_dim)


# --------------------------------------------------------------------------- masked convolutions

MASK_TYPES: tuple[str, ...] = ("A", "B", "V")


def channel_groups(channels: int, data_channels: int) -> Tensor:
    """Which data channel (0..C−1) each of ``channels`` feature maps belongs to: contiguous
    blocks of ``channels / C`` maps, so group g of a hidden layer may see data channels ≤ g."""
    if channels % data_channels:
        raise ConfigError(
            f"masked convolutions over {data_channels} data channels need a channel count divisible "
            f"by {data_channels}; found {channels}"
        )
    return torch.arange(channels) * data_channels // channels


def conv_mask(
    kernel_size: tuple[int, int], mask_type: str, in_channels: int, out_channels: int, data_channels: int = 1
) -> Tensor:
    """Binary mask (out, in, kh, kw) of a raster-order masked convolution (van den Oord et al. 2016).

    Pixels are ordered row by row, left to right, and within a pixel by channel (R before G
    before B). Relative to the centre (kh//2, kw//2) of the kernel:

    * rows above the centre and, in the centre row, columns left of the centre: all channels;
    * the centre pixel: input group g_in is seen by output group g_out iff g_in < g_out (type
      ``"A"``, the first layer: a pixel never sees itself) or g_in ≤ g_out (type ``"B"``);
    * type ``"V"`` (the vertical stack of the gated PixelCNN): every row up to and including the
      centre row, all channels; its output must be shifted down one row before it may feed a
      pixel's own conditional.
    """
    if mask_type not in MASK_TYPES:
        raise ConfigError(f"mask type must be one of {', '.join(MASK_TYPES)}; found {mask_type!r}")
    kh, kw = kernel_size
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    ch, cw = kh // 2, kw // 2
    if mask_type == "V":
        mask[:, :, : ch + 1] = 1
        return mask
    mask[:, :, :ch] = 1
    mask[:, :, ch, :cw] = 1
    g_in = channel_groups(in_channels, data_channels)
    g_out = channel_groups(out_channels, data_channels)
    centre = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
    mask[:, :, ch, cw] = centre.to(mask.dtype)
    return mask


class MaskedConv2d(nn.Conv2d):
    """y = (W ⊙ M) ⋆ x + b, a 'same'-padded convolution with the mask M of :func:`conv_mask`.

    Args:
        in_channels, out_channels: feature maps in and out (multiples of ``data_channels``).
        kernel_size: an odd size k (k × k) or a pair (kh, kw) of odd sizes.
        mask_type: ``"A"`` (excludes the centre pixel's own and later channels), ``"B"``
            (includes its own channel group) or ``"V"`` (rows up to the centre row).
        data_channels: C, the channels of the modelled images (1 for MNIST, 3 for RGB).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str,
        data_channels: int = 1,
        bias: bool = True,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ConfigError(f"masked convolutions need odd kernel sizes; found {(kh, kw)}")
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
        self.mask_type = mask_type
        self.register_buffer(
            "mask", conv_mask((kh, kw), mask_type, in_channels, out_channels, data_channels), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)
