"""Hypothesis strategies for fuzzing the ``simulacra`` command line: whole invocations.

Shared by ``tests/test_fuzz_cli.py`` (a short, derandomized run in the suite) and
``benchmarks/fuzz_cli.py`` (a long run); ``tests/cli_harness.py`` runs a case and checks it. A
:class:`Case` is an argv plus the files it needs: small (often corrupt) data files, template runs
copied in (intact or damaged), foreign files, a file where a folder belongs. Paths in a case are
relative to its own folder, which is the working directory while it runs (``@CASE@`` in an
argument stands for the folder's absolute path).

Values are drawn from pools that mix valid and invalid ones (zero, negative, NaN, infinite,
huge, strings where numbers go), but never a valid value that would make a case slow: training
is at most a few steps of a tiny model on a few dozen examples, and "huge" sizes are so huge
(2⁶⁶) that they fail at once rather than merely take long. Counts that only make a run long
(training steps, layers) are never huge: a slow case is not a wrong one.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

CASE = "@CASE@"
"""Stands for the case folder's absolute path inside an argument."""

HUGE = "99999999999999999999"
"""An integer beyond int64: a size this large must fail at once, with a clear error."""


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One invocation and the files it needs, all relative to the case's folder.

    Attributes:
        argv: the arguments after ``simulacra`` (``@CASE@`` for the folder's absolute path).
        files: ``(path, bytes)`` written before the run.
        runs: ``(path, template, damage)``: a copy of a template run, damaged (see :data:`DAMAGES`).
        folders: empty folders created before the run.
    """

    argv: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...] = ()
    runs: tuple[tuple[str, str, str], ...] = ()
    folders: tuple[str, ...] = ()

    def __repr__(self) -> str:  # what a failing example shows: the command first
        files = [(p, f"<{len(b)} bytes {b[:24]!r}...>") for p, b in self.files]
        return f"Case(argv={list(self.argv)!r}, runs={list(self.runs)!r}, files={files!r}, folders={list(self.folders)!r})"


class _Builder:
    """Collects the files, runs and folders a case needs while its argv is drawn."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.runs: dict[str, tuple[str, str]] = {}
        self.folders: set[str] = set()

    def case(self, argv: Sequence[str]) -> Case:
        return Case(
            tuple(argv),
            tuple(sorted(self.files.items())),
            tuple(sorted((p, t, d) for p, (t, d) in self.runs.items())),
            tuple(sorted(self.folders)),
        )


# --------------------------------------------------------------------------- value pools


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws (a value in the middle of the range: hypothesis favours the ends)."""
    return draw(st.integers(1, 2 * n)) in (n, n + 1)


SMALL_INTS = ["1", "2", "3"]
BAD_INTS = ["0", "-1", "-7", "abc", "1.5", "nan", "", " ", "0x10", "1e3", "--", "٣"]
FLOATS = ["0.001", "0.5", "1", "0", "-1", "nan", "NaN", "inf", "-inf", "1e308", "1e-320", "abc", "", "1e999"]
SEEDS = ["0", "1", "-1", "2147483648", "18446744073709551615", HUGE, "x"]
DEVICES = ["cpu", "auto", "cuda", "cuda:1", "CPU", "meta", "tpu", "", "cpu:0", "mps"]
TEXTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)

MODELS_FAST: dict[str, dict[str, Any]] = {
    # presets that train in a fraction of a second on a few 2-D points or 8x8 images
    "vae": {"hidden": [4], "latent_dim": 2},
    "ae": {"hidden": [4], "latent_dim": 2},
    "iwae": {"hidden": [4], "latent_dim": 2, "num_samples": 2},
    "dae": {"hidden": [4], "latent_dim": 2},
    "maf": {"transforms": 1, "hidden": [4]},
    "realnvp": {"transforms": 2, "hidden": [4]},
    "nsf": {"transforms": 1, "hidden": [4], "bins": 3},
    "made": {"hidden": [8]},
    "rnade": {"hidden": 4, "components": 2},
    "nade": {"hidden": 4},
    "ddpm": {"timesteps": 4, "hidden": [4], "channels": [4, 8], "attention_resolution": 4},
    "ebm": {
        "hidden": [4],
        "channels": [4],
        "steps": 2,
        "buffer_size": 64,
        "sample_steps": 2,
        "quadrature_points": 16,
    },
}
MODELS_ODD = [
    "vea", "VAE", "", " vae", "gan", "vae-", "glow", "cnf", "pixelcnn", "transformer", "cvae", "umnn",
    "score-sde", "conv-vae", "linear-ae", "vae-iaf", "torus", "cyclegan", "jem", "EBM",
]  # fmt: skip
"""Near misses, and valid presets beyond :data:`MODELS_FAST` (made tiny by ``tests/presets.py``)."""

SET_KEYS = {
    "model": [
        "hidden", "latent_dim", "activation", "likelihood", "transforms", "bins", "num_samples",
        "conditional", "name", "timesteps", "prior", "beta", "latent_density", "sampler", "foo",
        "info", "prediction", "schedule", "step_size", "buffer_size", "objective", "kernel", "chains",
    ],
    "data": ["num_samples", "limit", "valid_fraction", "binarize", "name", "data_dir", "bar"],
    "train": [
        "lr", "steps", "epochs", "batch_size", "ema_decay", "eval_every", "patience", "keep_best",
        "checkpoint_every", "checkpoint_minutes", "log_every", "sample_every", "lr_schedule",
        "warmup_steps", "grad_clip", "betas", "weight_decay", "seed", "device", "num_threads",
        "groups", "groups.main", "groups.main.lr", "groups.main.updates", "groups.main.fresh_batch",
        "groups.main.lr_scale", "groups.generator.lr", "groups.x.y", "baz", "updates_per_step",
        "kl_warmup_steps",
    ],
    "callbacks": ["kl-warmup.steps", "kl-warmup", "kl-warmup.step", "x.y", "kl-warmup.steps.deeper", ""],
}  # fmt: skip
ODD_KEYS = ["model", "data", "train", "other.key", "", ".", "..x", "model..hidden", " train.lr ", "callbacks"]
SET_VALUES = [
    "1", "2", "0", "-1", "3.5", "nan", "NaN", "inf", "-Infinity", "abc", "", "null", "none", "true",
    "false", "[4]", "[]", "[4, -1]", "[[1]]", "[0.5, 0.5]", "{}", '{"a": 1}', '"q"', "[1e3]", "1e-9",
    "cosine", "linear", "static", "gmm", "ancestral", "relu", "[4,", "=", "moons", "digits",
]  # fmt: skip
SIZE_VALUES = [HUGE, "1e15", f"[{HUGE}]", "1000000", "[1000000]"]  # allocations that fail at once, or cheap
# Keys whose valid values stay small (a large one makes a case slow, not wrong): never a huge value.
SLOW_WHEN_LARGE = {
    "train.steps", "train.epochs", "train.num_threads", "model.transforms", "model.timesteps",
    "model.bins", "model.num_samples", "data.limit", "data.num_samples",
}  # fmt: skip


# --------------------------------------------------------------------------- files


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype == object)
    return buf.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def png_bytes(width: int, height: int, mode: str, seed: int) -> bytes:
    """A PNG of random pixels, ``width`` x ``height``, in the PIL ``mode`` (L, RGB, RGBA, P, 1, I;16)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    else:
        channels = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "1": 1}[mode]
        pixels = rng.integers(0, 255, (height, width, channels), dtype=np.uint8)
        pixels = pixels[..., 0] if channels == 1 else pixels
        img = Image.fromarray(pixels).convert(mode) if mode in ("P", "1") else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Small arrays of many shapes and dtypes, sometimes with NaN or infinity."""
    ndim = draw(st.sampled_from([2, 2, 2, 1, 0, 3, 4, 5]))
    shape = tuple(draw(st.sampled_from([40, 40, 8, 5, 2, 1, 0])) if i == 0 else draw(st.sampled_from([2, 3, 8, 1, 0])) for i in range(ndim))  # fmt: skip
    dtype = draw(st.sampled_from(["float32", "float32", "float64", "uint8", "int64", "bool", "float16", "complex64", "<U3", "object"]))  # fmt: skip
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    if dtype == "object":
        return np.array([{"x": 1}, [1, 2]], dtype=object)
    if dtype == "<U3":
        return np.full(shape, "ab", dtype=dtype)
    x = rng.random(shape) * draw(st.sampled_from([1.0, 255.0, -3.0, 1e30]))
    with np.errstate(invalid="ignore"):
        x = x.astype(dtype)
    special = draw(st.sampled_from([None, None, np.nan, np.inf, -np.inf]))
    if special is not None and x.size and x.dtype.kind in "fc":
        x.flat[draw(st.integers(0, x.size - 1))] = special
    return x


@st.composite
def corruptions(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` itself, truncated, with flipped bytes, emptied, or replaced by random bytes."""
    kind = draw(st.sampled_from(["keep", "keep", "truncate", "flip", "empty", "random"]))
    if kind == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] ^= 0xFF
        return bytes(out)
    if kind == "empty":
        return b""
    if kind == "random":
        return draw(st.binary(max_size=64))
    return data


