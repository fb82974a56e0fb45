"""``simulacra train``: configure, fit, then picture and score the finished run."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulacra.cli.common import DEFAULT_RUN_ROOT, _at_least, _console, _print_metrics, _recover
from simulacra.errors import ConfigError

if TYPE_CHECKING:
    from simulacra.config import RunConfig
    from simulacra.data.info import DataInfo, Dataset
    from simulacra.models.base import GenerativeModel
    from simulacra.train.loop import FitResult


def _train_raw_config(args: argparse.Namespace) -> dict[str, Any]:
    """Merge config file, flags and --set overrides (in that order of precedence, last wins)."""
    from simulacra.config import apply_overrides, load_config

    raw: dict[str, Any] = load_config(args.config) if args.config else {}
    raw = {k: dict(v) for k, v in raw.items()}
    if args.model:
        raw.setdefault("model", {})["name"] = args.model
    if "name" not in raw.get("model", {}):
        raise ConfigError(
            "which model? give one, e.g. `simulacra train vae --data digits` (see `simulacra models`)"
        )
    data = raw.setdefault("data", {})
    train = raw.setdefault("train", {})
    for key, value in (
        ("name", None if not args.data else args.data[0] if len(args.data) == 1 else list(args.data)),
        ("data_dir", args.data_dir),
        ("binarize", args.binarize),
        ("perturb", args.perturb),
        ("label_names", args.label_names),
        ("standardize", args.standardize),
    ):
        if value is not None:
            data[key] = value
    if args.steps is not None:
        train["steps"] = args.steps
    if args.epochs is not None:
        train["epochs"] = args.epochs
        if args.steps is None:
            train.pop("steps", None)
    for key in ("batch_size", "lr", "seed", "device"):
        value = getattr(args, key)
        if value is not None:
            train[key] = value
    if args.threads is not None:
        train["num_threads"] = args.threads
    if args.tensorboard:
        train["tensorboard"] = True
    return apply_overrides(raw, args.overrides)


def _missing_data(config: RunConfig) -> None:
    """Load the data with NaN as missing values for presets trained on incomplete data (miwae),
    unless the config says otherwise; refuse ``data.missing = "allow"`` for any other model."""
    from simulacra.models.zoo import MISSING_DATA_PRESETS

    model = config.model.get("name") if isinstance(config.model, dict) else None
    if isinstance(model, str) and model in MISSING_DATA_PRESETS:
        if config.data.missing is None:
            config.data.missing = "allow"
    elif config.data.missing == "allow":
        names = ", ".join(sorted(MISSING_DATA_PRESETS))
        raise ConfigError(
            f"data.missing='allow': {model} needs complete data; models trained on data with "
            f"missing entries: {names}"
        )


def _default_out(config: RunConfig) -> Path:
    from simulacra.data.sources import source_name

    names = config.data.name if isinstance(config.data.name, list | tuple) else [config.data.name]
    data = "+".join(source_name(str(n)) for n in names)
    return DEFAULT_RUN_ROOT / f"{config.model['name']}-{data}"


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from simulacra.config import RunConfig
    from simulacra.data import load_dataset
    from simulacra.models.zoo import MODELS, build_model, recorded_spec
    from simulacra.train import fit
    from simulacra.train.callbacks import build_callbacks
    from simulacra.train.checkpoint import load_run_config
    from simulacra.train.distributed import barrier, cleanup, init_from_env
    from simulacra.train.interrupts import EXIT_STATUS, GracefulInterrupt
    from simulacra.train.rundir import RunReplacement
    from simulacra.viz.grids import save_examples

    _at_least(args.eval_examples, 1, "--eval-examples")
    _at_least(args.eval_samples, 2, "--eval-samples")
    _at_least(args.eval_k, 1, "--eval-k")
    if args.resume:
        run_dir = Path(args.resume)
        _recover(run_dir)
        raw = load_run_config(run_dir)["run"]
        if args.overrides or args.model or args.config or args.init:
            raise ConfigError(
                "--resume continues a run as it was configured; drop MODEL, --config, --set and --init"
            )
        config = RunConfig.from_dict(raw)
        config.model = recorded_spec(config.model)  # the network it trained, whatever today's defaults
        given: set[str] | None = None  # the run's settings are complete: no model defaults
    else:
        raw = _train_raw_config(args)
        config = RunConfig.from_dict(raw)
        _missing_data(config)
        given = set(raw.get("train") or {})  # the training settings the user chose
        run_dir = Path(args.out) if args.out else _default_out(config)
        _recover(run_dir)
    new_length = args.resume and (
        args.steps is not None or args.epochs is not None or args.minutes is not None
    )
    if args.resume:
        if args.threads is not None:  # a machine's threads, not the run's settings
            config.train.num_threads = args.threads
        if args.steps is not None:
            config.train.steps, config.train.epochs = args.steps, None
        elif args.epochs is not None:
            config.train.steps, config.train.epochs = None, args.epochs
    if args.minutes is not None and not 0 < args.minutes < float("inf"):
        raise ConfigError(f"--minutes must be a positive number of minutes; found {args.minutes}")

    dist = init_from_env(config.train.device)  # resolved per rank (cuda -> cuda:LOCAL_RANK)
    try:
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        # everything is checked before an old run is touched: data, config, model, the folder
        MODELS.get(MODELS.split(config.model)[0])  # a misspelt model fails before the data are read
        data = load_dataset(config.data, seed=config.train.seed)
        first_stage = None if args.resume else _first_stage(config, args.init, data.info)
        torch.manual_seed(config.train.seed)
        # on a GPU, images get the presets' bigger networks; the spec records what was chosen, so
        # the run (and its --resume) rebuilds the same network on any device
        model = build_model(config.model, data.info, accelerator=dist.device.type == "cuda")
        config.model = dict(model.spec)  # on --resume, fit restores the saved state
        if first_stage is not None:
            model.initialize_from(first_stage)
        elif model.starts_from is not None and not args.resume:
            raise ConfigError(
                f"{config.model['name']} is trained on top of {model.starts_from}: give it with --init RUN"
            )
        adopted = {} if given is None else {k: v for k, v in model.train_defaults().items() if k not in given}
        if adopted:  # e.g. a GAN's learning rate, betas, EMA and no early stopping; recorded in the run
            config.train = config.train.with_model_defaults(adopted, given)
        schedules = build_callbacks(config.callbacks)  # e.g. KL warm-up
        model.check_training(min(config.train.batch_size, len(data.train)) // max(dist.world_size, 1))
        if dist.is_main:
            _check_out(run_dir, model, config, args)
        console = _console()
        if dist.is_main:
            _announce_data(console, data)
            if adopted:
                settings = ", ".join(f"{k}={v!r}" for k, v in adopted.items())
                console.print(
                    f"{config.model['name']}'s training defaults: {settings} (yours win: --lr, "
                    "--set train.KEY=VALUE)",
                    highlight=False,
                )
        if args.minutes is not None:
            schedules.append(_plan_minutes(model, data, config, args, run_dir))
        if new_length and dist.is_main:
            _announce_new_length(run_dir, model, data, config)
        if dist.is_main:
            n_params = sum(p.numel() for p in model.parameters())
            console.print(
                f"[bold]{config.model['name']}[/] on [bold]{data.name}[/] "
                f"({len(data.train)} train examples of shape {tuple(data.info.event_shape)}, "
                f"{n_params:,} parameters) -> {run_dir}"
            )
        # --overwrite: the old run moves aside and is deleted at the new run's first checkpoint,
        # or put back if training fails before it; Ctrl-C / SIGTERM end with a checkpoint
        replacing = RunReplacement(run_dir, enabled=args.overwrite and not args.resume and dist.is_main)
        with GracefulInterrupt() as interrupt, replacing as old:
            barrier()
            result = fit(
                model,
                data,
                config.train,
                run_dir=run_dir,
                run_config=config.to_dict(),
                callbacks=[*schedules, old, interrupt],
                resume=bool(args.resume),
                new_length=bool(new_length),
                progress=not args.no_progress,
                sample_writer=lambda x, path: save_examples(x, data.info, path),
            )
        if result.already_finished:
            if dist.is_main:
                console.print(
                    f"{run_dir} is finished (step {result.steps}); nothing to do. Sample or evaluate it: "
                    f"`simulacra sample {run_dir}`, `simulacra evaluate {run_dir}`"
                )
            return 0
        if result.interrupted is not None:
            if dist.is_main:
                name = signal.Signals(result.interrupted).name
                print(
                    f"interrupted by {name} at step {result.steps}: a checkpoint and the current weights "
                    f"are in {run_dir}; continue with `simulacra train --resume {run_dir}`",
                    file=sys.stderr,
                )
            return EXIT_STATUS.get(result.interrupted, 128 + result.interrupted)
        if dist.is_main:
            _after_training(model, data, run_dir, config, result, args, console)
    finally:
        cleanup()
    return 0


def _first_stage(config: RunConfig, init: str | None, info: DataInfo) -> GenerativeModel | None:
    """The model of the finished run ``init`` (``--init RUN``), checked against the data, with its
    recorded spec put into the new model's ``stage_one`` setting (so that the new run rebuilds the
    same first stage without the old run) and the old run's path into ``config.init``; None
    without ``--init``.

    Raises:
        ConfigError: the preset trains from scratch, or ``model.stage_one`` is set by hand too, or
            the run was trained on data of another shape or support.
        CheckpointError: the run is missing or corrupt.
    """
    from simulacra.models.zoo import MODELS
    from simulacra.train.checkpoint import load_model

    if init is None:
        return None
    name = config.model["name"]
    if name not in MODELS or "stage_one" not in MODELS.settings(name, skip=("info",)):
        MODELS.get(name)  # an unknown name: the registry's message lists close ones
        raise ConfigError(f"{name} trains from scratch; it does not start from another run (drop --init)")
    if "stage_one" in config.model:
        raise ConfigError("give the first stage either with --init RUN or with model.stage_one, not both")
    _recover(Path(init))
    trained = load_model(init, device="cpu", ema=True)
    if tuple(trained.info.event_shape) != tuple(info.event_shape) or trained.info.support != info.support:
        raise ConfigError(
            f"--init {init}: that run was trained on data of shape {tuple(trained.info.event_shape)} "
            f"({trained.info.support}); these data have shape {tuple(info.event_shape)} ({info.support})"
        )
    config.model = {**config.model, "stage_one": dict(trained.spec or {"name": trained.preset_name})}
    config.init = str(init)
    return trained


def _check_out(run_dir: Path, model: GenerativeModel, config: RunConfig, args: argparse.Namespace) -> None:
    """The run folder can take this run: replaceable (--overwrite), writable, room for checkpoints."""
    from simulacra.train.rundir import check_replaceable, check_writable, checkpoint_bytes

    if not args.resume:
        check_replaceable(run_dir, overwrite=args.overwrite)
    per_checkpoint = checkpoint_bytes(
        model, ema=config.train.ema_decay is not None, keep_best=config.train.keeps_best
    )
    check_writable(run_dir, needed_bytes=3 * per_checkpoint)  # two checkpoints + final weights


def _announce_data(console: Any, data: Dataset) -> None:
    """What the user should know of the data before training: standardization, absent labels."""
    info = data.info
    if info.standardization is not None:
        console.print(
            "standardized: each column by the training split's mean and std; figures are for the "
            f"standardized data, and nll_original adds Σ log s = {info.log_scale:.4g} nats for the original units"
        )
    if info.absent_labels:
        absent = info.absent_labels
        listed = ", ".join(map(str, absent[:-1])) + (" and " if len(absent) > 1 else "") + str(absent[-1])
        plural = len(absent) > 1
        console.print(
            f"warning: label{'s' if plural else ''} {listed} never occur{'' if plural else 's'} in the training "
            "data: the model cannot learn them, and `sample --label` refuses them"
        )


def _plan_minutes(
    model: GenerativeModel, data: Dataset, config: RunConfig, args: argparse.Namespace, run_dir: Path
) -> Any:
    """Set ``config.train.steps`` to what fits ``--minutes`` on this machine (a quarter of it kept
    for the evaluation after training, unless --no-eval; on --resume, the steps still to go are
    added to the checkpoint's) and return the TimeBudget that stops training if it runs late."""
    from simulacra.train import TimeBudget
    from simulacra.train.budget import steps_for_minutes
    from simulacra.train.checkpoint import latest_checkpoint, load_trainer_state

    training = args.minutes if args.no_eval else args.minutes / 1.25
    steps, calibration, interval = steps_for_minutes(model, data, config.train, training)
    done = 0
    if args.resume and latest_checkpoint(run_dir) is not None:
        done = load_trainer_state(run_dir).step
    config.train.steps, config.train.epochs = done + steps, None
    fewer = ""
    if interval is not None:
        config.train.eval_every = interval
        fewer = (
            f"; a validation pass takes {calibration.eval_seconds:.3g} s, so one every {interval} steps, "
            f"about {max(1, steps // interval)} in all"
        )
    _console().print(
        f"time budget: {args.minutes:g} min; {calibration.step_seconds:.3g} s per step on this machine, so "
        f"{steps} steps of training" + (f" after the {done} done" if done else "") + " (stopped anyway after "
        f"{training:.3g} min){fewer}"
    )
    return TimeBudget(60 * training)


def _announce_new_length(run_dir: Path, model: GenerativeModel, data: Dataset, config: RunConfig) -> None:
    """Say what a new length changes for a resumed run, and store it in its config.json."""
    from simulacra.train.batches import plan_steps
    from simulacra.train.checkpoint import load_trainer_state, save_run_config

    state = load_trainer_state(run_dir).trainer_state
    before, step = int(state["total_steps"]), int(state["step"])
    after = plan_steps(
        len(data.train), config.train.batch_size, steps=config.train.steps, epochs=config.train.epochs
    ).total_steps
    if after == before:
        return
    verb = "extended" if after > before else "shortened"
    schedule = config.train.lr_schedule
    then = (
        f"the {schedule} learning-rate schedule is re-planned to end at step {after}"
        if schedule != "constant" or config.train.warmup_steps
        else "the learning rate stays constant"
    )
    end = f"; it ends at once (step {step} ≥ {after})" if after <= step else ""
    _console().print(
        f"resuming at step {step}: the run is {verb} from {before} to {after} steps; {then}{end}"
    )
    save_run_config(run_dir, model, config.to_dict())


def _after_training(
    model: GenerativeModel,
    data: Dataset,
    run_dir: Path,
    config: RunConfig,
    result: FitResult,
    args: argparse.Namespace,
    console: Any,
) -> None:
    """Pictures and held-out metrics of a finished run (rank 0 only), from the weights on disk that
    ``simulacra sample`` and ``evaluate`` use too (the average when the run kept an EMA)."""
    from simulacra.report import held_out_split, plan_evaluation, write_run_report
    from simulacra.train.checkpoint import load_model, locate_weights

    console.print(result.summary())
    weights = locate_weights(run_dir)
    model = load_model(run_dir, device=model.device)
    plan = None
    if not args.no_eval:
        plan = plan_evaluation(
            model,
            held_out_split(data),
            train_seconds=result.wall_time,
            examples=args.eval_examples,
            samples=args.eval_samples,
            num_samples=args.eval_k,
        )
        within = f"within about {plan.budget_seconds:.0f} s" if plan.budget_seconds else "no time limit"
        console.print(
            f"evaluation ({within}, {weights.kind} weights; full figures: `simulacra evaluate {run_dir}`)"
        )
    record, pictures = write_run_report(
        model,
        data,
        run_dir,
        result,
        model_name=config.model["name"],
        plan=plan,
        evaluate_model=not args.no_eval,
        seed=config.train.seed,
        weights=weights.kind,
        say=console.print,
        progress=not args.no_progress,
    )
    if record["test"]:
        counts = record["evaluation"]
        title = f"held-out metrics ({counts['examples']} examples, {counts['samples']} samples, {weights.kind} weights)"
        _print_metrics(console, record["test"], title=title)
    console.print(f"wrote {run_dir}/: model.safetensors, metrics.json, " + ", ".join(pictures))
