"""The command line end to end on the bundled digits, and one clear error line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simulacra.cli import main

FAST = ["--steps", "30", "--batch-size", "64", "--no-progress", "--eval-k", "8"]
TINY_VAE = ["--set", "model.hidden=[32]", "--set", "model.latent_dim=2"]
HANG_S = 900  # subprocess timeouts guard against hangs only: generous, so a loaded machine never fails them


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), *FAST, *TINY_VAE]) == 0
    return run


def _error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect exit status 2 and exactly one line on stderr starting with 'error:'."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_train_writes_the_run_directory(trained_run: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.json",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
        "interpolation.png",
        "manifold.png",
        "latents.png",
        "training.png",
    ):
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["data"] == "digits"
    test = metrics["test"]
    assert test["nll"]["estimator"] == "IWAE k=8" and test["elbo_nll"]["estimator"] == "ELBO"
    # the IWAE estimate of -log p(x) never exceeds -ELBO by more than noise
    assert test["nll"]["value"] <= test["elbo_nll"]["value"] + 3 * test["elbo_nll"]["stderr"]
    assert test["nll"]["unit"] == "nats" and test["bpd"]["unit"] == "bits/dim"
    assert Image.open(trained_run / "samples.png").size[0] >= 8 * 28


def test_sample_evaluate_interpolate(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tmp_path / "grid.png"
    assert (
        main(
            [
                "sample",
                str(trained_run),
                "-n",
                "16",
                "-o",
                str(grid),
                "--save-tensor",
                str(tmp_path / "x.npy"),
            ]
        )
        == 0
    )
    assert grid.is_file() and np.load(tmp_path / "x.npy").shape == (16, 1, 8, 8)
    assert (
        main(
            ["evaluate", str(trained_run), "--metric", "nll", "--metric", "mmd", "--k", "4", "--limit", "40"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "IWAE k=4" in out and "bits/dim" in out and "MMD" in out
    stored = json.loads((trained_run / "metrics.json").read_text())["evaluations"][-1]
    assert stored["k"] == 4 and stored["metrics"]["nll"]["n"] == 40
    interp = tmp_path / "interp.png"
    assert (
        main(["interpolate", str(trained_run), "-o", str(interp), "--method", "spherical", "--pairs", "2"])
        == 0
    )
    assert interp.is_file()


def test_models_and_datasets_list_everything(capsys: pytest.CaptureFixture[str]) -> None:
    from simulacra.cli.listing import read_catalogue
    from simulacra.models.zoo import MODELS

    # `simulacra models` lists the shipped catalogue; it must be the registry, in order
    assert read_catalogue() == MODELS.describe(), (
        "src/simulacra/cli/catalogue.json is stale: rewrite it with "
        "`python -c 'from simulacra.cli.listing import write_catalogue; write_catalogue()'`"
    )
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS.names():
        assert name in out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "mnist", "binarized-mnist", "moons", "8gaussians", "checkerboard"):
        assert name in out


def test_config_file_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        '[model]\nname = "ae"\nlatent_dim = 3\nhidden = [16]\n[train]\nsteps = 5\nbatch_size = 32\n'
    )
    run = tmp_path / "ae"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--data",
                "digits",
                "--out",
                str(run),
                "--no-progress",
                "--set",
                "train.lr=3e-3",
            ]
        )
        == 0
    )
    stored = json.loads((run / "config.json").read_text())["run"]
    given = {"name": "ae", "latent_dim": 3, "hidden": [16]}  # with every other setting's default
    assert {k: stored["model"][k] for k in given} == given and stored["model"]["activation"] == "relu"
    assert stored["train"]["lr"] == 3e-3 and stored["train"]["steps"] == 5
    metrics = json.loads((run / "metrics.json").read_text())
    assert "nll" not in metrics["test"] and "mmd" in metrics["test"]  # an AE has no likelihood


def test_resume_continues_a_run(tmp_path: Path) -> None:
    run = tmp_path / "r"
    base = ["--data", "digits", "--batch-size", "64", "--no-progress", *TINY_VAE]
    assert (
        main(
            ["train", "vae", "--out", str(run), "--steps", "20", *base, "--set", "train.checkpoint_every=10"]
        )
        == 0
    )
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 20
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # already finished: a no-op
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 20


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "vea", "--data", "digits"], "unknown model 'vea'. Did you mean 'vae'"),
        (["train", "vae", "--data", "digitz"], "unknown dataset 'digitz'"),
        (["train", "vae", "--data", "no/such/file.npz"], "no such file"),
        (["train", "vae", "--data", "digits", "--set", "model.latent_dim"], "section.key=value"),
        (["train", "vae", "--data", "digits", "--set", "train.lrr=1"], "unknown key(s) ['lrr']"),
        (["train", "vae", "--data", "digits", "--set", "model.latnt_dim=3", *FAST], "latnt_dim"),
        (["train", "--data", "digits"], "which model"),
        (["train", "vae", "--data", "mnist", "--data-dir", "/nonexistent-dir"], "mnist"),
        (["sample", "/nonexistent-run"], "does not exist"),
        (["evaluate", "/nonexistent-run"], "does not exist"),
        (["train", "--resume", "/nonexistent-run"], "does not exist"),
    ],
)
def test_bad_input_gives_one_clear_error_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _error_line(
        capsys,
        [*argv, "--out", str(tmp_path / "o")] if argv[0] == "train" and "--resume" not in argv else argv,
    )
    assert words in line, line


def test_bad_data_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nan = np.random.default_rng(0).normal(size=(50, 3))
    nan[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert "NaN" in _error_line(
        capsys, ["train", "vae", "--data", str(tmp_path / "nan.npy"), "--out", str(tmp_path / "a")]
    )
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in _error_line(
        capsys, ["train", "vae", "--data", str(tmp_path / "empty.csv"), "--out", str(tmp_path / "b")]
    )
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    assert "shape" in _error_line(
        capsys, ["train", "vae", "--data", str(tmp_path / "flat.npy"), "--out", str(tmp_path / "c")]
    )
    np.save(tmp_path / "real.npy", np.random.default_rng(0).normal(size=(50, 3)))
    line = _error_line(
        capsys,
        [
            "train",
            "vae",
            "--data",
            str(tmp_path / "real.npy"),
            "--out",
            str(tmp_path / "d"),
            "--set",
            "model.likelihood=bernoulli",
        ],
    )
    assert "bernoulli" in line.lower()


def test_bad_checkpoints(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_bytes((trained_run / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert "corrupt" in _error_line(capsys, ["sample", str(broken)]).lower()
    (broken / "model.safetensors").unlink()
    assert "model.safetensors" in _error_line(capsys, ["sample", str(broken)])
    (broken / "config.json").write_text("{ not json")
    assert "config.json" in _error_line(capsys, ["evaluate", str(broken)])
    assert "--label" in _error_line(capsys, ["sample", str(trained_run), "--label", "3"])


def test_help_and_the_model_list_start_without_torch(tmp_path: Path) -> None:
    """`simulacra --help`, a verb's help and `simulacra models` import neither torch nor numpy
    (issue 19: they must answer in well under a second)."""
    from simulacra.cli.inverse import MASK_KINDS
    from simulacra.data.degradations import MASKS

    assert MASK_KINDS == MASKS
    script = (
        "import contextlib, io, sys\n"
        "from simulacra.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['inpaint', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['models']) == 0\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_S, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_python_dash_m_reports_errors_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "simulacra", "train", "vea", "--data", "digits"],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown model 'vea'") and "Traceback" not in done.stderr


def test_torchrun_trains_through_the_cli(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 -m simulacra train ...`: DDP on gloo, rank 0 writes the run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={port}",
            "-m",
            "simulacra",
            "train",
            "vae",
            "--data",
            "digits",
            "--out",
            str(run),
            "--steps",
            "6",
            "--batch-size",
            "32",
            "--no-progress",
            "--eval-k",
            "4",
            *TINY_VAE,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_S,
    )
    report = f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, report
    assert done.stdout.count("vae on digits") == 1, report  # only rank 0 speaks and writes
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 6 and (run / "model.safetensors").is_file(), report


def test_small_image_folder_with_labels(tmp_path: Path) -> None:
    """A folder of PNGs in class sub-folders, with fewer held-out images than a picture grid has."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(15):
            Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png"
            )
    run = tmp_path / "run"
    argv = [
        "train",
        "conv-vae",
        "--data",
        str(tmp_path / "imgs"),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--out",
        str(run),
        "--no-progress",
        "--eval-k",
        "2",
        "--set",
        "model.channels=[4]",
        "--set",
        "model.latent_dim=2",
    ]
    assert main(argv) == 0
    for name in ("samples.png", "reconstructions.png", "interpolation.png", "latents.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["info"]["event_shape"] == [1, 12, 12] and config["info"]["num_classes"] == 2
