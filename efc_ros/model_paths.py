"""Where the shipped models live, in a source checkout and in a colcon install.

Two models ship: ``efc_camvid_tiny`` (11 CamVid street classes, flow and occlusion learned from real
video) is the default of the node, the lifecycle and multi-camera nodes, the bag tools and the
launch file; ``efc_demo_tiny`` (the six synthetic classes) is what ``make demo`` runs on its
synthetic camera, whose ground truth uses those classes.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "efc_camvid_tiny"
DEMO_MODEL_NAME = "efc_demo_tiny"
PACKAGE_NAME = "efc_ros"


def model_directories() -> list[Path]:
    """Candidate folders holding shipped models: the installed share folder, then the checkout."""
    directories: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            directories.append(Path(get_package_share_directory(PACKAGE_NAME)) / "models")
        except (PackageNotFoundError, OSError):  # OSError: no ROS environment sourced (AMENT_PREFIX_PATH)
            pass
    except ImportError:  # ament_index_python is absent outside ROS installs
        pass
    directories.append(Path(__file__).resolve().parents[1] / "models")
    return directories


def default_model_path(suffix: str = ".onnx", name: str = DEFAULT_MODEL_NAME) -> Path:
    """The shipped model ``name`` (``efc_camvid_tiny.onnx`` by default); the first candidate that exists.

    Returns the checkout's path even when missing, so the caller's error names a real location.
    """
    candidates = [directory / f"{name}{suffix}" for directory in model_directories()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[-1]
