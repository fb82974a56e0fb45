"""Imports point down only (ARCHITECTURE.md): a lower layer never imports an upper one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "simulacra"

# Lower number = lower layer. Top-level helpers (errors, registry, config) are importable by all.
LAYERS = {
    "errors": 0,
    "registry": 0,
    "config": 0,
    "seeding": 0,
    "data": 1,
    "numerics": 1,
    "nn": 2,
    "distributions": 3,
    "processes": 3,
    "flows": 3,
    "objectives": 4,
    "samplers": 4,
    "models": 5,
    "train": 6,
    "metrics": 6,
    "tasks": 6,
    "viz": 6,
    "cli": 7,
    "__main__": 7,
    "__init__": 7,
}


def _layer_of_module(parts: list[str]) -> int | None:
    if not parts or parts[0] != "simulacra":
        return None
    if len(parts) == 1:
        return LAYERS["__init__"]
    return LAYERS.get(parts[1])


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: use absolute imports (from simulacra...), not relative ones")
    return out


FILES = sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    for path in FILES:
        rel = path.relative_to(SRC).parts
        key = rel[0].removesuffix(".py")
        assert key in LAYERS, f"{path} is in no layer; add {key!r} to LAYERS in tests/test_layers.py"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    own = LAYERS[path.relative_to(SRC).parts[0].removesuffix(".py")]
    for lineno, module in _imports(path):
        layer = _layer_of_module(module.split("."))
        if layer is None:
            continue
        assert layer <= own, (
            f"{path.relative_to(SRC)}:{lineno} imports {module} (layer {layer}) from layer {own}: "
            "imports must point down"
        )
