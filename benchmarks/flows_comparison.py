"""simulacra against zuko and nflows on the same flows, side by side in one run.

Protocol: the same MAF (5 transforms, 2 × 64 hidden units, ReLU) and the same autoregressive NSF
(5 transforms, 2 × 64 hidden, 8 bins, tail bound 5) on two moons (scikit-learn ``make_moons``,
noise 0.05), batch 256, lr 1e-3, 2000 steps, at each thread count of ``--threads``. For each
library: training time (wall and process CPU), test NLL on 10,000 fresh points (nats, ± standard
error), and the time to draw 10,000 samples. All libraries see the same batches in the same order.

Every library trains in the same plain loop with ``torch.optim.Adam(fused=True)`` (the fastest
documented setting of the optimizer both peers leave to the user; ``--unfused`` for torch's
default), so the models are compared; simulacra is also timed through ``simulacra.train.fit``
(fused AdamW, what ``simulacra train`` runs). The libraries alternate inside each repeat, the order
rotating every repeat (``_fair.alternate``); speed-ups are per-repeat ratios of the peer's time
to ours, median and range over the repeats, for wall and for CPU time.

zuko and nflows are not dependencies of simulacra; run this in a separate environment:

    python -m venv /tmp/flows-venv
    /tmp/flows-venv/bin/pip install -c constraints.txt torch==2.13.0 zuko nflows scikit-learn -e .
    /tmp/flows-venv/bin/python benchmarks/flows_comparison.py --threads 1 2 --repeats 3

Writes benchmarks/results/flows-comparison.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from _fair import Stopwatch, Timing, alternate, describe, ratio_summary, time_summary
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


def run_plain(
    lib: str, kind: str, batches: torch.Tensor, test: torch.Tensor, seed: int, fused: bool = True
) -> dict:
    """Train with torch.optim.Adam (fused unless ``fused=False``) on the given batches; time
    training (wall and CPU), test NLL and sampling."""
    torch.manual_seed(seed)
    module, log_prob, sample = BUILDERS[lib](kind)
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=fused)
    with Stopwatch() as sw:
        for x in batches:
            loss = -log_prob(x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return _evaluate(lib, module, log_prob, sample, len(batches), sw.timing, test)


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
    with Stopwatch() as sw:
        fit(module, data, config, progress=False)
    return _evaluate("simulacra (fit)", module, log_prob, sample, len(batches), sw.timing, test)


def _evaluate(lib, module, log_prob, sample, steps, timing: Timing, test) -> dict:
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
        "steps_per_s": steps / timing.wall,
        "train_wall_s": timing.wall,
        "train_cpu_s": timing.cpu,
        "test_nll": nll.mean().item(),
        "test_nll_se": (nll.std() / math.sqrt(nll.numel())).item(),
        "sample_10k_s": sample_s,
    }


# --------------------------------------------------------------------------- main


def compare(kind: str, libs: list[str], args, batches, test, threads: int) -> dict:
    """One flow at one thread count: every library ``args.repeats`` times, alternating."""
    contenders = {
        lib: (lambda r, lib=lib: run_plain(lib, kind, batches, test, seed=r, fused=not args.unfused))
        for lib in libs
    }
    if "simulacra" in libs:
        contenders["simulacra (fit)"] = lambda r: run_fit(kind, batches, test, seed=r, threads=threads)
    runs = alternate(args.repeats, contenders)
    summary: dict = {}
    timings = {lib: [Timing(r["train_wall_s"], r["train_cpu_s"]) for r in rs] for lib, rs in runs.items()}
    for lib, rs in runs.items():
        times = time_summary(timings[lib])
        summary[lib] = {
            "parameters": rs[0]["parameters"],
            **times,
            "steps_per_s_median": len(batches) / times["wall_s"]["median"],
            "test_nll_mean": float(np.mean([r["test_nll"] for r in rs])),
            "test_nll_runs": [round(r["test_nll"], 4) for r in rs],
            "test_nll_se": rs[0]["test_nll_se"],
            "sample_10k_s_median": float(np.median([r["sample_10k_s"] for r in rs])),
            "runs": rs,
        }
        print(
            f"{kind} {threads}t {lib:16s} {summary[lib]['steps_per_s_median']:7.1f} steps/s  "
            f"NLL {summary[lib]['test_nll_mean']:.4f}"
        )
    peers = [lib for lib in libs if lib != "simulacra"]
    if "simulacra" in libs and peers:
        ratios: dict = {}
        for ours in ("simulacra", "simulacra (fit)"):
            for peer in peers:
                ratios[f"{peer} / {ours}"] = ratio_summary(timings[peer], timings[ours])
                print(f"  {peer} / {ours}: {describe(ratios[f'{peer} / {ours}'])}")
            # against the fastest peer: the smaller ratio, per measure
            for measure in ("wall", "cpu"):
                ratios[f"fastest peer / {ours}, {measure}"] = min(
                    ratios[f"{peer} / {ours}"][measure]["median"] for peer in peers
                )
        summary["speedups"] = ratios
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per library")
    parser.add_argument("--kinds", default="maf,nsf")
    parser.add_argument("--libraries", default="simulacra,zuko,nflows")
    parser.add_argument(
        "--unfused", action="store_true", help="torch.optim.Adam's default (unfused) in the plain loop"
    )
    parser.add_argument("--out", default=str(RESULTS / "flows-comparison.json"))
    args = parser.parse_args(argv)
    libs = args.libraries.split(",")
    train = moons(args.steps * args.batch_size, seed=0)
    batches = train.reshape(args.steps, args.batch_size, 2)
    test = moons(10_000, seed=1)
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    for lib in libs:
        versions[lib] = getattr(__import__(lib), "__version__", "?")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine().split(",")[0],
        "versions": versions,
        "protocol": vars(args),
        "results": {},
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        report["results"][str(threads)] = {
            kind: compare(kind, libs, args, batches, test, threads) for kind in args.kinds.split(",")
        }
        sys.stdout.flush()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    for threads, kinds in report["results"].items():
        for kind, summary in kinds.items():
            print(
                f"{kind}, {threads} thread(s): library, params, steps/s (median), test NLL (mean), sample 10k (s)"
            )
            for lib, s in summary.items():
                if lib == "speedups":
                    continue
                print(
                    f"  {lib:16s} {s['parameters']:6d} {s['steps_per_s_median']:8.1f} "
                    f"{s['test_nll_mean']:8.4f} {s['sample_10k_s_median']:8.4f}"
                )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
