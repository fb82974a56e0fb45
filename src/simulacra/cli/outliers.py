"""``simulacra outliers RUN --data IN --ood OTHER [--ood ...] -o scores.csv``: score examples as
outliers with a trained model and measure how well each score separates the sets
(:mod:`simulacra.tasks.outliers`, :mod:`simulacra.metrics.detection`).

``--data`` holds held-out in-distribution examples, each ``--ood`` a set of outliers; each is a
``.npy``/``.npz``/``.csv`` file (an ``.npz`` gives its ``--split`` array, ``test`` or ``x_test``,
or its only array), an image folder, or a dataset name (its ``--split``). Examples are brought to
the run's space as training brought its data: 8-bit images (integers 0-255) divided by 255, tables standardized
by the run's training mean and standard deviation.

Every score is oriented so that higher means more anomalous, and outliers are the positive class
of the metrics: AUROC (± DeLong's standard error), AUPR (average precision) and the FPR at 95%
TPR, per outlier set and score. A hierarchical VAE adds ``hllr``, L − L^{>k} with the lowest
``--skip`` k groups from the prior (Havtorn et al. 2021). The typicality test scores batches of ``--batch`` examples
against the run's own training data (its entropy Ĥ) and validation data (the bootstrap threshold).
``-o`` writes one row per example (source, outlier, index, each score); ``--plot`` a histogram
of the scores of each set. Nothing is written unless everything succeeded.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.cli.common import _console, _load_run, check_file_destination, integer, output_file, seed_arg
from simulacra.errors import CapabilityError, ConfigError, DataError, SimulacraError

if TYPE_CHECKING:
    import numpy as np

SCORES: tuple[str, ...] = ("nll", "llr", "hllr", "complexity", "typicality", "energy")
ESTIMATORS: tuple[str, ...] = ("auto", "exact", "iwae", "bound")  # tasks.outliers.ESTIMATORS (no torch here)
"""Scores the verb computes (``--score``); ``nll`` also gives bits/dim in the CSV."""


def add_parser(sub: Any) -> None:
    """Add ``outliers`` to the CLI's sub-parsers (``sub`` from ``add_subparsers``)."""
    p = sub.add_parser(
        "outliers",
        help="score examples as outliers (NLL, likelihood ratios, complexity, typicality, energy)",
    )
    p.add_argument("run", help="a run directory written by `simulacra train`")
    p.add_argument(
        "--data",
        default=None,
        help="held-out in-distribution examples (required): a .npy/.npz/.csv file, an image folder or a dataset name",
    )
    p.add_argument(
        "--ood",
        action="append",
        default=None,
        help="a set of outliers, in the same forms as --data (required; repeat for several sets)",
    )
    p.add_argument(
        "--score",
        default=None,
        help=f"comma-separated scores among {','.join(SCORES)} (default: every one the run affords; "
        "llr needs --background; hllr a hierarchical VAE)",
    )
    p.add_argument(
        "--background",
        default=None,
        metavar="RUN",
        help="the likelihood ratio's background run: the same model trained on perturbed inputs "
        "(`simulacra train ... --set data.perturb=0.2`)",
    )
    p.add_argument(
        "--compressor",
        choices=["png", "lzma"],
        default=None,
        help="the complexity score's lossless compressor (default png for 8-bit images, else lzma)",
    )
    p.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default="auto",
        help="how log p(x) is computed: exact (flows, autoregressive; diffusion by the probability-flow "
        "ODE), iwae (VAE family, --k samples), bound (ELBO; a diffusion model's VLB) or auto, the first "
        "the run has (default)",
    )
    p.add_argument(
        "--skip",
        type=integer,
        default=1,
        help="hllr: how many of the lowest latent groups are drawn from the prior in L^{>k} (default 1)",
    )
    p.add_argument(
        "--k", type=integer, default=100, help="importance samples per example (VAE family; default 100)"
    )
    p.add_argument(
        "--batch", type=integer, default=10, help="examples per batch of the typicality test (default 10)"
    )
    p.add_argument("--alpha", type=float, default=0.01, help="the typicality test's level (default 0.01)")
    p.add_argument(
        "--reference-examples",
        type=integer,
        default=1000,
        help="training (and validation) examples of the run that fit the typicality test (default 1000)",
    )
    p.add_argument(
        "--split",
        choices=["test", "valid", "train"],
        default="test",
        help="the split of a dataset name or .npz archive (default test)",
    )
    p.add_argument("--limit", type=integer, default=None, help="score only the first N examples of each set")
    p.add_argument("--data-dir", default=None, help="folder with downloaded data, for dataset names")
    p.add_argument("-o", "--output", default=None, help="per-example scores to write (.csv)")
    p.add_argument("--plot", default=None, help="histograms of the scores to write (.png)")
    p.add_argument("--json", default=None, help="the metrics table to write as JSON (.json)")
    p.add_argument("--batch-size", type=integer, default=None, help="examples per call of the model")
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="seeds importance samples and bootstraps (default 0)"
    )
    p.add_argument(
        "--weights", choices=["ema", "raw"], default=None, help="the moving average (default) or raw weights"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")


# ----------------------------------------------------------------------------- reading the sets


def read_examples(source: str, split: str, data_dir: str | None) -> np.ndarray:
    """The examples ``source`` names, as stored (N, ...): a .csv table, or what
    :func:`simulacra.cli.compress.read_data` reads (.npy, .npz, an image folder, a dataset name)."""
    from simulacra.cli.compress import read_data
    from simulacra.data.files import read_csv

    path = Path(source).expanduser()
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DataError(f"no such file: {source!r}")
        return read_csv(path)[0]
    return read_data(source, split, data_dir)


def to_model_space(x: np.ndarray, info: Any, source: str) -> Any:
    """``x`` (N, ...) as the run's model reads it: (N, *event_shape) float32, 8-bit images
    divided by 255, channels-last images transposed, flat rows reshaped to the event, tables
    standardized by the run's training statistics. Refuses examples of another size or values
    outside the model's support."""
    import numpy as np
    import torch

    from simulacra.data.files import infer_layout

    event = tuple(info.event_shape)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{source!r} holds an array of shape {x.shape}; expected examples (N, ...)")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source!r} holds {x.dtype} values; expected numbers")
    if len(event) == 3:
        x = infer_layout(x)
    if tuple(x.shape[1:]) != event:
        width = int(np.prod(x.shape[1:]))
        if width != info.dim:
            raise DataError(
                f"{source!r} has examples of shape {tuple(x.shape[1:])}; the run was trained on shape {event}"
            )
        x = x.reshape(x.shape[0], *event)
    scaled = x.astype(np.float64)
    if x.dtype.kind in "iu" and info.support == "unit" and info.levels == 256:
        scaled = scaled / 255.0  # 8-bit grey levels as integers, as training read them
    if not np.isfinite(scaled).all():
        raise DataError(f"{source!r} holds NaN or infinite values; outlier scores need complete examples")
    if info.standardization is not None:
        mean, std = (np.asarray(v, dtype=np.float64).reshape(event) for v in info.standardization)
        scaled = (scaled - mean) / std
    if info.support == "binary" and not np.isin(scaled, (0.0, 1.0)).all():
        raise DataError(
            f"{source!r} holds values other than 0 and 1; the run models binary data (binarize the "
            "examples as its training data were)"
        )
    if info.support == "unit" and (scaled.min() < 0 or scaled.max() > 1):
        raise DataError(
            f"{source!r} holds values in [{scaled.min():.4g}, {scaled.max():.4g}]; the run models values "
            "in [0, 1] (8-bit images as integers 0-255, or scaled by 1/255)"
        )
    return torch.from_numpy(scaled.astype(np.float32))


