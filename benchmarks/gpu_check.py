"""The GPU check of issue 19: one prepared script (under 10 minutes) for a lent GPU machine.

    python benchmarks/gpu_check.py --out OUT_DIR                  # on the GPU machine (cuda)
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu-check   # its dry run here

On a lent machine (the device tool; its python3 holds a CUDA build of torch, and the script puts
``src/`` on the path): ``PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT`` with a
timeout of 540 s.

1. Throughput: the MNIST UNet (``ddpm``) and the PixelCNN (``pixelcnn``) at the accelerator's
   default sizes, batch 128, on 1×28×28 images with 256 grey levels: optimizer steps per second
   through :func:`simulacra.train.budget.calibrate` (the timing ``--minutes`` plans with), on the
   device in fp32 and bf16 autocast, and on the same machine's CPU path (fewer steps); the
   device's peak memory per setting.
2. End to end through the command line on the device: ``train`` (interrupted by SIGINT once it
   has logged, then ``--resume``d to the end), ``sample``, ``evaluate``; each command's exit
   status, time and the last line it printed.

Data: MNIST from ``--data-dir`` when ``mnist.npz`` is there (the device machine has no
``../shared``: carry a copy), else an MNIST-shaped file of random grey levels written into the
work folder (a step's cost does not depend on the pixel values). Writes ``gpu-check.json``, the
command line's log ``cli.log`` and ``samples.png`` into ``--out``; the data file and the run
directory go to ``--work`` (a new temporary folder by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PRESETS = ("ddpm", "pixelcnn")


def mnist_file(data_dir: Path, work: Path, n: int) -> Path:
    """MNIST's ``mnist.npz`` when present, else an MNIST-shaped ``.npz`` of n random uint8 images."""
    real = data_dir / "mnist.npz"
    if real.is_file():
        return real
    rng = np.random.default_rng(0)
    path = work / "mnist-shaped.npz"
    images = lambda k: rng.integers(0, 256, (k, 28, 28), dtype=np.uint8)  # noqa: E731
    labels = lambda k: rng.integers(0, 10, k)  # noqa: E731
    np.savez(path, x_train=images(n), y_train=labels(n), x_test=images(n // 5), y_test=labels(n // 5))
    return path


def throughput(data_path: Path, device: str, steps: int, cpu_steps: int, batch: int) -> dict[str, Any]:
    """Steps/s and peak device memory per (preset, device, precision)."""
    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import load_dataset
    from simulacra.models.zoo import build_model
    from simulacra.train.budget import calibrate
    from simulacra.train.precision import bf16_supported

    data = load_dataset(DataConfig(str(data_path), valid_fraction=0.0), seed=0)
    settings = [(device, "fp32", steps)]
    if device.startswith("cuda") and bf16_supported(torch.device(device)):
        settings.append((device, "bf16", steps))
    if device != "cpu":
        settings.append(("cpu", "fp32", cpu_steps))
    rows: dict[str, Any] = {}
    for name in PRESETS:
        for where, precision, n_steps in settings:
            torch.manual_seed(0)
            model = build_model(name, data.info, accelerator=True)
            config = TrainConfig(batch_size=batch, device=where, precision=precision)
            if where.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(where)
            seconds = calibrate(model, data, config, steps=n_steps, warmup=3).step_seconds
            row = {
                "steps_per_s": round(1 / seconds, 2),
                "examples_per_s": round(batch / seconds, 1),
                "timed_steps": n_steps,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
            if where.startswith("cuda"):
                row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(where) / 2**20, 1)
            rows[f"{name}/{where}/{precision}"] = row
            print(f"{name:9s} {where:6s} {precision}: {row}", flush=True)
    return rows


def _command(argv: list[str], log: Path, *, interrupt_after: Path | None = None) -> dict[str, Any]:
    """Run ``python -m simulacra ARGV``; with ``interrupt_after``, send SIGINT once that file exists."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    with log.open("a") as sink:
        sink.write(f"$ simulacra {' '.join(argv)}\n")
        sink.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulacra", *argv], stdout=sink, stderr=subprocess.STDOUT, env=env
        )
        if interrupt_after is not None:
            while not interrupt_after.exists() and proc.poll() is None:
                time.sleep(0.05)
            time.sleep(2.0)  # a few more steps
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=600)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return {"argv": argv, "exit": code, "seconds": round(time.perf_counter() - started, 1), "last": lines[-1]}


def end_to_end(
    data_path: Path, device: str, out: Path, work: Path, steps: int, eval_n: int
) -> dict[str, Any]:
    """train (interrupted, then resumed), sample and evaluate a small ddpm on ``device``; the
    likelihoods (PF-ODE) of ``eval_n`` test images."""
    run = work / "ddpm-run"
    log = out / "cli.log"
    train = ["train", "ddpm", "--data", str(data_path), "--steps", str(steps), "--device", device]
    # `evaluate` below scores the run: training's own evaluation is skipped (--no-eval)
    train += [
        "--out",
        str(run),
        "--overwrite",
        "--no-progress",
        "--no-eval",
        "--set",
        "train.checkpoint_every=20",
    ]
    record = {"interrupted": _command(train, log, interrupt_after=run / "metrics.jsonl")}
    checkpoint = run / "checkpoint.json"
    record["checkpoint_step"] = json.loads(checkpoint.read_text())["step"] if checkpoint.is_file() else None
    record["resumed"] = _command(["train", "--resume", str(run), "--no-progress", "--no-eval"], log)
    record["sample"] = _command(
        ["sample", str(run), "-n", "16", "-o", str(out / "samples.png"), "--device", device], log
    )
    record["evaluate"] = _command(["evaluate", str(run), "--device", device, "--limit", str(eval_n)], log)
    final = run / "metrics.json"
    record["final_step"] = json.loads(final.read_text()).get("steps") if final.is_file() else None
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True, help="folder for gpu-check.json, the CLI log and samples")
    parser.add_argument(
        "--work", default=None, help="folder for the data file and the run (default: a temporary one)"
    )
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=50, help="timed steps on the device")
    parser.add_argument("--cpu-steps", type=int, default=5, help="timed steps on the CPU path")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cli-steps", type=int, default=400, help="training steps of the end-to-end run")
    parser.add_argument("--eval-n", type=int, default=200, help="test images scored by train and evaluate")
    parser.add_argument(
        "--quick", action="store_true", help="a dry run: 2 timed steps, 40 CLI steps, 8 images"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.cpu_steps, args.cli_steps, args.eval_n = 2, 2, 40, 8
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    data_path = mnist_file(Path(args.data_dir), work, n=2000 if args.quick else 12000)
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "data": str(data_path),
    }
    record["throughput"] = throughput(data_path, args.device, args.steps, args.cpu_steps, args.batch_size)
    record["end_to_end"] = end_to_end(data_path, args.device, out, work, args.cli_steps, args.eval_n)
    (out / "gpu-check.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record["end_to_end"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