@st.composite
def data_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """``(suffix, bytes)`` of a small data file: .npz, .npy, .csv, an image, a pickle, text."""
    kind = draw(st.sampled_from(["npy", "npz", "npz", "csv", "png", "pickle", "txt"]))
    if kind == "npy":
        return ".npy", draw(corruptions(_npy(draw(arrays()))))
    if kind == "npz":
        keys = draw(st.sampled_from([("x",), ("x", "y"), ("train", "test"), ("x_train", "y_train"), ("data",), ("train", "valid", "test"), ("y",), ()]))  # fmt: skip
        contents = {}
        for key in keys:
            if key.startswith("y"):
                contents[key] = draw(st.sampled_from([np.arange(40) % 3, np.arange(5), -np.ones(40, int), np.full(40, 0.5), np.full(40, np.nan), np.zeros((40, 2), int)]))  # fmt: skip
            else:
                contents[key] = draw(arrays())
        return ".npz", draw(corruptions(_npz(**contents)))
    if kind == "csv":
        rows = draw(st.lists(st.sampled_from(["1,2", "0.5,-3", "nan,1", "1,inf", "a,b", "1,2,3", "", "x;y", "1e400,0", "1", "é,ü"]), max_size=60))  # fmt: skip
        header = draw(st.sampled_from(["", "a,b\n", "label,x\n"]))
        text = header + "\n".join(rows) + ("\n" if rows else "")
        return ".csv", draw(corruptions(text.encode()))
    if kind == "png":
        size = (draw(st.integers(1, 10)), draw(st.integers(1, 10)))
        mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]))
        suffix = draw(st.sampled_from([".png", ".png", ".jpg", ".jpeg"]))
        return suffix, draw(corruptions(png_bytes(*size, mode, draw(st.integers(0, 3)))))
    if kind == "pickle":
        suffix = draw(st.sampled_from([".npy", ".npz", ".pkl", ".safetensors"]))
        return suffix, pickle.dumps({"x": [1.0, 2.0], "evil": "os.system"})
    body = draw(st.sampled_from([b"hello world\n" * 30, b"ab", b"", b"\xff\xfe\x00bad", "ünïcode ✓\n".encode() * 20]))  # fmt: skip
    return ".txt", body


