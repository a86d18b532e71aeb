"""ONNX Runtime backend on hand-built ONNX graphs with known outputs (real ORT inference)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from efc_core.errors import BackendError, InputError, ModelError
from efc_core.runtime import Backend, create_backend

from . import build_models


def _images(seed: int, size=(64, 64)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=(1, 3, *size)).astype(np.float32) for _ in range(2))  # type: ignore[return-value]


def test_single_graph_outputs_match_the_analytic_model(tmp_path: Path) -> None:
    manifest_path = build_models(tmp_path, flow=(1.5, -2.0), mix=0.5, occ_weight=2.0, occ_bias=0.0)
    backend = create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1)
    assert isinstance(backend, Backend)
    assert backend.name == "onnxruntime" and backend.precision == "fp32" and not backend.supports_streaming
    assert backend.manifest.source_path == manifest_path.resolve()
    prev, cur = _images(0)
    outputs = backend.infer(prev, cur)
    np.testing.assert_allclose(outputs.seg_logits, cur, atol=1e-6)
    np.testing.assert_allclose(outputs.flow[0, 0], 1.5 + 0.5 * (prev[0, 0] - cur[0, 0]), atol=1e-5)
    np.testing.assert_allclose(outputs.flow[0, 1], -2.0 + 0.5 * (prev[0, 1] - cur[0, 1]), atol=1e-5)
    expected_occ = 1.0 / (1.0 + np.exp(-2.0 * (prev[0, 2] - cur[0, 2])))
    np.testing.assert_allclose(outputs.occlusion[0, 0], expected_occ, atol=1e-5)


def test_session_is_configured_as_documented(tmp_path: Path) -> None:
    import onnxruntime as ort

    build_models(tmp_path)
    backend = create_backend("onnxruntime", tmp_path / "tiny.json", intra_op_threads=1)
    options = backend._sessions["single"].get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert backend.providers[-1] == "CPUExecutionProvider"
    alias = create_backend("onnxruntime", tmp_path / "tiny.onnx", threads=2)
    assert alias._sessions["single"].get_session_options().intra_op_num_threads == 2
    with pytest.raises(ValueError, match=r"no option\(s\) \['num_threads'\].*intra_op_threads"):
        create_backend("onnxruntime", tmp_path / "tiny.onnx", num_threads=2)
    with pytest.raises(BackendError, match="NoSuchExecutionProvider"):
        create_backend("onnxruntime", tmp_path / "tiny.onnx", providers=["NoSuchExecutionProvider"])


def test_streaming_pair_equals_single_graph(tmp_path: Path) -> None:
    build_models(tmp_path, flow=(3.0, 1.0), mix=0.7, occ_weight=1.5, single=True, streaming=True)
    backend = create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1)
    assert backend.supports_streaming
    prev, cur = _images(1)
    single = backend.infer(prev, cur)
    features_prev, features_cur = backend.encode(prev), backend.encode(cur)
    assert [f.shape for f in features_cur] == [(1, 3, 16, 16), (1, 3, 8, 8), (1, 3, 4, 4)]
    streamed = backend.decode(features_prev, features_cur)
    for name in ("seg_logits", "flow", "occlusion"):
        np.testing.assert_allclose(getattr(streamed, name), getattr(single, name), atol=1e-6)


def test_streaming_only_export_still_infers(tmp_path: Path) -> None:
    build_models(tmp_path, flow=(1.0, 1.0), single=False, streaming=True)
    backend = create_backend("onnxruntime", tmp_path / "tiny.encoder.onnx", intra_op_threads=1)
    prev, cur = _images(2)
    np.testing.assert_allclose(backend.infer(prev, cur).flow, 1.0, atol=1e-6)


def test_wrong_backend_name_lists_the_choices(tmp_path: Path) -> None:
    build_models(tmp_path)
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'.*onnxruntime, tensorrt, torch"):
        create_backend("tensorflow", tmp_path / "tiny.onnx")


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file .*nothing\.onnx does not exist"):
        create_backend("onnxruntime", tmp_path / "nothing.onnx")


def test_model_without_manifest_is_a_clear_error(tmp_path: Path) -> None:
    build_models(tmp_path)
    (tmp_path / "tiny.json").unlink()
    with pytest.raises(ModelError, match=r"manifest .*tiny\.json not found"):
        create_backend("onnxruntime", tmp_path / "tiny.onnx")


def test_manifest_whose_inputs_differ_from_the_graph(tmp_path: Path) -> None:
    build_models(tmp_path, input_names=("image_a", "image_b"))   # the manifest still says prev, cur
    with pytest.raises(ModelError) as error:
        create_backend("onnxruntime", tmp_path / "tiny.onnx")
    text = str(error.value)
    assert "tiny.onnx" in text and "image_a" in text and "missing ['cur', 'prev']" in text


def test_manifest_with_another_fixed_size_than_the_graph(tmp_path: Path) -> None:
    manifest_path = build_models(tmp_path)
    data = json.loads(manifest_path.read_text())
    data["input_height"] = 128
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="64x64 but manifest .* says 128x64"):
        create_backend("onnxruntime", tmp_path / "tiny.onnx")


def test_manifest_of_another_model(tmp_path: Path) -> None:
    manifest_path = build_models(tmp_path)
    data = json.loads(manifest_path.read_text())
    data["graphs"] = {"single": "other.onnx"}
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"does not list model .*tiny\.onnx"):
        create_backend("onnxruntime", tmp_path / "tiny.onnx")


def test_corrupt_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    build_models(tmp_path)
    (tmp_path / "tiny.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match=r"cannot load single graph .*tiny\.onnx"):
        create_backend("onnxruntime", tmp_path / "tiny.onnx")


def test_nan_output_is_a_backend_error_naming_the_output(tmp_path: Path) -> None:
    build_models(tmp_path, occ_bias=float("nan"))
    backend = create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1)
    with pytest.raises(BackendError, match=r"output 'occlusion' has 4096 non-finite"):
        backend.infer(*_images(3))


def test_wrong_input_tensor_is_an_input_error(tmp_path: Path) -> None:
    build_models(tmp_path)
    backend = create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1)
    prev, cur = _images(4, size=(64, 128))
    with pytest.raises(InputError, match="cur is 64x128 but model 'tiny' takes 64x64"):
        backend.infer(prev[..., :64], cur)
    with pytest.raises(InputError, match=r"prev must be a \(1, 3, H, W\) array, got \(3, 64, 64\)"):
        backend.infer(prev[0, :, :, :64], cur[..., :64])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_real_tiny_network_agrees_with_the_torch_backend(tmp_path: Path, shared_data: Path) -> None:
    """Export the real (untrained) tiny EFC network; ORT single graph, ORT streaming pair and the
    PyTorch backend must give the same numbers (tolerances for float32 reassociation).
    """
    torch = pytest.importorskip("torch")
    from efc_core.export.onnx_export import export_onnx
    from efc_core.model.checkpoint import save_checkpoint
    from efc_core.model.efc_net import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("tiny", num_classes=3)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", model, train_config={}, step=0, metrics={},
                                 class_names=["a", "b", "c"], palette=[[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    export_onnx(checkpoint, tmp_path / "tiny.onnx", height=64, width=128, split=True)
    onnx_backend = create_backend("onnxruntime", tmp_path / "tiny.onnx", intra_op_threads=1)
    # dynamic: this test exports at 64x128, not at the checkpoint's default export size.
    torch_backend = create_backend("torch", checkpoint, device="cpu", threads=1, dynamic=True)
    assert onnx_backend.supports_streaming and torch_backend.supports_streaming
    prev, cur = _images(5, size=(64, 128))
    ours, reference = onnx_backend.infer(prev, cur), torch_backend.infer(prev, cur)
    streamed = onnx_backend.decode(onnx_backend.encode(prev), onnx_backend.encode(cur))
    for outputs in (ours, streamed):
        np.testing.assert_allclose(outputs.seg_logits, reference.seg_logits, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(outputs.flow, reference.flow, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(outputs.occlusion, reference.occlusion, atol=1e-4)
    torch_streamed = torch_backend.decode(torch_backend.encode(prev), torch_backend.encode(cur))
    np.testing.assert_allclose(torch_streamed.flow, reference.flow, atol=1e-4)

    # Real frames (Middlebury RubberWhale, 388x584) through the whole pipeline.
    import cv2

    from efc_core.perceptor import Perceptor

    frames = [cv2.cvtColor(cv2.imread(str(shared_data / "middlebury-rubberwhale" / name)), cv2.COLOR_BGR2RGB)
              for name in ("frame10.png", "frame11.png")]
    perceptor = Perceptor(onnx_backend)
    results = [perceptor.process(frame, index * 100_000_000, "camera") for index, frame in enumerate(frames)]
    assert results[1].flow.shape == (388, 584, 2) and np.isfinite(results[1].flow).all()
    assert results[1].segmentation.shape == (388, 584) and results[1].segmentation.max() < 3
