"""Networks of adversarial models: generators z -> x, discriminators x -> v, and DiffAugment.

* Generators map a latent z (B, L) (and a label) to an example (B, *event), with a final tanh
  when the data are bounded (the model maps [0, 1] data to [−1, 1]): an MLP for vectors, or the
  DCGAN stack (Radford et al. 2016: project and reshape, transposed convolutions with batch
  normalization and ReLU) for images of any size.
* A discriminator is a feature network φ: x -> (B, F) (:class:`MLPFeatures`,
  :class:`ConvFeatures`) and a :class:`ProjectionHead`, the linear
  output w·φ(x) + b plus, for labelled data, the projection ⟨E[y], φ(x)⟩ of Miyato & Koyama
  (2018). Spectral normalization (Miyato et al. 2018) divides every weight matrix by its largest
  singular value, estimated by one power iteration per training forward (torch's parametrization).
* :class:`DiffAugment` (Zhao et al. 2020): differentiable translation, cutout and colour
  transforms applied to real and generated images alike, so that a discriminator trained on few
  images does not memorise them.

Image sizes: a stride-2 layer maps a side n to ⌈n/2⌉ (kernel 4 for even n, 3 for odd n, padding 1);
the generator inverts the same chain exactly, so 8×8, 28×28 and 32×32 (and any H×W) work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from simulacra.errors import ConfigError, DataError
from simulacra.nn.conv import downsampled_sizes
from simulacra.nn.embeddings import ContextEmbedding
from simulacra.nn.mlp import ACTIVATIONS, MLP
from simulacra.registry import Registry


def _with_context(h: Tensor, context: nn.Module | None, c: Tensor | None) -> Tensor:
    """[h, e(c)] along the feature axis (B, L + E), or h without a context."""
    if context is None:
        return h
    if c is None:
        raise DataError("this generator is conditional: it needs labels c of shape (B,); found None")
    if c.shape[0] != h.shape[0]:
        raise DataError(f"labels c have {c.shape[0]} rows; expected one per latent ({h.shape[0]})")
    return torch.cat([h, context(c).to(h.dtype)], dim=1)


def _image_shape(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ConfigError(f"{what} needs images (C, H, W); found event shape {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    return c, h, w


def _halving(side: int) -> tuple[int, int]:
    """(kernel, padding) of a stride-2 layer between side n and ⌈n/2⌉: 4 for even n, 3 for odd n."""
    return (4, 1) if side % 2 == 0 else (3, 1)


class MLPGenerator(nn.Module):
    """z (B, L) [, labels (B,)] -> x = out(MLP([z, e(c)])) (B, *event_shape).

    Args:
        latent_dim: L.
        event_shape: the shape of one example.
        hidden: the MLP's hidden sizes.
        activation: a name in :data:`~simulacra.nn.mlp.ACTIVATIONS`.
        bounded: end with tanh (outputs in (−1, 1)); else the outputs are unconstrained.
        context: a label embedding (its ``out_features`` join z), or None.
    """

    def __init__(
        self,
        latent_dim: int,
        event_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        bounded: bool = False,
        context: ContextEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        dim = 1
        for s in self.event_shape:
            dim *= s
        extra = 0 if context is None else context.out_features
        self.net = MLP(int(latent_dim) + extra, hidden, dim, activation)
        self.context = context
        self.bounded = bool(bounded)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, L) -> (B, *event_shape)."""
        x = self.net(_with_context(z, self.context, c))
        x = torch.tanh(x) if self.bounded else x
        return x.reshape(z.shape[0], *self.event_shape)


