"""Registry and configuration: names resolved once, settings checked with clear messages."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from simulacra.config import DataConfig, RunConfig, TrainConfig, apply_overrides, load_config, parse_value
from simulacra.errors import ConfigError, UnknownNameError
from simulacra.registry import Registry


def _registry() -> Registry[Any]:
    reg: Registry[Any] = Registry("widget")

    @reg.register("square", "x squared")
    def square(x: float, scale: float = 1.0) -> float:
        return scale * x * x

    @reg.register("cube")
    def cube(x: float) -> float:
        """x cubed.

        More text that is not the description."""
        return x**3

    @reg.register("forward")
    def forward(x: float, **kwargs: Any) -> float:
        return square(x, **kwargs)

    return reg


def test_register_get_build_describe() -> None:
    reg = _registry()
    assert reg.names() == ["cube", "forward", "square"] and len(reg) == 3 and "cube" in reg
    assert reg.describe() == {"cube": "x cubed.", "forward": "", "square": "x squared"}
    assert reg.build("cube", x=2.0) == 8.0
    assert reg.build({"name": "square", "scale": 3.0}, x=2.0) == 12.0
    with pytest.raises(ValueError, match="twice"):
        reg.register("cube")(lambda x: x)


def test_unknown_names_list_close_matches_and_valid_names() -> None:
    reg = _registry()
    with pytest.raises(UnknownNameError) as err:
        reg.get("squar")
    message = str(err.value)
    assert "unknown widget 'squar'" in message and "Did you mean 'square'" in message
    assert "Valid widgets: cube, forward, square" in message
    with pytest.raises(UnknownNameError, match="needs a 'name'"):
        reg.build({"scale": 2.0}, x=1.0)


def test_unknown_settings_name_the_valid_ones() -> None:
    reg = _registry()
    with pytest.raises(
        ConfigError, match=r"has no setting 'scal'. Did you mean 'scale'\? Its settings: scale"
    ):
        reg.build({"name": "square", "scal": 2.0}, x=1.0)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'scal'"):
        reg.build({"name": "forward", "scal": 2.0}, x=1.0)


def test_settings_of_the_wrong_type_are_named_before_the_factory_runs() -> None:
    reg: Registry[Any] = Registry("widget")

    @reg.register("w")
    def widget(
        size: int = 1, hidden: Sequence[int] = (4,), scale: float | None = None, kind: str = "a"
    ) -> int:
        return size

    assert reg.build({"name": "w", "size": 2, "hidden": [3, 5], "scale": 1, "kind": "b"}) == 2
    for key, value, words in [
        ("size", 2.0, "size must be an integer; found 2.0"),
        ("size", True, "size must be an integer; found True"),
        ("hidden", 4, "hidden must be a list of integers; found 4"),
        ("hidden", ["a"], "hidden must be a list of integers; found ['a']"),
        ("scale", "abc", "scale must be a number or none; found 'abc'"),
        ("kind", 3, "kind must be a name (a string); found 3"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"widget 'w': {words}")):
            reg.build({"name": "w", key: value})


def test_a_model_that_cannot_be_built_with_its_settings_is_one_clear_error() -> None:
    from simulacra.data.info import DataInfo
    from simulacra.models.zoo import build_model

    info = DataInfo(event_shape=(12,), support="unit", levels=7)
    words = (
        r"model 'transformer' cannot be built with dim=8, heads=0 for data of shape \(12,\): integer modulo"
    )
    with pytest.raises(ConfigError, match=words):
        build_model({"name": "transformer", "dim": 8, "heads": 0}, info)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("32", 32),
        ("3e-4", 3e-4),
        ("true", True),
        ("False", False),
        ("none", None),
        ("[1, 2]", [1, 2]),
        ("tanh", "tanh"),
        ('"quoted"', "quoted"),
    ],
)
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_overrides_are_dotted_and_do_not_mutate_the_input() -> None:
    raw = {"model": {"name": "vae"}, "train": {"lr": 1e-3}}
    out = apply_overrides(
        raw, ["model.latent_dim=32", "train.lr=3e-4", "data.name=moons", "model.hidden=[8,8]"]
    )
    assert out == {
        "model": {"name": "vae", "latent_dim": 32, "hidden": [8, 8]},
        "train": {"lr": 3e-4},
        "data": {"name": "moons"},
    }
    assert raw == {"model": {"name": "vae"}, "train": {"lr": 1e-3}}
    for bad in ["model.latent_dim", "=3", "model.name.x=1"]:
        with pytest.raises(ConfigError):
            apply_overrides(raw, [bad])


def test_run_config_round_trip_and_unknown_keys() -> None:
    config = RunConfig(
        {"name": "vae", "latent_dim": 4}, DataConfig("moons"), TrainConfig(steps=3, betas=(0.5, 0.9))
    )
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.train.betas == (0.5, 0.9)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lrr'\] in \[train\]; valid keys: .*lr"):
        RunConfig.from_dict({"model": {"name": "vae"}, "train": {"lrr": 1}})
    with pytest.raises(ConfigError, match="unknown config section"):
        RunConfig.from_dict({"model": {"name": "vae"}, "optim": {}})
    with pytest.raises(ConfigError, match="needs a 'name'"):
        RunConfig.from_dict({"model": {"latent_dim": 3}})


def test_load_config_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[model]\nname = "vae"\n[train]\nlr = 0.01\n')
    (tmp_path / "b.json").write_text('{"model": {"name": "ae"}}')
    assert load_config(tmp_path / "a.toml") == {"model": {"name": "vae"}, "train": {"lr": 0.01}}
    assert load_config(tmp_path / "b.json") == {"model": {"name": "ae"}}
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "c.yaml").write_text("model: {}")
    with pytest.raises(ConfigError, match=r"\.toml or \.json"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
