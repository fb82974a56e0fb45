"""Networks of image-to-image translation: pix2pix's U-Net generator and PatchGAN discriminator.

* :class:`UNetTranslator` (Isola et al. 2017, §3.2.1 and appendix 6.1.1): an encoder of stride-2
  4 × 4 convolutions (LeakyReLU 0.2, batch norm but on the first and the innermost layer) and a
  mirrored decoder of transposed convolutions (ReLU, batch norm) in which every level reads the
  encoder's output of the same size concatenated to its input ("skip connections"), so
  low-level structure (edges, where the strokes are) passes straight from input to output. It
  ends in tanh for bounded data. Noise z enters as extra input channels (the paper's z).
* :class:`PatchDiscriminator` (§3.2.2, the "70 × 70 PatchGAN"): a fully convolutional
  classifier whose every output judges one N × N patch of its input, N its receptive field
  (:func:`receptive_field`). Conditional use: the input is the observation and the image
  concatenated along channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError, DataError

KERNEL = 4
"""Every convolution here is 4 × 4 (pix2pix), with padding 1."""


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """The side N of the input patch that one output of a stack of convolutions sees.

    Backwards from one output (r = 1), each layer (k, s) gives r ← s·r + (k − s); pix2pix's
    discriminator (4, 2) × 3 then (4, 1) × 2 gives 70."""
    r = 1
    for k, s in zip(reversed(list(kernels)), reversed(list(strides))):
        r = s * r + (k - s)
    return r


def _channels(channels: Sequence[int], what: str) -> list[int]:
    out = [int(ch) for ch in channels]
    if not out or min(out) < 1:
        raise ConfigError(f"{what} needs positive channel counts; found {list(channels)}")
    return out


class UNetTranslator(nn.Module):
    """y (B, C_in, H, W) [, z (B, K, H, W)] -> x̂ (B, C_out, H, W), pix2pix's U-Net.

    Level i of ``channels`` halves the side (H -> H/2^(i+1)); the decoder doubles it back, the
    level of side H/2^i reading [decoder output, encoder output of that side] concatenated.

    Args:
        in_channels: C_in, the observation's channels.
        out_channels: C_out.
        channels: encoder channels, outermost first (e.g. (64, 128, 256, 512, ...)).
        noise_channels: K channels of noise z concatenated to y (0: deterministic).
        bounded: end with tanh.
        event_size: (H, W), checked here: both must be divisible by 2^len(channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64),
        noise_channels: int = 0,
        bounded: bool = True,
        event_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        chans = _channels(channels, "UNetTranslator")
        depth = len(chans)
        if event_size is not None:
            h, w = event_size
            if h % 2**depth or w % 2**depth:
                raise ConfigError(
                    f"a U-Net of {depth} levels halves the side {depth} times: H and W must be divisible by "
                    f"{2**depth}; found {h}x{w} (use fewer levels: channels)"
                )
        self.noise_channels = int(noise_channels)
        if self.noise_channels < 0:
            raise ConfigError(f"noise_channels must be >= 0; found {noise_channels}")
        self.down = nn.ModuleList()
        prev = int(in_channels) + self.noise_channels
        for i, ch in enumerate(chans):
            norm = 0 < i < depth - 1  # none on the outermost (the input) and the innermost layer
            conv = nn.Conv2d(prev, ch, KERNEL, stride=2, padding=1, bias=not norm)
            self.down.append(nn.Sequential(conv, nn.BatchNorm2d(ch)) if norm else conv)
            prev = ch
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            inner = chans[i] if i == depth - 1 else 2 * chans[i]  # [decoder, skip] below the innermost
            out = int(out_channels) if i == 0 else chans[i - 1]
            conv = nn.ConvTranspose2d(inner, out, KERNEL, stride=2, padding=1, bias=i == 0)
            self.up.append(conv if i == 0 else nn.Sequential(conv, nn.BatchNorm2d(out)))
        self.bounded = bool(bounded)

    def forward(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        """(B, C_in, H, W) [, (B, K, H, W)] -> (B, C_out, H, W)."""
        if self.noise_channels:
            if z is None or z.shape[1] != self.noise_channels:
                found = None if z is None else tuple(z.shape)
                raise DataError(f"this U-Net reads noise z (B, {self.noise_channels}, H, W); found {found}")
            y = torch.cat([y, z], dim=1)
        skips = []
        h = y
        for i, layer in enumerate(self.down):
            h = layer(h if i == 0 else nn.functional.leaky_relu(h, 0.2))
            skips.append(h)  # side H / 2^(i+1)
        h = self.up[0](nn.functional.relu(skips[-1]))
        for j, layer in enumerate(self.up[1:], start=2):
            h = layer(nn.functional.relu(torch.cat([h, skips[-j]], dim=1)))
        return torch.tanh(h) if self.bounded else h


class PatchDiscriminator(nn.Module):
    """x (B, C, H, W) -> patch logits (B, 1, H', W'), one per N × N patch (PatchGAN).

    Convolutions 4 × 4, padding 1: stride 2 into ``channels[:-1]``, stride 1 into
    ``channels[-1]`` and into the one output channel, LeakyReLU(0.2) between them, no
    normalization (so that per-example penalties stay possible). A side n becomes
    ⌊(n + 2 − 4)/s⌋ + 1 at each layer; the receptive field N is :attr:`receptive_field`
    (channels of length 4: 70, the paper's; length 2: 16; length 3: 34).

    Args:
        in_channels: C (for a conditional discriminator, the observation's and the image's
            channels together).
        channels: the layers' channels.
        event_size: (H, W), checked here: every output side must be at least 1.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        event_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        chans = _channels(channels, "PatchDiscriminator")
        self.strides = [2] * (len(chans) - 1) + [1, 1]
        self.kernels = [KERNEL] * (len(chans) + 1)
        layers: list[nn.Module] = []
        prev = int(in_channels)
        for ch, s in zip(chans, self.strides):
            layers += [nn.Conv2d(prev, ch, KERNEL, stride=s, padding=1), nn.LeakyReLU(0.2)]
            prev = ch
        layers.append(nn.Conv2d(prev, 1, KERNEL, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.receptive_field = receptive_field(self.kernels, self.strides)
        if event_size is not None:
            out = self.output_size(event_size)
            if min(out) < 1:
                raise ConfigError(
                    f"a PatchGAN of {len(chans) + 1} layers needs larger images than {event_size[0]}x"
                    f"{event_size[1]} (its output would be {out[0]}x{out[1]}); use fewer layers (channels)"
                )

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H', W') of the patch grid for inputs of side (H, W)."""
        h, w = size
        for s in self.strides:
            h, w = (h + 2 - KERNEL) // s + 1, (w + 2 - KERNEL) // s + 1
        return h, w

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, 1, H', W') raw outputs."""
        return self.net(x)


__all__ = ["PatchDiscriminator", "UNetTranslator", "receptive_field"]
