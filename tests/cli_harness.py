"""Running one fuzzed invocation of the ``simulacra`` command line in-process, and the promises
it must keep (:func:`check`); the cases come from ``tests/cli_strategies.py``.

1. the exit status is 0 or 2, and nothing escapes ``main`` but argparse's ``SystemExit(2)`` (or
   ``SystemExit(0)`` for ``--help``);
2. no ``Traceback`` anywhere; a failure ends stderr with exactly one error line, ``error: ...``
   (or argparse's ``simulacra VERB: error: ...`` after its usage lines);
3. nothing created or changed outside the paths the invocation names (``--out``, ``-o``,
   ``--save-tensor``, ``--to``, the run it works on; ``runs/`` for a default output), and
   nothing at all outside the case's folder (a sibling folder, the template runs, the working
   folder of the test, ``~/.simulacra``);
4. a run that existed before is byte-identical afterwards, unless the invocation replaced it
   (``--overwrite``) or continued it (``--resume``) and succeeded; a verb that works on a run
   may add or replace only its own outputs there (``samples.png``, ``metrics.json``, ...);
5. no file or folder left in a temporary state: ``*.tmp``, ``ckpt-*.tmp/``,
   ``.<run>.replaced-<pid>/``, ``*.part`` downloads, ``.simulacra-probe-*``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cli_strategies import CASE, Case
from simulacra.train.rundir import RUN_FILES, RUN_PATTERNS

# --------------------------------------------------------------------------- template runs


def _template_data(root: Path) -> tuple[Path, Path]:
    """A small labelled image set (48 + 8 test images 8x8 of 17 grey levels, 3 classes) and a text file."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 17, (56, 8, 8)).astype(np.float32) / 16
    labels = np.arange(56) % 3
    np.savez(
        root / "images.npz", x_train=images[:48], y_train=labels[:48], x_test=images[48:], y_test=labels[48:]
    )
    (root / "book.txt").write_text("the quick brown fox jumps over the lazy dog. " * 8)
    return root / "images.npz", root / "book.txt"


def build_templates(root: Path) -> dict[str, Path]:
    """Small finished runs to copy into cases (each trained for a step or two, without the report):
    ``vae`` (with an EMA), conditional ``ddpm``, ``made`` and a two-group ``hvae`` on 8x8 images, ``maf`` on moons, a
    character ``transformer`` on text, and ``partial``: a vae run stopped at step 2 of 4."""
    import torch

    from simulacra.config import RunConfig
    from simulacra.data import load_dataset
    from simulacra.models.zoo import build_model
    from simulacra.train import fit

    root.mkdir(parents=True, exist_ok=True)
    images, book = _template_data(root)
    tiny = {"name": str(images), "valid_fraction": 0.1}
    specs: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
        "vae": ({"name": "vae", "hidden": [4], "latent_dim": 2}, tiny, {"ema_decay": 0.9}),
        "ddpm": (
            {
                "name": "ddpm",
                "timesteps": 4,
                "channels": [4, 8],
                "attention_resolution": 4,
                "conditional": True,
                "rtol": 1e-2,  # the likelihood's ODE: the cases test the CLI's promises, not the NLL
                "atol": 1e-2,
            },
            tiny,
            {},
        ),
        "made": ({"name": "made", "hidden": [8]}, tiny, {}),
        "hvae": ({"name": "hvae", "groups": 2, "latent_dim": 2, "hidden": 4}, tiny, {}),
        "maf": ({"name": "maf", "transforms": 1, "hidden": [4]}, {"name": "moons", "num_samples": 64}, {}),
        "text": (
            {"name": "transformer", "dim": 8, "layers": 1, "heads": 2},
            {"name": f"text:{book}?length=8"},
            {},
        ),
        "partial": ({"name": "vae", "hidden": [4], "latent_dim": 2}, tiny, {"checkpoint_every": 1}),
    }

    class StopAt:
        """Stands for a Ctrl-C at step 2: the run keeps a checkpoint and its current weights."""

        def on_step_end(self, state: Any) -> None:
            if state.step == 2:
                state.interrupted, state.stop_requested = int(signal.SIGTERM), True

    out = {}
    for name, (model_spec, data, train) in specs.items():
        config = RunConfig.from_dict(
            {
                "model": model_spec,
                "data": data,
                "train": {"steps": 4 if name == "partial" else 2, "batch_size": 8, **train},
            }  # fmt: skip
        )
        dataset = load_dataset(config.data, seed=config.train.seed)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, dataset.info)
        run_dir = root / name
        callbacks = [StopAt()] if name == "partial" else []
        fit(model, dataset, config.train, run_dir=run_dir, run_config=config.to_dict(), callbacks=callbacks, progress=False)  # fmt: skip
        out[name] = run_dir
    return out


