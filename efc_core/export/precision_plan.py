"""Which layers of a reduced-precision TensorRT engine must stay in FP32 (or FP16), decided
without TensorRT.

docs/DEPLOY.md: keep the warp grid, GridSample and the flow arithmetic in FP32 inside an FP16 engine
(FP16 grid coordinates lose up to 0.25 px at width 2048); in INT8 quantise the segmentation
branch only and keep the flow decoder in FP16/FP32.

The FP32 set is found on the ONNX graph: every node that computes a GridSample's sampling grid or
the ``flow`` output, walking backwards from those tensors and stopping at learned layers (Conv,
Gemm...), whose outputs are the flow residuals. Those nodes are the pixel grid, normalisation,
flow upsampling, scaling and residual sums: cheap element-wise work.

Which ONNX node a TensorRT layer came from (``resolve_layer_origins``), in order of trust:

1. ``layer.metadata``: onnx-tensorrt tags every layer it creates for a node with
   ``[ONNX Layer: <node name> | ...]`` (TensorRT 8.6+). The tag is *not* in the layer name.
2. the layer's output tensors: the parser names the tensors a node produces after the ONNX
   outputs in every release (later nodes look them up by that name).
3. helper layers with unnamed outputs (broadcast reshapes, index arithmetic) belong to the node
   that consumes them.
4. the layer name, only where nothing above applies: TensorRT 8.5 renames a node's extra layers
   ``<basename>_<counter>`` with one counter for the whole network, so ``/Add`` may produce a
   layer named ``/Add_3`` while the graph has a different node ``/Add_3``.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

from efc_core.contract import OUTPUT_FLOW, OUTPUT_OCCLUSION, OUTPUT_SEG_LOGITS

#: Learned (expensive) ops: the FP32 cone stops before them; their outputs may be FP16.
_BOUNDARY_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization"})

#: Name patterns of the flow arithmetic, for layers that the ONNX analysis cannot name (layers
#: TensorRT adds while parsing, graphs exported without node names).
DEFAULT_FP32_PATTERNS: tuple[str, ...] = (r"grid_?sample", r"(^|[/_.])warp", r"pixel_grid", r"(^|[/_.])grid")
#: Name patterns of the flow / occlusion branch kept out of INT8, for layers ``flow_branch_nodes``
#: cannot name (module scopes of efc_core.model's flow decoder).
DEFAULT_FLOW_BRANCH_PATTERNS: tuple[str, ...] = (
    r"flow", r"occlusion", r"^/(estimators|projections|extra_stages)\.", r"^/context/",
)

#: Layer types that compute no values of their own. Data movement (concat, slice, shuffle) is
#: still pinned when it carries grid coordinates: an FP16 concat would round them just the same.
_UNCONSTRAINED_LAYER_TYPES = frozenset({"SHAPE", "CONSTANT"})
_FLOAT_DTYPES = frozenset({"FLOAT", "HALF"})


def flow_fp32_nodes(model: "onnx.ModelProto", flow_output: str = OUTPUT_FLOW) -> set[str]:  # noqa: F821
    """Names of ONNX nodes computing GridSample grids and the flow output (the FP32 set).

    Args:
        model: a loaded ONNX model (``onnx.load``). Unnamed nodes are skipped (nothing could
            match them in TensorRT).
        flow_output: graph output holding the flow; ignored when the graph has none (encoder).

    Returns:
        Node names, GridSample nodes included, learned layers excluded.
    """
    producer = {}
    for node in model.graph.node:
        for output in node.output:
            producer[output] = node
    start_tensors = []
    chosen: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "GridSample":
            chosen.add(node.name)
            start_tensors.append(node.input[1])  # input 1 is the sampling grid
    if any(output.name == flow_output for output in model.graph.output):
        start_tensors.append(flow_output)

    queue = deque(start_tensors)
    seen_tensors: set[str] = set()
    while queue:
        tensor = queue.popleft()
        if tensor in seen_tensors or tensor not in producer:
            continue  # graph input, initializer, or already visited
        seen_tensors.add(tensor)
        node = producer[tensor]
        if node.op_type in _BOUNDARY_OPS:
            continue
        if node.op_type == "GridSample":
            # A warped *feature* feeding the flow: its grid is already queued; the sampled
            # features themselves come from the encoder and need no FP32.
            queue.append(node.input[1])
            continue
        chosen.add(node.name)
        queue.extend(name for name in node.input if name)
    chosen.discard("")
    return chosen


def _ancestors(model: "onnx.ModelProto", outputs: Iterable[str]) -> set[str]:  # noqa: F821
    """Names of every node that contributes to any of ``outputs``."""
    producer = {output: node for node in model.graph.node for output in node.output}
    queue, seen, names = deque(outputs), set(), set()
    while queue:
        tensor = queue.popleft()
        if tensor in seen or tensor not in producer:
            continue
        seen.add(tensor)
        node = producer[tensor]
        names.add(node.name)
        queue.extend(name for name in node.input if name)
    names.discard("")
    return names


def flow_branch_nodes(model: "onnx.ModelProto") -> set[str]:  # noqa: F821
    """Nodes that feed only the flow / occlusion outputs, not the segmentation (the INT8 engine
    keeps them in FP16). The shared encoder feeds both and is left to INT8; an encoder-only graph
    has no flow branch.
    """
    outputs = {output.name for output in model.graph.output}
    flow_side = _ancestors(model, outputs & {OUTPUT_FLOW, OUTPUT_OCCLUSION})
    return flow_side - _ancestors(model, outputs & {OUTPUT_SEG_LOGITS})


#: ``[ONNX Layer: /flow/Add_3]`` or ``[ONNX Layer: /flow/Add_3 | Local Function: f]``.
_METADATA_TAG = re.compile(r"\[ONNX Layer: (.+?)(?: \|[^\]]*)?\]")


def onnx_nodes_from_metadata(metadata: str | None) -> list[str]:
    """ONNX node names in a layer's metadata (several after fusion, none when absent)."""
    return _METADATA_TAG.findall(metadata or "")


