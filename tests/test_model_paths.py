"""The shipped real-camera model is found without parameters, with or without a sourced ROS environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ament_prefix", [None, "/nonexistent/install"])
def test_default_model_path_is_the_shipped_model(ament_prefix: str | None) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"}
    if ament_prefix is not None:
        environment["AMENT_PREFIX_PATH"] = ament_prefix
    result = subprocess.run(
        [sys.executable, "-c", "from efc_ros.model_paths import default_model_path; print(default_model_path())"],
        capture_output=True, text=True, env=environment, cwd=REPO_ROOT, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == REPO_ROOT / "models" / "efc_camvid_tiny.onnx"
    assert (REPO_ROOT / "models" / "efc_camvid_tiny.json").is_file()
