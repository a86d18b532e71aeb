"""EFCNet: shapes for every preset, gradient flow, determinism, batched directions, wrappers, export."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from efc_core.contract import FlowDirection
from efc_core.model import EncoderWrapper, InferenceWrapper, PairDecoderWrapper, build_model
from efc_core.model.config import PRESETS

torch.set_num_threads(1)
NUM_CLASSES = 5


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tiny", NUM_CLASSES).eval()


def _images(batch: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, height, width, generator=generator),
            torch.randn(batch, 3, height, width, generator=generator))


@pytest.mark.parametrize("preset", [
    "tiny", "realtime", pytest.param("paper", marks=pytest.mark.slow),
])
def test_output_shapes_at_a_size_that_needs_padding(preset: str) -> None:
    torch.manual_seed(0)
    model = build_model(preset, NUM_CLASSES).eval()
    image1, image2 = _images(2, 70, 100)  # padded to 128 x 128 inside
    with torch.inference_mode():
        out = model(image1, image2)
    assert out.seg_logits1.shape == out.seg_logits2.shape == (2, NUM_CLASSES, 70, 100)
    channels = PRESETS[preset].seg_decoder_channels
    assert out.seg_features1.shape == (2, channels, 16, 16)
    assert ("aux_logits1" in out.extras) == PRESETS[preset].aux_head
    for prediction in (out.forward, out.backward):
        assert prediction.flow.shape == (2, 2, 70, 100)
        assert prediction.occlusion.shape == (2, 1, 70, 100)
        assert 0 <= float(prediction.occlusion.min()) and float(prediction.occlusion.max()) <= 1
        assert len(prediction.flows) == len(prediction.occlusions) == len(model.flow_strides)
        for stride, flow, occlusion in zip(model.flow_strides, prediction.flows, prediction.occlusions):
            assert flow.shape == (2, 2, 128 // stride, 128 // stride)
            assert occlusion.shape == (2, 1, 128 // stride, 128 // stride)
    assert model.flow_strides[-1] == 4


def test_flags_skip_branches(tiny_model) -> None:
    image1, image2 = _images(1, 64, 64)
    with torch.inference_mode():
        seg_only = tiny_model(image1, image2, with_flow=False)
        forward_only = tiny_model(image1, image2, both_directions=False)
    assert seg_only.forward is None and seg_only.backward is None
    assert forward_only.forward is not None and forward_only.backward is None


def test_gradients_reach_encoder_both_decoders_and_every_occlusion_head() -> None:
    torch.manual_seed(0)
    model = build_model("tiny", NUM_CLASSES).train()
    image1, image2 = _images(2, 64, 128)
    out = model(image1, image2)
    labels = torch.randint(0, NUM_CLASSES, (2, 64, 128))
    loss = F.cross_entropy(out.seg_logits1, labels) + out.seg_features2.pow(2).mean()
    for prediction in (out.forward, out.backward):
        loss = loss + prediction.flow.abs().mean() + sum(o.mean() for o in prediction.occlusions)
    loss.backward()

    def grad_norm(module: torch.nn.Module) -> float:
        return float(sum(p.grad.norm() for p in module.parameters() if p.grad is not None))

    assert grad_norm(model.encoder.stem) > 0 and grad_norm(model.encoder.layer1) > 0
    assert grad_norm(model.segmentation_head.classifier) > 0
    assert grad_norm(model.segmentation_head.layer4) > 0
    assert grad_norm(model.flow_decoder.context) > 0
    for index, head in enumerate(model.flow_decoder.occlusion_heads):
        assert grad_norm(head) > 0, f"occlusion head {index} got no gradient"
    for index, estimator in enumerate(model.flow_decoder.estimators):
        assert grad_norm(estimator) > 0, f"estimator {index} got no gradient"
    missing = [name for name, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0]
    assert missing == []


@pytest.mark.parametrize("detached", [False, True])
def test_a_detached_occlusion_head_trains_only_itself_and_infers_the_same(detached: bool) -> None:
    torch.manual_seed(0)
    model = build_model("tiny", NUM_CLASSES, occlusion_head_detached=detached).train()
    image1, image2 = _images(2, 64, 128)
    out = model(image1, image2, both_directions=False)
    sum(o.mean() for o in out.forward.occlusions).backward()  # an occlusion loss alone
    heads = [p.grad for head in model.flow_decoder.occlusion_heads for p in head.parameters()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in heads)
    rest = [p.grad for name, p in model.named_parameters() if "occlusion_heads" not in name]
    reached = any(g is not None and float(g.abs().sum()) > 0 for g in rest)
    assert reached is not detached  # estimators and encoder: untouched only when detached
    # Same weights, same outputs: the switch changes training only.
    twin = build_model("tiny", NUM_CLASSES, occlusion_head_detached=not detached).eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        a, b = model.eval()(image1, image2), twin(image1, image2)
    assert torch.equal(a.forward.occlusion, b.forward.occlusion) and torch.equal(a.forward.flow, b.forward.flow)


def test_deterministic_in_eval_mode(tiny_model) -> None:
    image1, image2 = _images(1, 64, 128)
    with torch.inference_mode():
        first, second = tiny_model(image1, image2), tiny_model(image1, image2)
    assert torch.equal(first.seg_logits1, second.seg_logits1)
    assert torch.equal(first.forward.flow, second.forward.flow)
    assert torch.equal(first.backward.occlusion, second.backward.occlusion)


def test_batched_directions_equal_separate_passes(tiny_model) -> None:
    image1, image2 = _images(2, 64, 128, seed=3)
    with torch.inference_mode():
        out = tiny_model(image1, image2)
        feats1, feats2 = tiny_model.encode(image1), tiny_model.encode(image2)
        prediction_fw = tiny_model.estimate_flow(feats1, feats2, (64, 128))
        prediction_bw = tiny_model.estimate_flow(feats2, feats1, (64, 128))
        seg2 = tiny_model.segment(feats2, (64, 128))
    for batched, separate in ((out.forward, prediction_fw), (out.backward, prediction_bw)):
        torch.testing.assert_close(batched.flow, separate.flow, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(batched.occlusion, separate.occlusion, atol=1e-5, rtol=1e-4)
        for a, b in zip(batched.flows, separate.flows):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.seg_logits2, seg2.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.seg_features2, seg2.features, atol=1e-4, rtol=1e-4)
    # The two directions differ (the test would pass trivially if they were the same tensor).
    assert not torch.allclose(out.forward.flow, out.backward.flow)


def test_padding_then_cropping_equals_running_on_a_padded_image(tiny_model) -> None:
    image1, image2 = _images(1, 60, 120, seed=5)
    padded1 = F.pad(image1, (0, 8, 0, 4), mode="replicate")
    padded2 = F.pad(image2, (0, 8, 0, 4), mode="replicate")
    with torch.inference_mode():
        cropped = tiny_model(image1, image2)
        full = tiny_model(padded1, padded2)
    assert cropped.forward.flow.shape[-2:] == (60, 120) and full.forward.flow.shape[-2:] == (64, 128)
    torch.testing.assert_close(cropped.forward.flow, full.forward.flow[..., :60, :120], atol=1e-5, rtol=0)
    torch.testing.assert_close(cropped.backward.occlusion, full.backward.occlusion[..., :60, :120], atol=1e-6, rtol=0)
    torch.testing.assert_close(cropped.seg_logits1, full.seg_logits1[..., :60, :120], atol=1e-5, rtol=0)
    # The pyramid stays on the padded grid.
    torch.testing.assert_close(cropped.forward.flows[-1], full.forward.flows[-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("direction", [FlowDirection.FORWARD, FlowDirection.BACKWARD])
def test_wrappers_match_forward_and_each_other(tiny_model, direction: FlowDirection) -> None:
    image1, image2 = _images(1, 64, 128, seed=7)
    with torch.inference_mode():
        out = tiny_model(image1, image2)
        single = InferenceWrapper(tiny_model, direction)(image1, image2)
        encoder = EncoderWrapper(tiny_model)
        streamed = PairDecoderWrapper(tiny_model, direction)(*encoder(image1), *encoder(image2))
    expected = out.forward if direction is FlowDirection.FORWARD else out.backward
    torch.testing.assert_close(single[0], out.seg_logits2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(single[1], expected.flow, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(single[2], expected.occlusion, atol=1e-5, rtol=1e-4)
    for a, b in zip(single, streamed):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_wrapper_rejects_unpadded_input(tiny_model) -> None:
    image1, image2 = _images(1, 70, 128)
    with pytest.raises(ValueError, match="70x128"):
        InferenceWrapper(tiny_model)(image1, image2)
    with pytest.raises(ValueError, match="sideways"):
        InferenceWrapper(tiny_model, "sideways")


def test_build_model_rejects_unknown_preset_and_override() -> None:
    with pytest.raises(ValueError, match="huge"):
        build_model("huge", 3)
    with pytest.raises(ValueError, match="decoder_depth"):
        build_model("tiny", 3, decoder_depth=2)
    with pytest.raises(ValueError, match="resnet10"):
        build_model("tiny", 3, pretrained_backbone=True)
    with pytest.raises(ValueError, match=r"\(64, 16, 4\)"):
        build_model("tiny", 3, flow_strides=(64, 16, 4))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # tracer warnings about shape guards, known and harmless
def test_onnx_export_of_all_wrappers_runs_in_onnxruntime(tiny_model) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    image1, image2 = _images(1, 64, 128, seed=9)
    encoder = EncoderWrapper(tiny_model).eval()
    with torch.no_grad():  # inference-mode tensors cannot be traced by the exporter
        features1, features2 = encoder(image1), encoder(image2)
    cases = {
        "single": (InferenceWrapper(tiny_model, "forward"), (image1, image2)),
        "encoder": (encoder, (image1,)),
        "decoder": (PairDecoderWrapper(tiny_model, "backward"), (*features1, *features2)),
    }
    for name, (wrapper, inputs) in cases.items():
        buffer = io.BytesIO()
        torch.onnx.export(wrapper.eval(), inputs, buffer, opset_version=17, dynamo=False)
        graph = onnx.load_from_string(buffer.getvalue()).graph
        modes = {a.s for n in graph.node if n.op_type == "GridSample" for a in n.attribute if a.name == "mode"}
        assert modes <= {b"bilinear"}, f"{name}: GridSample modes {modes}"
        session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
        feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
        with torch.no_grad():
            reference = wrapper(*inputs)
        for got, want in zip(session.run(None, feed), reference):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("backbone", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_segmentation_stride_16_dilates_layer4_of_basic_and_bottleneck_resnets(backbone: str) -> None:
    from efc_core.model.config import ModelConfig
    from efc_core.model.encoder import build_backbone

    for stride in (16, 32):
        encoder, layer4, channels = build_backbone(ModelConfig(backbone=backbone, segmentation_stride=stride))
        with torch.inference_mode():
            features = encoder.eval()(torch.randn(1, 3, 64, 64))
            out = layer4.eval()(features.feat16)
        assert [f.shape[-1] for f in features.as_tuple()] == [16, 8, 4]
        assert out.shape == (1, channels, 64 // stride, 64 // stride)
