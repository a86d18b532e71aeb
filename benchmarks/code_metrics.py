"""Code-size and structure measures of two trees of this repository (issue 15's "Measure" note).

Usage (from the repository root)::

    python -m benchmarks.code_metrics --before-rev 0e869c2            # that commit vs the working tree
    python -m benchmarks.code_metrics --before /tmp/base --after .      # two folders
    python -m benchmarks.code_metrics --before-rev 0e869c2 --json metrics.json

For each tree: Python files and lines; the ten largest files and functions (``ast``: a function
spans ``lineno`` to ``end_lineno``, nested functions count on their own too); repeated-code pairs as
counted by the ``duplicates`` command (``duplicates --most 200``, when it is on ``PATH``); and the
number of places that do one of four jobs issue 15 wants done once. Those places are found by
pattern, in the code that ships or runs recipes (``efc_core``, ``efc_ros``, ``training``,
``benchmarks``; tests are left out because they decode and render on purpose to compare), and counted
as distinct enclosing functions (module level counts as one place per file):

* **decode ROS images**: a function that calls ``np.frombuffer`` or ``cv2.imdecode`` and mentions a
  ROS image message field (``step`` or ``encoding``) - the raw and compressed decoders;
* **render outputs**: a function that calls one of the colourisers of ``efc_core.viz``
  (``flow_to_color``, ``colorize_labels``, ``occlusion_to_color``, ``overlay``) - ``viz.py`` itself,
  which defines them, is not counted;
* **compute padding to a multiple**: a line computing a size rounded up to a multiple whose name
  ends in ``multiple`` (``-x % m``, ``ceil(x / m) * m``, ``-(-x // m) * m``, ``(x + m - 1) // m``);
  lines that only *check* divisibility (``x % m`` in a condition) are counted apart;
* **build a Perceptor**: a call of the ``Perceptor(...)`` constructor.

The patterns are deliberately plain so that a reader can redo each count with ``grep``; each place
is listed with its file and function, so a miscount is visible.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODE_FOLDERS = ("efc_core", "efc_ros", "training", "benchmarks")
SKIPPED_PARTS = frozenset({".venv", "build", "install", "log", "outputs", ".git", "__pycache__", ".pytest_cache"})
VIZ_FUNCTIONS = frozenset({"flow_to_color", "colorize_labels", "occlusion_to_color", "overlay"})
PAD_COMPUTE = re.compile(
    r"-\s*\(?-?[\w.]+\)?\s*%\s*[\w.]*multiple"                 # (-x) % m
    r"|ceil\([^)]*/\s*[\w.]*multiple"                         # ceil(x / m) * m
    r"|//\s*[\w.]*multiple\s*\)\s*\*\s*[\w.]*multiple"        # -(-x // m) * m
    r"|\+\s*[\w.]*multiple\s*-\s*1\s*\)\s*//",                # (x + m - 1) // m
    re.IGNORECASE,
)
PAD_CHECK = re.compile(r"[\w.)\]]\s*%\s*[\w.]*multiple", re.IGNORECASE)


@dataclass
class TreeMetrics:
    """What one tree measures; ``places`` maps a job to its ``file:function`` places."""

    root: str
    python_files: int = 0
    python_lines: int = 0
    lines_by_folder: dict[str, int] = field(default_factory=dict)
    largest_files: list[tuple[str, int]] = field(default_factory=list)
    largest_functions: list[tuple[str, int]] = field(default_factory=list)
    duplicate_pairs: int | None = None
    duplicates_summary: str = ""
    places: dict[str, list[str]] = field(default_factory=dict)


def tree_files(root: Path) -> list[Path]:
    """Files of a tree: git's tracked and unignored files in a checkout, else every file below it."""
    if (root / ".git").exists():
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard"],
                                capture_output=True, text=True, check=True).stdout.splitlines()
        return sorted(root / name for name in listed if (root / name).is_file())
    return sorted(path for path in root.rglob("*")
                  if path.is_file() and not SKIPPED_PARTS.intersection(path.relative_to(root).parts))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _qualified_names(tree: ast.AST) -> dict[ast.AST, str]:
    names: dict[ast.AST, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                names[child] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return names


def _enclosing_function(functions: list[ast.AST], names: dict[ast.AST, str], line: int) -> str:
    """Innermost function around ``line``, or ``<module>``."""
    around = [f for f in functions if f.lineno <= line <= (f.end_lineno or f.lineno)]
    if not around:
        return "<module>"
    return names[max(around, key=lambda f: f.lineno)]


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def find_places(relative: str, text: str, tree: ast.Module) -> dict[str, set[str]]:
    """The places in one file, per job (see the module docstring)."""
    places: dict[str, set[str]] = {"decode_ros_image": set(), "render_outputs": set(), "pad_compute": set(),
                                   "pad_check": set(), "build_perceptor": set()}
    functions = _functions(tree)
    names = _qualified_names(tree)
    lines = text.splitlines()
    for function in functions:
        calls = {_call_name(node) for node in ast.walk(function) if isinstance(node, ast.Call)}
        body = "\n".join(lines[function.lineno - 1: function.end_lineno])
        if calls & {"frombuffer", "imdecode"} and re.search(r"\b(step|encoding)\b", body):
            places["decode_ros_image"].add(f"{relative}:{names[function]}")
        if calls & VIZ_FUNCTIONS and not relative.endswith("efc_core/viz.py"):
            # Only functions that call a colouriser directly (not through a nested function).
            direct = {_call_name(node) for node in ast.walk(function) if isinstance(node, ast.Call)
                      and _enclosing_function(functions, names, node.lineno) == names[function]}
            if direct & VIZ_FUNCTIONS:
                places["render_outputs"].add(f"{relative}:{names[function]}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "Perceptor":
            places["build_perceptor"].add(f"{relative}:{_enclosing_function(functions, names, node.lineno)}")
    for number, line in enumerate(lines, start=1):
        code = line.split("#", 1)[0]
        if PAD_COMPUTE.search(code):
            places["pad_compute"].add(f"{relative}:{_enclosing_function(functions, names, number)}")
        elif PAD_CHECK.search(code):
            places["pad_check"].add(f"{relative}:{_enclosing_function(functions, names, number)}")
    return places


def run_duplicates(root: Path) -> tuple[int | None, str]:
    """``duplicates --most 200`` in ``root``: (number of pairs, its first line); (None, reason) without it."""
    if shutil.which("duplicates") is None:
        return None, "duplicates is not on PATH"
    output = subprocess.run(["duplicates", "--most", "200", "--seconds", "120"], cwd=root,
                            capture_output=True, text=True).stdout
    first = output.splitlines()[0] if output else ""
    match = re.match(r"(\d+) pairs?", first)
    if match:
        return int(match.group(1)), first
    return (0, first) if first.startswith("no duplicates") else (None, first)


def measure(root: Path, top: int = 10) -> TreeMetrics:
    """Measure one tree (see the module docstring)."""
    metrics = TreeMetrics(root=str(root))
    file_sizes: list[tuple[str, int]] = []
    function_sizes: list[tuple[str, int]] = []
    places: dict[str, set[str]] = {}
    for path in tree_files(root):
        if path.suffix != ".py":
            continue
        relative = path.relative_to(root).as_posix()
        text = path.read_text(errors="replace")
        count = len(text.splitlines())
        metrics.python_files += 1
        metrics.python_lines += count
        folder = relative.split("/", 1)[0] if "/" in relative else "."
        metrics.lines_by_folder[folder] = metrics.lines_by_folder.get(folder, 0) + count
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        if folder not in CODE_FOLDERS:
            continue
        file_sizes.append((relative, count))
        names = _qualified_names(tree)
        function_sizes += [(f"{relative}:{names[f]}", (f.end_lineno or f.lineno) - f.lineno + 1)
                           for f in _functions(tree)]
        for job, found in find_places(relative, text, tree).items():
            places.setdefault(job, set()).update(found)
    metrics.largest_files = sorted(file_sizes, key=lambda item: (-item[1], item[0]))[:top]
    metrics.largest_functions = sorted(function_sizes, key=lambda item: (-item[1], item[0]))[:top]
    metrics.places = {job: sorted(found) for job, found in sorted(places.items())}
    metrics.duplicate_pairs, metrics.duplicates_summary = run_duplicates(root)
    return metrics


def export_revision(revision: str, repository: Path, destination: Path) -> Path:
    """The tree of ``revision`` as plain files under ``destination`` (``git archive``)."""
    archive = subprocess.run(["git", "-C", str(repository), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
    return destination


def format_report(before: TreeMetrics, after: TreeMetrics) -> str:
    """Plain-text side-by-side report."""
    out = [f"before: {before.root}", f"after:  {after.root}", "",
           f"{'':34}{'before':>10}{'after':>10}",
           f"{'Python files':34}{before.python_files:>10}{after.python_files:>10}",
           f"{'Python lines':34}{before.python_lines:>10}{after.python_lines:>10}"]
    for folder in sorted(set(before.lines_by_folder) | set(after.lines_by_folder)):
        out.append(f"{'  lines in ' + folder + '/':34}{before.lines_by_folder.get(folder, 0):>10}"
                   f"{after.lines_by_folder.get(folder, 0):>10}")
    pairs = [str(m.duplicate_pairs) if m.duplicate_pairs is not None else "n/a" for m in (before, after)]
    out.append(f"{'repeated-code pairs (duplicates)':34}{pairs[0]:>10}{pairs[1]:>10}")
    for job in sorted(set(before.places) | set(after.places)):
        out.append(f"{'places: ' + job:34}{len(before.places.get(job, [])):>10}{len(after.places.get(job, [])):>10}")
    for title, key in (("largest files (lines)", "largest_files"), ("largest functions (lines)", "largest_functions")):
        for label, metrics in (("before", before), ("after", after)):
            out += ["", f"{title}, {label}:"] + [f"  {size:5d}  {name}" for name, size in getattr(metrics, key)]
    for job in sorted(set(before.places) | set(after.places)):
        for label, metrics in (("before", before), ("after", after)):
            out += ["", f"{job}, {label}:"] + [f"  {place}" for place in metrics.places.get(job, [])]
    out += ["", f"duplicates, before: {before.duplicates_summary}", f"duplicates, after:  {after.duplicates_summary}"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    before = parser.add_mutually_exclusive_group(required=True)
    before.add_argument("--before", type=Path, help="folder of the earlier tree")
    before.add_argument("--before-rev", help="git revision of the earlier tree (exported with git archive)")
    parser.add_argument("--after", type=Path, default=Path("."), help="folder of the later tree (default: .)")
    parser.add_argument("--json", type=Path, help="also write both measurements as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="code_metrics_") as scratch:
        before_root = args.before or export_revision(args.before_rev, args.after, Path(scratch))
        results = measure(before_root.resolve()), measure(args.after.resolve())
        if args.before_rev:
            results[0].root = f"{args.before_rev} (git archive)"
    print(format_report(*results))
    if args.json:
        payload: dict[str, Any] = {"before": results[0].__dict__, "after": results[1].__dict__}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