def damage_run(run: Path, damage: str, templates: Mapping[str, Path]) -> None:
    """Do ``damage`` (one of :data:`DAMAGES`) to the copied run ``run``."""
    weights = run / "model.safetensors"
    if damage == "truncated-weights" and weights.is_file():
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage-weights":
        weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    elif damage == "no-weights":
        weights.unlink(missing_ok=True)
        (run / "ema.safetensors").unlink(missing_ok=True)
    elif damage == "garbage-config":
        (run / "config.json").write_bytes(b'{"run": {"model": ')
    elif damage == "list-config":
        (run / "config.json").write_text("[]")
    elif damage == "alien-config":
        config = json.loads((run / "config.json").read_text())
        config["model"] = {"name": "nope"}
        config["info"] = {"event_shape": "x"}
        (run / "config.json").write_text(json.dumps(config))
    elif damage == "no-config":
        (run / "config.json").unlink()
    elif damage == "garbage-pointer":
        (run / "checkpoint.json").write_text('{"latest": "../../etc"}')
    elif damage == "dangling-pointer":
        (run / "checkpoint.json").write_text('{"latest": "ckpt-000000077", "step": 77}')
    elif damage == "garbage-metrics":
        (run / "metrics.json").write_bytes(b"{not json")
    elif damage == "list-metrics":
        (run / "metrics.json").write_text("[]")
    elif damage == "foreign-file":
        (run / "notes.txt").write_text("mine\n")
    elif damage == "no-marker":
        (run / ".simulacra-run").unlink(missing_ok=True)
    elif damage == "other-weights":
        other = "maf" if run.name != "maf" else "vae"
        shutil.copyfile(templates[other] / "model.safetensors", weights)
    elif damage != "intact":
        raise ValueError(f"unknown damage {damage!r}")


# --------------------------------------------------------------------------- running a case


@dataclass
class Outcome:
    """What one case did: exit status, output, what changed on disk, and how long it took."""

    case: Case
    status: int | None
    stdout: str
    stderr: str
    raised: str | None  # the traceback of an exception that escaped main (not SystemExit)
    seconds: float
    before: dict[str, str] = field(default_factory=dict)  # the case folder: relative path -> digest
    after: dict[str, str] = field(default_factory=dict)
    outside_changed: list[str] = field(default_factory=list)
    run_paths: dict[str, set[str]] = field(default_factory=dict)  # a run at "." (the case folder): its paths


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 (files), "dir" (folders) or "link" of everything below ``folder``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = "link"
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _stat_snapshot(folder: Path, skip: str | None = None) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) below ``folder`` (cheap), leaving out the folder ``skip``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        if skip is not None and Path(dirpath) == folder and skip in dirnames:
            dirnames.remove(skip)
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st_ = path.lstat()
            out[str(path.relative_to(folder))] = (st_.st_size, st_.st_mtime_ns if not path.is_dir() else 0)
    return out


class Harness:
    """Runs cases in-process below ``root``: ``root/templates`` (built once), ``root/sibling``
    (files no case may touch), and a fresh ``root/cases/<n>`` per case, removed afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.templates = build_templates(root / "templates")
        sibling = root / "sibling"
        sibling.mkdir(exist_ok=True)
        (sibling / "keep.txt").write_text("nothing may change me\n")
        self.cases = root / "cases"
        self.cases.mkdir(exist_ok=True)
        self.count = 0
        self.home_data = Path.home() / ".simulacra"

    def prepare(self, case: Case, folder: Path) -> None:
        """Create the case's folders, files and run copies in ``folder``."""
        for rel in case.folders:
            (folder / rel).mkdir(parents=True, exist_ok=True)
        for rel, data in case.files:
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_dir():
                path.write_bytes(data)
        for rel, template, damage in case.runs:
            path = folder / rel
            if path.exists() and rel != ".":
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.templates[template], path, dirs_exist_ok=rel == ".")
            damage_run(path, damage, self.templates)

    def run(self, case: Case, *, keep: bool = False) -> Outcome:
        """Run ``case`` (through ``simulacra.cli.main``) in a fresh folder; see :func:`check`."""
        import torch

        from simulacra.cli import main

        self.count += 1
        folder = Path(tempfile.mkdtemp(prefix=f"{self.count}-", dir=self.cases)).resolve()
        self.prepare(case, folder)
        argv = [a.replace(CASE, str(folder)) for a in case.argv]
        before = snapshot(folder)
        run_paths = {
            rel: set(snapshot(self.templates[t])) if rel == "." else set() for rel, t, _ in case.runs
        }
        outside = _stat_snapshot(self.root, skip="cases")
        cwd = Path.cwd()
        cwd_names = sorted(os.listdir(cwd))
        home_before = self.home_data.exists()
        threads = torch.get_num_threads()
        env = os.environ.get("SIMULACRA_DATA")
        out, err = io.StringIO(), io.StringIO()
        status: int | None = None
        raised = None
        started = time.perf_counter()
        try:
            os.environ["SIMULACRA_DATA"] = str(folder / "data-home")
            os.chdir(folder)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(argv)
                except SystemExit as exit_:
                    # what the process would exit with: sys.exit("message") prints it and exits 1
                    status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                except BaseException:  # noqa: BLE001 - anything else is what the fuzzer looks for
                    raised = traceback.format_exc()
        finally:
            os.chdir(cwd)
            torch.set_num_threads(threads)
            if env is None:
                os.environ.pop("SIMULACRA_DATA", None)
            else:
                os.environ["SIMULACRA_DATA"] = env
        seconds = time.perf_counter() - started
        new = _stat_snapshot(self.root, skip="cases")
        changed = [
            f"{self.root}/{p}" for p in sorted(set(outside) | set(new)) if outside.get(p) != new.get(p)
        ]
        changed += [f"{cwd}/{n}" for n in sorted(set(os.listdir(cwd)) ^ set(cwd_names))]
        if self.home_data.exists() != home_before:
            changed.append(str(self.home_data))
        after = snapshot(folder)
        others = [p for p in self.cases.iterdir() if p != folder]
        changed += [str(p) for p in others]  # another case folder: written outside this one
        outcome = Outcome(
            case, status, out.getvalue(), err.getvalue(), raised, seconds, before, after, changed, run_paths
        )
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
        return outcome


