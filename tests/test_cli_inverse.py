"""Inverse problems from the command line: inpaint, super-resolve, denoise and colorize with tiny
diffusion models trained on digits (grey, class-conditional) and on a folder of colour images.

The pictures are read back: a grid of 8x8 images shown 4x larger with 1 pixel of padding
(:func:`simulacra.viz.grids.make_grid`), one row per observation: the observation, the -n
solutions, then the original when the observation was made from a held-out example.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simulacra.cli import main

FAST = ["--steps", "3", "--batch-size", "32", "--no-progress"]
TINY = ["--set", "model.timesteps=20", "--set", "model.arch=mlp", "--set", "model.hidden=[16]"]
SOLVE = ["--examples", "2", "-n", "2", "--sampler-steps", "5"]
CELL = 8 * 4 + 1  # an 8x8 image at scale 4, and the padding after it


def _grid_size(rows: int, cols: int) -> tuple[int, int]:
    return rows * CELL + 1, cols * CELL + 1


def _cell(picture: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 8x8 image (uint8, (8, 8) or (8, 8, 3)) shown at ``row``, ``col`` of a grid."""
    top, left = 1 + row * CELL, 1 + col * CELL
    return picture[top : top + CELL - 1 : 4, left : left + CELL - 1 : 4].astype(int)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli-inverse") / "ddpm"
    argv = ["train", "ddpm", "--data", "digits", "--out", str(run), *FAST, *TINY,
            "--set", "model.conditional=true"]  # fmt: skip
    assert main(argv) == 0
    return run


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-inverse-colour")
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir()
    for i in range(30):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(root / "imgs" / f"{i}.png")
    run = root / "ddpm"
    assert main(["train", "ddpm", "--data", str(root / "imgs"), "--out", str(run), *FAST, *TINY]) == 0
    return run


