"""A time-conditioned UNet for image denoisers (Ronneberger et al. 2015; as in DDPM, Ho et al. 2020).

    x (B, C, H, W) -> conv -> [residual blocks (+ self-attention at low resolution), downsample] × L
      -> middle (block, attention, block) -> [upsample, concatenate the skip, blocks] × L -> x̂ (B, C, H, W)

Every residual block is GroupNorm → SiLU → conv 3×3, plus a projection of the time (and class)
embedding e(t, c) added to every channel, then GroupNorm → SiLU → dropout → conv 3×3, with a 1×1
convolution on the skip path when the channel count changes. Downsampling is a stride-2
convolution (side n -> ⌈n/2⌉), upsampling is nearest-neighbour to the skip's exact size followed
by a 3×3 convolution, so any H × W works (8×8 digits, 28×28 MNIST).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.errors import ConfigError, DataError
from simulacra.nn.time import TimeEmbedding


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count ≤ ``groups`` that divides ``channels``."""
    return nn.GroupNorm(math.gcd(int(groups), int(channels)), int(channels))


def _check_group_norms(height: int, width: int, channels: Sequence[int], groups: int) -> None:
    """Raise :class:`ConfigError` when a GroupNorm would see one value per group (its output is then
    constant, and torch refuses a batch of one): at a level whose images have shrunk to 1x1, a norm
    over c channels in gcd(groups, c) groups needs c > gcd(groups, c)."""
    h, w = height, width
    for i, ch in enumerate(channels):
        if h * w == 1:
            # the norms of a level see its input channels and its own on the way down, and its own
            # concatenated with those of the level below on the way up
            below = channels[i + 1] if i + 1 < len(channels) else ch
            for c in sorted({channels[i - 1] if i else ch, ch, ch + below}):
                if c == math.gcd(groups, c):
                    raise ConfigError(
                        f"UNet: {height}x{width} images shrink to 1x1 at level {i + 1} of {len(channels)}, "
                        f"where GroupNorm splits {c} channels into {c} groups of one value; use larger "
                        f"images, fewer levels (channels) or more than {groups} channels per level"
                    )
        h, w = (h + 1) // 2, (w + 1) // 2


class ResidualBlock(nn.Module):
    """h = conv(φ(GN(x))) + W e;  out = skip(x) + conv(dropout(φ(GN(h)))), (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(
        self, in_channels: int, out_channels: int, embedding_dim: int, groups: int = 8, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embed = nn.Linear(embedding_dim, out_channels)
        self.norm2 = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embed(F.silu(e))[:, :, None, None]  # (B, C_out, 1, 1) per-channel shift
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """x + W_o softmax(Q Kᵀ/√d) V over the H·W positions (multi-head), after GroupNorm, (B, C, H, W)."""

    def __init__(self, channels: int, heads: int = 1, groups: int = 8) -> None:
        super().__init__()
        if channels % heads:
            raise ConfigError(f"attention needs channels divisible by heads; found {channels} and {heads}")
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.heads = int(heads)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (B, heads, HW, d) for scaled dot-product attention
        att = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(att.transpose(-1, -2).reshape(b, c, h, w))


class _Level(nn.Module):
    """``blocks`` residual blocks, each followed by attention when ``attend``."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        blocks: int,
        emb: int,
        attend: bool,
        groups: int,
        dropout: float,
        heads: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResidualBlock(in_ch if i == 0 else out_ch, out_ch, emb, groups, dropout) for i in range(blocks)
        )
        self.attention = nn.ModuleList(
            SelfAttention(out_ch, heads, groups) for _ in range(blocks if attend else 0)
        )

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        for i, block in enumerate(self.blocks):
            h = block(h, e)
            if self.attention:
                h = self.attention[i](h)
        return h


class UNet(nn.Module):
    """Time- (and class-) conditioned UNet: (x_t (B, C, H, W), t (B,), c (B,) or None) -> (B, C, H, W).

    Args:
        event_shape: (C, H, W) of the images.
        channels: channels of each resolution level, highest resolution first (L = len levels,
            L − 1 downsamplings).
        blocks: residual blocks per level (on the way down and on the way up).
        attention_resolution: self-attention at levels whose larger side is ≤ this (and in the
            middle); 0 turns attention off.
        embedding_dim: size of the time embedding (default 4 · channels[0]).
        num_classes: labels of a conditional denoiser (a class embedding with a null row), or None.
        groups: GroupNorm groups (reduced to a divisor of each channel count).
        dropout: dropout inside the residual blocks.
        heads: attention heads.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        blocks: int = 1,
        attention_resolution: int = 8,
        embedding_dim: int | None = None,
        num_classes: int | None = None,
        groups: int = 8,
        dropout: float = 0.0,
        heads: int = 1,
    ) -> None:
        super().__init__()
        if len(event_shape) != 3:
            raise ConfigError(f"UNet needs an image shape (C, H, W); found {tuple(event_shape)}")
        chans = [int(ch) for ch in channels]
        if not chans or min(chans) < 1 or int(blocks) < 1:
            raise ConfigError(
                f"UNet needs channels >= 1 per level and blocks >= 1; found {channels}, {blocks}"
            )
        c_in, height, width = (int(s) for s in event_shape)
        _check_group_norms(height, width, chans, int(groups))
        emb = int(embedding_dim or 4 * chans[0])
        self.event_shape = (c_in, height, width)
        self.embedding = TimeEmbedding(emb, num_classes)
        self.stem = nn.Conv2d(c_in, chans[0], 3, padding=1)
        sides = [max(height, width)]
        for _ in chans[1:]:
            sides.append((sides[-1] + 1) // 2)
        attend = [0 < int(attention_resolution) and s <= int(attention_resolution) for s in sides]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = chans[0]
        for i, ch in enumerate(chans):
            self.down.append(_Level(prev, ch, int(blocks), emb, attend[i], groups, dropout, heads))
            prev = ch
            if i < len(chans) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.middle = nn.ModuleList(ResidualBlock(prev, prev, emb, groups, dropout) for _ in range(2))
        self.middle_attention = (
            SelfAttention(prev, heads, groups) if int(attention_resolution) > 0 else nn.Identity()
        )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            if i < len(chans) - 1:
                self.upsample.append(nn.Conv2d(prev, prev, 3, padding=1))
            self.up.append(
                _Level(prev + chans[i], chans[i], int(blocks), emb, attend[i], groups, dropout, heads)
            )
            prev = chans[i]
        self.head = nn.Sequential(_norm(prev, groups), nn.SiLU(), nn.Conv2d(prev, c_in, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise DataError(
                f"UNet expected images (B, {', '.join(map(str, self.event_shape))}); found {tuple(x.shape)}"
            )
        e = self.embedding(t, c)  # (B, E)
        h = self.stem(x)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, e)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle_attention(self.middle[0](h, e))
        h = self.middle[1](h, e)
        ups = iter(self.upsample)
        for j, level in enumerate(self.up):
            skip = skips[len(skips) - 1 - j]
            if j > 0:  # up to the skip's exact size (odd sides round up on the way down)
                h = next(ups)(F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = level(torch.cat([h, skip], dim=1), e)
        return self.head(h)
