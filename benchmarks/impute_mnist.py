"""Imputation of statically binarized MNIST (issue 17): MIWAE against PixelCNN completion and
diffusion inpainting, with mean and k-NN imputation for scale, on two missingness patterns.

* **bottom**: rows 14–27 of every test image missing (the bottom half, 392 pixels);
* **mcar**: 50% of the pixels missing completely at random (one fixed mask per test image).

The same ``--test`` images (a fixed random subset of the test split, loaded through
:mod:`simulacra.data`, which already orders the class-sorted file randomly) and the same masks
for every method. Metrics on the missing pixels only, per image, then the mean over images with
its standard error (sd/√N):

* error rate of the single imputation p̂ thresholded at 1/2 (p̂ ≥ 1/2 → 1);
* MSE (p̂ − x)² of the imputed probability against the true 0/1;
* conditional NLL −log p(x_miss | x_obs) in nats per image, where the model gives it cheaply.

What each method's p̂ is (estimators named in the results):

* **mean**: the per-pixel training mean (its NLL: independent Bernoulli pixels of that mean);
* **knn**: the mean of the k nearest training images on the observed pixels, k from {1, 5, 10,
  20, 50} chosen on ``--valid`` validation images with the same pattern: ``KNNImputer``'s rule
  for complete donors by matrix products (scikit-learn's per-column loop is too slow on 50,000
  donors), compared with ``KNNImputer`` itself on ``--knn-check`` images;
* **miwae**: the ``miwae`` preset (Bernoulli decoder, d = 10, 2×128 tanh, K = 20 in the bound)
  trained on the training images with 50% of their pixels missing at random (it never sees a
  complete image; the bottom-half pattern itself cannot be trained on: no bottom pixel would ever
  be observed); p̂ = E[x_miss | x_obs] by self-normalized importance sampling (SNIS) with K draws
  of q(z | x_obs); NLL by the same K draws: log p(x_m | x_o) ≈ log Σ_i w̃_i p(x_m | z_i), the
  ratio of the IS estimates of p(x_o, x_m) and p(x_o) (consistent, not a bound);
* **miwae-complete**: the same preset trained on the complete images (the control for the
  asymmetry: PixelCNN and DDPM cannot train on incomplete images);
* **pixelcnn**: the ``pixelcnn`` preset trained on complete images; M completions (raster order,
  exact draws from p(x_miss | x_obs) for the bottom half; for mcar each missing pixel sees only
  the pixels before it); p̂ Rao-Blackwellized: the mean over the M draws of p(x_i = 1 | x_<i) at
  the drawn prefix (one teacher-forced pass per draw), an unbiased estimate of E[x_i | x_obs] when
  the draws are exact; NLL exact for the bottom half: −Σ_{i ≥ row 14} log p(x_i | x_<i);
* **ddpm**: the ``ddpm`` preset trained on complete images (binary pixels as the two ends of
  [0, 1], mapped to ±1 as for any [0, 1] data; samples rounded to {0, 1}), M inpainting draws by
  replacement (:func:`simulacra.tasks.inverse.inpaint`, ``--ddpm-steps`` ancestral steps);
  p̂ the mean of the M binary draws (its MSE includes the draws' variance p(1 − p)/M).

MIWAE, PixelCNN and DDPM are trained for ``--minutes`` CPU minutes each (``time.process_time``,
one thread), steps planned by a short calibration (cosine schedule), with a CPU-time stop.
Observed pixels are checked to be returned bitwise.

One method per call (they can run side by side), then the table and the figure::

    python benchmarks/impute_mnist.py --method baselines
    python benchmarks/impute_mnist.py --method miwae --minutes 8
    python benchmarks/impute_mnist.py --method miwae-complete --minutes 7
    python benchmarks/impute_mnist.py --method pixelcnn --minutes 8
    python benchmarks/impute_mnist.py --method ddpm --minutes 8
    python benchmarks/impute_mnist.py --table

Each method writes ``benchmarks/results/impute-mnist-<method>.json`` and its run and completions
under ``/work/main/runs/bench/impute-mnist-<method>``; ``--table`` writes
``benchmarks/results/impute-mnist.json`` and ``benchmarks/results/impute-mnist.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import one_thread, write_record  # noqa: E402  (benchmarks/ is on sys.path when run)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks/results"
DATA_DIR = "/work/shared/data"
PATTERNS = ("bottom", "mcar")
METHODS = ("mean", "knn", "miwae", "miwae-complete", "pixelcnn", "ddpm")
SPECS = {"miwae": {"name": "miwae"}, "pixelcnn": {"name": "pixelcnn"}, "ddpm": {"name": "ddpm"}}


# ----------------------------------------------------------------------------- data and masks


def load(args: argparse.Namespace) -> tuple[Any, Tensor, Tensor]:
    """(dataset, test images (N, 1, 28, 28), validation images (V, 1, 28, 28)): fixed random subsets."""
    from simulacra.config import DataConfig
    from simulacra.data import load_dataset

    data = load_dataset(DataConfig("binarized-mnist", data_dir=args.data_dir))
    rng = np.random.default_rng(args.seed)
    test = torch.from_numpy(rng.choice(len(data.test.x), args.test, replace=False))
    valid = torch.from_numpy(rng.choice(len(data.valid.x), args.valid, replace=False))
    return data, data.test.x[test], data.valid.x[valid]


def mask(pattern: str, n: int, seed: int) -> Tensor:
    """bool (n, 1, 28, 28), True where missing: rows 14–27 (``bottom``) or each pixel with
    probability 1/2 (``mcar``, drawn with ``seed``)."""
    if pattern == "bottom":
        missing = torch.zeros(n, 1, 28, 28, dtype=torch.bool)
        missing[:, :, 14:] = True
        return missing
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((n, 1, 28, 28)) < 0.5)


def mask_seed(pattern: str, split: str, base: int) -> int:
    """The mask seed of a pattern on a split (test, valid, train), fixed for every method."""
    return base * 100 + {"test": 1, "valid": 2, "train": 3}[split]


# ----------------------------------------------------------------------------- metrics


def scores(p: Tensor, x: Tensor, missing: Tensor, nll: Tensor | None = None) -> dict[str, Any]:
    """Per-image error rate and MSE over the missing pixels (and the given NLL, nats per image):
    each as {"mean", "se"} over images."""
    m = missing.flatten(1).double()
    count = m.sum(1)
    p, x = p.flatten(1).double(), x.flatten(1).double()
    per_image = {
        "error_rate": (((p >= 0.5).double() != x).double() * m).sum(1) / count,
        "mse": ((p - x) ** 2 * m).sum(1) / count,
    }
    if nll is not None:
        per_image["nll_nats"] = nll.double()
    return {
        name: {"mean": float(v.mean()), "se": float(v.std() / math.sqrt(v.numel()))}
        for name, v in per_image.items()
    }


def check_observed(completed: Tensor, x: Tensor, missing: Tensor, what: str) -> bool:
    """True when the observed pixels of ``completed`` equal x's bitwise; raise otherwise."""
    if not torch.equal(completed[~missing], x[~missing]):
        raise SystemExit(f"{what} changed an observed pixel")
    return True


