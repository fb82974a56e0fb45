"""Outlier detection on MNIST (issue 17): MNIST digits 0-4 in distribution, against digits 5-9,
uniform noise, constant images, inverted and horizontally flipped digits, for a flow (Glow), a
PixelCNN and a VAE (IWAE estimate), each trained on the 0-4 training digits for a short CPU budget
beside a background model of the same preset trained on perturbed inputs (Ren et al. 2019).

Scores (higher = more anomalous; outliers are the positive class): the raw NLL, the likelihood
ratio log p_background − log p, the input-complexity correction bits/dim − PNG's (and lzma's)
bits/dim (Serrà et al. 2020), the typicality test on batches of M (Nalisnick et al. 2019), and
for the hierarchical VAEs (``hvae``, ``hvae-conv``) the hierarchical ratio L − L^{>k} for every k
(Havtorn et al. 2021), with AUROC, AUPR and FPR at 95% TPR.

Training is budgeted by CPU time (``time.process_time``), one torch thread: the machine is shared.

    python benchmarks/outliers_mnist.py --family pixelcnn --minutes 5
    python benchmarks/outliers_mnist.py --family glow --minutes 5
    python benchmarks/outliers_mnist.py --family vae --minutes 5
    python benchmarks/outliers_mnist.py --family hvae --minutes 10 --no-background --k 20
    python benchmarks/outliers_mnist.py --family pixelcnn --minutes 4 --perturb 0 \
        --background-spec '{"blocks": 0, "kernel_size": 3}' --tag local   # a local background

Each writes ``benchmarks/results/outliers-<family>.json`` and its runs under
``runs/bench/outliers-<family>`` and ``runs/bench/outliers-<family>-background``; the data sets
are saved under ``runs/bench/outliers-data`` as ``.npy`` files that ``simulacra outliers`` reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data/mnist.npz")
SETS = ("digits 5-9", "noise", "constant", "inverted", "flipped", "dark constant")
FAMILIES = {
    "glow": {"name": "glow"},
    "pixelcnn": {"name": "pixelcnn"},
    "vae": {"name": "vae"},
    # NVAE-style hierarchies, 3 groups: §26's MLP recipe, and the preset's convolutional cells
    "hvae": {"name": "hvae", "arch": "mlp", "latent_dim": [32, 16, 8], "hidden": [256, 128, 64]},
    "hvae-conv": {"name": "hvae"},
}
KL_WARMUP_STEPS = 1000
"""A hierarchy's KL weight rises from 0 to 1 over its first steps (about 2 epochs), as in §26."""


class CPUBudget:
    """Stops training once the process has used ``seconds`` of CPU time since construction, or
    when the file ``stop`` exists (a way to end a phase early on a machine busier than planned;
    the results then record the CPU time actually used)."""

    def __init__(self, seconds: float, stop: Path) -> None:
        self.seconds, self.start, self.stop = seconds, time.process_time(), stop

    def on_step_end(self, state: object) -> None:
        if time.process_time() - self.start > self.seconds or self.stop.exists():
            state.stop_requested = True  # type: ignore[attr-defined]


