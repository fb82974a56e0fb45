"""``simulacra posterior SIMULATOR``: neural posterior estimation with calibration checks.

Training lives here, where :mod:`simulacra.train` may be used: :func:`train_posterior` simulates
pairs (:func:`simulacra.tasks.posterior.simulation_dataset`), builds the ``posterior`` preset and
fits it with :func:`simulacra.train.fit`; :func:`save_posterior` / :func:`load_posterior` write
and read it as a standard run directory (``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from simulacra.cli.common import DEFAULT_RUN_ROOT, _console, _print_metrics, _recover
from simulacra.errors import CheckpointError, ConfigError, positive_int

if TYPE_CHECKING:  # the verbs import torch-heavy modules when they run, not when the CLI starts
    from torch import Tensor

    from simulacra.tasks.posterior import PosteriorEstimator
    from simulacra.tasks.simulators import Simulator


def train_posterior(
    simulator: Simulator,
    flow: str = "maf",
    simulations: int = 2000,
    *,
    transforms: int = 5,
    hidden: Sequence[int] = (64, 64),
    activation: str = "relu",
    embedding_dim: int | None = None,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    validation_fraction: float = 0.1,
    eval_every: int = 100,
    patience: int | None = 10,
    seed: int = 0,
    progress: bool = False,
) -> PosteriorEstimator:
    """Single-round neural posterior estimation: simulate, standardise, fit q(θ | x) by maximum likelihood.

    Draws N = ``simulations`` pairs (θ_i, x_i) ~ p(θ) p(x | θ) with a generator seeded by ``seed``,
    holds out a fraction for validation, and minimises −(1/N) Σ_i log q(θ_i | x_i) with
    :func:`simulacra.train.fit` (AdamW, early stopping on the validation loss with the best weights
    restored). The loss on θ's original scale differs from the one on θ̃ by the constant Σ_d log s_θ,d.

    Args:
        simulator: the task.
        flow: a name in :data:`simulacra.flows.recipes.FLOW_RECIPES`.
        simulations: N.
        transforms, hidden, activation, embedding_dim: the flow's architecture (the
            ``posterior`` preset's settings).
        steps: maximum optimizer steps.
        batch_size, lr: AdamW settings.
        validation_fraction: share of the simulations held out (0: no validation, no early stop).
        eval_every: validation loss every this many steps.
        patience: stop after this many evaluations without improvement (None: never).
        seed: seeds the simulations, the initial weights, and the batches.
        progress: show a progress bar.

    Returns:
        The trained estimator, its model in eval mode; ``training_summary`` holds the steps, the
        best validation NLL on θ's original scale (nats), whether it stopped early, and the seconds spent.
    """
    import torch

    from simulacra.config import TrainConfig
    from simulacra.models.zoo import build_model
    from simulacra.tasks.posterior import PosteriorEstimator, simulation_dataset
    from simulacra.train.loop import fit

    started = time.perf_counter()
    data = simulation_dataset(simulator, simulations, validation_fraction=validation_fraction, seed=seed)
    spec = {
        "name": "posterior",
        "context_dim": simulator.x_dim,
        "flow": flow,
        "transforms": transforms,
        "hidden": [int(h) for h in hidden],
        "activation": activation,
        "embedding_dim": embedding_dim,
    }
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(spec, data.info)
    estimator = PosteriorEstimator(model, simulator=simulator.spec())
    estimator.set_standardization(data.train.x, cast("Tensor", data.train.y))  # x rides in the label slot
    n_train, n_valid = len(data.train), 0 if data.valid is None else len(data.valid)
    config = TrainConfig(
        steps=positive_int(steps, "steps"),
        epochs=None,
        batch_size=min(positive_int(batch_size, "batch_size"), n_train),
        lr=lr,
        eval_every=eval_every if n_valid else 0,
        patience=patience if n_valid else None,
        log_every=max(1, min(50, steps)),
        seed=seed,
    )
    result = fit(model, data, config, progress=progress)
    estimator.training_summary = {
        "simulations": simulations,
        "train": n_train,
        "valid": n_valid,
        "steps": result.steps,
        "best_valid_nll": result.best_valid_loss,  # the model scores θ on its original scale
        "stopped_early": result.stopped_early,
        "seconds": round(time.perf_counter() - started, 3),
        "seed": seed,
    }
    model.eval()
    return estimator


def save_posterior(estimator: PosteriorEstimator, run_dir: str | Path) -> Path:
    """Write the estimator as a run directory: ``config.json`` (the ``posterior`` spec, θ's
    DataInfo, and under ``run`` the simulator and training summary) and ``model.safetensors``
    (weights and standardisation); returns the weights' path."""
    from simulacra.train.checkpoint import save_model

    return save_model(estimator.model, run_dir, estimator.run_config())


def load_posterior(run_dir: str | Path) -> PosteriorEstimator:
    """The estimator saved in ``run_dir`` by :func:`save_posterior`, in eval mode (through the
    model registry: nothing is unpickled).

    Raises:
        CheckpointError: missing or corrupt files, or a run that holds another kind of model.
    """
    from simulacra.tasks.posterior import PosteriorEstimator
    from simulacra.train.checkpoint import load_model, load_run_config

    model = load_model(run_dir)
    try:
        return PosteriorEstimator.from_run(model, load_run_config(run_dir).get("run") or {})
    except ConfigError as err:
        raise CheckpointError(f"{run_dir} holds no posterior estimator: {err}") from None


