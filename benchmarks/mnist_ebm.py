"""Energy-based models on MNIST in a CPU budget: samples, FID, an AIS estimate of the test NLL,
and for JEM test accuracy and the AUROC of its energy against noise and held-out digit classes.

Recipes (``--recipe``):

* ``ebm``: the ``ebm`` preset for images: a spectrally normalized strided-conv energy with Swish
  (32-64-128 on a CPU), persistent SGLD chains (a replay buffer of 10,000, restart probability
  0.05, 40 steps of step 40 and noise 0.01 per batch on [−1, 1]), L2 energy penalty α = 1
  (IGEBM's recipe, Du & Mordatch 2019);
* ``jem``: the ``jem`` preset (the same network with a 10-way head; cross-entropy + PCD on the
  marginal energy −logsumexp f(x), 20 SGLD steps, α = 0.1), Grathwohl et al. 2020;
* ``--classes 0-4`` trains on those digits only, so the other digits are held-out classes.

Training runs ``simulacra.train.fit`` on the MNIST training digits for ``--minutes`` of wall time
(calibrated first). Evaluation:

* 100 samples from the replay buffer (IGEBM's way) and 100 from uniform noise after
  ``sample_steps`` SGLD steps (a grid of each);
* FID of ``--eval-n`` buffer samples against as many test digits, with the project's feature
  network (the shipped MNIST classifier when present, else the benchmark's own);
* the test NLL of ``--nll-n`` test digits in nats and bits/dim through an AIS estimate of log Z
  (``--ais-chains`` chains, ``--ais-distributions`` distributions, MALA transitions): the
  per-example standard error and the AIS standard error are reported apart. The EBM's density
  lives on the dequantization bins of the 256 levels, so the NLL is the uniform-dequantization
  bound on the levels' probability, as for the flows; AIS underestimates log Z on average, so the
  NLL is optimistic;
* JEM: test accuracy; AUROC of the marginal log-density −E(x) separating test digits from uniform
  noise, and (``--classes``) from test digits of the held-out classes.

    python benchmarks/mnist_ebm.py --recipe ebm --minutes 55 --threads 1
    python benchmarks/mnist_ebm.py --recipe jem --minutes 55 --threads 1 --classes 0-4
    python benchmarks/mnist_ebm.py --recipe ebm --minutes 0.5 --limit 512 --eval-n 64 --nll-n 16   # smoke

Needs ``mnist.npz`` (``--data-dir``, default ../shared/data). Writes
benchmarks/results/mnist-RECIPE.json, the grids mnist-RECIPE-buffer.png and mnist-RECIPE-noise.png,
and the run in runs/bench/mnist-RECIPE/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _features import feature_network  # noqa: E402
from _machine import write_record  # noqa: E402

RECIPES = {"ebm": {"name": "ebm"}, "jem": {"name": "jem"}}


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counted half: the area under the ROC."""
    pos, neg = positive.double().flatten(), negative.double().flatten()
    scores = torch.cat([pos, neg])
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in scores.unique():  # average ranks of ties
        tied = scores == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(pos), len(neg)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def subset(data, classes: list[int]):
    """The dataset restricted to the digits in ``classes`` (labels kept as they are)."""
    from dataclasses import replace

    from simulacra.data.info import Split

    def keep(split):
        if split is None:
            return None
        mask = torch.isin(split.y, torch.tensor(classes))
        return Split(split.x[mask], split.y[mask])

    return replace(data, train=keep(data.train), valid=keep(data.valid), test=keep(data.test))