# --------------------------------------------------------------------------- paths and runs

TEMPLATES = ("vae", "ddpm", "made", "maf", "text", "partial")
"""The template runs (see :func:`build_templates`)."""

DAMAGES = (
    "intact", "intact", "intact", "truncated-weights", "garbage-weights", "no-weights",
    "garbage-config", "list-config", "alien-config", "garbage-pointer", "dangling-pointer",
    "garbage-metrics", "list-metrics", "foreign-file", "no-marker", "other-weights", "no-config",
)  # fmt: skip
"""What is done to a copied run before the case runs (:func:`damage_run`)."""


def _run(draw: st.DrawFn, b: _Builder, templates: Sequence[str] = TEMPLATES) -> str:
    """A copy of a template run (one of ``templates``, usually; intact, usually) at a fresh path."""
    path = draw(st.sampled_from(["old", "runs/old", "a run", "old.d"]))
    if path not in b.runs:
        template = (
            draw(st.sampled_from(list(templates)))
            if not _one_in(draw, 5)
            else draw(st.sampled_from(TEMPLATES))
        )
        damage = "intact" if not _one_in(draw, 3) else draw(st.sampled_from(DAMAGES))
        b.runs[path] = (template, damage)
    return path


def _folder_arg(draw: st.DrawFn, b: _Builder) -> str:
    """A folder to write into: fresh, existing, a run, a file, under a file, foreign files."""
    kind = draw(st.sampled_from(["fresh", "fresh", "fresh", "run", "run", "file", "under-file", "foreign", "empty", "abs", "odd", "dot"]))  # fmt: skip
    if kind == "fresh":
        return draw(st.sampled_from(["out", "runs/new", "deep/a/b/out", "out.npz"]))
    if kind == "run":
        return _run(draw, b)
    if kind in ("file", "under-file"):
        b.files["afile"] = b"precious\n"
        return "afile" if kind == "file" else "afile/out"
    if kind == "foreign":
        b.files["mine/thesis.tex"] = b"\\chapter{Results}\n"
        return "mine"
    if kind == "empty":
        b.folders.add("empty")
        return "empty"
    if kind == "abs":
        return f"{CASE}/abs-out"
    if kind == "odd":
        return draw(st.sampled_from(["ünï cöde", "-dash", "out ", "a:b", "out/"]))
    if not _one_in(draw, 2):  # the working folder holds a run: --out . may not replace it
        b.runs["."] = (draw(st.sampled_from(TEMPLATES)), "intact")
    return draw(st.sampled_from([".", ""]))


def _file_arg(draw: st.DrawFn, b: _Builder, suffixes: Sequence[str] = ()) -> str:
    """An input file: a generated (often corrupt) one, a missing one, a folder, a run's file."""
    kind = draw(st.sampled_from(["generated", "generated", "generated", "missing", "folder", "run-file"]))
    if kind == "generated":
        suffix, data = draw(data_file())
        if suffixes and draw(st.booleans()):
            suffix = draw(st.sampled_from(list(suffixes)))
        path = f"in/file{len(b.files)}{suffix}"
        b.files[path] = data
        return path
    if kind == "missing":
        return draw(st.sampled_from(["missing.npz", "no/such/file.png", f"{CASE}/missing.npy"]))
    if kind == "folder":
        b.folders.add("in/folder")
        return "in/folder"
    return _run(draw, b) + draw(st.sampled_from(["/model.safetensors", "/config.json", ""]))


def _data_arg(draw: st.DrawFn, b: _Builder) -> str:
    """``--data``: a registered name, a near miss, a (corrupt) file, an image folder, text."""
    kind = draw(st.sampled_from(["toy", "toy", "toy", "name", "file", "file", "file", "images", "text"]))
    if kind == "toy":
        return draw(st.sampled_from(["moons", "8gaussians", "checkerboard", "rings"]))
    if kind == "name":
        return draw(st.sampled_from(["digits", "mnist", "binarized-mnist", "moon", "MOONS", "", "text:", "text:missing.txt", "~"]))  # fmt: skip
    if kind == "file":
        return _file_arg(draw, b, suffixes=(".npz", ".npy", ".csv"))
    if kind == "images":
        count = draw(st.integers(1, 6))
        labelled = draw(st.booleans())
        for i in range(count):
            suffix, png = draw(data_file().filter(lambda f: f[0] in (".png", ".jpg", ".jpeg")))
            folder = f"imgs/{i % 2}" if labelled else "imgs"
            b.files[f"{folder}/im{i}{suffix}"] = png
        return "imgs"
    suffix, body = draw(data_file().filter(lambda f: f[0] == ".txt"))
    b.files["in/book.txt"] = body
    return "text:in/book.txt" + draw(
        st.sampled_from(["", "", "?length=8", "?length=0", "?length=x", "?foo=1"])
    )


