"""The ``simulacra`` command line.

Verbs, one module per job:

* ``train`` (:mod:`simulacra.cli.train`): fit a model, then picture and score the run;
* ``sample``, ``evaluate``, ``interpolate`` (:mod:`simulacra.cli.sample`): use a trained run;
* ``inpaint``, ``super-resolve``, ``denoise``, ``colorize`` (:mod:`simulacra.cli.inverse`):
  inverse problems solved with a trained diffusion model;
* ``impute`` (:mod:`simulacra.cli.impute`): fill the missing values of a table (MIWAE, or any
  model that completes partly observed examples);
* ``outliers`` (:mod:`simulacra.cli.outliers`): score examples as outliers (NLL, likelihood ratio,
  input complexity, typicality, energy) with AUROC, AUPR and FPR at 95% TPR;
* ``compare`` (:mod:`simulacra.cli.compare`): runs of any families on one table;
* ``compress``, ``decompress`` (:mod:`simulacra.cli.compress`): lossless coding with an
  autoregressive run (rANS), the exact data back;
* ``report`` (:mod:`simulacra.cli.report`): one self-contained HTML page of runs;
* ``features train`` (:mod:`simulacra.cli.features`): a feature network for the image metrics;
* ``translate`` (:mod:`simulacra.cli.translate`): images of one domain as the other (CycleGAN);
* ``posterior`` (:mod:`simulacra.cli.posterior`): neural posterior estimation on a simulator;
* ``models``, ``datasets``, ``metrics`` (:mod:`simulacra.cli.listing`): the registries; ``download``
  fetches a dataset that needs a network.

Strings (model, dataset, metric names) are resolved here, once, through the registries. Every
user error is a :class:`SimulacraError`, printed as one ``error: ...`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from simulacra.cli.common import integer, seed_arg
from simulacra.cli.compare import add_parser as add_compare_parser
from simulacra.cli.compare import cmd_compare
from simulacra.cli.compress import add_parsers as add_compress_parsers
from simulacra.cli.compress import cmd_compress, cmd_decompress
from simulacra.cli.features import add_parser as add_features_parser
from simulacra.cli.features import cmd_features
from simulacra.cli.impute import add_parser as add_impute_parser
from simulacra.cli.impute import cmd_impute
from simulacra.cli.inverse import VERBS as INVERSE_VERBS
from simulacra.cli.inverse import add_parsers as add_inverse_parsers
from simulacra.cli.inverse import cmd_inverse
from simulacra.cli.listing import cmd_datasets, cmd_download, cmd_metrics, cmd_models
from simulacra.cli.outliers import add_parser as add_outliers_parser
from simulacra.cli.outliers import cmd_outliers
from simulacra.cli.posterior import cmd_posterior
from simulacra.cli.report import add_parser as add_report_parser
from simulacra.cli.report import cmd_report
from simulacra.cli.sample import cmd_evaluate, cmd_interpolate, cmd_sample
from simulacra.cli.train import cmd_train
from simulacra.cli.translate import add_parser as add_translate_parser
from simulacra.cli.translate import cmd_translate
from simulacra.errors import CheckpointError, ConfigError, SimulacraError

__all__ = ["COMMANDS", "main"]

WEIGHTS_HELP = "the exponential moving average (default when the run kept one) or the raw weights"
RUN_HELP = "a run directory written by `simulacra train`"
DEVICE_HELP = "cpu (default), cuda, cuda:N or auto"
DATA_DIR_HELP = (
    "folder with downloaded data, if it moved since training (default: the run's, or $SIMULACRA_DATA)"
)


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes options only as spelled (``--step`` is not ``--steps``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="simulacra",
        description="Train, sample, score and compare deep generative models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train a model (or resume a run)")
    p.add_argument("model", nargs="?", help="a registered model (see `simulacra models`)")
    p.add_argument(
        "--data",
        action="append",
        help="dataset name (see `simulacra datasets`) or a path (.npz/.npy/.csv/folder); give it twice "
        "for two sources labelled by source (e.g. the two image sets of a cyclegan)",
    )
    p.add_argument("--data-dir", help="folder with downloaded data (default $SIMULACRA_DATA)")
    p.add_argument("--binarize", choices=["static", "dynamic"], help="binarize grey-level data")
    p.add_argument(
        "--perturb",
        type=float,
        metavar="MU",
        help="replace each entry of every training batch, with probability MU, by a uniform draw over "
        "the data's support: the background model of `simulacra outliers --background` (Ren et al. 2019)",
    )
    p.add_argument("--label-names", help="a text file naming the labels, one per line (label 0 first)")
    p.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="standardize every column by the training split's mean and std (default: on for real-valued "
        "tables from a file; likelihoods are then also given in the original units)",
    )
    p.add_argument("--epochs", type=float, help="training length in passes over the training split")
    p.add_argument("--steps", type=integer, help="training length in optimizer steps (wins over --epochs)")
    p.add_argument(
        "--minutes",
        type=float,
        help="training length by wall time: the optimizer steps that fit on this machine (measured), "
        "the learning-rate schedule planned to end within it",
    )
    p.add_argument("--batch-size", type=integer, help="examples per step over all processes (default 128)")
    p.add_argument("--lr", type=float, help="Adam's learning rate (default 1e-3)")
    p.add_argument(
        "--seed", type=seed_arg, help="seeds weights, batches and noise: a run is reproducible from it"
    )
    p.add_argument("--device", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--out", help="run directory (default runs/<model>-<data>)")
    p.add_argument("--config", help="a TOML or JSON file with [model], [data], [train] sections")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.latent_dim=32 --set train.lr=3e-4",
    )
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run exactly where it stopped")
    p.add_argument(
        "--init",
        metavar="RUN",
        help="start from a finished run: the first stage of a two-stage model (e.g. a vqvae run for "
        "vqvae-prior, a vae run for lsgm), whose weights it takes",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out if there is one")
    p.add_argument(
        "--eval-examples",
        type=integer,
        default=None,
        help="held-out examples scored after training (default: what fits a quarter of the training time, at most 1000)",
    )
    p.add_argument(
        "--eval-samples",
        type=integer,
        default=None,
        help="samples drawn for the MMD after training (default: what fits the time budget, at most 500)",
    )
    p.add_argument(
        "--eval-k",
        type=integer,
        default=None,
        help="importance samples k for the test NLL (default 200 for the VAE family)",
    )
    p.add_argument("--no-eval", action="store_true", help="no metrics or sample pictures after training")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write TensorBoard events to RUN/tensorboard (scalars, latent histograms, sample grids)",
    )

    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--weights", choices=["ema", "raw"], default=None, help=WEIGHTS_HELP)
    p.add_argument("-n", type=integer, default=64, help="number of samples")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="picture (.png, .jpg) or text (.txt) to write (default RUN/samples.png)",
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds the draw (default 0)")
    p.add_argument("--label", default=None, help="class label (index or name) for conditional models")
    p.add_argument("--save-tensor", default=None, help="also save the samples as .npy")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--sampler", default=None, help="diffusion: ancestral, ddim, pc, dpm-solver, ode, ...")
    p.add_argument(
        "--sampler-steps",
        type=integer,
        default=None,
        help="diffusion models: the sampler's grid points; energy-based models: MCMC steps",
    )
    p.add_argument(
        "--guidance", type=float, default=None, help="conditional diffusion: guidance scale (0 unconditional)"
    )
    p.add_argument(
        "--step-size", type=float, default=None, help="energy-based models: the MCMC kernel's step size"
    )
    p.add_argument(
        "--chain-init",
        choices=["noise", "buffer"],
        default=None,
        help="energy-based models: start the chains at uniform noise or at the persistent chains",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="autoregressive models: draw from p^(1/T) per entry; flows: the Gaussian base at temperature T; "
        "hierarchical VAEs (lvae, hvae): every latent group at temperature T",
    )
    p.add_argument(
        "--top-k", type=integer, default=None, help="autoregressive models: keep the k likeliest values"
    )
    p.add_argument(
        "--rejection",
        action="store_const",
        const=True,
        default=None,
        help="GANs (minimax, non-saturating, least-squares): keep each sample with probability exp(w − M), w "
        "the discriminator's log p_data/p_g (discriminator rejection sampling, Azadi et al. 2019)",
    )

    p = sub.add_parser("evaluate", help="score a trained run on held-out data")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--weights", choices=["ema", "raw"], default=None, help=WEIGHTS_HELP)
    p.add_argument(
        "--metric",
        action="append",
        help="a registered metric, repeatable (default nll; `simulacra metrics` lists them: nll, mmd, fid, ...)",
    )
    p.add_argument("--k", type=integer, default=1000, help="importance samples per example (VAE family)")
    p.add_argument(
        "--samples",
        type=integer,
        default=500,
        help="samples drawn for mmd and fid (at most the split's size)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="fid, kid, prdc, classes: a feature network saved by simulacra (.safetensors; default "
        "for 1x28x28 grey images: the shipped MNIST classifier)",
    )
    p.add_argument(
        "--split", choices=["test", "valid", "train"], default="test", help="held-out split (default test)"
    )
    p.add_argument("--limit", type=integer, default=None, help="score only the first N examples")
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="seeds importance samples and samples (default 0)"
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)

    p = sub.add_parser("interpolate", help="decode paths between encodings of held-out examples")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--weights", choices=["ema", "raw"], default=None, help=WEIGHTS_HELP)
    p.add_argument("-o", "--output", default=None, help="PNG to write (default RUN/interpolation.png)")
    p.add_argument(
        "--method",
        choices=["linear", "spherical"],
        default=None,
        help="path between the codes (default: linear between encodings, spherical between a GAN's codes)",
    )
    p.add_argument("--points", type=integer, default=10, help="decoded points along each path, ends included")
    p.add_argument("--pairs", type=integer, default=8, help="pairs of held-out examples, one row each")
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds the choice of pairs (default 0)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)

    add_inverse_parsers(sub)  # inpaint, super-resolve, denoise, colorize
    add_impute_parser(sub)
    add_outliers_parser(sub)
    add_translate_parser(sub)
    add_compare_parser(sub)
    add_compress_parsers(sub)  # compress, decompress
    add_report_parser(sub)
    add_features_parser(sub)

    p = sub.add_parser(
        "posterior", help="neural posterior estimation on a simulator, with calibration checks"
    )
    p.add_argument("simulator", help="a registered simulator: gaussian-linear, two-moons")
    p.add_argument(
        "--flow", default="nsf", help="conditional flow: nsf (default), nsf-coupling, maf or realnvp"
    )
    p.add_argument("--simulations", type=integer, default=10000, help="training pairs (θ, x) to simulate")
    p.add_argument(
        "--steps",
        type=integer,
        default=3000,
        help="maximum optimizer steps (early stopping on 10%% held out)",
    )
    p.add_argument("--batch-size", type=integer, default=256, help="simulations per step (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--transforms", type=integer, default=5, help="flow layers")
    p.add_argument("--hidden", default="64,64", help="hidden widths of each layer's network, e.g. 64,64")
    p.add_argument("--observation", default=None, help="x_o as 'x1,x2,...' (default: the task's own)")
    p.add_argument("--samples", type=integer, default=10000, help="posterior draws for the plot and metrics")
    p.add_argument("--sbc-trials", type=integer, default=200, help="calibration trials (θ*, x) ~ p(θ, x)")
    p.add_argument("--sbc-samples", type=integer, default=100, help="posterior draws per calibration trial")
    p.add_argument(
        "--seed", type=seed_arg, default=0, help="seeds simulations, training and draws (default 0)"
    )
    p.add_argument("--out", default=None, help="output folder (default runs/posterior-<simulator>)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out if there is one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("download", help="fetch mnist or binarized-mnist (checksummed) into a data folder")
    p.add_argument("dataset", help="mnist or binarized-mnist")
    p.add_argument(
        "--to",
        default=None,
        help="the folder (default $SIMULACRA_DATA or ~/.simulacra/data, where training looks)",
    )
    p.add_argument(
        "--mirror", action="append", default=None, help="a base URL to fetch from first (repeatable)"
    )
    p.add_argument("--no-progress", action="store_true", help="no byte counts on stderr")

    p = sub.add_parser("models", help="list the registered models (NAME or --details: their settings)")
    p.add_argument("name", nargs="?", default=None, help="a model whose settings and defaults to show")
    p.add_argument("--details", action="store_true", help="every model's settings and defaults")
    sub.add_parser("datasets", help="list the registered datasets")
    sub.add_parser("metrics", help="list the registered metrics and what each needs")
    for command in sub.choices.values():  # every command runs torch on as many threads as asked
        command.add_argument(
            "--threads", type=integer, default=None, help="torch intra-op threads (default: torch's choice)"
        )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "sample": cmd_sample,
    "evaluate": cmd_evaluate,
    "interpolate": cmd_interpolate,
    **dict.fromkeys(INVERSE_VERBS, cmd_inverse),
    "impute": cmd_impute,
    "outliers": cmd_outliers,
    "translate": cmd_translate,
    "compare": cmd_compare,
    "compress": cmd_compress,
    "decompress": cmd_decompress,
    "report": cmd_report,
    "features": cmd_features,
    "models": cmd_models,
    "datasets": cmd_datasets,
    "metrics": cmd_metrics,
    "download": cmd_download,
    "posterior": cmd_posterior,
}


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1; found {threads}")
    import torch

    torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``simulacra`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        _set_threads(args.threads)
        return COMMANDS[args.command](args)
    except SimulacraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as err:  # a path the user gave that a lower layer did not check
        print(f"error: {CheckpointError.__name__}: no such file: {err.filename}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:  # RuntimeError: torch's allocators
        if not _out_of_memory(err):
            raise
        print(f"error: {_out_of_memory(err)}", file=sys.stderr)
        return 2


def _out_of_memory(err: BaseException) -> str | None:
    """What to tell the user when ``err`` is an allocation that failed (None when it is not one):
    sizes they asked for (samples, simulations, a model, a batch) that do not fit in memory."""
    text = str(err)
    if not (isinstance(err, MemoryError) or "can't allocate memory" in text or "out of memory" in text):
        return None
    asked = re.search(r"allocate (\d+) bytes", text)
    size = f" (tried to allocate {int(asked[1]) / 2**30:,.1f} GiB)" if asked else ""
    return f"out of memory{size}; ask for less: fewer samples or examples, a smaller model or batch"
