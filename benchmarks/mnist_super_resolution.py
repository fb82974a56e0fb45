"""Super-resolution ×4 of MNIST test digits (7×7 block means -> 28×28): pix2pix against the
diffusion model's solver of the same inverse problem, beside nearest and bicubic upsampling.

Both models are trained here by ``simulacra.train.fit`` on the 60,000 training digits, each for
its own wall-time budget, with its preset's training defaults:

* ``pix2pix`` (task super-resolution, factor 4): U-Net generator with a noise channel, PatchGAN
  D(y, x), non-saturating + 100·L1; pairs (P x, x) made on the fly by the ×4 block average P;
* ``ddpm`` (the CPU image defaults: a UNet of 16/32 channels, T = 1000, ε-prediction), Adam 2e-4
  with cosine decay, gradient clipping 1, EMA 0.999; unconditional, as pix2pix is. Its answer is
  a draw from p(x | P x = y) by replacement of the observed block means at every step of the
  ancestral sampler (``simulacra.tasks.inverse.super_resolve``; ``--diffusion-steps`` steps).

Both answer through :func:`simulacra.tasks.inverse.super_resolve`, the function behind
``simulacra super-resolve``. On the first ``--n`` test digits: mean L1 and PSNR (dB, per image,
averaged) against the truth, the consistency |avgpool₄(x̂) − y| with the observation, and FID
(the MNIST feature classifier shipped in the package, ``shipped_feature_network``; ``--features
FILE`` for another, e.g. the first one, ``benchmarks/results/mnist-classifier.safetensors``) of
the answers against the true digits, with the FID between two sets of test digits of that size as
the floor.

    python benchmarks/mnist_super_resolution.py --pix2pix-minutes 15 --diffusion-minutes 35 --threads 1
    python benchmarks/mnist_super_resolution.py --evaluate --tag v2     # score the trained runs again

Needs ``mnist.npz`` (``--data-dir``, default ../shared/data). Writes
benchmarks/results/mnist-super-resolution.json and a picture of the first 8 digits (rows:
observation, nearest, bicubic, pix2pix, diffusion, truth) mnist-super-resolution.png (with
``--tag TAG``: mnist-super-resolution-TAG.json and .png); the runs in runs/bench/mnist-sr-*.
``--evaluate`` scores those runs again without training (their training record is read from
mnist-super-resolution.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _features import feature_network  # noqa: E402
from _machine import write_record  # noqa: E402
from image_translation import scores  # noqa: E402

FACTOR = 4


def train(spec: dict[str, Any], data: Any, minutes: float, seed: int, name: str, **settings: Any) -> Any:
    """A model of ``spec`` trained for ``minutes`` of wall time; its EMA weights, and the record."""
    from simulacra.config import TrainConfig
    from simulacra.models.zoo import build_model
    from simulacra.train import TimeBudget, fit
    from simulacra.train.budget import steps_for_minutes
    from simulacra.train.checkpoint import load_model

    torch.manual_seed(seed)
    model = build_model(spec, data.info)
    probe = TrainConfig.for_model(model, batch_size=64, eval_every=0, seed=seed, **settings)
    steps, calibration, _ = steps_for_minutes(model, data, probe, minutes)
    config = TrainConfig.for_model(
        model, steps=steps, batch_size=64, eval_every=0, seed=seed, log_every=500, **settings
    )
    run_dir = HERE.parent / "runs" / "bench" / name
    if run_dir.exists():  # a fresh run each time
        shutil.rmtree(run_dir)
    print(f"{name}: {steps} steps planned ({calibration.step_seconds * 1000:.0f} ms each)", flush=True)
    started = time.perf_counter()
    result = fit(model, data, config, run_dir=run_dir, callbacks=[TimeBudget(60 * minutes)], progress=False)
    record = {
        "spec": spec,
        "steps": result.steps,
        "epochs": round(result.steps * 64 / len(data.train), 2),
        "train_minutes": round((time.perf_counter() - started) / 60, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return load_model(run_dir).eval(), record


def main(argv: list[str] | None = None) -> int:
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig
    from simulacra.metrics.fid import fid
    from simulacra.tasks.inverse import super_resolve
    from simulacra.train.checkpoint import load_model
    from simulacra.viz.grids import save_grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pix2pix-minutes", type=float, default=15.0)
    parser.add_argument("--diffusion-minutes", type=float, default=35.0)
    parser.add_argument("--diffusion-steps", type=int, default=100, help="ancestral steps of the solver")
    parser.add_argument("--n", type=int, default=500, help="test digits scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument(
        "--limit", type=int, default=None, help="train on the first LIMIT digits (smoke tests)"
    )
    parser.add_argument("--evaluate", action="store_true", help="score the trained runs again")
    parser.add_argument(
        "--features", type=Path, default=None, help="a saved feature network (default: the shipped one)"
    )
    parser.add_argument("--tag", default=None, help="write mnist-super-resolution-TAG.json/.png")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=["pix2pix", "diffusion"],
        default=["pix2pix", "diffusion"],
        help="train (or score) these; another seed's pix2pix alone: --models pix2pix --seed 1 --tag seed1",
    )
    parser.add_argument(
        "--runs", type=Path, default=HERE.parent / "runs" / "bench", help="folder of the runs (--evaluate)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_dataset(
        DataConfig("mnist", data_dir=str(args.data_dir), valid_fraction=0.0, limit=args.limit)
    )
    net, features = feature_network(args.features)
    out_name = "mnist-super-resolution" + (f"-{args.tag}" if args.tag else "")
    truth = data.test.x[: args.n]
    low = F.avg_pool2d(truth, FACTOR)  # (n, 1, 7, 7)
    floor = fid(net, truth, data.test.x[args.n : 2 * args.n])

    answers = {
        "nearest": F.interpolate(low, scale_factor=FACTOR, mode="nearest"),
        "bicubic": F.interpolate(low, scale_factor=FACTOR, mode="bicubic").clamp(0, 1),
    }
    seconds = {"nearest": 0.0, "bicubic": 0.0}
    if args.evaluate:  # the trained runs, their records from the first results
        previous = json.loads((HERE / "results" / "mnist-super-resolution.json").read_text())["models"]
        models = {
            name: (load_model(args.runs / run).eval(), previous[name])
            for name, run in (("pix2pix", "mnist-sr-pix2pix"), ("diffusion", "mnist-sr-ddpm"))
        }
    else:
        runs = "" if args.seed == 0 else f"-seed{args.seed}"  # seed 0 keeps the first runs' names
        plans = {
            "pix2pix": lambda: train(
                {"name": "pix2pix", "task": "super-resolution", "factor": FACTOR},
                data, args.pix2pix_minutes, args.seed, f"mnist-sr-pix2pix{runs}",
            ),
            "diffusion": lambda: train(
                {"name": "ddpm"}, data, args.diffusion_minutes, args.seed, f"mnist-sr-ddpm{runs}",
                lr=2e-4, lr_schedule="cosine", grad_clip=1.0, ema_decay=0.999,
            ),
        }  # fmt: skip
        models = {name: plans[name]() for name in args.models}
    options = {"pix2pix": {}, "diffusion": {"steps": args.diffusion_steps}}
    for name, (model, _) in models.items():
        g = torch.Generator().manual_seed(args.seed)
        started = time.perf_counter()
        answers[name] = torch.cat(
            [
                super_resolve(model, part, FACTOR, generator=g, **options[name]).cpu()
                for part in low.split(100)
            ]
        )
        seconds[name] = time.perf_counter() - started
    table = {}
    for name, x_hat in answers.items():
        row = {
            **scores(x_hat, truth, FACTOR),
            "fid": fid(net, x_hat, truth),
            "seconds": round(seconds[name], 1),
        }
        table[name] = row
        print(
            f"{name:10s} L1 {row['l1']:.4f}  PSNR {row['psnr_db']:.2f} dB  consistency {row['consistency']:.4f}  "
            f"FID {row['fid']:.2f}  ({row['seconds']:.0f} s)",
            flush=True,
        )
    grid = torch.stack([a[:8] for a in answers.values()] + [truth[:8]])  # (rows, 8, 1, 28, 28)
    save_grid(
        grid.reshape(-1, *truth.shape[1:]).clamp(0, 1), HERE / "results" / f"{out_name}.png", 8,
        title="x4: " + " | ".join([*answers, "truth"]) + " (rows)",
    )  # fmt: skip
    write_record(
        {
            "factor": FACTOR,
            "n": args.n,
            "fid_floor_test_vs_test": round(floor, 3),
            "models": {name: record for name, (_, record) in models.items()},
            "diffusion_steps": args.diffusion_steps,
            "results": table,
            "features": features,
        },
        HERE / "results" / f"{out_name}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
