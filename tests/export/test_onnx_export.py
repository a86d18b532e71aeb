"""ONNX export of the tiny network: ONNX Runtime against PyTorch on the same inputs, the streaming
pair against the single graph, GridSample mode at the opset, opset refusal, manifest fields.

Tolerances (float32 on CPU, random weights with a fixed seed): logits within 1e-3 absolute, flow
end-point error between the two below 0.01 px (mean) and 0.05 px (max), occlusion within 1e-3.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from efc_core.errors import ModelError
from efc_core.export.onnx_export import check_opset, export_onnx
from efc_core.runtime.engine_plan import file_sha256
from efc_core.manifest import load_manifest
from efc_core.model import InferenceWrapper, build_model
from efc_core.model.checkpoint import load_model, save_checkpoint
from efc_core.preprocess import plan_geometry, preprocess

pytestmark = pytest.mark.slow  # one dynamic export with the streaming pair takes ~10-25 s here

NUM_CLASSES = 4
LOGITS_TOL = 1e-3
EPE_MEAN_TOL = 0.01
EPE_MAX_TOL = 0.05


PROVENANCE = [{"name": "camvid", "what": "labelled frames", "terms": "non-commercial"}]


def make_checkpoint(path, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("tiny", NUM_CLASSES)
    return save_checkpoint(path, model, train_config={"seed": seed, "data": {"provenance": PROVENANCE}}, step=7,
                           metrics={"miou": 0.5},
                           class_names=["background", "car", "person", "tree"],
                           palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Dynamic export with the streaming pair, and the checkpoint it came from."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = make_checkpoint(folder / "tiny.pt")
    manifest = export_onnx(checkpoint, folder / "tiny.onnx", dynamic=True, opset=17, split=True)
    return folder, checkpoint, manifest


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_reference(checkpoint, prev: np.ndarray, cur: np.ndarray, direction: str = "forward"):
    model, _ = load_model(checkpoint)
    with torch.no_grad():
        outputs = InferenceWrapper(model, direction).eval()(torch.from_numpy(prev), torch.from_numpy(cur))
    return [tensor.numpy() for tensor in outputs]


def assert_close(onnx_outputs, torch_outputs):
    logits, flow, occlusion = onnx_outputs
    ref_logits, ref_flow, ref_occlusion = torch_outputs
    assert logits.shape == ref_logits.shape and flow.shape == ref_flow.shape
    assert np.abs(logits - ref_logits).max() < LOGITS_TOL
    epe = np.linalg.norm(flow - ref_flow, axis=1)
    assert epe.mean() < EPE_MEAN_TOL and epe.max() < EPE_MAX_TOL
    assert np.abs(occlusion - ref_occlusion).max() < 1e-3
    # The comparison means something only if the flow is not trivially zero.
    assert np.abs(ref_flow).max() > 0.1


def test_dynamic_export_matches_torch_at_two_resolutions(exported):
    folder, checkpoint, manifest = exported
    single = session(folder / manifest.graphs["single"])
    rng = np.random.default_rng(0)
    # A 100x150 camera frame needs padding to 128x192; 192x64 is a second, tall model size.
    camera = [rng.integers(0, 256, (100, 150, 3), dtype=np.uint8) for _ in range(2)]
    geometry = plan_geometry(manifest, (100, 150))
    assert geometry.model_size == (128, 192) and (geometry.content_height, geometry.content_width) == (100, 150)
    padded = [preprocess(image, geometry, manifest.mean, manifest.std) for image in camera]
    tall = [rng.standard_normal((1, 3, 192, 64)).astype(np.float32) for _ in range(2)]
    for prev, cur in (padded, tall):
        onnx_outputs = single.run(None, {"prev": prev, "cur": cur})
        assert_close(onnx_outputs, torch_reference(checkpoint, prev, cur))


def test_streaming_pair_equals_single_graph(exported):
    folder, _, manifest = exported
    single = session(folder / manifest.graphs["single"])
    encoder = session(folder / manifest.graphs["encoder"])
    decoder = session(folder / manifest.graphs["decoder"])
    rng = np.random.default_rng(1)
    prev, cur = (rng.standard_normal((1, 3, 64, 128)).astype(np.float32) for _ in range(2))
    features = {which: encoder.run(None, {"image": image}) for which, image in (("prev", prev), ("cur", cur))}
    assert [f.shape for f in features["prev"]][0][2:] == (16, 32)  # feat4 at stride 4
    feed = {f"{which}_{name}": value for which in ("prev", "cur")
            for name, value in zip(manifest.feature_names, features[which])}
    assert sorted(feed) == sorted(inp.name for inp in decoder.get_inputs())
    streamed = decoder.run(None, feed)
    direct = single.run(None, {"prev": prev, "cur": cur})
    for a, b in zip(streamed, direct):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_gridsample_is_bilinear_at_the_chosen_opset(exported):
    folder, _, manifest = exported
    for graph in ("single", "decoder"):
        model = onnx.load(str(folder / manifest.graphs[graph]))
        assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {17}
        grid_samples = [node for node in model.graph.node if node.op_type == "GridSample"]
        assert grid_samples, "the flow decoder warps features: GridSample nodes expected"
        for node in grid_samples:
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attributes["mode"] == b"bilinear"
            assert attributes["align_corners"] == 1


@pytest.mark.parametrize("opset", [15, 18, 20, 21])
def test_unsupported_opsets_are_refused(opset, tmp_path):
    with pytest.raises(ValueError, match=f"opset {opset}"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx", opset=opset)
    with pytest.raises(ValueError, match="linear"):
        check_opset(20)


def test_manifest_fields(exported):
    folder, checkpoint, manifest = exported
    loaded = load_manifest(folder / "tiny.onnx")
    assert loaded.to_dict() == manifest.to_dict()
    assert loaded.graphs == {"single": "tiny.onnx", "encoder": "tiny.encoder.onnx", "decoder": "tiny.decoder.onnx"}
    assert loaded.input_height is None and loaded.input_width is None and loaded.pad_multiple == 64
    assert loaded.input_names == ["prev", "cur"] and loaded.output_names == ["seg_logits", "flow", "occlusion"]
    assert loaded.feature_names == ["feat4", "feat8", "feat16"] and loaded.dtype_of("prev") == "float32"
    assert loaded.num_classes == NUM_CLASSES and loaded.class_names == ["background", "car", "person", "tree"]
    assert loaded.palette[1] == [255, 0, 0] and loaded.preset == "tiny"
    assert loaded.flow_direction == "forward" and loaded.opset == 17
    assert loaded.checkpoint_sha256 == file_sha256(checkpoint)
    assert loaded.training_config == {"seed": 0, "data": {"provenance": PROVENANCE}} and loaded.metrics == {"miou": 0.5}
    # The recipe's statement of its data and terms travels with the deployed model.
    assert loaded.training_data == PROVENANCE
    inputs = {i.name: i.shape for i in session(folder / "tiny.onnx").get_inputs()}
    assert set(inputs) == {"prev", "cur"} and inputs["prev"][:2] == [1, 3]
    assert all(isinstance(dim, str) for dim in inputs["prev"][2:])  # dynamic H, W
    for kind in ("single", "encoder", "decoder"):
        graph = session(loaded.graph_path(kind))
        loaded.check_graph_io([i.name for i in graph.get_inputs()], [o.name for o in graph.get_outputs()], kind)


def test_fixed_size_backward_export(tmp_path):
    torch.set_num_threads(1)
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", seed=3)
    manifest = export_onnx(checkpoint, tmp_path / "fixed.onnx", height=64, width=128, direction="backward", split=False)
    assert manifest.graphs == {"single": "fixed.onnx"} and (manifest.input_height, manifest.input_width) == (64, 128)
    assert manifest.flow_direction == "backward"
    graph = session(tmp_path / "fixed.onnx")
    assert graph.get_inputs()[0].shape == [1, 3, 64, 128]
    rng = np.random.default_rng(2)
    prev, cur = (rng.standard_normal((1, 3, 64, 128)).astype(np.float32) for _ in range(2))
    assert_close(graph.run(None, {"prev": prev, "cur": cur}), torch_reference(checkpoint, prev, cur, "backward"))


def test_bad_arguments(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="multiples of 64"):
        export_onnx(make_checkpoint(tmp_path / "t.pt"), tmp_path / "x.onnx", height=100, width=128)
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(tmp_path / "t.pt", tmp_path / "x.bin")
