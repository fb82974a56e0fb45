"""A causal character-level Transformer on Python's own docstrings: test bits per character.

The corpus is built on this machine, with no download: every docstring (module, class,
function) of the Python standard library that runs this script, in sorted file order, parsed
with ``ast`` (test packages and site-packages excluded), joined by blank lines: about 1.8 MB of
public-domain-licensed English and code (PSF licence). It is split by position 90/5/5 into
train/valid/test (``--data text:PATH?length=T``, :mod:`simulacra.data.text`).

The ``transformer`` preset trains for a budget of wall time (a short calibration sets the steps
of a cosine schedule; a TimeBudget stops training in any case), keeping the weights best on
the validation windows. Reported: the exact test NLL in bits per character, and the time to
draw ``--samples`` sequences with and without the key-value cache (the same samples under one
generator).

    python benchmarks/autoregressive_text.py --minutes 60 --threads 1

Writes benchmarks/results/ar-transformer-text.json (with a few samples) and the corpus to
runs/bench/python-docstrings.txt.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
import sysconfig
import time
from pathlib import Path

import torch

from _machine import cosine_config, fit_on_budget, machine, plan_budget, write_record  # noqa: E402  (benchmarks/ is on sys.path when run)
from simulacra.config import DataConfig
from simulacra.data import load_dataset
from simulacra.data.info import Split
from simulacra.data.text import decode
from simulacra.metrics.likelihood import evaluate_nll

ROOT = Path(__file__).resolve().parents[1]


def docstring_corpus(path: Path) -> Path:
    """Write every docstring of the standard library to ``path`` (once) and return it."""
    if path.is_file():
        return path
    lib = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for source in sorted(lib.rglob("*.py")):
        if {"site-packages", "test", "tests", "idle_test"} & set(source.parts):
            continue
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget (wall minutes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--length", type=int, default=128, help="context window T (characters)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, default=None, help="train on and score only N windows")
    parser.add_argument("--samples", type=int, default=8, help="sequences to draw and time")
    parser.add_argument("--eval-every-windows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=str(ROOT / "runs" / "bench" / "ar-transformer-text"), help="run directory"
    )
    parser.add_argument("--corpus", default=str(ROOT / "runs" / "bench" / "python-docstrings.txt"))
    parser.add_argument(
        "--results", default=str(ROOT / "benchmarks" / "results" / "ar-transformer-text.json")
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    corpus = docstring_corpus(Path(args.corpus))
    source = DataConfig(f"text:{corpus}?length={args.length}", limit=args.limit)
    data = load_dataset(source, seed=args.seed)
    if args.limit is not None:  # smoke test: small held-out splits as well
        data.valid = Split(data.valid.x[: args.limit])
        data.test = Split(data.test.x[: args.limit])
    chars = corpus.stat().st_size
    print(
        f"{corpus.name}: {chars / 1e6:.2f} MB, vocabulary {data.info.levels}; windows {len(data.train)} "
        f"train, {len(data.valid)} valid, {len(data.test)} test; {machine()}"
    )
    model_spec = {"name": "transformer", "dim": args.dim, "layers": args.layers, "heads": args.heads}

    eval_every = max(1, args.eval_every_windows // args.batch_size)
    steps, step_seconds, eval_seconds = plan_budget(
        model_spec,
        data,
        args.batch_size,
        args.minutes,
        calibration_steps=20,
        validation=True,
        eval_every=eval_every,
    )
    eval_every = min(eval_every, steps)
    print(
        f"calibration: {1 / step_seconds:.2f} steps/s, {eval_seconds:.1f} s per validation pass -> {steps} steps"
    )
    config = cosine_config(
        steps,
        args.batch_size,
        args.lr,
        args.seed,
        eval_every=eval_every,
        keep_best=True,  # end on the weights best on valid (no early stopping)
        log_every=max(1, min(500, steps // 10)),
        grad_clip=1.0,
    )
    # the benchmark's own run directory, rewritten
    model, result = fit_on_budget(model_spec, data, source, config, Path(args.out), args.minutes)

    model.eval()
    start = time.perf_counter()
    nll = evaluate_nll(model, data.test.x)["nll"]
    eval_seconds = time.perf_counter() - start
    bpc = nll.value / (args.length * math.log(2))
    print(f"test {bpc:.3f} bits/character ({nll}, {eval_seconds:.0f} s)")
    timings = {}
    drawn = {}
    for cache in (True, False):
        start = time.perf_counter()
        drawn[cache] = model.sample(args.samples, generator=torch.Generator().manual_seed(0), cache=cache)
        timings[cache] = time.perf_counter() - start
    same = torch.equal(drawn[True], drawn[False])
    print(
        f"sampling {args.samples}: cached {timings[True]:.2f} s, uncached {timings[False]:.2f} s, same: {same}"
    )

    record = {
        "benchmark": "ar-transformer-text",
        "model": model_spec,
        "data": f"Python {sys.version_info.major}.{sys.version_info.minor} standard-library docstrings",
        "corpus_mb": round(chars / 1e6, 3),
        "vocabulary": data.info.levels,
        "context": args.length,
        "test_bits_per_character": bpc,
        "test_bpc_stderr": nll.stderr / (args.length * math.log(2)),
        "test_windows": nll.n,
        "eval_seconds": round(eval_seconds, 1),
        "steps": result.steps,
        "train_minutes": round(result.wall_time / 60, 2),
        "best_valid_loss": result.best_valid_loss,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "sample_n": args.samples,
        "sample_seconds_cached": round(timings[True], 3),
        "sample_seconds_uncached": round(timings[False], 3),
        "cached_equals_uncached": same,
        "samples": decode(drawn[True][:3], data.info.vocabulary),
        "limit": args.limit,
    }
    write_record(record, Path(args.results))
    return 0 if math.isfinite(bpc) else 1


if __name__ == "__main__":
    sys.exit(main())
