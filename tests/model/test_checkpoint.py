"""Checkpoints: round trip to identical outputs, stored metadata, and ModelError on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from efc_core.errors import ModelError
from efc_core.model import build_model
from efc_core.model.checkpoint import REQUIRED_KEYS, load_checkpoint, load_model, save_checkpoint
from efc_core.model.config import ModelConfig

torch.set_num_threads(1)
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], dtype=np.uint8)


def _save(path: Path, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("tiny", 3, seg_decoder_channels=24, **overrides)
    # Non-default BatchNorm statistics, so a lost buffer would change the outputs.
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    save_checkpoint(path, model, train_config={"lr": 1e-3, "out": Path("/tmp/run"), "crop": (64, 64)}, step=42,
                    metrics={"miou": np.float32(0.5)}, class_names=("bg", "car", "road"), palette=PALETTE,
                    optimizer_state=optimizer.state_dict())
    return model.eval()


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "run" / "model.pt"
    model = _save(path)
    loaded, checkpoint = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config and loaded.config.seg_decoder_channels == 24
    assert set(REQUIRED_KEYS) <= set(checkpoint)
    assert checkpoint["step"] == 42 and checkpoint["class_names"] == ["bg", "car", "road"]
    assert checkpoint["palette"] == PALETTE.tolist()
    assert checkpoint["train_config"] == {"lr": 1e-3, "out": "/tmp/run", "crop": [64, 64]}
    assert checkpoint["metrics"]["miou"] == pytest.approx(0.5)
    assert isinstance(checkpoint["git_revision"], str) and checkpoint["git_revision"]
    assert "param_groups" in checkpoint["optimizer_state"]
    image1, image2 = torch.randn(1, 3, 64, 128), torch.randn(1, 3, 64, 128)
    with torch.inference_mode():
        expected, got = model(image1, image2), loaded(image1, image2)
    assert torch.equal(expected.seg_logits2, got.seg_logits2)
    assert torch.equal(expected.forward.flow, got.forward.flow)
    assert torch.equal(expected.backward.occlusion, got.backward.occlusion)


def test_config_dict_round_trip() -> None:
    config = build_model("tiny", 7, aux_head=True).config
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_missing_and_corrupt_files_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    _save(corrupt)
    data = corrupt.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(ModelError, match="cannot read"):
        load_model(corrupt)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError):
        load_checkpoint(garbage)


def test_wrong_format_raises_model_error(tmp_path: Path) -> None:
    not_a_dict = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_a_dict)
    with pytest.raises(ModelError, match="list"):
        load_checkpoint(not_a_dict)
    bare_state = tmp_path / "state.pt"
    torch.save(build_model("tiny", 3).state_dict(), bare_state)
    with pytest.raises(ModelError, match="lacks keys"):
        load_checkpoint(bare_state)
    path = tmp_path / "model.pt"
    _save(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model_config"]["num_classes"] = 4  # classifier shape no longer matches
    mismatched = tmp_path / "mismatched.pt"
    torch.save(checkpoint, mismatched)
    with pytest.raises(ModelError, match="does not match"):
        load_model(mismatched)
    checkpoint["format_version"] = 99
    torch.save(checkpoint, mismatched)
    with pytest.raises(ModelError, match="format_version"):
        load_checkpoint(mismatched)