@dataclass(frozen=True)
class LayerView:
    """What ``resolve_layer_origins`` needs of one network layer (no TensorRT objects)."""

    name: str
    metadata: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def resolve_layer_origins(layers: Sequence[LayerView], model: "onnx.ModelProto") -> list[str | None]:  # noqa: F821
    """The ONNX node each layer came from (None: unknown), by metadata, output tensor names,
    consumers, then name (module docstring). ``layers`` in network order.
    """
    node_names = {node.name for node in model.graph.node if node.name}
    producer = {output: node.name for node in model.graph.node for output in node.output if node.name}
    origins: list[str | None] = []
    for layer in layers:
        tagged = [name for name in onnx_nodes_from_metadata(layer.metadata) if name in node_names]
        named = [producer[tensor] for tensor in layer.outputs if tensor in producer]
        origins.append(tagged[0] if tagged else named[0] if named else None)
    consumers: dict[str, list[int]] = {}
    for index, layer in enumerate(layers):
        for tensor in layer.inputs:
            consumers.setdefault(tensor, []).append(index)
    for index in range(len(layers) - 1, -1, -1):  # consumers come later in network order
        if origins[index] is None:
            downstream = [origins[c] for tensor in layers[index].outputs for c in consumers.get(tensor, ())
                          if c > index and origins[c] is not None]
            if downstream:
                origins[index] = downstream[0]
    for index, layer in enumerate(layers):
        if origins[index] is None and layer.name in node_names:
            origins[index] = layer.name
    return origins


def _onnx_node_of_layer(layer_name: str, node_names: frozenset[str]) -> str | None:
    """The ONNX node a TensorRT layer came from: exact name, or the ``[ONNX Layer: name]`` tag
    that recent parsers append to layers they create for one node.
    """
    if layer_name in node_names:
        return layer_name
    tagged = re.search(r"\[ONNX Layer: (.+?)\]", layer_name)
    if tagged and tagged.group(1) in node_names:
        return tagged.group(1)
    return None


def layer_precision(
    layer_type: str,
    layer_name: str,
    output_dtypes: Sequence[str],
    *,
    precision: str,
    input_dtypes: Sequence[str] = (),
    fp32_nodes: Iterable[str] = (),
    fp16_nodes: Iterable[str] = (),
    fp32_patterns: Sequence[str] = DEFAULT_FP32_PATTERNS,
    flow_branch_patterns: Sequence[str] = DEFAULT_FLOW_BRANCH_PATTERNS,
    onnx_node: str | None = None,
) -> str | None:
    """Precision to force on one TensorRT layer, or None to let the builder choose.

    Args:
        layer_type: ``trt.LayerType`` member name, e.g. ``"GRID_SAMPLE"``, ``"ELEMENTWISE"``.
        layer_name: the layer's name (ONNX node name for parsed layers).
        output_dtypes: ``trt.DataType`` member names of the layer outputs (``"FLOAT"``,
            ``"HALF"``, ``"INT32"``...). Layers with non-float outputs (shape arithmetic,
            indices, masks) cannot take a float precision and are left alone.
        precision: engine precision, ``"fp32"``, ``"fp16"`` or ``"int8"``.
        input_dtypes: ``trt.DataType`` names of the layer inputs. A layer with no float input
            (a cast from indices, a fill from shapes) keeps its declared types; one that reads
            float data next to integer indices (``Gather`` of sampling coordinates) is pinned.
        fp32_nodes: ONNX node names from ``flow_fp32_nodes``.
        fp16_nodes: ONNX node names from ``flow_branch_nodes`` (used in INT8 engines).
        onnx_node: the node the layer came from (``resolve_layer_origins``). When given, the node
            sets decide; when None, the layer name and the name patterns do.

    Returns:
        ``"fp32"`` for the grid / warp / flow arithmetic, ``"fp16"`` for the rest of the flow
        branch in an INT8 engine, None otherwise.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"unknown precision {precision!r}")
    if precision == "fp32":
        return None
    if not output_dtypes or any(dtype not in _FLOAT_DTYPES for dtype in output_dtypes):
        return None
    if input_dtypes and not any(dtype in _FLOAT_DTYPES for dtype in input_dtypes):
        return None
    if layer_type == "GRID_SAMPLE":
        return "fp32"
    if layer_type in _UNCONSTRAINED_LAYER_TYPES:
        return None
    if onnx_node is not None:
        if onnx_node in frozenset(fp32_nodes):
            return "fp32"
        return "fp16" if precision == "int8" and onnx_node in frozenset(fp16_nodes) else None
    lowered = layer_name.lower()
    if _onnx_node_of_layer(layer_name, frozenset(fp32_nodes)) is not None or any(
        re.search(pattern, lowered) for pattern in fp32_patterns
    ):
        return "fp32"
    if precision == "int8" and (
        _onnx_node_of_layer(layer_name, frozenset(fp16_nodes)) is not None
        or any(re.search(pattern, lowered) for pattern in flow_branch_patterns)
    ):
        return "fp16"
    return None
