"""A small class-conditional UNet diffusion model on MNIST in about one CPU hour: samples, bits/dim
through the probability-flow ODE, and sample quality per sampler and number of steps.

1. A feature classifier for FID (``simulacra.metrics.fid``): by default the MNIST network shipped
   in the package (BENCHMARKS §22, 99.6% test accuracy), the one every FID in BENCHMARKS §20 is
   on; ``--features own`` trains the script's first one instead (a ~93k-parameter CNN, 6 epochs on
   the MNIST training labels, 97.2%, saved to benchmarks/results/mnist-classifier.safetensors and
   reused when present), which §11 and §34 report.
2. A DDPM (``ddpm`` preset: linear schedule, T = 1000, ε-prediction, UNet ``--channels`` with
   self-attention at 7×7, class embedding, label dropout 0.1 for classifier-free guidance),
   trained for a wall-time budget (a short calibration sets the steps of the cosine schedule),
   EMA 0.999.
3. Evaluation with the EMA weights:
   * FID (classifier features) and MMD² (raw pixels, Gaussian kernel) of --eval-n samples (labels
     drawn uniformly, guidance 1) against --eval-n test images, for each (sampler, steps) pair;
   * the same for guidance scales at one sampler setting;
   * bits/dim of --nll-n test images through the probability-flow ODE of the unconditional model
     (the null label that label dropout trained; Hutchinson trace, dopri5, uniform dequantization
     bound: a bound on the discrete data, comparable with the flows' numbers);
   * grids: 100 samples (rows = classes 0–9) at guidance 1 and 3.

    python benchmarks/mnist_diffusion.py --minutes 60 --threads 1
    python benchmarks/mnist_diffusion.py --minutes 0.3 --limit 512 --eval-n 64 --nll-n 8 --grid-steps 5   # smoke test

Writes benchmarks/results/mnist-diffusion.json and the run directory runs/bench/mnist-diffusion/
(checkpoint, samples-guidance-1.png, samples-guidance-3.png).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from _machine import calibrate, steps_for_budget, write_record  # noqa: E402  (benchmarks/ is on sys.path when run)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# (sampler, steps) pairs scored for sample quality
SETTINGS = [
    ("ddim", 10),
    ("ddim", 20),
    ("ddim", 50),
    ("dpm-solver", 10),
    ("dpm-solver", 20),
    ("ancestral", 100),
]
GUIDANCE = [0.0, 1.0, 2.0, 4.0]


def classifier(data, seed: int, path: Path):
    """The saved FID feature network at ``path``, trained first if missing; (net, test accuracy)."""
    from simulacra.metrics.fid import (
        accuracy,
        load_feature_classifier,
        save_feature_classifier,
        train_feature_classifier,
    )

    if path.is_file():
        net = load_feature_classifier(path)
    else:
        started = time.perf_counter()
        net = train_feature_classifier(
            data.train.x, data.train.y, epochs=6, generator=torch.Generator().manual_seed(seed)
        )
        save_feature_classifier(net, path)
        print(f"feature classifier trained in {time.perf_counter() - started:.0f} s -> {path}")
    return net, accuracy(net, data.test.x, data.test.y)


def train(spec: dict, data, run_dir: Path, args: argparse.Namespace, data_config: dict):
    """Calibrate the step rate, train for the budget with EMA; (model with EMA weights, steps, seconds)."""
    from simulacra.config import TrainConfig
    from simulacra.models.zoo import build_model
    from simulacra.train import EMA, TimeBudget, fit

    step_seconds, _ = calibrate(spec, data, args.batch_size, steps=10)
    rate = 1 / step_seconds
    steps = args.steps or steps_for_budget(args.minutes * 60, step_seconds, margin=0.97)
    print(
        f"calibration: {rate:.2f} steps/s -> {steps} steps = {steps * args.batch_size / len(data.train):.1f} epochs"
    )
    torch.manual_seed(args.seed)
    model = build_model(spec, data.info)
    ema = EMA(0.999)
    config = TrainConfig(eval_every=0,
        steps=steps, batch_size=args.batch_size, lr=args.lr, lr_schedule="cosine", warmup_steps=min(500, steps // 20),
        grad_clip=1.0, log_every=max(1, min(200, steps // 10)), seed=args.seed,
    )  # fmt: skip
    result = fit(
        model, data, config, run_dir=run_dir, run_config={"model": spec, "data": data_config},
        callbacks=[ema, TimeBudget(args.minutes * 60)],
    )  # fmt: skip
    ema.swap()  # evaluate the averaged weights
    return model, result.steps, result.wall_time


def bits_per_dim_of(model, data, args) -> tuple[dict, float]:
    """The PF-ODE bits/dim of the first ``args.nll_n`` test images (the unconditional density; a
    conditional model through its null label), and the seconds it took."""
    from simulacra.metrics.likelihood import Estimate

    started = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    # the unconditional density: the null label ∅ = 10 that label dropout trained
    x_nll = data.test.x[: args.nll_n]
    null = torch.full((len(x_nll),), 10, dtype=torch.long)
    with torch.no_grad():  # (with gradients on, the whole ODE trajectory's graph would be kept)
        log_p = torch.cat(
            [
                model.log_prob(xb, cb if model.conditional else None, generator=g)
                for xb, cb in zip(x_nll.split(250), null.split(250))
            ]
        )
    d = math.prod(data.info.event_shape)
    bpd = Estimate.from_values(-log_p / (d * math.log(2)), model.likelihood_estimator, "bits/dim")
    nll_seconds = time.perf_counter() - started
    print(
        f"PF-ODE: {bpd.value:.3f} ± {bpd.stderr:.3f} bits/dim on {len(log_p)} test images ({nll_seconds:.0f} s)"
    )
    return {
        "value": bpd.value,
        "stderr": bpd.stderr,
        "estimator": bpd.estimator,
        "n": len(log_p),
    }, nll_seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (wall minutes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps of the cosine schedule (default: from a short calibration; a machine "
        "shared with other jobs runs slower than the calibration measured)",
    )
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32])
    parser.add_argument(
        "--spec",
        default=None,
        help='JSON options over the default preset spec, e.g. \'{"name": "score-sde", "t_min": 1e-5, '
        '"weighting": "likelihood", "time_sampling": "importance", "conditional": false}\'',
    )
    parser.add_argument(
        "--settings",
        nargs="*",
        default=[f"{s}/{n}" for s, n in SETTINGS],
        help="SAMPLER/STEPS pairs scored for sample quality",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--eval-n", type=int, default=1000, help="samples and test images per FID/MMD")
    parser.add_argument(
        "--nll-n", type=int, default=500, help="test images for the PF-ODE bits/dim (0: not scored)"
    )
    parser.add_argument("--grid-steps", type=int, default=20, help="dpm-solver steps for the sample grids")
    parser.add_argument(
        "--limit", type=int, default=None, help="train on the first LIMIT images (smoke tests)"
    )
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluate", default=None, help="evaluate this finished run instead of training")
    parser.add_argument("--out", default=None, help="run directory (default runs/bench/mnist-diffusion)")
    parser.add_argument(
        "--results", default=None, help="results JSON (default benchmarks/results/mnist-diffusion.json)"
    )
    parser.add_argument(
        "--features",
        choices=("shipped", "own"),
        default="shipped",
        help="the FID features: the package's MNIST network (BENCHMARKS §22, as §20's GAN and VAE "
        "figures; default) or 'own', this script's first classifier (97.2%%, as §11 and §34 report)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import simulacra.models  # noqa: F401
    from simulacra.config import DataConfig
    from simulacra.data import load_dataset
    from simulacra.metrics.fid import fid
    from simulacra.metrics.two_sample import mmd
    from simulacra.samplers import DPMSolver, resolve_sampler
    from simulacra.train.checkpoint import load_model
    from simulacra.viz.grids import save_grid

    data = load_dataset(
        source := DataConfig("mnist", data_dir=args.data_dir, valid_fraction=0.0, limit=args.limit),
        seed=args.seed,
    )
    spec = {"name": "ddpm", "channels": args.channels, "attention_resolution": 7, "conditional": True}
    spec.update(json.loads(args.spec or "{}"))
    run_dir = Path(args.evaluate or args.out or ROOT / "runs" / "bench" / "mnist-diffusion")
    if run_dir.exists() and not args.evaluate:
        shutil.rmtree(run_dir)
    # the shared feature network is trained on all of MNIST; a --limit run keeps its own
    clf_path = (
        RESULTS / "mnist-classifier.safetensors" if args.limit is None else run_dir / "classifier.safetensors"
    )
    if args.features == "shipped":
        from _features import feature_network

        net, features = feature_network()
        acc = features["test_accuracy"]
    else:
        net, acc = classifier(data, args.seed, clf_path)
        features = {"network": str(clf_path)}
    print(f"feature classifier: test accuracy {acc:.4f}")
    if args.evaluate:  # a finished run: its EMA weights and its own log
        model = load_model(run_dir)
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        steps_done, train_seconds = int(last["step"]), float(last["elapsed_s"])
    else:
        model, steps_done, train_seconds = train(spec, data, run_dir, args, asdict(source))
    model.eval()
    parameters = sum(p.numel() for p in model.parameters())

    test_x = data.test.x[: args.eval_n]
    quality: dict = {}
    floor_fid = (
        fid(net, test_x, data.test.x[args.eval_n : 2 * args.eval_n])
        if len(data.test) >= 2 * args.eval_n
        else None
    )

    def score(sampler: str, n_steps: int, guidance: float | None) -> dict:
        g = torch.Generator().manual_seed(args.seed)
        labels = torch.randint(0, 10, (args.eval_n,), generator=g)
        started = time.perf_counter()
        chosen = resolve_sampler(sampler, steps=n_steps)
        x = torch.cat(
            [
                model.sample(
                    len(c), c if model.conditional else None, generator=g, sampler=chosen, guidance=guidance
                )
                for c in labels.split(500)
            ]
        )
        seconds = time.perf_counter() - started
        row = {"fid": fid(net, x, test_x), "mmd": mmd(x, test_x), "seconds": round(seconds, 1)}
        print(
            f"  {sampler:>10} {n_steps:>5} steps, guidance {guidance}: FID {row['fid']:.2f}  MMD² {row['mmd']:.2e}  {seconds:.0f} s"
        )
        return row

    guidance = 1.0 if model.conditional else None
    for setting in args.settings:
        sampler, n_steps = setting.split("/")
        quality[setting] = score(sampler, int(n_steps), guidance)
    guided = {str(w): score("dpm-solver", 20, w) for w in GUIDANCE} if model.conditional else {}
    for w in (1.0, 3.0) if model.conditional else (None,):
        labels = torch.arange(10).repeat_interleave(10) if model.conditional else None
        g = torch.Generator().manual_seed(args.seed)
        grid = model.sample(100, labels, generator=g, sampler=DPMSolver(steps=args.grid_steps), guidance=w)
        save_grid(grid, run_dir / (f"samples-guidance-{w:g}.png" if w else "samples.png"), 10)

    bits_per_dim, nll_seconds = bits_per_dim_of(model, data, args) if args.nll_n > 0 else (None, 0.0)

    record = {
        "benchmark": "mnist-diffusion",
        "model": spec,
        "parameters": parameters,
        "classifier_test_accuracy": acc,
        "features": features,
        "train_images": len(data.train),
        "steps": steps_done,
        "epochs": round(steps_done * args.batch_size / len(data.train), 2),
        "train_minutes": round(train_seconds / 60, 2),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "eval_n": args.eval_n,
        "fid_test_vs_test": floor_fid,
        "quality": quality,
        "guidance": guided,
        "bits_per_dim": bits_per_dim,
        "nll_seconds": round(nll_seconds, 1),
        "grids": sorted(str(path) for path in run_dir.glob("samples*.png")),
    }
    write_record(record, Path(args.results) if args.results else RESULTS / "mnist-diffusion.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
