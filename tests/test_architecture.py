"""The architecture stays as designed: import floors without cycles, numerics that never print, CLI choices from the library.

Every ``import`` of ``src/fedtrain``, ``src/landscape`` and ``cli`` (the package ``fedlandscape_cli``) is
read with :mod:`ast`, at module level and inside functions, relative imports resolved. The floors, lowest
first: ``fedtrain`` < ``landscape.hessian`` < ``landscape.surface`` < ``landscape.federated`` < ``landscape.plots`` <
``landscape.report`` < ``fedlandscape_cli``; an arrow may only point down, and nothing but the CLI
imports the paper pipeline (``landscape.report``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES: dict[str, Path] = {
    "fedtrain": ROOT / "src" / "fedtrain",
    "landscape": ROOT / "src" / "landscape",
    "fedlandscape_cli": ROOT / "cli",
}
LIBRARY = ("fedtrain", "landscape")  # the packages under src/
CLI = "fedlandscape_cli"


@dataclass(frozen=True)
class Rule:
    """Modules under any of ``sources`` may not import modules under any of ``targets``, except from ``allowed``."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    why: str
    allowed: tuple[str, ...] = ()


RULES: tuple[Rule, ...] = (
    Rule(("fedtrain",), ("landscape", CLI), "training sits below every analysis and the CLI"),
    Rule(("landscape.hessian", "landscape.surface", "landscape.federated"), ("landscape.plots", "landscape.report", CLI),
         "numerics never import figures, the paper pipeline or the CLI"),
    Rule(("landscape.hessian", "landscape.surface"), ("landscape.federated",),
         "federated curvature sits above the Hessian engine and loss surfaces"),
    Rule(("landscape.plots",), ("landscape.report", CLI), "figures sit below the paper pipeline and the CLI"),
    Rule(LIBRARY, (CLI, "click"), "the library never imports the CLI or click"),
    Rule(("landscape.hessian",), ("landscape.surface",), "the Hessian engine sits below loss surfaces"),
    Rule(("",), ("landscape.report",), "only the CLI imports the paper pipeline", allowed=(CLI, "landscape.report")),
    Rule(("",), ("flwr", "ray"), "only fedtrain.flower talks to Flower (an optional extra)", allowed=("fedtrain.flower",)),
)
TORCH_FREE = ("landscape.settings", "fedtrain.config", "landscape.federated.settings",
              "fedtrain.convergence", "landscape.report.statistics", "landscape.report.claims")  # the verdicts read JSON only


