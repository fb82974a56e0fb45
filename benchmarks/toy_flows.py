"""Flows on the 2-D toys: test NLL per model and toy, the gap to the known entropy, density plots.

For each toy (moons, 8gaussians, checkerboard, pinwheel, rings) and each flow preset (realnvp,
maf, nsf, umnn, cnf): train with ``simulacra.train.fit`` on 20,000 points (the toy's train split)
for ``--steps`` steps (batch 512, Adam 1e-3 with cosine decay), then report the exact test NLL
in nats on the toy's test split with its standard error. For 8gaussians and checkerboard the
entropy H(p) is known in closed form, so NLL − H = KL(p ‖ q) ≥ 0 is reported too.

    python benchmarks/toy_flows.py --threads 1 --steps 3000
    python benchmarks/toy_flows.py --models cnf --steps 1500    # one model at a time

Writes benchmarks/results/toy-flows.json (merged across invocations), one density/sample PNG
per (toy, model) under benchmarks/results/toys/, and the grid benchmarks/results/toy-flows.png.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from _figures import density_grid  # noqa: E402  (benchmarks/ is on sys.path when run)
from _machine import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TOYS = ("moons", "8gaussians", "checkerboard", "pinwheel", "rings")
MODELS = ("realnvp", "maf", "nsf", "umnn", "cnf")
BOUNDS = ((-4.0, 4.0), (-4.0, 4.0))

# per-model settings and training steps (batch 512); the CNF trains with looser solver
# tolerances (evaluation uses the preset's 1e-5)
SETTINGS: dict[str, tuple[dict, int]] = {
    "realnvp": ({"transforms": 8, "hidden": [128, 128]}, 6000),
    "maf": ({"transforms": 5, "hidden": [128, 128]}, 6000),
    "nsf": ({"transforms": 5, "hidden": [128, 128]}, 6000),
    "umnn": ({"transforms": 3, "hidden": [64, 64]}, 2000),
    "cnf": ({"hidden": [64, 64, 64], "train_rtol": 1e-4, "train_atol": 1e-4}, 1000),
}


def run(toy: str, name: str, steps: int | None, threads: int, seed: int) -> dict:
    import simulacra.models  # noqa: F401
    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import load_dataset
    from simulacra.data.toys import entropy
    from simulacra.metrics.likelihood import evaluate_nll
    from simulacra.models.zoo import build_model
    from simulacra.train.loop import fit
    from simulacra.viz.plots import plot_density_2d

    data = load_dataset(DataConfig(name=toy, num_samples=20_000), seed=seed)
    torch.manual_seed(seed)
    kwargs, default_steps = SETTINGS.get(name, ({}, 3000))
    steps = steps or default_steps
    model = build_model({"name": name, **kwargs}, data.info)
    config = TrainConfig(
        eval_every=0,
        steps=steps,
        batch_size=512,
        lr=1e-3,
        lr_schedule="cosine",
        seed=seed,
        num_threads=threads,
        log_every=100,
    )
    start = time.perf_counter()
    fit(model, data, config, progress=False)
    train_s = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    nll = evaluate_nll(model, data.test.x, generator=torch.Generator().manual_seed(seed))["nll"]
    eval_s = time.perf_counter() - start
    out = {
        "toy": toy,
        "model": name,
        "settings": kwargs,
        "steps": steps,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 2),
        "test_nll": nll.value,
        "test_nll_se": nll.stderr,
        "n_test": nll.n,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    try:
        h = entropy(toy)
        out["entropy"] = h
        out["kl"] = nll.value - h
    except Exception:
        pass
    samples = model.sample(5000, generator=torch.Generator().manual_seed(seed + 1))
    path = RESULTS / "toys" / f"{toy}-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_density_2d(model.log_prob, samples, path, bounds=BOUNDS, resolution=160)
    out["figure"] = str(path.relative_to(RESULTS.parent))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toys", default=",".join(TOYS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=None, help="override the per-model steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "toy-flows.json"))
    parser.add_argument("--skip-done", action="store_true", help="skip (toy, model) pairs with results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    for toy in args.toys.split(","):
        for name in args.models.split(","):
            if args.skip_done and (RESULTS / "toys" / f"{toy}-{name}.json").is_file():
                continue
            r = run(toy, name, args.steps, args.threads, args.seed)
            r["date"] = datetime.now(UTC).isoformat(timespec="seconds")
            r["machine"] = machine()
            kl = f"  KL {r['kl']:.3f}" if "kl" in r else ""
            print(
                f"{toy:12s} {name:8s} NLL {r['test_nll']:.3f} ± {r['test_nll_se']:.3f}{kl}  ({r['train_s']:.0f} s)"
            )
            # one file per (toy, model), so that several invocations can run side by side
            (RESULTS / "toys" / f"{toy}-{name}.json").write_text(json.dumps(r, indent=2) + "\n")
    results = {}
    for path in sorted((RESULTS / "toys").glob("*.json")):
        r = json.loads(path.read_text())
        results[f"{r['toy']}/{r['model']}"] = r
    report = {"results": results}
    out.write_text(json.dumps(report, indent=2) + "\n")
    density_grid(report["results"], TOYS, MODELS, RESULTS.parent, RESULTS / "toy-flows.png")
    print(f"wrote {out} and {RESULTS / 'toy-flows.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