# ----------------------------------------------------------------------------- training


class CPUBudget:
    """Stops training once the process has used ``seconds`` of CPU time since construction."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start, self.hit = seconds, time.process_time(), False

    def on_step_end(self, state: object) -> None:
        if time.process_time() - self.start > self.seconds:
            self.hit = True
            state.stop_requested = True  # type: ignore[attr-defined]


def train(method: str, data: Any, args: argparse.Namespace, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """(model, facts) of ``method``'s preset trained for ``args.minutes`` CPU minutes: a
    calibration of the CPU time per step plans a cosine schedule; the CPU budget stops it."""
    from simulacra.config import TrainConfig
    from simulacra.models.zoo import build_model
    from simulacra.train import EMA, fit

    spec = SPECS[method]
    torch.manual_seed(args.seed)
    probe = build_model(spec, data.info)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3)
    batch = data.train.x[: args.batch_size]
    for i in range(args.calibration_steps + 2):
        if i == 2:  # two warm-up steps
            start = time.process_time()
        loss = probe.loss(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    per_step = (time.process_time() - start) / args.calibration_steps
    steps = max(10, int(0.95 * args.minutes * 60 / per_step))
    del probe, optimizer
    lr = args.lr.get(method, 1e-3)
    settings = TrainConfig(
        steps=steps, batch_size=args.batch_size, lr=lr, lr_schedule="cosine",
        warmup_steps=min(200, steps // 20), grad_clip=1.0, seed=args.seed, eval_every=0,
        patience=None, keep_best=False, log_every=max(1, steps // 20),
    )  # fmt: skip
    torch.manual_seed(args.seed)
    model = build_model(spec, data.info)
    callbacks: list[Any] = []
    ema = EMA(args.ema) if method == "ddpm" else None
    if ema is not None:
        callbacks.append(ema)
    budget = CPUBudget(args.minutes * 60)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.process_time()
    result = fit(
        model, data, settings, run_dir=run_dir, callbacks=[*callbacks, budget], progress=False,
        run_config={"model": spec, "data": {"name": "binarized-mnist", "missing_train": args.train_missing
                    if method == "miwae" else None}, "train": asdict(settings)},
    )  # fmt: skip
    cpu = time.process_time() - started
    if ema is not None:
        ema.swap()  # evaluate the averaged weights
    model.eval()
    facts = {
        "preset": spec,
        "planned_steps": steps,
        "steps": result.steps,
        "cpu_minutes": round(cpu / 60, 2),
        "calibrated_cpu_seconds_per_step": round(per_step, 4),
        "batch_size": args.batch_size,
        "lr": lr,
        "schedule": "cosine",
        "ema": args.ema if ema is not None else None,
        "stopped_by_cpu_budget": budget.hit,
        "epochs": round(result.steps * args.batch_size / len(data.train.x), 2),
    }
    print(f"{method}: trained {facts}", flush=True)
    (run_dir / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    return model, facts


def trained(method: str, data: Any, args: argparse.Namespace, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """(model, facts): trained now, or with ``--reuse`` the model and facts of an earlier call's run."""
    if args.reuse is None:
        return train(method, data, args, run_dir)
    from simulacra.train.checkpoint import load_model

    run_dir = Path(args.reuse) if args.reuse else run_dir

    facts = json.loads((run_dir / "training.json").read_text())
    facts["reused_run"] = str(run_dir)
    return load_model(run_dir, ema=True).eval(), facts


