"""Data layer: toys, registered datasets, files, validation, binarization, downloads.

Everything runs offline on small synthetic files written to ``tmp_path``; the real MNIST files
are checked only when the shared data folder ``../shared/data`` (next to the checkout) holds them;
otherwise those two tests are skipped with the path they looked for.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simulacra.config import DataConfig
from simulacra.data import (
    DATASETS,
    check_support,
    download,
    fetch,
    load_dataset,
    toys,
    transforms,
    validate_examples,
)
from simulacra.data.files import infer_layout, infer_support, read_idx, split_indices
from simulacra.data.info import Dataset
from simulacra.errors import DataError, UnknownNameError
from simulacra.seeding import derive_seed

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _needs_shared(name: str) -> pytest.MarkDecorator:
    """Skip unless the shared data folder holds ``name``; the reason names the folder looked in."""
    return pytest.mark.skipif(
        not (SHARED / name).is_file(),
        reason=f"needs {name} in the shared data folder {SHARED} (not found there)",
    )


@pytest.fixture(autouse=True)
def _no_user_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide the user's data folders: only what a test writes can be found."""
    monkeypatch.delenv("SIMULACRA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _rows(x: torch.Tensor) -> list[bytes]:
    """Sorted rows as bytes: compares two sets of examples as multisets."""
    flat = x.reshape(len(x), -1).contiguous().numpy()
    return sorted(r.tobytes() for r in flat)


# ----------------------------------------------------------------------------- toys


@pytest.mark.parametrize("name", sorted(toys.TOYS))
def test_toy_shape_dtype_and_determinism(name: str) -> None:
    sampler = toys.TOYS[name]
    a = sampler(2000, torch.Generator().manual_seed(3))
    b = sampler(2000, torch.Generator().manual_seed(3))
    c = sampler(2000, torch.Generator().manual_seed(4))
    assert a.shape == (2000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.isfinite(a).all()
    assert (a.abs() <= 4).all(dim=1).float().mean() > 0.99  # roughly in [-4, 4]²
    assert sampler(0).shape == (0, 2)
    with pytest.raises(DataError, match="integer"):
        sampler(-1)


def test_checkerboard_is_uniform_on_the_dark_squares() -> None:
    x = toys.checkerboard(16000, torch.Generator().manual_seed(0))
    cells = torch.floor(x / 2).long()  # (n, 2) in {-2, ..., 1}
    assert ((cells >= -2) & (cells <= 1)).all()
    assert (cells.sum(1) % 2 == 0).all()
    _, counts = torch.unique(cells, dim=0, return_counts=True)
    assert len(counts) == 8
    assert (counts - 2000).abs().max() < 200  # ~4.7 standard deviations
    assert torch.equal(
        toys.checkerboard_log_prob(x), torch.full((16000,), -math.log(32), dtype=torch.float64)
    )
    outside = torch.tensor([[1.0, 3.0], [-3.0, -1.0], [4.5, 0.0]])  # light squares and outside
    assert torch.isinf(toys.checkerboard_log_prob(outside)).all()
    assert toys.checkerboard_entropy() == pytest.approx(math.log(32))
    assert toys.entropy("checkerboard") == toys.checkerboard_entropy()


def test_eight_gaussians_density_and_entropy() -> None:
    x = toys.eight_gaussians(100_000, torch.Generator().manual_seed(0))
    log_p = toys.eight_gaussians_log_prob(x)
    # Monte Carlo entropy -E log p agrees with the quadrature within 4 standard errors
    mc, se = float(-log_p.mean()), float(log_p.std() / math.sqrt(len(x)))
    h = toys.eight_gaussians_entropy()
    assert abs(mc - h) < 4 * se
    assert h == pytest.approx(2.8315783605265, abs=1e-9)
    assert h < math.log(8) + math.log(math.pi * math.e / 4)  # overlap lowers it below the separated limit
    # the density integrates to one on a grid
    g = torch.arange(-6, 6, 0.02, dtype=torch.float64) + 0.01
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), dim=-1)
    assert float(toys.eight_gaussians_log_prob(grid).exp().sum() * 0.02**2) == pytest.approx(1, abs=1e-6)
    # modes: equal shares, radius 2√2, std √2/4
    centres = toys.eight_gaussians_means().float()
    nearest = (x[:, None] - centres).norm(dim=-1).argmin(1)
    shares = torch.bincount(nearest, minlength=8) / len(x)
    assert float((shares - 1 / 8).abs().max()) < 0.005
    residual = x - centres[nearest]
    assert residual.std(0).tolist() == pytest.approx([math.sqrt(2) / 4] * 2, rel=0.01)
    with pytest.raises(UnknownNameError, match="8gaussians"):
        toys.entropy("moons")


