"""The repository is a real ament_python package: ``colcon build`` produces the ROS install tree."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "efc_ros"


def console_scripts() -> list[str]:
    """Executable names declared in setup.py's console_scripts."""
    text = (REPO_ROOT / "setup.py").read_text()
    return re.findall(r'"(\w+)\s*=\s*[\w.]+:\w+"', text)


def test_package_xml_declares_runtime_dependencies_and_never_torch() -> None:
    root = ElementTree.parse(REPO_ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    assert root.findtext("license") == "Apache-2.0"
    exec_depends = {element.text for element in root.findall("exec_depend")}
    required = {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "python3-numpy", "python3-opencv"}
    assert required <= exec_depends, f"missing exec_depend: {required - exec_depends}"
    all_depends = {element.text for element in root.iter() if element.tag.endswith("depend")}
    assert not any("torch" in (name or "") for name in all_depends)
    assert root.find("export/build_type").text == "ament_python"


def test_setup_cfg_installs_scripts_where_ros2_run_looks() -> None:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    assert config["install"]["install_scripts"] == f"$base/lib/{PACKAGE}"
    assert config["develop"]["script_dir"] == f"$base/lib/{PACKAGE}"


@pytest.mark.slow
def test_colcon_build_produces_ros_install_tree(tmp_path: Path) -> None:
    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.exists() and shutil.which("colcon") is None:
        pytest.skip("colcon is not installed (make venv installs colcon-common-extensions)")
    colcon_cmd = str(colcon) if colcon.exists() else shutil.which("colcon")
    install = tmp_path / "install"
    result = subprocess.run(
        [colcon_cmd, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(REPO_ROOT),
         "--build-base", str(tmp_path / "build"), "--install-base", str(install)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = install / PACKAGE
    share = prefix / "share" / PACKAGE
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "perception.launch.py").is_file()
    assert (share / "config" / "perception.yaml").is_file()
    assert (share / "rviz" / "perception.rviz").is_file()
    scripts = console_scripts()
    assert {"perception_node", "efc"} <= set(scripts)
    for script in scripts:
        executable = prefix / "lib" / PACKAGE / script
        assert executable.is_file() and os.access(executable, os.X_OK), f"{executable} missing"
    # The installed tree alone (not this checkout) must be importable: run the installed CLI.
    site_packages = next((prefix / "lib").glob("python3*/site-packages"))
    assert (site_packages / "efc_core" / "contract.py").is_file()
    environment = dict(os.environ, PYTHONPATH=str(site_packages))
    help_run = subprocess.run(
        [sys.executable, str(prefix / "lib" / PACKAGE / "efc"), "--help"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "export" in help_run.stdout and "verify" in help_run.stdout
