"""One self-contained HTML report of one or more runs (``simulacra report``).

For each run: what was trained on what (model and data settings), the held-out figures with their
estimators and standard errors (``metrics.json``: the figures after training and every later
``simulacra evaluate``), the training curves and every picture the run has (samples,
reconstructions, interpolations, latent plots, translations, posterior checks), embedded as PNG
data so that the file opens anywhere without a network. With several runs, a table of their
figures side by side (and a ``simulacra compare`` table, as HTML, when one is given) and their
sample grids next to each other come first.

The page records in its ``<body>`` how many of its images decoded (``data-images-loaded`` of
``data-images``) and any script error (``data-errors``): the browser test reads them back.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulacra.errors import CheckpointError

PICTURES = (
    ("samples.png", "samples"),
    ("reconstructions.png", "held-out examples and their reconstructions"),
    ("interpolation.png", "interpolations between held-out examples"),
    ("manifold.png", "the decoder over a grid of latent codes"),
    ("latents.png", "held-out codes, coloured by label"),
    ("translations.png", "translations"),
    ("training.png", "training and validation curves"),
)
"""The pictures a run may hold, in the order a reader wants them, with a caption each; any other
PNG of the run folder follows them."""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figure img { max-width: 520px; image-rendering: pixelated; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
pre { background: #f8f8f8; padding: .6em; overflow-x: auto; font-size: .8em; }
.none { color: #999; }
</style>
</head>
<body data-images="{{ image_count }}" data-images-loaded="0" data-errors="">
<h1>{{ title }}</h1>
<p>{{ runs|length }} run{{ "s" if runs|length != 1 }}; written by simulacra {{ version }}.</p>
{% if runs|length > 1 %}
<h2>Side by side</h2>
<table>
<tr><th>figure</th>{% for run in runs %}<th>{{ run.name }}</th>{% endfor %}</tr>
{% for figure in figure_names %}
<tr><td>{{ figure }}</td>{% for run in runs %}<td>{{ run.cell(figure)|safe }}</td>{% endfor %}</tr>
{% endfor %}
</table>
<div>
{% for run in runs %}{% if run.samples %}<figure><img src="{{ run.samples }}" alt="samples of {{ run.name }}">
<figcaption>{{ run.name }}: samples</figcaption></figure>{% endif %}{% endfor %}
</div>
{% endif %}
{% if compare_table %}<h2>simulacra compare</h2>{{ compare_table|safe }}{% endif %}
{% for run in runs %}
<h2 id="{{ run.anchor }}">{{ run.name }}: {{ run.model }} on {{ run.data }}</h2>
<table>
<tr><th>trained</th><td>{{ run.trained }}</td></tr>
<tr><th>weights</th><td>{{ run.weights }}</td></tr>
</table>
{% if run.figures %}
<table>
<tr><th>figure</th><th>value</th><th>± s.e.</th><th>unit</th><th>estimator</th><th>from</th></tr>
{% for f in run.figures %}
<tr><td>{{ f.name }}</td><td>{{ f.value }}</td><td>{{ f.stderr }}</td><td>{{ f.unit }}</td><td>{{ f.estimator }}</td><td>{{ f.source }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="none">No held-out figures yet: <code>simulacra evaluate {{ run.path }}</code>.</p>{% endif %}
{% for picture in run.pictures %}
<figure><img src="{{ picture.src }}" alt="{{ picture.caption }}"><figcaption>{{ picture.caption }}</figcaption></figure>
{% endfor %}
<details><summary>settings</summary><pre>{{ run.settings }}</pre></details>
{% endfor %}
<script>
(function () {
  var body = document.body, errors = [];
  function note(message) { errors.push(String(message)); body.dataset.errors = errors.join(" | "); }
  window.addEventListener("error", function (e) { note(e.message || "error"); }, true);
  var images = Array.prototype.slice.call(document.images);
  function count() {
    body.dataset.imagesLoaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  }
  images.forEach(function (i) {
    // an image that failed before this script ran fired its error event unheard
    if (i.complete && i.naturalWidth === 0) { note("image did not load: " + i.alt); return; }
    i.addEventListener("load", count);
    i.addEventListener("error", function () { note("image did not load: " + i.alt); });
  });
  count();
})();
</script>
</body>
</html>
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.{digits}g}"
    return str(value)


@dataclass
class RunPage:
    """What the report shows of one run."""

    path: str
    name: str
    anchor: str
    model: str
    data: str
    trained: str
    weights: str
    settings: str
    figures: list[dict[str, str]] = field(default_factory=list)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    pictures: list[dict[str, str]] = field(default_factory=list)
    samples: str | None = None

    def cell(self, figure: str) -> str:
        """This run's value of ``figure`` as table HTML ("none" when it has none)."""
        entry = self.latest.get(figure)
        if not entry or entry.get("value") is None:
            return '<span class="none">none</span>'
        text = _number(entry["value"])
        if entry.get("stderr"):
            text += f" ± {_number(entry['stderr'], 2)}"
        return html.escape(text)


