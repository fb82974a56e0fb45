"""Glow's layers and the multi-scale architecture of image flows (Kingma & Dhariwal 2018; Dinh et al. 2017).

One Glow *step* is ActNorm → invertible 1×1 convolution → affine coupling (the coupling lives in
:mod:`simulacra.flows.coupling`). Image flows work at several scales (RealNVP §3.6): a *squeeze*
trades space for channels, (C, H, W) -> (4C, H/2, W/2), and after each scale half of the
channels are *factored out*: they are final coordinates of z, and the following scales act on
the other half only. :class:`MultiScale` writes one such scale as a transform on the full tensor
(it squeezes, transforms, factors out, and un-squeezes at the end), so a whole multi-scale model is
one :class:`~simulacra.flows.base.Transform` whose base is a standard normal over the data's shape.

Log-determinants of the per-channel maps count every spatial position: a map acting on each of the
H·W pixels with the same C×C Jacobian J has log|det| = H·W·log|det J|.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from simulacra.errors import ConfigError, DataError
from simulacra.flows.base import Composed, Transform


def _check_event_dims(event_dims: int, what: str) -> int:
    if event_dims not in (1, 3):
        raise ConfigError(
            f"{what} acts on vectors (event_dims=1) or images (event_dims=3); found {event_dims}"
        )
    return int(event_dims)


def _check_features(x: Tensor, features: int, event_dims: int, what: str) -> None:
    if x.dim() != event_dims + 1 or x.shape[1] != features:
        expected = f"(B, {features})" if event_dims == 1 else f"(B, {features}, H, W)"
        raise DataError(f"{what} expects inputs of shape {expected}; found {tuple(x.shape)}")


def _positions(x: Tensor) -> int:
    """H·W for images (B, C, H, W), 1 for vectors (B, D): how often a per-channel map is applied."""
    n = 1
    for s in x.shape[2:]:
        n *= int(s)
    return n


def _per_channel(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a (C,) tensor to broadcast along the channel axis of x: (1, C) or (1, C, 1, 1)."""
    return t.reshape(1, -1, *([1] * (x.dim() - 2)))


class ActNorm(Transform):
    """Per-channel affine map z = (x + b) ⊙ exp(s) with data-dependent initialisation (Glow §3.1).

    log|det ∂z/∂x| = H·W·Σ_c s_c for images (B, C, H, W), Σ_d s_d for vectors (B, D).

    On the first forward pass in training mode, b and s are set from that batch so that z has zero
    mean and unit variance per channel: b = −mean(x), s = −½ log(var(x) + ε), with the statistics
    over the batch (and the spatial positions). Under ``torch.distributed`` the statistics are
    averaged over the ranks, so every replica starts from the same parameters. The flag
    ``initialized`` is a buffer: it is saved and loaded with the weights, so a loaded model is never
    re-initialised, and it is an integer, so EMA copies it instead of averaging it.

    Args:
        features: C (channels of images) or D (features of vectors).
        event_dims: 1 for vectors, 3 for images.
        eps: ε, keeps the scale finite for (nearly) constant channels.
    """

    def __init__(self, features: int, event_dims: int = 3, eps: float = 1e-6) -> None:
        super().__init__()
        self.event_dims = _check_event_dims(event_dims, "ActNorm")
        self.features = int(features)
        self.eps = float(eps)
        self.bias = nn.Parameter(torch.zeros(self.features))
        self.log_scale = nn.Parameter(torch.zeros(self.features))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.uint8))
        self._known_initialized = False  # cache of the buffer, to avoid a device sync per call

    @torch.no_grad()
    def initialize(self, x: Tensor) -> ActNorm:
        """Set b and s from the batch x so that (x + b)·exp(s) has zero mean, unit variance per
        channel, and mark the layer initialised; returns the layer."""
        dims = [0, *range(2, x.dim())]
        stats = torch.stack([x.mean(dims), (x * x).mean(dims)]).double()  # (2, C)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
            stats /= dist.get_world_size()
        mean, second = stats.unbind(0)
        var = (second - mean * mean).clamp_min(0.0)
        self.bias.copy_(-mean.to(self.bias.dtype))
        self.log_scale.copy_((-0.5 * torch.log(var + self.eps)).to(self.log_scale.dtype))
        self.initialized.fill_(1)
        self._known_initialized = True
        return self

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # re-read the loaded flag on the next training call

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_features(x, self.features, self.event_dims, "ActNorm")
        if self.training and not self._known_initialized:
            if not bool(self.initialized):
                self.initialize(x)
            self._known_initialized = True
        z = (x + _per_channel(self.bias, x)) * _per_channel(self.log_scale, x).exp()
        ladj = _positions(x) * self.log_scale.sum()
        return z, ladj.expand(x.shape[0])

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_features(z, self.features, self.event_dims, "ActNorm")
        x = z * _per_channel(-self.log_scale, z).exp() - _per_channel(self.bias, z)
        ladj = -_positions(z) * self.log_scale.sum()
        return x, ladj.expand(z.shape[0])


