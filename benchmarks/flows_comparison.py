"""simulacra against zuko and nflows on the same flows, side by side in one run.

Protocol (issue "Normalizing flows"): the same MAF (5 transforms, 2 × 64 hidden units, ReLU) and
the same autoregressive NSF (5 transforms, 2 × 64 hidden, 8 bins, tail bound 5) on two moons
(scikit-learn ``make_moons``, noise 0.05), batch 256, Adam lr 1e-3, 2000 steps, 2 threads. For
each library: training steps/s, test NLL on 10,000 fresh points (nats, ± standard error), and the
time to draw 10,000 samples. All three libraries see the same batches in the same order.

simulacra is timed twice: in the same plain loop as the others (``torch.optim.Adam``, so the
models are compared), and through ``simulacra.train.fit`` (fused AdamW, what ``simulacra train``
runs). Repeats are interleaved across libraries so that machine noise hits all of them alike.

zuko and nflows are not dependencies of simulacra; run this in a separate environment:

    python -m venv /tmp/flows-venv
    /tmp/flows-venv/bin/pip install torch==2.13.0 zuko nflows -e . -c constraints.txt
    /tmp/flows-venv/bin/python benchmarks/flows_comparison.py --threads 2

Writes benchmarks/results/flows-comparison.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from _machine import machine  # noqa: E402  (benchmarks/ is on sys.path when run)

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- data


def moons(n: int, seed: int) -> torch.Tensor:
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.05, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32)


# --------------------------------------------------------------------------- the three libraries
# Each builder returns (module with parameters, log_prob(x) -> (B,), sample(n) -> (n, 2)).

Built = tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], Callable[[int], torch.Tensor]]


def build_simulacra(kind: str) -> Built:
    import simulacra.models  # noqa: F401
    from simulacra.data.info import DataInfo
    from simulacra.models.zoo import build_model

    info = DataInfo(event_shape=(2,), support="real")
    spec = {"name": kind, "transforms": 5, "hidden": [64, 64]}
    if kind == "nsf":
        spec.update(bins=8, bound=5.0)
    model = build_model(spec, info)
    return model, model.log_prob, lambda n: model.sample(n)


def build_zuko(kind: str) -> Built:
    import zuko

    if kind == "maf":
        flow = zuko.flows.MAF(features=2, transforms=5, hidden_features=(64, 64))
    else:
        flow = zuko.flows.NSF(features=2, transforms=5, bins=8, hidden_features=(64, 64))
    return flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,))


def build_nflows(kind: str) -> Built:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import (
        MaskedAffineAutoregressiveTransform,
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    )
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    layers = []
    for i in range(5):
        if kind == "maf":  # MADE: 2 -> 64 -> 64 -> out (initial layer + one plain block)
            t = MaskedAffineAutoregressiveTransform(
                features=2, hidden_features=64, num_blocks=1, use_residual_blocks=False
            )
        else:
            t = MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features=2,
                hidden_features=64,
                num_bins=8,
                tails="linear",
                tail_bound=5.0,
                num_blocks=1,
                use_residual_blocks=False,
            )
        layers.append(t)
        if i < 4:
            layers.append(ReversePermutation(features=2))
    flow = Flow(CompositeTransform(layers), StandardNormal([2]))
    return flow, flow.log_prob, flow.sample


BUILDERS = {"simulacra": build_simulacra, "zuko": build_zuko, "nflows": build_nflows}


# --------------------------------------------------------------------------- one run


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def run_plain(lib: str, kind: str, batches: torch.Tensor, test: torch.Tensor, seed: int) -> dict:
    """Train with torch.optim.Adam on the given batches; time training, test NLL and sampling."""
    torch.manual_seed(seed)
    module, log_prob, sample = BUILDERS[lib](kind)
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x in batches:
        loss = -log_prob(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - start
    return _evaluate(lib, module, log_prob, sample, len(batches), train_s, test)


def run_fit(kind: str, batches: torch.Tensor, test: torch.Tensor, seed: int, threads: int) -> dict:
    """simulacra's own loop (``simulacra.train.fit``: fused AdamW, its batch schedule)."""
    from simulacra.config import TrainConfig
    from simulacra.data.info import DataInfo, Dataset, Split
    from simulacra.train.loop import fit

    torch.manual_seed(seed)
    module, log_prob, sample = build_simulacra(kind)
    train = batches.reshape(-1, 2)
    data = Dataset("moons", DataInfo(event_shape=(2,), support="real"), Split(train))
    config = TrainConfig(
        eval_every=0,
        steps=len(batches),
        batch_size=batches.shape[1],
        lr=1e-3,
        seed=seed,
        num_threads=threads,
        log_every=500,
    )
    result = fit(module, data, config, progress=False)
    return _evaluate("simulacra (fit)", module, log_prob, sample, len(batches), result.wall_time, test)


