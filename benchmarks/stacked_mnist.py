"""Stacked MNIST: mode coverage of a GAN over 1,000 modes (Metz et al. 2017; PacGAN, Table 3).

Each example stacks three MNIST training digits drawn independently as the three channels of a
3×28×28 image, so the data have 10³ = 1,000 equally likely modes (the three digits). A GAN is
trained on 60,000 such images for a wall-time budget; then 26,000 samples are drawn (with the
run's EMA weights) and each channel is classified by the project's MNIST classifier
(``benchmarks/results/mnist-classifier.safetensors``, the FID feature network, 97.2% test
accuracy). Reported: modes covered (triples with at least one sample), and KL(sample histogram
‖ uniform over the 1,000 triples) in nats.

    python benchmarks/stacked_mnist.py --minutes 55 --threads 1 --name r1     # the gan preset: DCGAN + R1
    python benchmarks/stacked_mnist.py --minutes 40 --threads 1 --set r1=0    # the plain DCGAN (collapses)

Needs ``mnist.npz`` (``--data-dir``, default ../shared/data). Writes
benchmarks/results/stacked-mnist[-NAME].json and runs/bench/stacked-mnist[-NAME]/.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import write_record  # noqa: E402


def stacked(x: np.ndarray, n: int, seed: int) -> torch.Tensor:
    """n images (n, 3, 28, 28) in [0, 1] whose channels are MNIST digits drawn independently."""
    g = np.random.default_rng(seed)
    idx = g.integers(0, x.shape[0], size=(n, 3))
    return torch.from_numpy(x[idx]).float().div_(255)  # (n, 3, 28, 28)


def count_modes(digits: torch.Tensor) -> tuple[int, float, torch.Tensor]:
    """(modes covered, KL(histogram ‖ uniform) in nats, histogram) of digit triples (N, 3)."""
    codes = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    hist = torch.bincount(codes, minlength=1000).double()
    p = hist / hist.sum()
    kl = float((p[p > 0] * (p[p > 0] * 1000).log()).sum())
    return int((hist > 0).sum()), kl, hist


def classify(net: Any, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The digit of each channel of images x (N, 3, 28, 28): (N, 3)."""
    net.eval()
    out = []
    with torch.no_grad():
        for b in x.split(batch):
            logits = net(b.reshape(-1, 1, 28, 28))  # channel by channel
            out.append(logits.argmax(1).reshape(-1, 3))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    from simulacra.config import TrainConfig
    from simulacra.data.info import DataInfo, Dataset, Split
    from simulacra.metrics.fid import load_feature_classifier, shipped_feature_network
    from simulacra.models.zoo import build_model
    from simulacra.train import TimeBudget, fit
    from simulacra.train.budget import steps_for_minutes
    from simulacra.train.checkpoint import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gan", help="a GAN preset (default gan)")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="model KEY=JSON")
    parser.add_argument("--minutes", type=float, default=40.0, help="training budget (wall time)")
    parser.add_argument(
        "--steps", type=int, default=0, help="train exactly this many steps (e.g. another seed's count)"
    )
    parser.add_argument(
        "--rescore", action="store_true", help="count the modes of the saved run again; no training"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=26_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--name", default="", help="suffix of the result and run names")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    settings = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.settings)}
    mnist = np.load(args.data_dir / "mnist.npz")
    x = stacked(mnist["x_train"], 60_000, args.seed)
    info = DataInfo((3, 28, 28), "unit", levels=256)
    data = Dataset("stacked-mnist", info, Split(x))
    # the first runs counted with the 97.2% network of the first FID module; the shipped 99.6%
    # network (metrics/networks/mnist) counts as well, so old and new figures can be compared
    classifiers = {
        "": load_feature_classifier(HERE / "results" / "mnist-classifier.safetensors"),
        "shipped_": shipped_feature_network("mnist")[0],
    }
    record: dict[str, Any] = {"model": {"name": args.model, **settings}, "seed": args.seed}
    for prefix, classifier in classifiers.items():
        data_modes, data_kl, _ = count_modes(classify(classifier, x[: args.samples]))
        record.update({f"{prefix}data_modes": data_modes, f"{prefix}data_kl_nats": round(data_kl, 4)})
        print(f"the data ({prefix or 'first '}classifier): {data_modes} modes, KL {data_kl:.3f} nats")

    suffix = f"-{args.name}" if args.name else ""
    run_dir = HERE.parent / "runs" / "bench" / f"stacked-mnist{suffix}"
    result_file = HERE / "results" / f"stacked-mnist{suffix}.json"
    if args.rescore:
        record = {**json.loads(result_file.read_text()), **record}
        record["trained_by"] = record.pop("trained_by", None) or record.get("command")
    else:
        torch.manual_seed(args.seed)
        model = build_model({"name": args.model, **settings}, info)
        if args.steps:
            steps, budget = args.steps, []
        else:
            probe = TrainConfig.for_model(model, batch_size=args.batch_size, eval_every=0, seed=args.seed)
            steps, calibration, _ = steps_for_minutes(model, data, probe, args.minutes)
            budget = [TimeBudget(60 * args.minutes)]
            print(f"{steps} steps planned ({calibration.step_seconds * 1000:.0f} ms each)")
        config = TrainConfig.for_model(
            model, steps=steps, batch_size=args.batch_size, eval_every=0, seed=args.seed, log_every=500
        )
        print(f"{args.model}: {steps} steps -> {run_dir}")
        started, cpu = time.perf_counter(), time.process_time()
        result = fit(model, data, config, run_dir=run_dir, callbacks=budget, progress=True)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        record.update(
            {
                "steps": result.steps,
                "epochs": round(result.steps * args.batch_size / 60_000, 2),
                "train_minutes": round(seconds / 60, 1),
                "train_cpu_minutes": round(cpu / 60, 1),
                "final_metrics": result.metrics,
            }
        )
    trained = load_model(run_dir)  # the EMA weights, as the CLI's verbs use them
    g = torch.Generator().manual_seed(args.seed + 1)
    samples = torch.cat([trained.sample(1000, generator=g) for _ in range(math.ceil(args.samples / 1000))])
    record["samples"] = args.samples
    for prefix, classifier in classifiers.items():
        modes, kl, hist = count_modes(classify(classifier, samples[: args.samples]))
        record.update(
            {
                f"{prefix}modes": modes,
                f"{prefix}kl_nats": round(kl, 4),
                f"{prefix}largest_mode_share": round(float(hist.max() / hist.sum()), 4),
            }
        )
        print(f"{prefix or 'first '}classifier: {modes} modes of 1000, KL {kl:.3f} nats")
    write_record(record, result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