# ----------------------------------------------------------------------------- methods


def knn_neighbours(train: Tensor, x: Tensor, missing: Tensor, k: int, chunk: int = 250) -> Tensor:
    """Indices (N, k) of the k training images nearest to each x on its observed pixels:
    d²(x, t) = Σ_{d observed} (x_d − t_d)², by matrix products; ties in order of the training index
    (topk's). The rule of ``KNNImputer`` when the donors are complete: its nan-Euclidean distance
    is √(D / #observed · d²), the same ranking for every donor of a given x.

    Args:
        train: (T, D) complete training images; x: (N, D); missing: bool (N, D)."""
    t2 = train * train  # (T, D)
    parts = []
    for s in range(0, x.shape[0], chunk):
        o = (~missing[s : s + chunk]).to(train.dtype)  # (n, D) observed
        xo = x[s : s + chunk] * o
        d2 = (xo * xo).sum(1, keepdim=True) - 2 * xo @ train.T + o @ t2.T  # (n, T)
        parts.append(torch.topk(d2, k, dim=1, largest=False, sorted=True).indices)
    return torch.cat(parts)


def knn_impute(train: Tensor, x: Tensor, missing: Tensor, neighbours: Tensor, k: int) -> Tensor:
    """x (N, D) with its missing pixels replaced by the mean of its k nearest training images' values."""
    filled = train[neighbours[:, :k]].mean(1)  # (N, D)
    return torch.where(missing, filled, x)