def test_inpaint_keeps_the_observed_pixels(grey_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "inpaint.png"
    assert (
        main(["inpaint", str(grey_run), *SOLVE, "--mask-kind", "center", "--resample", "2", "-o", str(png)])
        == 0
    )
    picture = _read(png)
    assert picture.shape == _grid_size(2, 1 + 2 + 1)  # observation | 2 solutions | original
    kept = np.ones((8, 8), dtype=bool)
    kept[2:6, 2:6] = False  # the centre half of each side is filled
    for row in range(2):
        original = _cell(picture, row, 3)
        observation = _cell(picture, row, 0)
        np.testing.assert_array_equal(observation[kept], original[kept])
        assert np.all(np.abs(observation[~kept] - 127.5) <= 0.5), "the hole is shown in grey"
        for col in (1, 2):
            np.testing.assert_array_equal(_cell(picture, row, col)[kept], original[kept])


def test_super_resolve_observes_the_block_means(grey_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "sr.png"
    assert main(["super-resolve", str(grey_run), *SOLVE, "--factor", "2", "-o", str(png)]) == 0
    picture = _read(png)
    assert picture.shape == _grid_size(2, 4)
    for row in range(2):
        original, observation = _cell(picture, row, 3), _cell(picture, row, 0)
        means = original.reshape(4, 2, 4, 2).mean(axis=(1, 3))  # 2x2 block means of the original
        np.testing.assert_allclose(observation[::2, ::2], means, atol=1.0)  # rounding to 1/255
        np.testing.assert_array_equal(observation, np.kron(observation[::2, ::2], np.ones((2, 2), int)))


def test_denoise_is_reproducible_with_its_seed(grey_run: Path, tmp_path: Path) -> None:
    pngs = [tmp_path / "a.png", tmp_path / "b.png"]
    for png in pngs:
        assert main(["denoise", str(grey_run), *SOLVE, "--noise", "0.2", "--seed", "3", "-o", str(png)]) == 0
    a, b = _read(pngs[0]), _read(pngs[1])
    assert a.shape == _grid_size(2, 4)
    np.testing.assert_array_equal(a, b)
    noise = _cell(a, 0, 0) - _cell(a, 0, 3)  # observation − original: σ = 0.2, clipped to [0, 1]
    assert 0.05 * 255 < noise.std() < 0.3 * 255


def test_inpaint_an_image_file_with_a_mask_file(grey_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = (rng.random((8, 8)) * 255).astype(np.uint8)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, :3] = 255  # white: fill the three left columns
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "filled.png"
    argv = ["inpaint", str(grey_run), "--image", str(tmp_path / "image.png"), "--mask", str(tmp_path / "mask.png"),
            "-n", "2", "--sampler-steps", "5", "--resample", "1", "--label", "3", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    picture = _read(out)
    assert picture.shape == _grid_size(1, 1 + 2)  # no original to show
    # the observed pixels are kept, on the model's data levels: like samples, the answer of an
    # inverse task is rounded to the levels of the data the model was trained on (17 for digits),
    # so a 256-level image file comes back quantized to them
    on_levels = np.round(np.round(image / 255 * 16) / 16 * 255)
    for col in (1, 2):
        np.testing.assert_array_equal(_cell(picture, 0, col)[:, 3:], on_levels[:, 3:])


def test_colorize_a_colour_model(colour_run: Path) -> None:
    assert main(["colorize", str(colour_run), *SOLVE]) == 0  # held out: the folder's valid split
    picture = _read(colour_run / "colorize.png")
    assert picture.ndim == 3 and picture.shape[2] == 3
    rows = (picture.shape[0] - 1) // CELL
    assert rows >= 1 and picture.shape[:2] == _grid_size(rows, 4)
    for row in range(rows):
        grey, original = _cell(picture, row, 0), _cell(picture, row, 3)
        assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])
        np.testing.assert_allclose(grey[..., 0], original.mean(-1), atol=1.0)


def test_user_errors(grey_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vae = tmp_path / "vae"
    argv = ["train", "vae", "--data", "digits", "--out", str(vae), "--steps", "2", "--no-progress",
            "--eval-k", "2", "--set", "model.hidden=[16]", "--set", "model.latent_dim=2"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["inpaint", str(vae), *SOLVE]) == 2  # a VAE completes by resampling: no sampler steps
    err = capsys.readouterr().err
    assert "steps apply to diffusion models" in err and "vae completes the missing entries itself" in err
    assert main(["super-resolve", str(vae), "--factor", "2"]) == 2
    assert "vae has no denoiser" in capsys.readouterr().err

    assert main(["colorize", str(grey_run), *SOLVE]) == 2
    assert "grey images (1 channel); colorize needs a model of colour images" in capsys.readouterr().err

    Image.fromarray(np.full((6, 6), 255, dtype=np.uint8)).save(tmp_path / "small.png")
    assert main(["inpaint", str(grey_run), *SOLVE, "--mask", str(tmp_path / "small.png")]) == 2
    assert "the mask" in (err := capsys.readouterr().err) and "6x6" in err and "expected 8x8" in err

    assert main(["super-resolve", str(grey_run), "--image", str(tmp_path / "small.png")]) == 2
    assert "6x6" in (err := capsys.readouterr().err) and "expected 4x4" in err

    assert main(["denoise", str(grey_run), *SOLVE, "--label", "10"]) == 2
    assert "label 10 is out of range: the labels are 0..9" in capsys.readouterr().err


def test_a_run_whose_config_names_other_data_is_refused(grey_run: Path, tmp_path: Path, capsys) -> None:
    """Held-out examples of another shape than the model's (a config edited, or written without its
    data section): one clear message, no traceback."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(grey_run, run)
    config = json.loads((run / "config.json").read_text())
    config["run"]["data"] = {"name": "moons"}
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["inpaint", str(run), *SOLVE]) == 2
    err = capsys.readouterr().err
    assert "examples of shape (2,)" in err and "(1, 8, 8)" in err and "--image" in err


def test_super_resolve_with_a_pix2pix_trained_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pix2pix trained for x2 answers `super-resolve --factor 2` in one pass, consistently with
    the low-resolution image (its 2x2 block means), refuses x4 and the sampler options, and
    `sample` shows translations of held-out images."""
    run = tmp_path / "pix2pix"
    argv = ["train", "pix2pix", "--data", "digits", "--out", str(run), *FAST, "--no-eval",
            "--set", "model.factor=2", "--set", "model.channels=[4,8]", "--set", "model.patch_channels=[4,8]"]  # fmt: skip
    assert main(argv) == 0
    assert main(["super-resolve", str(run), "--factor", "2", "--examples", "2", "-n", "2"]) == 0
    picture = _read(run / "super-resolve.png")
    assert picture.shape[:2] == _grid_size(2, 4)  # observation | 2 solutions | original
    for row in range(2):
        low = _cell(picture, row, 0).reshape(4, 2, 4, 2).mean(axis=(1, 3))
        for col in (1, 2):
            solution = _cell(picture, row, col).reshape(4, 2, 4, 2).mean(axis=(1, 3))
            inside = (low > 8) & (low < 247)  # at black or white blocks, clamping to [0, 1] moves the mean
            np.testing.assert_allclose(solution[inside], low[inside], atol=8.0)  # 17 levels: 16 apart
    capsys.readouterr()
    assert main(["super-resolve", str(run), "--factor", "4", "--examples", "2"]) == 2
    assert "trained for super-resolution x2, not super-resolution x4" in capsys.readouterr().err
    assert main(["super-resolve", str(run), "--factor", "2", "--sampler-steps", "5"]) == 2
    assert "apply to diffusion models" in capsys.readouterr().err
    assert main(["sample", str(run), "-n", "4"]) == 0
