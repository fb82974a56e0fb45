"""The cross-family leaderboard: one model per family on the same data, the same CPU budget each,
one ``simulacra compare`` table.

For ``--data`` (``mnist`` or ``binarized-mnist``), train (or reuse, when the run folder already
holds a finished run) one preset per family with ``simulacra train PRESET --minutes M`` at its
defaults for the data (the CPU image defaults the presets declare), each on ``--threads`` threads:

    vae, iwae (the VAE family; importance-sampled NLL), realnvp (a flow; exact NLL),
    made (autoregressive; exact NLL), ddpm (diffusion; PF-ODE NLL), gan (no likelihood),
    ebm (an AIS estimate of log Z)

then score them together with ``simulacra compare`` (the NLL with its estimator, MMD, and on
28×28 grey images FID, KID, precision/recall, density/coverage and class KL on the shipped MNIST
feature network; the data-vs-data floor as the last row), written as Markdown and JSON.

    python benchmarks/leaderboard.py --data binarized-mnist --minutes 20 --threads 1
    python benchmarks/leaderboard.py --data mnist --minutes 20 --threads 1
    python benchmarks/leaderboard.py --data mnist --families vae,gan --minutes 1   # a part, quickly

Runs live in runs/leaderboard/DATA/PRESET (``--retrain`` trains again); the table goes to
benchmarks/results/leaderboard-DATA.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _machine import machine  # noqa: E402

FAMILIES = {
    "vae": "vae",
    "iwae": "iwae",
    "flow": "realnvp",
    "autoregressive": "made",
    "diffusion": "ddpm",
    "gan": "gan",
    "ebm": "ebm",
}
"""Family -> the preset that stands for it."""


def main(argv: list[str] | None = None) -> int:
    from simulacra.cli import main as simulacra

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="binarized-mnist", help="mnist or binarized-mnist (or any dataset)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"a subset of {','.join(FAMILIES)}")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per model (wall time)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=1000, help="samples per model for the sample metrics")
    parser.add_argument("--limit", type=int, default=1000, help="held-out examples scored")
    parser.add_argument("--k", type=int, default=100, help="importance samples per example (VAE family)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    args = parser.parse_args(argv)

    families = args.families.split(",")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; expected some of {sorted(FAMILIES)}")
    root = ROOT / "runs" / "leaderboard" / args.data
    runs, trained = [], {}
    for family in families:
        preset = FAMILIES[family]
        run = root / preset
        finished = (run / "model.safetensors").is_file()
        if finished and not args.retrain:
            print(f"{family}: reusing {run}", flush=True)
        else:
            started = time.perf_counter()
            argv_train = [
                "train", preset, "--data", args.data, "--data-dir", args.data_dir, "--out", str(run),
                "--minutes", str(args.minutes), "--threads", str(args.threads), "--no-progress", "--no-eval",
            ]  # fmt: skip
            if finished:
                argv_train.append("--overwrite")
            print(f"{family}: simulacra {' '.join(argv_train)}", flush=True)
            if simulacra(argv_train) != 0:
                print(f"{family}: training failed; left out of the table", flush=True)
                continue
            trained[family] = round((time.perf_counter() - started) / 60, 1)
        runs.append(str(run))
    if not runs:
        return 1
    results = HERE / "results"
    table = results / f"leaderboard-{args.data}.md"
    common = [
        "--samples",
        str(args.samples),
        "--limit",
        str(args.limit),
        "--k",
        str(args.k),
        "--data-dir",
        args.data_dir,
    ]
    started = time.perf_counter()
    if simulacra(["compare", *runs, *common, "-o", str(table)]) != 0:
        return 1
    if simulacra(["compare", *runs, *common, "-o", str(results / f"leaderboard-{args.data}.json")]) != 0:
        return 1  # the second call reads every run's cache
    record = {
        "data": args.data,
        "minutes_per_model": args.minutes,
        "threads": args.threads,
        "families": {f: FAMILIES[f] for f in families},
        "trained_now_minutes": trained,
        "compare_minutes": round((time.perf_counter() - started) / 60, 1),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python benchmarks/leaderboard.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (results / f"leaderboard-{args.data}-run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
