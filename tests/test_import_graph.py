"""Import structure: no cycles among the project's modules, no private name imported from another.

The graph is read with ``ast`` (nothing is imported), and counts imports inside functions too: a
lazy import hides a cycle from the interpreter but not from a reader, who still has to understand
two modules at once. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.source_tree import REPO_ROOT, PACKAGES, SourceModule, parse_tree


def _imports_outside_type_checking(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _absolute_module(module: SourceModule, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known_prefix(name: str, known: set[str]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: list[SourceModule]) -> dict[str, set[str]]:
    """Module -> project modules it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    known = {module.name for module in modules if module.name}
    graph: dict[str, set[str]] = {name: set() for name in known}
    for module in modules:
        if module.name is None:
            continue
        for node in _imports_outside_type_checking(module.tree):
            if isinstance(node, ast.Import):
                targets = [_known_prefix(alias.name, known) for alias in node.names]
            else:
                source = _absolute_module(module, node)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else _known_prefix(source, known)
                    for alias in node.names
                ]
            graph[module.name].update(t for t in targets if t and t != module.name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                lowlink[node] = min(lowlink[node], lowlink[successor])
            elif successor in on_stack:
                lowlink[node] = min(lowlink[node], index[successor])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def private_imports(modules: list[SourceModule], packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``path:line: name`` for each ``_name`` imported from another module (dunder names allowed).

    Covers ``from m import _x``, ``import m._x`` and ``m._x`` where ``m`` is a project *module* bound
    by an import in the same file (a private method reached through a public class is not an import).
    """
    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    modules_known = {module.name for module in modules if module.name}
    found = []
    for module in modules:
        where = module.path.relative_to(REPO_ROOT) if module.path.is_relative_to(REPO_ROOT) else module.path
        project_names: set[str] = set()
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if private(alias.name):
                        found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
                    elif module.name is not None or not node.level:
                        source = _absolute_module(module, node) if node.level else (node.module or "")
                        if f"{source}.{alias.name}" in modules_known:
                            project_names.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if any(private(part) for part in alias.name.split(".")):
                        found.append(f"{where}:{node.lineno}: import {alias.name}")
                    elif alias.name.split(".")[0] in packages:
                        project_names.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in project_names:
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.fixture(scope="module")
def modules() -> list[SourceModule]:
    return parse_tree()


def test_package_modules_import_no_cycle(modules: list[SourceModule]) -> None:
    graph = import_graph(modules)
    assert len(graph) > 100, "the scan found too few modules: is it looking in the right place?"
    assert find_cycles(graph) == []


def test_no_module_imports_a_private_name(modules: list[SourceModule]) -> None:
    assert private_imports(modules) == []


def _write_package(root: Path, files: dict[str, str]) -> list[SourceModule]:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return parse_tree(root, packages=("pkg",))


def test_the_checks_find_a_lazy_cycle_and_private_imports(tmp_path: Path) -> None:
    # The checks themselves can fail: a cycle closed by a function-level import, as cli <-> bench was.
    modules = _write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/cli.py": "from pkg.bench import run\ndef parse(): ...\n",
        "pkg/bench.py": "def run():\n    from pkg.cli import parse\n",
        "pkg/leaf.py": "from . import cli\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import "
                       "other\n",
        "pkg/other.py": "from pkg.leaf import x\nfrom pkg.cli import _helper\nimport pkg.cli\npkg.cli._state = 1\n"
                        "from pkg import cli as c\nc._reset()\nfrom pkg.cli import Parser\nParser._method()\n",
    })
    graph = import_graph(modules)
    assert graph["pkg.leaf"] == {"pkg.cli"}  # the TYPE_CHECKING import does not count
    assert find_cycles(graph) == [["pkg.bench", "pkg.cli"]]
    found = private_imports(modules, packages=("pkg",))
    # A private method reached through a public class (Parser._method) is not an import.
    assert [line.split(": ", 1)[1] for line in found] == ["from pkg.cli import _helper", "pkg.cli._state", "c._reset"]