def _override(draw: st.DrawFn) -> str:
    """A ``--set KEY=VALUE``: mostly known keys, sometimes odd ones; values of every kind."""
    if _one_in(draw, 10):
        key = draw(st.sampled_from(ODD_KEYS))
    else:
        section = draw(st.sampled_from(list(SET_KEYS)))
        key = f"{section}.{draw(st.sampled_from(SET_KEYS[section]))}"
    pool = SET_VALUES if key.strip() in SLOW_WHEN_LARGE else SET_VALUES + SIZE_VALUES
    value = draw(st.one_of(st.sampled_from(pool), TEXTS)) if not _one_in(draw, 8) else draw(TEXTS)
    return draw(st.sampled_from([f"{key}={value}", f"{key}={value}", key, f"{key}=={value}"]))


def _options(draw: st.DrawFn, table: Mapping[str, Any], b: _Builder, *, at_most: int = 5) -> list[str]:
    """Options drawn from ``table`` (name -> pool of values, a function of (draw, b), or None for
    a flag), in random order, sometimes with an unknown or abbreviated option among them."""
    names = draw(st.lists(st.sampled_from(sorted(table)), max_size=at_most, unique=True))
    argv: list[str] = []
    for name in names:
        spec = table[name]
        argv.append(name)
        if spec is None:
            continue
        argv.append(spec(draw, b) if callable(spec) else draw(st.sampled_from(spec)))
    if _one_in(draw, 12):
        argv.insert(
            draw(st.integers(0, len(argv))),
            draw(st.sampled_from(["--step", "--foo", "-x", "--out=", "--", "-"])),
        )
    return argv


def _pool(values: Sequence[str]) -> Any:
    return lambda draw, b: draw(st.one_of(st.sampled_from(list(values)), TEXTS)) if _one_in(draw, 10) else draw(st.sampled_from(list(values)))  # fmt: skip


# --------------------------------------------------------------------------- verbs


def _tiny_model_settings(model: str | None) -> list[str]:
    """``--set model.KEY=VALUE`` making ``model`` tiny: the contract test's settings
    (``tests/presets.py``), unconditional, with :data:`MODELS_FAST` on top."""
    from presets import TINY

    settings = dict(TINY[model][0]) if model in TINY else {"hidden": [4], "latent_dim": 2}
    settings.pop("conditional", None)
    settings.update(MODELS_FAST.get(model or "", {}))
    out = []
    for key, value in settings.items():
        out += ["--set", f"model.{key}={json.dumps(value)}"]
    return out


SLOW_ON_IMAGES = {"ddpm", "score-sde", "umnn", "cnf"}
"""Presets whose held-out likelihood (an ODE per example) takes a minute on digits' 297 test images."""


SAFE_TRAIN = ["--steps", "2", "--batch-size", "8", "--no-progress", "--no-eval"]
EVAL_SMALL = ["--eval-examples", "4", "--eval-samples", "2", "--eval-k", "2"]
"""The post-training evaluation, small: instead of ``--no-eval`` in one train case in four."""
SAFE_DATA = ["--set", "data.num_samples=64", "--set", "data.limit=48"]


@st.composite
def train_cases(draw: st.DrawFn) -> Case:
    """``simulacra train``: a fresh run, a replacement (``--overwrite``) or a resume."""
    b = _Builder()
    if _one_in(draw, 6):  # --resume: no model, --set or --config allowed
        run = draw(st.sampled_from(["run", "run", "run", "missing", "afile"]))
        if run == "run":
            run = _run(draw, b)
        elif run == "afile":
            b.files["afile"] = b"x"
        argv = ["train", "--resume", run, *SAFE_TRAIN]
        argv += _options(draw, {"--steps": SMALL_INTS + BAD_INTS, "--epochs": ["0.1", "0", "-1", "nan", "x"], "--minutes": ["0.001", "0", "-1", "nan", "x"], "--threads": ["1", "0", "x"], "--set": _pool(["train.lr=1"]), "--no-progress": None, "--overwrite": None}, b, at_most=2)  # fmt: skip
        return b.case(argv)
    model = draw(st.sampled_from([*sorted(MODELS_FAST) * 3, *MODELS_ODD, None]))
    argv = ["train"] + ([model] if model is not None else [])
    argv += SAFE_TRAIN + SAFE_DATA + _tiny_model_settings(model)
    if _one_in(draw, 4):
        argv = [a for a in argv if a != "--no-eval"] + EVAL_SMALL
    if model in SLOW_ON_IMAGES:
        argv += ["--data", "moons"]  # not the default, digits (see below)
    table: dict[str, Any] = {
        "--data": lambda draw, b: _data_arg(draw, b),
        "--data-dir": lambda draw, b: _folder_arg(draw, b),
        "--binarize": ["static", "dynamic", "none", "x"],
        "--epochs": FLOATS,
        "--steps": SMALL_INTS + BAD_INTS,
        "--batch-size": ["8", "16", "1", "0", "-2", "x", "1000000", HUGE],
        "--lr": FLOATS,
        "--seed": SEEDS,
        "--device": DEVICES,
        "--out": lambda draw, b: _folder_arg(draw, b),
        "--config": lambda draw, b: _config_file(draw, b),
        "--overwrite": None,
        "--eval-examples": ["1", "4", "0", "-1", "x", HUGE],
        "--eval-samples": ["1", "2", "0", "-1", "x"],
        "--eval-k": ["1", "2", "0", "-1", "x"],
        "--minutes": ["0.001", "0", "-1", "nan", "inf", "x"],
        "--threads": ["1", "2", "0", "-1", "x", HUGE],
        "--standardize": None,
        "--no-standardize": None,
        "--label-names": lambda draw, b: _label_names(draw, b),
        "--no-progress": None,
    }
    argv += _options(draw, table, b, at_most=6)
    if "--data" not in argv and not _one_in(draw, 4):
        argv += ["--data", _data_arg(draw, b)]
    if "--data" in argv and _one_in(draw, 4):  # two sources, labelled by source (a cyclegan's domains)
        argv += ["--data", _data_arg(draw, b)]
    if "--out" not in argv and not _one_in(draw, 4):
        argv += ["--out", _folder_arg(draw, b)]
    for _ in range(draw(st.integers(0, 4))):
        argv += ["--set", _override(draw)]
    if _one_in(draw, 3):
        argv.append("--overwrite")
    if model in SLOW_ON_IMAGES:  # valid, but slow: their figures on 2-D points instead
        argv = [re.sub(r"^(data\.name=)?(digits|mnist|binarized-mnist)$", r"\1moons", a) for a in argv]
    return b.case(argv)


