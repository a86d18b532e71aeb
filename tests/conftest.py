"""Shared test set-up.

ROS 2 traffic must stay on loopback (docs/ENVIRONMENT.md): the environment is completed here, before
any test module imports rclpy, and the ``ros_environment`` fixture refuses to run a ROS test when
it is not in place. Subprocesses inherit it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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
# The shipped large-image Fast DDS profile (loopback-only variant here), as in the Makefile; tests
# that measure Fast DDS's defaults start their processes with efc_ros.dds_profile.profile_environment(None).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
from efc_ros.dds_profile import use_large_image_profile  # noqa: E402  (imports no rclpy)

use_large_image_profile()
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
#: (height, width) of the model exported when the shipped demo model is absent: small, for speed.
TEST_MODEL_SIZE = (128, 128)
TEST_MODEL_FILE = "efc_test_tiny.onnx"


def _model_code_digest() -> str:
    """Hash of the code that defines and exports the model: a cached export is reused only while it is unchanged."""
    digest = hashlib.sha256()
    sources = sorted((REPO_ROOT / "efc_core" / "model").glob("*.py"))
    sources += [REPO_ROOT / "efc_core" / "export" / "onnx_export.py", REPO_ROOT / "efc_core" / "manifest.py"]
    for path in sources:
        digest.update(path.read_bytes())
    digest.update(repr(TEST_MODEL_SIZE).encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def demo_model(request: pytest.FixtureRequest) -> Path:
    """Path of an ONNX model with its manifest: the shipped demo model, else a tiny export.

    The export (about 30 s on the 2-core CI machine) is cached in pytest's cache folder, keyed by
    the model and export code.
    """
    if SHIPPED_MODEL.is_file() and SHIPPED_MODEL.with_suffix(".json").is_file():
        return SHIPPED_MODEL
    folder = Path(request.config.cache.mkdir("efc_ros_test_model")) / _model_code_digest()
    if not folder.is_dir():
        # Export next to it and rename: an interrupted export never looks like a finished one.
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        partial.mkdir(parents=True)
        export_test_model(partial, partial / TEST_MODEL_FILE)
        try:
            os.replace(partial, folder)
        except OSError:  # another test process finished the same export first
            if not folder.is_dir():
                raise
            shutil.rmtree(partial, ignore_errors=True)
    return folder / TEST_MODEL_FILE


def export_test_model(folder: Path, path: Path) -> None:
    """Export an untrained ``tiny`` model for the synthetic classes to ``path`` (+ manifest, encoder, decoder)."""
    torch = pytest.importorskip("torch")
    from efc_core.data.synthetic import SYNTHETIC_CLASS_NAMES, SYNTHETIC_PALETTE
    from efc_core.export.onnx_export import export_onnx
    from efc_core.model import build_model
    from efc_core.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("tiny", num_classes=len(SYNTHETIC_CLASS_NAMES)).eval()
    checkpoint = save_checkpoint(folder / "tiny.pt", model, train_config={}, step=0, metrics={},
                                 class_names=list(SYNTHETIC_CLASS_NAMES), palette=SYNTHETIC_PALETTE.tolist())
    export_onnx(checkpoint, path, height=TEST_MODEL_SIZE[0], width=TEST_MODEL_SIZE[1])
