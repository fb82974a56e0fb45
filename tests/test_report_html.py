"""``simulacra report``: one self-contained HTML page of runs, checked in a real browser.

Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it when missing) opens the page from
disk with the network off: every image must decode (the page counts them into ``data-images-loaded``)
and no script error may occur (``data-errors``); a screenshot is taken and must not be blank. The
checker is shown to fail on a page with one broken image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from simulacra.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    vae, gan = root / "vae", root / "gan"
    common = ["--data", "digits", "--steps", "10", "--batch-size", "32", "--no-progress", "--eval-examples", "8",
              "--eval-samples", "8", "--eval-k", "2"]  # fmt: skip
    assert main(["train", "vae", "--out", str(vae), *common, "--set", "model.hidden=[8]"]) == 0
    assert main(["train", "gan", "--out", str(gan), *common, "--set", "model.channels=[4,8]"]) == 0
    return vae, gan


def _browse(page: Path, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """(the <body>'s data attributes after the page ran, a screenshot) from headless Chromium."""
    if CHROMIUM is None:
        pytest.skip("no chromium (Debian's package; .ci/run installs it)")
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    attributes = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(1)))
    shot = tmp_path / "screenshot.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1600", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return attributes, shot


def test_the_report_renders_in_a_real_browser(runs: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["report", *map(str, runs), "-o", str(page), "--title", "two families"]) == 0
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    images = text.count("<img ")
    assert images >= 6 and text.count("data:image/png;base64,") == images
    assert "Side by side" in text and "none" in text  # the GAN has no NLL: "none" in its column
    attributes, shot = _browse(page, tmp_path)
    assert attributes["data-images"] == str(images)
    assert attributes["data-images-loaded"] == str(images), attributes
    assert attributes["data-errors"] == ""
    picture = Image.open(shot).convert("L")
    low, high = picture.getextrema()
    assert picture.size == (1200, 1600) and high - low > 100  # not a blank page


def test_the_browser_check_sees_a_broken_image(runs: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "one.html"
    assert main(["report", str(runs[0]), "-o", str(page)]) == 0
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'src="data:image/png;base64,[^"]+"', 'src="data:image/png;base64,AAAA"',
                             page.read_text(), count=1))  # fmt: skip
    attributes, _ = _browse(broken, tmp_path)
    assert int(attributes["data-images-loaded"]) == int(attributes["data-images"]) - 1
    assert "image did not load" in attributes["data-errors"]


def test_one_run_writes_its_own_report_and_bad_requests_write_nothing(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vae, gan = map(str, runs)
    assert main(["report", vae]) == 0 and (runs[0] / "report.html").is_file()
    (tmp_path / "afile").write_text("x")
    for argv, message in (
        (["report", vae, gan], "several runs need -o"),
        (["report", vae, "-o", str(tmp_path / "afile" / "r.html")], "is a file, not a folder"),
        (["report", vae, "-o", str(tmp_path / "r.txt")], "expected a file ending in .html"),
        (["report", vae, str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")], "not a run folder"),
        (["report", vae, vae, "-o", str(tmp_path / "r.html")], "named twice"),
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.txt").exists()