@dataclass
class _Set:
    name: str
    outlier: bool
    x: Any  # (N, *event) tensor


def _read_sets(args: argparse.Namespace, info: Any) -> list[_Set]:
    from simulacra.data.sources import source_name

    sources = [(args.data, False)] + [(o, True) for o in args.ood]
    names = [source_name(s) for s, _ in sources]
    if len(set(names)) < len(names):  # two files with one stem: number them
        names = [f"{k}:{n}" for k, n in enumerate(names)]
    sets = []
    for (source, outlier), name in zip(sources, names, strict=True):
        x = read_examples(source, args.split, args.data_dir)
        if args.limit is not None:
            x = x[: args.limit]
        sets.append(_Set(name, outlier, to_model_space(x, info, source)))
    return sets


# ----------------------------------------------------------------------------- the verb


def _chosen_scores(args: argparse.Namespace, model: Any) -> list[str]:
    from simulacra.models.base import EnergyBased, LatentHierarchy
    from simulacra.tasks.outliers import has_likelihood

    likelihood = has_likelihood(model) and not isinstance(model, EnergyBased)
    if args.score is None:
        chosen = ["nll", "complexity", "typicality"] if likelihood else []
        if args.background is not None and likelihood:
            chosen.insert(1, "llr")
        if likelihood and isinstance(model, LatentHierarchy) and model.levels > 1:
            chosen.insert(1, "hllr")
        if isinstance(model, EnergyBased):
            chosen.append("energy")
        if not chosen:
            raise CapabilityError(
                f"{model.preset_name} has no likelihood, bound or energy to score outliers with"
            )
        return chosen
    chosen = [s.strip() for s in args.score.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCORES]
    if unknown or not chosen:
        raise ConfigError(f"--score {args.score!r}: expected a comma-separated list of {', '.join(SCORES)}")
    if "llr" in chosen and args.background is None:
        raise ConfigError("--score llr needs --background RUN: the same model trained on perturbed inputs")
    if "hllr" in chosen and not isinstance(model, LatentHierarchy):
        raise CapabilityError(
            f"{model.preset_name} has no hierarchy of latent groups; --score hllr needs a hierarchical "
            "VAE (hvae, lvae)"
        )
    if "energy" in chosen and not isinstance(model, EnergyBased):
        raise CapabilityError(f"{model.preset_name} has no energy; use --score nll")
    if any(s in chosen for s in ("nll", "llr", "complexity", "typicality")) and not has_likelihood(model):
        raise CapabilityError(f"{model.preset_name} has no likelihood or bound; use --score energy")
    return list(dict.fromkeys(chosen))


