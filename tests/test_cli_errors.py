"""Every input a clear error: one `error:` line and exit status 2, before any work is done, and
options taken only as spelled and each with a help line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from simulacra.cli import _parser, main

TRAIN = ["train", "vae", "--data", "digits", "--steps", "2", "--no-progress", "--set", "model.hidden=[8]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("errors") / "run"
    assert main([*TRAIN, "--out", str(out), "--eval-k", "2"]) == 0
    return out


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--lr", "-1"], "train.lr must be a finite number >= 0; found -1"),
        (["--lr", "nan"], "train.lr must be a finite number >= 0; found nan"),
        (["--set", "train.lr=abc"], "train.lr must be a finite number >= 0; found 'abc'"),
        (["--set", "train.epochs=abc"], "train.epochs must be a finite number > 0 or none; found 'abc'"),
        (["--set", "train.weight_decay=-1"], "train.weight_decay must be a finite number >= 0; found -1"),
        (["--set", "train.betas=[0.5, 1.5]"], "train.betas must be two numbers in [0, 1)"),
        (["--set", "train.log_every=0"], "train.log_every must be an integer >= 1; found 0"),
        (["--batch-size", "0"], "train.batch_size must be an integer >= 1; found 0"),
        (["--eval-k", "0"], "--eval-k must be at least 1; found 0"),
        (["--eval-samples", "1"], "--eval-samples must be at least 2; found 1"),
        (["--set", "callbacks.kl-warmup.step=5"], "has no setting 'step'"),
    ],
)
def test_bad_training_settings(
    extra: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in _one_error(capsys, [*TRAIN, "--out", str(tmp_path / "run"), *extra])
    assert not (tmp_path / "run").exists()  # nothing written


def test_bad_options_of_the_verbs_on_a_run(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["evaluate", str(run), "--k", "0"], "--k must be at least 1; found 0"),
        (["evaluate", str(run), "--limit", "0"], "--limit must be at least 1; found 0"),
        (["evaluate", str(run), "--metric", "mmd", "--samples", "1"], "--samples must be at least 2"),
        (["sample", str(run), "-o", str(tmp_path / "grid.gif")], "expected a file ending in .png or .jpg"),
        (["sample", str(run), "-o", str(tmp_path / "grid")], "found no extension"),
        (["sample", str(run), "-o", str(tmp_path)], "ending in"),
        (["sample", str(run), "--weights", "ema"], "kept no moving average"),
        (["interpolate", str(run), "--points", "1"], "--points ≥ 2"),
        (["inpaint", str(run), "--sampler-steps", "2"], "vae completes the missing entries itself"),
        (["super-resolve", str(run)], "needs a diffusion model (e.g. ddpm) or a pix2pix"),
    ]
    for argv, words in cases:
        assert words in _one_error(capsys, argv), argv
    assert not list(tmp_path.iterdir())


def test_a_corrupt_npz_is_never_offered_to_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "data.npz"
    bad.write_bytes(b"certainly not an archive")
    line = _one_error(capsys, [*TRAIN, "--data", str(bad), "--out", str(tmp_path / "run")])
    assert "not a valid .npz archive" in line and "allow_pickle" not in line and "pickle.load" not in line
    np.save(tmp_path / "ok.npy", np.zeros((3, 2)))
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    assert "allow_pickle" not in _one_error(capsys, [*TRAIN, "--data", str(tmp_path / "bad.npy")])


@pytest.mark.parametrize("abbreviation", ["--step", "--ep", "--over"])
def test_options_are_taken_only_as_spelled(abbreviation: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "vae", "--data", "digits", abbreviation, "3"])
    assert exit_.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_command_has_a_help_line() -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub in _subparsers(_parser()).items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert not missing, f"options without help: {missing}"


def test_steps_mean_training_steps_wherever_they_appear() -> None:
    for name, sub in _subparsers(_parser()).items():
        for action in sub._actions:
            if "--steps" in action.option_strings:
                assert "optimizer steps" in (action.help or ""), (name, action.help)


def test_every_command_takes_threads(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    for name, sub in _subparsers(_parser()).items():
        assert any("--threads" in a.option_strings for a in sub._actions), name
    before = torch.get_num_threads()
    try:
        assert main(["models", "--threads", "2"]) == 0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "--threads must be at least 1" in _one_error(capsys, ["datasets", "--threads", "0"])


def test_init_is_refused_where_it_does_not_apply(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "second"
    cases = [
        ([*TRAIN, "--out", str(out), "--init", str(run)], "vae trains from scratch; it does not start from"),
        (["train", "--resume", str(run), "--init", str(run)], "drop MODEL, --config, --set and --init"),
    ]
    for argv, words in cases:
        assert words in _one_error(capsys, argv), argv
    assert not out.exists()
