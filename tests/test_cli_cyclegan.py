"""CycleGAN from the command line: two image folders given as two ``--data`` sources, then
``sample``, ``translate`` and ``evaluate`` on the run; and the data sources joined into one
dataset labelled by source.

Domain A is a folder of scikit-learn digits, domain B a folder of other digits with their grey
levels inverted (1 − x): no image of B is the inversion of one of A, so the model sees no pair.
After 150 steps (about 5 s) the translation A -> B of held-out digits is close to their inversion,
which no pair showed: measured L1 0.119, against 0.396 for the untrained model and 0.798 for the
identity map.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simulacra.cli import main
from simulacra.data import load_dataset
from simulacra.data.datasets import DataConfig
from simulacra.data.info import DataInfo, Dataset, Split
from simulacra.data.sources import join_sources
from simulacra.errors import DataError

SMALL = ["--set", "model.channels=[8,16]", "--set", "model.patch_channels=[8,16]", "--no-progress"]
CELL = 8 * 4 + 1  # an 8x8 image at scale 4, and the padding after it


def _folders(root: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_digits

    images = load_digits().images / 16.0
    plain, inverted = root / "plain", root / "inverted"
    for folder, block, invert in ((plain, images[:240], False), (inverted, images[240:480], True)):
        folder.mkdir(parents=True)
        for i, image in enumerate(block):
            pixels = 1 - image if invert else image
            Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return plain, inverted


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _folders(tmp_path_factory.mktemp("cyclegan-data"))


@pytest.fixture(scope="module")
def run(folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cyclegan-run") / "run"
    plain, inverted = folders
    argv = ["train", "cyclegan", "--data", str(plain), "--data", str(inverted), "--out", str(out),
            "--steps", "150", "--batch-size", "32", "--lr", "3e-3", "--set", "train.ema_decay=null",
            "--set", "model.identity_weight=0", "--seed", "0", *SMALL]  # fmt: skip
    assert main(argv) == 0
    return out


def test_two_sources_train_a_cyclegan_that_learns_the_unpaired_inversion(run: Path, tmp_path: Path) -> None:
    from simulacra.train.checkpoint import load_model

    config = json.loads((run / "config.json").read_text())
    assert config["run"]["data"]["name"][1].endswith("inverted")
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"cycle_a", "cycle_b", "mmd"} <= set(metrics["test"])
    model = load_model(run).eval()
    assert model.domain_names == ("plain", "inverted")
    from sklearn.datasets import load_digits

    held_out = torch.tensor(load_digits().images[1500:1600] / 16.0, dtype=torch.float32)[:, None]
    held_out = torch.round(held_out * 255) / 255
    error = (model.translate(held_out, "a->b") - (1 - held_out)).abs().mean()
    torch.manual_seed(0)
    untrained = load_model(run).eval()
    for p in untrained.parameters():
        torch.nn.init.normal_(p, std=0.02)
    before = (untrained.translate(held_out, "a->b") - (1 - held_out)).abs().mean()
    assert error < 0.5 * before, (error, before)
    assert error < 0.2, error


def test_translate_writes_round_trips_and_the_translations(run: Path, tmp_path: Path) -> None:
    out, tensor = tmp_path / "t.png", tmp_path / "t.npy"
    assert main(["translate", str(run), "--examples", "3", "-o", str(out), "--save-tensor", str(tensor)]) == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape[1] >= 3 * CELL  # three columns: original, translated, translated back
    translated = np.load(tensor)
    assert translated.shape == (3, 1, 8, 8) and translated.min() >= 0 and translated.max() <= 1
    back = tmp_path / "back.npy"
    assert main(["translate", str(run), "--to", "plain", "--examples", "2", "-o", str(tmp_path / "b.png"),
                 "--save-tensor", str(back)]) == 0  # fmt: skip
    inverted_held_out = np.load(back)
    assert inverted_held_out.shape == (2, 1, 8, 8)


def test_translate_reads_image_files_of_the_models_size(
    run: Path, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    plain, _ = folders
    tensor = tmp_path / "one.npy"
    argv = ["translate", str(run), "--image", str(plain / "000.png"), "--image", str(plain / "001.png"),
            "-o", str(tmp_path / "one.png"), "--save-tensor", str(tensor)]  # fmt: skip
    assert main(argv) == 0
    assert np.load(tensor).shape == (2, 1, 8, 8)
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(big)
    assert main(["translate", str(run), "--image", str(big), "-o", str(tmp_path / "no.png")]) == 2
    assert not (tmp_path / "no.png").exists()


def test_sample_and_evaluate_on_a_cyclegan(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, tensor = tmp_path / "s.png", tmp_path / "s.npy"
    assert main(["sample", str(run), "-n", "4", "-o", str(out), "--save-tensor", str(tensor)]) == 0
    assert np.load(tensor).shape == (4, 1, 8, 8)  # the first 4 held-out images: 2 of each domain
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2  # no likelihood: the error names what it has
    err = capsys.readouterr().err
    assert "no likelihood" in err and "--metric cycle" in err
    assert main(["evaluate", str(run), "--metric", "cycle", "--metric", "mmd", "--samples", "20"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "one set with 10 labels: give two sources"),
        (["--set", "model.domain_a=[3]"], "give both domain_a and domain_b"),
        (["--set", "model.domain_a=[3]", "--set", "model.domain_b=[3]"], "disjoint"),
        (["--set", "model.domain_a=[3]", "--set", 'model.domain_b=["cat"]'], "unknown label 'cat'"),
    ],
)
def test_a_cyclegan_given_one_source_is_one_error_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert (
        main(["train", "cyclegan", "--data", "digits", "--out", str(out), "--steps", "1", *SMALL, *extra])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_a_cyclegan_on_two_label_sets_of_one_dataset(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "cyclegan", "--data", "digits", "--out", str(out), "--steps", "2", "--no-eval",
            "--set", "model.domain_a=[3]", "--set", "model.domain_b=[8]", *SMALL]  # fmt: skip
    assert main(argv) == 0
    assert main(["translate", str(out), "--examples", "2", "-o", str(tmp_path / "t.png")]) == 0


def test_translate_refuses_what_it_cannot_do(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vae = tmp_path / "vae"
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                "digits",
                "--out",
                str(vae),
                "--steps",
                "1",
                "--no-eval",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for argv, message in (
        (["translate", str(vae), "-o", str(tmp_path / "x.png")], "does not translate between two domains"),
        (
            ["translate", str(run), "--to", "paintings", "-o", str(tmp_path / "x.png")],
            "the domains are 'plain'",
        ),
        (
            ["translate", str(run), "--examples", "0", "-o", str(tmp_path / "x.png")],
            "--examples must be >= 1",
        ),
        (["translate", str(run), "-o", str(tmp_path / "x.npy")], "expected a file ending in"),
        (["sample", str(run), "--label", "1", "-o", str(tmp_path / "x.png")], "takes no --label"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.npy").exists()


# -- the sources as one dataset ----------------------------------------------------------------


def _dataset(
    name: str, n: int, value: float, shape: tuple[int, ...] = (3,), support: str = "real"
) -> Dataset:
    info = DataInfo(event_shape=shape, support=support)  # type: ignore[arg-type]
    x = torch.full((n, *shape), value)
    return Dataset(name, info, Split(x), valid=Split(x[:2]), test=None)


def test_sources_are_labelled_by_source_and_interleaved() -> None:
    joined = join_sources([_dataset("a", 5, 0.0), _dataset("b", 3, 1.0)], ["a", "b"])
    assert joined.info.num_classes == 2 and joined.info.label_names == ("a", "b")
    assert joined.train.y.tolist() == [0, 1, 0, 1, 0, 1, 0, 0]  # first of each, then the second, ...
    assert torch.equal(joined.train.x[:, 0], joined.train.y.float())  # each example keeps its source
    assert joined.valid is not None and joined.valid.y.tolist() == [0, 1, 0, 1]
    assert joined.test is None  # no source has a test split


def test_sources_of_another_kind_are_refused_and_supports_widen() -> None:
    with pytest.raises(DataError, match=r"shape \(3,\) against \(4,\)"):
        join_sources([_dataset("a", 2, 0.0), _dataset("b", 2, 0.0, (4,))], ["a", "b"])
    with pytest.raises(DataError, match="distinct names"):
        join_sources([_dataset("a", 2, 0.0), _dataset("a", 2, 0.0)], ["a", "a"])
    joined = join_sources([_dataset("a", 2, 0.5, support="unit"), _dataset("b", 2, 2.0)], ["a", "b"])
    assert joined.info.support == "real"


def test_load_dataset_joins_files_and_standardizes_them_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "low.npz", x=rng.normal(0, 1, (60, 2)))
    np.savez(tmp_path / "high.npz", x=rng.normal(10, 1, (40, 2)))
    data = load_dataset(DataConfig(name=[str(tmp_path / "low.npz"), str(tmp_path / "high.npz")]))
    assert data.info.label_names == ("low", "high")
    x, y = data.train.x, data.train.y
    assert abs(float(x.mean())) < 1e-5  # one standardization for both: the sources stay apart
    assert float(x[y == 1].mean()) > 0.5 > -0.5 > float(x[y == 0].mean())
    with pytest.raises(DataError, match="two or more"):
        load_dataset(DataConfig(name=[str(tmp_path / "low.npz")]))
