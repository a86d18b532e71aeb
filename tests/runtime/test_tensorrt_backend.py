"""TensorRT backend: the engine key rules run everywhere; real engines only where TensorRT imports."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest

from efc_core.errors import BackendError, ModelError
from efc_core.runtime.engine_plan import EngineKey, file_sha256, write_sidecar
from efc_core.manifest import load_manifest
from efc_core.runtime import create_backend
from efc_core.runtime.tensorrt_backend import check_engine_key, engine_kind

from . import build_models

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _gpu_reason() -> str | None:
    """Why the real-engine test cannot run here (None: TensorRT, a CUDA layer and a GPU are present).
    A machine with TensorRT but no GPU (a CI image, a container without --gpus) skips, not fails.
    """
    if not HAVE_TENSORRT:
        return "TensorRT is not installed here (GPU targets only)"
    from efc_core.runtime.cuda_layer import cuda_device_count

    if importlib.util.find_spec("cuda") is None and importlib.util.find_spec("pycuda") is None:
        return "neither cuda-python nor pycuda is installed"
    if cuda_device_count() == 0:
        return "TensorRT is installed but no CUDA device is visible"
    return None


GPU_REASON = _gpu_reason()
ENGINE_NAME = "tiny.nvidia-orin.sm87.trt10.3.0.fp16.engine"


def _fake_engine(folder: Path, onnx_sha: str | None = None, name: str = ENGINE_NAME) -> Path:
    manifest_path = build_models(folder)
    engine = folder / name
    engine.write_bytes(b"serialised plan")
    sha = onnx_sha if onnx_sha is not None else file_sha256(folder / "tiny.onnx")
    key = EngineKey("NVIDIA Orin", "8.7", "10.3.0.30", "fp16", sha)
    write_sidecar(engine, key, load_manifest(manifest_path).to_dict())
    return engine


def test_engine_kind_from_file_name() -> None:
    assert engine_kind(Path("m.orin.sm87.trt10.3.0.fp16.engine")) == "single"
    assert engine_kind(Path("m.encoder.orin.sm87.trt10.3.0.fp16.engine")) == "encoder"
    assert engine_kind(Path("m.decoder.orin.sm87.trt10.3.0.fp16.engine")) == "decoder"
    assert engine_kind(Path("encoder.orin.sm87.trt10.3.0.fp16.engine")) == "single"  # a model named "encoder"


def test_matching_key_is_accepted(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path)
    manifest = load_manifest(engine)
    # TensorRT build numbers of one release are compatible: 10.3.0.26 reads a 10.3.0.30 engine.
    sidecar = check_engine_key(engine, manifest, "NVIDIA Orin", "8.7", "10.3.0.26")
    assert sidecar["precision"] == "fp16"


@pytest.mark.parametrize(
    ("gpu", "capability", "version", "precision", "field"),
    [
        ("NVIDIA GeForce RTX 4090", "8.9", "10.3.0", None, "gpu_name"),
        ("NVIDIA Orin", "8.9", "10.3.0", None, "compute_capability"),
        ("NVIDIA Orin", "8.7", "8.6.2", None, "tensorrt_version"),
        ("NVIDIA Orin", "8.7", "10.3.0", "fp32", "precision"),
    ],
)
def test_key_mismatch_names_the_field_and_the_fix(tmp_path: Path, gpu, capability, version, precision, field) -> None:
    engine = _fake_engine(tmp_path)
    with pytest.raises(BackendError) as error:
        check_engine_key(engine, load_manifest(engine), gpu, capability, version, precision)
    assert field in str(error.value) and "rebuild" in str(error.value) and ENGINE_NAME in str(error.value)


def test_stale_engine_after_re_export_is_refused(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, onnx_sha="0" * 64)
    with pytest.raises(BackendError, match="onnx_sha256"):
        check_engine_key(engine, load_manifest(engine), "NVIDIA Orin", "8.7", "10.3.0")
    (tmp_path / "tiny.onnx").unlink()  # engine shipped without its ONNX: the other fields decide
    check_engine_key(engine, load_manifest(engine), "NVIDIA Orin", "8.7", "10.3.0")


def test_missing_sidecar_is_a_model_error(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path)
    Path(str(engine) + ".json").unlink()
    with pytest.raises(ModelError, match="not found"):
        check_engine_key(engine, load_manifest(tmp_path / "tiny.onnx"), "NVIDIA Orin", "8.7", "10.3.0")


@pytest.mark.skipif(HAVE_TENSORRT, reason="checks the message shown where TensorRT is absent")
def test_without_tensorrt_the_error_says_what_is_missing(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path)
    with pytest.raises(BackendError, match="TensorRT") as error:
        create_backend("tensorrt", engine)
    assert "onnxruntime" in str(error.value)


@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
def test_real_engine_matches_onnxruntime_from_several_threads(tmp_path: Path) -> None:
    from efc_core.export.tensorrt_build import build_engine

    build_models(tmp_path, flow=(1.0, -2.0), mix=0.5, occ_weight=1.0, occ_bias=0.0, streaming=True)
    reference = create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1)
    # tf32=False: the 1e-4 tolerances below are exact-FP32 ones; TF32 (TensorRT's default on Orin
    # and Hopper) rounds products to a 10-bit mantissa and would fail them without being wrong.
    single_engine = build_engine(tmp_path / "tiny.onnx", precision="fp32", tf32=False)
    encoder_engine = build_engine(tmp_path / "tiny.encoder.onnx", precision="fp32", tf32=False)
    build_engine(tmp_path / "tiny.decoder.onnx", precision="fp32", min_shape=(64, 64), opt_shape=(64, 64),
                 max_shape=(64, 64), tf32=False)
    rng = np.random.default_rng(0)
    prev, cur = (rng.normal(size=(1, 3, 64, 64)).astype(np.float32) for _ in range(2))
    expected = reference.infer(prev, cur)
    for options in ({}, {"cuda_graph": True}):
        backend = create_backend("tensorrt", single_engine, **options)
        results = []
        # Calls from other threads (ROS callbacks) are marshalled to the CUDA thread.
        threads = [threading.Thread(target=lambda: results.append(backend.infer(prev, cur))) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 3
        for outputs in results:
            np.testing.assert_allclose(outputs.flow, expected.flow, atol=1e-4)
            np.testing.assert_allclose(outputs.seg_logits, expected.seg_logits, atol=1e-4)
        if options:
            from efc_core.runtime.cuda_layer import import_cudart

            try:
                import_cudart()
            except ImportError:
                assert not backend.cuda_graph_active  # pycuda: no capture, said in a warning
            else:
                assert backend.cuda_graph_active and backend.launch_counts()["single"]["graph"] == 3
        backend.close()
    streaming = create_backend("tensorrt", encoder_engine)
    assert streaming.supports_streaming
    outputs = streaming.decode(streaming.encode(prev), streaming.encode(cur))
    np.testing.assert_allclose(outputs.occlusion, expected.occlusion, atol=1e-4)
    streaming.close()
