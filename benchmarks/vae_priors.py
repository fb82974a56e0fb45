"""Learned priors on one VAE, statically binarized MNIST: N(0, I), VampPrior, MAF, and LSGM's latent
diffusion (two-stage and joint), one table.

Every model has the same encoder and decoder (the ``vae`` preset, MLP 784-300-300-(40) and its
mirror, ReLU, Bernoulli likelihood) and differs only in its prior p(z):

* ``normal``: N(0, I);
* ``vamp``: the VampPrior, K pseudo-inputs (``--components``; Tomczak & Welling use 500);
* ``maf``: a 4-layer MAF over z (``vae-flow-prior``);
* ``lsgm-2stage``: the ``normal`` VAE, frozen, with a latent diffusion prior trained on its codes
  (``simulacra train lsgm --init RUN``; extra budget ``--stage-two-minutes``);
* ``lsgm-joint``: encoder, decoder and latent diffusion trained together from scratch.

Each trains on the 50k train split for the same CPU budget (``--minutes`` of process time on one
thread; the step count of the cosine schedule comes from a short calibration, and a TimeBudget on
the process-time clock stops the run in any case). Test figures, on the first ``--eval-n`` test
images: the −ELBO (one draw), the importance-sampled NLL (k = ``--eval-k``), FID of ``--fid-n``
samples x ~ p(x | z) against as many test images (the shipped MNIST classifier's features), and
the prior hole KL(q_N(z) ‖ p(z)) over ``--hole-n`` test images (metrics.latent.prior_hole).

For the latent diffusion, log p(z) inside the ELBO is the one-draw variational bound of
:class:`~simulacra.models.latent_prior.LatentDiffusion` (averaged over ``--bound-draws`` draws at
evaluation): the −ELBO is an upper bound on the NLL in expectation. An importance-sampled estimate
with that *stochastic* bound in each weight is not a bound (noise in the log-weights biases a
log-mean-exp upwards; it is kept in the JSON, labelled), so the IS-NLL column of the LSGM rows uses
the PF-ODE log p(z) (Hutchinson trace) with k = ``--ode-k`` on the first ``--ode-n`` images, as does
the PF-ODE −ELBO column; ``benchmarks/vae_priors_subset.py`` gives the other priors' IS-NLL on
those images and k.

    python benchmarks/vae_priors.py --minutes 3 --stage-two-minutes 2 --eval-k 200 --fid-n 2000

Writes benchmarks/results/priors.json and runs/bench/priors-<model>/.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _features import feature_network  # noqa: E402  (benchmarks/ is on sys.path when run)
from _machine import machine, write_record  # noqa: E402
from simulacra.config import DataConfig, TrainConfig
from simulacra.data import load_dataset
from simulacra.metrics.fid import fid
from simulacra.metrics.latent import prior_hole
from simulacra.metrics.likelihood import Estimate, importance_sampled_log_likelihood
from simulacra.models.latent_prior import LatentDiffusion
from simulacra.models.vae import VAE
from simulacra.models.zoo import build_model
from simulacra.train import Callback, TimeBudget, TrainState, fit
from simulacra.train.checkpoint import load_model
from simulacra.viz.grids import save_examples

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("normal", "vamp", "maf", "lsgm-2stage", "lsgm-joint")


def specs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    base = {"name": "vae", "hidden": [300, 300], "latent_dim": 40}
    diffusion = {
        "hidden": [256, 256, 256], "mixing_logit": args.mixing_logit, "weighting": args.weighting, "sample_steps": 100,
    }  # fmt: skip
    return {
        "normal": base,
        "vamp": {**base, "prior": {"name": "vamp", "components": args.components}},
        "maf": {**base, "prior": "maf", "flow_transforms": 4, "flow_hidden": [128, 128]},
        "lsgm-2stage": {"name": "lsgm", "stage_one": base, **diffusion},
        "lsgm-joint": {"name": "lsgm", "stage_one": base, "joint": True, **diffusion},
    }


class _StepClock(Callback):
    """The CPU seconds per training step between steps ``first`` and ``last`` (set-up excluded)."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.marks: dict[int, float] = {}

    def on_step_end(self, state: TrainState) -> None:
        if state.step in (self.first, self.last):
            self.marks[state.step] = time.process_time()

    @property
    def seconds_per_step(self) -> float:
        return (self.marks[self.last] - self.marks[self.first]) / (self.last - self.first)


