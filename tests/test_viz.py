"""Grids: layout, padding, upscaling and pixel values; plots: files that Pillow can read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simulacra.data.info import DataInfo
from simulacra.errors import DataError
from simulacra.viz.grids import make_grid, save_examples, save_grid
from simulacra.viz.plots import plot_density_2d, plot_latent_scatter, plot_metrics, read_metrics


def test_make_grid_layout_padding_and_values() -> None:
    images = torch.zeros(5, 1, 2, 3)
    for i in range(5):
        images[i] = i / 4
    grid = make_grid(images, nrow=3, padding=1, scale=2, pad_value=1.0)
    # rows = 2; H' = 2·(2·2 + 1) + 1, W' = 3·(2·3 + 1) + 1
    assert grid.shape == (11, 22) and grid.dtype == np.uint8
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()  # border
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = 1 + r * 5, 1 + c * 7
        assert (grid[top : top + 4, left : left + 6] == round(i / 4 * 255)).all()
    assert (grid[6:10, 15:21] == 255).all()  # the empty sixth cell is background


def test_make_grid_upscales_small_images_and_clamps() -> None:
    digits = torch.rand(4, 1, 8, 8) * 3 - 1  # out of range on purpose
    grid = make_grid(digits, padding=0)
    assert grid.shape == (2 * 32, 2 * 32)  # 8 px → 32 px (smallest s with 8s ≥ 28), 2×2 layout
    assert grid.min() >= 0 and grid.max() <= 255
    expected = (digits[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(grid[:32:4, :32:4], expected)  # nearest neighbour: blocks of 4×4
    np.testing.assert_array_equal(grid[3:32:4, 3:32:4], expected)
    assert make_grid(torch.rand(3, 1, 28, 28), padding=0).shape == (28, 3 * 28)  # no upscaling; one full row


def test_make_grid_colour_and_errors() -> None:
    rgb = torch.zeros(2, 3, 28, 28)
    rgb[:, 0] = 1.0  # red
    grid = make_grid(rgb, nrow=2, padding=2)
    assert grid.shape == (28 + 4, 2 * 30 + 2, 3)
    assert tuple(grid[5, 5]) == (255, 0, 0)
    with pytest.raises(DataError, match="C in"):
        make_grid(torch.zeros(2, 2, 4, 4))
    assert make_grid(torch.full((1, 1, 28, 28), float("nan")), padding=0).max() == 0


def test_save_grid_writes_a_png(tmp_path: Path) -> None:
    path = save_grid(torch.rand(6, 1, 8, 8), tmp_path / "deep" / "grid.png", nrow=3)
    with Image.open(path) as im:
        assert im.size == (3 * 33 + 1, 2 * 33 + 1)  # (width, height)
        assert im.mode == "L"


def _read_png(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    with Image.open(path) as im:
        im.verify()
        return im.size


def test_save_examples_dispatches_on_the_data(tmp_path: Path) -> None:
    digits = DataInfo((1, 8, 8), "unit", levels=17)
    assert _read_png(save_examples(torch.rand(16, 1, 8, 8) * 2, digits, tmp_path / "digits.png")) == (
        4 * 33 + 1,
        4 * 33 + 1,
    )
    _read_png(save_examples(torch.randn(200, 2), DataInfo((2,)), tmp_path / "moons.png"))
    _read_png(save_examples(torch.rand(20, 11), DataInfo((11,), "unit"), tmp_path / "tabular.png"))


def test_plot_metrics(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "loss": 100 / (s + 1), "kl": 0.1 * s, "time": 0.5} for s in range(0, 50, 5)]
    lines += [{"step": s, "split": "valid", "loss": 110 / (s + 1)} for s in (10, 30)]
    lines += [{"step": 40, "valid/loss": 3.0, "val_elbo": -2.0, "note": "text"}]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    series = read_metrics(log)
    assert set(series) == {"loss", "kl", "elbo"}
    assert series["loss"]["valid"] == ([10.0, 30.0, 40.0], [10.0, 110 / 31, 3.0])
    assert set(series["loss"]) == {"train", "valid"}
    _read_png(plot_metrics(log, tmp_path / "training.png"))


def test_plot_latent_scatter(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    _read_png(
        plot_latent_scatter(torch.randn(300, 2, generator=g), torch.arange(300) % 10, tmp_path / "a.png")
    )
    _read_png(plot_latent_scatter(torch.randn(300, 8, generator=g), torch.rand(300), tmp_path / "b.png"))
    _read_png(plot_latent_scatter(torch.randn(300, 5, generator=g), None, tmp_path / "c.png"))
    with pytest.raises(DataError, match="labels"):
        plot_latent_scatter(torch.randn(3, 2), torch.arange(4), tmp_path / "d.png")


def test_plot_density_2d(tmp_path: Path) -> None:
    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (x**2).sum(1) - np.log(2 * np.pi)

    samples = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    _read_png(plot_density_2d(log_prob, samples, tmp_path / "density.png", resolution=50))
    _read_png(plot_density_2d(log_prob, samples, tmp_path / "d2.png", ((-3, 3), (-2, 2)), resolution=40))


def test_grids_of_any_count_have_no_grey_filler_cells() -> None:
    from simulacra.viz.grids import grid_columns, make_grid

    assert [grid_columns(n) for n in (10, 12, 50, 64, 7)] == [5, 4, 10, 8, 3]
    white = torch.ones(10, 1, 4, 4)
    grid = make_grid(white, padding=1, scale=1, pad_value=0.5)
    assert grid.shape == (2 * 5 + 1, 5 * 5 + 1)  # 2 rows of 5: a full rectangle
    seven = make_grid(torch.zeros(7, 1, 4, 4), padding=1, scale=1, pad_value=0.5)
    assert seven.shape == (3 * 5 + 1, 3 * 5 + 1)
    assert (seven[2 * 5 + 1 :, 5 + 1 :] == 255).all()  # the empty end of the last row is blank
    assert (seven[2 * 5 + 1 : 3 * 5, 1:5] == 0).all()  # its one image is there


def test_pictures_say_what_they_show(tmp_path: Path) -> None:
    import json as json_

    from PIL import Image

    from simulacra.viz.grids import annotate, make_grid, save_grid
    from simulacra.viz.plots import plot_metrics

    images = torch.zeros(8, 1, 8, 8)
    bare = make_grid(images, nrow=4, padding=1, scale=4)
    labelled = annotate(
        bare, title="samples", row_labels=["original", "reconstruction"], row_height=33, top=1
    )
    assert (
        labelled.shape[0] > bare.shape[0] and labelled.shape[1] > bare.shape[1]
    )  # a title band, a label column
    assert (labelled[:5, :, :] == 255).all()  # the band is white, with black text below its margin
    assert (labelled[5:15] < 128).any()
    save_grid(images, tmp_path / "g.png", nrow=4, title="samples", row_labels=["a", "b"])
    assert Image.open(tmp_path / "g.png").size[1] > bare.shape[0]
    # a multi-group model's losses (loss/critic, loss/generator) and the best and stopping steps
    log = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss/critic": 1.0 / s, "loss/generator": 2.0 / s} for s in range(1, 30)]
    rows += [{"step": s, "valid_loss": 1.0 + abs(s - 12) / 10} for s in range(3, 30, 3)]
    log.write_text("\n".join(json_.dumps(r) for r in rows) + "\n")
    plot_metrics(
        log, tmp_path / "training.png", loss_label="NLL (nats)", best_step=12, stopped_at=29, title="t"
    )
    assert (tmp_path / "training.png").stat().st_size > 1000