def test_rings_radii() -> None:
    x = toys.rings(4000, torch.Generator().manual_seed(0))
    r = x.norm(dim=1)
    nearest = torch.tensor(toys.RING_RADII)[(r[:, None] - torch.tensor(toys.RING_RADII)).abs().argmin(1)]
    assert float((r - nearest).abs().max()) < 0.4
    assert float((r - nearest).std()) == pytest.approx(0.08, rel=0.1)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("x", "support", "expected"),
    [
        (np.arange(5.0), None, r"expected an array of examples \(N, \.\.\.\), got shape \(5,\)"),
        (np.zeros((0, 3)), None, "empty"),
        (np.array([["a", "b"], ["c", "d"]]), None, "non-numeric dtype"),
        (
            np.array([[0.0, np.nan], [1.0, np.nan]]),
            None,
            r"2 NaN values, the first at example 0 \(index \(0, 1\)\)",
        ),
        (np.array([[0.0, 1.0], [np.inf, 1.0]]), None, r"1 infinite value, the first at example 1"),
        (np.array([[0.0, 0.5], [1.0, 1.0]]), "binary", r"\{0, 1\}.*0\.50 at index \(0, 1\)"),
        (
            np.array([[-0.3, 0.5], [1.2, 1.0]]),
            "unit",
            r"Bernoulli likelihood needs values in \[0, 1\]; 'foo.npy' has min -0\.30, max 1\.20",
        ),
        (np.array([[0, 255], [3, 4]], dtype=np.uint8), "unit", "divide them by 255"),
        (torch.tensor([[1 + 1j]]), None, "non-numeric"),
        ([[1.0, 2.0]], None, "numpy array or torch tensor"),
    ],
)
def test_validate_examples_names_the_problem(x: object, support: str | None, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        validate_examples(x, source="foo.npy", support=support)  # type: ignore[arg-type]


def test_validate_labels_and_valid_data() -> None:
    x = torch.rand(10, 3)
    validate_examples(x, source="ok", support="unit", y=torch.arange(10))
    validate_examples(x.numpy(), source="ok", support="real", y=np.arange(10, dtype=np.uint8))
    with pytest.raises(DataError, match="10 examples but 9 labels"):
        validate_examples(x, source="foo", y=np.arange(9))
    with pytest.raises(DataError, match="integers"):
        validate_examples(x, source="foo", y=np.linspace(0, 1, 10))
    with pytest.raises(DataError, match=r"shape \(N,\)"):
        validate_examples(x, source="foo", y=np.zeros((10, 2)))


def test_the_clean_data_check_is_exact_when_its_sum_overflows_or_cancels() -> None:
    """Clean data are recognised by one finite sum; a sum that overflows (finite values near
    float32's maximum) must still pass, and +inf beside −inf (a NaN sum) is still counted."""
    validate_examples(np.full((4, 3), 3e38, dtype=np.float32), source="big")  # the sum is inf
    both = np.array([[np.inf, -np.inf], [0.0, 1.0]], dtype=np.float32)
    with pytest.raises(DataError, match=r"2 infinite values, the first at example 0 \(index \(0, 0\)\)"):
        validate_examples(both, source="both")


def test_arrays_stored_in_fortran_order_load_as_the_same_contiguous_floats(tmp_path: Path) -> None:
    x = np.asfortranarray(np.random.default_rng(0).integers(0, 256, (40, 12), dtype=np.uint8))
    np.savez(tmp_path / "f.npz", x_train=x)
    loaded = load_dataset(DataConfig(name=str(tmp_path / "f.npz"), valid_fraction=0.0))
    assert loaded.train.x.is_contiguous() and loaded.train.x.dtype == torch.float32
    rows = {tuple(r) for r in (loaded.train.x * 255).round().to(torch.uint8).tolist()}
    assert rows == {tuple(r) for r in x.tolist()}  # the same examples, whatever order was carved


def test_check_support() -> None:
    check_support(torch.tensor([0.0, 1.0, 1.0]), "binary", "b")
    check_support(torch.tensor([True, False]), "binary", "b")
    check_support(torch.tensor([0.0, 0.3, 1.0]), "unit", "u")
    check_support(torch.tensor([-7.0, 30.0]), "real", "r")
    with pytest.raises(DataError, match=r"values in \{0, 1\}"):
        check_support(torch.tensor([0.0, 2.0]), "binary", "b")
    with pytest.raises(DataError, match="NaN"):
        check_support(torch.tensor([0.0, float("nan")]), "real", "r")
    with pytest.raises(DataError, match="binary, unit, real"):
        check_support(torch.zeros(2), "positive", "r")


# ----------------------------------------------------------------------------- layout and support


def test_layout_and_support_inference() -> None:
    assert infer_layout(np.zeros((4, 7))).shape == (4, 7)
    assert infer_layout(np.zeros((4, 9, 8))).shape == (4, 1, 9, 8)
    assert infer_layout(np.zeros((4, 9, 8, 3))).shape == (4, 3, 9, 8)
    assert infer_layout(np.zeros((4, 9, 8, 1))).shape == (4, 1, 9, 8)
    assert infer_layout(np.zeros((4, 3, 9, 8))).shape == (4, 3, 9, 8)
    assert infer_layout(np.zeros((4, 3, 4, 3))).shape == (4, 3, 4, 3)  # too small to be H, W
    assert infer_support([np.array([[0, 1]], dtype=np.int64)]) == ("binary", 2)
    assert infer_support([np.array([[0, 200]], dtype=np.uint8)]) == ("unit", 256)
    assert infer_support([np.array([[0.0, 0.5]])]) == ("unit", None)
    assert infer_support([np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])]) == ("binary", 2)
    assert infer_support([np.array([[0.0, 1.5]])]) == ("real", None)
    assert infer_support([np.array([[0, 200]], dtype=np.int64)]) == ("real", None)


