"""The library's layers import downward only, with no cycle (``docs/architecture.md``).

core → data → components and losses → methods → experiments, results, paper → presentation →
entry points (and the notebooks and ``run_all.py`` above them). Every import counts: at module
level, inside a function, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "osad_lib"

#: Layers from the bottom; a module belongs to the layer naming it exactly, else to the layer of its
#: longest matching package prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("osad_lib", "osad_lib.validate", "osad_lib.errors", "osad_lib.paths", "osad_lib.seeding", "osad_lib.settings",
              "osad_lib.limits", "osad_lib.viz", "osad_lib.provenance")),
    ("data", ("osad_lib.data",)),
    ("components and losses", ("osad_lib.components", "osad_lib.losses", "osad_lib.training", "osad_lib.metrics",
                               "osad_lib.explain")),
    ("methods", ("osad_lib.methods",)),
    ("experiments, results, paper", ("osad_lib.profiles", "osad_lib.results", "osad_lib.paper",
                                     "osad_lib.experiments", "osad_lib.dryrun")),
    ("presentation", ("osad_lib.plots", "osad_lib.widgets", "osad_lib.report", "osad_lib.headline")),
    ("entry points", ("osad_lib.runner", "osad_lib.fanout", "osad_lib.bench", "osad_lib.gpucheck",
                      "osad_lib.demo_budget")),
)
#: Imports of the library inside a function, each with its reason (a heavy dependency).
FUNCTION_IMPORTS_ALLOWED = {
    # profiles and headline import torch and every method: run_all.py --help and a bad option's
    # one-line error must not wait for them (runner's docstring)
    ("osad_lib.runner.options", "osad_lib.profiles"), ("osad_lib.runner.execute", "osad_lib.headline"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index into :data:`LAYERS` of ``module`` (ValueError when no layer names it)."""
    for index, (_, names) in enumerate(LAYERS):
        if module in names:
            return index
    matches = [(len(prefix), index) for index, (_, names) in enumerate(LAYERS) for prefix in names
               if prefix != "osad_lib" and module.startswith(prefix + ".")]
    if not matches:
        raise ValueError(f"{module} belongs to no layer: add it to LAYERS in tests/unit/test_layers.py")
    return max(matches)[1]


def imports_of(module: str, source: str, is_package: bool = False) -> list[tuple[str, int, bool]]:
    """(imported library module, line, inside a function) for every import of ``source``."""
    tree = ast.parse(source)
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found += [(t, node.lineno, id(node) in in_function) for t in targets if t.split(".")[0] == "osad_lib"]
    return found


def upward_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    """The imports of ``source`` (as module ``module``) that point to a higher layer."""
    mine = layer_of(module)
    return [f"{module}:{line} imports {target} ({LAYERS[layer_of(target)][0]}) from {LAYERS[mine][0]}"
            for target, line, _ in imports_of(module, source, is_package) if layer_of(target) > mine]


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports_of(m, p.read_text(), p.name == "__init__.py") if t != m and t != "osad_lib"}
            for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_downward_only():
    upward = [line for m, p in MODULES.items() for line in upward_imports(m, p.read_text(), p.name == "__init__.py")]
    assert upward == [], "\n".join(upward)


def test_the_layer_check_catches_an_upward_import():
    assert upward_imports("osad_lib.data.protocols", "from osad_lib.results import ResultsStore\n")
    assert upward_imports("osad_lib.methods.dra.networks", "def f():\n    from osad_lib.experiments import devnet\n")
    assert upward_imports("osad_lib.profiles", "if TYPE_CHECKING:\n    from osad_lib import viz, report\n")
    assert not upward_imports("osad_lib.experiments.dra", "from osad_lib.methods.dra import DRAConfig\n")
    with pytest.raises(ValueError, match="belongs to no layer"):
        layer_of("osad_lib_other.x")


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each import cycle of ``graph`` (module → the modules it imports) found by a depth-first walk."""
    state: dict[str, str] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                path = stack + [node]
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def test_no_import_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles(_graph()) == []


def test_library_imports_inside_functions_only_where_a_heavy_dependency_justifies_it():
    inside = sorted({(m, t) for m, p in MODULES.items() for t, _, f in imports_of(m, p.read_text(), p.name == "__init__.py")
                     if f} - FUNCTION_IMPORTS_ALLOWED)
    assert inside == [], inside
