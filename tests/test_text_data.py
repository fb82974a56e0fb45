"""Character-level text (``text:PATH``): splits by position, vocabulary, round trips, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from simulacra.cli import main
from simulacra.config import DataConfig
from simulacra.data import load_dataset
from simulacra.data.text import UNKNOWN, decode, encode, parse_text_spec
from simulacra.errors import DataError

TEXT = "the quick brown fox jumps over the lazy dog. " * 60  # 2700 characters


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "book.txt"
    path.write_text(TEXT + "ZZ" * 50, encoding="utf-8")  # 'Z' only in the held-out tail
    return path


def test_text_is_split_by_position_into_windows(text_file: Path) -> None:
    data = load_dataset(DataConfig(f"text:{text_file}?length=20"))
    text = text_file.read_text()
    n_train = int(len(text) * 0.9)
    vocab = data.info.vocabulary
    assert vocab == "".join(sorted(set(text[:n_train]))) + UNKNOWN  # 'Z' is unseen in training
    assert data.info.event_shape == (20,) and data.info.levels == len(vocab)
    assert data.info.support == "unit"
    assert len(data.train) == n_train // 20
    # the training windows are the text's first characters, in order
    assert "".join(decode(data.train.x[:3], vocab)) == text[:60]
    assert decode(data.test.x[-1:], vocab)[0].endswith(UNKNOWN * 2)
    assert data.valid is not None and len(data.valid) == int(len(text) * 0.05) // 20


def test_encode_decode_round_trip() -> None:
    vocab = "abc "
    x = encode("a cab", vocab)
    assert torch.equal(x, torch.tensor([0.0, 3.0, 2.0, 0.0, 1.0]) / 3)
    assert decode(x, vocab) == ["a cab"]
    with pytest.raises(DataError, match="outside the vocabulary"):
        encode("abd", vocab)


def test_text_specs_and_errors(tmp_path: Path) -> None:
    assert parse_text_spec("text:a/b.txt") == (Path("a/b.txt"), 128)
    assert parse_text_spec("text:a/b.txt?length=7") == (Path("a/b.txt"), 7)
    with pytest.raises(DataError, match="length=T"):
        parse_text_spec("text:a.txt?length=x")
    with pytest.raises(DataError, match="not found"):
        load_dataset(DataConfig("text:" + str(tmp_path / "missing.txt")))
    short = tmp_path / "short.txt"
    short.write_text("abc")
    with pytest.raises(DataError, match="fewer than one window"):
        load_dataset(DataConfig(f"text:{short}"))
    with pytest.raises(DataError, match="binarize"):
        load_dataset(DataConfig(f"text:{short}", binarize="static"))


def test_cli_transformer_on_text_reports_bits_per_character(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "gpt"
    argv = ["train", "transformer", "--data", f"text:{text_file}?length=16", "--out", str(run)]
    argv += ["--steps", "30", "--batch-size", "32", "--lr", "3e-3", "--no-progress"]
    argv += ["--set", "model.dim=16", "--set", "model.layers=1", "--set", "model.heads=2"]
    assert main(argv) == 0
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["bpc"]["unit"] == "bits/character" and "bpd" not in test
    assert test["bpc"]["value"] == pytest.approx(test["nll"]["value"] / (16 * math.log(2)), rel=1e-9)
    assert test["bpc"]["value"] < math.log2(28)  # better than uniform over the vocabulary
    assert (run / "samples.txt").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metric", "nll", "--limit", "5"]) == 0
    assert "bits/character" in capsys.readouterr().out
    out = tmp_path / "s.txt"
    assert main(["sample", str(run), "-n", "3", "-o", str(out), "--top-k", "1"]) == 0
    lines = out.read_text(encoding="utf-8").split("\n\n")
    assert len(lines) == 3 and all(len(line.strip("\n")) == 16 for line in lines)
    assert lines[0] == lines[1]  # top-1 decoding is deterministic
