"""One PerceptorConfig: defaults once, validation once, one builder that every tool uses."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from efc_core.manifest import load_manifest
from efc_core.perceptor_config import PERCEPTOR_FIELDS, PerceptorConfig, build_perceptor

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "efc_demo_tiny.onnx"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "openvino"}, "backend must be one of onnxruntime, tensorrt, torch; got 'openvino'"),
        ({"resize_mode": "crop"}, "resize_mode must be one of letterbox, stretch; got 'crop'"),
        ({"max_frame_gap_s": 0.0}, r"max_frame_gap_s must be in \[0.001, 3600.0\], got 0.0"),
        ({"temporal_fusion": float("nan")}, "temporal_fusion must be a number, got nan"),
        ({"threads": 1.5}, "threads must be of type int, got 1.5"),
        ({"streaming": 1}, "streaming must be of type bool, got 1"),
        ({"input_width": 320}, "input_width and input_height must both be 0"),
        ({"precision": "fp8"}, "precision must be one of '', fp32, fp16, int8; got 'fp8'"),
    ],
)
def test_bad_values_raise_value_error_naming_them(changes, message):
    with pytest.raises(ValueError, match=message):
        PerceptorConfig(**changes)


def test_yaml_defaults_equal_the_dataclass_defaults():
    """config/perception.yaml restates no default of its own: it must equal PerceptorConfig's."""
    document = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())
    values = document["/**"]["ros__parameters"]
    defaults = PerceptorConfig()
    for setting in PERCEPTOR_FIELDS:
        assert setting.ros_name in values, setting.ros_name
        value = values[setting.ros_name]
        assert value == getattr(defaults, setting.name) and type(value) is type(setting.default), setting.name


def test_node_parameters_derive_from_the_config():
    pytest.importorskip("rcl_interfaces")
    from efc_ros.node_parameters import PARAMETER_SPECS, PerceptionParameters

    by_name = {spec.name: spec for spec in PARAMETER_SPECS}
    for setting in PERCEPTOR_FIELDS:
        spec = by_name[setting.ros_name]
        assert spec.default == setting.default and spec.description == setting.description
        assert spec.choices == setting.choices and spec.read_only == (not setting.runtime)
    parameters = PerceptionParameters(max_frame_gap=0.25, num_threads=2, input_width=320, input_height=256)
    assert parameters.perceptor_config() == PerceptorConfig(max_frame_gap_s=0.25, threads=2, input_width=320,
                                                            input_height=256)


def test_build_perceptor_applies_every_setting():
    manifest = load_manifest(DEMO.with_suffix(".json"))
    height, width = int(manifest.input_height), int(manifest.input_width)  # a fixed-size model takes its own
    config = PerceptorConfig(model_path=str(DEMO), threads=1, resize_mode="stretch", max_frame_gap_s=0.2,
                             temporal_fusion=0.3, streaming=False, input_width=width, input_height=height,
                             flow_refinement_iterations=3, flow_refinement_pixels=4096, flow_refinement_levels=2)
    perceptor = build_perceptor(config)
    assert perceptor.resize_mode == "stretch" and perceptor.temporal_fusion == pytest.approx(0.3)
    refiner = perceptor._refiner
    assert (refiner.iterations, refiner.max_pixels, refiner.levels) == (3, 4096, 2)
    assert not perceptor.streaming and perceptor.input_size == (height, width)
    assert perceptor._pairer.max_frame_gap_s == pytest.approx(0.2)
    with pytest.raises(ValueError, match="precision 'fp16' requested"):
        build_perceptor(dataclasses.replace(config, precision="fp16"))


def test_bag_tools_build_the_perceptor_the_node_builds():
    """``efc bag process`` used to drop resize mode, max frame gap, streaming and threads."""
    pytest.importorskip("rcl_interfaces")
    from efc_ros.bag.cli import build_perceptor as bag_build
    from efc_ros.perceptor_args import add_perceptor_arguments  # what efc bag process adds to its parser
    from efc_ros.node_parameters import PerceptionParameters

    parser = argparse.ArgumentParser()
    add_perceptor_arguments(parser)
    args = parser.parse_args(["--model", str(DEMO), "--resize-mode", "stretch", "--max-frame-gap", "0.2",
                              "--no-streaming", "--threads", "1", "--temporal-fusion", "0.4"])
    perceptor = bag_build(args)
    assert perceptor.resize_mode == "stretch" and not perceptor.streaming
    assert perceptor._pairer.max_frame_gap_s == pytest.approx(0.2) and perceptor.temporal_fusion == pytest.approx(0.4)
    node = PerceptionParameters(model_path=str(DEMO), resize_mode="stretch", max_frame_gap=0.2, streaming=False,
                                num_threads=1, temporal_fusion=0.4)
    from efc_ros.perceptor_args import perceptor_config_from_args

    assert perceptor_config_from_args(args) == node.perceptor_config()
    defaults = parser.parse_args([])
    assert perceptor_config_from_args(defaults).replace(model_path="") == PerceptorConfig()