def _config_file(draw: st.DrawFn, b: _Builder) -> str:
    kind = draw(
        st.sampled_from(["toml", "toml", "json", "bad-toml", "bad-json", "suffix", "missing", "folder"])
    )
    if kind == "missing":
        return "missing.toml"
    if kind == "folder":
        b.folders.add("conf.toml")
        return "conf.toml"
    sections = {}
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from(["model", "data", "train", "callbacks", "extra"]))
        key = draw(st.sampled_from([k for keys in SET_KEYS.values() for k in keys if "." not in k]))
        value = draw(st.sampled_from([1, 0, -1, 2.5, "abc", True, [4], {"a": 1}, "moons"]))
        sections.setdefault(section, {})[key] = value
    if kind in ("toml", "bad-toml", "suffix"):
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [
                f"{k} = {json.dumps(v) if not isinstance(v, dict) else '{a = 1}'}" for k, v in values.items()
            ]
        text = "\n".join(lines) + "\n"
        if kind == "bad-toml":
            text += "[model\nname = \n"
        path = "conf.toml" if kind != "suffix" else "conf.yaml"
    else:
        text = json.dumps(sections if kind == "json" else [sections]) + ("" if kind == "json" else "{")
        path = "conf.json"
    b.files[path] = text.encode()
    return path


def _label_names(draw: st.DrawFn, b: _Builder) -> str:
    """A file of label names: ten, too few, repeated, empty lines, not text; or a missing file."""
    kind = draw(st.sampled_from(["ten", "ten", "three", "repeated", "blank", "binary", "missing"]))
    if kind == "missing":
        return "labels-missing.txt"
    body = {
        "ten": "\n".join(f"class-{i}" for i in range(10)) + "\n",
        "three": "a\nb\nc\n",
        "repeated": "a\n" * 10,
        "blank": "\n\n",
    }.get(kind)
    b.files["labels.txt"] = body.encode() if body is not None else b"\xff\xfe\x00"
    return "labels.txt"


def _run_arg(draw: st.DrawFn, b: _Builder, templates: Sequence[str]) -> str:
    kind = "run" if not _one_in(draw, 6) else draw(st.sampled_from(["missing", "file", "foreign", "empty"]))
    if kind == "run":
        return _run(draw, b, templates)
    if kind == "file":
        b.files["afile"] = b"x"
        return "afile"
    if kind == "foreign":
        b.files["mine/notes.txt"] = b"mine\n"
        return "mine"
    if kind == "empty":
        b.folders.add("empty")
        return "empty"
    return "missing-run"


def _output_arg(draw: st.DrawFn, b: _Builder, run: str) -> str:
    name = draw(st.sampled_from(["s.png", "s.jpg", "s.JPEG", "s.txt", "s.gif", "s", "s.png.tmp", "nofolder/s.png", "afile/s.png", "out-dir", f"{CASE}/s.png", "runfile"]))  # fmt: skip
    if name.startswith("afile"):
        b.files["afile"] = b"x"
    if name == "out-dir":
        b.folders.add("out-dir")
    if name == "runfile":
        return f"{run}/{draw(st.sampled_from(['samples.png', 'model.png', 'config.txt']))}"
    return name


def _table_with_holes(draw: st.DrawFn, b: _Builder, *, mask: bool = False) -> str:
    """A table for ``impute``: 64 columns (the 8x8 template runs') or another width, with NaN
    holes (or, for ``--mask``, 0/1 entries), as .npy, .csv or .npz; or any input file."""
    if _one_in(draw, 4):
        return _file_arg(draw, b, suffixes=(".npy", ".npz", ".csv"))
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    width = draw(st.sampled_from([64, 64, 64, 2, 63]))
    rows = draw(st.sampled_from([5, 1, 40]))
    table = rng.random((rows, width))
    holes = rng.random(table.shape) < draw(st.sampled_from([0.3, 0.0, 1.0]))
    if mask:
        table = holes.astype(draw(st.sampled_from(["int64", "float64"]))) * draw(st.sampled_from([1, 2]))
    else:
        table[holes] = np.nan
    suffix = draw(st.sampled_from([".npy", ".csv", ".npz"]))
    path = f"in/table{len(b.files)}{suffix}"
    if suffix == ".npy":
        b.files[path] = _npy(table)
    elif suffix == ".npz":
        b.files[path] = _npz(x=table)
    else:
        b.files[path] = "\n".join(
            ",".join("" if np.isnan(v) else str(v) for v in row) for row in table
        ).encode()
    return path


def _impute_output(draw: st.DrawFn, b: _Builder) -> str:
    name = draw(st.sampled_from(["c.csv", "c.npz", "c.npy", "c.txt", "c", "deep/c.npz", "afile/c.csv", "out-dir", f"{CASE}/c.csv"]))  # fmt: skip
    if name.startswith("afile"):
        b.files["afile"] = b"x"
    if name == "out-dir":
        b.folders.add("out-dir")
    return name


