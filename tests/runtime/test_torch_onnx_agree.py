"""The torch and ONNX Runtime backends of one checkpoint run at the same size and agree by default.

Before, ``create_backend("torch", ckpt)`` ran at the camera's own size (padded) while the ONNX
export of the same checkpoint ran at its fixed size, so the two defaults saw different pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from efc_core.perceptor import Perceptor
from efc_core.runtime import create_backend

pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "models" / "efc_demo_tiny.pt"
EXPORT = REPO / "models" / "efc_demo_tiny.onnx"
#: ``efc verify``'s tolerances for two FP32 backends (efc_ros.verify.STRICT).
TOL_LOGITS, TOL_EPE = 1e-3, 0.01


def _frames(size: tuple[int, int], count: int = 3) -> list[np.ndarray]:
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    sequence = generate_sequence(SyntheticConfig(height=size[0], width=size[1], num_frames=count), seed=3)
    return list(sequence.frames)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_torch_and_onnxruntime_of_one_checkpoint_run_at_one_size_and_agree() -> None:
    torch_backend = create_backend("torch", CHECKPOINT, device="cpu", threads=1)
    onnx_backend = create_backend("onnxruntime", EXPORT, threads=1)
    export_size = (onnx_backend.manifest.input_height, onnx_backend.manifest.input_width)
    assert (torch_backend.manifest.input_height, torch_backend.manifest.input_width) == export_size
    assert torch_backend.manifest.pad_mode == onnx_backend.manifest.pad_mode
    frames = _frames((150, 500))   # a wide camera: letterboxed, so padding is compared too
    perceptors = [Perceptor(torch_backend), Perceptor(onnx_backend)]
    sizes = {p.geometry_for(frames[0].shape[:2]).model_size for p in perceptors}
    assert sizes == {export_size} and export_size != (150, 500)
    raw: list[list] = [[], []]
    for index, perceptor in enumerate(perceptors):
        # Record the raw network outputs each backend produced inside Perceptor.process.
        backend = perceptor.backend
        original = backend.decode
        backend.decode = lambda prev, cur, original=original, out=raw[index]: out.append(original(prev, cur)) or out[-1]
        results = [perceptor.process(frame, stamp * 50_000_000, "camera") for stamp, frame in enumerate(frames)]
        raw[index].append(results)
    logits_diff = max(float(np.abs(a.seg_logits - b.seg_logits).max()) for a, b in zip(raw[0][:-1], raw[1][:-1]))
    epe = max(float(np.linalg.norm(a.flow - b.flow, axis=1).mean()) for a, b in zip(raw[0][:-1], raw[1][:-1]))
    assert logits_diff < TOL_LOGITS and epe < TOL_EPE, (logits_diff, epe)
    for ours, theirs in zip(raw[0][-1], raw[1][-1]):
        assert np.mean(ours.segmentation == theirs.segmentation) > 0.999
    print(f"torch vs onnxruntime at {export_size}: logits max |diff| {logits_diff:.2e}, flow EPE {epe:.2e} px")


def test_dynamic_torch_backend_keeps_the_old_any_size_behaviour() -> None:
    backend = create_backend("torch", CHECKPOINT, device="cpu", threads=1, dynamic=True)
    assert backend.manifest.is_dynamic and backend.manifest.pad_mode == "replicate"
