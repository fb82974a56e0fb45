"""Runs of any families on one table: the same held-out data, the same metrics, one protocol.

:func:`compare_runs` scores each run with :func:`simulacra.metrics.evaluate.evaluate` on the same
held-out examples (the first ``limit`` of the data's test split, else valid, else train): the NLL
where the model has a likelihood (with its estimator: exact, importance-sampled, a bound), and the
sample metrics on as many samples; a metric a model cannot give is "none" on its row, not an
error. Each row also has the parameter count, the training time the run recorded and the time to
draw 1,000 samples. Runs must have been trained on the same data (:func:`data_identity`).

Figures are cached in each run (``compare.json``), keyed by everything they depend on (the
metrics, counts, seed, the feature network's file, the weights' file and step), so comparing again
is instant and a retrained run is scored again.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simulacra.data.info import DataInfo, Split
from simulacra.errors import ConfigError, DataError
from simulacra.metrics.evaluate import (
    METRICS,
    EvalOptions,
    draw_samples,
    estimates_as_dicts,
    evaluate,
    feature_network,
    mmd_estimates,
    shipped_network_applies,
)
from simulacra.models.base import GenerativeModel

DATA_KEYS = ("name", "binarize", "standardize", "valid_fraction", "num_samples", "label_names")
"""The settings of a run's data that decide its held-out examples (``limit`` and ``data_dir``
change neither)."""

CACHE = "compare.json"


def data_identity(data_config: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's data config that decides the held-out examples it is scored on."""
    return {key: data_config.get(key) for key in DATA_KEYS}


IMAGE_METRICS = ("fid", "kid", "prdc", "classes")


def default_metrics(model: GenerativeModel, options: EvalOptions) -> list[str]:
    """nll (where there is a likelihood), mmd, the classifier two-sample test c2st, and for
    images with a feature network (given in ``options``, or the shipped one for the images it
    reads) fid, kid, prdc and, for labelled data whose classes the network tells, classes."""
    info = model.info
    wanted = ["nll", "mmd", "c2st"]
    if info.is_image and (options.features is not None or shipped_network_applies(info)):
        wanted += ["fid", "kid", "prdc"]
        if info.num_classes and (options.features is not None or shipped_network_applies(info, classes=True)):
            wanted.append("classes")
    return [m for m in wanted if m in METRICS]


@dataclass
class Row:
    """One run's line of the table: ``figures`` maps a figure's name to its estimate (as
    :func:`~simulacra.metrics.evaluate.estimates_as_dicts` writes it), or to None when the model
    cannot give it."""

    run: str
    model: str
    parameters: int
    train_seconds: float | None
    sample_seconds_per_1000: float | None
    weights: str
    figures: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    cached: bool = False


def _cache_key(metrics: Sequence[str], options: EvalOptions, limit: int, weights: Any) -> str:
    features = options.features
    feature_id: Any = None
    if isinstance(features, str | Path) and Path(features).is_file():
        stat = Path(features).stat()
        feature_id = [str(Path(features).resolve()), stat.st_size, stat.st_mtime_ns]
    elif features is None and any(m in IMAGE_METRICS for m in metrics):  # the shipped network's
        from simulacra.metrics.fid import shipped_feature_network

        feature_id = ["shipped:mnist", shipped_feature_network("mnist")[1].get("sha256")]
    stat = Path(weights.path).stat()
    return json.dumps(
        {
            "metrics": list(metrics),
            "k": options.num_samples,
            "samples": options.max_samples,
            "seed": options.seed,
            "limit": limit,
            "features": feature_id,
            "weights": [str(weights.path.name), weights.step, stat.st_size, stat.st_mtime_ns],
        },
        sort_keys=True,
    )


