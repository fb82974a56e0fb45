"""The Fréchet distance against closed forms, and the feature classifier's round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simulacra.errors import CheckpointError
from simulacra.metrics.fid import (
    accuracy,
    fid,
    frechet_distance,
    gaussian_fit,
    load_feature_classifier,
    save_feature_classifier,
    train_feature_classifier,
)


def test_frechet_distance_matches_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g)
    cov = a @ a.T + 0.1 * torch.eye(4)
    mu = torch.randn(4, generator=g)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    # commuting covariances: Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) = Σ (√λ₁ − √λ₂)²
    d1, d2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    shift = torch.tensor([1.0, -2.0, 0.5])
    expected = shift.square().sum() + (d1.sqrt() - d2.sqrt()).square().sum()
    value = frechet_distance(torch.zeros(3), torch.diag(d1), shift, torch.diag(d2))
    assert value == pytest.approx(float(expected), rel=1e-9)
    # symmetric in its two arguments
    b = torch.randn(4, 4, generator=g)
    cov2 = b @ b.T + 0.1 * torch.eye(4)
    assert frechet_distance(mu, cov, -mu, cov2) == pytest.approx(
        frechet_distance(-mu, cov2, mu, cov), rel=1e-7
    )


def test_gaussian_fit_recovers_moments() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([1.0, 0.0, -1.0])
    mu, cov = gaussian_fit(x)
    torch.testing.assert_close(mu, torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64), atol=0.05, rtol=0)
    torch.testing.assert_close(
        cov, torch.diag(torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)), atol=0.1, rtol=0
    )


def _two_class_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright left half (class 0) or bright right half (class 1), with noise, (n, 1, 8, 8)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.2 * torch.rand(n, 1, 8, 8, generator=g)
    x[y == 0, :, :, :4] += 0.7
    x[y == 1, :, :, 4:] += 0.7
    return x, y


def test_classifier_learns_and_fid_separates_distributions(tmp_path: Path) -> None:
    x, y = _two_class_images(512, 0)
    torch.manual_seed(0)
    net = train_feature_classifier(x, y, epochs=3, width=8, generator=torch.Generator().manual_seed(0))
    x_test, y_test = _two_class_images(256, 1)
    assert accuracy(net, x_test, y_test) > 0.95
    same = fid(net, x_test[:128], x_test[128:])
    only_class_0 = fid(net, x_test[:128], x_test[y_test == 0])
    assert same < 0.25 * only_class_0  # a mode-dropped set is far from the data
    path = save_feature_classifier(net, tmp_path / "clf.safetensors")
    again = load_feature_classifier(path)
    assert fid(again, x_test[:128], x_test[128:]) == pytest.approx(same, rel=1e-6)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match="not a feature classifier"):
        load_feature_classifier(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="no feature classifier"):
        load_feature_classifier(tmp_path / "missing.safetensors")
