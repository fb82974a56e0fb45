"""Imports point down (ARCHITECTURE.md): a lower layer never imports an upper one, packages of one
layer import each other only where the design says so, and no package imports another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "simulacra"

# Lower number = lower layer, bottom to top as in ARCHITECTURE.md. A module may import any package
# of a lower layer; a package of its own layer only where SIBLINGS lets it.
LAYERS = {
    # helpers every layer may use: exceptions, name -> object registries, derived seeds
    "errors": 0,
    "registry": 0,
    "seeding": 0,
    "progress": 0,
    # data; numerics (general numerical methods on tensors, e.g. the ODE solver of flows.continuous
    # and samplers.ode): neither knows networks, models or each other
    "data": 1,
    "numerics": 1,
    "nn": 2,
    "distributions": 3,
    "processes": 3,
    "flows": 3,
    "objectives": 4,
    "samplers": 4,
    "models": 5,
    # config is the run configuration (RunConfig = model spec + DataConfig + TrainConfig). DataConfig
    # is defined by data, beside load_dataset, and config re-exports it, so config counts above data;
    # it sits on the loop's layer, where train (TrainConfig) and the CLI read it and nothing else does.
    "config": 6,
    "train": 6,
    "metrics": 6,
    "tasks": 6,
    "viz": 6,
    "report": 7,
    "cli": 8,
    "__main__": 8,
    "__init__": 8,
}

# Imports between packages of one layer: importer -> the siblings it may import, with the reason.
# Anything not listed fails. (objectives and samplers using distributions, processes and flows are
# not sibling imports: layer 3 lies below them.) The design lists no others; in particular
# objectives and samplers do not import each other, tasks neither train (train) nor read run
# configs (config), viz draws tensors and metric results, not tasks, and metrics import none of
# their siblings.
SIBLINGS: dict[str, set[str]] = {
    "registry": {"errors"},  # an unknown name is an UnknownNameError
    "flows": {"distributions"},  # a Flow is a torch Distribution over a base distribution
    "train": {"config"},  # fit reads TrainConfig; run directories write config JSON (to_jsonable)
    # tasks score what they produce with metrics (MMD of a posterior against the exact one,
    # calibration statistics) and evaluate models in evaluation_mode like the metrics do
    "tasks": {"metrics"},
    "viz": {"metrics"},  # pictures of metric results (SBC rank histograms, coverage curves)
    "__main__": {"cli"},  # `python -m simulacra` runs the CLI
}


def _package(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _target(module: str) -> str | None:
    """The package (first component after ``simulacra``) that an absolute import names, or None."""
    parts = module.split(".")
    if parts[0] != "simulacra":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: use absolute imports (from simulacra...), not relative ones")
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


FILES = sorted(SRC.rglob("*.py"))


def _where(path: Path, lineno: int) -> str:
    return f"src/simulacra/{path.relative_to(SRC)}:{lineno}"


def test_every_package_has_a_layer() -> None:
    for path in FILES:
        key = _package(path)
        assert key in LAYERS, f"{path} is in no layer; add {key!r} to LAYERS in tests/test_layers.py"


def test_sibling_table_names_packages_of_one_layer() -> None:
    for importer, allowed in SIBLINGS.items():
        for other in allowed:
            assert LAYERS[importer] == LAYERS[other], f"SIBLINGS[{importer!r}] lists {other!r}, another layer"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    """Rule 1: no import of a higher layer. Rule 2: an import of a package on the same layer
    needs an entry in SIBLINGS."""
    own = _package(path)
    problems = []
    for lineno, module, _ in _imports(path):
        target = _target(module)
        if target is None or target == own or target not in LAYERS:
            continue
        if LAYERS[target] > LAYERS[own]:
            problems.append(
                f"{_where(path, lineno)} imports {module} (layer {LAYERS[target]}) from {own} (layer "
                f"{LAYERS[own]}): imports must point down"
            )
        elif LAYERS[target] == LAYERS[own] and target not in SIBLINGS.get(own, set()):
            problems.append(
                f"{_where(path, lineno)} imports {module}: {own} and {target} share layer {LAYERS[own]}, "
                f"and the design lets {own} import only {sorted(SIBLINGS.get(own, set())) or 'none'} of its "
                "siblings (SIBLINGS in tests/test_layers.py); move the shared code to a lower layer"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_imports_across_packages(path: Path) -> None:
    """Rule 3: ``_private`` modules and names belong to their package: another package imports
    neither ``simulacra.x._module`` nor ``from simulacra.x... import _name``."""
    own = _package(path)
    problems = []
    for lineno, module, names in _imports(path):
        target = _target(module)
        if target is None or target == own:
            continue
        hidden = [p for p in module.split(".")[1:] if _private(p)] + [n for n in names if _private(n)]
        if hidden:
            problems.append(
                f"{_where(path, lineno)} imports {', '.join(hidden)} from {module}: private to package "
                f"{target}, imported by {own}; make it public where it belongs (or move it)"
            )
    assert not problems, "\n".join(problems)
