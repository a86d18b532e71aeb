"""Manifest: round trip, where it is looked up, and errors that name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efc_core.errors import ModelError
from efc_core.manifest import Manifest, load_manifest, manifest_from_dict, manifest_path_for, save_manifest


def _manifest(**overrides) -> Manifest:
    values = {
        "model_name": "efc_tiny",
        "preset": "tiny",
        "graphs": {"single": "efc_tiny.onnx", "encoder": "efc_tiny.encoder.onnx", "decoder": "efc_tiny.decoder.onnx"},
        "input_height": 256,
        "input_width": 512,
        "num_classes": 2,
        "class_names": ["background", "car"],
        "palette": [[0, 0, 0], [255, 0, 0]],
        "flow_direction": "backward",
        "opset": 17,
        "checkpoint_sha256": "ab" * 32,
        "training_config": {"lr": 0.001, "stages": [1, 2]},
        "metrics": {"miou": 0.5},
        "training_data": [{"name": "camvid", "what": "labelled frames", "terms": "non-commercial"}],
        "dtypes": {"prev": "float32"},
    }
    values.update(overrides)
    return Manifest(**values)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    original = _manifest()
    path = save_manifest(original, tmp_path / "efc_tiny.onnx")
    assert path == tmp_path / "efc_tiny.json"
    loaded = load_manifest(tmp_path / "efc_tiny.onnx")
    assert loaded == original
    assert loaded.to_dict() == original.to_dict()
    assert loaded.source_path == path.resolve()
    assert loaded.graph_path("decoder") == (tmp_path / "efc_tiny.decoder.onnx").resolve()
    assert loaded.has_streaming and not loaded.is_dynamic
    assert loaded.direction.value == "backward"


def test_manifest_path_for_each_kind_of_model_file(tmp_path: Path) -> None:
    assert manifest_path_for(tmp_path / "m.onnx") == tmp_path / "m.json"
    assert manifest_path_for(tmp_path / "m.json") == tmp_path / "m.json"
    engine = tmp_path / "m.nvidia-orin.sm87.trt10.3.0.fp16.engine"
    assert manifest_path_for(engine) == tmp_path / "m.nvidia-orin.sm87.trt10.3.0.fp16.engine.json"
    # The streaming graphs share the manifest of their export ...
    assert manifest_path_for(tmp_path / "m.encoder.onnx") == tmp_path / "m.json"
    # ... unless one was written for them specifically.
    (tmp_path / "m.decoder.json").write_text("{}")
    assert manifest_path_for(tmp_path / "m.decoder.onnx") == tmp_path / "m.decoder.json"


def test_engine_sidecar_holds_the_manifest(tmp_path: Path) -> None:
    engine = tmp_path / "m.gpu.sm87.trt10.3.0.fp16.engine"
    sidecar = {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3.0",
               "precision": "fp16", "onnx_sha256": "0" * 64, "manifest": _manifest().to_dict()}
    Path(str(engine) + ".json").write_text(json.dumps(sidecar))
    loaded = load_manifest(engine)
    assert loaded == _manifest()
    assert loaded.graph_path("single") == (tmp_path / "efc_tiny.onnx").resolve()


def test_missing_manifest_names_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"m\.json not found"):
        load_manifest(tmp_path / "m.onnx")


def test_unreadable_json_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"m\.json is unreadable"):
        load_manifest(tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_classes", "three", "'num_classes'"),
        ("num_classes", 300, "'num_classes'"),
        ("input_height", 250, "'input_height'"),   # not a multiple of pad_multiple=64
        ("flow_direction", "sideways", "'flow_direction'"),
        ("mean", [0.5, 0.5], "'mean'"),
        ("std", [0.2, 0.0, 0.2], "'std'"),
        ("graphs", {"encoder": "e.onnx"}, "'graphs'"),      # decoder missing
        ("graphs", {"middle": "m.onnx"}, "'graphs'"),
        ("output_names", ["seg", "flow", "occlusion"], "'output_names'"),
        ("class_names", ["only_one"], "'class_names'"),
        ("palette", [[0, 0, 0], [300, 0, 0]], "'palette'"),
        ("feature_names", ["feat2"], "'feature_names'"),
        ("dtypes", {"prev": "int8"}, "'dtypes'"),
        ("training_data", {"name": "camvid"}, "'training_data'"),
        ("training_data", [{"name": 3}], "'training_data'"),
    ],
)
def test_bad_value_names_file_and_key(tmp_path: Path, key: str, value: object, message: str) -> None:
    data = _manifest().to_dict()
    data[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError) as error:
        load_manifest(path)
    assert message in str(error.value)
    assert str(path.resolve()) in str(error.value)


def test_missing_and_unknown_keys_are_named(tmp_path: Path) -> None:
    data = _manifest().to_dict()
    del data["num_classes"]
    with pytest.raises(ModelError, match=r"missing required key\(s\) \['num_classes'\]"):
        manifest_from_dict(data, tmp_path / "x.json")
    data = {**_manifest().to_dict(), "colour_map": []}
    with pytest.raises(ModelError, match="unknown key.*colour_map"):
        manifest_from_dict(data, tmp_path / "x.json")


def test_dynamic_manifest_and_defaults() -> None:
    manifest = Manifest(model_name="d", graphs={"single": "d.onnx"}, input_height=None, input_width=None,
                        num_classes=19)
    assert manifest.is_dynamic and not manifest.has_streaming
    assert manifest.input_names == ["prev", "cur"]
    assert manifest.dtype_of("prev") == "float32"
    with pytest.raises(ModelError, match="no 'encoder' graph"):
        manifest.graph_path("encoder")
    with pytest.raises(ModelError, match="input_height"):
        Manifest(model_name="d", graphs={"single": "d.onnx"}, input_height=64, input_width=None, num_classes=2)


def test_check_graph_io_reports_missing_and_unexpected_names() -> None:
    manifest = _manifest()
    manifest.check_graph_io(["cur", "prev"], ["flow", "seg_logits", "occlusion"])  # order does not matter
    with pytest.raises(ModelError) as error:
        manifest.check_graph_io(["image1", "image2"], ["seg_logits", "flow", "occlusion"])
    text = str(error.value)
    assert "missing ['cur', 'prev']" in text and "unexpected ['image1', 'image2']" in text
    manifest.check_graph_io(["image"], ["feat4", "feat8", "feat16"], "encoder")
    with pytest.raises(ModelError, match="decoder graph"):
        manifest.check_graph_io(["prev_feat4", "cur_feat4"], ["seg_logits", "flow", "occlusion"], "decoder")
