"""Call-contract tests of the TensorRT backend and the CUDA layer against the recorded TensorRT
8.5 / 8.6 / 10.3 / 11.x and cuda-bindings 12.9 / 13.5 APIs (strict stand-ins, no GPU).

The stand-in engine fills its outputs with ONNX Runtime from the bytes found in the bound device
buffers, so equality with ONNX Runtime here proves the plumbing (names, shapes, addresses,
copies, streams, graph replay), not TensorRT's arithmetic.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from efc_core.errors import BackendError
from efc_core.export.tensorrt_build import build_engine
from efc_core.runtime import create_backend
from efc_core.runtime.cuda_layer import CudaPythonLayer, open_cuda_layer
from tests.runtime import build_models

from . import standins

RNG = np.random.default_rng(0)


def _pair(height: int = 64, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    # type: ignore[return-value]
    return tuple(RNG.normal(size=(1, 3, height, width)).astype(np.float32) for _ in range(2))


def _reference(folder: Path, name: str = "tiny.onnx"):
    return create_backend("onnxruntime", folder / name, intra_op_threads=1)


def _engines(folder: Path, **shapes) -> dict[str, Path]:
    build_models(folder, flow=(1.0, -2.0), mix=0.5, occ_weight=1.0, occ_bias=0.0, streaming=True,
                 height=shapes.pop("height", 64), width=shapes.pop("width", 64))
    decoder_shapes = shapes or {"min_shape": (64, 64), "opt_shape": (64, 64), "max_shape": (64, 64)}
    return {"single": build_engine(folder / "tiny.onnx", precision="fp32", **shapes),
            "encoder": build_engine(folder / "tiny.encoder.onnx", precision="fp32", **shapes),
            "decoder": build_engine(folder / "tiny.decoder.onnx", precision="fp32", **decoder_shapes)}


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_three_calling_threads_get_correct_results_on_the_cuda_thread(
        stand_ins: standins.StandIns, tmp_path: Path, cuda_graph: bool) -> None:
    engines = _engines(tmp_path)
    prev, cur = _pair()
    expected = _reference(tmp_path).infer(prev, cur)
    backend = create_backend("tensorrt", engines["single"], cuda_graph=cuda_graph)
    results, errors = [], []

    def call() -> None:
        try:
            for _ in range(3):
                results.append(backend.infer(prev, cur))
        except Exception as error:  # noqa: BLE001  # reported below
            errors.append(error)

    threads = [threading.Thread(target=call, name=f"ros-callback-{i}") for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 9
    for outputs in results:
        np.testing.assert_array_equal(outputs.flow, expected.flow)
        np.testing.assert_array_equal(outputs.seg_logits, expected.seg_logits)
        np.testing.assert_array_equal(outputs.occlusion, expected.occlusion)
    assert {name for _, _, name in stand_ins.gpu.log} <= {"MainThread"} | {
        name for _, _, name in stand_ins.gpu.log if name.startswith("efc-tensorrt")}
    assert not any(name.startswith("ros-callback") for _, _, name in stand_ins.gpu.log)
    counts = backend.launch_counts()["single"]
    assert backend.cuda_graph_active is cuda_graph
    if cuda_graph:
        assert counts == {"graph": 9, "direct": 0} and stand_ins.cudart.graph_launches == 9
        assert stand_ins.cudart.captures_begun == stand_ins.cudart.captures_ended == 1
    else:
        assert counts == {"graph": 0, "direct": 9} and stand_ins.cudart.captures_begun == 0
    backend.close()
    assert stand_ins.gpu.device_memory == {} and stand_ins.gpu.streams == {}


def test_streaming_encoder_decoder(stand_ins: standins.StandIns, tmp_path: Path) -> None:
    engines = _engines(tmp_path)
    prev, cur = _pair()
    expected = _reference(tmp_path).infer(prev, cur)
    backend = create_backend("tensorrt", engines["encoder"], cuda_graph=True)
    assert backend.supports_streaming
    outputs = backend.decode(backend.encode(prev), backend.encode(cur))
    np.testing.assert_allclose(outputs.flow, expected.flow, atol=1e-5)
    np.testing.assert_allclose(outputs.occlusion, expected.occlusion, atol=1e-5)
    backend.close()


def test_shape_changes_rebind_and_recapture(stand_ins: standins.StandIns, tmp_path: Path) -> None:
    shapes = {"height": None, "width": None, "min_shape": (64, 64), "opt_shape": (64, 64), "max_shape": (128, 128)}
    engines = _engines(tmp_path, **shapes)
    reference = _reference(tmp_path)
    backend = create_backend("tensorrt", engines["single"], cuda_graph=True)
    for size in ((64, 64), (128, 128), (64, 128), (64, 64)):
        prev, cur = _pair(*size)
        outputs = backend.infer(prev, cur)
        np.testing.assert_array_equal(outputs.flow, reference.infer(prev, cur).flow)
        assert len(stand_ins.gpu.device_memory) == 5  # 2 inputs + 3 outputs: old buffers were freed
    assert stand_ins.cudart.captures_begun == stand_ins.cudart.captures_ended == 4
    with pytest.raises(BackendError, match="outside the engine's optimisation profile"):
        backend.infer(*_pair(192, 192))
    backend.close()


def test_failed_capture_ends_capture_and_falls_back(stand_ins: standins.StandIns, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    engines = _engines(tmp_path)
    prev, cur = _pair()
    stand_ins.gpu.fail_next_capture_enqueue = True
    backend = create_backend("tensorrt", engines["single"], cuda_graph=True)
    caplog.set_level(logging.WARNING)
    outputs = backend.infer(prev, cur)
    assert "CUDA graph capture failed" in caplog.text
    assert stand_ins.cudart.captures_begun == stand_ins.cudart.captures_ended == 1  # ended in finally
    assert not any(stream.capturing for stream in stand_ins.gpu.streams.values())
    assert not backend.cuda_graph_active
    np.testing.assert_array_equal(outputs.flow, _reference(tmp_path).infer(prev, cur).flow)
    backend.close()


def test_pycuda_fallback_runs_without_graphs(monkeypatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stand_ins = standins.install(monkeypatch, "10.3.0", cuda="pycuda")
    engines = _engines(tmp_path)
    prev, cur = _pair()
    caplog.set_level(logging.WARNING)
    backend = create_backend("tensorrt", engines["single"], cuda_graph=True)
    assert backend.cuda_layer == "pycuda" and not backend.cuda_graph_active
    assert "no stream capture" in caplog.text
    np.testing.assert_array_equal(backend.infer(prev, cur).flow, _reference(tmp_path).infer(prev, cur).flow)
    assert backend.launch_counts()["single"] == {"graph": 0, "direct": 1}
    backend.close()
    assert stand_ins.cudart is None


def test_engine_for_another_gpu_is_refused_before_deserialising(stand_ins: standins.StandIns, tmp_path: Path) -> None:
    engines = _engines(tmp_path)
    with pytest.raises(BackendError, match="gpu_name"):
        create_backend("tensorrt", engines["single"], device=1)  # built on device 0, another GPU model
    assert stand_ins.gpu.device_memory == {}


def test_without_any_cuda_layer_the_error_says_what_to_install(monkeypatch, tmp_path: Path) -> None:
    standins.install(monkeypatch, "10.3.0")
    engines = _engines(tmp_path)
    standins.install(monkeypatch, "10.3.0", cuda="none")
    with pytest.raises(BackendError, match="cuda-python"):
        create_backend("tensorrt", engines["single"])


def test_cuda_layer_refuses_calls_from_another_thread(stand_ins: standins.StandIns) -> None:
    layer = open_cuda_layer(0)
    assert isinstance(layer, CudaPythonLayer)
    layer.activate()
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(BackendError, layer.alloc_device, 16)))
    thread.start()
    thread.join()
    assert errors and "does not hold the context" in str(errors[0].value)
    buffer = layer.alloc_device(16)
    layer.free_device(buffer)
    layer.close()


def test_graph_capture_is_ended_when_the_enqueue_raises(stand_ins: standins.StandIns) -> None:
    layer = open_cuda_layer(0)
    layer.activate()
    stream = layer.create_stream()

    def broken() -> None:
        raise RuntimeError("enqueue failed")

    with pytest.raises(RuntimeError, match="enqueue failed"):
        layer.capture_graph(stream, broken)
    assert not stand_ins.gpu.streams[stream.handle].capturing
    layer.destroy_stream(stream)
    layer.close()


def test_stand_in_catches_a_thread_without_the_context(stand_ins: standins.StandIns) -> None:
    """The stand-in itself: CUDA runtime calls on a thread that did not set the device fail."""
    cudart = stand_ins.cudart.module
    with pytest.raises(standins.ContractViolation, match="no current CUDA context"):
        cudart.cudaMalloc(16)
    with pytest.raises(TypeError, match="do not match"):
        cudart.cudaMalloc(16, 32)
