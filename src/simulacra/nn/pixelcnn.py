"""PixelCNN networks: masked convolutions giving the parameters of p(x_i | x_<i) for every pixel.

For an image x (C, H, W) in raster order (rows, then columns, then channels within a pixel),
the network maps x to features (B, D, P), D = C·H·W, where row i depends only on the entries
before i in that order: one pass scores log p(x) = Σ_i log p(x_i | x_<i), sampling takes D passes.

* :class:`PixelCNN` (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel recurrent neural
  networks"): a k × k type-A masked convolution, residual blocks of 3 × 3 type-B masked
  convolutions, two 1 × 1 type-B layers. Its receptive field has a blind spot (pixels up and to
  the right that a stack of masked kernels never reaches).
* :class:`GatedPixelCNN` (van den Oord et al. 2016, "Conditional image generation with PixelCNN
  decoders"): a vertical stack that sees every row above and a horizontal stack that sees the
  pixels to the left in the current row, fed by the vertical stack shifted down one row, with
  gated units tanh(f) ⊙ σ(g): no blind spot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.nn.masked import MaskedConv2d
from simulacra.nn.mlp import ACTIVATIONS


def raster_order(event_shape: tuple[int, int, int]) -> Tensor:
    """Flat (C·H·W layout) indices in raster order with the channel innermost, (D,)."""
    c, h, w = event_shape
    pixels = torch.arange(h * w)
    return (torch.arange(c)[None, :] * h * w + pixels[:, None]).reshape(-1)


def _check_image(event_shape: tuple[int, ...], channels: int, name: str) -> tuple[int, int, int]:
    if len(event_shape) != 3:
        raise ConfigError(f"{name} models images (C, H, W); found event shape {tuple(event_shape)}")
    if channels < 1 or channels % event_shape[0]:
        raise ConfigError(
            f"{name} needs a positive channel count divisible by the image's {event_shape[0]} channels; "
            f"found {channels}"
        )
    c, h, w = (int(s) for s in event_shape)
    return c, h, w


class _Output(nn.Module):
    """act -> 1x1 (B) -> act -> 1x1 (B) to C·P maps, read as features (B, C, H, W, P)."""

    def __init__(self, channels: int, data_channels: int, params_per_dim: int, activation: str) -> None:
        super().__init__()
        act = ACTIVATIONS.get(activation)
        c = data_channels
        self.layers = nn.Sequential(
            act(),
            MaskedConv2d(channels, channels, 1, "B", c),
            act(),
            MaskedConv2d(channels, c * params_per_dim, 1, "B", c),
        )
        self.params_per_dim = params_per_dim

    def forward(self, h: Tensor) -> Tensor:
        out = self.layers(h)  # (B, C·P, H, W), channel o belongs to data channel o // P
        b, _, height, width = out.shape
        out = out.reshape(b, -1, self.params_per_dim, height, width)  # (B, C, P, H, W)
        return out.permute(0, 1, 3, 4, 2)  # (B, C, H, W, P)


def _features_at(net: nn.Module, x: Tensor, index: int) -> Tensor:
    """Features (B, P) of the entry at flat position ``index``, from the rows it can see only.

    Row r's outputs depend on rows r − reach … r of the input (masks cut everything below; the
    receptive field stops ``net.reach`` rows above), so the network runs on that band, zero
    padded above and below exactly where the full image is: the result equals
    ``net(x)[:, index]``, at (reach + 1) / H of the cost.
    """
    c, h, w = net.event_shape
    channel, row, col = index // (h * w), (index % (h * w)) // w, index % w
    top = max(0, row - net.reach)
    band = x.reshape(x.shape[0], c, h, w)[:, :, top : row + 1]  # (B, C, rows, W)
    return net.maps(band)[:, channel, row - top, col]


class PixelCNN(nn.Module):
    """x (B, C, H, W) -> features (B, C·H·W, P) of p(x_i | x_<i) in raster order.

    Args:
        event_shape: (C, H, W) of one image.
        params_per_dim: P, parameters per entry (the likelihood head's).
        channels: feature maps of the hidden layers (a multiple of C).
        blocks: residual blocks of 3 × 3 type-B masked convolutions.
        kernel_size: size k of the first (type-A) k × k masked convolution.
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        params_per_dim: int,
        channels: int = 64,
        blocks: int = 6,
        kernel_size: int = 7,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _check_image(event_shape, int(channels), "PixelCNN")
        self.event_shape = (c, h, w)
        self.register_buffer("order", raster_order(self.event_shape))
        act = ACTIVATIONS.get(activation)
        self.first = MaskedConv2d(c, channels, kernel_size, "A", c)
        self.reach = kernel_size // 2 + int(blocks)  # rows above that a pixel's output can see
        self.blocks = nn.ModuleList(
            nn.Sequential(act(), MaskedConv2d(channels, channels, 3, "B", c)) for _ in range(int(blocks))
        )
        self.output = _Output(channels, c, int(params_per_dim), activation)

    def maps(self, x: Tensor) -> Tensor:
        """(B, C, H', W) images (any height) -> (B, C, H', W, P) features."""
        h = self.first(x)  # (B, channels, H', W)
        for block in self.blocks:
            h = h + block(h)
        return self.output(h)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, C, H, W) images -> (B, D, P) features; ``c`` is unused (unconditional)."""
        out = self.maps(x.reshape(x.shape[0], *self.event_shape))
        return out.reshape(x.shape[0], -1, out.shape[-1])

    def features_at(self, x: Tensor, index: int, c: Tensor | None = None) -> Tensor:
        """``forward(x)[:, index]``, (B, P), computed on the rows it depends on only."""
        return _features_at(self, x, index)


class _GatedLayer(nn.Module):
    """One gated layer (van den Oord et al. 2016b, Fig. 2) on a vertical and a horizontal stack.

    v' = tanh(f_v) ⊙ σ(g_v) with (f_v, g_v) = V ⋆ v;
    h' = h + 1×1(tanh(f_h) ⊙ σ(g_h)) with (f_h, g_h) = H ⋆ h + 1×1(shift_down(V ⋆ v)).

    ``first``: the horizontal convolution has mask type A and there is no residual connection.
    """

    def __init__(
        self, in_channels: int, channels: int, kernel_size: int, data_channels: int, first: bool
    ) -> None:
        super().__init__()
        c = data_channels
        self.data_channels = c
        self.first = first
        self.vertical = MaskedConv2d(in_channels, 2 * channels, kernel_size, "V", c)
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, (1, kernel_size), "A" if first else "B", c)
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)  # from rows strictly above: any channel
        self.out = None if first else MaskedConv2d(channels, channels, 1, "B", c)

    def _gate(self, a: Tensor) -> Tensor:
        # split (f, g) inside each data-channel group, so group g's output reads group ≤ g only
        b, _, h, w = a.shape
        f, g = a.reshape(b, self.data_channels, 2, -1, h, w).unbind(2)
        return (torch.tanh(f) * torch.sigmoid(g)).reshape(b, -1, h, w)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v_pre = self.vertical(v)  # (B, 2·channels, H, W), row r sees rows ≤ r
        shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # row r now sees rows < r only
        h_new = self._gate(self.horizontal(h) + self.link(shifted))
        if self.out is not None:
            h_new = h + self.out(h_new)
        return self._gate(v_pre), h_new


class GatedPixelCNN(nn.Module):
    """x (B, C, H, W) -> features (B, C·H·W, P): gated vertical and horizontal stacks, no blind spot.

    Args:
        event_shape: (C, H, W) of one image.
        params_per_dim: P, parameters per entry.
        channels: feature maps of each stack (a multiple of C).
        layers: gated layers after the first.
        kernel_size: k of the k × k vertical and 1 × k horizontal masked convolutions.
        activation: activation of the two 1 × 1 output layers.
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        params_per_dim: int,
        channels: int = 64,
        layers: int = 6,
        kernel_size: int = 5,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _check_image(event_shape, int(channels), "GatedPixelCNN")
        self.event_shape = (c, h, w)
        self.register_buffer("order", raster_order(self.event_shape))
        # the vertical stack climbs k // 2 rows per layer, plus the one-row shift into h
        self.reach = (int(layers) + 1) * (kernel_size // 2) + 1
        self.layers = nn.ModuleList(
            [_GatedLayer(c, channels, kernel_size, c, first=True)]
            + [_GatedLayer(channels, channels, kernel_size, c, first=False) for _ in range(int(layers))]
        )
        self.output = _Output(channels, c, int(params_per_dim), activation)

    def maps(self, x: Tensor) -> Tensor:
        """(B, C, H', W) images (any height) -> (B, C, H', W, P) features."""
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.output(h)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, C, H, W) images -> (B, D, P) features; ``c`` is unused (unconditional)."""
        out = self.maps(x.reshape(x.shape[0], *self.event_shape))
        return out.reshape(x.shape[0], -1, out.shape[-1])

    def features_at(self, x: Tensor, index: int, c: Tensor | None = None) -> Tensor:
        """``forward(x)[:, index]``, (B, P), computed on the rows it depends on only."""
        return _features_at(self, x, index)
