"""VQ-VAE with a learned prior on MNIST (issue 15): codebook usage with and without dead-code
restarts, reconstruction error, the prior's bits per code, samples and FID beside a VAE's.

Stages (each a separate call, in this order; each writes benchmarks/results/vqvae-STAGE.json):

    python benchmarks/mnist_vqvae.py --stage restarts --steps 6000       # vqvae preset
    python benchmarks/mnist_vqvae.py --stage no-restarts --steps 6000    # restart_threshold=0
    python benchmarks/mnist_vqvae.py --stage prior --steps 8000          # vqvae-prior on the first
    python benchmarks/mnist_vqvae.py --stage vae                         # conv-vae, same CPU time
    python benchmarks/mnist_vqvae.py --stage plain --steps 5000          # no restarts, no k-means
    python benchmarks/mnist_vqvae.py --stage prior-transformer --steps 4000   # a Transformer prior
    python benchmarks/mnist_vqvae.py --stage prior-transformer --steps 4000 --base no-restarts

``restarts`` and ``no-restarts`` train the ``vqvae`` preset (7×7 grid of 16-D vectors, K = 128
codes, EMA codebook, k-means start; discretized-logistic decoder on the 256 grey levels) by
``simulacra.train.fit`` on the 60,000 training digits, batch 64, Adam 1e-3 with a cosine decay;
every 500 steps the codebook usage (fraction of the K codes that the codes of 2,000 test digits
use) is recorded. After training, the model's second stage fits the factorized code prior
(per-position frequencies); ``plain`` has neither restarts nor the k-means start. ``prior`` and
``prior-transformer`` train ``vqvae-prior`` (a gated PixelCNN, or the default Transformer, over the
7×7 codes) on top of the ``restarts`` run (``initialize_from``); ``vae`` trains ``conv-vae`` (the
same convolutions, 16-D Gaussian latent, the same likelihood) for the CPU time of ``restarts``
plus ``prior`` together (its CPU time per step measured after 20 warm-up steps). Results:
BENCHMARKS §27.

Figures on the first ``--eval-n`` test digits: the ``codes`` metric (bits per code under the
model's prior, reconstruction MSE and −log p(x | z_q), codebook usage), the bound on −log p(x) in
nats and bits/dim (VQ-VAE: log p(x | z_q) + log p(k), deterministic; VAE: the ELBO and the
importance-sampled NLL with k = ``--k``), and FID of ``--eval-n`` samples against as many test
digits with the shipped MNIST feature network. Budgets are in steps and reported in CPU minutes
(``time.process_time``), as the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _features import feature_network  # noqa: E402
from _machine import write_record  # noqa: E402

STAGES = ("restarts", "no-restarts", "prior", "vae", "plain", "prior-transformer")
SPECS: dict[str, dict[str, Any]] = {
    "restarts": {"name": "vqvae"},
    "no-restarts": {"name": "vqvae", "restart_threshold": 0.0},
    "prior": {
        "name": "vqvae-prior",
        "prior": "gated-pixelcnn",
        "channels": 32,
        "layers": 5,
        "kernel_size": 3,
    },
    "vae": {"name": "conv-vae"},
    # the codes as tokens: an embedding per code, where the PixelCNN reads the code's index as a grey level
    "prior-transformer": {
        "name": "vqvae-prior",
        "prior": "transformer",
        "channels": 64,
        "layers": 4,
        "heads": 4,
    },
    # neither restarts nor the k-means start: the codebook of the original paper (uniform start)
    "plain": {"name": "vqvae", "restart_threshold": 0.0, "kmeans_init": False},
}


def main(argv: list[str] | None = None) -> int:
    from simulacra.config import TrainConfig
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig
    from simulacra.data.info import Split
    from simulacra.metrics.evaluate import EvalOptions, estimates_as_dicts, evaluate
    from simulacra.metrics.fid import fid
    from simulacra.models.vqvae import VQVAE, VQVAEPrior
    from simulacra.models.zoo import build_model
    from simulacra.train import Callback, TrainState, fit
    from simulacra.train.checkpoint import load_model
    from simulacra.viz.grids import save_grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--steps", type=int, default=6000, help="training steps (vae: from the CPU time)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-n", type=int, default=2000, help="test digits scored; samples for FID")
    parser.add_argument("--k", type=int, default=100, help="importance samples of the VAE's NLL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--runs", type=Path, default=HERE.parent / "runs" / "bench")
    parser.add_argument(
        "--limit", type=int, default=None, help="train on the first LIMIT digits (smoke tests)"
    )
    parser.add_argument("--tag", default="", help="suffix of the result and run names")
    parser.add_argument(
        "--base",
        choices=("restarts", "no-restarts"),
        default="restarts",
        help="the VQ-VAE run whose codes a prior stage learns (no-restarts: names the result -on-no-restarts)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_dataset(
        DataConfig("mnist", data_dir=str(args.data_dir), valid_fraction=0.0, limit=args.limit)
    )
    test = Split(data.test.x[: args.eval_n], data.test.y[: args.eval_n])
    net, features = feature_network()
    tag = f"-{args.tag}" if args.tag else ""
    on_base = f"-on-{args.base}" if args.stage.startswith("prior") and args.base != "restarts" else ""
    name = f"vqvae-{args.stage}{on_base}{tag}"
    run_dir = args.runs / name
    if run_dir.exists():
        shutil.rmtree(run_dir)

    steps = args.steps
    if args.stage == "vae":  # the CPU time of the VQ-VAE and its prior together
        spent = sum(
            json.loads((HERE / "results" / f"vqvae-{s}{tag}.json").read_text())["train_cpu_minutes"]
            for s in ("restarts", "prior")
        )
        torch.manual_seed(123)
        probe = build_model(SPECS["vae"], data.info)
        probe_config = TrainConfig(
            steps=120, batch_size=args.batch_size, eval_every=0, patience=None, log_every=10**6
        )
        clock: dict[int, float] = {}

        class Clock(Callback):  # CPU time of steps 21-120: no warm-up, no setup or end of fit
            def on_step_end(self, state: TrainState) -> None:
                if state.step in (20, 120):
                    clock[state.step] = time.process_time()

        fit(probe, data, probe_config, callbacks=[Clock()], progress=False)
        per_step = (clock[120] - clock[20]) / 100
        steps = int(spent * 60 / per_step)
        print(
            f"vae: {steps} steps in the {spent:.1f} CPU minutes of the VQ-VAE and its prior ({per_step * 1e3:.0f} ms/step)"
        )

    torch.manual_seed(args.seed)
    model = build_model(SPECS[args.stage], data.info)
    if isinstance(model, VQVAEPrior):
        first = load_model(args.runs / f"vqvae-{args.base}{tag}")
        model.initialize_from(first)

    usage: list[dict[str, float]] = []

    class Usage(Callback):
        """Codebook usage on the codes of the scored test digits every 500 steps."""

        def on_step_end(self, state: TrainState) -> None:
            if state.step % 500 and state.step != steps:
                return
            was = model.training
            model.eval()
            with torch.no_grad():
                codes = torch.cat([model.codes(x) for x in test.x.split(500)])  # type: ignore[operator]
            model.train(was)
            used = torch.bincount(codes.reshape(-1), minlength=model.num_codes).gt(0).float().mean()  # type: ignore[arg-type]
            usage.append({"step": state.step, "usage": round(float(used), 4)})

    config = TrainConfig(
        steps=steps,
        epochs=None,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule="cosine",
        eval_every=0,
        patience=None,
        log_every=500,
        seed=args.seed,
    )
    callbacks = [Usage()] if isinstance(model, VQVAE) else []
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit(model, data, config, run_dir=run_dir, callbacks=callbacks, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{name}: {result.steps} steps in {cpu / 60:.1f} CPU min ({wall / 60:.1f} wall min)")

    model.eval()
    started = time.process_time()
    metrics = ["nll", "codes"] if isinstance(model, VQVAE | VQVAEPrior) else ["nll"]
    found = estimates_as_dicts(
        evaluate(model, test, metrics, EvalOptions(num_samples=args.k, seed=args.seed))
    )
    g = torch.Generator().manual_seed(args.seed + 1)
    sampled = time.process_time()
    samples = torch.cat([model.sample(500, generator=g) for _ in range((args.eval_n + 499) // 500)])[
        : args.eval_n
    ]
    sample_cpu = time.process_time() - sampled
    score = fid(net, samples.clamp(0, 1), test.x)
    floor = (
        fid(net, data.test.x[args.eval_n : 2 * args.eval_n], test.x)
        if len(data.test) >= 2 * args.eval_n
        else None
    )
    eval_cpu = time.process_time() - started
    save_grid(
        samples[:100].clamp(0, 1),
        HERE / "results" / f"{name}.png",
        10,
        title=f"{name}: 100 samples ({model.describe_sampling({})})",
    )
    summary = {k: v["value"] for k, v in found.items()}
    print(
        f"{name}: FID {score:.2f}; " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if v is not None)
    )
    write_record(
        {
            "stage": args.stage,
            "model": model.spec,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "steps": result.steps,
            "epochs": round(result.steps * args.batch_size / len(data.train), 2),
            "train_cpu_minutes": round(cpu / 60, 2),
            "train_wall_minutes": round(wall / 60, 2),
            "eval_cpu_minutes": round(eval_cpu / 60, 2),
            "sample_cpu_seconds": round(sample_cpu, 1),
            "eval_n": args.eval_n,
            "fid": round(score, 3),
            "fid_test_vs_test": None if floor is None else round(floor, 3),
            "features": features,
            "usage_over_steps": usage,
            "second_stage": result.second_stage,
            "metrics": found,
            "final_train_metrics": {
                k: v for k, v in result.metrics.items() if isinstance(v, int | float) and math.isfinite(v)
            },
        },
        HERE / "results" / f"{name}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
