"""The surface subpackage's import arrows (numerics below, api on top, no plots, report or CLI) and its error types."""

from __future__ import annotations

import ast
from pathlib import Path

import landscape.surface

PACKAGE = Path(landscape.surface.__file__).parent
# module -> the modules of this subpackage it may import: record, directions, evaluate and passes are the floor,
# grid computes with them, resume checks partial files, api (checkpoint files) sits on top and only distributed
# (api's computation split over processes) imports it.
ALLOWED = {
    "record": set(),
    "directions": set(),
    "evaluate": set(),
    "grid": {"record", "directions", "evaluate"},
    "passes": set(),
    "resume": {"record", "directions", "passes"},
    "api": {"record", "directions", "grid", "passes", "resume"},
    "distributed": {"api", "record"},  # spawns ranks that each run api's computation on their share of the grid
}
FORBIDDEN = ("landscape.plots", "landscape.report", "fedlandscape_cli", "click")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, at any depth (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_module_of_the_subpackage_is_placed():
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} == set(ALLOWED)


def test_imports_only_go_down_and_never_to_plots_report_or_the_cli():
    for module, allowed in ALLOWED.items():
        imports = imported_modules(PACKAGE / f"{module}.py")
        inside = {name.split(".")[2] for name in imports if name.startswith("landscape.surface.")}
        assert inside <= allowed, f"{module} imports {sorted(inside - allowed)}"
        assert not [name for name in imports if name.startswith(FORBIDDEN)], module
    assert "landscape.surface.api" not in imported_modules(PACKAGE / "grid.py")


def raised_names(path: Path) -> set[str]:
    """The names of the exception classes a file raises (``raise X(...)`` or ``raise X``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            names.add(target.id if isinstance(target, ast.Name) else ast.unparse(target))
    return names


def test_numerics_raise_the_library_hierarchy_and_only_api_speaks_of_checkpoints():
    # TypeError: a parameter list passed for a dict (a programming error); KeyError: caught inside load_surface.
    internal = {"TypeError", "KeyError"}
    for module in ALLOWED:
        raised = raised_names(PACKAGE / f"{module}.py") - internal
        assert raised <= ({"ConfigError", "CheckpointError"} if module == "api" else {"ConfigError"}), (module, raised)
