"""TensorRT build planning without TensorRT (names, keys, version features, profiles, precision
pinning) and, where ``tensorrt`` imports (a GPU machine), a real engine build.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from efc_core.errors import InputError, ModelError
from efc_core.export.calibration import (
    CalibrationSet,
    read_calibration_cache,
    write_calibration_cache,
)
from efc_core.export.precision_plan import flow_fp32_nodes, layer_precision
from efc_core.runtime.engine_plan import (
    EngineKey,
    TensorRTFeatures,
    engine_filename,
    key_mismatches,
    parse_version,
    profile_shapes,
    read_sidecar,
    sidecar_path,
    timing_cache_filename,
    write_sidecar,
)

KEY = EngineKey("NVIDIA Jetson AGX Orin", "8.7", "10.3.0.30", "fp16", "ab" * 32)


def test_engine_filename_encodes_gpu_capability_version_and_precision():
    name = engine_filename("efc_tiny", "NVIDIA GeForce RTX 4090", "8.9", "10.3.0.26", "fp16")
    assert name == "efc_tiny.nvidia-geforce-rtx-4090.sm89.trt10.3.0.fp16.engine"
    assert engine_filename("m", "Orin", "8.7", "8.5.2", "int8") == "m.orin.sm87.trt8.5.2.int8.engine"
    assert timing_cache_filename("Orin", "8.7", "8.6.2.3") == "timing.orin.sm87.trt8.6.2.cache"
    with pytest.raises(ValueError, match="bf16"):
        engine_filename("m", "Orin", "8.7", "10.3", "bf16")
    with pytest.raises(ValueError, match="compute capability"):
        engine_filename("m", "Orin", "sm_87", "10.3", "fp16")


def test_version_features_per_release():
    jetpack5, jetpack6, jetpack61, trt11 = (TensorRTFeatures.from_version(v) for v in ("8.5.2.2", "8.6.2", "10.3.0",
                                                                                       "11.0.1"))
    assert parse_version("10.3.0.30") == (10, 3, 0)
    assert jetpack5.needs_explicit_batch_flag and jetpack6.needs_explicit_batch_flag
    assert not jetpack61.needs_explicit_batch_flag and not trt11.needs_explicit_batch_flag
    assert jetpack61.has_weak_typing_flags and jetpack61.has_implicit_int8_calibration
    for precision in ("fp32", "fp16", "int8"):
        jetpack5.check_precision(precision)
        jetpack61.check_precision(precision)
    trt11.check_precision("fp32")
    with pytest.raises(ModelError, match="no FP16 builder flag"):
        trt11.check_precision("fp16")
    with pytest.raises(ModelError, match="implicit INT8 calibration"):
        trt11.check_precision("int8")
    with pytest.raises(ModelError, match="too old"):
        TensorRTFeatures.from_version("8.4.3").check_precision("fp32")
    with pytest.raises(ValueError, match="not a TensorRT version"):
        parse_version("ten")


def test_sidecar_round_trip_and_key_mismatches(tmp_path):
    engine = tmp_path / "m.orin.sm87.trt10.3.0.fp16.engine"
    engine.write_bytes(b"plan")
    written = write_sidecar(engine, KEY, {"model_name": "m"}, tf32=True)
    assert written == sidecar_path(engine) == tmp_path / (engine.name + ".json")
    sidecar = read_sidecar(engine)
    assert sidecar["manifest"] == {"model_name": "m"} and sidecar["tf32"] is True
    assert key_mismatches(sidecar, KEY) == []
    # A different build number of the same release is compatible; another release is not.
    assert key_mismatches(sidecar, EngineKey(KEY.gpu_name, "8.7", "10.3.0.99", "fp16", KEY.onnx_sha256)) == []
    problems = key_mismatches(sidecar, EngineKey("NVIDIA H100", "9.0", "10.4.0", "fp16", "cd" * 32))
    assert [p.split(":")[0] for p in problems] == ["gpu_name", "compute_capability", "tensorrt_version", "onnx_sha256"]


def test_read_sidecar_refuses_missing_or_incomplete(tmp_path):
    engine = tmp_path / "x.engine"
    with pytest.raises(ModelError, match="not found"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"gpu_name": "Orin"}))
    with pytest.raises(ModelError, match="lacks keys"):
        read_sidecar(engine)


def test_profile_shapes_scale_feature_inputs_by_stride():
    inputs = {"prev_feat4": [1, 16, None, None], "cur_feat16": [1, 64, "h", "w"], "prev": [1, 3, None, None]}
    shapes = profile_shapes(inputs, (256, 320), (512, 640), (768, 1280))
    assert shapes["prev"] == ((1, 3, 256, 320), (1, 3, 512, 640), (1, 3, 768, 1280))
    assert shapes["prev_feat4"] == ((1, 16, 64, 80), (1, 16, 128, 160), (1, 16, 192, 320))
    assert shapes["cur_feat16"][2] == (1, 64, 48, 80)
    with pytest.raises(ValueError, match="multiples of 64"):
        profile_shapes(inputs, (250, 320), (512, 640), (768, 1280))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        profile_shapes(inputs, (512, 640), (256, 320), (768, 1280))
    with pytest.raises(ValueError, match="static channel"):
        profile_shapes({"prev": [1, None, None, None]}, (64, 64), (64, 64), (64, 64))


def _warp_graph() -> onnx.ModelProto:
    """conv -> flow residual; flow + pixel grid -> scaled grid -> GridSample of features."""
    nodes = [
        helper.make_node("Conv", ["feat", "w"], ["residual"], name="/flow_decoder/estimator/Conv"),
        helper.make_node("Add", ["residual", "coarse_flow"], ["flow"], name="/flow_decoder/Add"),
        helper.make_node("Add", ["flow", "pixels"], ["coords"], name="/flow_decoder/Add_1"),
        helper.make_node("Mul", ["coords", "scale"], ["scaled"], name="/flow_decoder/Mul"),
        helper.make_node("Transpose", ["scaled"], ["grid"], perm=[0, 2, 3, 1], name="/flow_decoder/Transpose"),
        helper.make_node("GridSample", ["feat", "grid"], ["warped"], name="/flow_decoder/GridSample", mode="bilinear"),
        helper.make_node("Conv", ["warped", "w2"], ["seg"], name="/segmentation/Conv"),
    ]
    tensor = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(
        nodes, "warp",
        [tensor("feat", [1, 2, 4, 4]), tensor("coarse_flow", [1, 2, 4, 4]), tensor("pixels", [1, 2, 4, 4])],
        [tensor("flow", [1, 2, 4, 4]), tensor("seg", [1, 2, 4, 4])],
        initializer=[helper.make_tensor(n, TensorProto.FLOAT, [2, 2, 1, 1], [1.0] * 4) for n in ("w", "w2")]
        + [helper.make_tensor("scale", TensorProto.FLOAT, [1], [0.5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_flow_fp32_nodes_cover_grid_and_flow_arithmetic_but_not_convs():
    chosen = flow_fp32_nodes(_warp_graph())
    assert chosen == {
        "/flow_decoder/Add", "/flow_decoder/Add_1", "/flow_decoder/Mul",
        "/flow_decoder/Transpose", "/flow_decoder/GridSample",
    }


def test_layer_precision_decisions():
    fp32_nodes = {"/flow_decoder/Add_1"}
    decide = lambda kind, name, dtypes=("FLOAT",), precision="fp16": layer_precision(  # noqa: E731
        kind, name, dtypes, precision=precision, fp32_nodes=fp32_nodes
    )
    assert decide("GRID_SAMPLE", "anything") == "fp32"
    assert decide("ELEMENTWISE", "/flow_decoder/Add_1") == "fp32"
    assert decide("ELEMENTWISE", "extra [ONNX Layer: /flow_decoder/Add_1]") == "fp32"
    assert decide("ELEMENTWISE", "/flow_decoder/Add_10") is None  # no prefix confusion
    assert decide("CONVOLUTION", "/encoder/layer1/Conv") is None
    assert decide("ELEMENTWISE", "/flow_decoder/Add_1", dtypes=("INT32",)) is None  # shape arithmetic
    assert decide("SHAPE", "/flow_decoder/Shape") is None
    # A cast from an integer index tensor keeps its declared types.
    assert layer_precision("CAST", "/flow_decoder/Add_1", ["FLOAT"], input_dtypes=["INT64"], precision="fp16",
                           fp32_nodes=fp32_nodes) is None
    assert decide("GRID_SAMPLE", "x", precision="fp32") is None  # nothing to pin in FP32 engines
    # INT8: flow branch stays FP16, segmentation is left to the calibrated INT8 choice.
    assert decide("CONVOLUTION", "/flow_decoder/estimator/Conv", precision="int8") == "fp16"
    assert decide("CONVOLUTION", "/occlusion_head/Conv", precision="int8") == "fp16"
    assert decide("CONVOLUTION", "/segmentation/classifier/Conv", precision="int8") is None
    with pytest.raises(ValueError, match="precision"):
        decide("CONVOLUTION", "x", precision="fp8")


def test_calibration_set_pairs_consecutive_frames_and_normalises(tmp_path):
    cv2 = pytest.importorskip("cv2")
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"frame_{index:03d}.png"), np.full((40, 50, 3), index * 100, np.uint8))
    pairs = CalibrationSet.from_image_folder(tmp_path, (64, 64), ("prev", "cur"))
    batches = list(pairs.batches())
    assert len(pairs) == len(batches) == 2
    assert batches[0]["prev"].shape == (1, 3, 64, 64) and batches[0]["prev"].dtype == np.float32
    # Frame 1 (value 100) is cur of the first pair and prev of the second.
    np.testing.assert_allclose(batches[0]["cur"], batches[1]["prev"])
    expected = (100 / 255 - 0.485) / 0.229
    # 40x50 frames are letterboxed into 64x64 like the runtime does (content rows 6..56), not stretched.
    assert batches[0]["cur"][0, 0, 32, 32] == pytest.approx(expected, rel=1e-5)
    assert batches[0]["cur"][0, 0, 0, 0] == 0.0
    singles = CalibrationSet.from_image_folder(tmp_path, (64, 64), ("image",))
    assert len(singles) == 3
    with pytest.raises(ValueError, match="inputs"):
        CalibrationSet.from_image_folder(tmp_path, (64, 64), ("prev_feat4",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        CalibrationSet.from_image_folder(tmp_path / "empty", (64, 64), ("image",))


def test_calibration_cache_round_trip(tmp_path):
    path = tmp_path / "calib" / "model.int8.cache"
    assert read_calibration_cache(path) is None
    write_calibration_cache(path, memoryview(b"TRT-8601-EntropyCalibration2\n"))
    assert read_calibration_cache(path) == b"TRT-8601-EntropyCalibration2\n"


def test_build_engine_on_gpu(tmp_path):
    trt = pytest.importorskip("tensorrt",
                              reason="TensorRT is only installed on the target device (docs/ENVIRONMENT.md)")
    from efc_core.runtime.cuda_layer import cuda_device_count

    if cuda_device_count() == 0:
        pytest.skip("TensorRT is installed but no CUDA device is visible (or no cuda-python / pycuda)")
    from efc_core.export.onnx_export import export_onnx
    from efc_core.export.tensorrt_build import build_engine
    from efc_core.model import build_model
    from efc_core.model.checkpoint import save_checkpoint

    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, build_model("tiny", 4), train_config={}, step=0, metrics={},
                    class_names=[f"c{i}" for i in range(4)], palette=[[i, i, i] for i in range(4)])
    export_onnx(checkpoint, tmp_path / "tiny.onnx", height=128, width=192, split=False)
    engine = build_engine(tmp_path / "tiny.onnx", precision="fp16")
    sidecar = read_sidecar(engine)
    assert sidecar["tensorrt_version"] == trt.__version__ and sidecar["precision"] == "fp16"
    assert build_engine(tmp_path / "tiny.onnx", precision="fp16") == engine  # reused, not rebuilt
    from efc_core.export.tensorrt_build import engine_layer_information

    layers = engine_layer_information(engine)
    grid = [layer for layer in layers if "GridSample" in json.dumps(layer)]
    assert grid, "IEngineInspector lists no GridSample layer (engine built without detailed profiling?)"


def test_layer_origin_from_metadata_tensors_and_consumers():
    from efc_core.export.precision_plan import LayerView, onnx_nodes_from_metadata, resolve_layer_origins

    assert onnx_nodes_from_metadata("[ONNX Layer: /flow/Add_3 | Local Function: f]") == ["/flow/Add_3"]
    assert onnx_nodes_from_metadata("[ONNX Layer: /a]\x1f[ONNX Layer: /b]") == ["/a", "/b"]
    assert onnx_nodes_from_metadata(None) == []
    graph = _warp_graph()
    layers = [
        # tag wins
        LayerView("/flow_decoder/Add", "[ONNX Layer: /flow_decoder/Add_1]", ("flow", "pixels"), ("coords",)),
        LayerView("/flow_decoder/Mul", "", ("x",), ("(Unnamed Layer* 3) [Shuffle]_output",)),  # helper
        LayerView("/flow_decoder/Mul_7", "", ("coords", "(Unnamed Layer* 3) [Shuffle]_output"), ("scaled",)),
        LayerView("/segmentation/Conv", "", ("warped",), ("nothing-known",)),  # falls back to the name
    ]
    assert resolve_layer_origins(layers, graph) == [
        "/flow_decoder/Add_1", "/flow_decoder/Mul", "/flow_decoder/Mul", "/segmentation/Conv"]


def test_gather_of_float_coordinates_is_pinned_but_integer_only_layers_are_not():
    nodes = {"/Gather"}
    pin = lambda kind, inputs, outputs=("FLOAT",): layer_precision(  # noqa: E731
        kind, "renamed_by_tensorrt_17", outputs, input_dtypes=inputs, precision="fp16", fp32_nodes=nodes,
        onnx_node="/Gather")
    assert pin("GATHER", ["FLOAT", "INT32"]) == "fp32"  # coordinates next to integer indices
    assert pin("GATHER", ["HALF", "INT64"]) == "fp32"
    assert pin("CAST", ["INT64"]) is None  # nothing float to keep
    assert pin("GATHER", ["INT32", "INT32"], outputs=("INT32",)) is None
    # A resolved origin decides: a layer renamed like an FP32 node but from elsewhere is left alone.
    assert layer_precision("ELEMENTWISE", "/Gather", ["FLOAT"], precision="fp16", fp32_nodes=nodes,
                           onnx_node="/segmentation/Mul") is None


def test_build_options_decide_reuse():
    from efc_core.runtime.engine_plan import build_option_mismatches, build_options

    requested = build_options(min_shape=(64, 64), opt_shape=(128, 128), max_shape=(256, 256), tf32=True,
                              workspace_mb=1024)
    assert build_option_mismatches({"build": requested}, requested) == []
    wider = build_options(min_shape=(64, 64), opt_shape=(128, 128), max_shape=(512, 512), tf32=True, workspace_mb=1024)
    assert [p.split(":")[0] for p in build_option_mismatches({"build": requested}, wider)] == ["profile"]
    assert len(build_option_mismatches({}, requested)) == 3  # old sidecar without options: rebuild


def test_calibration_cache_is_tied_to_the_onnx(tmp_path, caplog):
    from efc_core.export.calibration import calibration_identity

    data = CalibrationSet.synthetic(3, (64, 64), ("prev", "cur"))
    identity = calibration_identity("ab" * 32, data, "10.3.0.26")
    assert identity["inputs"] == {"prev": [1, 3, 64, 64],
                                  "cur": [1, 3, 64, 64]} and identity["tensorrt_version"] == "10.3"
    path = tmp_path / "m.int8.cache"
    write_calibration_cache(path, b"scales", identity)
    assert read_calibration_cache(path, identity) == b"scales"
    other = {**identity, "onnx_sha256": "cd" * 32}
    assert read_calibration_cache(path, other) is None and "onnx_sha256" in caplog.text
    (tmp_path / "m.int8.cache.json").unlink()
    assert read_calibration_cache(path, identity) is None  # no record: not trusted
    assert data.digest() != CalibrationSet.synthetic(3, (64, 64), ("prev", "cur"), seed=1).digest()
    # Other calibration tensors (here: the same frames padded another way) do not reuse the cache.
    write_calibration_cache(path, b"scales", identity)
    replicate = CalibrationSet.synthetic(3, (64, 64), ("prev", "cur"), pad_mode="replicate")
    assert read_calibration_cache(path, calibration_identity("ab" * 32, replicate, "10.3.0.26")) is None
    assert "frames_sha256" in caplog.text


def test_calibration_frames_equal_the_runtime_preprocessed_frames(tmp_path):
    """INT8 calibration used to stretch frames while the runtime letterboxes: the tensors TensorRT
    calibrated on must be the ones ``Perceptor.process`` feeds the network.
    """
    cv2 = pytest.importorskip("cv2")
    from efc_core.manifest import load_manifest
    from efc_core.perceptor import Perceptor
    from efc_core.runtime import create_backend

    model = Path(__file__).resolve().parents[2] / "models" / "efc_demo_tiny.onnx"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (150, 500, 3), dtype=np.uint8) for _ in range(3)]  # wide: letterboxed
    for index, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"frame_{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    shipped_pad_mode = load_manifest(model).pad_mode
    for pad_mode in ("zeros", "replicate"):
        backend = create_backend("onnxruntime", model, threads=1)
        backend.manifest.pad_mode = pad_mode
        manifest = backend.manifest
        seen = []
        infer = backend.infer
        backend.infer = lambda prev, cur: seen.append(cur.copy()) or infer(prev, cur)
        perceptor = Perceptor(backend, streaming=False)
        for index, frame in enumerate(frames):
            perceptor.process(frame, index * 50_000_000, "camera")
        data = CalibrationSet.from_image_folder(tmp_path, (manifest.input_height, manifest.input_width),
                                                ("prev", "cur"), mean=tuple(manifest.mean), std=tuple(manifest.std),
                                                pad_mode=manifest.pad_mode)
        calibrated = [batch["cur"] for batch in data.batches()]
        assert len(calibrated) == 2
        for ours, runtime in zip(calibrated, seen[1:]):
            np.testing.assert_array_equal(ours, runtime)
        assert load_manifest(model).pad_mode == shipped_pad_mode  # set on the backend only, not in the file
