"""Convolutional encoder and decoder for small images (8×8 digits, 28×28 MNIST, any H×W).

Each stride-2 convolution (kernel 3, padding 1) maps a side ``n`` to ``⌈n/2⌉``; the decoder
inverts the same chain of sizes with transposed convolutions whose ``output_padding`` (0 or 1) is
computed per layer, so its output is exactly the requested (C', H, W). A linear bottleneck joins
the spatial features to a vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError
from simulacra.nn.mlp import ACTIVATIONS


def downsampled_sizes(side: int, steps: int) -> list[int]:
    """Sides after 0, 1, ..., ``steps`` stride-2 convolutions: ``n_{i+1} = ⌈n_i / 2⌉``."""
    sizes = [int(side)]
    for _ in range(steps):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _check_image_shape(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ConfigError(f"{what} needs an image shape (C, H, W); found {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    return c, h, w


class ConvEncoder(nn.Module):
    """Images (B, C, H, W) -> features (B, out_features).

    ``len(channels)`` stride-2 convolutions ``C -> channels[0] -> ... -> channels[-1]``, each
    followed by the activation, then a linear map from the flattened (channels[-1], h, w) grid.

    Args:
        event_shape: (C, H, W) of the input images.
        out_features: size of the output vector.
        channels: output channels of the convolutions (a list from JSON is fine).
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        out_features: int,
        channels: Sequence[int] = (32, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _check_image_shape(event_shape, "ConvEncoder")
        act = ACTIVATIONS.get(activation)
        channels = [int(ch) for ch in channels]
        layers: list[nn.Module] = []
        for a, b in zip([c, *channels[:-1]], channels):
            layers += [nn.Conv2d(a, b, kernel_size=3, stride=2, padding=1), act()]
        self.convs = nn.Sequential(*layers)
        hs, ws = downsampled_sizes(h, len(channels)), downsampled_sizes(w, len(channels))
        last = channels[-1] if channels else c
        self.linear = nn.Linear(last * hs[-1] * ws[-1], int(out_features))
        self.event_shape = (c, h, w)
        self.out_features = int(out_features)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, out_features)."""
        return self.linear(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """Vectors (B, in_features) -> images (B, C', H, W), the mirror of :class:`ConvEncoder`.

    A linear map to a (channels[0], h, w) grid with ``h, w`` the sides after ``len(channels)``
    halvings of (H, W), then transposed convolutions ``channels[0] -> ... -> channels[-1] -> C'``,
    each doubling the side (exactly back to the encoder's sizes). The output is unconstrained (no
    final activation): it parametrises a distribution head.

    Args:
        in_features: size of the input vector.
        out_shape: (C', H, W) of the output; C' is usually ``params_per_dim · C``.
        channels: channels of the grids between the transposed convolutions.
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
    """

    def __init__(
        self,
        in_features: int,
        out_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _check_image_shape(out_shape, "ConvDecoder")
        act = ACTIVATIONS.get(activation)
        channels = [int(ch) for ch in channels]
        if not channels:
            raise ConfigError("ConvDecoder needs at least one channel count; found channels=()")
        steps = len(channels)
        hs, ws = downsampled_sizes(h, steps), downsampled_sizes(w, steps)
        self.grid = (channels[0], hs[-1], ws[-1])
        self.linear = nn.Linear(int(in_features), channels[0] * hs[-1] * ws[-1])
        layers: list[nn.Module] = [act()]
        outs = [*channels[1:], c]
        for i, (a, b) in enumerate(zip(channels, outs)):
            # from side n to side t = 2n - 1 + output_padding, t ∈ {2n - 1, 2n}
            target_h, target_w = hs[steps - 1 - i], ws[steps - 1 - i]
            pad_h = target_h - (2 * hs[steps - i] - 1)
            pad_w = target_w - (2 * ws[steps - i] - 1)
            layers.append(nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=(pad_h, pad_w)))
            if i < steps - 1:
                layers.append(act())
        self.deconvs = nn.Sequential(*layers)
        self.in_features = int(in_features)
        self.out_shape = (c, h, w)

    def forward(self, z: Tensor) -> Tensor:
        """(B, in_features) -> (B, C', H, W)."""
        grid = self.linear(z).reshape(z.shape[0], *self.grid)
        return self.deconvs(grid)


class CouplingConvNet(nn.Module):
    """The conditioner of image coupling layers (RealNVP §4.1, Glow §3.3): (B, C_in, H, W) -> (B, C_out, H, W).

    A 3×3 convolution to ``hidden[0]`` channels, 1×1 convolutions through ``hidden[1:]`` (each
    followed by the activation), and a final 3×3 convolution to ``C_out``; every convolution keeps
    the spatial size (padding 1 or 0). The last layer starts small (its default initialisation
    times ``init_scale``, zero bias), so a fresh coupling is close to the identity map (Glow
    initialises it at zero; a small non-zero start lets gradients reach every layer from step 1).

    Args:
        in_channels: C_in (masked input channels plus context channels).
        out_channels: C_out (P parameters per transformed channel: P·C).
        hidden: channels of the hidden feature maps (a list from JSON is fine).
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
        init_scale: factor applied to the last convolution's initial weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        init_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden or any(h < 1 for h in hidden):
            raise ConfigError(f"CouplingConvNet needs positive hidden channel counts; found {hidden}")
        act = ACTIVATIONS.get(activation)
        layers: list[nn.Module] = [nn.Conv2d(int(in_channels), hidden[0], 3, padding=1), act()]
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Conv2d(a, b, 1), act()]
        last = nn.Conv2d(hidden[-1], int(out_channels), 3, padding=1)
        with torch.no_grad():
            last.weight.mul_(float(init_scale))
            last.bias.zero_()
        layers.append(last)
        self.net = nn.Sequential(*layers)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return self.net(x)


class ConvGridEncoder(nn.Module):
    """Images (B, C, H, W) -> a grid of vectors (B, D, h, w) (the VQ-VAE's encoder).

    ``len(channels)`` stride-2 convolutions as in :class:`ConvEncoder` (each side ``n -> ⌈n/2⌉``:
    28 -> 14 -> 7), then a 3×3 convolution and a 1×1 convolution to D channels; no linear
    bottleneck, so each grid vector sees a patch of the image.

    Args:
        event_shape: (C, H, W) of the input images.
        out_channels: D, the size of each grid vector.
        channels: output channels of the stride-2 convolutions.
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        out_channels: int,
        channels: Sequence[int] = (32, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _check_image_shape(event_shape, "ConvGridEncoder")
        act = ACTIVATIONS.get(activation)
        channels = [int(ch) for ch in channels]
        if not channels:
            raise ConfigError("ConvGridEncoder needs at least one channel count; found channels=()")
        layers: list[nn.Module] = []
        for a, b in zip([c, *channels[:-1]], channels):
            layers += [nn.Conv2d(a, b, kernel_size=3, stride=2, padding=1), act()]
        layers += [nn.Conv2d(channels[-1], channels[-1], 3, padding=1), act()]
        layers.append(nn.Conv2d(channels[-1], int(out_channels), 1))
        self.convs = nn.Sequential(*layers)
        self.event_shape = (c, h, w)
        self.grid_shape = (downsampled_sizes(h, len(channels))[-1], downsampled_sizes(w, len(channels))[-1])
        self.out_channels = int(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, D, h, w)."""
        return self.convs(x)


class ConvGridDecoder(nn.Module):
    """A grid of vectors (B, D, h, w) -> images (B, C', H, W), the mirror of :class:`ConvGridEncoder`.

    A 3×3 convolution D -> channels[0], then transposed convolutions ``channels[0] -> ... ->
    channels[-1] -> C'``, each doubling the side (exactly back to the encoder's sizes, as in
    :class:`ConvDecoder`). The output is unconstrained: it parametrises a distribution head.

    Args:
        in_channels: D.
        out_shape: (C', H, W) of the output; C' is usually ``params_per_dim · C``.
        channels: channels of the grids between the transposed convolutions.
        activation: a name in :data:`simulacra.nn.mlp.ACTIVATIONS`.
    """

    def __init__(
        self,
        in_channels: int,
        out_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c, h, w = _check_image_shape(out_shape, "ConvGridDecoder")
        act = ACTIVATIONS.get(activation)
        channels = [int(ch) for ch in channels]
        if not channels:
            raise ConfigError("ConvGridDecoder needs at least one channel count; found channels=()")
        steps = len(channels)
        hs, ws = downsampled_sizes(h, steps), downsampled_sizes(w, steps)
        layers: list[nn.Module] = [nn.Conv2d(int(in_channels), channels[0], 3, padding=1), act()]
        outs = [*channels[1:], c]
        for i, (a, b) in enumerate(zip(channels, outs)):
            pad_h = hs[steps - 1 - i] - (2 * hs[steps - i] - 1)
            pad_w = ws[steps - 1 - i] - (2 * ws[steps - i] - 1)
            layers.append(nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=(pad_h, pad_w)))
            if i < steps - 1:
                layers.append(act())
        self.deconvs = nn.Sequential(*layers)
        self.grid_shape = (hs[-1], ws[-1])
        self.out_shape = (c, h, w)

    def forward(self, z: Tensor) -> Tensor:
        """(B, D, h, w) -> (B, C', H, W)."""
        return self.deconvs(z)