def _check_options(args: argparse.Namespace) -> tuple[Path | None, Path | None, Path | None]:
    if args.data is None:
        raise ConfigError(
            "outliers needs an in-distribution set: give --data IN (held-out examples like the run's training data)"
        )
    if not args.ood:
        raise ConfigError("outliers needs at least one set of outliers: give --ood OTHER (repeatable)")
    for flag, value, minimum in (
        ("--k", args.k, 1),
        ("--skip", args.skip, 1),
        ("--batch", args.batch, 1),
        ("--reference-examples", args.reference_examples, 2),
        ("--limit", args.limit, 1),
        ("--batch-size", args.batch_size, 1),
    ):
        if value is not None and value < minimum:
            raise ConfigError(f"{flag} must be at least {minimum}; found {value}")
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1); found {args.alpha}")
    csv_path = None if args.output is None else output_file(args.output, (".csv",))
    plot = None if args.plot is None else Path(args.plot)
    if plot is not None:
        if plot.suffix.lower() != ".png" or plot.is_dir():
            raise ConfigError(f"--plot {args.plot!r}: expected a file ending in .png")
        check_file_destination(plot, "--plot")
    json_path = None if args.json is None else Path(args.json)
    if json_path is not None:
        if json_path.suffix.lower() != ".json" or json_path.is_dir():
            raise ConfigError(f"--json {args.json!r}: expected a file ending in .json")
        check_file_destination(json_path, "--json")
    outputs = [p.resolve() for p in (csv_path, plot, json_path) if p is not None]
    if len(set(outputs)) < len(outputs):
        raise ConfigError("-o, --plot and --json name the same file; give each its own")
    return csv_path, plot, json_path


def _check_estimator(estimator: str, model: Any, background: Any) -> None:
    """Refuse, before any work, an --estimator that the run (or its background) does not offer."""
    from simulacra.tasks.outliers import available_estimators

    if estimator == "auto":
        return
    for flag, run in (("the run", model), ("--background", background)):
        offered = [] if run is None else available_estimators(run)
        if run is not None and estimator not in offered:
            raise CapabilityError(
                f"--estimator {estimator}: {flag} ({run.preset_name}) offers {', '.join(offered) or 'none'}"
            )


def _reference_log_p(args: argparse.Namespace, model: Any, generator: Any) -> tuple[Any, Any]:
    """log p of the run's own training examples (Ĥ; as training saw them, after its batch
    transform such as dynamic binarization) and of its validation examples (the bootstrap), at
    most ``--reference-examples`` each; None for the second without a validation split."""
    from simulacra.config import RunConfig
    from simulacra.data import load_dataset
    from simulacra.seeding import generator_for
    from simulacra.tasks.outliers import log_likelihood
    from simulacra.train.checkpoint import load_run_config

    config = RunConfig.from_dict(load_run_config(args.run)["run"])
    if args.data_dir:
        config.data.data_dir = args.data_dir
    data = load_dataset(config.data, seed=config.train.seed)
    limit = args.reference_examples
    train = data.train.x[:limit]
    if data.batch_transform is not None:
        train = data.batch_transform(train, generator_for(args.seed, "outliers", "reference-transform"))
    options = {
        "num_samples": args.k,
        "batch_size": args.batch_size,
        "estimator": args.estimator,
        "generator": generator,
    }
    reference, _ = log_likelihood(model, train, **options)
    calibration = None if data.valid is None else log_likelihood(model, data.valid.x[:limit], **options)[0]
    return reference, calibration


