"""``simulacra posterior SIMULATOR``: neural posterior estimation with calibration checks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from simulacra.cli.common import DEFAULT_RUN_ROOT, _console, _print_metrics
from simulacra.errors import ConfigError


def _float_list(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ConfigError(
            f"{what} must be comma-separated numbers, e.g. '0.1,-0.2'; found {text!r}"
        ) from None


def cmd_posterior(args: argparse.Namespace) -> int:
    """Train q(θ | x) on simulations, then picture it at x_o and check its calibration."""
    from simulacra.tasks.calibration import expected_coverage, posterior_agreement, sbc_ranks
    from simulacra.tasks.posterior import ExactPosterior, build_simulator, train_posterior
    from simulacra.viz.posterior import plot_calibration, plot_corner

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
    console = _console()
    console.print(
        f"[bold]{args.flow}[/] posterior for [bold]{simulator.name}[/] (θ ∈ R^{simulator.theta_dim}, "
        f"x ∈ R^{simulator.x_dim}) from {args.simulations} simulations -> {out}"
    )
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
    estimator.save(out)
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
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
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
    seconds = estimator.training_summary["seconds"]
    _print_metrics(console, table, title=f"posterior at x_o = ({observed}), trained in {seconds:.1f} s")
    console.print(
        f"wrote {out}/: posterior.safetensors, posterior.json, posterior.png, calibration.png, metrics.json"
    )
    return 0
