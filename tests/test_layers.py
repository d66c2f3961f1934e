"""The packages show the layers (docs/design.md, "Layers"): no import runs upward, none forms a
circle. Imports inside functions count: a lazy import hides a circle, it does not remove it."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "lrbench"

# docs/design.md's layers, bottom first: a package imports from its own layer and those below.
LAYERS = [
    {"lrbench", "errors", "defaults", "durations", "plainfiles", "locks", "imagedecode"}
    | {"yamlio", "imports", "forked"},
    {"specs", "runfiles", "checkpoint_identity", "verdict", "results"},
    {"schedules", "tasks", "models", "data"},
    {"train"},
    {"config"},
    {"executors"},
    {"sweep"},
    {"tools"},
    {"verify", "report", "display"},
    {"cli", "console", "__main__"},
]
# Arrows that still run upward, until the work that removes them lands.


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports() -> dict[str, set[str]]:
    """Every module's lrbench imports (top level, in functions, under TYPE_CHECKING alike)."""
    modules = _modules()

    def known(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            graph[name] |= {known(t) for t in targets if t.startswith("lrbench")} - {name}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _layer(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _modules()}
    placed = set().union(*LAYERS)
    assert packages - placed == set(), "add the new package to docs/design.md's layers and here"


def test_no_import_runs_upward():
    upward = {
        (_package(a), _package(b))
        for a, targets in _imports().items()
        for b in targets
        if _layer(_package(b)) > _layer(_package(a))
    }
    assert upward == set()


def test_no_packages_import_each_other():
    packages: dict[str, set[str]] = {}
    for a, targets in _imports().items():
        packages.setdefault(_package(a), set()).update(_package(b) for b in targets)
    for package, targets in packages.items():
        targets.discard(package)
    graphlib.TopologicalSorter(packages).prepare()  # raises CycleError on a circle


def test_no_modules_import_each_other():
    graphlib.TopologicalSorter(_imports()).prepare()  # raises CycleError naming the circle