def prepare_data(folder: Path, n: int, seed: int) -> tuple[Path, dict[str, np.ndarray]]:
    """The 0-4 training digits as an .npz (x_train, and x_test: held-out 0-4 digits), and the
    evaluation sets (n each, uint8 (n, 28, 28)), saved as .npy files in ``folder``."""
    with np.load(DATA) as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    rng = np.random.default_rng(seed)
    low_test = x_test[y_test < 5]
    sets = {
        "digits 0-4": low_test[:n],
        "digits 5-9": x_test[y_test >= 5][:n],
        "noise": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "constant": np.repeat(rng.integers(0, 256, (n, 1, 1), dtype=np.uint8), 28 * 28).reshape(n, 28, 28),
        "inverted": 255 - low_test[:n],
        "flipped": np.ascontiguousarray(low_test[:n, :, ::-1]),
        # constant images of a level in 0-15: near the background of every digit, the simplest inputs
        "dark constant": np.repeat(rng.integers(0, 16, (n, 1, 1), dtype=np.uint8), 28 * 28).reshape(
            n, 28, 28
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / "mnist04.npz"
    if not train.exists():
        np.savez(train, x_train=x_train[y_train < 5], x_test=low_test)
    for name, x in sets.items():
        np.save(folder / f"{name.replace(' ', '')}.npy", x)
    return train, sets


def train(spec: dict, source: Path, perturb: float | None, minutes: float, run_dir: Path, seed: int) -> tuple:
    """(model, dataset, CPU seconds, steps) of ``spec`` trained on ``source`` (perturbed at rate
    ``perturb``, or clean) for ``minutes`` of CPU time, written to ``run_dir``."""
    import shutil

    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import load_dataset
    from simulacra.models.base import LatentHierarchy
    from simulacra.models.zoo import build_model
    from simulacra.train import KLWarmup, fit

    config = DataConfig(str(source), perturb=perturb)
    data = load_dataset(config, seed=seed)
    torch.manual_seed(seed)
    model = build_model(spec, data.info)
    settings = TrainConfig(
        steps=10**6, batch_size=64, lr=1e-3, seed=seed, eval_every=0, patience=None, keep_best=False
    )
    if run_dir.exists():
        shutil.rmtree(run_dir)
    start = time.process_time()
    result = fit(
        model,
        data,
        settings,
        run_dir=run_dir,
        run_config={"model": spec, "data": asdict(config), "train": asdict(settings)},
        callbacks=[CPUBudget(minutes * 60, run_dir.parent / f"{run_dir.name}.stop")]
        + ([KLWarmup(KL_WARMUP_STEPS)] if isinstance(model, LatentHierarchy) else []),
        progress=False,
    )
    return model, data, time.process_time() - start, result.steps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", choices=sorted(FAMILIES), required=True)
    parser.add_argument("--minutes", type=float, default=5.0, help="CPU minutes per model (default 5)")
    parser.add_argument(
        "--perturb", type=float, default=0.2, help="the background's perturbation rate μ (0: clean inputs)"
    )
    parser.add_argument(
        "--background-spec",
        default=None,
        help="JSON object of settings over the model's for the background, e.g. a PixelCNN that sees "
        'only its neighbours: \'{"blocks": 0, "kernel_size": 3}\' (with --perturb 0)',
    )
    parser.add_argument("--examples", type=int, default=1000, help="examples per evaluation set")
    parser.add_argument("--k", type=int, default=100, help="importance samples per example (VAE)")
    parser.add_argument("--batch", type=int, nargs="+", default=[5, 25], help="typicality batch sizes M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-background", action="store_true", help="train no background model (no llr row)")
    parser.add_argument(
        "--spec",
        default=None,
        help="JSON object of model settings over the family's, e.g. '{\"free_bits\": 0.5}'",
    )
    parser.add_argument("--tag", default=None, help="suffix of the run folders and the results file")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="score the runs a previous call trained (its training record kept) instead of training",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    from simulacra.metrics.detection import detection_report
    from simulacra.models.base import LatentHierarchy
    from simulacra.seeding import generator_for
    from simulacra.tasks import outliers as tasks

    folder = ROOT / "runs/bench/outliers-data"
    source, sets = prepare_data(folder, args.examples, args.seed)
    spec = dict(FAMILIES[args.family])
    if args.spec:
        spec.update(json.loads(args.spec))
    name = args.family + (f"-{args.tag}" if args.tag else "")
    runs = ROOT / f"runs/bench/outliers-{name}"
    result_path = ROOT / f"benchmarks/results/outliers-{name}.json"
    if args.reuse:  # the runs and training record of a previous call
        from simulacra.config import DataConfig
        from simulacra.data import load_dataset
        from simulacra.train.checkpoint import load_model

        previous = json.loads(result_path.read_text())["training"]
        model = load_model(runs)
        data = load_dataset(DataConfig(str(source)), seed=args.seed)
        cpu_model, steps_model = previous["model"]["cpu_seconds"], previous["model"]["steps"]
        args.minutes = previous["cpu_minutes_per_model"]
        background, cpu_bg, steps_bg = None, None, None
        if previous.get("background"):
            background = load_model(f"{runs}-background")
            cpu_bg, steps_bg = previous["background"]["cpu_seconds"], previous["background"]["steps"]
            args.perturb = previous["background"]["perturb"]
    else:
        model, data, cpu_model, steps_model = train(spec, source, None, args.minutes, runs, args.seed)
        background, cpu_bg, steps_bg = None, None, None
        if not args.no_background:
            background_spec = {**spec, **json.loads(args.background_spec or "{}")}
            perturb = args.perturb or None
            background, _, cpu_bg, steps_bg = train(
                background_spec, source, perturb, args.minutes, Path(f"{runs}-background"), args.seed
            )
    info = model.info
    start = time.process_time()

    def log_p(m: object, x: torch.Tensor, tag: str) -> tuple[torch.Tensor, str]:
        return tasks.log_likelihood(m, x, num_samples=args.k, generator=generator_for(args.seed, tag))

    scores: dict[str, dict[str, np.ndarray]] = {}
    log_ps: dict[str, torch.Tensor] = {}
    mean_bpd: dict[str, float] = {}
    estimator = ""
    levels = model.levels if isinstance(model, LatentHierarchy) else 1
    for name, raw in sets.items():
        x = torch.from_numpy(raw.astype(np.float32) / 255).reshape(-1, 1, 28, 28)
        lp, estimator = log_p(model, x, f"model {name}")
        bpd = tasks.bits_per_dim_score(
            lp, info, discrete_likelihood=model.discrete_likelihood, estimator=estimator
        )
        mean_bpd[name] = float(bpd.values.mean())
        log_ps[name] = lp
        scores[name] = {"nll": tasks.nll_score(lp, estimator).values.numpy()}
        if background is not None:
            lb, _ = log_p(background, x, f"background {name}")
            scores[name]["llr"] = tasks.likelihood_ratio_score(lp, lb).values.numpy()
        for compressor in ("png", "lzma"):
            scores[name][f"complexity ({compressor})"] = tasks.complexity_score(
                bpd, x, info, compressor
            ).values.numpy()
        for skip in range(1, levels):  # Havtorn et al. 2021: L − L^{>k}
            hllr = tasks.hierarchical_llr_score(
                model,
                x,
                skip=skip,
                num_samples=args.k,
                generator=generator_for(args.seed, "hllr", name, skip),
            )
            scores[name][f"hllr k={skip}"] = hllr.values.numpy()
    rows = []
    for ood in SETS:
        for score in scores["digits 0-4"]:
            report = detection_report(scores["digits 0-4"][score], scores[ood][score])
            rows.append({"ood": ood, "score": score, "level": "example", **report.to_dict()})
    # the typicality test: Ĥ from training digits, ε from validation digits (bootstrap)
    reference, _ = log_p(model, data.train.x[:2000], "reference")
    calibration, _ = log_p(model, data.valid.x[:1000], "calibration")
    for m in args.batch:
        test = tasks.TypicalityTest.fit(
            reference,
            m,
            alpha=0.01,
            calibration_log_p=calibration,
            generator=generator_for(args.seed, "boot", m),
        )
        stats = {}
        for name, lp in log_ps.items():
            order = torch.randperm(len(lp), generator=generator_for(args.seed, "order", name))
            stats[name] = test.statistic(lp[order]).numpy()
        for ood in SETS:
            report = detection_report(stats["digits 0-4"], stats[ood])
            rows.append(
                {
                    "ood": ood,
                    "score": f"typicality M={m}",
                    "level": "batch",
                    **report.to_dict(),
                    "rejected_in": float((stats["digits 0-4"] > test.threshold).mean()),
                    "rejected_out": float((stats[ood] > test.threshold).mean()),
                    "entropy": test.entropy,
                    "threshold": test.threshold,
                }
            )
    cpu_scoring = time.process_time() - start
    record = {
        "benchmark": "outlier detection on MNIST: digits 0-4 in distribution",
        "family": args.family,
        "model": spec,
        "estimator": estimator,
        "training": {
            "cpu_minutes_per_model": args.minutes,
            "model": {"cpu_seconds": cpu_model, "steps": steps_model, "batch_size": 64},
            "background": None
            if background is None
            else {
                "cpu_seconds": cpu_bg,
                "steps": steps_bg,
                "perturb": args.perturb,
                "settings": json.loads(args.background_spec or "{}"),
            },
        },
        "examples_per_set": args.examples,
        "mean_bits_per_dim": mean_bpd,
        "cpu_seconds_scoring": cpu_scoring,
        "rows": rows,
        "note": "short CPU budgets on a 2-core machine shared with other jobs; outliers positive, "
        "higher score = more anomalous",
    }
    write_record(record, result_path)
    print(f"{'ood':<12} {'score':<20} AUROC  AUPR   FPR95")
    for r in rows:
        print(f"{r['ood']:<12} {r['score']:<20} {r['auroc']:.3f}  {r['aupr']:.3f}  {r['fpr95']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
