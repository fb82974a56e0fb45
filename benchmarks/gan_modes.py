"""Mode coverage of GAN recipes on 2-D mixtures (the VEEGAN / PacGAN protocol).

Two mixtures of isotropic Gaussians, each with equal weights:

* ``ring``: 8 Gaussians on a circle of radius 2, σ = 0.02 (Srivastava et al. 2017, VEEGAN);
* ``grid``: 25 Gaussians at {−4, −2, 0, 2, 4}², σ = 0.05 (Lin et al. 2018, PacGAN, Table 2).

For each recipe (``minimax``: the saturating game; ``non-saturating``; ``hinge+sn``: the sngan
preset; ``wgan-gp``; ``pacgan4``: non-saturating with D judging packs of 4, Lin et al. 2018) and seed, one MLP GAN (generator and discriminator 3 × 128 ReLU /
LeakyReLU, latent 2) is trained with ``simulacra.train.fit`` on 20,000 fixed points (batch 256,
--steps steps, each preset's Adam betas, lr --lr, WGAN-GP with its 5 critic updates and lr
--lr-wgan), then 2,500 samples are drawn: a sample is of high quality within 3σ of its nearest
centre, and a mode is covered when 20 or more high-quality samples fall on it
(:func:`simulacra.metrics.modes.mode_coverage`). Every figure is the mean ± sd over the seeds.

    python benchmarks/gan_modes.py --threads 1
    python benchmarks/gan_modes.py --steps 200 --seeds 0 --recipes non-saturating   # smoke test

Writes benchmarks/results/gan-modes.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)

RESULTS = Path(__file__).resolve().parent / "results"

RECIPES: dict[str, dict[str, Any]] = {
    "minimax": {"name": "gan", "loss": "minimax"},
    "non-saturating": {"name": "gan", "loss": "non-saturating"},
    "hinge+sn": {"name": "sngan"},
    "wgan-gp": {"name": "wgan-gp"},
    "pacgan4": {"name": "gan", "loss": "non-saturating", "pack": 4},
    "ns+r1": {"name": "gan", "loss": "non-saturating", "r1": 0.1},
}


def mixture(name: str) -> tuple[torch.Tensor, float]:
    """The centres (K, 2) and σ of ``ring`` or ``grid``."""
    if name == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return 2.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.02
    if name == "grid":
        side = torch.arange(-4.0, 5.0, 2.0, dtype=torch.float64)
        return torch.cartesian_prod(side, side), 0.05
    raise ValueError(f"unknown mixture {name!r}; expected ring or grid")


def draw(centres: torch.Tensor, std: float, n: int, generator: torch.Generator) -> torch.Tensor:
    k = torch.randint(0, centres.shape[0], (n,), generator=generator)
    return (centres[k] + std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()


def run_one(recipe: str, mixture_name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from simulacra.config import TrainConfig
    from simulacra.data.info import DataInfo, Dataset, Split
    from simulacra.metrics.modes import mode_coverage
    from simulacra.models.zoo import build_model
    from simulacra.train import fit

    centres, std = mixture(mixture_name)
    x = draw(centres, std, args.train, torch.Generator().manual_seed(1000 + seed))
    info = DataInfo((2,), "real")
    spec = {**RECIPES[recipe], "latent_dim": 2, "hidden": args.hidden, **args.model}
    torch.manual_seed(seed)
    model = build_model(spec, info)
    lr = args.lr_wgan if recipe == "wgan-gp" else args.lr
    config = TrainConfig.for_model(  # each preset's Adam betas; no EMA unless --ema (the published protocol has none)
        model,
        steps=args.steps,
        batch_size=256,
        log_every=args.steps,
        eval_every=0,
        seed=seed,
        lr=lr,
        lr_schedule=args.lr_schedule,
        ema_decay=args.ema,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:  # a run folder keeps the EMA weights
        result = fit(model, Dataset(mixture_name, info, Split(x)), config, run_dir=run_dir, progress=False)
        seconds = time.perf_counter() - started
        if args.ema is not None:  # sample with the average, as the CLI does
            from simulacra.train.checkpoint import load_model

            model = load_model(run_dir)
    samples = model.eval().sample(2500, generator=torch.Generator().manual_seed(seed))
    cover = mode_coverage(samples, centres, std)
    out = {
        "modes": cover.modes,
        "total": cover.total,
        "high_quality": cover.high_quality,
        "seconds": seconds,
        "final_metrics": result.metrics,
    }
    if args.rejection:  # the same generator and discriminator, samples kept by DRS
        if args.calibrate:  # DRS's calibration: D alone trained further against the final G
            calibrate_discriminator(model, x, args.calibrate, lr, seed)
        with torch.no_grad():
            kept, stats = model.rejection_sample(2500, generator=torch.Generator().manual_seed(seed))
        cover = mode_coverage(model.from_model(kept), centres, std)
        out["rejection"] = {
            "modes": cover.modes,
            "high_quality": cover.high_quality,
            "acceptance": stats.acceptance_rate,
            "log_bound": stats.log_bound,
            "above_bound": stats.above_bound,
        }
    return out


def calibrate_discriminator(model: Any, x: torch.Tensor, steps: int, lr: float, seed: int) -> None:
    """``steps`` Adam updates of the discriminator alone (the preset's betas), batches of 256 of
    x, the generator fixed: Azadi et al. (2019) train D on past the game so that its logit
    estimates log p_data/p_g of the *final* generator, which rejection sampling assumes."""
    settings = model.optimizer_settings()["discriminator"]
    params = model.parameter_groups()["discriminator"]
    optimizer = torch.optim.Adam(params, lr=lr, betas=settings.betas or (0.5, 0.999))
    g = torch.Generator().manual_seed(10_000 + seed)
    model.train()
    for _ in range(steps):
        batch = x[torch.randint(0, x.shape[0], (256,), generator=g)]
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch, group="discriminator").loss.backward()
        optimizer.step()
    model.eval()


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mixtures", nargs="+", default=["ring", "grid"])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="training steps (generator updates)")
    parser.add_argument("--train", type=int, default=20_000, help="training points")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-wgan", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr-schedule", default="constant", help="constant (the protocol's) or cosine")
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[128, 128, 128], help="MLP widths of G and D"
    )
    parser.add_argument(
        "--ema", type=float, default=None, help="sample with an EMA of this decay (default none)"
    )
    parser.add_argument(
        "--set", dest="model", action="append", default=[], help="model KEY=JSON for every recipe"
    )
    parser.add_argument(
        "--rejection",
        action="store_true",
        help="also sample each trained run by discriminator rejection sampling (Azadi et al. 2019)",
    )
    parser.add_argument(
        "--calibrate",
        type=int,
        default=0,
        help="with --rejection: train the discriminator alone this many steps first (DRS's calibration)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "gan-modes.json")
    args = parser.parse_args()
    args.model = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.model)}
    torch.set_num_threads(args.threads)

    table: dict[str, dict[str, Any]] = {}
    for mixture_name in args.mixtures:
        for recipe in args.recipes:
            runs = [run_one(recipe, mixture_name, seed, args) for seed in args.seeds]
            row = {
                "modes": summary([r["modes"] for r in runs]),
                "high_quality": summary([r["high_quality"] for r in runs]),
                "total": runs[0]["total"],
                "seconds": summary([r["seconds"] for r in runs]),
                "runs": runs,
            }
            table[f"{mixture_name}/{recipe}"] = row
            if args.rejection:
                kept = [r["rejection"] for r in runs]
                table[f"{mixture_name}/{recipe}+rejection"] = {
                    "modes": summary([r["modes"] for r in kept]),
                    "high_quality": summary([r["high_quality"] for r in kept]),
                    "acceptance": summary([r["acceptance"] for r in kept]),
                    "total": runs[0]["total"],
                }
                print(
                    f"{mixture_name:5s} {recipe:15s} + discriminator rejection sampling: modes "
                    f"{statistics.fmean(r['modes'] for r in kept):5.1f}, high quality "
                    f"{100 * statistics.fmean(r['high_quality'] for r in kept):5.1f} %, acceptance "
                    f"{statistics.fmean(r['acceptance'] for r in kept):.3f}",
                    flush=True,
                )
            print(
                f"{mixture_name:5s} {recipe:15s} modes {row['modes']['mean']:5.1f} ± {row['modes']['sd']:4.1f} "
                f"of {row['total']}, high quality {100 * row['high_quality']['mean']:5.1f} ± "
                f"{100 * row['high_quality']['sd']:4.1f} %, {row['seconds']['mean']:.0f} s per run",
                flush=True,
            )
    record = {
        "protocol": "VEEGAN/PacGAN: 2,500 samples, high quality within 3σ of the nearest centre, "
        "a mode covered with >= 20 high-quality samples; ring of 8 (r = 2, σ = 0.02), "
        "grid of 25 ({-4..4}², σ = 0.05)",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": table,
    }
    write_record(record, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
