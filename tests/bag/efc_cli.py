"""Run the ``efc`` console entry point in a subprocess, as a user would (shared by the bag tests)."""

from __future__ import annotations

import subprocess
import sys


def run_efc(*args: object) -> subprocess.CompletedProcess:
    """``python -m efc_ros.cli ARGS`` with captured text output (5-minute limit)."""
    return subprocess.run([sys.executable, "-m", "efc_ros.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
