"""Tiny hand-built ONNX models with analytically known outputs, for the runtime tests.

Single graph (inputs ``prev``, ``cur``; K = 3 classes):

* ``seg_logits = cur`` (a 1x1 identity convolution: the class is the strongest normalised channel);
* ``flow = (dx, dy) + mix * (prev[0] - cur[0], prev[1] - cur[1])`` (constant when ``mix = 0``);
* ``occlusion = sigmoid(occ_weight * (prev[2] - cur[2]) + occ_bias)``.

Streaming pair (``streaming=True``): the encoder maps ``image`` to ``feat4 = avgpool4(image)``
(true stride 4, like the real network, so TensorRT profiles fit) plus pooled ``feat8``,
``feat16``; the decoder applies the formulas above to ``upsample4(prev_feat4)`` /
``upsample4(cur_feat4)``, and the single graph of such an export does the same to its images,
so both paths give the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from efc_core.manifest import Manifest, save_manifest

NUM_CLASSES = 3
OPSET = 17


def _image_info(name: str, height: int | None, width: int | None, channels: int = 3) -> Any:
    dims = [1, channels, height if height is not None else "H", width if width is not None else "W"]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _head_nodes(prev: str, cur: str, flow: tuple[float, float], mix: float, occ_weight: float, occ_bias: float):
    """Nodes + initializers computing seg_logits, flow, occlusion from two 3-channel tensors."""
    seg_weight = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    flow_weight = np.zeros((2, 6, 1, 1), np.float32)
    flow_weight[0, 0], flow_weight[0, 3] = mix, -mix
    flow_weight[1, 1], flow_weight[1, 4] = mix, -mix
    occ_w = np.zeros((1, 6, 1, 1), np.float32)
    occ_w[0, 2], occ_w[0, 5] = occ_weight, -occ_weight
    initializers = [
        numpy_helper.from_array(seg_weight, "seg_w"),
        numpy_helper.from_array(flow_weight, "flow_w"),
        numpy_helper.from_array(np.asarray(flow, np.float32), "flow_b"),
        numpy_helper.from_array(occ_w, "occ_w"),
        numpy_helper.from_array(np.asarray([occ_bias], np.float32), "occ_b"),
    ]
    nodes = [
        helper.make_node("Conv", [cur, "seg_w"], ["seg_logits"]),
        helper.make_node("Concat", [prev, cur], ["pair"], axis=1),
        helper.make_node("Conv", ["pair", "flow_w", "flow_b"], ["flow"]),
        helper.make_node("Conv", ["pair", "occ_w", "occ_b"], ["occ_logit"]),
        helper.make_node("Sigmoid", ["occ_logit"], ["occlusion"]),
    ]
    return nodes, initializers


def _pool_upsample_nodes(source: str, target: str, pool: bool) -> tuple[list[Any], list[Any]]:
    """``target = upsample4(avgpool4(source))`` (or just the upsampling when ``pool`` is False)."""
    pooled = f"{source}_pooled"
    nodes = [helper.make_node("AveragePool", [source], [pooled], kernel_shape=[4, 4], strides=[4, 4])] if pool else []
    scales = numpy_helper.from_array(np.asarray([1, 1, 4, 4], np.float32), f"{source}_scales")
    nodes.append(helper.make_node("Resize", [pooled if pool else source, "", f"{source}_scales"], [target],
                                  mode="nearest"))
    return nodes, [scales]


def _outputs(height: int | None, width: int | None) -> list[Any]:
    return [
        _image_info("seg_logits", height, width, NUM_CLASSES),
        _image_info("flow", height, width, 2),
        _image_info("occlusion", height, width, 1),
    ]


def _save(graph: Any, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every ONNX Runtime release the targets ship
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_models(
    folder: Path,
    *,
    name: str = "tiny",
    height: int | None = 64,
    width: int | None = 64,
    flow: tuple[float, float] = (0.0, 0.0),
    mix: float = 0.0,
    occ_weight: float = 0.0,
    occ_bias: float = -8.0,
    single: bool = True,
    streaming: bool = False,
    input_names: tuple[str, str] = ("prev", "cur"),
    flow_direction: str = "forward",
) -> Path:
    """Write the requested graphs and their manifest into ``folder``; return the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, str] = {}
    if single:
        sources = list(input_names)
        nodes, inits = [], []
        if streaming:
            for index, source in enumerate(input_names):
                more_nodes, more_inits = _pool_upsample_nodes(source, f"{source}_up", pool=True)
                nodes, inits, sources[index] = nodes + more_nodes, inits + more_inits, f"{source}_up"
        head_nodes, head_inits = _head_nodes(sources[0], sources[1], flow, mix, occ_weight, occ_bias)
        nodes, inits = nodes + head_nodes, inits + head_inits
        graph = helper.make_graph(nodes, name, [_image_info(n, height, width) for n in input_names],
                                  _outputs(height, width), inits)
        _save(graph, folder / f"{name}.onnx")
        graphs["single"] = f"{name}.onnx"
    if streaming:
        encoder = helper.make_graph(
            [
                helper.make_node("AveragePool", ["image"], ["feat4"], kernel_shape=[4, 4], strides=[4, 4]),
                helper.make_node("AveragePool", ["feat4"], ["feat8"], kernel_shape=[2, 2], strides=[2, 2]),
                helper.make_node("AveragePool", ["feat8"], ["feat16"], kernel_shape=[2, 2], strides=[2, 2]),
            ],
            f"{name}_encoder",
            [_image_info("image", height, width)],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, None, None])
             for n in ("feat4", "feat8", "feat16")],
        )
        _save(encoder, folder / f"{name}.encoder.onnx")
        nodes, inits = [], []
        for which in ("prev", "cur"):
            more_nodes, more_inits = _pool_upsample_nodes(f"{which}_feat4", f"{which}_up", pool=False)
            nodes, inits = nodes + more_nodes, inits + more_inits
        head_nodes, head_inits = _head_nodes("prev_up", "cur_up", flow, mix, occ_weight, occ_bias)
        nodes, inits = nodes + head_nodes, inits + head_inits
        feature_inputs = [
            helper.make_tensor_value_info(f"{which}_{feat}", TensorProto.FLOAT, [1, 3, None, None])
            for which in ("prev", "cur") for feat in ("feat4", "feat8", "feat16")
        ]
        decoder = helper.make_graph(nodes, f"{name}_decoder", feature_inputs, _outputs(None, None), inits)
        _save(decoder, folder / f"{name}.decoder.onnx")
        graphs["encoder"] = f"{name}.encoder.onnx"
        graphs["decoder"] = f"{name}.decoder.onnx"
    manifest = Manifest(
        model_name=name,
        preset="test",
        graphs=graphs,
        input_height=height,
        input_width=width,
        num_classes=NUM_CLASSES,
        class_names=["red", "green", "blue"],
        palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
        flow_direction=flow_direction,
        opset=OPSET,
    )
    return save_manifest(manifest, folder / f"{name}.json")
