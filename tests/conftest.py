"""Shared test set-up.

ROS 2 traffic must stay on loopback (ENVIRONMENT.md): the environment is completed here, before
any test module imports rclpy, and the ``ros_environment`` fixture refuses to run a ROS test when
it is not in place. Subprocesses inherit it.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# Small CPU: keep each test process on few threads so parallel work stays predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
_pythonpath = os.environ.get("PYTHONPATH", "")
if str(REPO_ROOT) not in _pythonpath.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), _pythonpath) if p)


@pytest.fixture
def ros_environment() -> dict[str, str]:
    """The loopback-only ROS environment; fails the test if anything would leave the machine."""
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        pytest.fail("ROS_AUTOMATIC_DISCOVERY_RANGE must be LOCALHOST for tests that start rclpy")
    if os.environ.get("ROS_LOCALHOST_ONLY") != "1":
        pytest.fail("ROS_LOCALHOST_ONLY must be 1 for tests that start rclpy")
    return {key: os.environ[key] for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DOMAIN_ID")}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's small real data (``../shared/data``); skips when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


SHIPPED_MODEL = REPO_ROOT / "models" / "efc_demo_tiny.onnx"


def export_random_tiny_model(directory: Path, height: int = 128, width: int = 192) -> Path:
    """Export an untrained tiny EFC network (fixed seed) to ONNX + manifest; returns the .onnx path."""
    import torch

    from efc_core.data.synthetic import SYNTHETIC_CLASS_NAMES, SYNTHETIC_PALETTE
    from efc_core.export.onnx_export import export_onnx
    from efc_core.model import build_model
    from efc_core.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    num_classes = 6
    model = build_model("tiny", num_classes=num_classes).eval()
    checkpoint = directory / "random_tiny.pt"
    save_checkpoint(checkpoint, model, train_config={}, step=0, metrics={},
                    class_names=list(SYNTHETIC_CLASS_NAMES[:num_classes]), palette=SYNTHETIC_PALETTE[:num_classes].tolist())
    output = directory / "random_tiny.onnx"
    export_onnx(checkpoint, output, height=height, width=width)
    return output


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped demo model when committed, else an untrained tiny export (same interface)."""
    if SHIPPED_MODEL.is_file() and SHIPPED_MODEL.with_suffix(".json").is_file():
        return SHIPPED_MODEL
    return export_random_tiny_model(tmp_path_factory.mktemp("model"))
