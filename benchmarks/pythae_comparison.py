"""simulacra against pythae, side by side in one run, with pythae at its best settings.

Statically binarized MNIST, Bernoulli VAEs with MLP encoder/decoder, Adam 1e-3, both libraries
on the same number of threads (each thread count in ``--threads`` in turn). Two measurements:

1. Training time over ``--epochs`` whole epochs, after an untimed warm-up epoch, on two
   architectures: Burda et al.'s 784-200-200-50 (tanh, batch 100) and the ``vae`` preset's
   784-512-256-16 (ReLU, batch 128). simulacra's ``fit`` (what ``simulacra train`` runs: fused
   AdamW, in-memory batches) against pythae's ``BaseTrainer`` with fused Adam
   (``optimizer_params={"fused": True}``, its fastest documented optimizer setting). Also the
   share of the machine's fp32 matrix-product peak (measured in the same run) that each reaches,
   counting 6 FLOP per weight per example (forward 2, backward 4).
2. Importance-sampled NLL with k samples on ``--n`` MNIST test images (the first in simulacra's
   fixed shuffled order, handed to pythae as they are), on the SAME weights (exported from
   simulacra into pythae's networks): simulacra's batched
   ``importance_sampled_log_likelihood`` at its defaults against pythae's ``VAE.get_nll`` with
   ``batch_size=k`` (one encoder pass per image; its default of 100 re-encodes each image k/100
   times). The two estimates must also agree within Monte Carlo error.

The protocol of ``_fair.py``: the libraries alternate inside each repeat (the order swaps every
repeat); per-repeat ratios of wall and of CPU time (pythae / simulacra, > 1: we are faster),
median and range over ``--repeats``. ``--peer-defaults`` adds pythae at its defaults (unfused
Adam, ``get_nll(batch_size=100)``) as a third contender.

pythae needs a virtual environment of its own (it pins the old ``dataclasses`` backport)::

    python -m venv /tmp/pythae-venv
    /tmp/pythae-venv/bin/pip install -c constraints.txt torch==2.13.0 pythae
    python benchmarks/pythae_comparison.py --pythae-python /tmp/pythae-venv/bin/python \\
        --threads 1 2 --repeats 3

Writes benchmarks/results/pythae-comparison.json (or ``--results``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _fair import Stopwatch, Timing, alternate, describe, matmul_peak, ratio_summary, time_summary
from _machine import write_record  # noqa: E402  (benchmarks/ is on sys.path when run)
from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.metrics.likelihood import importance_sampled_log_likelihood
from simulacra.models.zoo import build_model
from simulacra.train import fit
from simulacra.train.checkpoint import load_model

HERE = Path(__file__).resolve().parent
ARCHITECTURES = {
    "burda": {"hidden": [200, 200], "latent": 50, "activation": "tanh", "batch_size": 100},
    "784-512-256-16": {"hidden": [512, 256], "latent": 16, "activation": "relu", "batch_size": 128},
}


def spec(arch: dict) -> dict:
    return {
        "name": "vae",
        "hidden": arch["hidden"],
        "latent_dim": arch["latent"],
        "activation": arch["activation"],
    }


def weights_per_example(arch: dict) -> int:
    """Multiply-adds of one example's forward pass: the encoder 784-h1-h2-2L, the decoder L-h2-h1-784."""
    h1, h2, latent = *arch["hidden"], arch["latent"]
    return 784 * h1 + h1 * h2 + h2 * 2 * latent + latent * h2 + h2 * h1 + h1 * 784