class DCGANGenerator(nn.Module):
    """z (B, L) [, labels] -> images (B, C, H, W), the DCGAN generator for any H × W.

    Linear [z, e(c)] -> a (channels[0], h, w) grid (h, w: H, W after ``len(channels)`` halvings),
    batch norm and ReLU, then transposed convolutions channels[0] -> ... -> channels[-1] -> C, each
    doubling the side exactly back (kernel 4 to 2n, kernel 3 to 2n − 1), with batch norm and ReLU
    between them, and tanh at the end when ``bounded``.

    Args:
        latent_dim: L.
        event_shape: (C, H, W).
        channels: channels of the grids, widest first (e.g. (128, 64, 32)).
        bounded: end with tanh.
        context: a label embedding joined to z, or None.
    """

    def __init__(
        self,
        latent_dim: int,
        event_shape: Sequence[int],
        channels: Sequence[int] = (128, 64, 32),
        bounded: bool = True,
        context: ContextEmbedding | None = None,
    ) -> None:
        super().__init__()
        c, h, w = _image_shape(event_shape, "DCGANGenerator")
        channels = [int(ch) for ch in channels]
        if not channels or min(channels) < 1:
            raise ConfigError(f"DCGANGenerator needs positive channel counts; found {channels}")
        steps = len(channels)
        hs, ws = downsampled_sizes(h, steps), downsampled_sizes(w, steps)
        self.grid = (channels[0], hs[-1], ws[-1])
        extra = 0 if context is None else context.out_features
        self.project = nn.Linear(int(latent_dim) + extra, channels[0] * hs[-1] * ws[-1])
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0]), nn.ReLU()]
        for i, (a, b) in enumerate(zip(channels, [*channels[1:], c])):
            (kh, ph), (kw, pw) = _halving(hs[steps - 1 - i]), _halving(ws[steps - 1 - i])
            layers.append(nn.ConvTranspose2d(a, b, (kh, kw), stride=2, padding=(ph, pw)))
            if i < steps - 1:
                layers += [nn.BatchNorm2d(b), nn.ReLU()]
        if bounded:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.context = context
        self.event_shape = (c, h, w)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, L) -> (B, C, H, W)."""
        grid = self.project(_with_context(z, self.context, c)).reshape(z.shape[0], *self.grid)
        return self.net(grid)


class MLPFeatures(nn.Sequential):
    """φ: x (B, ...) -> (B, hidden[-1]): flatten, then affine layers each followed by the activation.

    Args:
        in_features: D, the size of a flattened example.
        hidden: the layers' sizes (a list from JSON is fine).
        activation: a name in :data:`~simulacra.nn.mlp.ACTIVATIONS` (DCGAN's discriminators use
            ``leaky-relu``).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], activation: str = "leaky-relu") -> None:
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"a discriminator needs positive hidden sizes; found {hidden}")
        act = ACTIVATIONS.get(activation)
        super().__init__(nn.Flatten(), MLP(int(in_features), hidden[:-1], hidden[-1], activation), act())
        self.out_features = hidden[-1]


class ConvFeatures(nn.Sequential):
    """φ: images (B, C, H, W) -> (B, channels[-1] · h · w), DCGAN's discriminator without its
    batch norm (which per-example gradient penalties forbid): stride-2 convolutions C ->
    channels[0] -> ... -> channels[-1], each halving the side (H -> ⌈H/2⌉) and followed by
    the activation (LeakyReLU(0.2) by default), then flatten.

    Args:
        event_shape: (C, H, W).
        channels: output channels of the convolutions, narrowest first.
        activation: a name in :data:`~simulacra.nn.mlp.ACTIVATIONS` after each convolution
            (``leaky-relu`` for DCGAN; energy-based models use ``silu``, i.e. Swish).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        channels: Sequence[int] = (32, 64, 128),
        activation: str = "leaky-relu",
    ) -> None:
        c, h, w = _image_shape(event_shape, "the DCGAN discriminator")
        act = ACTIVATIONS.get(activation)
        channels = [int(ch) for ch in channels]
        if not channels or min(channels) < 1:
            raise ConfigError(f"the DCGAN discriminator needs positive channel counts; found {channels}")
        hs, ws = downsampled_sizes(h, len(channels)), downsampled_sizes(w, len(channels))
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip([c, *channels[:-1]], channels)):
            (kh, ph), (kw, pw) = _halving(hs[i]), _halving(ws[i])
            layers += [nn.Conv2d(a, b, (kh, kw), stride=2, padding=(ph, pw)), act()]
        super().__init__(*layers, nn.Flatten())
        self.out_features = channels[-1] * hs[-1] * ws[-1]


class ProjectionHead(nn.Module):
    """v = w·φ + b  (+ ⟨E[y], φ⟩ for labels y: the projection discriminator of Miyato & Koyama 2018).

    Args:
        features: F, the size of φ.
        num_classes: K for a class-conditional discriminator, else None.
        bias: learn b (a Wasserstein critic has no use for it: its losses ignore offsets).
    """

    def __init__(self, features: int, num_classes: int | None = None, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(int(features), 1, bias=bias)
        self.embed = None if num_classes is None else ContextEmbedding(num_classes, int(features))

    def forward(self, h: Tensor, c: Tensor | None = None) -> Tensor:
        """φ (B, F) [, labels (B,)] -> v (B,)."""
        v = self.linear(h).squeeze(-1)
        if self.embed is None:
            return v
        if c is None:
            raise DataError("this discriminator is conditional: it needs labels c of shape (B,); found None")
        return v + (self.embed(c) * h).sum(-1)


class Discriminator(nn.Module):
    """x (B, *event) [, labels (B,)] -> raw outputs v (B,): ``head(features(x), c)``.

    Args:
        features: φ, a module x -> (B, F).
        out_features: F.
        num_classes: K for the projection term, or None.
        spectral: spectral normalization of every linear and convolutional weight (the label
            embedding of the projection excepted), σ estimated by one power iteration per
            training-mode forward.
        bias: the head's output bias b.
    """

    def __init__(
        self,
        features: nn.Module,
        out_features: int,
        num_classes: int | None = None,
        spectral: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.features = features
        self.head = ProjectionHead(out_features, num_classes, bias)
        self.spectral = bool(spectral)
        if spectral:
            apply_spectral_norm(self)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """(B, *event) -> (B,)."""
        return self.head(self.features(x), c)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Reparametrize every ``nn.Linear``, ``nn.Conv2d`` and ``nn.ConvTranspose2d`` below ``module``
    as W / σ(W), σ the largest singular value of W reshaped to (out, in·k·k) (Miyato et al. 2018,
    whose convolutional σ is that of the reshaped kernel), by power iteration. Returns ``module``."""
    targets = [m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)]
    for m in targets:
        spectral_norm(m)
    return module