def _examples_file(draw: st.DrawFn, b: _Builder) -> str:
    """A set for ``outliers``: rows of 64 values or 8x8 images in [0, 1] (the template runs'),
    2-D points (maf's), or another width, as .npy, .npz or .csv; or any input file."""
    if _one_in(draw, 4):
        return _file_arg(draw, b, suffixes=(".npy", ".npz", ".csv"))
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    shape = draw(st.sampled_from([(64,), (8, 8), (2,), (5, 5), (63,)]))
    rows = draw(st.sampled_from([6, 1, 30]))
    x = rng.random((rows, *shape)) * draw(st.sampled_from([1, 1, 255]))
    suffix = draw(st.sampled_from([".npy", ".npz", ".csv"] if len(shape) == 1 else [".npy", ".npz"]))
    path = f"in/set{len(b.files)}{suffix}"
    if suffix == ".npy":
        b.files[path] = _npy(x)
    elif suffix == ".npz":
        b.files[path] = _npz(x=x)
    else:
        b.files[path] = "\n".join(",".join(str(v) for v in row) for row in x).encode()
    return path


@st.composite
def run_verb_cases(draw: st.DrawFn) -> Case:
    """``sample``, ``evaluate``, ``interpolate``, ``inpaint``, ``super-resolve``, ``denoise``,
    ``colorize``, ``translate``, ``compress``, ``decompress``, ``impute``, ``outliers`` on a
    (perhaps damaged) run;
    ``compare`` and ``report`` on one or two."""
    b = _Builder()
    verb = draw(st.sampled_from(["sample", "sample", "evaluate", "evaluate", "interpolate", "inpaint", "super-resolve", "denoise", "colorize", "translate", "compare", "report", "compress", "decompress", "impute", "outliers"]))  # fmt: skip
    fits = {
        "sample": TEMPLATES,
        "evaluate": TEMPLATES,
        "interpolate": ("vae", "partial"),
        "inpaint": ("ddpm", "made"),
        "impute": ("vae", "made", "maf"),
        "outliers": ("vae", "made", "maf", "ddpm"),
        "translate": TEMPLATES,
        "compress": ("text", "made"),
        "decompress": ("text", "made"),
    }
    run = _run_arg(draw, b, fits.get(verb, ("ddpm",)))
    if verb in ("compare", "report"):  # one or two runs (a second on other data, or the same one twice)
        runs = [run] + ([_run_arg(draw, b, TEMPLATES)] if draw(st.booleans()) else [])
        table: dict[str, Any] = {
            "-o": _pool(["t.md", "t.csv", "t.json", "t.txt", "afile/t.md", "r.html", "r.htm", "out-dir"]),
        }
        if verb == "compare":
            table |= {
                "--metric": ["nll", "mmd", "fid", "bogus"],
                "--samples": ["4", "2", "1", "0", "x"],
                "--limit": ["4", "1", "0", "x"],
                "--k": ["2", "0", "x"],
                "--weights": ["ema", "raw", "x"],
                "--no-cache": None,
                "--features": lambda draw, b: _file_arg(draw, b, suffixes=(".safetensors",)),
            }
            safe = ["--samples", "4", "--limit", "4", "--k", "2"]
        else:
            table["--title"] = ["a title", "", "<b>x</b>"]
            safe = []
        return b.case([verb, *runs, *safe, *_options(draw, table, b)])
    if verb == "compress":  # --data and -o are required: usually given
        required = ["--data", _data_arg(draw, b)] if not _one_in(draw, 8) else []
        required += [
            "-o",
            _pool(["c.sim", "c", "c.npy", "afile/c.sim", "out-dir/", f"{CASE}/c.sim"])(draw, b),
        ]
        table = {
            "--split": ["test", "valid", "train", "x"],
            "--limit": ["1", "2", "0", "-1", "x", HUGE],
            "--batch-size": ["1", "3", "0", "x", HUGE],
            "--weights": ["ema", "raw", "x"],
            "--data-dir": lambda draw, b: _folder_arg(draw, b),
            "--threads": ["1", "0", "x"],
        }
        if "afile/c.sim" in required:
            b.files["afile"] = b"x"
        return b.case([verb, run, *required, *_options(draw, table, b)])
    if verb == "decompress":
        source = _file_arg(draw, b, suffixes=(".sim",))
        out = _pool(["d.npy", "d", "d.sim", "afile/d.npy", f"{CASE}/d.npy", source])(draw, b)
        if out == "afile/d.npy":
            b.files["afile"] = b"x"
        table = {"--weights": ["ema", "raw", "x"], "--threads": ["1", "0", "x"]}
        return b.case([verb, run, source, "-o", out, *_options(draw, table, b)])
    common: dict[str, Any] = {"--weights": ["ema", "raw", "x"], "--seed": SEEDS}
    if verb == "sample":
        safe = ["-n", "4"]
        table = {
            **common,
            "-n": SMALL_INTS + BAD_INTS + ["16", HUGE],
            "-o": lambda draw, b: _output_arg(draw, b, run),
            "--label": ["0", "3", "9", "10", "-1", HUGE, "x", "zero", "nine", ""],
            "--threads": ["1", "0", "x"],
            "--save-tensor": _pool(["t.npy", "t", "afile/t.npy", "in", f"{CASE}/t.npy", "t.txt"]),
            "--device": DEVICES,
            "--sampler": [
                "ancestral",
                "ddim",
                "pc",
                "dpm-solver",
                "ode",
                "heun",
                "euler-maruyama",
                "bogus",
                "",
            ],
            "--sampler-steps": SMALL_INTS + BAD_INTS + ["1000"],
            "--guidance": FLOATS,
            "--temperature": FLOATS,
            "--top-k": SMALL_INTS + BAD_INTS + [HUGE],
            "--step-size": FLOATS,
            "--chain-init": ["noise", "buffer", "x"],
        }
        if "--save-tensor" in table:
            b.folders.add("in")
    elif verb == "evaluate":
        safe = ["--limit", "4", "--k", "2", "--samples", "4"]
        table = {
            **common,
            "--metric": ["nll", "mmd", "fid", "c2st", "NLL", "bogus", ""],
            "--k": SMALL_INTS + BAD_INTS,
            "--samples": ["2", "4", "1", "0", "x", HUGE],
            "--features": lambda draw, b: _file_arg(draw, b, suffixes=(".safetensors",)),
            "--split": ["test", "valid", "train", "x"],
            "--limit": ["1", "2", "0", "-1", "x"],
            "--data-dir": lambda draw, b: _folder_arg(draw, b),
            "--device": DEVICES,
        }
    elif verb == "interpolate":
        safe = ["--pairs", "2", "--points", "3"]
        table = {
            **common,
            "-o": lambda draw, b: _output_arg(draw, b, run),
            "--method": ["linear", "spherical", "x"],
            "--points": SMALL_INTS + BAD_INTS + ["50"],
            "--threads": ["1", "0", "x"],
            "--pairs": SMALL_INTS + BAD_INTS + [HUGE],
            "--data-dir": lambda draw, b: _folder_arg(draw, b),
        }
    elif verb == "impute":
        safe = ["--data", _table_with_holes(draw, b), "-o", _impute_output(draw, b), "--samples", "4"]
        table = {
            **common,
            "--data": lambda draw, b: _file_arg(draw, b, suffixes=(".npy", ".npz", ".csv")),
            "--mask": lambda draw, b: _table_with_holes(draw, b, mask=True),
            "-o": lambda draw, b: _impute_output(draw, b),
            "--multiple": ["0", "1", "2", "-1", "x", HUGE, "1000000000"],
            "--samples": SMALL_INTS + BAD_INTS,
            "--batch-size": SMALL_INTS + BAD_INTS + [HUGE],
            "--device": DEVICES,
        }
    elif verb == "outliers":  # --data and --ood are required: usually given
        safe = ["--data", _examples_file(draw, b)] if not _one_in(draw, 8) else []
        safe += ["--ood", _examples_file(draw, b)] if not _one_in(draw, 8) else []
        safe += ["--k", "2", "--reference-examples", "8", "--batch", "2"]
        table = {
            **common,
            "--ood": lambda draw, b: _examples_file(draw, b),
            "--score": [
                "nll",
                "llr",
                "complexity",
                "typicality",
                "energy",
                "nll,complexity",
                "bogus",
                "",
                ",",
            ],
            "--background": lambda draw, b: _run_arg(draw, b, TEMPLATES),
            "--compressor": ["png", "lzma", "x"],
            "--k": SMALL_INTS + BAD_INTS,
            "--batch": SMALL_INTS + BAD_INTS + [HUGE],
            "--alpha": FLOATS,
            "--limit": ["1", "2", "0", "-1", "x"],
            "--split": ["test", "valid", "train", "x"],
            "-o": _pool(["s.csv", "s", "s.npy", "afile/s.csv", "out-dir", f"{CASE}/s.csv"]),
            "--plot": _pool(["h.png", "h.jpg", "h", "afile/h.png", "s.csv"]),
            "--json": _pool(["m.json", "m.txt", "afile/m.json"]),
            "--device": DEVICES,
            "--data-dir": lambda draw, b: _folder_arg(draw, b),
        }
        b.files.setdefault("afile", b"x")
        b.folders.add("out-dir")
    elif verb == "translate":
        safe = ["--examples", "2"]
        table = {
            **common,
            "--image": lambda draw, b: _file_arg(draw, b, suffixes=(".png",)),
            "--examples": SMALL_INTS + BAD_INTS + [HUGE],
            "--to": ["a", "b", "B", "x", ""],
            "-o": lambda draw, b: _output_arg(draw, b, run),
            "--save-tensor": _pool(["t.npy", "t", "afile/t.npy", f"{CASE}/t.npy"]),
            "--device": DEVICES,
            "--data-dir": lambda draw, b: _folder_arg(draw, b),
        }
    else:
        safe = ["--examples", "2", "-n", "1", "--sampler-steps", "2"]
        table = {
            **common,
            "--image": lambda draw, b: _file_arg(draw, b, suffixes=(".png",)),
            "--examples": SMALL_INTS + BAD_INTS + [HUGE],
            "-n": SMALL_INTS + BAD_INTS + [HUGE],
            "-o": lambda draw, b: _output_arg(draw, b, run),
            "--sampler-steps": SMALL_INTS + BAD_INTS,
            "--label": ["0", "9", "10", "-1", "x"],
            "--device": DEVICES,
            "--data-dir": lambda draw, b: _folder_arg(draw, b),
        }
        if verb == "inpaint":
            table |= {
                "--mask": lambda draw, b: _file_arg(draw, b, suffixes=(".png",)),
                "--mask-kind": ["center", "left", "right", "top", "bottom", "random", "x"],
                "--resample": ["1", "2", "0", "-1", "x"],
            }
        if verb in ("super-resolve", "colorize"):
            table["--resample"] = ["1", "2", "0", "-1", "x"]
        if verb == "super-resolve":
            table["--factor"] = ["2", "4", "3", "0", "x"]
        if verb == "denoise":
            table |= {"--noise": FLOATS, "--sampler": ["ancestral", "ddim", "ode", "bogus", ""]}
    argv = [verb, run, *safe, *_options(draw, table, b)]
    return b.case(argv)


