"""ROS 2's own linters on every Python file, as an ament_python package runs them in ``colcon test``.

``ament_flake8`` reads the project configuration in ``setup.cfg`` ([flake8]: ament's settings with a
120-character line, double quotes, isort grouping; the reasons are written there and in
docs/STYLE.md). ``ament_pep257`` checks docstrings in the Google convention with ament's exemption
for missing docstrings (ament's own convention expects numpy-style section underlines).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.source_tree import REPO_ROOT

pytest.importorskip("ament_flake8.main", reason="ros-ament-flake8 is not installed (make venv)")
pytest.importorskip("ament_pep257.main", reason="ros-ament-pep257 is not installed (make venv)")

#: What the linters read: the packages, the recipes, benchmarks, tests, the launch file, setup.py.
LINTED_PATHS = ("efc_core", "efc_ros", "training", "benchmarks", "tests", "launch", "setup.py")
#: The Google convention with ament's exemption for missing docstrings (D100-D107) and the three
#: the project relaxes (setup.cfg says why): wrapped summaries (D205, D415), proper nouns (D403),
#: partial Args sections (D417).
PEP257_ARGS = ("--convention", "google", "--add-ignore", "D100", "D101", "D102", "D103", "D104", "D105",
               "D106", "D107", "D205", "D403", "D415", "D417")


def run_linter(linter: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``ament_flake8`` or ``ament_pep257`` (their ``main``) in the repository root."""
    code = f"import sys; from {linter}.main import main; sys.exit(main(argv=sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)


def _problems(result: subprocess.CompletedProcess, marker: str) -> str:
    lines = (result.stdout + result.stderr).splitlines()
    return "\n".join([line for line in lines if marker in line][:200])


@pytest.mark.linter
@pytest.mark.flake8
def test_flake8() -> None:
    result = run_linter("ament_flake8", "--config", "setup.cfg", *LINTED_PATHS)
    assert result.returncode == 0, "ament_flake8 found problems:\n" + _problems(result, ".py:")


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257() -> None:
    result = run_linter("ament_pep257", *PEP257_ARGS, "--", *LINTED_PATHS)
    assert result.returncode == 0, "ament_pep257 found problems:\n" + _problems(result, ": D")


@pytest.mark.linter
def test_the_linters_report_a_violation(tmp_path: Path) -> None:
    # The configuration is live: a too-long line, single quotes, '''-docstrings and closing quotes
    # on the last text line are reported.
    bad = tmp_path / "bad.py"
    long_string = '"' + "y" * 130 + '"'
    bad.write_text("def f():\n    '''Summary.\n\n    Text.'''\n    return 'x' + " + long_string + "\n")
    result = run_linter("ament_flake8", "--config", str(REPO_ROOT / "setup.cfg"), str(bad))
    assert result.returncode != 0
    assert {"E501", "Q000", "D300"} <= set(result.stdout.split())
    result = run_linter("ament_pep257", *PEP257_ARGS, "--", str(bad))
    assert result.returncode != 0
    assert "D300" in result.stdout + result.stderr and "D209" in result.stdout + result.stderr
