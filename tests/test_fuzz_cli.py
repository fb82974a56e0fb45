"""The command line keeps its promises under random use (hypothesis; the strategies and the
harness in ``tests/cli_strategies.py`` and ``tests/cli_harness.py``): exit status 0 or 2, never a traceback, one ``error:``
line on failure, nothing written outside the paths given, an existing run intact unless it was
replaced on purpose, and no file left in a temporary state. ``benchmarks/fuzz_cli.py`` runs the
same for longer.

The cases are derandomized (the same ones every run) and the regressions below, each a case the
fuzzer once found broken, run first.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings

import cli_harness as ch
import cli_strategies as cs
from cli_strategies import CASE, HUGE, Case

EXAMPLES = 100  # about 26 s on one core (AVX2 VM, 2026-12-07), with the regressions; 150 took the suite past 3 minutes there

TINY_TRAIN = ("--steps", "2", "--batch-size", "8", "--no-progress", "--no-eval")
ONE_PIXEL = cs.png_bytes(1, 1, "L", 0)

REGRESSIONS = [
    # download --to a file: FileExistsError escaped
    Case(
        ("download", "binarized-mnist", "--mirror", f"file://{CASE}/mirror", "--to", "afile"),
        (("afile", b"x"),),
    ),
    # a model setting of the wrong type (a number for a list): TypeError deep in the preset
    Case(("train", "maf", "--data", "moons", *TINY_TRAIN, "--set", "model.hidden=nan", "--out", "out")),
    # a size too large to allocate: TypeError (overflow) from torch while building the model
    Case(
        ("train", "vae", "--data", "moons", *TINY_TRAIN, "--set", f"model.latent_dim={HUGE}", "--out", "out")
    ),
    # evaluate appends to a metrics.json that is not a JSON object: AttributeError after the work
    Case(("evaluate", "old", "--limit", "4", "--k", "2"), runs=(("old", "vae", "list-metrics"),)),
    Case(("evaluate", "old", "--limit", "4", "--k", "2"), runs=(("old", "vae", "garbage-metrics"),)),
    # a config section that is not a table: ValueError in RunConfig.from_dict
    Case(("train", "vae", "--data", "moons", *TINY_TRAIN, "--set", "train=state_dict")),
    # posterior --out under a file: NotADirectoryError after training
    Case(
        ("posterior", "two-moons", "--simulations", "64", "--steps", "1", "--out", "afile/out"),
        (("afile", b"x"),),
    ),
    # posterior --out an existing run: the run's config and weights overwritten
    Case(
        (
            "posterior",
            "two-moons",
            "--simulations",
            "64",
            "--steps",
            "1",
            "--samples",
            "8",
            "--sbc-trials",
            "2",
            "--sbc-samples",
            "2",
            "--hidden",
            "4",
            "--transforms",
            "1",
            "--no-progress",
            "--out",
            "old",
        ),
        runs=(("old", "vae", "intact"),),
    ),  # fmt: skip
    # a UNet whose 1x1 level leaves one value per GroupNorm group: ValueError at the first step
    Case(
        ("train", "ddpm", "--data", "imgs", *TINY_TRAIN, "--set", "model.channels=[4, 8]"),
        (("imgs/a.png", ONE_PIXEL),),
    ),
    # a seed beyond 2^64: ValueError from torch's generator
    Case(("posterior", "gaussian-linear", "--simulations", "64", "--steps", "1", "--seed", HUGE)),
    Case(("train", "vae", "--data", "moons", *TINY_TRAIN, "--seed", "18446744073709551615")),
    # data.name that is not a string: AttributeError
    Case(("train", "vae", *TINY_TRAIN, "--set", "data.name=2")),
    # train.betas not a list: TypeError while the config was read
    Case(("train", "vae", "--data", "moons", *TINY_TRAIN, "--set", "train.betas=1")),
    # a section replaced by a value, then used for the default --out: TypeError, AttributeError
    Case(("train", "vae", *TINY_TRAIN, "--set", "model=x")),
    Case(("train", "vae", *TINY_TRAIN, "--set", "data=1")),
    # counts beyond int64 (TypeError from torch), and counts beyond memory (RuntimeError from torch)
    Case(("posterior", "two-moons", "--simulations", HUGE)),
    Case(("train", "vae", *TINY_TRAIN, "--set", f"data.num_samples={HUGE}")),
    Case(("posterior", "two-moons", "--simulations", "1000000000000", "--out", "out")),
    # found by benchmarks/fuzz_cli.py: -o or --save-tensor under a file (FileExistsError, or the
    # picture written before the tensor failed), and a budget of --minutes inf (OverflowError)
    Case(("sample", "old", "-n", "2", "-o", "afile/s.png"), (("afile", b"x"),), (("old", "vae", "intact"),)),
    Case(
        ("sample", "old", "-n", "2", "--save-tensor", "afile/t.npy"),
        (("afile", b"x"),),
        (("old", "vae", "intact"),),
    ),
    # --save-tensor into a folder not made yet: the picture written, then np.save failed
    Case(("sample", "old", "-n", "2", "--save-tensor", "fresh/t.npy"), runs=(("old", "vae", "intact"),)),
    # two data sources of other shapes; a cyclegan on one source; translate on a model that cannot
    Case(("train", "vae", *TINY_TRAIN, "--data", "digits", "--data", "moons", "--out", "out")),
    Case(("train", "cyclegan", *TINY_TRAIN, "--data", "digits", "--out", "out")),
    Case(("translate", "old", "--examples", "2"), runs=(("old", "vae", "intact"),)),
    Case(("train", "vae", "--data", "moons", *TINY_TRAIN, "--minutes", "inf", "--out", "out")),
    Case(("train", "vae", "--data", "moons", *TINY_TRAIN, "--set", "train.lr=1", "--", "--x", "\x85y")),
    # --overwrite of the run in the working folder: the folder itself would be moved aside
    Case(
        ("train", "vae", "--data", "moons", *TINY_TRAIN, "--out", ".", "--overwrite"),
        runs=((".", "vae", "intact"),),
    ),
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> ch.Harness:
    return ch.Harness(tmp_path_factory.mktemp("fuzz"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(case=cs.cli_cases())
def test_the_cli_keeps_its_promises(harness: ch.Harness, case: Case) -> None:
    with ch.quiet_warnings():
        outcome = harness.run(case)
    problems = ch.check(outcome)
    assert not problems, ch.describe(outcome, problems)


for _case in reversed(REGRESSIONS):
    test_the_cli_keeps_its_promises = example(case=_case)(test_the_cli_keeps_its_promises)
