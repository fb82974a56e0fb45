"""Work after training is bounded, visible and optional: the evaluation plan, its time budget, the
progress lines, strict JSON, and the CLI's --eval-examples / --eval-samples / --eval-k / --no-eval."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import simulacra.report.run as report_run
from simulacra.cli import main
from simulacra.data.info import DataInfo, Split
from simulacra.metrics.likelihood import Estimate
from simulacra.models.zoo import build_model
from simulacra.progress import Progress
from simulacra.report import plan_evaluation
from simulacra.samplers import DPMSolver


def _strict(path: Path) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{path} holds {constant}, which strict JSON has not")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_pooled_estimates_equal_the_estimate_of_all_values() -> None:
    values = torch.randn(103, generator=torch.Generator().manual_seed(0)).double()
    parts = [Estimate.from_values(v, "exact", "nats") for v in (values[:8], values[8:9], values[9:])]
    pooled, whole = Estimate.pooled(parts), Estimate.from_values(values, "exact", "nats")
    assert (pooled.n, pooled.estimator) == (103, "exact")
    assert pooled.value == pytest.approx(whole.value, rel=1e-12)
    assert pooled.stderr == pytest.approx(whole.stderr, rel=1e-12)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_chunks_fill_the_time_share_and_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(report_run, "time", SimpleNamespace(perf_counter=clock.perf_counter))

    def chunks(share: float | None, total: int, seconds_each: float) -> list[int]:
        work = report_run._Clock(share, total, first=4)
        sizes = []
        while chunk := work.next_chunk():
            clock.now += chunk * seconds_each
            work.record(chunk)
            sizes.append(chunk)
        return sizes

    assert chunks(10.0, 1000, 1.0) == [4, 6]  # 4 s measured, then what the 6 s left fit
    assert chunks(100.0, 1000, 0.01) == [4, 16, 80, 400, 500]  # cheap: grows, never past 4× done
    assert chunks(10.0, 1000, 20.0) == [4]  # the first chunk always runs, then nothing fits
    assert chunks(None, 300, 1.0) == [300]  # no budget: one call


def test_the_plan_names_its_reasons_and_a_fast_sampler() -> None:
    info = DataInfo((1, 8, 8), "unit", num_classes=10, levels=17)
    ddpm = build_model({"name": "ddpm", "timesteps": 10, "channels": [4, 8], "attention_resolution": 4}, info)
    split = Split(torch.rand(297, 1, 8, 8))
    plan = plan_evaluation(ddpm, split, train_seconds=600.0)
    assert isinstance(plan.sample_options["sampler"], DPMSolver) and plan.sampling.startswith("dpm-solver")
    assert (plan.examples, plan.samples, plan.budget_seconds, plan.num_samples) == (297, 297, 150.0, 1)
    assert plan.reasons == {"examples": "split size", "samples": "split size"}
    asked = plan_evaluation(ddpm, split, train_seconds=600.0, examples=50, samples=40)
    assert (asked.examples, asked.samples, asked.budget_seconds) == (50, 40, None)  # given: no time limit
    big = Split(torch.rand(5000, 1, 8, 8))
    assert plan_evaluation(ddpm, big, train_seconds=1.0).budget_seconds == 10.0  # at least ten seconds
    capped = plan_evaluation(ddpm, big)
    assert (capped.examples, capped.samples, capped.reasons["examples"]) == (1000, 500, "maximum")
    ae = build_model({"name": "ae", "latent_dim": 2, "hidden": [8]}, info)
    assert (
        plan_evaluation(ae, split).examples == 0
        and plan_evaluation(ae, split).reasons["examples"] == "no likelihood"
    )


def test_progress_prints_plain_lines_when_piped() -> None:
    stream = io.StringIO()
    bar = Progress(10, "NLL", stream=stream, every=0.0)
    bar.advance(3)
    bar.advance(7)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("NLL: 3/10 (30%)") and "left" in lines[0]
    assert lines[-1].startswith("NLL: 10/10 (100%)")


def _train_without_eval(run: Path) -> bool:
    """Five steps of a VAE on the digits into ``run``, without the evaluation after training."""
    return (
        main(
            [
                "train",
                "vae",
                "--data",
                "digits",
                "--steps",
                "5",
                "--out",
                str(run),
                "--no-progress",
                "--no-eval",
            ]
        )
        == 0
    )


TINY_SDE = ["--set", "model.hidden=[16]", "--set", "data.num_samples=400", "--no-progress"]


def test_a_tiny_diffusion_run_ends_with_a_bounded_evaluation_in_strict_json(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "score-sde", "--data", "moons", "--steps", "20", "--out", str(run), *TINY_SDE]) == 0
    record = _strict(run / "metrics.json")
    evaluation = record["evaluation"]
    assert evaluation["budget_seconds"] == 10.0 and evaluation["sampling"].startswith("dpm-solver")
    assert set(evaluation["limited_by"]) == {"examples", "samples"}
    assert 4 <= evaluation["examples"] == record["test"]["nll"]["n"] <= 400
    assert record["test"]["mmd"]["stderr"] is None and "stderr_note" in record["test"]["mmd"]
    assert math.isfinite(record["test"]["nll"]["value"])


def test_eval_options_are_honoured_and_match_simulacra_evaluate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", "vae", "--data", "digits", "--steps", "10", "--out", str(run), "--no-progress"]
    argv += ["--set", "model.hidden=[8]", "--eval-examples", "30", "--eval-samples", "20", "--eval-k", "3"]
    assert main(argv) == 0
    record = _strict(run / "metrics.json")
    assert (record["evaluation"]["examples"], record["evaluation"]["samples"]) == (30, 20)
    assert record["test"]["nll"]["estimator"] == "IWAE k=3" and record["test"]["mmd"]["n"] == 20
    assert main(["evaluate", str(run), "--limit", "30", "--k", "3"]) == 0
    evaluated = _strict(run / "metrics.json")["evaluations"][-1]["metrics"]
    assert evaluated["nll"]["value"] == pytest.approx(record["test"]["nll"]["value"], rel=1e-12)

    quiet = tmp_path / "quiet"
    assert _train_without_eval(quiet)
    record = _strict(quiet / "metrics.json")
    assert record["test"] == {} and "simulacra evaluate" in record["evaluation"]["skipped"]
    assert not (quiet / "samples.png").exists() and (quiet / "training.png").is_file()


def test_evaluate_announces_a_long_run_from_its_first_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import simulacra.metrics.evaluate as metrics_evaluate

    run = tmp_path / "run"
    assert _train_without_eval(run)
    timed: list[tuple[int, int | None]] = []

    def slow(model: Any, split: Any, metric: str, options: Any, *, probe: int = 8) -> float:
        timed.append((probe, options.batch_size))
        return 0.5  # seconds per example

    monkeypatch.setattr(metrics_evaluate, "seconds_per_example", slow)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "2", "--limit", "100"]) == 0
    assert "estimated duration: about 50 s (nll: 100 × 0.5 s)" in capsys.readouterr().out
    assert timed == [(10, 10)]  # the first call of the likelihood, as evaluate makes it