def _read_cache(run: Path) -> dict[str, Any]:
    try:
        cache = json.loads((run / CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _sample_seconds(
    model: GenerativeModel, held_out: Split, options: EvalOptions, n: int = 16
) -> float | None:
    """Seconds to draw 1,000 samples, timed on ``n`` (None for a model that draws none)."""
    part = Split(held_out.x[:n], None if held_out.y is None else held_out.y[:n])
    started = time.perf_counter()
    try:
        draw_samples(model, part, min(n, len(part)), options)
    except (ConfigError, DataError):
        return None
    return (time.perf_counter() - started) / min(n, len(part)) * 1000


def score_run(
    run: Path,
    model: GenerativeModel,
    held_out: Split,
    weights: Any,
    metrics: Sequence[str] | None,
    options: EvalOptions,
    *,
    use_cache: bool = True,
    say: Callable[[str], None] = lambda line: None,
) -> Row:
    """The row of one run: its figures on ``held_out`` (from its cache when they are there)."""
    record: dict[str, Any] = {}
    try:
        record = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        pass
    chosen = list(metrics) if metrics else default_metrics(model, options)
    key = _cache_key(chosen, options, len(held_out), weights)
    cache = _read_cache(run)
    row = Row(
        run=str(run),
        model=getattr(model, "preset_name", type(model).__name__),
        parameters=sum(p.numel() for p in model.parameters()),
        train_seconds=record.get("train_seconds") if isinstance(record, dict) else None,
        sample_seconds_per_1000=None,
        weights=weights.kind,
    )
    if use_cache and key in cache:
        row.figures, row.sample_seconds_per_1000 = (
            cache[key]["figures"],
            cache[key]["sample_seconds_per_1000"],
        )
        row.cached = True
        return row
    possible = [name for name in chosen if METRICS.get(name).applies_to(model)]
    row.figures.update(dict.fromkeys(set(chosen) - set(possible)))  # "none": the model cannot give them
    if possible:  # one call: the sample metrics share one draw
        say(f"{run.name}: {', '.join(possible)}")
        row.figures.update(estimates_as_dicts(evaluate(model, held_out, possible, options)))
    row.sample_seconds_per_1000 = _sample_seconds(model, held_out, options)
    cache[key] = {"figures": row.figures, "sample_seconds_per_1000": row.sample_seconds_per_1000}
    from simulacra.train.checkpoint import atomic_write_json

    atomic_write_json(run / CACHE, cache)
    return row


def floor_row(
    held_out: Split,
    other: Split,
    metrics: Sequence[str],
    options: EvalOptions,
    info: DataInfo | None = None,
) -> Row | None:
    """The figures of held-out data against other held-out data of the same size (the
    data-vs-data floor of each sample metric: what a perfect model would score at this sample
    size), for the sample metrics among ``metrics``; None when there is too little data. The
    image metrics' floor needs a feature network: ``options.features``, or with the data's
    ``info`` the shipped one for the images it reads."""
    n = min(len(held_out), len(other), options.max_samples)
    if n < 2:
        return None
    a, b = other.x[:n].cpu(), held_out.x[:n].cpu()
    metrics = set(metrics) | ({"prdc"} if "precision" in metrics else set())  # a metric or its figures
    figures: dict[str, dict[str, Any] | None] = {}
    if "mmd" in metrics:
        figures.update(estimates_as_dicts(mmd_estimates(a, b, options.seed)))
    image_metrics = [m for m in ("fid", "kid", "prdc", "c2st") if m in metrics]
    has_network = options.features is not None or (info is not None and shipped_network_applies(info))
    if "c2st" in metrics and n >= 10 and not (has_network and a.dim() == 4):  # raw values
        from simulacra.metrics.two_sample import classifier_two_sample_test

        found = classifier_two_sample_test(a, b, seed=options.seed)
        figures["c2st"] = {"value": found.accuracy, "stderr": found.stderr, "unit": "share", "n": found.n_test,
                           "estimator": f"C2ST floor ({n} held-out examples against {n} others; raw values)"}  # fmt: skip
    if image_metrics and has_network and a.dim() == 4:
        from simulacra.metrics.features import kid, manifold_metrics
        from simulacra.metrics.fid import (
            extract_features,
            frechet_bootstrap_sd,
            frechet_distance,
            gaussian_fit,
        )

        net, label = feature_network(options, info or DataInfo(tuple(a.shape[1:]), "real"), image_metrics[0])
        fa, fb = extract_features(net, a), extract_features(net, b)
        where = f"{n} held-out images against {n} others; features: {label}"
        if "fid" in metrics:
            sd = frechet_bootstrap_sd(fb, fa, generator=torch.Generator().manual_seed(options.seed))
            figures["fid"] = {"value": frechet_distance(*gaussian_fit(fa), *gaussian_fit(fb)), "stderr": sd,
                              "estimator": f"FID floor ({where}; ± bootstrap sd)", "unit": "", "n": n}  # fmt: skip
        if "kid" in metrics:
            mean, sd = kid(fb, fa, subsets=100, subset_size=min(1000, max(2, n // 2)),
                           generator=torch.Generator().manual_seed(options.seed))  # fmt: skip
            figures["kid"] = {
                "value": mean,
                "stderr": sd,
                "estimator": f"KID floor ({where})",
                "unit": "",
                "n": n,
            }
        if "c2st" in metrics and n >= 10:
            from simulacra.metrics.two_sample import classifier_two_sample_test

            test = classifier_two_sample_test(fa, fb, seed=options.seed)
            figures["c2st"] = {"value": test.accuracy, "stderr": test.stderr, "unit": "share", "n": test.n_test,
                               "estimator": f"C2ST floor ({where})"}  # fmt: skip
        if "prdc" in metrics:
            found = manifold_metrics(fb, fa)
            for key in ("precision", "recall", "density", "coverage"):
                figures[key] = {"value": getattr(found, key), "stderr": getattr(found, f"{key}_se"),
                                "estimator": f"{key} floor ({where}; ± s.e. over points)", "unit": "", "n": n}  # fmt: skip
    if not figures:
        return None
    return Row(run="held-out data (floor)", model="data", parameters=0, train_seconds=None,
               sample_seconds_per_1000=None, weights="-", figures=figures)  # fmt: skip


def check_same_data(configs: dict[str, dict[str, Any]]) -> None:
    """Raise :class:`DataError` unless every run (name -> its data config) has the same held-out data."""
    identities = {run: data_identity(config) for run, config in configs.items()}
    first_run, first = next(iter(identities.items()))
    for run, identity in identities.items():
        if identity != first:
            differ = [k for k in DATA_KEYS if identity[k] != first[k]]
            detail = "; ".join(f"{k} {first[k]!r} against {identity[k]!r}" for k in differ)
            raise DataError(
                f"compare puts runs on the same data on one table; {first_run!r} and {run!r} differ ({detail})"
            )


# -- the table --------------------------------------------------------------------------------


def _figure_names(rows: Sequence[Row]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name, value in row.figures.items():
            if value is not None and name not in names and not name.endswith("_p_value"):
                names.append(name)
    return names


def _cell(figure: dict[str, Any] | None) -> str:
    if figure is None or figure.get("value") is None:
        return "none"
    value, stderr = figure["value"], figure.get("stderr")
    text = f"{value:.4g}"
    if stderr is not None and math.isfinite(stderr) and stderr > 0:
        text += f" ± {stderr:.2g}"
    return text


def table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the comparison: a row per run, a column per figure ("none" where a
    model cannot give it), the NLL's estimator named in its own column."""
    names = _figure_names(rows)
    header = ["run", "model", "parameters", "train s", *names, "NLL estimator", "s / 1,000 samples"]
    cells = []
    for row in rows:
        figures = [_cell(row.figures.get(n)) for n in names]
        nll = row.figures.get("nll")
        cells.append(
            [
                Path(row.run).name,
                row.model,
                f"{row.parameters:,}",
                "?" if row.train_seconds is None else f"{row.train_seconds:.0f}",
                *figures,
                nll["estimator"] if nll else "none",
                "none" if row.sample_seconds_per_1000 is None else f"{row.sample_seconds_per_1000:.2f}",
            ]
        )
    return header, cells


def render(rows: Sequence[Row], fmt: str) -> str:
    """The table as ``md`` (Markdown), ``csv``, ``html`` (a ``<table>`` for the report) or
    ``json`` (every figure with its estimator)."""
    if fmt == "json":
        return json.dumps([row.__dict__ for row in rows], indent=2) + "\n"
    header, cells = table(rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(cells)
        return out.getvalue()
    if fmt == "html":
        esc = html.escape
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in line) + "</tr>" for line in cells)
        return f'<table class="compare"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
        return "\n".join(lines) + "\n"
    raise ConfigError(f"unknown table format {fmt!r}; expected md, csv, html or json")


__all__ = [
    "CACHE", "DATA_KEYS", "Row", "check_same_data", "data_identity", "floor_row", "render", "score_run", "table",
]  # fmt: skip