# --------------------------------------------------------------------------- the promises

ERROR_LINE = re.compile(r"^(error: |simulacra( [\w-]+)?: error: )")
TEMPORARY = (
    re.compile(r".*\.tmp$"),  # atomic writes and ckpt-*.tmp folders
    re.compile(r"^\..+\.replaced-\d+$"),  # a run moved aside by --overwrite
    re.compile(r"^\..+\.part$"),  # downloads in progress
    re.compile(r"^\.simulacra-probe-"),
)
RUN_VERB_OUTPUTS = {
    "sample": {"samples.png", "samples.txt"},
    "evaluate": {"metrics.json"},
    "interpolate": {"interpolation.png"},
    "inpaint": {"inpaint.png"},
    "super-resolve": {"super-resolve.png"},
    "denoise": {"denoise.png"},
    "colorize": {"colorize.png"},
    "translate": {"translations.png"},
    "impute": set(),  # it writes -o only
    "outliers": set(),  # -o, --plot and --json only
}


MULTI_RUN_OUTPUTS = {"compare": {"compare.json"}, "report": {"report.html"}}
"""What the verbs that read several runs may write into each (compare's cache, a run's report)."""


FOLDER = "/@case"
"""The case folder's stand-in when paths are judged (they are relative to it)."""


def _norm(path: str) -> str:
    """``path`` relative to the case folder, normalised (``@CASE@/x`` -> ``x``, ``out/`` -> ``out``)."""
    path = path.replace(CASE, FOLDER)
    if os.path.isabs(path):
        path = os.path.relpath(path, FOLDER)
    return os.path.normpath(path) if path else "."


def _option_values(argv: Sequence[str], *names: str) -> list[str]:
    """Values argparse would read for ``names`` (``--out X`` and ``--out=X``), leaving out
    anything after ``--``."""
    values = []
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in names and i + 1 < len(argv):
            values.append(argv[i + 1])
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                values.append(arg[len(name) + 1 :])
    return values


def allowed_paths(case: Case) -> list[str]:
    """Paths (relative to the case folder, normalised) below which the case may write."""
    argv = list(case.argv)
    verb = next((a for a in argv if not a.startswith("-")), "")
    allowed = []
    options = ("--out", "--to", "-o", "--output", "--resume", "--save-tensor", "--plot", "--json")
    for value in _option_values(argv, *options):
        allowed += [_norm(value), _norm(value) + ".npy"]
    if verb in ("train", "posterior"):
        allowed.append("runs")  # the default output, runs/<model>-<data>
    if verb == "download":
        allowed.append("data-home")  # $SIMULACRA_DATA
    if verb in RUN_VERB_OUTPUTS:
        run = next((a for a in argv[argv.index(verb) + 1 :] if not a.startswith("-")), None)
        if run is not None:
            allowed += [os.path.join(_norm(run), name) for name in RUN_VERB_OUTPUTS[verb]]
    if verb in MULTI_RUN_OUTPUTS:  # every run named (and, harmlessly, any option value)
        for arg in argv[argv.index(verb) + 1 :]:
            if not arg.startswith("-"):
                allowed += [os.path.join(_norm(arg), name) for name in MULTI_RUN_OUTPUTS[verb]]
    return allowed