def test_split_indices_partition() -> None:
    train, valid, test = split_indices(100, valid=10, test=20, seed=0)
    assert (len(train), len(valid), len(test)) == (70, 10, 20)
    assert sorted(np.concatenate([train, valid, test]).tolist()) == list(range(100))
    again = split_indices(100, valid=10, test=20, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, valid, test), again))
    with pytest.raises(DataError, match="hold out"):
        split_indices(5, valid=3, test=2)


# ----------------------------------------------------------------------------- digits and toys


def test_digits() -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset(DataConfig(name="digits"))
    assert ds.info.event_shape == (1, 8, 8)
    assert (ds.info.support, ds.info.levels, ds.info.num_classes) == ("unit", 17, 10)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (1350, 150, 297)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    # the three splits partition the 1797 images (as a multiset of (image, label) rows)
    all_x = torch.cat([ds.train.x, ds.valid.x, ds.test.x]).reshape(-1, 64)
    all_y = torch.cat([ds.train.y, ds.valid.y, ds.test.y])
    bunch = load_digits()
    ours = _rows(torch.cat([all_x * 16, all_y[:, None].float()], dim=1))
    theirs = _rows(torch.from_numpy(np.concatenate([bunch.data, bunch.target[:, None]], 1)).float())
    assert ours == theirs
    assert torch.equal((ds.train.x * 16).round(), ds.train.x * 16)  # 17 levels
    # fixed split, independent of the run seed; limit keeps the first examples
    other = load_dataset(DataConfig(name="digits", limit=100), seed=5)
    assert torch.equal(other.train.x, ds.train.x[:100]) and torch.equal(other.test.x, ds.test.x)
    no_valid = load_dataset(DataConfig(name="digits", valid_fraction=0.0))
    assert no_valid.valid is None and len(no_valid.train) == 1500


def test_toy_datasets() -> None:
    ds = load_dataset(DataConfig(name="pinwheel", num_samples=500), seed=1)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (500, 100, 100)
    assert ds.info.event_shape == (2,) and ds.info.support == "real" and ds.info.levels is None
    again = load_dataset(DataConfig(name="pinwheel", num_samples=500), seed=1)
    other = load_dataset(DataConfig(name="pinwheel", num_samples=500), seed=2)
    assert torch.equal(ds.train.x, again.train.x) and torch.equal(ds.test.x, again.test.x)
    assert not torch.equal(ds.train.x, other.train.x)
    assert not torch.equal(ds.valid.x, ds.test.x)  # independent draws
    assert not torch.equal(ds.train.x[:100], ds.valid.x)
    assert derive_seed(1, "a") != derive_seed(1, "b") and derive_seed(1, "a") == derive_seed(1, "a")


# ----------------------------------------------------------------------------- binarization