def _evaluate(lib, module, log_prob, sample, steps, train_s, test) -> dict:
    module.eval()
    with torch.no_grad():
        nll = -log_prob(test).double()
        start = time.perf_counter()
        x = sample(10_000)
        sample_s = time.perf_counter() - start
    assert x.shape == (10_000, 2) and torch.isfinite(x).all()
    return {
        "library": lib,
        "parameters": parameter_count(module),
        "steps_per_s": steps / train_s,
        "train_s": train_s,
        "test_nll": nll.mean().item(),
        "test_nll_se": (nll.std() / math.sqrt(nll.numel())).item(),
        "sample_10k_s": sample_s,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per library")
    parser.add_argument("--kinds", default="maf,nsf")
    parser.add_argument("--libraries", default="simulacra,zuko,nflows")
    parser.add_argument("--out", default=str(RESULTS / "flows-comparison.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    libs = args.libraries.split(",")
    train = moons(args.steps * args.batch_size, seed=0)
    batches = train.reshape(args.steps, args.batch_size, 2)
    test = moons(10_000, seed=1)
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    for lib in libs:
        mod = "simulacra" if lib == "simulacra" else lib
        versions[lib] = getattr(__import__(mod), "__version__", "?")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions,
        "protocol": vars(args),
        "results": {},
    }
    for kind in args.kinds.split(","):
        runs: dict[str, list[dict]] = {}
        for r in range(args.repeats):
            for lib in libs:
                res = run_plain(lib, kind, batches, test, seed=r)
                runs.setdefault(lib, []).append(res)
                print(
                    f"{kind} {lib:10s} repeat {r}: {res['steps_per_s']:7.1f} steps/s  NLL {res['test_nll']:.4f}"
                )
            if "simulacra" in libs:
                res = run_fit(kind, batches, test, seed=r, threads=args.threads)
                runs.setdefault("simulacra (fit)", []).append(res)
                print(
                    f"{kind} simulacra (fit) repeat {r}: {res['steps_per_s']:7.1f} steps/s  NLL {res['test_nll']:.4f}"
                )
            sys.stdout.flush()
        summary = {}
        for lib, rs in runs.items():
            summary[lib] = {
                "parameters": rs[0]["parameters"],
                "steps_per_s_median": statistics.median(r["steps_per_s"] for r in rs),
                "test_nll_mean": float(np.mean([r["test_nll"] for r in rs])),
                "test_nll_runs": [round(r["test_nll"], 4) for r in rs],
                "test_nll_se": rs[0]["test_nll_se"],
                "sample_10k_s_median": statistics.median(r["sample_10k_s"] for r in rs),
                "runs": rs,
            }
        others = [summary[lib]["steps_per_s_median"] for lib in libs if lib != "simulacra"]
        if "simulacra" in summary and others:
            best = max(others)
            summary["speedup_vs_fastest_other"] = {
                "plain loop": summary["simulacra"]["steps_per_s_median"] / best,
                "fit": summary["simulacra (fit)"]["steps_per_s_median"] / best,
            }
        report["results"][kind] = summary
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    for kind, summary in report["results"].items():
        print(f"{kind}: library, params, steps/s (median), test NLL (mean over repeats), sample 10k (s)")
        for lib, s in summary.items():
            if lib.startswith("speedup"):
                print(f"  speed-up vs the faster of zuko/nflows: {s}")
                continue
            print(
                f"  {lib:16s} {s['parameters']:6d} {s['steps_per_s_median']:8.1f} "
                f"{s['test_nll_mean']:8.4f} {s['sample_10k_s_median']:8.4f}"
            )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
