"""``simulacra compare``: runs of several families on one table, on the same held-out digits.

A VAE (a likelihood bound, importance-sampled), a MADE (an exact likelihood) and a GAN (none) are
put side by side, with the data-vs-data floor (held-out digits against as many other held-out
digits) as a last column; the GAN's NLL is "none", not an error; figures are cached in each run so a
second comparison computes nothing; runs on other data, bad counts and bad destinations are one
error line each, with nothing written.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simulacra.cli import main
from simulacra.report import compare as compare_module

FAST = ["--steps", "2", "--batch-size", "16", "--no-eval", "--no-progress"]
SMALL = ["--samples", "20", "--limit", "20", "--k", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    settings = {
        "vae": ["--set", "model.hidden=[8]", "--set", "model.latent_dim=2"],
        "made": ["--set", "model.hidden=[16]"],
        "gan": ["--set", "model.channels=[4,8]", "--set", "model.latent_dim=4"],
    }
    out = {}
    for name, extra in settings.items():
        out[name] = root / name
        assert main(["train", name, "--data", "digits", "--out", str(out[name]), *FAST, *extra]) == 0
    out["moons"] = root / "moons"
    assert main(["train", "maf", "--data", "moons", "--out", str(out["moons"]), *FAST]) == 0
    return out


def test_three_families_on_one_table(runs: dict[str, Path], tmp_path: Path) -> None:
    table = tmp_path / "table.md"
    argv = ["compare", str(runs["vae"]), str(runs["made"]), str(runs["gan"]), *SMALL, "-o", str(table)]
    assert main(argv) == 0
    lines = table.read_text().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {cells[0]: dict(zip(header, cells, strict=True)) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}  # fmt: skip
    assert set(rows) == {"vae", "made", "gan", "held-out data (floor)"}
    floor = rows["held-out data (floor)"]  # held-out digits against as many others: the best possible
    assert floor["nll"] == "none" and float(floor["mmd"]) < min(float(rows[r]["mmd"]) for r in ("vae", "gan"))
    assert rows["gan"]["nll"] == "none" and rows["gan"]["NLL estimator"] == "none"
    assert rows["made"]["NLL estimator"].startswith("exact") and "IWAE" in rows["vae"]["NLL estimator"]
    assert all(rows[r]["mmd"] != "none" for r in rows)
    assert float(rows["vae"]["nll"].split(" ± ")[0]) > 0
    as_json = tmp_path / "table.json"
    assert main([*argv[:-2], "-o", str(as_json)]) == 0  # cached: the same figures
    records = json.loads(as_json.read_text())
    assert [Path(r["run"]).name for r in records] == ["vae", "made", "gan", "held-out data (floor)"]
    assert all(r["cached"] for r in records[:3]) and records[2]["figures"]["nll"] is None
    as_csv = tmp_path / "table.csv"
    assert main([*argv[:-2], "-o", str(as_csv)]) == 0
    assert next(csv.reader(as_csv.open()))[:4] == ["run", "model", "parameters", "train s"]


def test_a_second_comparison_reads_the_cache(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["compare", str(runs["vae"]), str(runs["gan"]), "--samples", "10", "--limit", "10", "--k", "2"]
    assert main(argv) == 0
    assert (runs["vae"] / "compare.json").is_file()
    calls = []
    monkeypatch.setattr(compare_module, "evaluate", lambda *a, **k: calls.append(a) or {})
    assert main(argv) == 0 and not calls  # nothing computed again
    assert main([*argv, "--no-cache"]) == 0 and calls  # unless asked


def test_bad_comparisons_are_one_error_line_and_write_nothing(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.md"
    vae, gan = str(runs["vae"]), str(runs["gan"])
    for argv, message in (
        (["compare", vae, str(runs["moons"]), "-o", str(out)], "differ (name 'digits' against 'moons')"),
        (["compare", vae, gan, "--samples", "0", "-o", str(out)], "--samples must be at least 2"),
        (
            ["compare", vae, gan, "-o", str(tmp_path / "t.txt")],
            "expected a file ending in .md, .csv, .json",
        ),
        (["compare", vae, vae, "-o", str(out)], "named twice"),
        (
            ["compare", vae, gan, "--features", str(tmp_path / "none.safetensors"), "-o", str(out)],
            "no feature",
        ),
        (["compare", vae, str(tmp_path / "missing"), "-o", str(out)], "missing"),
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not out.exists() and not (tmp_path / "t.txt").exists()
    with pytest.raises(SystemExit) as no_run:  # argparse's usage error
        main(["compare"])
    assert no_run.value.code == 2


def test_mnist_shaped_runs_get_the_image_metrics_of_the_shipped_network(tmp_path: Path) -> None:
    """On 1×28×28 grey images and without --features, the table has FID, KID and
    precision/recall on the shipped MNIST network, its floor too, and each figure names it;
    classes are left out where the data's 2 classes are not the network's 10."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(100):
            Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(images / label / f"{i}.png")
    run = tmp_path / "gan"
    settings = ["--set", "model.channels=[4,8]", "--set", "model.latent_dim=4"]
    assert main(["train", "gan", "--data", str(images), "--out", str(run), *FAST, *settings]) == 0
    out = tmp_path / "table.json"
    assert main(["compare", str(run), "--samples", "10", "--limit", "10", "-o", str(out)]) == 0
    gan, floor = json.loads(out.read_text())
    assert {"fid", "kid", "precision", "recall"} <= set(gan["figures"]) and "class_kl" not in gan["figures"]
    for row in (gan, floor):
        assert "features: simulacra MNIST classifier (" in row["figures"]["fid"]["estimator"]
        assert "shipped)" in row["figures"]["kid"]["estimator"]


def test_the_report_carries_the_compare_table(runs: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    argv = ["report", str(runs["vae"]), str(runs["gan"]), "-o", str(page), "--compare", *SMALL[:4]]
    assert main(argv) == 0
    text = page.read_text()
    assert '<table class="compare">' in text and "held-out data (floor)" in text
    assert (runs["gan"] / "compare.json").is_file()  # scored once, cached like `compare`
    bad = tmp_path / "bad.html"
    assert (
        main(["report", str(runs["vae"]), str(runs["moons"]), "-o", str(bad), "--compare", *SMALL[:4]]) == 2
    )
    assert not bad.exists()  # runs on different data: refused before anything is written