def test_static_and_dynamic_binarization() -> None:
    grey = load_dataset(DataConfig(name="digits"))
    static = load_dataset(DataConfig(name="digits", binarize="static"), seed=7)
    assert (static.info.support, static.info.levels) == ("binary", 2)
    assert static.batch_transform is None
    for split in (static.train, static.valid, static.test):
        assert set(split.x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(static.train.y, grey.train.y)
    assert abs(float(static.train.x.mean() - grey.train.x.mean())) < 0.01  # E[Bernoulli(p)] = p
    assert torch.equal(
        static.train.x, load_dataset(DataConfig(name="digits", binarize="static"), seed=7).train.x
    )
    assert not torch.equal(
        static.train.x, load_dataset(DataConfig(name="digits", binarize="static"), seed=8).train.x
    )

    dynamic = load_dataset(DataConfig(name="digits", binarize="dynamic"), seed=7)
    assert (dynamic.info.support, dynamic.info.levels) == ("binary", 2)
    assert dynamic.batch_transform is transforms.bernoulli
    assert torch.equal(dynamic.train.x, grey.train.x)  # training data stay grey
    assert torch.equal(dynamic.valid.x, static.valid.x)  # one fixed, seeded draw for evaluation
    assert torch.equal(dynamic.test.x, static.test.x)
    batch = dynamic.train.x[:64]
    a = dynamic.batch_transform(batch, torch.Generator().manual_seed(0))
    b = dynamic.batch_transform(batch, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0} and a.shape == batch.shape


def test_binarization_errors() -> None:
    with pytest.raises(DataError, match="support is 'real'"):
        load_dataset(DataConfig(name="moons", num_samples=50, binarize="static"))
    with pytest.raises(DataError, match="'static', 'dynamic'"):
        load_dataset(DataConfig(name="digits", binarize="stochastic"))


def test_config_errors() -> None:
    with pytest.raises(DataError, match=r"valid_fraction must be a number in \[0, 1\)"):
        load_dataset(DataConfig(name="digits", valid_fraction=1.5))
    with pytest.raises(DataError, match="limit must be a positive integer"):
        load_dataset(DataConfig(name="digits", limit=0))


# ----------------------------------------------------------------------------- names and paths


def test_unknown_name_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as err:
        load_dataset(DataConfig(name="mnits"))
    message = str(err.value)
    assert "'mnist'" in message  # close match
    for name in ("digits", "binarized-mnist", "moons", "8gaussians", "checkerboard"):
        assert name in message
    assert "or a path to a .npz, .npy, .csv file or an image folder" in message
    for missing in (str(tmp_path / "nothing.npz"), "data/foo", "foo.csv"):
        with pytest.raises(DataError, match="no such file or folder"):
            load_dataset(DataConfig(name=missing))
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    with pytest.raises(DataError, match=r"expected a \.npz, \.npy or \.csv file"):
        load_dataset(DataConfig(name=str(odd)))


# ----------------------------------------------------------------------------- mnist


def _mnist_arrays(n_train: int = 40, n_test: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def _write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _check_mnist(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    assert ds.info.event_shape == (1, 28, 28)
    assert (ds.info.support, ds.info.levels, ds.info.num_classes) == ("unit", 256, 10)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (36, 4, 12)
    assert torch.allclose(ds.test.x, torch.from_numpy(arrays["x_test"][:, None]).float() / 255)
    assert torch.equal(ds.test.y, torch.from_numpy(arrays["y_test"]).long())
    # train + valid is the official training set, with matching labels
    ours = torch.cat(
        [
            torch.cat([ds.train.x, ds.valid.x]).reshape(40, -1) * 255,
            torch.cat([ds.train.y, ds.valid.y])[:, None].float(),
        ],
        1,
    )
    theirs = np.concatenate([arrays["x_train"].reshape(40, -1), arrays["y_train"][:, None]], 1)
    assert _rows(ours.round()) == _rows(torch.from_numpy(theirs).float())


def test_mnist_from_npz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _mnist_arrays()
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    ds = load_dataset(DataConfig(name="mnist", data_dir=str(tmp_path)))
    _check_mnist(ds, arrays)
    monkeypatch.setenv("SIMULACRA_DATA", str(tmp_path))
    from_env = load_dataset(DataConfig(name="mnist"))
    assert torch.equal(from_env.train.x, ds.train.x)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = _mnist_arrays()
    for key, stem in IDX_NAMES.items():
        _write_idx(tmp_path / (stem + (".gz" if gz else "")), arrays[key], gz=gz)
    ds = load_dataset(DataConfig(name="mnist", data_dir=str(tmp_path)))
    _check_mnist(ds, arrays)
    assert np.array_equal(
        read_idx(tmp_path / (IDX_NAMES["y_test"] + (".gz" if gz else ""))), arrays["y_test"]
    )


def test_idx_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="magic number 0x12340803"):
        read_idx(bad)
    labels = tmp_path / "labels"
    _write_idx(labels, np.zeros(5, dtype=np.uint8), gz=False)
    with pytest.raises(DataError, match="expected 3 dimensions"):
        read_idx(labels, ndim=3)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(labels.read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(truncated)


def test_mnist_not_found_says_how_to_fix(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    _write_idx(partial / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8), gz=True)
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="mnist", data_dir=str(partial)))
    message = str(err.value)
    assert "\n" not in message
    for part in (
        str(partial),
        str(tmp_path / "home" / ".simulacra" / "data"),
        "--data-dir",
        "$SIMULACRA_DATA",
        "simulacra download mnist",
        "lacks train-labels",
    ):
        assert part in message
    with pytest.raises(DataError, match="binarized_mnist.npz"):
        load_dataset(DataConfig(name="binarized-mnist", data_dir=str(tmp_path)))


def test_binarized_mnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    splits = {
        k: (rng.random((n, 784)) < 0.13).astype(np.uint8)
        for k, n in (("train", 30), ("valid", 8), ("test", 9))
    }
    np.savez_compressed(tmp_path / "binarized_mnist.npz", **splits)
    ds = load_dataset(DataConfig(name="binarized-mnist", data_dir=str(tmp_path), limit=20))
    assert ds.info.event_shape == (1, 28, 28)
    assert (ds.info.support, ds.info.levels, ds.info.num_classes) == ("binary", 2, None)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (20, 8, 9)
    assert ds.train.y is None
    order = np.random.default_rng(0).permutation(9)  # the test split in its fixed random order
    assert torch.equal(ds.test.x.reshape(9, 784), torch.from_numpy(splits["test"][order]).float())
    np.savez_compressed(tmp_path / "binarized_mnist.npz", train=splits["train"])
    with pytest.raises(DataError, match=r"has keys \['train'\]; expected train, valid, test"):
        load_dataset(DataConfig(name="binarized-mnist", data_dir=str(tmp_path)))


@_needs_shared("mnist.npz")
def test_real_mnist_statistics() -> None:
    ds = load_dataset(DataConfig(name="mnist", data_dir=str(SHARED)))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (54000, 6000, 10000)
    train_mean = float(torch.cat([ds.train.x, ds.valid.x]).double().mean() * 255)
    assert train_mean == pytest.approx(33.318, abs=1e-3)
    assert float(ds.test.x.double().mean() * 255) == pytest.approx(33.791, abs=1e-3)
    counts = torch.bincount(ds.test.y, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@_needs_shared("binarized_mnist.npz")
def test_real_binarized_mnist_statistics() -> None:
    ds = load_dataset(DataConfig(name="binarized-mnist", data_dir=str(SHARED)))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50000, 10000, 10000)
    assert float(ds.train.x.double().mean()) == pytest.approx(0.13056, abs=1e-5)
    assert float(ds.test.x.double().mean()) == pytest.approx(0.13251, abs=1e-5)
    # the file's test split is sorted by digit; loaded in a fixed random order, its first tenth
    # holds as many pixels on average as the whole (the file's first tenth, all 0s: 133 against 104)
    ink = ds.test.x.flatten(1).sum(1)
    assert abs(float(ink[:1000].mean()) - float(ink.mean())) < 3.0
    again = load_dataset(DataConfig(name="binarized-mnist", data_dir=str(SHARED)), seed=7)
    assert torch.equal(again.test.x, ds.test.x)  # the same order for every run


# ----------------------------------------------------------------------------- files


def test_npz_with_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "set.npz"
    x_train, y_train = rng.normal(size=(50, 6)).astype(np.float32), rng.integers(0, 3, 50)
    x_test, y_test = rng.normal(size=(10, 6)).astype(np.float32), rng.integers(0, 4, 10)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load_dataset(DataConfig(name=str(path), valid_fraction=0.2, standardize=False))
    assert ds.name == "set.npz"
    assert ds.info.event_shape == (6,) and ds.info.support == "real" and ds.info.num_classes == 4
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (40, 10, 10)
    assert torch.equal(ds.test.x, torch.from_numpy(x_test)) and torch.equal(
        ds.test.y, torch.from_numpy(y_test)
    )
    assert _rows(torch.cat([ds.train.x, ds.valid.x])) == _rows(torch.from_numpy(x_train))


def test_npz_train_valid_test_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "imgs.npz"
    arrays = {
        k: rng.integers(0, 256, (n, 10, 12, 3), dtype=np.uint8)
        for k, n in (("train", 7), ("valid", 3), ("test", 2))
    }
    np.savez(path, **arrays)
    ds = load_dataset(DataConfig(name=str(path)))
    assert ds.info.event_shape == (3, 10, 12)
    assert (ds.info.support, ds.info.levels, ds.info.num_classes) == ("unit", 256, None)
    assert torch.allclose(ds.valid.x, torch.from_numpy(arrays["valid"]).permute(0, 3, 1, 2).float() / 255)


def test_npz_errors(tmp_path: Path) -> None:
    path = tmp_path / "wrong.npz"
    np.savez(path, images=np.zeros((3, 2)), masks=np.zeros(3))
    with pytest.raises(DataError, match=r"has keys \['images', 'masks'\]; expected 'x_train'"):
        load_dataset(DataConfig(name=str(path)))
    np.savez(path, x_train=np.zeros((10, 2)), y_train=np.zeros(9, dtype=int))
    with pytest.raises(DataError, match="10 examples but 9 labels"):
        load_dataset(DataConfig(name=str(path)))
    np.savez(path, x_train=np.zeros((10, 2)), x_test=np.zeros((4, 3)))
    with pytest.raises(DataError, match=r"shape \(3,\) but training examples \(2,\)"):
        load_dataset(DataConfig(name=str(path)))
    np.savez(path, x_train=np.zeros((10, 2)), y_train=np.zeros(10, dtype=int), x_test=np.zeros((4, 2)))
    with pytest.raises(DataError, match="labels for some splits but none for test"):
        load_dataset(DataConfig(name=str(path)))
    np.savez(path, x_train=np.full((10, 2), np.inf))
    with pytest.raises(DataError, match="infinite"):
        load_dataset(DataConfig(name=str(path)))
    empty = tmp_path / "x.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="'.*x.npz' is empty"):
        load_dataset(DataConfig(name=str(empty)))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError, match="not a valid .npz archive"):
        load_dataset(DataConfig(name=str(corrupt)))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="pickled Python objects"):
        load_dataset(DataConfig(name=str(objects)))