@st.composite
def posterior_cases(draw: st.DrawFn) -> Case:
    """``simulacra posterior``, always with few simulations, steps and draws unless drawn otherwise."""
    b = _Builder()
    simulator = draw(
        st.sampled_from(["gaussian-linear", "two-moons", "two-moons", "gaussian", "", "TWO-MOONS"])
    )
    safe = ["--simulations", "64", "--steps", "2", "--transforms", "1", "--hidden", "4", "--samples", "16"]
    safe += ["--sbc-trials", "4", "--sbc-samples", "4", "--batch-size", "16", "--no-progress"]
    table: dict[str, Any] = {
        "--flow": ["nsf", "maf", "realnvp", "nsf-coupling", "glow", "x", ""],
        "--simulations": ["64", "10", "1", "0", "-5", "x", HUGE],
        "--steps": SMALL_INTS + BAD_INTS,
        "--batch-size": ["8", "1", "0", "x", HUGE],
        "--lr": FLOATS,
        "--transforms": ["1", "2", "0", "-1", "x"],
        "--hidden": _pool(["4", "4,4", "", "abc", "-1", "0", "1.5", "1e15", ",", "4,,4"]),
        "--observation": _pool(
            ["0.1,0.2", "", "abc", "nan,nan", "1", "inf,0", "1,2,3,4,5,6,7,8,9,10", "0.1, 0.2"]
        ),
        "--samples": ["16", "1", "0", "x"],
        "--sbc-trials": ["4", "1", "0", "x"],
        "--sbc-samples": ["4", "1", "0", "x"],
        "--seed": SEEDS,
        "--out": lambda draw, b: _folder_arg(draw, b),
        "--overwrite": None,
    }
    return b.case(["posterior", simulator, *safe, *_options(draw, table, b)])


