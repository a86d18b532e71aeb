"""Call-contract tests of ``build_engine`` and INT8 calibration against the recorded TensorRT 8.5,
8.6, 10.3 and 11.x APIs (strict stand-ins, no GPU). They check what the builder calls and how,
which layers it pins, what it refuses and when; not what TensorRT would compute.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from efc_core.errors import BackendError, ModelError
from efc_core.export.calibration import CalibrationSet
from efc_core.export.precision_plan import flow_fp32_nodes
from efc_core.export.tensorrt_build import build_engine
from efc_core.runtime.engine_plan import read_sidecar
from efc_core.manifest import Manifest, save_manifest

from tests.runtime import build_models
from . import standins
from .conftest import WEAKLY_TYPED


def _layers_by_origin(network: standins.SimNetwork, model: onnx.ModelProto) -> dict[str, list[standins.SimLayer]]:
    """Stand-in network layers grouped by the ONNX node that produced their named outputs."""
    producer = {output: node.name for node in model.graph.node for output in node.output}
    groups: dict[str, list[standins.SimLayer]] = {}
    for layer in network.layers:
        for index in range(layer.num_outputs):
            node = producer.get(layer.get_output(index).name)
            if node is not None:
                groups.setdefault(node, []).append(layer)
    return groups


def _grid_coordinate_gathers(model: onnx.ModelProto) -> set[str]:
    """Gather nodes on the path to a GridSample's sampling grid, found on the graph itself."""
    producer = {output: node for node in model.graph.node for output in node.output}
    found: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "GridSample":
            continue
        queue, seen = deque([node.input[1]]), set()
        while queue:
            tensor = queue.popleft()
            if tensor in seen or tensor not in producer:
                continue
            seen.add(tensor)
            source = producer[tensor]
            if source.op_type in ("Conv", "GridSample"):
                continue
            if source.op_type == "Gather":
                found.add(source.name)
            queue.extend(source.input)
    return found


def test_fp32_build_records_key_and_build_options(stand_ins: standins.StandIns, tmp_path: Path) -> None:
    build_models(tmp_path)
    engine = build_engine(tmp_path / "tiny.onnx", precision="fp32")
    sidecar = read_sidecar(engine)
    assert sidecar["tensorrt_version"] == stand_ins.trt.module.__version__ and sidecar["gpu_name"] == "NVIDIA Orin"
    assert sidecar["build"] == {"profile": None, "tf32": True, "workspace_mb": 2048, "calibration": None}
    build = stand_ins.trt.builds[-1]
    assert build["device"] == 0 and build["config"].pools["WORKSPACE"] == 2048 << 20
    # Every TensorRT call needing a context ran where the device was made current.
    assert all(device == 0 for _, device, _ in stand_ins.gpu.log)


@pytest.mark.parametrize("version", WEAKLY_TYPED)
def test_shipped_graph_pins_grid_coordinates_and_flow_to_fp32(monkeypatch, version: str, shipped_copy: Path,
                                                              tmp_path: Path) -> None:
    stand_ins = standins.install(monkeypatch, version)
    build_engine(shipped_copy, precision="fp16", output=tmp_path)
    network = stand_ins.trt.builds[-1]["network"]
    model = onnx.load(str(shipped_copy), load_external_data=False)
    groups = _layers_by_origin(network, model)
    fp32_nodes = flow_fp32_nodes(model)
    gathers = _grid_coordinate_gathers(model)
    assert gathers and gathers <= fp32_nodes  # the graph has them, the analysis chose them
    float_names = ("FLOAT", "HALF")
    for node in sorted(fp32_nodes):
        for layer in groups.get(node, []):
            outputs = [layer.get_output(i).dtype.name for i in range(layer.num_outputs)]
            inputs = [layer.get_input(i).dtype.name for i in range(layer.num_inputs)]
            if layer.get_output(0).is_shape_tensor or not all(d in float_names for d in outputs):
                continue
            if inputs and not any(d in float_names for d in inputs):
                continue
            if layer.type.name in ("SHAPE", "CONSTANT"):
                continue
            assert layer.precision_set is not None and layer.precision_set.name == "FLOAT", (node, layer.name)
            assert all(t.name == "FLOAT" for t in layer.output_types.values())
    for node in gathers:  # float coordinates next to integer indices: pinned all the same
        assert all(layer.precision_set.name == "FLOAT" for layer in groups[node]), node
    outside = {node for node, layers in groups.items() if node not in fp32_nodes
               and any(layer.precision_set is not None and layer.type.name != "GRID_SAMPLE" for layer in layers)}
    assert not outside  # nothing outside the grid/flow cone is forced
    config = stand_ins.trt.builds[-1]["config"]
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS", "TF32"} <= config.flag_set