# -- DiffAugment ------------------------------------------------------------------------------


def _uniform(shape: tuple[int, ...], x: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0, 1) draws on the generator's device (a CPU generator serves CUDA images), moved to x's."""
    device = generator.device if generator is not None else x.device
    return torch.rand(shape, dtype=x.dtype, device=device, generator=generator).to(x.device)


def brightness(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x + (r − ½), r ~ U[0, 1) per image."""
    return x + (_uniform((x.shape[0], 1, 1, 1), x, generator) - 0.5)


def saturation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """m + 2r (x − m), m the mean over channels at each pixel, r ~ U[0, 1) per image."""
    mean = x.mean(dim=1, keepdim=True)
    return mean + (x - mean) * (2.0 * _uniform((x.shape[0], 1, 1, 1), x, generator))


def contrast(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """m + (r + ½)(x − m), m the mean of each image, r ~ U[0, 1) per image."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (_uniform((x.shape[0], 1, 1, 1), x, generator) + 0.5)


def translation(x: Tensor, generator: torch.Generator | None = None, ratio: float = 0.125) -> Tensor:
    """Shift each image by integers (dy, dx) uniform in [−⌊ratio·H + ½⌋, …] with zero fill."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shifts = _uniform((2, b), x, generator)
    dy = (shifts[0] * (2 * sh + 1)).long() - sh  # (B,) in [−sh, sh]
    dx = (shifts[1] * (2 * sw + 1)).long() - sw
    padded = nn.functional.pad(x, (sw, sw, sh, sh))  # (B, C, H + 2sh, W + 2sw)
    rows = torch.arange(h, device=x.device)[None, :] + sh - dy[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + sw - dx[:, None]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: Tensor, generator: torch.Generator | None = None, ratio: float = 0.5) -> Tensor:
    """Zero a ⌊ratio·H + ½⌋ × ⌊ratio·W + ½⌋ square at a uniform centre of each image (clipped at edges)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    centres = _uniform((2, b), x, generator)
    cy = (centres[0] * (h + 1 - ch % 2)).long()  # (B,)
    cx = (centres[1] * (w + 1 - cw % 2)).long()
    rows = torch.arange(h, device=x.device)[None, :] - cy[:, None] + ch // 2  # (B, H) offset in the square
    cols = torch.arange(w, device=x.device)[None, :] - cx[:, None] + cw // 2
    inside = ((rows >= 0) & (rows < ch))[:, :, None] & ((cols >= 0) & (cols < cw))[:, None, :]  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


Augmentation = Callable[[Tensor, torch.Generator | None], Tensor]

AUGMENTATIONS: Registry[tuple[Augmentation, ...]] = Registry("augmentation")
AUGMENTATIONS.register("color", "brightness, saturation and contrast")((brightness, saturation, contrast))
AUGMENTATIONS.register("translation", "shift by up to 1/8 of the side, zero fill")((translation,))
AUGMENTATIONS.register("cutout", "zero a square of half the side")((cutout,))


class DiffAugment(nn.Module):
    """T(x): the transforms of ``policy`` in order, differentiable in x (Zhao et al. 2020).

    The same T is applied to real and generated images in both the discriminator's and the
    generator's pass, so the discriminator never sees un-augmented images and the generator's
    gradients pass through T. Draws come from ``generator`` (None: torch's global RNG).

    Args:
        policy: names in :data:`AUGMENTATIONS`: ``color``, ``translation``, ``cutout``.
    """

    def __init__(self, policy: Sequence[str] = ("color", "translation", "cutout")) -> None:
        super().__init__()
        if isinstance(policy, str):
            policy = [p for p in policy.split(",") if p]
        self.policy = tuple(policy)
        self._fns = [fn for name in self.policy for fn in AUGMENTATIONS.get(name)]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if x.dim() != 4:
            raise DataError(f"DiffAugment transforms images (B, C, H, W); found shape {tuple(x.shape)}")
        for fn in self._fns:
            x = fn(x, generator)
        return x