class InvertibleConv1x1(Transform):
    """z = W x at every pixel, W ∈ R^{C×C} in LU form (Glow §3.2); on vectors, z = W x.

        W = P L (U + diag(sign(s) ⊙ exp(log|s|))),

    P a fixed permutation, L unit lower triangular, U strictly upper triangular; the learned
    parameters are the strictly triangular entries of L and U and log|s|. Then

        log|det ∂z/∂x| = H·W·Σ_c log|s_c|     (H·W = 1 for vectors),

    an O(C) computation instead of O(C³), and the inverse is W⁻¹ = (U + diag s)⁻¹ L⁻¹ Pᵀ from two
    triangular solves. W starts as a random rotation (its LU factors), drawn from torch's global
    generator like every initialisation.

    Args:
        features: C (channels) or D (features); at least 2 (one channel is just a scale, see
            :class:`ActNorm`).
        event_dims: 3 for images (B, C, H, W), 1 for vectors (B, D).
    """

    def __init__(self, features: int, event_dims: int = 3) -> None:
        super().__init__()
        self.event_dims = _check_event_dims(event_dims, "InvertibleConv1x1")
        c = int(features)
        if c < 2:
            raise ConfigError(f"InvertibleConv1x1 needs at least 2 channels; found {c} (squeeze first)")
        self.features = c
        q, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        rows_l, cols_l = torch.tril_indices(c, c, -1)
        rows_u, cols_u = torch.triu_indices(c, c, 1)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_index", torch.stack([rows_l, cols_l]))
        self.register_buffer("upper_index", torch.stack([rows_u, cols_u]))
        self.lower = nn.Parameter(lower[rows_l, cols_l].float())
        self.upper = nn.Parameter(upper[rows_u, cols_u].float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def _factors(self) -> tuple[Tensor, Tensor]:
        """(L, U + diag(sign(s) exp(log|s|))), both (C, C)."""
        c = self.features
        eye = torch.eye(c, dtype=self.log_s.dtype, device=self.log_s.device)
        lower = eye.index_put((self.lower_index[0], self.lower_index[1]), self.lower)
        diag = torch.diag(self.sign_s.to(self.log_s.dtype) * self.log_s.exp())
        upper = diag.index_put((self.upper_index[0], self.upper_index[1]), self.upper)
        return lower, upper

    def weight(self) -> Tensor:
        """W = P L (U + diag(s)), (C, C)."""
        lower, upper = self._factors()
        return self.permutation.to(lower.dtype) @ lower @ upper

    def inverse_weight(self) -> Tensor:
        """W⁻¹ = (U + diag s)⁻¹ L⁻¹ Pᵀ by two triangular solves, (C, C)."""
        lower, upper = self._factors()
        pt = self.permutation.to(lower.dtype).T
        y = torch.linalg.solve_triangular(lower, pt, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, y, upper=True)

    def _map(self, x: Tensor, w: Tensor) -> Tensor:
        if self.event_dims == 1:
            return F.linear(x, w)
        return F.conv2d(x, w[:, :, None, None])

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_features(x, self.features, self.event_dims, "InvertibleConv1x1")
        ladj = _positions(x) * self.log_s.sum()
        return self._map(x, self.weight()), ladj.expand(x.shape[0])

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_features(z, self.features, self.event_dims, "InvertibleConv1x1")
        ladj = -_positions(z) * self.log_s.sum()
        return self._map(z, self.inverse_weight()), ladj.expand(z.shape[0])


class Squeeze(Transform):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2×2 block of pixels becomes 4 channels (RealNVP §3.6).

    Output channel 4c + 2i + j holds x[c, 2h + i, 2w + j] at (h, w). A permutation of the
    coordinates, so log|det| = 0. H and W must be even.
    """

    event_dims = 3

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise DataError(f"squeeze needs images (B, C, H, W) with even H and W; found {tuple(x.shape)}")
        b, ch, h, w = x.shape
        z = x.reshape(b, ch, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, 4 * ch, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if z.dim() != 4 or z.shape[1] % 4:
            raise DataError(f"unsqueeze needs images (B, 4C, H, W); found {tuple(z.shape)}")
        b, ch, h, w = z.shape
        x = z.reshape(b, ch // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, ch // 4, 2 * h, 2 * w), z.new_zeros(b)


class MultiScale(Transform):
    """One scale of a multi-scale flow, as a transform of the full image (RealNVP §3.6, Glow §3).

        h = post(squeeze(pre(x)))                      (B, 4C, H/2, W/2)
        h = [h₁, h₂] along channels,  h₁ the first ``keep`` channels
        z = unsqueeze([inner(h₁), h₂])                 (B, C, H, W)

    h₂ is factored out: its coordinates are final and only h₁ goes on to the next scale
    (``inner``, itself usually a MultiScale). The final un-squeeze is a permutation that puts z
    back in the data's shape, so the base distribution is a standard normal over (C, H, W) and
    log|det ∂z/∂x| = log|det pre| + log|det post| + log|det inner| (squeezes add nothing).
    Glow's learned prior for h₂ given h₁ is not used (h₂ is scored by the standard normal).

    Args:
        pre: transforms at the input resolution (C, H, W) (RealNVP's checkerboard couplings).
        post: transforms at the squeezed resolution (4C, H/2, W/2) (Glow's steps, RealNVP's
            channel couplings).
        inner: the next scale, on (keep, H/2, W/2); None ends the recursion (nothing factored).
        keep: channels that go on to ``inner`` (default: half of 4C).
    """

    event_dims = 3

    def __init__(
        self,
        pre: Sequence[Transform] = (),
        post: Sequence[Transform] = (),
        inner: Transform | None = None,
        keep: int | None = None,
    ) -> None:
        super().__init__()
        self.pre = Composed(pre)
        self.squeeze = Squeeze()
        self.post = Composed(post)
        self.inner = inner
        if keep is not None and int(keep) < 1:
            raise ConfigError(f"MultiScale keep must be a positive number of channels; found {keep}")
        self.keep = None if keep is None else int(keep)

    def _split(self, h: Tensor) -> int:
        keep = h.shape[1] // 2 if self.keep is None else self.keep
        if keep >= h.shape[1]:
            raise DataError(f"cannot keep {keep} of {h.shape[1]} channels after the squeeze; keep fewer")
        return keep

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, total = self.pre(x, c)
        h, _ = self.squeeze(h)
        h, ladj = self.post(h, c)
        total = total + ladj
        if self.inner is not None:
            keep = self._split(h)
            h1, ladj = self.inner(h[:, :keep], c)
            h = torch.cat([h1, h[:, keep:]], dim=1)
            total = total + ladj
        z, _ = self.squeeze.inverse(h)
        return z, total

    def inverse(self, z: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, _ = self.squeeze(z)
        total = z.new_zeros(z.shape[0])
        if self.inner is not None:
            keep = self._split(h)
            h1, ladj = self.inner.inverse(h[:, :keep], c)
            h = torch.cat([h1, h[:, keep:]], dim=1)
            total = total + ladj
        h, ladj = self.post.inverse(h, c)
        total = total + ladj
        h, _ = self.squeeze.inverse(h)
        x, ladj = self.pre.inverse(h, c)
        return x, total + ladj


def squeezed_shapes(shape: Sequence[int], levels: int, what: str = "this flow") -> list[tuple[int, int, int]]:
    """The input shape of each of ``levels`` scales that squeeze and factor out half the channels.

    Scale l sees (C_l, H_l, W_l); the next sees (2 C_l, H_l/2, W_l/2). Raises ConfigError when a
    side is odd where a squeeze is needed (e.g. 28×28 MNIST allows 2 squeezes: 28 -> 14 -> 7).
    """
    if len(shape) != 3:
        raise ConfigError(f"{what} needs image data (C, H, W); found event shape {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    shapes = []
    for level in range(levels):
        if h % 2 or w % 2:
            raise ConfigError(
                f"{what} with levels={levels} squeezes {tuple(shape)} {levels} times, but the "
                f"{h}x{w} images at scale {level} have an odd side; use levels <= {level}"
            )
        shapes.append((c, h, w))
        c, h, w = 2 * c, h // 2, w // 2
    return shapes
