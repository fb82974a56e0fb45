"""The Fréchet distance against closed forms; the feature classifier: its recipe, its round trip,
files of its first design, and the network shipped for MNIST."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from simulacra.errors import CheckpointError, ConfigError
from simulacra.metrics.fid import (
    FeatureClassifier,
    accuracy,
    fid,
    frechet_distance,
    gaussian_fit,
    load_feature_classifier,
    random_shift,
    save_feature_classifier,
    shipped_feature_network,
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


def test_files_of_the_first_design_still_load(tmp_path: Path) -> None:
    """A file written before the config had more than three keys (3 convs, global average
    pooling, no BatchNorm) loads as the network it was: the same parameters, the same outputs."""
    torch.manual_seed(0)
    old = FeatureClassifier(1, 3, 8)
    assert [k for k in old.state_dict() if k.endswith("weight")] == [
        "body.0.weight", "body.3.weight", "body.6.weight", "head.weight",
    ]  # fmt: skip
    path = tmp_path / "old.safetensors"
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in old.state_dict().items()},
        str(path),
        metadata={"config": json.dumps({"in_channels": 1, "num_classes": 3, "width": 8})},
    )
    again = load_feature_classifier(path)
    assert (
        again.config["pool"] == "global"
        and not again.config["batch_norm"]
        and again.config["image_shape"] is None
    )
    x = torch.rand(5, 1, 12, 12)
    torch.testing.assert_close(again.features(x), old.eval().features(x))
    assert again.features(x).shape == (5, 32)


def test_random_shift_moves_each_image_by_at_most_the_shift() -> None:
    x = torch.zeros(200, 2, 9, 9)
    x[:, :, 4, 4] = 1.0  # one bright pixel in the middle, on both channels
    g = torch.Generator().manual_seed(0)
    moved = random_shift(x, 2, g)
    assert moved.shape == x.shape and torch.equal(moved.sum((1, 2, 3)), torch.full((200,), 2.0))
    where = moved[:, 0].flatten(1).argmax(1)
    dy, dx = where // 9 - 4, where % 9 - 4
    assert dy.abs().max() == 2 and dx.abs().max() == 2 and len(set(zip(dy.tolist(), dx.tolist()))) == 25
    assert torch.equal(moved[:, 0], moved[:, 1])  # the channels of an image move together
    assert torch.equal(random_shift(x, 2, torch.Generator().manual_seed(0)), moved)  # seeded
    assert random_shift(x, 0) is x


def test_the_recipe_trains_on_odd_batches_and_records_the_image_shape() -> None:
    """The default recipe (BatchNorm, grid pooling, 128 features, shifts, one-cycle AdamW) on a
    split whose last batch is one image, and the older design on request."""
    x, y = _two_class_images(129, 0)
    torch.manual_seed(0)
    net = train_feature_classifier(x, y, epochs=1, width=4, batch_size=64)
    assert net.config["image_shape"] == [1, 8, 8] and net.config["pool"] == "grid"
    assert net.features(x[:3]).shape == (3, 128) and not net.training
    old = train_feature_classifier(
        x, y, epochs=1, width=4, pool="global", batch_norm=False, dropout=0.0, shift=0
    )
    assert old.features(x[:3]).shape == (3, 16)
    with pytest.raises(ConfigError, match="pool must be"):
        FeatureClassifier(1, 2, pool="max")


def test_the_shipped_mnist_network() -> None:
    """The network inside the package loads, tells 10 classes of 1×28×28 images by 128
    features, is small, and its record (written by benchmarks/train_feature_network.py) has a
    test accuracy of at least 99.3% and the sha256 of the weights as they are in the package."""
    net, record = shipped_feature_network("mnist")
    weights = importlib.resources.files("simulacra.metrics").joinpath("networks", "mnist.safetensors")
    data = weights.read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data) < 1_500_000
    assert record["test_accuracy"] >= 0.993 and record["test_examples"] == 10_000
    assert record["train_examples"] == 60_000 and record["seed"] == 0 and record["epochs"] >= 1
    assert record["command"].startswith("python benchmarks/train_feature_network.py")
    assert {"date", "machine", "torch", "parameters"} <= set(record)
    assert record["parameters"] == sum(p.numel() for p in net.parameters())
    assert net.config["image_shape"] == [1, 28, 28] and net.config["num_classes"] == 10
    assert net.features(torch.rand(4, 1, 28, 28)).shape == (4, 128)
    assert shipped_feature_network()[0] is net  # loaded once
    with pytest.raises(ConfigError, match="no shipped feature network 'cifar'"):
        shipped_feature_network("cifar")