def run_page(run: Path, index: int) -> RunPage:
    """Read what a run folder holds into a :class:`RunPage`.

    Raises:
        CheckpointError: no such run folder, or one without ``config.json``.
    """
    if not run.is_dir() or not (run / "config.json").is_file():
        raise CheckpointError(
            f"{str(run)!r} is not a run folder (no config.json); give folders `simulacra train` wrote"
        )
    try:
        config = json.loads((run / "config.json").read_text()).get("run", {})
    except ValueError as err:
        raise CheckpointError(f"{str(run / 'config.json')!r} is not valid JSON: {err}") from None
    try:
        record = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        record = {}
    record = record if isinstance(record, dict) else {}
    model = config.get("model", {}).get("name", "?")
    data = config.get("data", {}).get("name", "?")
    data = " + ".join(map(str, data)) if isinstance(data, list) else str(data)
    steps, seconds = record.get("steps"), record.get("train_seconds")
    trained = (
        "not finished" if steps is None else f"{steps} steps" + (f" in {seconds:.0f} s" if seconds else "")
    )
    if record.get("stop_reason"):
        trained += f" ({record['stop_reason']})"
    page = RunPage(
        path=str(run), name=run.name or str(run), anchor=f"run-{index}", model=str(model), data=data,
        trained=trained, weights=str(record.get("weights", "?")), settings=json.dumps(config, indent=2),
    )  # fmt: skip
    sources = [("after training", record.get("test") or {})]
    sources += [
        (
            f"simulacra evaluate ({e.get('split', '?')} split, {e.get('weights', '?')} weights)",
            e.get("metrics") or {},
        )
        for e in record.get("evaluations") or []
        if isinstance(e, dict)
    ]
    for source, metrics in sources:
        for name, m in metrics.items():
            if not isinstance(m, dict):
                continue
            page.latest[name] = m
            page.figures.append(
                {
                    "name": name,
                    "value": _number(m.get("value")) or "n/a",
                    "stderr": _number(m.get("stderr"), 2),
                    "unit": str(m.get("unit", "")),
                    "estimator": str(m.get("estimator", "")),
                    "source": source,
                }
            )
    known = [name for name, _ in PICTURES]
    others = sorted(p.name for p in run.glob("*.png") if p.name not in known)
    captions = dict(PICTURES)
    for name in [*known, *others]:
        path = run / name
        if path.is_file():
            src = _data_uri(path)
            page.pictures.append({"src": src, "caption": captions.get(name, name)})
            if name == "samples.png":
                page.samples = src
    return page


def render_report(runs: Sequence[Path], *, title: str | None = None, compare_table: str | None = None) -> str:
    """The HTML of the report of ``runs`` (self-contained: pictures embedded)."""
    from importlib.metadata import PackageNotFoundError, version

    import jinja2

    try:
        installed = version("simulacra")
    except PackageNotFoundError:  # run from a source tree
        installed = "(source tree)"
    pages = [run_page(Path(run), i) for i, run in enumerate(runs)]
    names: list[str] = []
    for page in pages:
        names += [n for n in page.latest if n not in names and not n.endswith("_p_value")]
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    images = sum(len(p.pictures) for p in pages) + (
        sum(p.samples is not None for p in pages) if len(pages) > 1 else 0
    )
    return environment.from_string(TEMPLATE).render(
        title=title or ("simulacra report: " + ", ".join(p.name for p in pages)),
        runs=pages,
        figure_names=names,
        compare_table=compare_table,
        image_count=images,
        version=installed,
    )


__all__ = ["PICTURES", "RunPage", "render_report", "run_page"]
