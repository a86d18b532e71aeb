"""House habits (docs/STYLE.md), read from the source with ``ast`` and text search.

* Library code logs and never prints; only the command-line front ends print their results.
* Scripts are run as modules (``python -m training.train``) or installed entry points: nobody
  edits ``sys.path``.
* The documentation stands on its own: nothing points into the workplace's folder of specs
  (only tests and recipes that read data may mention ``../shared/data``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.source_tree import REPO_ROOT, SourceModule, parse_tree, python_files, walk_files

#: Command-line front ends: they print results and one-line errors for a person at a terminal.
CLI_MODULES = frozenset({
    "efc_ros/cli.py", "efc_ros/bag/cli.py", "efc_ros/bench.py", "efc_ros/verify.py", "efc_ros/demo.py",
})
LIBRARY_FOLDERS = ("efc_core", "efc_ros")
#: Text files that may hold a path (docs, configs, launch files, code, build files).
TEXT_SUFFIXES = frozenset({".py", ".md", ".yaml", ".yml", ".cfg", ".toml", ".txt", ".xml", ".rviz", ".sh", ".json",
                           ".ini", ".in"})
TEXT_NAMES = frozenset({"Makefile", "run", "README", "LICENSE"})


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def print_calls(modules: list[SourceModule], root: Path = REPO_ROOT) -> list[str]:
    """``path:line`` of every ``print(...)`` in library modules (CLI front ends excepted)."""
    found = []
    for module in modules:
        relative = _relative(module.path, root)
        if not relative.startswith(tuple(f"{folder}/" for folder in LIBRARY_FOLDERS)) or relative in CLI_MODULES:
            continue
        found += [f"{relative}:{node.lineno}" for node in ast.walk(module.tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]
    return found


def sys_path_edits(modules: list[SourceModule], root: Path = REPO_ROOT) -> list[str]:
    """``path:line`` of every ``sys.path.insert/append/extend`` or ``sys.path[...] =`` outside ``tests/``.

    The test suite's own plumbing (``conftest.py``, the API recorder) may arrange its path; scripts
    that users run may not.
    """
    found = []
    for module in modules:
        relative = _relative(module.path, root)
        if relative.startswith("tests/"):
            continue
        for node in ast.walk(module.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and ast.unparse(node.value) == "sys.path" and node.attr in ("insert", "append", "extend")):
                found.append(f"{relative}:{node.lineno}")
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "sys.path" \
                    and isinstance(node.ctx, ast.Store):
                found.append(f"{relative}:{node.lineno}")
    return found


def text_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every text file of the repository that may hold a path (outside environments and builds)."""
    return [path for path in walk_files(root) if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES]


def spec_references(root: Path = REPO_ROOT) -> list[str]:
    """``path:line`` of each mention of the workplace's spec folder (``shared/`` + ``spec``)."""
    needle = "shared/" + "spec"  # spelt in two parts so that this file does not find itself
    found = []
    for path in text_files(root):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if needle in line:
                found.append(f"{_relative(path, root)}:{number}")
    return found


def shared_references_outside_data_readers(root: Path = REPO_ROOT) -> list[str]:
    """``path:line`` of each ``../shared`` mention outside tests, recipes and their configs.

    Tests and the training recipes (``training/``, its configs and README) read the workplace's
    real data from ``../shared/data``; the dataset factory's docstring quotes such a recipe.
    Nothing else may depend on that folder.
    """
    needle = "../" + "shared"
    allowed = ("tests/", "training/", "efc_core/data/datasets/__init__.py")
    found = []
    for path in text_files(root):
        relative = _relative(path, root)
        if relative.startswith(allowed):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if needle in line:
                found.append(f"{relative}:{number}")
    return found


@pytest.fixture(scope="module")
def modules() -> list[SourceModule]:
    return parse_tree()


def test_library_code_logs_instead_of_printing(modules: list[SourceModule]) -> None:
    assert print_calls(modules) == []


def test_no_script_edits_sys_path(modules: list[SourceModule]) -> None:
    assert sys_path_edits(modules) == []


def test_nothing_refers_to_the_workplace_spec_folder() -> None:
    assert len(python_files()) > 100, "the scan found too few files: is it looking in the right place?"
    assert spec_references() == []


def test_only_data_readers_mention_the_shared_folder() -> None:
    assert shared_references_outside_data_readers() == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    # Each check can fail: a library print, a script that edits sys.path, a doc pointing at the spec.
    (tmp_path / "efc_core").mkdir()
    (tmp_path / "efc_core" / "lib.py").write_text("def f():\n    print('x')\n")
    (tmp_path / "efc_ros").mkdir()
    (tmp_path / "efc_ros" / "cli.py").write_text("def main():\n    print('result')\n")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "train.py").write_text("import sys\nsys.path.insert(0, '..')\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "NOTE.md").write_text("see ../shared/" + "spec/METHOD.md\n")
    modules = parse_tree(tmp_path)
    assert print_calls(modules, tmp_path) == ["efc_core/lib.py:2"]
    assert sys_path_edits(modules, tmp_path) == ["training/train.py:2"]
    assert spec_references(tmp_path) == ["docs/NOTE.md:1"]
    assert shared_references_outside_data_readers(tmp_path) == ["docs/NOTE.md:1"]