def test_npy(tmp_path: Path) -> None:
    path = tmp_path / "grey.npy"
    x = np.random.default_rng(3).integers(0, 256, (40, 9, 7), dtype=np.uint8)
    np.save(path, x)
    ds = load_dataset(DataConfig(name=str(path)))
    assert ds.info.event_shape == (1, 9, 7) and (ds.info.support, ds.info.levels) == ("unit", 256)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (32, 4, 4)
    assert _rows(torch.cat([ds.train.x, ds.valid.x, ds.test.x]) * 255) == _rows(
        torch.from_numpy(x[:, None]).float()
    )
    binary = tmp_path / "binary.npy"
    np.save(binary, np.random.default_rng(4).integers(0, 2, (20, 5)))
    assert load_dataset(DataConfig(name=str(binary))).info.support == "binary"
    flat = tmp_path / "flat.npy"
    np.save(flat, np.arange(5.0))
    with pytest.raises(DataError, match=r"got shape \(5,\)"):
        load_dataset(DataConfig(name=str(flat)))
    with_nan = tmp_path / "nan.npy"
    np.save(with_nan, np.array([[1.0, 2.0], [np.nan, 0.0], [1.0, 1.0]]))
    with pytest.raises(DataError, match=r"1 NaN value, the first at example 1"):
        load_dataset(DataConfig(name=str(with_nan)))
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3)))
    with pytest.raises(DataError, match="empty"):
        load_dataset(DataConfig(name=str(empty)))


