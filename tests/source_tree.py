"""The repository's Python sources as parsed modules, for the tests of house rules (no pytest here).

Used by the import-graph, lint and house-habit tests: they read the code as text or as an ``ast``
and never import it, so a rule is checked even in modules whose imports need ROS or torch.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The importable packages of the project (``setup.py``'s packages plus the training recipes).
PACKAGES = ("efc_core", "efc_ros", "training")
#: Folders never scanned: environments, build outputs, caches, training runs (all git-ignored).
SKIPPED_PARTS = frozenset({".venv", "build", "install", "log", "outputs", "runs", ".git", "__pycache__",
                           ".pytest_cache"})


@dataclass(frozen=True)
class SourceModule:
    """One ``.py`` file: its dotted name (``None`` outside the packages), path and syntax tree."""

    name: str | None
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        """Whether this is a package's ``__init__.py`` (relative imports resolve inside it)."""
        return self.path.name == "__init__.py"


def walk_files(root: Path = REPO_ROOT) -> Iterator[Path]:
    """Every file under ``root``, not descending into environments, build outputs and caches."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders
                               if name not in SKIPPED_PARTS and not name.endswith(".egg-info"))
        yield from (Path(folder) / name for name in sorted(files))


def python_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every ``.py`` file under ``root``, sorted, outside environments and build outputs."""
    return sorted(path for path in walk_files(root) if path.suffix == ".py")


def module_name(path: Path, root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> str | None:
    """Dotted module name of ``path`` if it lies in one of ``packages``, else ``None``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if not parts or parts[0] not in packages:
        return None
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def parse_tree(root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> list[SourceModule]:
    """Parse every Python file under ``root`` (a ``SyntaxError`` fails the calling test loudly)."""
    return [
        SourceModule(module_name(path, root, packages), path, ast.parse(path.read_text(), filename=str(path)))
        for path in python_files(root)
    ]