def pythae(python: str, *args: str) -> dict:
    done = subprocess.run(
        [python, str(HERE / "_pythae_side.py"), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"pythae side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_linears(model: nn.Module, path: Path) -> None:
    """The encoder's and decoder's Linear layers, in order, as enc{i}_w/b and dec{i}_w/b."""
    arrays = {}
    for prefix, part in (("enc", model.encoder), ("dec", model.decoder)):
        linears = [m for m in part.modules() if isinstance(m, nn.Linear)]
        if len(linears) != 3:
            raise SystemExit(f"expected 3 Linear layers in the {prefix}oder, found {len(linears)}")
        for i, layer in enumerate(linears):
            arrays[f"{prefix}{i}_w"] = layer.weight.detach().cpu().numpy()
            arrays[f"{prefix}{i}_b"] = layer.bias.detach().cpu().numpy()
    np.savez(path, **arrays)


def arch_flags(arch: dict) -> list[str]:
    return [
        "--hidden", *map(str, arch["hidden"]), "--latent", str(arch["latent"]),
        "--activation", arch["activation"], "--batch-size", str(arch["batch_size"]),
    ]  # fmt: skip


def add_ratios(out: dict, timings: dict[str, list[Timing]], label: str) -> dict:
    """``out`` with each peer's per-repeat time ratios against simulacra (printed under ``label``)."""
    for lib in timings:
        if lib != "simulacra":
            out[f"ratio {lib} / simulacra"] = ratio_summary(timings[lib], timings["simulacra"])
            print(f"  {label}: {lib} / simulacra = {describe(out[f'ratio {lib} / simulacra'])}")
    return out


def train_side_by_side(args, data, npz: str, threads: int, name: str, arch: dict) -> dict:
    """Both libraries' training time over ``args.epochs`` epochs, alternating, ``args.repeats`` times."""
    steps = len(data.train) // arch["batch_size"]
    common = ["--data", npz, "--threads", str(threads), "--epochs", str(args.epochs), *arch_flags(arch)]

    def ours(repeat: int) -> dict:
        torch.manual_seed(repeat)
        model = build_model(spec(arch), data.info)
        config = TrainConfig(
            eval_every=0, steps=steps, batch_size=arch["batch_size"], lr=1e-3, log_every=10**9, seed=repeat
        )
        fit(model, data, config, progress=False)  # warm-up epoch
        config.steps = args.epochs * steps
        with Stopwatch() as sw:
            fit(model, data, config, progress=False)
        return sw.timing.as_dict()

    contenders = {
        "simulacra": ours,
        "pythae": lambda repeat: pythae(args.pythae_python, "train", *common, "--seed", str(repeat)),
    }
    if args.peer_defaults:
        contenders["pythae (defaults)"] = lambda repeat: pythae(
            args.pythae_python, "train", *common, "--seed", str(repeat), "--unfused"
        )
    runs = alternate(args.repeats, contenders)
    timings = {lib: [Timing(r["wall_s"], r["cpu_s"]) for r in rs] for lib, rs in runs.items()}
    examples = args.epochs * steps * arch["batch_size"]
    flop_per_example = 6 * weights_per_example(arch)
    gflop_per_step = flop_per_example * arch["batch_size"] / 1e9
    out: dict = {
        "epochs": args.epochs,
        "examples": examples,
        "gflop_per_step": gflop_per_step,
        "libraries": {},
    }
    for lib, ts in timings.items():
        summary = time_summary(ts)
        median_wall = summary["wall_s"]["median"]
        out["libraries"][lib] = {
            **summary,
            "examples_per_s_median": examples / median_wall,
            "gflop_per_s_median": examples * flop_per_example / median_wall / 1e9,
            "runs": runs[lib] if lib != "simulacra" else [t.as_dict() for t in ts],
        }
    return add_ratios(out, timings, f"train {name}, {threads} thread(s)")


def nll_side_by_side(args, model, x: torch.Tensor, weights: Path, npz: str, threads: int) -> dict:
    """Both libraries' IS-NLL on the same weights, alternating, ``args.repeats`` times."""
    common = ["--data", npz, "--threads", str(threads), *arch_flags(ARCHITECTURES["burda"])]
    images = weights.with_name("images.npy")  # the very images we score, in our order
    np.save(images, x.reshape(len(x), -1).numpy().astype(np.uint8))
    common += ["--weights", str(weights), "--images", str(images), "--k", str(args.k), "--n", str(len(x))]

    def ours(repeat: int) -> dict:
        with Stopwatch() as sw:
            log_p = importance_sampled_log_likelihood(
                model, x, num_samples=args.k, generator=torch.Generator().manual_seed(repeat)
            )
        return {
            **sw.timing.as_dict(),
            "nll": float(-log_p.mean()),
            "nll_se": float(log_p.std() / len(log_p) ** 0.5),
        }

    def theirs(batch_size: int):
        def run(repeat: int) -> dict:
            result = pythae(
                args.pythae_python, "nll", *common, "--nll-batch-size", str(batch_size), "--seed", str(repeat)
            )
            return {**result, "nll": -result["nll"]}  # get_nll returns the mean log-likelihood

        return run

    contenders = {"simulacra": ours, "pythae": theirs(args.k)}
    if args.peer_defaults:
        contenders["pythae (defaults)"] = theirs(100)
    runs = alternate(args.repeats, contenders)
    out: dict = {"k": args.k, "n": len(x), "libraries": {}}
    timings = {lib: [Timing(r["wall_s"], r["cpu_s"]) for r in rs] for lib, rs in runs.items()}
    for lib, rs in runs.items():
        out["libraries"][lib] = {
            **time_summary(timings[lib]),
            "nll_mean": float(np.mean([r["nll"] for r in rs])),
            "runs": rs,
        }
    return add_ratios(out, timings, f"IS-NLL k={args.k}, {threads} thread(s)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pythae-python", required=True, help="python of a virtual environment with pythae")
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--run", default=None, help="a trained simulacra run of the Burda VAE to score")
    parser.add_argument(
        "--nll-epochs", type=int, default=10, help="epochs to train the scored VAE without --run"
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--architectures", nargs="+", choices=sorted(ARCHITECTURES), default=list(ARCHITECTURES)
    )
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--n", type=int, default=2000, help="test images scored")
    parser.add_argument("--skip-nll", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--peer-defaults", action="store_true", help="also pythae at its defaults")
    parser.add_argument("--results", default=str(HERE / "results" / "pythae-comparison.json"))
    args = parser.parse_args()
    npz = str(Path(args.data_dir) / "binarized_mnist.npz")
    data = load_dataset(DataConfig("binarized-mnist", data_dir=args.data_dir, valid_fraction=0.0))
    record: dict = {"benchmark": "pythae-comparison", "repeats": args.repeats, "threads": {}}

    model = None
    if not args.skip_nll:
        if args.run:
            model = load_model(args.run)
        else:  # untimed: the weights both libraries score
            torch.manual_seed(0)
            model = build_model(spec(ARCHITECTURES["burda"]), data.info)
            steps = args.nll_epochs * len(data.train) // 100
            fit(
                model,
                data,
                TrainConfig(eval_every=0, steps=steps, batch_size=100, lr=1e-3, log_every=10**9),
                progress=False,
            )
        model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.npz"
        if model is not None:
            export_linears(model, weights)
        for threads in args.threads:
            torch.set_num_threads(threads)
            peak = matmul_peak(threads)
            print(f"{threads} thread(s): fp32 matmul peak {peak:.1f} GFLOP/s")
            entry: dict = {"matmul_peak_gflop_per_s": peak, "train": {}}
            for name in [] if args.skip_train else args.architectures:
                result = train_side_by_side(args, data, npz, threads, name, ARCHITECTURES[name])
                for lib in result["libraries"].values():
                    lib["share_of_matmul_peak"] = lib["gflop_per_s_median"] / peak
                entry["train"][name] = result
            if model is not None:
                entry["nll"] = nll_side_by_side(args, model, data.test.x[: args.n], weights, npz, threads)
            record["threads"][str(threads)] = entry
    record["pythae"] = "0.1.2"
    record["weights"] = args.run or f"Burda VAE trained {args.nll_epochs} epochs in this run"
    write_record(record, Path(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