def main(argv: list[str] | None = None) -> int:
    from simulacra.config import TrainConfig
    from simulacra.data import load_dataset
    from simulacra.data.datasets import DataConfig
    from simulacra.metrics.fid import fid
    from simulacra.metrics.likelihood import evaluate_nll
    from simulacra.models.zoo import build_model
    from simulacra.train import TimeBudget, fit
    from simulacra.train.budget import steps_for_minutes
    from simulacra.train.checkpoint import load_model
    from simulacra.viz.grids import save_grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="ebm")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="model KEY=JSON")
    parser.add_argument("--minutes", type=float, default=55.0, help="training budget (wall time)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="default: the preset's (1e-4)")
    parser.add_argument("--classes", default=None, help="train on these digits only, e.g. 0-4")
    parser.add_argument("--eval-n", type=int, default=1000, help="samples and test digits for FID")
    parser.add_argument("--nll-n", type=int, default=1000, help="test digits scored by the AIS NLL")
    parser.add_argument("--ais-chains", type=int, default=100)
    parser.add_argument("--ais-distributions", type=int, default=1000)
    parser.add_argument("--ais-step", type=float, default=None, help="MALA step of AIS (model space)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--evaluate", action="store_true", help="score the finished run again")
    parser.add_argument("--limit", type=int, default=None, help="train on the first LIMIT digits (smoke)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    settings = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.settings)}
    if args.ais_step is not None:
        settings["ais_step_size"] = args.ais_step
    spec = {**RECIPES[args.recipe], **settings}
    data = load_dataset(
        DataConfig("mnist", data_dir=str(args.data_dir), valid_fraction=0.0, limit=args.limit)
    )
    full_test = data.test
    classes = list(range(10))
    if args.classes:
        lo, _, hi = args.classes.partition("-")
        classes = list(range(int(lo), int(hi or lo) + 1))
        data = subset(data, classes)
    name = f"mnist-{args.recipe}" + (f"-classes{args.classes}" if args.classes else "")
    name += f"-seed{args.seed}" if args.seed else ""
    run_dir = HERE.parent / "runs" / "bench" / name
    net, record = feature_network()
    accuracy = record.get("test_accuracy")
    features = record["network"] + (f" ({accuracy:.2%} test accuracy)" if accuracy else "")

    if args.evaluate:
        previous = json.loads((HERE / "results" / f"{name}.json").read_text())
        seconds, cpu_seconds = 60 * previous["train_minutes"], 60 * previous["train_cpu_minutes"]
        steps_done, final = previous["steps"], previous.get("final_metrics", {})
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        torch.manual_seed(args.seed)
        model = build_model(spec, data.info)
        extra = {} if args.lr is None else {"lr": args.lr}
        probe = TrainConfig.for_model(
            model, batch_size=args.batch_size, eval_every=0, seed=args.seed, **extra
        )
        steps, calibration, _ = steps_for_minutes(model, data, probe, args.minutes)
        config = TrainConfig.for_model(
            model,
            steps=steps,
            batch_size=args.batch_size,
            eval_every=0,
            seed=args.seed,
            log_every=200,
            **extra,
        )
        print(
            f"{args.recipe}: {spec}, {steps} steps planned ({calibration.step_seconds * 1000:.0f} ms each)",
            flush=True,
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        result = fit(
            model, data, config, run_dir=run_dir, callbacks=[TimeBudget(60 * args.minutes)], progress=False
        )
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        steps_done, final = result.steps, result.metrics

    model = load_model(run_dir).eval()
    g = torch.Generator().manual_seed(args.seed + 1)

    def labels(n: int) -> torch.Tensor | None:
        return torch.tensor(classes)[torch.arange(n) % len(classes)] if model.conditional else None

    drawn = time.perf_counter()
    buffer_samples = model.sample(args.eval_n, labels(args.eval_n), generator=g, init="buffer", steps=1)
    noise_samples = model.sample(100, labels(100), generator=g, init="noise")
    sample_seconds = time.perf_counter() - drawn
    save_grid(
        buffer_samples[:100],
        HERE / "results" / f"{name}-buffer.png",
        10,
        title=f"{args.recipe}: 100 buffer samples",
    )
    save_grid(
        noise_samples,
        HERE / "results" / f"{name}-noise.png",
        10,
        title=f"{args.recipe}: 100 samples from noise ({model.describe_sampling({'init': 'noise'})})",
    )
    test = data.test.x[: args.eval_n]
    figures: dict = {
        "fid_buffer": fid(net, buffer_samples, test),
        "fid_noise_100": fid(net, noise_samples, test[:100]),
        "fid_test_vs_test": fid(net, test, data.test.x[args.eval_n : 2 * args.eval_n])
        if len(data.test) >= 2 * args.eval_n
        else None,
        "features": features,
    }
    started = time.perf_counter()
    estimate = model.estimate_log_z(
        num_chains=args.ais_chains,
        num_distributions=args.ais_distributions,
        generator=torch.Generator().manual_seed(7),
    )
    nll = evaluate_nll(model, data.test.x[: args.nll_n])
    figures.update(
        {
            "log_z": estimate.log_z,
            "log_z_stderr": estimate.stderr,
            "ais": estimate.method,
            "ais_ess": estimate.ess,
            "ais_acceptance": estimate.acceptance_rate,
            "ais_seconds": round(time.perf_counter() - started, 1),
            "test_nll": nll["nll"].value,
            "test_nll_se_examples": nll["nll"].stderr,
            "test_bpd": nll["bpd"].value if "bpd" in nll else None,
            "nll_n": nll["nll"].n,
            "estimator": nll["nll"].estimator,
        }
    )
    if args.recipe == "jem":
        with torch.no_grad():
            y = data.test.y
            hits = sum(
                int((model.class_log_probs(xb).argmax(1) == yb).sum())
                for xb, yb in zip(data.test.x.split(500), y.split(500))
            )
            figures["test_accuracy"] = hits / len(y)
            score = lambda x: torch.cat([-model.net(model.to_model(b), None) for b in x.split(500)])  # noqa: E731
            inside = score(data.test.x[:2000])
            noise = torch.rand(2000, *data.info.event_shape, generator=torch.Generator().manual_seed(3))
            figures["auroc_vs_noise"] = auroc(inside, score(noise))
            if args.classes:
                other = full_test.x[~torch.isin(full_test.y, torch.tensor(classes))][:2000]
                figures["auroc_vs_heldout_classes"] = auroc(inside, score(other))
    print(json.dumps({k: v for k, v in figures.items()}, indent=1, default=str), flush=True)
    write_record(
        {
            "recipe": args.recipe,
            "model": spec,
            "classes": classes,
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": steps_done,
            "epochs": round(steps_done * args.batch_size / len(data.train), 2),
            "train_minutes": round(seconds / 60, 1),
            "train_cpu_minutes": round(cpu_seconds / 60, 1),
            "eval_n": args.eval_n,
            "sample_seconds": round(sample_seconds, 2),
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
            "final_metrics": final,
        },
        HERE / "results" / f"{name}.json",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
