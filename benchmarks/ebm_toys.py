"""Energy-based models on the 2-D toys: exact test NLL (log Z by quadrature) per objective.

For each toy (moons, 8gaussians, checkerboard, pinwheel, rings; 20,000 training points, the same
splits as the flows of BENCHMARKS §5) and each objective:

* ``cd``: persistent contrastive divergence, a replay buffer of 10,000 chains, ``--chain-steps``
  unadjusted Langevin steps per batch;
* ``sliced``: sliced score matching (no chains);
* ``nce``: noise-contrastive estimation against a Gaussian fitted to the data, widened 1.2×
  (``--nce-noise uniform``: uniform on the box);
* ``nce-flow``: NCE against a flow trained on the data first (``--noise-flow``, ``--noise-steps``),
  as ``simulacra train ebm --set model.objective=nce --init FLOW_RUN`` does (Gao et al. 2020);

train the ``ebm`` preset (an MLP energy of 3 × 128 Swish units on the box [−5, 5]²) with
``simulacra.train.fit`` (batch 512, Adam 1e-3 with cosine decay), then report the exact test NLL
in nats per point: log Z by quadrature on a 512 × 512 grid of the box. For 8gaussians and
checkerboard the entropy is known, so NLL − H = KL(p ‖ q) is reported too, and every row is set
beside the best flow of §5 (NSF).

    python benchmarks/ebm_toys.py --threads 1                      # all 15 runs
    python benchmarks/ebm_toys.py --objectives cd --toys moons     # one at a time

Writes one JSON per (toy, objective) under benchmarks/results/ebm-toys/, the table
benchmarks/results/ebm-toys.json and the density grid benchmarks/results/ebm-toys.png.
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
OUT = RESULTS / "ebm-toys"
TOYS = ("moons", "8gaussians", "checkerboard", "pinwheel", "rings")
OBJECTIVES = ("cd", "sliced", "nce")
BOUNDS = ((-5.0, 5.0), (-5.0, 5.0))
NSF = {"moons": 2.399, "8gaussians": 2.845, "checkerboard": 3.505, "pinwheel": 2.348, "rings": 2.723}
"""Test NLL of the spline flow (BENCHMARKS §5, the best flow on every toy)."""


def settings(args: argparse.Namespace, objective: str) -> dict:
    base = {"name": "ebm", "hidden": list(args.hidden), "objective": objective}
    if objective == "cd":
        return {
            **base, "steps": args.chain_steps, "step_size": args.step_size, "buffer_size": 10_000,
            "alpha": args.alpha,
        }  # fmt: skip
    if objective in ("nce", "nce-flow"):
        noise = {} if objective == "nce-flow" else {"nce_noise": args.nce_noise}
        return {**base, "objective": "nce", "nce_ratio": args.nce_ratio, **noise}
    return {**base, "projections": 4}


def run(toy: str, objective: str, args: argparse.Namespace) -> dict:
    import simulacra.models  # noqa: F401
    from simulacra.config import DataConfig, TrainConfig
    from simulacra.data import load_dataset
    from simulacra.data.toys import entropy
    from simulacra.metrics.likelihood import evaluate_nll
    from simulacra.models.zoo import build_model
    from simulacra.train.loop import fit
    from simulacra.viz.plots import plot_density_2d

    data = load_dataset(DataConfig(name=toy, num_samples=20_000), seed=args.seed)
    torch.manual_seed(args.seed)
    spec = settings(args, objective)
    noise = None
    if objective == "nce-flow":  # the noise: a flow fitted to the data first, then frozen
        noise = build_model(json.loads(args.noise_flow), data.info)
        flow_config = TrainConfig(
            eval_every=0, steps=args.noise_steps, batch_size=512, lr=1e-3, lr_schedule="cosine",
            seed=args.seed, num_threads=args.threads, log_every=100, patience=None,
        )  # fmt: skip
        start = time.perf_counter()
        fit(noise, data, flow_config, progress=False)
        noise_s = time.perf_counter() - start
        noise.eval()
        noise_nll = evaluate_nll(noise, data.test.x)["nll"]
        spec = {**spec, "stage_one": noise.spec}
    model = build_model(spec, data.info)
    if noise is not None:
        model.initialize_from(noise)
    config = TrainConfig(
        eval_every=0,
        steps=args.steps,
        batch_size=512,
        lr=args.lr,
        lr_schedule="cosine",
        seed=args.seed,
        num_threads=args.threads,
        log_every=100,
        patience=None,
    )
    start = time.perf_counter()
    fit(model, data, config, progress=False)
    train_s = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    model.estimate_log_z()
    nll = evaluate_nll(model, data.test.x, generator=torch.Generator().manual_seed(args.seed))["nll"]
    eval_s = time.perf_counter() - start
    out = {
        "toy": toy,
        "objective": objective,
        "spec": spec,
        "steps": args.steps,
        "lr": args.lr,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 2),
        "test_nll": nll.value,
        "test_nll_se": nll.stderr,
        "estimator": nll.estimator,
        "n_test": nll.n,
        "nsf_nll": NSF[toy],
        "gap_to_nsf": nll.value - NSF[toy],
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if noise is not None:
        out["noise_flow"] = {"spec": noise.spec, "steps": args.noise_steps, "train_s": round(noise_s, 1)}
        out["noise_flow"]["test_nll"] = noise_nll.value
    try:
        h = entropy(toy)
        out["entropy"] = h
        out["kl"] = nll.value - h
    except Exception:
        pass
    samples = model.sample(
        2000, generator=torch.Generator().manual_seed(args.seed + 1), init="noise", steps=500
    )
    path = OUT / f"{toy}-{objective}{args.tag}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_density_2d(model.log_prob, samples, path, bounds=BOUNDS, resolution=160)
    out["figure"] = str(path.relative_to(RESULTS.parent))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toys", default=",".join(TOYS))
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--steps", type=int, default=6000, help="training steps (batch 512)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--chain-steps", type=int, default=20, help="cd: Langevin steps per batch")
    parser.add_argument("--step-size", type=float, default=0.01, help="cd: the Langevin step ε")
    parser.add_argument("--alpha", type=float, default=0.0, help="cd: the L2 energy penalty α")
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[128, 128, 128], help="the energy MLP's widths"
    )
    parser.add_argument("--nce-ratio", type=int, default=4, help="nce: noise draws per data point")
    parser.add_argument(
        "--nce-noise", choices=("gaussian", "uniform"), default="gaussian", help="nce: the fixed noise"
    )
    parser.add_argument(
        "--noise-flow",
        default='{"name": "maf", "transforms": 5, "hidden": [64, 64]}',
        help="nce-flow: the noise flow's spec (JSON)",
    )
    parser.add_argument("--noise-steps", type=int, default=2000, help="nce-flow: the flow's training steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tag", default="", help="a suffix of the result files (variants beside the main runs)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for toy in args.toys.split(","):
        for objective in args.objectives.split(","):
            r = run(toy, objective, args)
            r["date"] = datetime.now(UTC).isoformat(timespec="seconds")
            r["machine"] = machine()
            kl = f"  KL {r['kl']:.3f}" if "kl" in r else ""
            print(
                f"{toy:12s} {objective:7s} NLL {r['test_nll']:.3f} ± {r['test_nll_se']:.3f}{kl}  "
                f"(NSF {r['nsf_nll']:.3f}, gap {r['gap_to_nsf']:+.3f}; {r['train_s']:.0f} s)",
                flush=True,
            )
            r["tag"] = args.tag
            (OUT / f"{toy}-{objective}{args.tag}.json").write_text(json.dumps(r, indent=2) + "\n")
    results = {}
    for path in sorted(OUT.glob("*.json")):
        r = json.loads(path.read_text())
        results[f"{r['toy']}/{r['objective']}{r.get('tag', '')}"] = r
    (RESULTS / "ebm-toys.json").write_text(json.dumps({"results": results}, indent=2) + "\n")
    columns = (*OBJECTIVES, "nce-flow")
    density_grid(results, TOYS, columns, RESULTS.parent, RESULTS / "ebm-toys.png")  # the untagged runs
    print(f"wrote {RESULTS / 'ebm-toys.json'} and {RESULTS / 'ebm-toys.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