def _float_list(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ConfigError(
            f"{what} must be comma-separated numbers, e.g. '0.1,-0.2'; found {text!r}"
        ) from None


def cmd_posterior(args: argparse.Namespace) -> int:
    """Train q(θ | x) on simulations, then picture it at x_o and check its calibration."""
    import torch

    from simulacra.tasks.posterior import build_simulator
    from simulacra.train.rundir import RunReplacement, check_replaceable, check_writable

    simulator = build_simulator(args.simulator)
    hidden = [int(h) for h in _float_list(args.hidden, "--hidden")]
    for name in ("simulations", "steps", "samples", "sbc_trials", "sbc_samples"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.observation is None:
        x_obs = simulator.default_observation()
    else:
        x_obs = simulator.check_x(torch.tensor(_float_list(args.observation, "--observation")))
    out = Path(args.out) if args.out else DEFAULT_RUN_ROOT / f"posterior-{args.simulator}"
    _recover(out)
    check_replaceable(out, overwrite=args.overwrite, resumable=False)
    check_writable(out)
    console = _console()
    console.print(
        f"[bold]{args.flow}[/] posterior for [bold]{simulator.name}[/] (θ ∈ R^{simulator.theta_dim}, "
        f"x ∈ R^{simulator.x_dim}) from {args.simulations} simulations -> {out}"
    )
    # --overwrite: the old run moves aside, and goes once the new one is complete (back on failure)
    with RunReplacement(out, enabled=args.overwrite):
        estimator, table, observed = _estimate(args, simulator, x_obs, hidden, out)
    seconds = estimator.training_summary["seconds"]
    _print_metrics(console, table, title=f"posterior at x_o = ({observed}), trained in {seconds:.1f} s")
    console.print(
        f"wrote {out}/: config.json, model.safetensors, posterior.png, calibration.png, metrics.json"
    )
    return 0


def _estimate(
    args: argparse.Namespace, simulator: Simulator, x_obs: Tensor, hidden: list[int], out: Path
) -> tuple[PosteriorEstimator, dict[str, Any], str]:
    """Train (hidden widths ``hidden``, the rest from ``args``) and save the estimator in ``out``, picture it at x_o, check its calibration and write
    ``metrics.json``; returns the estimator, the table of figures, and x_o as text."""
    import torch

    from simulacra.tasks.calibration import expected_coverage, posterior_agreement, sbc_ranks
    from simulacra.tasks.posterior import ExactPosterior
    from simulacra.train.checkpoint import atomic_write_json
    from simulacra.viz.posterior import plot_calibration, plot_corner

    estimator = train_posterior(
        simulator,
        args.flow,
        args.simulations,
        transforms=args.transforms,
        hidden=hidden,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress,
    )
    save_posterior(estimator, out)
    generator = torch.Generator().manual_seed(args.seed + 1)
    draws = estimator.sample(x_obs, args.samples, generator)
    exact = simulator.true_posterior(x_obs)
    reference = ExactPosterior(simulator) if exact is not None else None
    observed = ", ".join(f"{v:.3g}" for v in x_obs.tolist())
    ref_draws = reference.sample(x_obs, args.samples, generator) if reference is not None else None
    plot_corner(
        draws, out / "posterior.png", reference=ref_draws, title=f"{simulator.name}: q(θ | x = ({observed}))"
    )
    metrics: dict[str, Any] = {
        "simulator": simulator.spec(),
        "flow": args.flow,
        "observation": x_obs.tolist(),
        "training": estimator.training_summary,
        "posterior": {},
    }
    if reference is not None:
        metrics["posterior"] = posterior_agreement(
            estimator, reference, x_obs, min(args.samples, 5000), generator
        )
    sbc = sbc_ranks(estimator, simulator, args.sbc_trials, args.sbc_samples, generator)
    coverage = expected_coverage(estimator, simulator, args.sbc_trials, args.sbc_samples, generator)
    plot_calibration(sbc, coverage, out / "calibration.png")
    metrics["calibration"] = {
        "trials": args.sbc_trials,
        "posterior_samples": args.sbc_samples,
        "sbc": {"bins": sbc.bins, "chi2": sbc.statistics.tolist(), "p_values": sbc.p_values.tolist()},
        "coverage": {
            "levels": coverage.levels.tolist(),
            "coverage": coverage.coverage.tolist(),
            "stderr": coverage.stderr.tolist(),
            "max_error": coverage.max_error,
        },
    }
    atomic_write_json(out / "metrics.json", metrics)
    table = dict(metrics["posterior"])
    table["sbc_min_p"] = {
        "value": float(sbc.p_values.min()),
        "stderr": float("nan"),
        "estimator": f"SBC χ² p-value, min over θ ({args.sbc_trials} trials, {sbc.bins} bins)",
        "unit": "",
    }
    table["coverage_max_error"] = {
        "value": coverage.max_error,
        "stderr": float("nan"),
        "estimator": "max over c of |HPD coverage(c) − c|",
        "unit": "",
    }
    return estimator, table, observed