def _load_background(args: argparse.Namespace, model: Any) -> Any:
    """The background run of the likelihood ratio, checked against the run."""
    from simulacra.tasks.outliers import has_likelihood

    background, _ = _load_run(args.background, args.device, args.weights)
    if tuple(background.info.event_shape) != tuple(model.info.event_shape):
        raise DataError(
            f"--background {args.background!r} models shape {tuple(background.info.event_shape)}; the run "
            f"models {tuple(model.info.event_shape)}: train the background on the same data, perturbed"
        )
    if not has_likelihood(background):
        raise CapabilityError(f"--background {background.preset_name} has no likelihood or bound")
    return background


@dataclass
class _Scored:
    """Every per-example score of every set: ``columns[score][source]`` (n,) values, with each
    score's unit and meaning, and the log-likelihoods the typicality test reads."""

    columns: dict[str, dict[str, np.ndarray]]
    units: dict[str, str]
    meanings: dict[str, str]
    log_ps: dict[str, Any]


def _score_sets(
    args: argparse.Namespace, model: Any, background: Any, sets: list[_Set], scores: list[str]
) -> _Scored:
    from simulacra.seeding import generator_for
    from simulacra.tasks import outliers as tasks

    info = model.info
    compressor = args.compressor or tasks.default_compressor(info)
    options = {"num_samples": args.k, "batch_size": args.batch_size, "estimator": args.estimator}
    scored = _Scored({}, {}, {}, {})
    for s in sets:
        per: list[tasks.Score] = []
        if any(k in scores for k in ("nll", "llr", "complexity", "typicality")):
            generator = generator_for(args.seed, "outliers", s.name)
            log_p, estimator = tasks.log_likelihood(model, s.x, **options, generator=generator)
            scored.log_ps[s.name] = log_p
            discrete = bool(model.discrete_likelihood)
            bpd = tasks.bits_per_dim_score(log_p, info, discrete_likelihood=discrete, estimator=estimator)
            if "nll" in scores:
                per += [tasks.nll_score(log_p, estimator), bpd]
            if "complexity" in scores:
                per.append(tasks.complexity_score(bpd, s.x, info, compressor))
            if "llr" in scores:
                generator = generator_for(args.seed, "background", s.name)
                log_bg, bg_estimator = tasks.log_likelihood(background, s.x, **options, generator=generator)
                estimators = f"{estimator}; background {bg_estimator}"
                per.append(tasks.likelihood_ratio_score(log_p, log_bg, estimators=estimators))
        if "hllr" in scores:
            generator = generator_for(args.seed, "hierarchy", s.name)
            per.append(
                tasks.hierarchical_llr_score(
                    model,
                    s.x,
                    skip=args.skip,
                    num_samples=args.k,
                    batch_size=args.batch_size,
                    generator=generator,
                )
            )
        if "energy" in scores:
            per.append(tasks.energy_score(model, s.x, batch_size=args.batch_size))
        for score in per:
            scored.columns.setdefault(score.name, {})[s.name] = score.values.numpy()
            scored.units[score.name] = score.unit
            scored.meanings[score.name] = score.meaning
    return scored


def _typicality_rows(
    args: argparse.Namespace, model: Any, sets: list[_Set], scored: _Scored
) -> list[dict[str, Any]]:
    """Batch-level rows of the typicality test (empty, with a note, when the scores were not
    asked for and the run's training data cannot be read)."""
    import torch

    from simulacra.metrics.detection import detection_report
    from simulacra.seeding import generator_for
    from simulacra.tasks.outliers import TypicalityTest

    try:
        reference, calibration = _reference_log_p(
            args, model, generator_for(args.seed, "outliers", "reference")
        )
    except SimulacraError as err:
        if args.score is not None:  # asked for: the reason is the error
            raise
        print(f"note: no typicality test: the run's training data cannot be read ({err})", file=sys.stderr)
        return []
    test = TypicalityTest.fit(
        reference,
        args.batch,
        alpha=args.alpha,
        calibration_log_p=calibration,
        generator=generator_for(args.seed, "outliers", "bootstrap"),
    )
    statistics = {}
    for s in sets:  # batches of examples in a random order: a file's order may be sorted
        log_p = scored.log_ps[s.name]
        order = torch.randperm(len(log_p), generator=generator_for(args.seed, "batches", s.name))
        statistics[s.name] = test.statistic(log_p[order]).numpy()
    inliers = sets[0].name
    rows = []
    for s in sets[1:]:
        report = detection_report(statistics[inliers], statistics[s.name])
        rows.append(
            {
                "ood": s.name,
                "score": f"typicality M={args.batch}",
                "level": "batch",
                **report.to_dict(),
                "rejected_in": float((statistics[inliers] > test.threshold).mean()),
                "rejected_out": float((statistics[s.name] > test.threshold).mean()),
            }
        )
    scored.meanings["typicality"] = test.describe()
    return rows


