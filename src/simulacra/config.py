"""Run configuration: dataclasses, TOML/JSON files, dotted overrides.

A run is described by three parts:

* ``model``: a flat spec ``{"name": "vae", "latent_dim": 16, ...}`` resolved through the model
  registry (``name`` picks the preset, every other key is a keyword argument of the preset);
* ``data``: :class:`~simulacra.data.DataConfig` (defined beside the loader, re-exported here);
* ``train``: :class:`TrainConfig`, the generic loop settings (per-group optimizer overrides in
  ``train.groups``);
* ``callbacks``: ``{"kl-warmup": {"steps": 1000}, ...}``, the family-specific schedules, resolved
  by name through :data:`simulacra.train.callbacks.CALLBACKS`.

Overrides are ``"section.key=value"`` strings (``"model.latent_dim=32"``, ``"train.lr=3e-4"``);
values are parsed as JSON where possible (numbers, booleans, lists, null), else kept as strings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from simulacra.data.datasets import DataConfig
from simulacra.errors import ConfigError, is_seed

__all__ = [
    "DataConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_value",
    "to_jsonable",
]


PRECISIONS = ("fp32", "bf16")
"""The values of ``train.precision`` (:mod:`simulacra.train.precision`)."""


@dataclass
class TrainConfig:
    """Settings of :func:`simulacra.train.fit`. Steps count optimizer steps of the first group.

    Attributes:
        steps / epochs: training length; ``steps`` wins when both are given.
        batch_size: global batch size (split across ranks under torchrun).
        lr, weight_decay, betas: Adam(W) settings of every optimizer group, unless the model
            declares its own for a group (``GenerativeModel.optimizer_settings``) or ``groups``
            overrides them.
        lr_schedule: ``constant``, ``cosine`` or ``linear`` decay, after ``warmup_steps`` of
            linear warm-up.
        grad_clip: clip the global gradient norm of each group to this value (``None``: no clipping).
        groups: per-group overrides, ``{group: {field: value}}`` with the fields of
            :class:`simulacra.models.base.GroupSettings` (``lr``, ``lr_scale``, ``betas``,
            ``weight_decay``, ``grad_clip``, ``updates``, ``fresh_batch``), e.g.
            ``{"discriminator": {"updates": 5, "lr": 4e-4}}``.
        ema_decay: keep an exponential moving average of the weights (``None``: off).
        eval_every: compute the model's validation score every N steps (0: never; None: about
            20 times per run when the data have a validation split, so that a small data set
            does not silently overfit).
        patience: stop after this many evaluations without improvement (``None``: never).
        keep_best: at the end, restore the weights with the best validation score (``None``:
            whenever the run evaluates).
        sample_every: save a sample grid every N steps (0: never).
        checkpoint_every: write a resumable checkpoint every N steps (0: only at the end; None:
            by time, see ``checkpoint_minutes``). A checkpoint is always written at the end.
        checkpoint_minutes: with ``checkpoint_every`` None, a checkpoint once this many minutes
            have passed since the last one, and never sooner than 50 times the last one's cost
            (so that checkpoints take under 2% of the training time).
        log_every: append a line to ``metrics.jsonl`` every N steps.
        tensorboard: also write TensorBoard events to ``run_dir/tensorboard``: the logged
            scalars, histograms of latent codes, and sample grids every ``sample_every`` steps
            (needs the ``tensorboard`` extra).
        seed: seeds parameters, batches and noise; a run is reproducible from it.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (cuda when present).
        num_threads: torch intra-op threads (``None``: leave torch's default).
        precision: ``fp32``, or ``bf16``: each training step's forward pass under bf16 autocast
            with float32 master weights (evaluation and reported likelihoods stay float32); on a
            device without bf16 matrix instructions the run stays fp32 and warns
            (:mod:`simulacra.train.precision`).
        compile: pass the training forward pass through ``torch.compile`` (``true``: the
            inductor backend; or a backend's name); the first steps pay the compilation.
    """

    steps: int | None = None
    epochs: float | None = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    ema_decay: float | None = None
    eval_every: int | None = None
    patience: int | None = 10
    keep_best: bool | None = None
    sample_every: int = 0
    checkpoint_every: int | None = None
    checkpoint_minutes: float = 2.0
    log_every: int = 50
    tensorboard: bool = False
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None
    precision: str = "fp32"
    compile: bool | str = False

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def for_model(cls, model: Any, **settings: Any) -> TrainConfig:
        """The settings ``settings`` on top of ``model.train_defaults()`` (a GAN's learning rate,
        betas and EMA, ...) on top of the defaults here: what ``simulacra train`` uses."""
        return cls(**{**model.train_defaults(), **settings})

    def with_model_defaults(self, defaults: Mapping[str, Any], given: Collection[str]) -> TrainConfig:
        """A copy taking ``defaults`` (a model's :meth:`train_defaults`) for every field not in
        ``given`` (the fields the user set); checked like any setting."""
        unknown = sorted(set(defaults) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"a model declares unknown training defaults {unknown}")
        values = {k: tuple(v) if k == "betas" else v for k, v in defaults.items() if k not in given}
        return replace(self, **values)

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first setting of the wrong type or out of range
        (``train.lr must be a finite number >= 0; found 'abc'``)."""
        _number(self.lr, "train.lr", minimum=0.0)
        _number(self.weight_decay, "train.weight_decay", minimum=0.0)
        betas = self.betas
        if (
            not isinstance(betas, list | tuple)
            or len(betas) != 2
            or not all(_is_number(b) and 0 <= b < 1 for b in betas)
        ):
            raise ConfigError(f"train.betas must be two numbers in [0, 1); found {betas!r}")
        _integer(self.steps, "train.steps", minimum=1, optional=True)
        _number(self.epochs, "train.epochs", minimum=0.0, optional=True, exclusive=True)
        _integer(self.batch_size, "train.batch_size", minimum=1)
        if not isinstance(self.lr_schedule, str):
            raise ConfigError(f"train.lr_schedule must be a name; found {self.lr_schedule!r}")
        _integer(self.warmup_steps, "train.warmup_steps", minimum=0)
        _number(self.grad_clip, "train.grad_clip", minimum=0.0, optional=True, exclusive=True)
        if not isinstance(self.groups, dict):
            raise ConfigError(f"train.groups must map group names to settings; found {self.groups!r}")
        if self.ema_decay is not None and not (_is_number(self.ema_decay) and 0 <= self.ema_decay < 1):
            raise ConfigError(f"train.ema_decay must be a number in [0, 1) or none; found {self.ema_decay!r}")
        _integer(self.eval_every, "train.eval_every", minimum=0, optional=True)
        _integer(self.patience, "train.patience", minimum=1, optional=True)
        if self.keep_best is not None and not isinstance(self.keep_best, bool):
            raise ConfigError(f"train.keep_best must be true, false or none; found {self.keep_best!r}")
        _integer(self.sample_every, "train.sample_every", minimum=0)
        _integer(self.checkpoint_every, "train.checkpoint_every", minimum=0, optional=True)
        _number(self.checkpoint_minutes, "train.checkpoint_minutes", minimum=0.0)
        _integer(self.log_every, "train.log_every", minimum=1)
        if not isinstance(self.tensorboard, bool):
            raise ConfigError(f"train.tensorboard must be true or false; found {self.tensorboard!r}")
        if not is_seed(self.seed):
            raise ConfigError(f"train.seed must be an integer in [0, 2^63); found {self.seed!r}")
        if not isinstance(self.device, str):
            raise ConfigError(f"train.device must be a name such as cpu, cuda or auto; found {self.device!r}")
        _integer(self.num_threads, "train.num_threads", minimum=1, optional=True)
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"train.precision must be one of {', '.join(PRECISIONS)}; found {self.precision!r}"
            )
        if not isinstance(self.compile, bool) and not (isinstance(self.compile, str) and self.compile):
            raise ConfigError(
                f"train.compile must be true, false or a torch.compile backend name; found {self.compile!r}"
            )

    @property
    def keeps_best(self) -> bool:
        """Whether the best weights on validation are kept and restored at the end."""
        return True if self.keep_best is None else bool(self.keep_best)

    def evaluation_interval(self, total_steps: int, has_validation: bool) -> int:
        """Steps between validation scores: ``eval_every``, or with None about 20 evaluations per
        run when there is a validation split; 0 when the run does not evaluate."""
        if not has_validation:
            return 0
        if self.eval_every is None:
            return max(1, round(total_steps / 20))
        return self.eval_every


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(
    value: Any, name: str, *, minimum: float, optional: bool = False, exclusive: bool = False
) -> None:
    if value is None and optional:
        return
    if not _is_number(value) or value < minimum or (exclusive and value == minimum):
        bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
        none = " or none" if optional else ""
        raise ConfigError(f"{name} must be a finite number {bound}{none}; found {value!r}")


def _integer(value: Any, name: str, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = " or none" if optional else ""
        raise ConfigError(f"{name} must be an integer >= {minimum}{none}; found {value!r}")


@dataclass
class RunConfig:
    """Everything needed to rebuild and re-run a training run."""

    model: dict[str, Any] = field(default_factory=lambda: {"name": "vae"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    init: str | None = None
    """The finished run a two-stage model started from (``simulacra train --init RUN``), for the
    record; its first stage's spec is in ``model["stage_one"]`` and its weights in the checkpoint."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunConfig:
        """Build from a dict, rejecting unknown sections and keys with a clear message."""
        unknown = set(raw) - {"model", "data", "train", "callbacks", "init"}
        if unknown:
            raise ConfigError(
                f"unknown config section(s) {sorted(unknown)}; expected model, data, train, callbacks"
            )
        init = raw.get("init")
        if init is not None and not isinstance(init, str):
            raise ConfigError(f"init names the run a model started from (a path); found {init!r}")
        for section in ("model", "data", "train"):
            if not isinstance(raw.get(section, {}), Mapping):
                raise ConfigError(
                    f"the [{section}] section must be a table of settings (e.g. {section}.KEY=VALUE); "
                    f"found {raw[section]!r}"
                )
        model = dict(raw.get("model", {"name": "vae"}))
        if "name" not in model:
            raise ConfigError("the [model] section needs a 'name' (see `simulacra models`)")
        train = dict(raw.get("train", {}))
        callbacks = raw.get("callbacks", {})
        if not isinstance(callbacks, Mapping) or not all(isinstance(v, Mapping) for v in callbacks.values()):
            raise ConfigError(
                "the [callbacks] section maps callback names to their settings, e.g. "
                "callbacks.kl-warmup.steps=1000"
            )
        callbacks = {name: dict(settings) for name, settings in callbacks.items()}
        _upgrade_legacy_train(train, callbacks)
        return cls(
            model=model,
            data=_dataclass_from(DataConfig, raw.get("data", {}), "data"),
            train=_dataclass_from(TrainConfig, train, "train"),
            callbacks=callbacks,
            init=init,
        )


def _upgrade_legacy_train(train: dict[str, Any], callbacks: dict[str, dict[str, Any]]) -> None:
    """Read run configs written before per-group settings and callback sections existed (their
    checkpoints must still resume): ``train.updates_per_step = {g: n}`` becomes
    ``train.groups.g.updates = n``, and ``train.kl_warmup_steps = n`` the ``kl-warmup`` callback."""
    updates = train.pop("updates_per_step", None) or {}
    if not isinstance(updates, Mapping):
        raise ConfigError(f"train.updates_per_step must map groups to counts; found {updates!r}")
    if updates:
        groups = dict(train.get("groups") or {})
        for group, n in updates.items():
            settings = groups.get(group, {})
            if isinstance(settings, Mapping):
                groups[group] = {"updates": n, **settings}
        train["groups"] = groups
    warmup = train.pop("kl_warmup_steps", None)
    if warmup:
        callbacks.setdefault("kl-warmup", {"steps": warmup})


def _dataclass_from(cls: type, raw: Mapping[str, Any], section: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(unknown)} in [{section}]; valid keys: {', '.join(sorted(names))}"
        )
    values = dict(raw)
    if isinstance(values.get("betas"), list):  # JSON and TOML have no tuples; check() refuses the rest
        values["betas"] = tuple(values["betas"])
    return cls(**values)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON (``.json``) config file into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot parse {str(path)!r}: {err}") from None
    raise ConfigError(f"config file {str(path)!r} must end in .toml or .json")


def parse_value(text: str) -> Any:
    """``"32"`` -> 32, ``"3e-4"`` -> 0.0003, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2], ``"none"`` ->
    None; anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in {"none", "null"}:
        return None
    if lowered in {"true", "false"}:
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a deep copy of ``raw`` with each ``"a.b.c=value"`` applied.

    Raises:
        ConfigError: an override without ``=`` or with an empty key.
    """
    result = json.loads(json.dumps(raw, default=to_jsonable))
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not sep or not parts:
            raise ConfigError(
                f"override {item!r} is not of the form section.key=value (e.g. model.latent_dim=32)"
            )
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(value)
    return result


def to_jsonable(obj: Any) -> Any:
    """``json.dumps(..., default=to_jsonable)``: dataclasses become dicts, tuples and sets lists,
    paths strings; anything else raises ``TypeError`` naming its type (the ``default`` protocol).

    The one conversion used for config files and run directories' ``config.json``.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, tuple | set):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")
