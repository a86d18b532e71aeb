"""PyTorch checkpoint -> ONNX graphs + manifest (docs/DEPLOY.md, Export).

``export_onnx`` writes, for ``X.onnx``:

* ``X.onnx``: the single graph ``(prev, cur) -> (seg_logits, flow, occlusion)`` (InferenceWrapper);
* with ``split=True`` the streaming pair ``X.encoder.onnx`` (``image -> feat4, feat8, feat16``)
  and ``X.decoder.onnx`` (``prev_feat4 .. cur_feat16 -> seg_logits, flow, occlusion``);
* ``X.json``: the manifest (names, shapes, dtypes, normalisation, classes, palette, direction,
  opset, checkpoint hash, training config, metrics).

Normalisation stays outside the graph (the manifest's mean/std; ``efc_core.preprocess`` applies
it while resizing, in one pass). Opset is 16 or 17: from opset 20 PyTorch writes GridSample
``mode="linear"``, which the TensorRT ONNX parser treats as nearest (TensorRT issue #4646).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from efc_core.contract import (
    ENCODER_FEATURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_CUR,
    INPUT_IMAGE,
    INPUT_PREV,
    OUTPUT_NAMES,
    PAD_MULTIPLE,
    FlowDirection,
    check_padded_size,
    decoder_input_name,
)
from efc_core.errors import ModelError
from efc_core.export.sizes import DEFAULT_SIZE, DYNAMIC_TRACE_SIZE, export_size, training_size  # noqa: F401 (re-export)
from efc_core.runtime.engine_plan import SUPPORTED_OPSETS, check_opset, file_sha256  # noqa: F401 (re-export)
from efc_core.manifest import Manifest, save_manifest
from efc_core.model.checkpoint import load_model
from efc_core.model.wrappers import EncoderWrapper, InferenceWrapper, PairDecoderWrapper

LOG = logging.getLogger(__name__)


def _export_graph(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict | None, opset: int) -> None:
    """Trace ``module`` to ``path`` (TorchScript exporter) and validate the file."""
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python ints taken from shapes; shapes are checked by the tests
        # at two resolutions instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ModelError(f"exported graph {path} fails the ONNX checker: {error}") from error


def _spatial_axes(names: list[str], stride: int) -> dict[str, dict[int, str]]:
    return {name: {2: f"height_{stride}", 3: f"width_{stride}"} for name in names}


def export_onnx(
    checkpoint_path: str | Path,
    output_path: str | Path,
    *,
    height: int | None = None,
    width: int | None = None,
    dynamic: bool = False,
    opset: int = 17,
    direction: str | FlowDirection = "forward",
    split: bool = True,
) -> Manifest:
    """Export a checkpoint's network to ONNX and write its manifest next to it.

    Args:
        checkpoint_path: checkpoint written by ``efc_core.model.checkpoint.save_checkpoint``.
        output_path: ``X.onnx``; the encoder/decoder go to ``X.encoder.onnx`` / ``X.decoder.onnx``
            and the manifest to ``X.json``.
        height, width: fixed input size in pixels, multiples of 64 (default: the checkpoint's
            training size, else 256x320). With ``dynamic`` they are only the traced size.
        dynamic: export H and W as dynamic axes (any multiple of 64 at run time).
        opset: 16 or 17 (see module docstring).
        direction: ``"forward"`` (prev -> cur on prev's grid) or ``"backward"``.
        split: also export the streaming encoder + pair decoder.

    Returns:
        The manifest that was written.
    """
    check_opset(opset)
    direction = FlowDirection.parse(direction)
    output_path = Path(output_path)
    if output_path.suffix != ".onnx":
        raise ValueError(f"output must be a .onnx file, got {output_path}")
    if (height is None) != (width is None):
        raise ValueError(f"give both height and width or neither, got height={height}, width={width}")
    model, checkpoint = load_model(checkpoint_path)
    if height is None:
        height, width = export_size(checkpoint, dynamic)
    check_padded_size(height, width, PAD_MULTIPLE, "export input")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    stem = output_path.name.removesuffix(".onnx")
    generator = torch.Generator().manual_seed(0)
    image = lambda: torch.randn(1, 3, height, width, generator=generator)  # noqa: E731

    graphs = {"single": output_path.name}
    outputs = list(OUTPUT_NAMES)
    axes = {**_spatial_axes([INPUT_PREV, INPUT_CUR], 1), **_spatial_axes(outputs, 1)} if dynamic else None
    _export_graph(InferenceWrapper(model, direction).eval(), (image(), image()), output_path,
                  [INPUT_PREV, INPUT_CUR], outputs, axes, opset)
    if split:
        encoder = EncoderWrapper(model).eval()
        features = list(ENCODER_FEATURES)
        strides = [int(name.removeprefix("feat")) for name in features]
        axes = {**_spatial_axes([INPUT_IMAGE], 1), **{n: _spatial_axes([n], s)[n] for n, s in zip(features, strides)}}
        encoder_path = output_path.with_name(f"{stem}.encoder.onnx")
        _export_graph(encoder, (image(),), encoder_path, [INPUT_IMAGE], features, axes if dynamic else None, opset)
        with torch.no_grad():
            prev_features, cur_features = encoder(image()), encoder(image())
        decoder_inputs = [decoder_input_name(which, n) for which in (INPUT_PREV, INPUT_CUR) for n in features]
        axes = {name: _spatial_axes([name], strides[i % len(features)])[name] for i, name in enumerate(decoder_inputs)}
        axes.update(_spatial_axes(outputs, 1))
        decoder_path = output_path.with_name(f"{stem}.decoder.onnx")
        _export_graph(PairDecoderWrapper(model, direction).eval(), (*prev_features, *cur_features), decoder_path,
                      decoder_inputs, outputs, axes if dynamic else None, opset)
        graphs.update(encoder=encoder_path.name, decoder=decoder_path.name)

    config = model.config
    class_names = list(checkpoint.get("class_names") or [f"class_{i}" for i in range(config.num_classes)])
    tensors = [INPUT_PREV, INPUT_CUR, INPUT_IMAGE, *outputs, *ENCODER_FEATURES]
    manifest = Manifest(
        model_name=stem, preset=config.preset, graphs=graphs,
        input_height=None if dynamic else height, input_width=None if dynamic else width,
        pad_multiple=PAD_MULTIPLE, pad_mode=config.pad_mode, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
        input_names=[INPUT_PREV, INPUT_CUR], output_names=outputs, feature_names=list(ENCODER_FEATURES),
        dtypes=dict.fromkeys(tensors, "float32"), num_classes=config.num_classes, class_names=class_names,
        palette=[[int(v) for v in colour] for colour in checkpoint.get("palette") or []],
        flow_direction=direction.value, opset=opset, checkpoint_sha256=file_sha256(checkpoint_path),
        training_config=dict(checkpoint.get("train_config") or {}), metrics=dict(checkpoint.get("metrics") or {}),
        training_data=list(((checkpoint.get("train_config") or {}).get("data") or {}).get("provenance") or []),
    )
    manifest_path = save_manifest(manifest, output_path)
    LOG.info("exported %s -> %s (%s)", checkpoint_path, ", ".join(graphs.values()), manifest_path.name)
    manifest.source_path = manifest_path.resolve()
    return manifest