def _collision_graph(folder: Path) -> Path:
    """``/Mul`` (flow arithmetic, broadcast input -> a helper layer first) next to a node really
    named ``/Mul_1`` in the segmentation branch: TensorRT's renaming gives /Mul's main layer the
    name ``/Mul_1`` (constant and broadcast helper layers take ``/Mul`` and ``/Mul_0``).
    """
    info = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    nodes = [
        helper.make_node("Mul", ["prev", "scale"], ["scaled"], name="/Mul"),
        helper.make_node("Identity", ["scaled"], ["flow_pair"], name="/flow_out"),
        helper.make_node("Slice", ["flow_pair", "starts", "ends", "axes"], ["flow"], name="/flow_slice"),
        helper.make_node("Mul", ["cur", "cur"], ["seg_logits"], name="/Mul_1"),
        helper.make_node("ReduceMean", ["prev"], ["occ_pre"], axes=[1], keepdims=1, name="/occ_pre"),
        helper.make_node("Sigmoid", ["occ_pre"], ["occlusion"], name="/occ"),
    ]
    ints = lambda name, values: helper.make_tensor(name, TensorProto.INT64, [len(values)], values)  # noqa: E731
    graph = helper.make_graph(
        nodes, "collision", [info("prev", [1, 3, 64, 64]), info("cur", [1, 3, 64, 64])],
        [info("seg_logits", [1, 3, 64, 64]), info("flow", [1, 2, 64, 64]), info("occlusion", [1, 1, 64, 64])],
        initializer=[helper.make_tensor("scale", TensorProto.FLOAT, [1], [0.5]),
                     ints("starts", [0]), ints("ends", [2]), ints("axes", [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "collide.onnx"
    onnx.save(model, str(path))
    save_manifest(Manifest(model_name="collide", preset="test", graphs={"single": path.name}, input_height=64,
                           input_width=64, num_classes=3, class_names=["a", "b", "c"],
                           palette=[[0, 0, 0], [1, 1, 1], [2, 2, 2]]),
                  folder / "collide.json")
    return path


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0"])
def test_renamed_extra_layers_do_not_misdirect_pinning(monkeypatch, version: str, tmp_path: Path) -> None:
    stand_ins = standins.install(monkeypatch, version)
    path = _collision_graph(tmp_path)
    build_engine(path, precision="fp16")
    network = stand_ins.trt.builds[-1]["network"]
    by_output = {layer.get_output(0).name: layer for layer in network.layers}
    assert by_output["scaled"].name == "/Mul_1"  # the collision the stand-in reproduces
    assert by_output["scaled"].precision_set.name == "FLOAT"  # /Mul is flow arithmetic
    assert by_output["seg_logits"].precision_set is None  # the real /Mul_1 is not


def test_reuse_only_with_same_build_options(stand_ins: standins.StandIns, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    build_models(tmp_path, height=None, width=None)
    shapes = {"min_shape": (64, 64), "opt_shape": (64, 64), "max_shape": (128, 128)}
    engine = build_engine(tmp_path / "tiny.onnx", precision="fp32", **shapes)
    assert len(stand_ins.trt.builds) == 1
    assert build_engine(tmp_path / "tiny.onnx", precision="fp32", **shapes) == engine
    assert len(stand_ins.trt.builds) == 1  # same request: reused
    caplog.set_level(logging.INFO)
    wider = {**shapes, "max_shape": (256, 256)}
    assert build_engine(tmp_path / "tiny.onnx", precision="fp32", **wider) == engine
    assert len(stand_ins.trt.builds) == 2 and "profile" in caplog.text
    assert read_sidecar(engine)["build"]["profile"]["max"] == [256, 256]
    build_engine(tmp_path / "tiny.onnx", precision="fp32", tf32=False, **wider)
    build_engine(tmp_path / "tiny.onnx", precision="fp32", tf32=False, workspace_mb=512, **wider)
    assert len(stand_ins.trt.builds) == 4
    assert "TF32" not in stand_ins.trt.builds[-1]["config"].flag_set


def test_device_index_reaches_the_builder(stand_ins: standins.StandIns, tmp_path: Path) -> None:
    build_models(tmp_path)
    engine = build_engine(tmp_path / "tiny.onnx", precision="fp32", device=1)
    assert "nvidia-rtx-a2000.sm86" in engine.name
    assert stand_ins.trt.builds[-1]["device"] == 1
    assert {device for call, device, _ in stand_ins.gpu.log if "build" in call or "Builder" in call} == {1}


def test_fp16_and_int8_refused_on_11_before_any_gpu_work(monkeypatch, tmp_path: Path) -> None:
    stand_ins = standins.install(monkeypatch, "11.4.0")
    build_models(tmp_path)
    with pytest.raises(ModelError, match="no FP16 builder flag"):
        build_engine(tmp_path / "tiny.onnx", precision="fp16")
    data = CalibrationSet.synthetic(3, (64, 64), ("prev", "cur"))
    with pytest.raises(ModelError, match="implicit INT8 calibration"):
        build_engine(tmp_path / "tiny.onnx", precision="int8", calibration=data)
    assert stand_ins.gpu.log == [] and stand_ins.trt.builds == []


def test_int8_without_a_cuda_layer_says_what_to_install(monkeypatch, tmp_path: Path) -> None:
    standins.install(monkeypatch, "10.3.0", cuda="none")
    build_models(tmp_path)
    data = CalibrationSet.synthetic(3, (64, 64), ("prev", "cur"))
    with pytest.raises(BackendError, match="cuda-python"):
        build_engine(tmp_path / "tiny.onnx", precision="int8", calibration=data)


@pytest.mark.parametrize("version", WEAKLY_TYPED)
def test_int8_calibrates_on_the_build_device_and_ties_the_cache_to_the_onnx(
        monkeypatch, version: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stand_ins = standins.install(monkeypatch, version)
    build_models(tmp_path)
    data = CalibrationSet.synthetic(3, (64, 64), ("prev", "cur"))
    cache = tmp_path / "tiny.int8.cache"
    build_engine(tmp_path / "tiny.onnx", precision="int8", calibration=data, calibration_cache=cache, device=1)
    assert stand_ins.trt.calibration[-1] == {"cache_hit": False, "batches": 2}
    record = json.loads(cache.with_name(cache.name + ".json").read_text())
    assert record["inputs"] == {"prev": [1, 3, 64, 64], "cur": [1, 3, 64, 64]}
    assert {device for call, device, _ in stand_ins.gpu.log if call == "cudaMalloc"} == {1}
    assert stand_ins.gpu.device_memory == {}  # calibration buffers freed after the build
    build_engine(tmp_path / "tiny.onnx", precision="int8", calibration=data, calibration_cache=cache, device=1,
                 force=True)
    assert stand_ins.trt.calibration[-1]["cache_hit"] is True
    build_models(tmp_path, flow=(3.0, 1.0))  # re-export: another graph, same file name
    caplog.set_level(logging.WARNING)
    build_engine(tmp_path / "tiny.onnx", precision="int8", calibration=data, calibration_cache=cache, device=1,
                 force=True)
    assert stand_ins.trt.calibration[-1]["cache_hit"] is False and "ignoring INT8 calibration cache" in caplog.text


def test_progress_is_logged(stand_ins: standins.StandIns, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build_models(tmp_path)
    caplog.set_level(logging.INFO, logger="efc_core.export.tensorrt_build")
    build_engine(tmp_path / "tiny.onnx", precision="fp32")
    assert "parsing ONNX done in" in caplog.text and "building the fp32 engine" in caplog.text
    has_monitor = "IProgressMonitor" in standins.SURFACE["tensorrt"][stand_ins.trt.release_key]["module"]
    assert ("TensorRT Building engine" in caplog.text) == has_monitor


def test_engine_inspector_reports_layer_precisions(monkeypatch, tmp_path: Path) -> None:
    standins.install(monkeypatch, "10.3.0")
    from efc_core.export.tensorrt_build import engine_layer_information

    build_models(tmp_path)
    engine = build_engine(tmp_path / "tiny.onnx", precision="fp16")
    layers = engine_layer_information(engine)
    assert layers and all("Name" in layer and "Outputs" in layer for layer in layers)
    assert np.all([isinstance(layer["Outputs"], list) for layer in layers])
