"""MNIST sample quality of a GAN recipe in a fixed CPU budget: FID and MMD² in the units of the
diffusion model's figures (BENCHMARKS §11).

A GAN preset (the DCGAN pair for 28×28 images, unconditional) is trained by ``simulacra.train.fit``
on the 60,000 MNIST training digits with the preset's declared training defaults (Adam with its
betas, EMA 0.999, no early stopping) for ``--minutes`` of wall time, calibrated first so the
planned length fits. Then ``--eval-n`` samples are drawn with the EMA weights and compared with as
many test digits: FID with the MNIST feature classifier shipped in the package
(``simulacra.metrics.fid.shipped_feature_network``, trained by
``benchmarks/train_feature_network.py``; ``--features FILE`` for another, e.g. the first one,
``benchmarks/results/mnist-classifier.safetensors``, 97.2% test accuracy) and MMD² (Gaussian
kernel, median bandwidth), the same functions as ``benchmarks/mnist_diffusion.py``; and on the
same features KID (mean ± sd over 100 subsets), precision/recall (k = 3), density/coverage
(k = 5) and the KL of the samples' class histogram (by the classifier) to the test labels'; the
FID between two sets of test digits (the floor) beside them.

    python benchmarks/mnist_gan.py --recipe ns+r1 --minutes 55 --threads 1
    python benchmarks/mnist_gan.py --recipe hinge+sn --minutes 55 --threads 1
    python benchmarks/mnist_gan.py --recipe wgan-gp --minutes 55 --threads 1
    python benchmarks/mnist_gan.py --recipe vae --minutes 55 --threads 1    # the VAE, for comparison
    python benchmarks/mnist_gan.py --recipe ns+r1 --seed 1 --steps 29500 --minutes 55   # another seed, same length
    python benchmarks/mnist_gan.py --recipe ns+r1 --summarize 0 1 2   # mean ± sd over the seeds' results
    python benchmarks/mnist_gan.py --recipe ns+r1 --evaluate      # score a finished run again
    python benchmarks/mnist_gan.py --recipe ns+r1 --evaluate --tag old-features \
        --features benchmarks/results/mnist-classifier.safetensors

Needs ``mnist.npz`` (``--data-dir``, default ../shared/data). Writes
benchmarks/results/mnist-gan-RECIPE.json, a grid of 100 samples mnist-gan-RECIPE.png and the run
in runs/bench/mnist-gan-RECIPE/; with ``--tag TAG`` the figures go to mnist-gan-RECIPE-TAG.json and
.png (``--evaluate`` still reads the training record from mnist-gan-RECIPE.json).
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

RECIPES: dict[str, dict[str, Any]] = {
    # non-saturating loss with R1 on real data (Mescheder et al. 2018), lazy every 4 updates
    "ns+r1": {"name": "gan", "loss": "non-saturating", "r1": 10.0, "r1_every": 4},
    # hinge loss with a spectrally normalized discriminator (Miyato et al. 2018): the sngan preset
    "hinge+sn": {"name": "sngan"},
    # Wasserstein loss with a gradient penalty, 5 critic updates (Gulrajani et al. 2017)
    "wgan-gp": {"name": "wgan-gp"},
    # the plain DCGAN recipe, no regularizer (for reference; the gan preset takes R1 on images)
    "ns": {"name": "gan", "loss": "non-saturating", "r1": 0.0},
    # not a GAN: the vae preset at its image defaults, scored the same way (samples from the
    # model, not posterior means), to put the VAE family's FID beside the GANs'
    "vae": {"name": "vae"},
}


FIGURES = ("fid", "kid", "precision", "recall", "density", "coverage", "class_kl_nats", "mmd")
"""The figures :func:`summarize` averages over seeds."""


def seed_record(recipe: str, seed: int) -> dict[str, Any]:
    """The results of one seed's run scored on the shipped feature network: the run's own file,
    or its ``-features-v2`` rescoring where the run was first scored on the old classifier."""
    name = f"mnist-gan-{recipe}" + (f"-seed{seed}" if seed else "")
    for path in (HERE / "results" / f"{name}.json", HERE / "results" / f"{name}-features-v2.json"):
        if path.exists():
            record = json.loads(path.read_text())
            if str(record.get("features", {}).get("network", "")).startswith("shipped"):
                return record
    raise SystemExit(f"no results of {recipe} seed {seed} on the shipped features in {HERE / 'results'}")


def summarize(recipe: str, seeds: list[int]) -> int:
    """Mean ± sd (n − 1) over ``seeds`` of each figure in :data:`FIGURES`, with every seed's value
    and training length, written to benchmarks/results/mnist-gan-RECIPE-seeds.json."""
    import statistics

    records = [seed_record(recipe, seed) for seed in seeds]
    table: dict[str, Any] = {}
    for figure in FIGURES:
        values = [float(r[figure]) for r in records]
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        table[figure] = {"mean": statistics.fmean(values), "sd": sd, "per_seed": values}
        print(
            f"{recipe} {figure}: {statistics.fmean(values):.4g} ± {sd:.2g} ({', '.join(f'{v:.4g}' for v in values)})"
        )
    write_record(
        {
            "recipe": recipe,
            "seeds": seeds,
            "figures": table,
            "steps": [r["steps"] for r in records],
            "train_cpu_minutes": [r.get("train_cpu_minutes") for r in records],
            "train_minutes": [r.get("train_minutes") for r in records],
        },
        HERE / "results" / f"mnist-gan-{recipe}-seeds.json",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from simulacra.config import TrainConfig
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig
    from simulacra.metrics.features import class_histogram_kl, kid, manifold_metrics
    from simulacra.metrics.fid import (
        extract_features,
        fid,
    )
    from simulacra.metrics.two_sample import mmd
    from simulacra.models.zoo import build_model
    from simulacra.train import TimeBudget, fit
    from simulacra.train.budget import steps_for_minutes
    from simulacra.train.checkpoint import load_model
    from simulacra.viz.grids import save_grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="ns+r1")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="model KEY=JSON")
    parser.add_argument("--minutes", type=float, default=55.0, help="training budget (wall time)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train this many steps (within --minutes) instead of calibrating",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-n", type=int, default=1000, help="samples and test images for FID and MMD")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--evaluate", action="store_true", help="score the finished run of this recipe again")
    parser.add_argument(
        "--features", type=Path, default=None, help="a saved feature network (default: the shipped one)"
    )
    parser.add_argument("--tag", default=None, help="write the figures to mnist-gan-RECIPE-TAG.json/.png")
    parser.add_argument(
        "--runs", type=Path, default=HERE.parent / "runs" / "bench", help="folder of the runs"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="train on the first LIMIT digits (smoke tests)"
    )
    parser.add_argument(
        "--summarize",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="write the mean ± sd over these seeds' finished results (shipped features) and stop",
    )
    args = parser.parse_args(argv)
    if args.summarize:
        return summarize(args.recipe, args.summarize)
    torch.set_num_threads(args.threads)

    settings = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.settings)}
    spec = {**RECIPES[args.recipe], **settings}
    data = load_dataset(
        DataConfig("mnist", data_dir=str(args.data_dir), valid_fraction=0.0, limit=args.limit)
    )
    net, features = feature_network(args.features)
    name = f"mnist-gan-{args.recipe}" + (f"-seed{args.seed}" if args.seed else "")
    out_name = name + (f"-{args.tag}" if args.tag else "")
    run_dir = args.runs / name

    if args.evaluate:  # a finished run: its log and its record say how long it trained
        log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        last = [r for r in log if "elapsed_s" in r][-1]
        steps_done, seconds = int(last["step"]), float(last["elapsed_s"])
        previous = json.loads((HERE / "results" / f"{name}.json").read_text())
        cpu_seconds = 60 * previous.get("train_cpu_minutes", math.nan)
        final, parameters = previous.get("final_metrics", {}), previous.get("parameters")
        trained_by = previous.get("train_command", previous.get("command"))
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        torch.manual_seed(args.seed)
        model = build_model(spec, data.info)
        parameters = sum(p.numel() for p in model.parameters())
        probe = TrainConfig.for_model(model, batch_size=args.batch_size, eval_every=0, seed=args.seed)
        if args.steps is None:
            steps, calibration, _ = steps_for_minutes(model, data, probe, args.minutes)
            planned = f"{steps} steps planned ({calibration.step_seconds * 1000:.0f} ms each)"
        else:  # the step count of another seed, so that seeds differ only in their seed
            steps, planned = args.steps, f"{args.steps} steps asked"
        config = TrainConfig.for_model(
            model, steps=steps, batch_size=args.batch_size, eval_every=0, seed=args.seed, log_every=500
        )
        print(f"{args.recipe}: {spec}, {planned}")
        started, cpu_started = time.perf_counter(), time.process_time()
        budget = [TimeBudget(60 * args.minutes)]
        result = fit(model, data, config, run_dir=run_dir, callbacks=budget, progress=False)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        steps_done, final = result.steps, result.metrics
        trained_by = None  # this command

    trained = load_model(run_dir).eval()  # the EMA weights, as the CLI's verbs use them
    g = torch.Generator().manual_seed(args.seed + 1)
    drawn = time.perf_counter()
    batches = [trained.sample(500, generator=g) for _ in range((args.eval_n + 499) // 500)]
    samples = torch.cat(batches)[: args.eval_n]
    sample_seconds = time.perf_counter() - drawn
    test = data.test.x[: args.eval_n]
    enough = len(data.test) >= 2 * args.eval_n
    floor = fid(net, test, data.test.x[args.eval_n : 2 * args.eval_n]) if enough else None
    fake, real = extract_features(net, samples), extract_features(net, test)
    kid_mean, kid_sd = kid(real, fake, subsets=100, subset_size=min(1000, args.eval_n // 2), generator=g)
    found = manifold_metrics(real, fake)
    with torch.no_grad():
        predicted = torch.cat([net(b).argmax(1) for b in samples.split(500)])
    class_kl, classes, _ = class_histogram_kl(predicted, data.test.y[: args.eval_n], 10)
    figures = {
        "fid": fid(net, samples, test),
        "fid_test_vs_test": floor,
        "kid": kid_mean,
        "kid_sd": kid_sd,
        "precision": found.precision,
        "recall": found.recall,
        "density": found.density,
        "coverage": found.coverage,
        "class_kl_nats": class_kl,
        "classes": classes,
        "mmd": mmd(samples, test),
    }
    print(
        f"{args.recipe}: FID {figures['fid']:.2f}, KID {kid_mean:.4f} ± {kid_sd:.4f}, precision "
        f"{found.precision:.3f}, recall {found.recall:.3f}, MMD² {figures['mmd']:.2e} after {steps_done} "
        f"steps ({steps_done * args.batch_size / len(data.train):.1f} epochs) in {seconds / 60:.1f} min"
    )
    save_grid(
        samples[:100].clamp(0, 1),
        HERE / "results" / f"{out_name}.png",
        10,
        title=f"{args.recipe}: 100 samples (EMA)",
    )
    write_record(
        {
            "recipe": args.recipe,
            "model": spec,
            "parameters": parameters,
            "steps": steps_done,
            "epochs": round(steps_done * args.batch_size / len(data.train), 2),
            "train_minutes": round(seconds / 60, 1),
            "train_cpu_minutes": round(cpu_seconds / 60, 1),
            "eval_n": args.eval_n,
            "sample_seconds": round(sample_seconds, 2),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
            "features": features,
            "final_metrics": final,
            **({"train_command": trained_by} if trained_by else {}),
        },
        HERE / "results" / f"{out_name}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
