"""The networks of a top-down hierarchical VAE (LVAE, NVAE/VDVAE-style), MLP or convolutional.

A hierarchy of L latent groups z_1 (nearest the data) … z_L (top) uses five kinds of cell:

* ``up[i]``: the bottom-up (encoder) path, b_i = up[i](b_{i−1}), b_0 = x;
* ``posterior[i]``: raw posterior parameters of z_i, (B, 2·|z_i|), from b_i and (NVAE) the
  top-down state d_i;
* ``prior[i]``: raw prior parameters of z_i from d_i (i < L; the top group's prior is N(0, I));
* ``down[i]``: the shared top-down (decoder) path, d_{i−1} = down[i](d_i, z_i), with d_L a
  learned constant (``top``) where a cell reads it;
* ``out``: the decoder's output features from d_0, read by a likelihood head.

:class:`Ladder` holds them; :func:`mlp_ladder` (vectors, LVAE's MLP blocks) and
:func:`conv_ladder` (images, one group per resolution, each half the side of the one below)
build them. The states d_i are pre-activation: every cell that reads d applies the activation
first, so that residual sums (``residual=True``: d_{i−1} = skip(d_i) + f([d_i, z_i]), VDVAE's
and NVAE's residual decoder cells) stay linear in the skip path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from simulacra.errors import ConfigError, positive_int
from simulacra.nn.conv import downsampled_sizes
from simulacra.nn.mlp import ACTIVATIONS, MLP


class PosteriorCell(nn.Module):
    """``h = net(b)``, or ``net([b, φ(d)])`` when ``reads_state`` (NVAE: q reads encoder and
    decoder features); concatenation is along dimension 1 (features or channels)."""

    def __init__(self, net: nn.Module, reads_state: bool, activation: str = "relu") -> None:
        super().__init__()
        self.net = net
        self.reads_state = bool(reads_state)
        self.act = ACTIVATIONS.get(activation)()

    def forward(self, b: Tensor, d: Tensor | None) -> Tensor:
        if not self.reads_state:
            return self.net(b)
        if d is None:
            raise ValueError("this posterior cell reads the top-down state; found None")
        return self.net(torch.cat([b, self.act(d)], 1))


class TopDownCell(nn.Module):
    """d' = resize(net(z)) (LVAE), or d' = resize(skip(d) + net([φ(d), z])) (``residual``).

    Args:
        net: (B, [width +] |z|, ...) -> (B, width', ...).
        residual: add the skip path and let ``net`` read the state as well as z.
        skip: maps d to net's output shape (identity where they match).
        resize: maps the sum to the next level's shape (identity for MLPs; an upsampling
            convolution between resolutions).
    """

    def __init__(
        self, net: nn.Module, residual: bool, skip: nn.Module | None = None, resize: nn.Module | None = None,
        activation: str = "relu",
    ) -> None:  # fmt: skip
        super().__init__()
        self.net = net
        self.residual = bool(residual)
        self.skip = skip if skip is not None else nn.Identity()
        self.resize = resize if resize is not None else nn.Identity()
        self.act = ACTIVATIONS.get(activation)()

    def forward(self, d: Tensor | None, z: Tensor) -> Tensor:
        if not self.residual:
            return self.resize(self.net(z))
        if d is None:
            raise ValueError("a residual top-down cell reads the state; found None")
        return self.resize(self.skip(d) + self.net(torch.cat([self.act(d), z], 1)))


class Ladder(nn.Module):
    """The cells of an L-group hierarchy (see the module docstring), listed bottom (z_1) to top.

    Args:
        up, posterior, down: L cells each.
        prior: L − 1 cells (groups 1..L−1; the top group's prior is N(0, I)).
        out: d_0 -> the likelihood head's features.
        latent_shapes: the shape of each group z_i, bottom to top, e.g. ``[(32,), (16,)]`` or
            ``[(8, 14, 14), (8, 7, 7)]``.
        top: the shape of the learned top state d_L, or None when no cell reads it.

    Raises:
        ConfigError: no group, or lists of the wrong lengths.
    """

    def __init__(
        self,
        up: Sequence[nn.Module],
        posterior: Sequence[nn.Module],
        prior: Sequence[nn.Module],
        down: Sequence[nn.Module],
        out: nn.Module,
        latent_shapes: Sequence[Sequence[int]],
        top: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        levels = len(latent_shapes)
        if levels < 1:
            raise ConfigError("a hierarchical VAE needs at least one latent group; found 0 groups")
        lengths = {"up": len(up), "posterior": len(posterior), "down": len(down), "prior + 1": len(prior) + 1}
        if any(n != levels for n in lengths.values()):
            raise ConfigError(
                f"a ladder of {levels} groups needs {levels} cells of each kind; found {lengths}"
            )
        self.up, self.posterior = nn.ModuleList(up), nn.ModuleList(posterior)
        self.prior, self.down, self.out = nn.ModuleList(prior), nn.ModuleList(down), out
        self.latent_shapes = [tuple(int(s) for s in shape) for shape in latent_shapes]
        self.top = None if top is None else nn.Parameter(torch.zeros(tuple(int(s) for s in top)))

    @property
    def levels(self) -> int:
        """L, the number of latent groups."""
        return len(self.latent_shapes)

    def start(self, n: int) -> Tensor | None:
        """d_L for n examples, (n, *top), or None when no cell reads it."""
        return None if self.top is None else self.top.expand(n, *self.top.shape)


def _sizes(values: int | Sequence[int], levels: int, name: str) -> list[int]:
    """One positive size per group: an integer for all of them, or a list of ``levels``."""
    sizes = [values] * levels if isinstance(values, int) else list(values)
    if len(sizes) != levels:
        raise ConfigError(
            f"{name} needs one size per latent group ({levels}), or one integer for all; found {sizes}"
        )
    return [positive_int(s, f"each entry of {name}") for s in sizes]


def check_groups(groups: object) -> int:
    """The number of latent groups, an integer ≥ 1; else a :class:`ConfigError` naming it."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ConfigError(f"a hierarchical VAE needs groups >= 1 latent groups; found groups={groups!r}")
    return groups


def mlp_ladder(
    in_features: int,
    out_features: int,
    latent_dims: int | Sequence[int],
    hidden: int | Sequence[int],
    groups: int,
    *,
    residual: bool,
    posterior_reads_state: bool,
    activation: str = "relu",
    dropout: float = 0.0,
    gated: bool = False,
) -> Ladder:
    """MLP cells for vectors (Sønderby et al. 2016, §3: two-layer blocks per group).

    Group i has ``latent_dims[i]`` units and ``hidden[i]`` units in its blocks: up[i] =
    φ(MLP(h_{i−1} → h_i → h_i)) (h_0 = ``in_features``; inputs are flattened), posterior[i] a
    linear map to 2·|z_i|, prior[i] = Linear(φ(d_i)), down[i] an MLP |z_i| → h_{i−1} → h_{i−1}
    (``residual``: [h_i + |z_i|] → h_{i−1} → h_{i−1}, plus a skip), out = Linear(φ(d_0)) of
    ``out_features`` (d_0 has h_1 units). ``dropout`` p > 0: dropout after the hidden
    activations of the up and down blocks while training (a regularizer against overfitting a
    fixed training set, e.g. statically binarized MNIST). ``gated``: the hidden layer of every up
    and down block is a gated dense layer (value ⊙ σ(gate), Tomczak & Welling 2018's units).
    """
    levels = check_groups(groups)
    z, h = _sizes(latent_dims, levels, "latent_dim"), _sizes(hidden, levels, "hidden")
    act = ACTIVATIONS.get(activation)
    below = [h[0], *h[:-1]]  # width of d_{i-1}, the state each down cell writes
    up: list[nn.Module] = []
    for i in range(levels):
        block = nn.Sequential(
            MLP(in_features if i == 0 else h[i - 1], [h[i]], h[i], activation, dropout, gated), act()
        )
        up.append(nn.Sequential(nn.Flatten(), block) if i == 0 else block)
    width = [h[i] * (2 if posterior_reads_state else 1) for i in range(levels)]
    posterior = [
        PosteriorCell(nn.Linear(width[i], 2 * z[i]), posterior_reads_state, activation) for i in range(levels)
    ]
    prior = [nn.Sequential(act(), nn.Linear(h[i], 2 * z[i])) for i in range(levels - 1)]
    down = []
    for i in range(levels):
        if residual:
            skip = nn.Identity() if h[i] == below[i] else nn.Linear(h[i], below[i])
            net = MLP(h[i] + z[i], [below[i]], below[i], activation, dropout, gated)
            down.append(TopDownCell(net, True, skip, activation=activation))
        else:
            down.append(
                TopDownCell(
                    MLP(z[i], [below[i]], below[i], activation, dropout, gated), False, activation=activation
                )
            )
    out = nn.Sequential(act(), nn.Linear(h[0], out_features))
    needs_top = residual or posterior_reads_state
    return Ladder(up, posterior, prior, down, out, [(n,) for n in z], (h[-1],) if needs_top else None)


def conv_ladder(
    event_shape: Sequence[int],
    out_channels: int,
    latent_channels: int | Sequence[int],
    channels: int | Sequence[int],
    groups: int,
    *,
    residual: bool,
    posterior_reads_state: bool,
    activation: str = "relu",
) -> Ladder:
    """Convolutional cells for images (C, H, W): group i lives at side ⌈H / 2^i⌉ (28 → 14, 7, 4),
    with ``latent_channels[i]`` channels; the blocks have ``channels[i]`` channels.

    up[i]: a stride-2 3×3 convolution and a 3×3 convolution, each followed by φ; posterior[i]: a
    3×3 convolution to 2·c_z; prior[i]: φ then a 3×3 convolution; down[i]: two 3×3 convolutions
    of z_i (``residual``: of [φ(d_i), z_i], plus d_i), then φ, nearest-neighbour upsampling to the
    side below and a 3×3 convolution; out: φ then a 3×3 convolution to ``out_channels`` at the
    data's resolution. Every convolution keeps the side (padding 1) except the strided ones.
    """
    levels = check_groups(groups)
    if len(event_shape) != 3:
        raise ConfigError(
            f"convolutional ladders need images (C, H, W); found event_shape {tuple(event_shape)}"
        )
    cin, height, width = (int(s) for s in event_shape)
    zc, ch = _sizes(latent_channels, levels, "latent_channels"), _sizes(channels, levels, "channels")
    act = ACTIVATIONS.get(activation)
    sides = list(zip(downsampled_sizes(height, levels), downsampled_sizes(width, levels)))
    below = [ch[0], *ch[:-1]]

    def conv(a: int, b: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(a, b, 3, stride=stride, padding=1)

    up = [
        nn.Sequential(conv(cin if i == 0 else ch[i - 1], ch[i], 2), act(), conv(ch[i], ch[i]), act())
        for i in range(levels)
    ]
    width_q = [ch[i] * (2 if posterior_reads_state else 1) for i in range(levels)]
    posterior = [
        PosteriorCell(conv(width_q[i], 2 * zc[i]), posterior_reads_state, activation) for i in range(levels)
    ]
    prior = [nn.Sequential(act(), conv(ch[i], 2 * zc[i])) for i in range(levels - 1)]
    down = []
    for i in range(levels):
        net = nn.Sequential(conv(zc[i] + (ch[i] if residual else 0), ch[i]), act(), conv(ch[i], ch[i]))
        resize = nn.Sequential(act(), nn.Upsample(size=sides[i]), conv(ch[i], below[i]))
        down.append(TopDownCell(net, residual, resize=resize, activation=activation))
    out = nn.Sequential(act(), conv(ch[0], out_channels))
    shapes = [(zc[i], *sides[i + 1]) for i in range(levels)]
    needs_top = residual or posterior_reads_state
    return Ladder(up, posterior, prior, down, out, shapes, (ch[-1], *sides[-1]) if needs_top else None)


def group_sizes(ladder: Ladder) -> list[int]:
    """Number of latent dimensions of each group, bottom to top."""
    return [math.prod(shape) for shape in ladder.latent_shapes]