def test_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    table = rng.normal(loc=[10.0, -3.0, 0.0], scale=[2.0, 0.5, 1.0], size=(100, 3))
    path = tmp_path / "table.csv"
    lines = ["a,b,c"] + [",".join(f"{v:.6f}" for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")
    ds = load_dataset(DataConfig(name=str(path)))
    assert ds.info.event_shape == (3,) and ds.info.support == "real" and ds.info.levels is None
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (80, 10, 10)
    assert torch.allclose(ds.train.x.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(ds.train.x.std(0, unbiased=False), torch.ones(3), atol=1e-5)
    assert float(ds.valid.x.mean(0).abs().max()) > 1e-4  # valid uses the training statistics
    no_header = tmp_path / "plain.csv"
    no_header.write_text("\n".join(lines[1:]))
    assert len(load_dataset(DataConfig(name=str(no_header))).train) == 80
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"row 3, column 2 \('b'\): 'oops' is not a number"):
        load_dataset(DataConfig(name=str(bad)))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    with pytest.raises(DataError, match="row 2 has 1 values; expected 2"):
        load_dataset(DataConfig(name=str(ragged)))
    nan = tmp_path / "nan.csv"
    nan.write_text("1,2\n3,nan\n4,5\n")
    with pytest.raises(DataError, match="NaN"):
        load_dataset(DataConfig(name=str(nan)))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_dataset(DataConfig(name=str(empty)))


def _save_image(path: Path, array: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_image_folder_with_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    root = tmp_path / "faces"
    pixels = {}
    for cls in ["cats", "dogs"]:
        for i in range(10):
            a = rng.integers(0, 256, (6, 5), dtype=np.uint8)
            pixels[(cls, i)] = a
            _save_image(root / cls / f"{i}.png", a, "L")
    (root / "empty").mkdir()
    ds = load_dataset(DataConfig(name=str(root), valid_fraction=0.1))
    assert ds.info.event_shape == (1, 6, 5)
    assert (ds.info.support, ds.info.levels, ds.info.num_classes) == ("unit", 256, 2)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (16, 2, 2)
    xs = torch.cat([ds.train.x, ds.valid.x, ds.test.x])
    ys = torch.cat([ds.train.y, ds.valid.y, ds.test.y])
    expected = [
        np.concatenate([a.reshape(-1), [label]])
        for (cls, _), a in pixels.items()
        for label in [["cats", "dogs"].index(cls)]
    ]
    ours = torch.cat([(xs * 255).round().reshape(20, -1), ys[:, None].float()], 1)
    assert _rows(ours) == _rows(torch.from_numpy(np.stack(expected)).float())


def test_image_folder_colour_and_alpha(tmp_path: Path) -> None:
    """RGBA images keep their RGB values (alpha dropped, not blended); a grey image among colour
    ones is repeated over the three channels; pixels are k/255."""
    rng = np.random.default_rng(7)
    expected = []
    for i in range(4):
        rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
        rgba[..., 3] = rng.integers(0, 128, (8, 8))  # mostly transparent: blending would change RGB
        _save_image(tmp_path / "rgba" / f"{i}.png", rgba, "RGBA")
        expected.append(rgba[..., :3].transpose(2, 0, 1))
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    _save_image(tmp_path / "rgba" / "grey.png", grey, "L")
    expected.append(np.repeat(grey[None], 3, axis=0))
    ds = load_dataset(DataConfig(name=str(tmp_path / "rgba"), valid_fraction=0.2))
    assert ds.info.event_shape == (3, 8, 8) and ds.train.y is None and ds.info.num_classes is None
    assert (ds.info.support, ds.info.levels) == ("unit", 256)
    splits = [s for s in (ds.train, ds.valid, ds.test) if s is not None]
    xs = torch.cat([s.x for s in splits])
    assert xs.dtype == torch.float32 and len(xs) == 5
    torch.testing.assert_close(xs * 255, (xs * 255).round(), rtol=0, atol=1e-4)  # on the grid k/255
    theirs = torch.from_numpy(np.stack(expected).reshape(5, -1)).float()
    assert _rows((xs * 255).round().reshape(5, -1)) == _rows(theirs)


def test_image_folder_errors(tmp_path: Path) -> None:
    _save_image(tmp_path / "mixed" / "a.png", np.zeros((8, 8), np.uint8), "L")
    _save_image(tmp_path / "mixed" / "b.png", np.zeros((9, 8), np.uint8), "L")
    with pytest.raises(DataError, match=r"same size: '.*a.png' is 8x8 but '.*b.png' is 8x9"):
        load_dataset(DataConfig(name=str(tmp_path / "mixed")))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(DataConfig(name=str(tmp_path / "nothing")))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_dataset(DataConfig(name=str(tmp_path / "broken")))


# ----------------------------------------------------------------------------- transforms


def test_transforms() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.full((20000,), 0.3)
    assert float(transforms.bernoulli(p, g).mean()) == pytest.approx(0.3, abs=0.015)
    x = torch.tensor([0.0, 1 / 255, 1.0])
    d = transforms.dequantize(x, 256, torch.Generator().manual_seed(0))
    assert ((d >= torch.tensor([0, 1, 255]) / 256) & (d < torch.tensor([1, 2, 256]) / 256)).all()
    mean, std = transforms.standardization(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    assert torch.equal(mean, torch.tensor([2.0, 5.0])) and torch.equal(std, torch.tensor([1.0, 1.0]))


# ----------------------------------------------------------------------------- downloads


def test_fetch_verifies_checksums(tmp_path: Path) -> None:
    import hashlib

    source = tmp_path / "source.bin"
    payload = np.random.default_rng(8).bytes(3000)
    source.write_bytes(payload)
    url = source.as_uri()
    dest = tmp_path / "out" / "copy.bin"
    got = fetch(url, dest, sha256=hashlib.sha256(payload).hexdigest(), md5=hashlib.md5(payload).hexdigest())
    assert got == dest and dest.read_bytes() == payload
    wrong = tmp_path / "out2" / "copy.bin"
    with pytest.raises(DataError) as err:
        fetch(url, wrong, sha256="0" * 64)
    assert "expected sha256 " + "0" * 64 in str(err.value)
    assert f"got {hashlib.sha256(payload).hexdigest()}" in str(err.value)
    assert list(wrong.parent.iterdir()) == []  # nothing left behind, not even the temporary file
    with pytest.raises(DataError, match="cannot download"):
        fetch((tmp_path / "absent.bin").as_uri(), tmp_path / "out3" / "x.bin")
    assert list((tmp_path / "out3").iterdir()) == []


def test_download_binarized_mnist_from_a_mirror(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    expected = {}
    for split, n in (("train", 6), ("valid", 3), ("test", 4)):
        expected[split] = (rng.random((n, 784)) < 0.2).astype(np.uint8)
        np.savetxt(mirror / f"binarized_mnist_{split}.amat", expected[split], fmt="%d")
    dest = tmp_path / "data"
    path = download("binarized-mnist", dest, progress=False, mirrors=[mirror.as_uri() + "/"])
    assert path == dest / "binarized_mnist.npz"
    assert sorted(p.name for p in dest.iterdir()) == ["binarized_mnist.npz"]
    ds = load_dataset(DataConfig(name="binarized-mnist", data_dir=str(dest)))
    assert torch.equal(ds.valid.x.reshape(3, 784), torch.from_numpy(expected["valid"]).float())


def test_download_mnist_rejects_files_with_the_wrong_md5(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = _mnist_arrays()
    for key, stem in IDX_NAMES.items():
        _write_idx(mirror / f"{stem}.gz", arrays[key], gz=True)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="expected md5 f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        download("mnist", dest, progress=False, mirrors=[mirror.as_uri()])
    assert list(dest.iterdir()) == []
    with pytest.raises(UnknownNameError, match="binarized-mnist, mnist"):
        download("cifar10", dest)


def test_registry_lists_every_dataset() -> None:
    assert set(DATASETS.names()) == {"digits", "mnist", "binarized-mnist", *toys.TOYS}


def test_the_download_command_fetches_into_a_chosen_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulacra.cli import main

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for split, n in (("train", 6), ("valid", 3), ("test", 4)):
        np.savetxt(mirror / f"binarized_mnist_{split}.amat", np.zeros((n, 784), np.uint8), fmt="%d")
    dest = tmp_path / "data"
    argv = [
        "download",
        "binarized-mnist",
        "--to",
        str(dest),
        "--mirror",
        mirror.as_uri() + "/",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert f"--data-dir {dest}" in capsys.readouterr().out and (dest / "binarized_mnist.npz").is_file()
    assert main(["download", "cifar10", "--to", str(dest)]) == 2
    assert "downloadable datasets: binarized-mnist, mnist" in capsys.readouterr().err


def test_labels_no_training_example_has_are_reported_and_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulacra.cli import main

    rng = np.random.default_rng(0)
    y = rng.choice([0, 1, 3, 4, 5, 7], size=300)  # labels 2 and 6 never occur; kept as given
    np.savez(tmp_path / "table.npz", x=rng.random((300, 4)), y=y)
    ds = load_dataset(DataConfig(name=str(tmp_path / "table.npz")))
    assert ds.info.num_classes == 8 and ds.info.absent_labels == (2, 6)
    assert set(ds.train.y.unique().tolist()) <= {0, 1, 3, 4, 5, 7}  # not renumbered
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["zero", "one", "two", "three", "four", "five", "six", "seven"]))
    run = tmp_path / "run"
    argv = [
        "train",
        "cvae",
        "--data",
        str(tmp_path / "table.npz"),
        "--label-names",
        str(names),
        "--steps",
        "3",
    ]
    assert main([*argv, "--out", str(run), "--no-progress", "--set", "model.hidden=[8]", "--no-eval"]) == 0
    assert "labels 2 and 6 never occur in the training data" in capsys.readouterr().out
    assert main(["sample", str(run), "-n", "4", "--label", "three", "-o", str(tmp_path / "a.png")]) == 0
    assert main(["sample", str(run), "-n", "4", "--label", "6", "-o", str(tmp_path / "b.png")]) == 2
    assert "label 6 never occurs in the training data" in capsys.readouterr().err
    assert main(["sample", str(run), "-n", "4", "--label", "ten", "-o", str(tmp_path / "c.png")]) == 2
    assert "unknown label 'ten'; the labels are 0..7 or zero, one" in capsys.readouterr().err
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="has 2 names but the data have 8 labels"):
        load_dataset(DataConfig(name=str(tmp_path / "table.npz"), label_names=str(tmp_path / "short.txt")))


@pytest.mark.parametrize("key", ["x", "X", "data", "arr_0"])
def test_an_npz_with_one_array_is_the_whole_data_set_split_reproducibly(tmp_path: Path, key: str) -> None:
    table = np.random.default_rng(1).random((200, 3))
    path = tmp_path / "table.npz"
    np.savez(path, **{key: table})
    first, again = (load_dataset(DataConfig(name=str(path))) for _ in range(2))
    assert (len(first.train), len(first.valid), len(first.test)) == (160, 20, 20)
    for a, b in ((first.train, again.train), (first.valid, again.valid), (first.test, again.test)):
        assert torch.equal(a.x, b.x)
    np.save(tmp_path / "table.npy", table)  # the same table as .npy: the same split
    as_npy = load_dataset(DataConfig(name=str(tmp_path / "table.npy")))
    assert torch.equal(as_npy.test.x, first.test.x)
    np.savez(path, images=table, labels=np.arange(200) % 4)
    labelled = load_dataset(DataConfig(name=str(path)))
    assert labelled.info.num_classes == 4 and labelled.train.y is not None


def test_a_table_is_standardized_alike_in_every_format_and_reported_in_original_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulacra.cli import main

    rng = np.random.default_rng(3)
    table = rng.normal(loc=[10.0, -3.0, 0.0], scale=[5.0, 0.1, 1.0], size=(300, 3))
    np.savetxt(tmp_path / "t.csv", table, delimiter=",")
    np.save(tmp_path / "t.npy", table)
    np.savez(tmp_path / "t.npz", data=table)
    loaded = [load_dataset(DataConfig(name=str(tmp_path / f"t.{ext}"))) for ext in ("csv", "npy", "npz")]
    for ds in loaded[1:]:
        torch.testing.assert_close(ds.test.x, loaded[0].test.x, rtol=0, atol=1e-6)
    ds = loaded[0]
    assert (
        ds.train.x.mean(0).abs().max() < 1e-5 and (ds.train.x.std(0, unbiased=False) - 1).abs().max() < 1e-4
    )
    mean, std = ds.info.standardization
    assert ds.info.log_scale == pytest.approx(sum(math.log(s) for s in std))
    raw = load_dataset(DataConfig(name=str(tmp_path / "t.npy"), standardize=False))
    assert raw.info.standardization is None and raw.train.x.abs().max() > 5
    with pytest.raises(DataError, match="applies to real-valued data"):
        load_dataset(DataConfig(name="digits", standardize=True))
    nlls = []
    for ext in ("csv", "npy"):
        run = tmp_path / f"run-{ext}"
        argv = ["train", "maf", "--data", str(tmp_path / f"t.{ext}"), "--steps", "30", "--out", str(run)]
        assert main([*argv, "--no-progress", "--set", "model.hidden=[8]", "--eval-examples", "30"]) == 0
        test = json.loads((run / "metrics.json").read_text())["test"]
        assert "bpd" not in test and test["nll_per_dim"]["unit"] == "nats/dim"
        assert test["nll_original"]["value"] == pytest.approx(
            test["nll"]["value"] + ds.info.log_scale, rel=1e-9
        )
        nlls.append(test["nll"]["value"])
    assert nlls[0] == pytest.approx(nlls[1], rel=1e-5)
    assert "original units" in capsys.readouterr().out