def sklearn_agreement(train: Tensor, x: Tensor, missing: Tensor, k: int = 10) -> dict[str, Any]:
    """``KNNImputer(n_neighbors=k)`` against :func:`knn_impute` on the same images and donors (a
    few of each: scikit-learn's per-column loop is slow on 50,000 donors): the share of imputed
    entries that agree and the largest difference (ties at the k-th distance may pick others)."""
    from sklearn.impute import KNNImputer

    x_nan = torch.where(missing, torch.full((), float("nan"), dtype=x.dtype), x).numpy()
    ours = knn_impute(train, x, missing, knn_neighbours(train, x, missing, k), k)
    theirs = torch.from_numpy(KNNImputer(n_neighbors=k).fit(train.numpy()).transform(x_nan))
    diff = (ours - theirs)[missing].abs()
    return {
        "images": x.shape[0],
        "donors": train.shape[0],
        "k": k,
        "agreeing_entries": round(float((diff < 1e-9).double().mean()), 5),
        "max_abs_difference": round(float(diff.max()), 5),
        "error_rate_ours": scores(ours, x, missing)["error_rate"]["mean"],
        "error_rate_sklearn": scores(theirs, x, missing)["error_rate"]["mean"],
    }


def run_baselines(data: Any, x: Tensor, valid: Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """Mean imputation and k-NN, per pattern: scores and the single imputations."""
    train = data.train.x.flatten(1).double()
    mean = train.mean(0).clamp(1e-4, 1 - 1e-4)  # (784,)
    out: dict[str, Any] = {"mean": {}, "knn": {}}
    grid = sorted(args.knn_grid)
    for pattern in PATTERNS:
        missing = mask(pattern, len(x), mask_seed(pattern, "test", args.seed))
        flat_x, flat_m = x.flatten(1).double(), missing.flatten(1)
        p = torch.where(flat_m, mean.expand_as(flat_x), flat_x)
        bern = flat_x * mean.log() + (1 - flat_x) * (1 - mean).log()
        nll = -(bern * flat_m).sum(1)
        out["mean"][pattern] = {
            "scores": scores(p, flat_x, flat_m, nll),
            "estimator": "per-pixel training mean; NLL of independent Bernoulli pixels of that mean",
            "observed_preserved": check_observed(p.float().reshape(x.shape), x, missing, "mean"),
            "completed": p.float().reshape(x.shape),
        }
        # k chosen on validation images with the same pattern
        started = time.process_time()
        v_missing = mask(pattern, len(valid), mask_seed(pattern, "valid", args.seed)).flatten(1)
        v_flat = valid.flatten(1).double()
        v_near = knn_neighbours(train, v_flat, v_missing, grid[-1])
        choice = {
            k: scores(knn_impute(train, v_flat, v_missing, v_near, k), v_flat, v_missing)["mse"]["mean"]
            for k in grid
        }
        best = min(choice, key=choice.__getitem__)
        filled = knn_impute(train, flat_x, flat_m, knn_neighbours(train, flat_x, flat_m, best), best)
        check = sklearn_agreement(
            train[: args.knn_check_donors], flat_x[: args.knn_check], flat_m[: args.knn_check]
        )
        out["knn"][pattern] = {
            "scores": scores(filled, flat_x, flat_m),
            "estimator": f"mean of the k = {best} nearest training images on the observed pixels "
            "(KNNImputer's rule, matrix products)",
            "k": best,
            "validation_mse_by_k": {str(k): round(v, 5) for k, v in choice.items()},
            "sklearn_check": check,
            "cpu_seconds": round(time.process_time() - started, 1),
            "observed_preserved": check_observed(filled.float().reshape(x.shape), x, missing, "knn"),
            "completed": filled.float().reshape(x.shape),
        }
        print(
            f"{pattern}: mean {out['mean'][pattern]['scores']}  knn(k={best}) {out['knn'][pattern]['scores']}"
        )
        print(f"{pattern}: KNNImputer check {check}", flush=True)
    return out


@torch.no_grad()
def miwae_conditional_nll(
    model: Any, x: Tensor, missing: Tensor, k: int, generator: torch.Generator
) -> Tensor:
    """−log p(x_m | x_o) ≈ −log Σ_i w̃_i p(x_m | z_i), z_i ~ q(z | x_obs), w_i = p(x_o, z_i)/q(z_i | x_o):
    the log-ratio of the IS estimates of p(x_o, x_m) and p(x_o) with shared draws, (B,) nats."""
    from simulacra.distributions.heads import log_prob_observed
    from simulacra.objectives.variational import importance_sample

    observed = ~missing
    filled = torch.where(observed, x, torch.zeros(()))
    q = model.encode(filled)
    log_w, log_pm = [], []
    for start in range(0, k, 100):
        chunk = min(100, k - start)
        log_px, log_pz, log_qz, px = importance_sample(
            filled,
            q,
            model.decode,
            model.prior(None, x.shape[0]),
            chunk,
            observed=observed,
            generator=generator,
        )
        rows = x.repeat(chunk, *([1] * (x.dim() - 1)))
        log_pm.append(
            log_prob_observed(px, rows, missing.repeat(chunk, *([1] * (x.dim() - 1)))).reshape(chunk, -1)
        )
        log_w.append(log_px + log_pz - log_qz)
    lw, lm = torch.cat(log_w), torch.cat(log_pm)  # (K, B)
    return -(torch.logsumexp(lw + lm, 0) - torch.logsumexp(lw, 0))


def run_miwae(
    data: Any, x: Tensor, args: argparse.Namespace, run_dir: Path, complete: bool = False
) -> dict[str, Any]:
    """Train MIWAE on training images with 50% of the pixels missing at random (``complete``: on
    the complete images, as PixelCNN and DDPM are); impute both patterns."""
    from simulacra.data.info import Split
    from simulacra.tasks.impute import impute

    if complete:
        model, facts = trained("miwae", replace(data, valid=None), args, run_dir)
        facts["trained_on"] = "complete training images (the same preset, nothing missing)"
    else:
        train_missing = mask("mcar", len(data.train.x), mask_seed("mcar", "train", args.seed))
        x_nan = torch.where(train_missing, torch.full((), float("nan")), data.train.x)
        incomplete = replace(data, train=Split(x_nan, None), valid=None)
        model, facts = trained("miwae", incomplete, args, run_dir)
        facts["trained_on"] = (
            "training images with 50% of the pixels missing at random (a fixed mask per image)"
        )
    out: dict[str, Any] = {"training": facts}
    for pattern in PATTERNS:
        missing = mask(pattern, len(x), mask_seed(pattern, "test", args.seed))
        started = time.process_time()
        result = impute(
            model, x, missing, num_samples=args.k, generator=torch.Generator().manual_seed(args.seed)
        )
        nll = torch.cat([
            miwae_conditional_nll(model, x[s : s + 100], missing[s : s + 100], args.k,
                                  torch.Generator().manual_seed(args.seed + s))
            for s in range(0, len(x), 100)
        ])  # fmt: skip
        out[pattern] = {
            "scores": scores(result.completed, x, missing, nll),
            "estimator": f"SNIS, K = {args.k} draws of q(z | x_obs); NLL: log-ratio of IS estimates (same K)",
            "cpu_seconds": round(time.process_time() - started, 1),
            "observed_preserved": check_observed(result.completed, x, missing, "miwae"),
            "completed": result.completed,
        }
        print(f"miwae {pattern}: {out[pattern]['scores']}", flush=True)
    return out


@torch.no_grad()
def pixelcnn_probabilities(model: Any, completed: Tensor) -> Tensor:
    """p(x_i = 1 | x_<i) of every pixel at the given (completed) images, (B, 1, 28, 28)."""
    log_p = model.conditionals(completed)  # (B, D): log p(x_i = value | x_<i)
    p_value = log_p.exp().reshape(completed.shape)
    return torch.where(completed > 0.5, p_value, 1 - p_value)


def mean_of_draws(
    draw_rows: Any, estimate: Any, x: Tensor, missing: Tensor, args: argparse.Namespace, name: str
) -> tuple[Tensor, bool, list[dict[str, Any]]]:
    """The single imputation of a sampler: the mean over ``args.draws`` completions of
    ``estimate(draw)`` (p(x_i = 1) given a drawn completion, or the draw itself), the completions
    drawn ``args.sample_batch`` rows at a time by ``draw_rows(rows, generator)``. Returns
    (p̂ (N, 1, 28, 28), whether every draw kept the observed pixels, the scores of the mean of the
    first m draws for m = 1 … M)."""
    generator = torch.Generator().manual_seed(args.seed)
    total = torch.zeros_like(x)
    preserved = True
    by_draws: list[dict[str, Any]] = []
    for _ in range(args.draws):
        parts = [
            draw_rows(slice(s, s + args.sample_batch), generator) for s in range(0, len(x), args.sample_batch)
        ]
        draw = torch.cat(parts)
        preserved &= check_observed(draw, x, missing, name)
        total += estimate(draw)
        by_draws.append(scores(torch.where(missing, total / (len(by_draws) + 1), x), x, missing))
    return torch.where(missing, total / args.draws, x), preserved, by_draws


def run_pixelcnn(data: Any, x: Tensor, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Train PixelCNN on complete images; M completions per pattern, Rao-Blackwellized means."""
    model, facts = trained("pixelcnn", data, args, run_dir)
    facts["trained_on"] = "complete training images"
    out: dict[str, Any] = {"training": facts}
    for pattern in args.patterns:
        missing = mask(pattern, len(x), mask_seed(pattern, "test", args.seed))
        started = time.process_time()
        p, preserved, by_draws = mean_of_draws(
            lambda rows, g, m=missing: model.complete(x[rows], m[rows], generator=g),
            lambda draw: pixelcnn_probabilities(model, draw),
            x,
            missing,
            args,
            "pixelcnn",
        )
        nll = None
        if pattern == "bottom":  # exact: the conditionals of the bottom rows given the rows above
            with torch.no_grad():
                nll = -(model.conditionals(x).reshape(x.shape) * missing).flatten(1).sum(1)
        out[pattern] = {
            "scores": scores(p, x, missing, nll),
            "estimator": f"M = {args.draws} completions, p̂ = mean of p(x_i = 1 | drawn x_<i)"
            + ("; NLL exact (chain rule over rows 14–27)" if nll is not None else "; NLL not available"),
            "exact_conditional": pattern == "bottom",
            "cpu_seconds": round(time.process_time() - started, 1),
            "observed_preserved": preserved,
            "by_draws": {
                m + 1: {k: round(v["mean"], 5) for k, v in sc.items()} for m, sc in enumerate(by_draws)
            },
            "completed": p,
        }
        print(f"pixelcnn {pattern}: {out[pattern]['scores']}", flush=True)
    return out


def run_ddpm(data: Any, x: Tensor, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Train DDPM on complete images; M inpainting draws per pattern, their mean."""
    from simulacra.tasks.inverse import inpaint

    model, facts = trained("ddpm", data, args, run_dir)
    facts["trained_on"] = "complete training images ({0, 1} pixels mapped to ±1)"
    out: dict[str, Any] = {"training": facts}
    for pattern in args.patterns:
        missing = mask(pattern, len(x), mask_seed(pattern, "test", args.seed))
        started = time.process_time()
        p, preserved, by_draws = mean_of_draws(
            lambda rows, g, m=missing: inpaint(
                model, x[rows], (~m[rows]).float(), steps=args.ddpm_steps, generator=g
            ),
            lambda draw: draw,
            x,
            missing,
            args,
            "ddpm",
        )
        out[pattern] = {
            "scores": scores(p, x, missing),
            "estimator": f"M = {args.draws} inpainting draws (replacement, {args.ddpm_steps} ancestral steps), "
            "p̂ = their mean",
            "cpu_seconds": round(time.process_time() - started, 1),
            "observed_preserved": preserved,
            "by_draws": {
                m + 1: {k: round(v["mean"], 5) for k, v in sc.items()} for m, sc in enumerate(by_draws)
            },
            "completed": p,
        }
        print(f"ddpm {pattern}: {out[pattern]['scores']}", flush=True)
    return out


# ----------------------------------------------------------------------------- table and figure


def save_method(
    method: str, result: dict[str, Any], args: argparse.Namespace, runs: Path, cpu_minutes: float
) -> None:
    """Write the completions (.npz under the run folder) and the scores (JSON) of one method."""
    runs.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, by_pattern in result.items():
        for pattern in PATTERNS:
            if pattern in by_pattern:
                arrays[f"{name}/{pattern}"] = by_pattern[pattern].pop("completed").numpy()
    np.savez_compressed(runs / "completions.npz", **arrays)
    record = {
        "benchmark": f"binarized MNIST imputation, {method}",
        "settings": {
            "test_images": args.test,
            "seed": args.seed,
            "threads": 1,
            "method": method,
            "draws": args.draws,
            "k": args.k,
            "ddpm_steps": args.ddpm_steps,
            "limit": args.limit,
        },
        "cpu_minutes_in_all": cpu_minutes,
        "results": result,
        "completions": str(runs / "completions.npz"),
    }
    write_record(record, RESULTS / f"impute-mnist-{method}{args.suffix}.json")


def table(args: argparse.Namespace) -> None:
    """Merge the per-method results into one table (JSON + markdown printed) and draw the figure."""
    rows, training, arrays = {}, {}, {}
    for source in ("baselines", "miwae", "miwae-complete", "pixelcnn", "ddpm"):
        path = RESULTS / f"impute-mnist-{source}{args.suffix}.json"
        if not path.exists():
            print(f"missing {path}; its rows are left out")
            continue
        record = json.loads(path.read_text())
        for name, by_pattern in record["results"].items():
            if name == "training":
                training[source] = by_pattern
                continue
            rows[name] = by_pattern
        with np.load(record["completions"]) as f:
            arrays.update({k: f[k] for k in f.files})
    lines = [
        "| method | trained on | pattern | error rate | MSE | NLL (nats/image) | estimator |",
        "|" + "---|" * 7,
    ]
    for name in METHODS:
        for pattern in PATTERNS:
            r = rows.get(name, {}).get(pattern)
            if r is None:
                continue
            s = r["scores"]
            nll = f"{s['nll_nats']['mean']:.2f} ± {s['nll_nats']['se']:.2f}" if "nll_nats" in s else "—"
            trained = training.get(name, {}).get("trained_on", "training images (complete)")
            lines.append(
                f"| {name} | {trained} | {pattern} | {s['error_rate']['mean']:.4f} ± {s['error_rate']['se']:.4f} "
                f"| {s['mse']['mean']:.4f} ± {s['mse']['se']:.4f} | {nll} | {r.get('estimator', '')} |"
            )
    print("\n".join(lines))
    figure(arrays, args)
    write_record(
        {"benchmark": "binarized MNIST imputation: MIWAE, PixelCNN completion, diffusion inpainting, mean, k-NN",
         "rows": rows, "training": training, "markdown": "\n".join(lines),
         "figure": str(RESULTS / f"impute-mnist{args.suffix}.png")},
        RESULTS / f"impute-mnist{args.suffix}.json",
    )  # fmt: skip


def figure(arrays: dict[str, np.ndarray], args: argparse.Namespace, n: int = 8) -> None:
    """Rows: the truth, the observed pixels (missing in grey), then each method's single
    imputation (grey levels = p̂); one panel per pattern, ``n`` test digits each."""
    from matplotlib.figure import Figure

    data_args = argparse.Namespace(**vars(args))
    _, x, _ = load(data_args)
    x = x[:n].numpy()[:, 0]
    names = [m for m in METHODS if any(k.startswith(m + "/") for k in arrays)]
    fig = Figure(figsize=(1.0 * n * 2 + 1.5, 1.0 * (len(names) + 2)))
    for col, pattern in enumerate(PATTERNS):
        missing = mask(pattern, args.test, mask_seed(pattern, "test", args.seed))[:n].numpy()[:, 0]
        shown = [("truth", x), ("observed", np.where(missing, 0.5, x))]
        shown += [(m, arrays[f"{m}/{pattern}"][:n, 0]) for m in names if f"{m}/{pattern}" in arrays]
        for row, (label, images) in enumerate(shown):
            ax = fig.add_subplot(len(shown), 2, row * 2 + col + 1)
            ax.imshow(np.concatenate(list(images), axis=1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
            if row == 0:
                ax.set_title({"bottom": "rows 14–27 missing", "mcar": "50% missing at random"}[pattern])
    fig.tight_layout()
    fig.savefig(RESULTS / f"impute-mnist{args.suffix}.png", dpi=80)


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", choices=("baselines", "miwae", "miwae-complete", "pixelcnn", "ddpm"))
    parser.add_argument("--table", action="store_true", help="merge the methods' results, draw the figure")
    parser.add_argument("--minutes", type=float, default=8.0, help="CPU minutes of training per model")
    parser.add_argument("--test", type=int, default=1000, help="test images (a fixed random subset)")
    parser.add_argument("--valid", type=int, default=200, help="validation images to choose k-NN's k")
    parser.add_argument("--knn-check", type=int, default=30, help="test images compared with KNNImputer")
    parser.add_argument(
        "--knn-check-donors", type=int, default=5000, help="training images in that comparison"
    )
    parser.add_argument("--knn-grid", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    parser.add_argument("--k", type=int, default=1000, help="MIWAE importance draws per image")
    parser.add_argument("--draws", type=int, default=None, help="M completions (pixelcnn 2, ddpm 5)")
    parser.add_argument("--ddpm-steps", type=int, default=50, help="ancestral steps of each inpainting")
    parser.add_argument("--ema", type=float, default=0.995, help="DDPM EMA decay")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sample-batch", type=int, default=100)
    parser.add_argument("--calibration-steps", type=int, default=10)
    parser.add_argument(
        "--reuse",
        nargs="?",
        const="",
        default=None,
        help="impute with an earlier call's run and training facts (that of this method, or the folder given)",
    )
    parser.add_argument("--patterns", nargs="+", choices=PATTERNS, default=list(PATTERNS))
    parser.add_argument("--limit", type=int, default=None, help="train on N images only (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--suffix", default="", help="appended to result names (smoke tests: -tiny)")
    parser.add_argument("--runs", default="/work/main/runs/bench", help="folder of the run directories")
    args = parser.parse_args()
    one_thread()
    args.lr = {"ddpm": 2e-4}
    args.train_missing = "mcar 50%"
    if args.table:
        table(args)
        return 0
    if args.method is None:
        parser.error("give --method or --table")
    data, x, valid = load(args)
    if args.limit:
        from simulacra.data.info import Split

        data = replace(data, train=Split(data.train.x[: args.limit], None))
    runs = Path(args.runs) / f"impute-mnist-{args.method}{args.suffix}"
    started = time.process_time()
    if args.method == "baselines":
        result = run_baselines(data, x, valid, args)
    else:
        args.draws = args.draws or {"pixelcnn": 2, "ddpm": 5}.get(args.method, 1)
        runner = {
            "miwae": run_miwae,
            "miwae-complete": partial(run_miwae, complete=True),
            "pixelcnn": run_pixelcnn,
            "ddpm": run_ddpm,
        }[args.method]
        result = {args.method: runner(data, x, args, runs)}
        result["training"] = result[args.method].pop("training")
    cpu_minutes = round((time.process_time() - started) / 60, 2)
    save_method(args.method, result, args, runs, cpu_minutes)
    print(f"{args.method}: {cpu_minutes} CPU minutes in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
