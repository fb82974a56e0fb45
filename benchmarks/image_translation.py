"""pix2pix super-resolution on held-out digits, against nearest and bicubic upsampling.

For each seed, the ``pix2pix`` preset (U-Net G, PatchGAN D(y, x), non-saturating + 100·L1) is
trained with ``simulacra.train.fit`` under its own training defaults (Adam 2e-4, β (0.5, 0.999),
EMA 0.999) on the training split of a dataset (default scikit-learn's 8×8 digits), the pairs
(P x, x) made on the fly by the super-resolution degradation (block means of f × f pixels). On
the test split: mean L1 (data units), PSNR (dB, per image, then averaged) and the consistency
error |avgpool_f(x̂) − y| (0 by construction before the output is clamped to [0, 1] and rounded
to the data's levels). Nearest upsampling is the observation itself; bicubic is clamped to [0, 1].
Every pix2pix figure is the mean ± sd over the seeds.

    python benchmarks/image_translation.py --factor 4 --steps 1000 --seeds 0 1 2
    python benchmarks/image_translation.py --factor 2 --steps 100 --seeds 0     # smoke test

Writes benchmarks/results/image-translation-x{factor}.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor


def scores(x_hat: Tensor, x: Tensor, factor: int) -> dict[str, float]:
    """L1, PSNR (dB) and consistency of x̂ (N, C, H, W) against x, data space [0, 1]."""
    mse = (x_hat - x).square().flatten(1).mean(1).clamp_min(1e-10)
    return {
        "l1": (x_hat - x).abs().mean().item(),
        "psnr_db": (10 * torch.log10(1 / mse)).mean().item(),
        "consistency": (F.avg_pool2d(x_hat, factor) - F.avg_pool2d(x, factor)).abs().mean().item(),
    }


def main() -> None:
    from simulacra.config import TrainConfig
    from simulacra.data.datasets import DataConfig, load_dataset
    from simulacra.models.zoo import build_model
    from simulacra.train import fit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(name=args.data))
    test = (data.test or data.valid or data.train).x.float()
    low = F.avg_pool2d(test, args.factor)
    results: dict[str, object] = {
        "nearest": scores(F.interpolate(low, scale_factor=args.factor, mode="nearest"), test, args.factor),
        "bicubic": scores(
            F.interpolate(low, scale_factor=args.factor, mode="bicubic").clamp(0, 1), test, args.factor
        ),
    }
    runs = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = build_model({"name": "pix2pix", "task": "super-resolution", "factor": args.factor}, data.info)
        config = TrainConfig.for_model(model, steps=args.steps, batch_size=args.batch_size, seed=seed)
        started = time.perf_counter()
        fit(model, data, config, progress=False)
        seconds = time.perf_counter() - started
        model.eval()
        out = model.translate(model.observe(test), generator=torch.Generator().manual_seed(seed))
        runs.append({"seed": seed, "train_s": seconds, **scores(out, test, args.factor)})
        print(f"seed {seed}: {runs[-1]}")
    summary = {
        key: (statistics.mean(r[key] for r in runs), statistics.pstdev(r[key] for r in runs))
        for key in ("l1", "psnr_db", "consistency", "train_s")
    }
    results["pix2pix"] = {"runs": runs, "mean_sd": summary}
    print(
        f"x{args.factor} on {len(test)} held-out {args.data} images, {args.steps} steps, seeds {args.seeds}:"
    )
    for name in ("nearest", "bicubic"):
        r = results[name]
        print(f"  {name:8s} L1 {r['l1']:.4f}  PSNR {r['psnr_db']:.2f} dB  consistency {r['consistency']:.4f}")
    m = summary
    print(
        f"  pix2pix  L1 {m['l1'][0]:.4f} ± {m['l1'][1]:.4f}  PSNR {m['psnr_db'][0]:.2f} ± {m['psnr_db'][1]:.2f} dB"
        f"  consistency {m['consistency'][0]:.4f}  ({m['train_s'][0]:.0f} s per run)"
    )
    out_path = Path(__file__).parent / "results" / f"image-translation-x{args.factor}.json"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(json.dumps({"args": vars(args), **results}, indent=2))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
