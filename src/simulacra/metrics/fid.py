"""Fréchet distance of features (FID, Heusel et al. 2017) with a feature network the project trains.

The Fréchet (2-Wasserstein) distance between the Gaussians fitted to two sets of features,

    FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^{½} Σ₂ Σ₁^{½})^{½}),

is FID when the features are an Inception network's pool layer. For MNIST-like data an Inception
network is neither available here nor meaningful, so the features are the penultimate layer of a
small classifier trained on the data's labels (as in much of the MNIST literature): a
:class:`FeatureClassifier`, trained by :func:`train_feature_classifier` and saved with
:func:`save_feature_classifier` (safetensors + JSON, nothing pickled). Numbers are comparable only
between evaluations with the same feature network and the same sample sizes (FD is biased upward
at small n).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor, nn

from simulacra.errors import CheckpointError, DataError


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """FD between N(μ₁, Σ₁) and N(μ₂, Σ₂) (D,), (D, D); computed in float64 with symmetric square
    roots by eigendecomposition (negative round-off eigenvalues clipped to 0)."""
    mu1, mu2, cov1, cov2 = (t.detach().double().cpu() for t in (mu1, mu2, cov1, cov2))

    def sqrtm(m: Tensor) -> Tensor:
        w, v = torch.linalg.eigh(0.5 * (m + m.T))
        return (v * w.clamp_min(0).sqrt()) @ v.T

    s1 = sqrtm(cov1)
    cross = sqrtm(s1 @ cov2 @ s1)
    value = (mu1 - mu2).square().sum() + torch.trace(cov1 + cov2 - 2 * cross)
    return float(value.clamp_min(0))


def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), float64."""
    f = features.detach().double().cpu()
    if f.dim() != 2 or f.shape[0] < 2:
        raise DataError(f"features must be (N, D) with N >= 2; found {tuple(f.shape)}")
    return f.mean(0), torch.cov(f.T)


class FeatureClassifier(nn.Module):
    """A small convolutional classifier whose penultimate layer gives the features.

    (B, C, H, W) -> 3 × [3×3 conv, ReLU] with 2×2 max-pooling after the first two, global average
    pooling -> ``features`` (B, 128) -> linear -> logits (B, K). About 93k parameters for MNIST.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes), "width": int(width)}
        w = int(width)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(4 * w, int(num_classes))

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> (B, 4·width) features."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, K) logits."""
        return self.head(self.body(x))


@torch.no_grad()
def extract_features(net: FeatureClassifier, x: Tensor, batch_size: int = 500) -> Tensor:
    """Features (N, D) of images (N, C, H, W), in batches, eval mode."""
    net.eval()
    device = next(net.parameters()).device
    return torch.cat([net.features(b.to(device).float()).cpu() for b in x.split(batch_size)])


def fid(net: FeatureClassifier, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """The Fréchet distance between the features of two image sets (N, C, H, W) and (M, C, H, W)."""
    if tuple(x.shape[1:]) != tuple(y.shape[1:]):
        raise DataError(
            f"the two sets have different image shapes: {tuple(x.shape[1:])} and {tuple(y.shape[1:])}"
        )
    fx = extract_features(net, x, batch_size)
    fy = extract_features(net, y, batch_size)
    if not (torch.isfinite(fx).all() and torch.isfinite(fy).all()):
        raise DataError("FID needs finite images; found NaN or inf")
    return frechet_distance(*gaussian_fit(fx), *gaussian_fit(fy))


def train_feature_classifier(
    x: Tensor,
    y: Tensor,
    *,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 32,
    generator: torch.Generator | None = None,
    num_classes: int | None = None,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on images (N, C, H, W) in [0, 1] with labels (N,)
    (Adam, cross-entropy, cosine decay) to tell ``num_classes`` classes (default: the largest
    label + 1); returns it in eval mode."""
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise DataError(
            f"expected images (N, C, H, W) and labels (N,); found {tuple(x.shape)}, {tuple(y.shape)}"
        )
    net = FeatureClassifier(x.shape[1], int(num_classes or int(y.max()) + 1), width)
    steps = epochs * math.ceil(x.shape[0] / batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for idx in order.split(batch_size):
            loss = nn.functional.cross_entropy(net(x[idx].float()), y[idx].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: FeatureClassifier, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Fraction of images (N, C, H, W) classified as their labels (N,)."""
    net.eval()
    hits = sum(
        int((net(b.float()).argmax(1) == t).sum()) for b, t in zip(x.split(batch_size), y.split(batch_size))
    )
    return hits / x.shape[0]


def save_feature_classifier(net: FeatureClassifier, path: str | Path) -> Path:
    """Write ``path`` (.safetensors) with the architecture in its metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    safetensors.torch.save_file(state, str(path), metadata={"config": json.dumps(net.config)})
    return path


def load_feature_classifier(path: str | Path) -> FeatureClassifier:
    """Read a classifier written by :func:`save_feature_classifier` (eval mode, CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no feature classifier at {str(path)!r}")
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            config = json.loads((f.metadata() or {})["config"])
        state = safetensors.torch.load_file(str(path))
        net = FeatureClassifier(**config)
        net.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError, OSError, safetensors.SafetensorError) as err:
        raise CheckpointError(
            f"{str(path)!r} is not a feature classifier written by simulacra: {err}"
        ) from None
    return net.eval()