def cmd_outliers(args: argparse.Namespace) -> int:
    """Score every set, print the detection table, write the CSV, plot and JSON asked for."""
    from simulacra.metrics.detection import detection_report
    from simulacra.train.checkpoint import atomic_write_bytes

    csv_path, plot_path, json_path = _check_options(args)
    model, weights = _load_run(args.run, args.device, args.weights)
    scores = _chosen_scores(args, model)
    if "hllr" in scores and not args.skip < model.levels:
        raise ConfigError(
            f"--skip {args.skip}: {model.preset_name} has {model.levels} latent groups, so hllr skips 1 to "
            f"{model.levels - 1} of them"
        )
    background = _load_background(args, model) if "llr" in scores else None
    if any(k in scores for k in ("nll", "llr", "complexity", "typicality")):
        _check_estimator(args.estimator, model, background)
    sets = _read_sets(args, model.info)
    scored = _score_sets(args, model, background, sets, scores)

    inliers = sets[0].name
    rows: list[dict[str, Any]] = []
    for name, column in scored.columns.items():
        if name == "bpd":  # the ranking of nll
            continue
        for s in sets[1:]:
            report = detection_report(column[inliers], column[s.name])
            rows.append({"ood": s.name, "score": name, "level": "example", **report.to_dict()})
    if "typicality" in scores:
        rows += _typicality_rows(args, model, sets, scored)

    _print_table(rows, scored.meanings, scored.units, model, weights, inliers)
    if csv_path is not None:
        _write_csv(csv_path, sets, scored.columns)
    if plot_path is not None:
        from simulacra.viz.outliers import score_histograms

        shown = {k: v for k, v in scored.columns.items() if k != "bpd"}
        title = f"{model.preset_name}: {inliers} (in) against outliers"
        png = score_histograms(shown, scored.units, inliers=inliers, title=title)
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(plot_path, png)
    if json_path is not None:
        payload = {
            "run": str(args.run),
            "inliers": inliers,
            "meanings": scored.meanings,
            "units": scored.units,
            "rows": rows,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(json_path, (json.dumps(payload, indent=2) + "\n").encode())
    written = [str(p) for p in (csv_path, plot_path, json_path) if p is not None]
    if written:
        print(f"wrote {', '.join(written)}")
    return 0


def _print_table(
    rows: list[dict[str, Any]],
    meanings: dict[str, str],
    units: dict[str, str],
    model: Any,
    weights: Any,
    inliers: str,
) -> None:
    from rich.table import Table

    table = Table(title=f"{model.preset_name}: {inliers} (in-distribution) against each outlier set")
    for col in ("outliers", "score", "AUROC", "± s.e.", "AUPR", "FPR@95%TPR", "n in / out"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["ood"],
            r["score"],
            f"{r['auroc']:.3f}",
            "" if r["auroc_stderr"] != r["auroc_stderr"] else f"{r['auroc_stderr']:.3f}",
            f"{r['aupr']:.3f}",
            f"{r['fpr95']:.3f}",
            f"{r['n_in']} / {r['n_out']}",
        )
    console = _console()
    console.print(table)
    console.print("outliers are the positive class; every score is higher for more anomalous examples:")
    for name, meaning in meanings.items():
        unit = f" ({units[name]})" if name in units else ""
        console.print(f"  {name}{unit}: {meaning}")
    for r in rows:
        if "rejected_in" in r:
            console.print(
                f"  {r['score']} at its level: rejects {r['rejected_in']:.1%} of {inliers} batches and "
                f"{r['rejected_out']:.1%} of {r['ood']} batches"
            )
    console.print(f"  {weights.describe()}")


def _write_csv(path: Path, sets: list[_Set], columns: dict[str, dict[str, np.ndarray]]) -> None:
    from simulacra.train.checkpoint import atomic_write_bytes

    names = list(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "outlier", "index", *names])
    for s in sets:
        for i in range(len(s.x)):
            writer.writerow([s.name, int(s.outlier), i, *(repr(float(columns[n][s.name][i])) for n in names)])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue().encode())


__all__ = ["SCORES", "add_parser", "cmd_outliers", "read_examples", "to_model_space"]