def _below(path: str, roots: Sequence[str]) -> bool:
    for root in roots:
        if root == "." or path == root or path.startswith(root.rstrip("/") + "/"):
            return True
        if root.startswith(path + "/"):  # a folder created on the way to an allowed path
            return True
    return False


def check(outcome: Outcome) -> list[str]:
    """The promises the outcome broke (empty when it kept them all); see the module docstring."""
    case, problems = outcome.case, []
    if outcome.raised is not None:
        last = outcome.raised.strip().splitlines()[-1]
        problems.append(f"an exception escaped main: {last}")
    elif outcome.status not in (0, 2):
        problems.append(f"exit status {outcome.status}, expected 0 or 2")
    for name, text in (("stderr", outcome.stderr), ("stdout", outcome.stdout)):
        if "Traceback" in text:
            problems.append(f"a traceback on {name}")
    if outcome.status == 2:
        # lines as a terminal shows them: split at newlines only (str.splitlines also splits at
        # \x85, \u2028 and others, which a user's argument may hold)
        lines = [line for line in outcome.stderr.split("\n") if line.strip()]
        errors = [line for line in lines if ERROR_LINE.match(line)]
        if not lines or not ERROR_LINE.match(lines[-1]) or len(errors) != 1:
            problems.append(f"status 2 without exactly one final error line: {lines[-3:]!r}")
    if outcome.outside_changed:
        problems.append(f"wrote outside its folder: {outcome.outside_changed[:3]}")
    before, after = outcome.before, outcome.after
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    allowed = allowed_paths(case)
    stray = [p for p in changed if not _below(p, allowed)]
    # a run written with --overwrite / --resume is judged below; here only other paths count
    if stray:
        problems.append(f"changed {stray[:4]} outside the paths it was given {allowed}")
    argv = list(case.argv)
    succeeded = outcome.status == 0
    verb = next((a for a in argv if not a.startswith("-")), "")
    named = [_norm(v) for v in _option_values(argv, "-o", "--output", "--save-tensor", "--to")]
    for run, _, _ in case.runs:
        run_n = _norm(run)
        if run_n == ".":  # the working folder itself: its run's paths, and new ones a run would write
            first = {p: p.split("/")[0] for p in changed}
            touched = [
                p
                for p in changed
                if p in outcome.run_paths.get(run, ())
                or (
                    p not in before
                    and (first[p] in RUN_FILES or any(r.match(first[p]) for r in RUN_PATTERNS))
                )
            ]
        else:
            touched = [p for p in changed if p == run_n or p.startswith(run_n + "/")]
        outs = [_norm(v) for v in _option_values(argv, "--out")]
        resumed = [_norm(v) for v in _option_values(argv, "--resume")]
        if not touched or (
            succeeded
            and verb in ("train", "posterior")
            and (("--overwrite" in argv and run_n in outs) or run_n in resumed)
        ):
            continue  # untouched, or replaced or continued as asked
        outputs = set(RUN_VERB_OUTPUTS.get(verb, ())) | set(MULTI_RUN_OUTPUTS.get(verb, ()))
        own = {os.path.join(run_n, n) for n in outputs} | set(named)
        own |= {p + ".npy" for p in own}
        # a file of the run may change only as an output the verb made; a new file may also be a
        # leftover of a failed download into a folder given by --to
        bad = [p for p in touched if not (succeeded and p in own) and (p in before or not _below(p, named))]
        if bad:
            problems.append(f"the existing run {run!r} changed: {bad[:4]}")
    leftovers = [p for p in after if any(t.match(Path(p).name) for t in TEMPORARY) and p not in before]
    if leftovers:
        problems.append(f"left in a temporary state: {leftovers[:4]}")
    return problems


def describe(outcome: Outcome, problems: Sequence[str]) -> str:
    """A report of a broken promise: the command, the problems, and the tail of the output."""
    lines = [f"simulacra {' '.join(repr(a) if ' ' in a or not a else a for a in outcome.case.argv)}"]
    lines += [f"  {outcome.case!r}", f"  status {outcome.status}; problems:"]
    lines += [f"    - {p}" for p in problems]
    if outcome.raised:
        lines += ["  exception:", *("    " + line for line in outcome.raised.strip().splitlines()[-12:])]
    lines += ["  stderr tail:", *("    " + line for line in outcome.stderr.strip().splitlines()[-6:])]
    return "\n".join(lines)


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Warnings are not errors here (the CLI's stderr is judged on its own)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
