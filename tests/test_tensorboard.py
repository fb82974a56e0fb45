"""``--tensorboard``: the run's scalars, latent histograms and sample grids as TensorBoard events,
read back with TensorBoard's own event reader; a resumed run continues one history."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulacra.cli import main

pytest.importorskip("tensorboard")


def _events(run: Path) -> object:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(
        str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "histograms": 0}
    )
    acc.Reload()
    return acc


def test_a_run_writes_scalars_histograms_and_sample_grids(tmp_path: Path) -> None:
    run = tmp_path / "vae"
    argv = ["train", "vae", "--data", "digits", "--out", str(run), "--steps", "20", "--batch-size", "32",
            "--no-eval", "--no-progress", "--tensorboard", "--set", "train.log_every=5",
            "--set", "train.sample_every=10", "--set", "model.hidden=[8]", "--set", "model.latent_dim=2"]  # fmt: skip
    assert main(argv) == 0
    acc = _events(run)
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("loss")] == [5, 10, 15, 20]
    assert {"loss", "elbo", "kl"} <= set(tags["scalars"])
    assert [e.step for e in acc.Images("samples")] == [10, 20]
    histogram = acc.Histograms("latent/posterior_mean")
    assert [e.step for e in histogram] == [5, 10, 15, 20] and histogram[-1].histogram_value.num == 64 * 2
    # resumed for 10 more steps: one history, no step written twice
    assert main(["train", "--resume", str(run), "--steps", "30", "--no-progress", "--no-eval"]) == 0
    steps = [e.step for e in _events(run).Scalars("loss")]
    assert steps == [5, 10, 15, 20, 25, 30]


def test_tensorboard_off_writes_no_events(tmp_path: Path) -> None:
    run = tmp_path / "vae"
    argv = ["train", "vae", "--data", "digits", "--out", str(run), "--steps", "2", "--no-eval", "--no-progress",
            "--set", "model.hidden=[8]"]  # fmt: skip
    assert main(argv) == 0
    assert not (run / "tensorboard").exists()
