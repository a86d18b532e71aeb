"""PyTorch backend: runs a training checkpoint directly (development and export verification).

A thin adapter around ``efc_core.model``: the checkpoint is loaded with
``efc_core.model.checkpoint.load_model`` and run through the same fixed-signature wrappers the
ONNX export uses (``InferenceWrapper``, ``EncoderWrapper``, ``PairDecoderWrapper``), so its numbers
are the reference the other backends are compared with. torch is imported only here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

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
)
from efc_core.errors import BackendError, ModelError
from efc_core.manifest import Manifest, load_manifest, manifest_path_for
from efc_core.runtime.base import Features, ModelOutputs, check_image_tensor, outputs_from_named
from efc_core.runtime.engine_plan import file_sha256


LOG = logging.getLogger(__name__)


def _matching_export(checkpoint_path: Path) -> Manifest | None:
    """The manifest of an ONNX export of this very checkpoint next to it (same SHA-256), or None."""
    path = manifest_path_for(checkpoint_path)
    if not path.is_file():
        return None
    try:
        manifest = load_manifest(path)
    except ModelError as error:
        LOG.warning("ignoring %s next to checkpoint %s: %s", path, checkpoint_path, error)
        return None
    if manifest.checkpoint_sha256 != file_sha256(checkpoint_path):
        return None
    return manifest


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise BackendError(f"backend 'torch' needs PyTorch ({error}); use 'onnxruntime' or 'tensorrt' "
                           "with an exported model on machines without it") from None
    return torch


class TorchBackend:
    """Runs an ``EFCNet`` checkpoint.

    Args:
        model_path: checkpoint written by ``efc_core.model.checkpoint.save_checkpoint``.
        device: torch device string ("cpu", "cuda", "cuda:1"); default CUDA when available.
        flow_direction: "forward" (prev -> cur on prev's grid) or "backward" (docs/METHOD.md §6).
        threads: CPU threads for torch (None leaves torch's default).
        dynamic: False (default): run at the size of this checkpoint's ONNX export, so that the
            torch and ONNX Runtime backends of one checkpoint see the same pixels and agree: the
            size (and pad mode) of the export's manifest next to the checkpoint (``X.pt`` ->
            ``X.json``) when its ``checkpoint_sha256`` is this checkpoint's, else the size
            ``efc export`` would choose (``efc_core.export.sizes.export_size``: the training
            size). True: accept any multiple of ``PAD_MULTIPLE`` like a dynamic export (the
            ``Perceptor`` then pads the frame, or uses its ``input_size``).
    """

    name = "torch"
    precision = "fp32"
    supports_streaming = True

    def __init__(self, model_path: str | Path, *, device: str | None = None,
                 flow_direction: str = FlowDirection.FORWARD.value, threads: int | None = None,
                 dynamic: bool = False) -> None:
        torch = _import_torch()
        from efc_core.export.sizes import export_size
        from efc_core.model.checkpoint import load_model
        from efc_core.model.wrappers import EncoderWrapper, InferenceWrapper, PairDecoderWrapper

        self._torch = torch
        if threads is not None:
            torch.set_num_threads(int(threads))
        direction = FlowDirection.parse(flow_direction)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, checkpoint = load_model(model_path)
        model = model.to(self.device)
        self._pair = InferenceWrapper(model, direction).eval()
        self._encoder = EncoderWrapper(model).eval()
        self._decoder = PairDecoderWrapper(model, direction).eval()
        config = model.config
        export = None if dynamic else _matching_export(Path(model_path))
        if export is not None:
            (height, width), pad_mode = (export.input_height, export.input_width), export.pad_mode
        else:
            (height, width) = (None, None) if dynamic else export_size(checkpoint)
            pad_mode = str(getattr(config, "pad_mode", "replicate"))
        LOG.info("torch backend runs %s at %s (%s)", Path(model_path).name,
                 "any size" if height is None else f"{height}x{width}",
                 f"as its export {export.source_path}" if export is not None else "dynamic" if dynamic
                 else "its export size")
        self.manifest = Manifest(
            model_name=Path(model_path).stem,
            preset=str(getattr(config, "preset", "")),
            graphs={"single": Path(model_path).name},
            input_height=height,
            input_width=width,
            pad_multiple=PAD_MULTIPLE,
            pad_mode=pad_mode,
            mean=list(IMAGENET_MEAN),
            std=list(IMAGENET_STD),
            feature_names=list(ENCODER_FEATURES),
            num_classes=int(config.num_classes),
            class_names=[str(n) for n in checkpoint.get("class_names") or []],
            palette=[[int(v) for v in colour] for colour in checkpoint.get("palette") or []],
            flow_direction=direction.value,
            training_config=dict(checkpoint.get("train_config") or {}),
            metrics=dict(checkpoint.get("metrics") or {}),
            source_path=Path(model_path).resolve(),
        )

    def _tensor(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    def _outputs(self, tensors: tuple[Any, Any, Any]) -> ModelOutputs:
        # The wrappers return (seg_logits, flow, occlusion): the contract's order.
        arrays = {name: t.detach().float().cpu().numpy() for name, t in zip(OUTPUT_NAMES, tensors)}
        return outputs_from_named(arrays, self.manifest, self.name)

    def infer(self, prev: np.ndarray, cur: np.ndarray) -> ModelOutputs:
        check_image_tensor(prev, INPUT_PREV, self.manifest)
        check_image_tensor(cur, INPUT_CUR, self.manifest)
        with self._torch.inference_mode():
            return self._outputs(self._pair(self._tensor(prev), self._tensor(cur)))

    def encode(self, image: np.ndarray) -> Features:
        """Features stay torch tensors on the model's device (no copies between encode and decode)."""
        check_image_tensor(image, INPUT_IMAGE, self.manifest)
        with self._torch.inference_mode():
            return tuple(self._encoder(self._tensor(image)))

    def decode(self, prev_features: Features, cur_features: Features) -> ModelOutputs:
        with self._torch.inference_mode():
            return self._outputs(self._decoder(*prev_features, *cur_features))

    def close(self) -> None:
        self._pair = self._encoder = self._decoder = None  # type: ignore[assignment]