@dataclass(frozen=True)
class Arrow:
    """One import statement: ``source`` imports ``target`` (a module of ours, or an external dotted name)."""

    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def module_files(packages: Mapping[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` (a package is its ``__init__``)."""
    modules = {}
    for name, folder in packages.items():
        for file in sorted(folder.rglob("*.py")):
            parts = [name, *file.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


def _under(module: str, prefixes: Iterable[str]) -> bool:
    return any(prefix == "" or module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: Mapping[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    # ``from package import name``: the submodule when ``name`` is one, else the package itself
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def import_arrows(modules: Mapping[str, Path]) -> list[Arrow]:
    """Every import of every module, top-level and inside functions, relative imports resolved."""
    arrows = []
    for module, file in modules.items():
        is_package = file.name == "__init__.py"
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                arrows += [Arrow(module, target, node.lineno) for target in _targets(node, module, is_package, modules)]
    return arrows


def forbidden_arrows(arrows: Iterable[Arrow], rules: Iterable[Rule] = RULES) -> list[str]:
    """One line per arrow that breaks a rule: the arrow and the rule."""
    return [f"{arrow}: {rule.why}" for arrow in arrows for rule in rules
            if _under(arrow.source, rule.sources) and not _under(arrow.source, rule.allowed)
            and _under(arrow.target, rule.targets)]


def import_cycles(arrows: Iterable[Arrow], modules: Iterable[str]) -> list[list[str]]:
    """The cycles among ``modules``: one closed path (first module repeated at the end) per strongly connected component."""
    nodes = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in nodes}
    for arrow in arrows:
        if arrow.target in nodes:
            graph[arrow.source].add(arrow.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan (1972)
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            connect(node)
    return [_closed_path(component, graph) for component in components]


def _closed_path(component: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    # a shortest path back to the start inside the component, so the message shows one concrete cycle
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    return component


def print_calls(modules: Mapping[str, Path]) -> list[str]:
    """``module:line`` of every ``print(...)`` call."""
    return [f"{module}:{node.lineno}" for module, file in modules.items()
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]


def _literal_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, (ast.List, ast.Tuple, ast.Set)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def literal_choices(modules: Mapping[str, Path]) -> list[str]:
    """``module:line`` of every ``click.Choice`` given a literal list/tuple/set, or a name the module binds to one."""
    found = []
    for module, file in modules.items():
        tree = ast.parse(file.read_text(encoding="utf-8"))
        literals = _literal_names(tree)
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            if not (isinstance(func, ast.Attribute) and func.attr == "Choice" or isinstance(func, ast.Name) and func.id == "Choice"):
                continue
            given = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "choices")]
            for value in given:
                parts = list(ast.walk(value))
                if any(isinstance(p, (ast.List, ast.Tuple, ast.Set)) for p in parts) or any(
                        isinstance(p, ast.Name) and p.id in literals for p in parts):
                    found.append(f"{module}:{node.lineno}: click.Choice({ast.unparse(value)})")
    return found


# --- the rules on this repository ------------------------------------------------------------------

MODULES = module_files(PACKAGES)
ARROWS = import_arrows(MODULES)


def test_the_walk_sees_every_package_and_function_level_imports():
    assert {"fedtrain.config", "landscape.settings", "landscape.hessian.analysis", "landscape.report.reproduce",
            "fedlandscape_cli", "fedlandscape_cli.reproduce"} <= set(MODULES)
    # the CLI imports the library inside its command functions, so that --help stays fast
    assert any(a.source == "fedlandscape_cli.reproduce" and a.target == "landscape.report.reproduce" for a in ARROWS)


def test_no_import_cycle():
    cycles = import_cycles(ARROWS, MODULES)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_forbidden_arrow():
    broken = forbidden_arrows(ARROWS)
    assert not broken, "forbidden imports:\n" + "\n".join(broken)


def test_numerics_never_print():
    library = {m: f for m, f in MODULES.items() if _under(m, LIBRARY)}
    calls = print_calls(library)
    assert not calls, "print() in the library (return the text, or take a log callable):\n" + "\n".join(calls)


def test_cli_choices_come_from_the_library():
    cli = {m: f for m, f in MODULES.items() if _under(m, (CLI,))}
    literals = literal_choices(cli)
    assert not literals, "click.Choice with a literal list (import the library's choice list instead):\n" + "\n".join(literals)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_settings_and_config_import_no_torch(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"{module} imports torch ({run.stdout.strip()}); it must stay torch-free"


# --- the checker itself, on a small made-up tree ------------------------------------------------------

def _tree(tmp_path: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return module_files({"landscape": tmp_path / "landscape", "fedlandscape_cli": tmp_path / "cli"})


def test_checker_resolves_relative_and_function_level_imports_and_names_the_arrow(tmp_path):
    modules = _tree(tmp_path, {
        "landscape/__init__.py": "",
        "landscape/hessian/__init__.py": "from . import trace\n",
        "landscape/hessian/trace.py": "def f():\n    from ..plots import figure\n",
        "landscape/plots/__init__.py": "",
        "landscape/plots/figure.py": "from landscape.hessian import trace\nprint('x')\n",
        "cli/__init__.py": "",
    })
    arrows = import_arrows(modules)
    assert {(a.source, a.target) for a in arrows} == {
        ("landscape.hessian", "landscape.hessian.trace"),
        ("landscape.hessian.trace", "landscape.plots.figure"),
        ("landscape.plots.figure", "landscape.hessian.trace"),
    }
    assert forbidden_arrows(arrows) == [
        "landscape.hessian.trace -> landscape.plots.figure (line 2): numerics never import figures, the paper pipeline or the CLI"
    ]
    assert import_cycles(arrows, modules) == [["landscape.hessian.trace", "landscape.plots.figure", "landscape.hessian.trace"]]
    assert print_calls(modules) == ["landscape.plots.figure:2"]


def test_checker_flags_literal_choices_and_report_imports_outside_the_cli(tmp_path):
    modules = _tree(tmp_path, {
        "landscape/__init__.py": "",
        "landscape/settings.py": "KINDS = ('a', 'b')\n",
        "landscape/report/__init__.py": "",
        "landscape/report/reproduce.py": "from . import claims\n",
        "landscape/report/claims.py": "",
        "landscape/surface/api.py": "import landscape.report.reproduce\n",
        "cli/__init__.py": "",
        "cli/good.py": "import click\nfrom landscape.settings import KINDS\nimport landscape.report.reproduce\n"
                       "click.Choice(KINDS)\nclick.Choice(list(KINDS))\n",
        "cli/bad.py": "import click\nNAMES = ['x']\nclick.Choice(['a'])\nclick.Choice(NAMES)\nclick.Choice(choices=('c',))\n",
    })
    assert literal_choices(modules) == ["fedlandscape_cli.bad:3: click.Choice(['a'])", "fedlandscape_cli.bad:4: click.Choice(NAMES)",
                                        "fedlandscape_cli.bad:5: click.Choice(('c',))"]
    broken = forbidden_arrows(import_arrows(modules))
    assert [line.split(":")[0] for line in broken] == [
        "landscape.surface.api -> landscape.report.reproduce (line 1)",
        "landscape.surface.api -> landscape.report.reproduce (line 1)",
    ]
    assert {line.split(": ")[1] for line in broken} == {
        "numerics never import figures, the paper pipeline or the CLI", "only the CLI imports the paper pipeline"}
