"""The model takes its pad modes and its padding check from ``efc_core.contract`` (one geometry)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from efc_core import contract
from efc_core.model import EncoderWrapper, InferenceWrapper, build_model
from efc_core.model import config as model_config


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tiny", 4).eval()


def test_model_config_accepts_exactly_the_contract_pad_modes() -> None:
    assert model_config.PAD_MODES is contract.PAD_MODES
    base = build_model("tiny", 4).config
    for mode in contract.PAD_MODES:
        assert dataclasses.replace(base, pad_mode=mode).pad_mode == mode
    with pytest.raises(ValueError, match=r"unknown pad_mode 'reflect'.*'replicate', 'zeros'"):
        dataclasses.replace(base, pad_mode="reflect")


@pytest.mark.parametrize("height, width", [(70, 128), (64, 100), (0, 64)])
def test_wrappers_refuse_unpadded_input_with_the_contract_check(tiny_model, height: int, width: int) -> None:
    with pytest.raises(ValueError) as expected:
        contract.check_padded_size(height, width, name="prev")
    image = torch.zeros(1, 3, height, width)
    with pytest.raises(ValueError) as refused:
        InferenceWrapper(tiny_model)(image, image)
    # The same message after the input's name (the wrappers name their inputs as they like).
    assert str(refused.value).split(" ", 1)[1] == str(expected.value).split(" ", 1)[1]
    with pytest.raises(ValueError, match=f"image size {height}x{width} \\(HxW\\) must be positive multiples of 64"):
        EncoderWrapper(tiny_model)(image)
