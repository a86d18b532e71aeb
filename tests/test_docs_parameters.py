"""docs/ROS_NODE.md's parameter table and ``efc bag process`` flags agree with the code."""

from __future__ import annotations

import argparse
import re

import pytest

from efc_core.perceptor_config import PERCEPTOR_FIELDS
from efc_ros.bag.cli import add_parser
from efc_ros.node_parameters import PARAMETER_SPECS
from tests.source_tree import REPO_ROOT

ROS_NODE = REPO_ROOT / "docs" / "ROS_NODE.md"
#: A table row: | `name` | `default` | ...
_ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| `(?P<default>[^`]*)` \|", re.MULTILINE)


def _documented_defaults() -> dict[str, str]:
    return {match["name"]: match["default"] for match in _ROW.finditer(ROS_NODE.read_text())}


def _written(default: object) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, str):
        return f'"{default}"'
    return repr(default)


def test_every_perceptor_config_field_is_a_documented_parameter() -> None:
    documented = _documented_defaults()
    missing = [setting.ros_name for setting in PERCEPTOR_FIELDS if setting.ros_name not in documented]
    assert not missing, f"PerceptorConfig fields missing from the docs/ROS_NODE.md table: {missing}"


@pytest.mark.parametrize("spec", PARAMETER_SPECS, ids=lambda spec: spec.name)
def test_parameter_table_row_has_the_declared_default(spec) -> None:
    documented = _documented_defaults()
    assert spec.name in documented, f"{spec.name} is not in the docs/ROS_NODE.md parameter table"
    assert documented[spec.name] == _written(spec.default), spec.name


def test_table_lists_no_parameter_the_node_lacks() -> None:
    assert set(_documented_defaults()) <= {spec.name for spec in PARAMETER_SPECS}


def test_every_bag_process_flag_is_documented() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    add_parser(commands)
    process = commands.choices["bag"]._subparsers._group_actions[0].choices["process"]
    flags = {flag for action in process._actions for flag in action.option_strings} - {"-h", "--help"}
    text = ROS_NODE.read_text()
    assert {"--occlusion-threshold", "--flow-color-max", "--overlay-alpha", "--precision", "--device"} <= flags
    missing = sorted(flag for flag in flags if f"`{flag}" not in text)
    assert not missing, f"efc bag process flags missing from docs/ROS_NODE.md: {missing}"
