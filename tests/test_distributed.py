"""Two CPU processes under torchrun (gloo) train exactly like one process with the same batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.distributed as dist

import _ddp_worker as worker
from simulacra.errors import ConfigError
from simulacra.train import fit, init_from_env
from simulacra.train.distributed import TORCHRUN_VARIABLES

TESTS = Path(__file__).resolve().parent
HANG_S = 900  # the subprocess timeout guards against hangs only (generous under load)


@pytest.fixture
def no_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (*TORCHRUN_VARIABLES, "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_match_one_process(tmp_path: Path, no_torchrun: None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        str(TESTS / "_ddp_worker.py"),
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, cwd=TESTS, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [safetensors.torch.load_file(tmp_path / "ddp" / f"rank{r}.safetensors") for r in range(2)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # replicas stay in sync

    model, data = worker.build()
    fit(model, data, worker.config(), run_dir=tmp_path / "single", progress=False)
    ddp_losses, single_losses = _losses(tmp_path / "ddp" / "run"), _losses(tmp_path / "single")
    assert len(ddp_losses) == worker.STEPS
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-4, atol=1e-5)
    assert (tmp_path / "ddp" / "run" / "model.safetensors").is_file()  # rank 0 wrote the run
    assert json.loads((tmp_path / "ddp" / "run" / "checkpoint.json").read_text())["step"] == worker.STEPS

    two = [safetensors.torch.load_file(tmp_path / "ddp" / f"rank{r}-two-group.safetensors") for r in range(2)]
    assert all(torch.equal(two[0][k], two[1][k]) for k in two[0])
    model, data = worker.build_two_group()
    fit(model, data, worker.two_group_config(), progress=False)
    assert model.calls == {"a": 10, "b": 5}
    for key, value in model.state_dict().items():
        torch.testing.assert_close(two[0][key], value, rtol=1e-4, atol=1e-5)

    # a GAN (WGAN-GP: two groups, 2 critic updates, a penalty differentiating the critic's input
    # gradient): the replicas stay equal, the critic was updated twice per step, the weights moved
    gans = [safetensors.torch.load_file(tmp_path / "ddp" / f"rank{r}-gan.safetensors") for r in range(2)]
    assert all(torch.equal(gans[0][k], gans[1][k]) for k in gans[0] if k != "auc_average")
    assert int(gans[0]["update_count"]) == 6
    initial, _ = worker.build_gan()
    moved = [
        k for k, v in initial.state_dict().items() if v.is_floating_point() and not torch.equal(v, gans[0][k])
    ]
    assert any(k.startswith("generator.") for k in moved) and any(
        k.startswith("discriminator.") for k in moved
    )

    # a buffer marked local: each rank keeps the sum of its own shards (not rank 0's broadcast),
    # also through a stop and a resume; an unmarked one is overwritten by rank 0's every step
    from simulacra.train.batches import BatchSchedule

    _, data = worker.build_local()
    for r in range(2):
        own = safetensors.torch.load_file(tmp_path / "ddp" / f"rank{r}-local.safetensors")
        resumed = safetensors.torch.load_file(tmp_path / "ddp" / f"rank{r}-local-resumed.safetensors")
        schedule = BatchSchedule(len(data.train), 32, 0, rank=r, world_size=2)
        expected = sum(data.train.x[schedule.indices(s)].double().sum(0) for s in range(worker.LOCAL_STEPS))
        torch.testing.assert_close(own["seen_local"], expected, rtol=1e-12, atol=1e-9)
        assert torch.equal(resumed["seen_local"], own["seen_local"])
        if r == 1:
            assert not torch.allclose(own["seen_shared"], expected)
    ranks = [safetensors.torch.load_file(tmp_path / "ddp" / f"rank{r}-local.safetensors") for r in range(2)]
    assert not torch.equal(ranks[0]["seen_local"], ranks[1]["seen_local"])
    assert torch.equal(ranks[0]["lin.weight"], ranks[1]["lin.weight"])


def test_without_torchrun_nothing_is_initialised(no_torchrun: None) -> None:
    ctx = init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.device.type) == (0, 1, True, "cpu")
    model, data = worker.build()
    fit(model, data, worker.config(), progress=False)
    assert not dist.is_initialized()


def test_world_size_one_stays_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(key, value)
    assert init_from_env("cpu").world_size == 1 and not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        init_from_env("cpu")


def test_devices_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        init_from_env("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            init_from_env("cuda")
        assert init_from_env("auto").device.type == "cpu"