AMAT_OK = (
    "\n".join(" ".join("1" if (i + j) % 3 == 0 else "0" for j in range(784)) for i in range(2)) + "\n"
).encode()
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip


@st.composite
def download_cases(draw: st.DrawFn) -> Case:
    """``simulacra download`` from a local mirror (``file://``): never the network."""
    b = _Builder()
    dataset = draw(st.sampled_from(["binarized-mnist", "binarized-mnist", "mnist", "MNIST", "cifar", ""]))
    for split in ("train", "valid", "test"):
        if not _one_in(draw, 6):
            body = draw(st.sampled_from([AMAT_OK, AMAT_OK, b"1 0 1\n", b"", b"\x00\xff" * 9, AMAT_OK[:-900]]))
            b.files[f"mirror/binarized_mnist_{split}.amat"] = body
    for name in MNIST_FILES:
        if draw(st.booleans()):
            b.files[f"mirror/{name}"] = gzip.compress(draw(st.binary(max_size=32)))
    mirrors = ["--mirror", f"file://{CASE}/mirror"]
    table: dict[str, Any] = {
        "--to": lambda draw, b: _folder_arg(draw, b),
        "--mirror": [f"file://{CASE}/nothing/", "not a url", "", "http://", f"file://{CASE}/mirror/"],
        "--no-progress": None,
    }
    return b.case(["download", dataset, *mirrors, *_options(draw, table, b)])


TOKENS = [
    "train", "sample", "evaluate", "interpolate", "inpaint", "super-resolve", "denoise", "colorize",
    "translate", "compare", "report", "compress", "decompress", "impute", "outliers", "posterior", "models", "datasets", "metrics", "download", "--help", "-h", "--out", "--data", "-o",
    "-n", "--set", "vae", "moons", "x=1", "--", "-", "=", "--overwrite", "--resume", "old",
]  # fmt: skip


@st.composite
def other_cases(draw: st.DrawFn) -> Case:
    """The listing verbs, and argv made of random tokens and text."""
    b = _Builder()
    if draw(st.booleans()):
        argv = [draw(st.sampled_from(["models", "datasets", "metrics"]))]
        argv += draw(st.lists(st.sampled_from(["--help", "x", "--all"]), max_size=1))
        return b.case(argv)
    argv = draw(st.lists(st.one_of(st.sampled_from(TOKENS), TEXTS), max_size=5))
    if argv[:1] == ["download"] or argv[:1] == ["train"] or argv[:1] == ["posterior"]:
        argv = ["--help"] + argv  # a complete command from random tokens would be slow, not wrong
    if "old" in argv:
        _run(draw, b)
    return b.case(argv)


KINDS = {"other": 2, "train": 40, "run-verb": 30, "posterior": 8, "download": 7, "listing": 3}
"""How often each kind of invocation is drawn (in parts)."""


@st.composite
def cli_cases(draw: st.DrawFn) -> Case:
    """Every kind of invocation, weighted by :data:`KINDS` towards the verbs that write."""
    slots = [kind for kind, parts in KINDS.items() for _ in range(parts)]
    kind = slots[draw(st.integers(0, 8 * len(slots) - 1)) // 8]  # the ends are favoured: small kinds there
    strategy = {
        "train": train_cases(),
        "run-verb": run_verb_cases(),
        "posterior": posterior_cases(),
        "download": download_cases(),
        "other": other_cases(),
        "listing": other_cases(),
    }[kind]
    return draw(strategy)