def train(model: VAE, data: Any, minutes: float, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Calibrate the CPU seconds per step, then fit for ``minutes`` of process time (cosine schedule
    over the steps that fit). The calibration runs train the model and are then undone (its
    weights restored)."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    clock = _StepClock(first=10, last=10 + args.calibration_steps)
    probe = TrainConfig(
        steps=clock.last, batch_size=args.batch_size, lr=args.lr, seed=args.seed, eval_every=0, patience=None
    )
    fit(model, data, probe, callbacks=[clock], progress=False)
    per_step = clock.seconds_per_step
    model.load_state_dict(state)
    steps = max(10, int(minutes * 60 * 0.97 / per_step))
    config = TrainConfig(
        steps=steps, batch_size=args.batch_size, lr=args.lr, lr_schedule="cosine",
        warmup_steps=min(500, steps // 20), seed=args.seed, eval_every=0, patience=None, log_every=500,
        checkpoint_every=steps,
    )  # fmt: skip
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    budget = TimeBudget(minutes * 60, clock=time.process_time)
    result = fit(model, data, config, run_dir=run_dir, callbacks=[budget], progress=False)
    return {
        "steps": result.steps,
        "planned_steps": steps,
        "cpu_minutes": round((time.process_time() - start_cpu) / 60, 2),
        "wall_minutes": round((time.perf_counter() - start_wall) / 60, 2),
        "epochs": round(result.steps * args.batch_size / len(data.train), 1),
    }


@torch.no_grad()
def evaluate(model: VAE, data: Any, args: argparse.Namespace, net: Any, run_dir: Path) -> dict[str, Any]:
    model.eval()
    diffusion = model.prior_module if isinstance(model.prior_module, LatentDiffusion) else None
    if diffusion is not None:
        diffusion.bound_draws = args.bound_draws
    g = torch.Generator().manual_seed(args.seed)
    x = data.test.x[: args.eval_n]
    out: dict[str, Any] = {}
    start = time.process_time()
    elbo = torch.cat([model.log_prob_bound(xb, generator=g) for xb in x.split(500)])
    out["neg_elbo"] = Estimate.from_values(-elbo, "ELBO", "nats")
    log_p = importance_sampled_log_likelihood(model, x, num_samples=args.eval_k, generator=g)
    if diffusion is None:
        out["is_nll"] = Estimate.from_values(-log_p, f"IWAE k={args.eval_k}", "nats")
    else:  # a stochastic bound inside each weight: not a bound (kept for the record, labelled)
        label = f"IWAE k={args.eval_k} with the one-draw diffusion bound (mean of {args.bound_draws}) in each weight: NOT a bound"
        out["is_nll_bound_in_weights"] = Estimate.from_values(-log_p, label, "nats")
    if diffusion is not None and args.ode_n > 0:
        diffusion.likelihood = "ode"
        diffusion.rtol = diffusion.atol = args.ode_tol
        xo = x[: args.ode_n]
        elbo_ode = torch.cat([model.log_prob_bound(xb, generator=g) for xb in xo.split(250)])
        out["neg_elbo_ode"] = Estimate.from_values(
            -elbo_ode, f"ELBO, log p(z) by PF-ODE (Hutchinson, tol {args.ode_tol})", "nats"
        )
        log_p_ode = importance_sampled_log_likelihood(model, xo, num_samples=args.ode_k, generator=g)
        out["is_nll"] = Estimate.from_values(
            -log_p_ode,
            f"IWAE k={args.ode_k}, log p(z) by PF-ODE (Hutchinson), first {args.ode_n} images",
            "nats",
        )
        # the bound on the same images, for a like-for-like comparison
        diffusion.likelihood = "bound"
        elbo_same = torch.cat([model.log_prob_bound(xb, generator=g) for xb in xo.split(250)])
        out["neg_elbo_same_images"] = Estimate.from_values(-elbo_same, "ELBO", "nats")
    out["eval_likelihood_cpu_s"] = round(time.process_time() - start, 1)

    start = time.process_time()
    samples = torch.cat(
        [model.sample(b.shape[0], generator=g, mean=False) for b in torch.empty(args.fid_n).split(1000)]
    )
    save_examples(samples[:64], data.info, run_dir / "samples.png")
    out["fid"] = fid(net, samples, data.test.x[: args.fid_n])
    out["sample_cpu_s"] = round(time.process_time() - start, 1)

    start = time.process_time()
    label = (
        "the one-draw diffusion bound (upper estimate of the KL)"
        if diffusion
        else "the prior's exact log_prob"
    )
    hole = prior_hole(model, data.test.x[: args.hole_n], log_prior=label, generator=g)
    out["prior_hole"] = {"kl": hole.kl, "stderr": hole.standard_error, "estimator": hole.estimator}
    out["hole_cpu_s"] = round(time.process_time() - start, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=4.0, help="CPU minutes of training per model")
    parser.add_argument(
        "--stage-two-minutes", type=float, default=2.0, help="lsgm-2stage: CPU minutes of the prior"
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--components", type=int, default=200, help="VampPrior pseudo-inputs K")
    parser.add_argument("--mixing-logit", type=float, default=-3.0, help="LSGM's initial mixing logit")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--calibration-steps", type=int, default=30)
    parser.add_argument("--eval-n", type=int, default=1000)
    parser.add_argument("--eval-k", type=int, default=500)
    parser.add_argument("--bound-draws", type=int, default=4)
    parser.add_argument("--ode-n", type=int, default=200)
    parser.add_argument("--ode-tol", type=float, default=1e-4)
    parser.add_argument("--ode-k", type=int, default=50, help="IS samples with the PF-ODE prior (LSGM)")
    parser.add_argument("--weighting", default="eps", help="LSGM prior's loss: eps or likelihood")
    parser.add_argument("--stage-one", default=None, help="a trained normal-prior run for lsgm-2stage")
    parser.add_argument("--fid-n", type=int, default=5000)
    parser.add_argument("--hole-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset(
        DataConfig("binarized-mnist", data_dir=args.data_dir, valid_fraction=0.0), seed=args.seed
    )
    net, features = feature_network()
    all_specs = specs(args)
    wanted = [m for m in args.models.split(",") if m]
    unknown = sorted(set(wanted) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    if "lsgm-2stage" in wanted and "normal" not in wanted and args.stage_one is None:
        raise SystemExit(
            "lsgm-2stage starts from the normal VAE: include 'normal' in --models or give --stage-one RUN"
        )
    print(f"{len(data.train)} train, {len(data.test)} test; {machine()}")
    rows: dict[str, Any] = {}
    trained: dict[str, VAE] = {}
    if args.stage_one is not None:
        first = load_model(args.stage_one)
        assert isinstance(first, VAE)
        trained["normal"] = first
    for name in wanted:
        torch.manual_seed(args.seed)
        model = build_model(all_specs[name], data.info)
        assert isinstance(model, VAE)
        run_dir = ROOT / "runs" / "bench" / f"priors{args.tag}-{name}"
        minutes = args.minutes
        if name == "lsgm-2stage":
            model.initialize_from(trained["normal"])
            minutes = args.stage_two_minutes
        info = train(model, data, minutes, args, run_dir)
        trained[name] = model
        figures = evaluate(model, data, args, net, run_dir)
        rows[name] = {"spec": all_specs[name], "training": info, **figures}
        summary = ", ".join(f"{k} {v}" for k, v in figures.items() if isinstance(v, Estimate))
        print(
            f"{name}: {info} | {summary} | FID {figures['fid']:.2f} | hole {figures['prior_hole']['kl']:.2f}"
        )
        sys.stdout.flush()

    def cell(row: dict[str, Any], key: str) -> str:
        e = row.get(key)
        return f"{e.value:.2f} ± {e.stderr:.2f}" if isinstance(e, Estimate) else "–"

    table = [
        "| prior | CPU min | steps | −ELBO | IS-NLL | −ELBO, PF-ODE log p(z) (same-image −ELBO) | FID | prior hole KL(q‖p) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        t = row["training"]
        first = rows.get("normal", {}).get("training", {}).get("cpu_minutes", args.minutes)
        cpu = t["cpu_minutes"] + (first if name == "lsgm-2stage" else 0)
        ode = cell(row, "neg_elbo_ode")
        if ode != "–":
            ode += f" ({cell(row, 'neg_elbo_same_images')})"
        hole = row["prior_hole"]
        table.append(
            f"| {name} | {cpu:.1f} | {t['steps']} | {cell(row, 'neg_elbo')} | {cell(row, 'is_nll')} | {ode} "
            f"| {row['fid']:.2f} | {hole['kl']:.2f} ± {hole['stderr']:.2f} |"
        )
    print("\n".join(table))

    def plain(obj: Any) -> Any:
        if isinstance(obj, Estimate):
            return {"value": obj.value, "stderr": obj.stderr, "estimator": obj.estimator, "n": obj.n}
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        return obj

    record = {
        "benchmark": "vae-priors",
        "data": "binarized MNIST (Larochelle, static), 50k train / test split",
        "models": plain(rows),
        "table": table,
        "features": features,
        "settings": vars(args),
    }
    write_record(record, ROOT / "benchmarks" / "results" / f"priors{args.tag}.json")
    ok = all(math.isfinite(r["neg_elbo"].value) for r in rows.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
