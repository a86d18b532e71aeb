"""``efc export`` / ``efc verify`` against hostile files and paths (issue 13, cases 3 and 5), run for real."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from tests.bag.test_data_safety import assert_one_line_error, run_efc
from tests.fs_helpers import read_only_folder

REPO_ROOT = Path(__file__).resolve().parents[2]
UNSAFE_ADVICE = ("weights_only` set to `False`", "Re-running", "add_safe_globals", "trust")


class NotAModel:
    """A class whose pickled instance safe loading must refuse."""


def test_export_to_a_read_only_folder_fails_in_one_line_before_loading(tmp_path, demo_model):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"PK\x03\x04 not loaded: the output is checked first")
    with read_only_folder(tmp_path) as read_only:
        result = run_efc("export", checkpoint, "-o", read_only / "model.onnx")
    assert_one_line_error(result, "Read-only file system")


@pytest.mark.parametrize("content, fragment", [
    (b"this is a text file, not a checkpoint\n", "not a PyTorch checkpoint"),
    (bytes(range(256)) * 20, "not a PyTorch checkpoint"),
])
def test_export_of_a_file_that_is_no_checkpoint_says_what_it_is_not(tmp_path, content, fragment):
    path = tmp_path / "input.pt"
    path.write_bytes(content)
    line = assert_one_line_error(run_efc("export", path, "-o", tmp_path / "x.onnx"), fragment, str(path))
    assert "KeyError" not in line


def test_export_of_a_wrong_kind_of_pt_never_suggests_unsafe_loading(tmp_path):
    torch = pytest.importorskip("torch")
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": NotAModel()}, pickled)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    state_dict = tmp_path / "state_dict.pt"
    torch.save(collections.OrderedDict(weight=torch.zeros(2)), state_dict)
    for path, fragment in ((pickled, "safe loading"), (tensor, "holds a Tensor"), (state_dict, "bare state_dict")):
        result = run_efc("export", path, "-o", tmp_path / "x.onnx")
        line = assert_one_line_error(result, "not an EFC checkpoint" if path != tensor else fragment, fragment)
        assert not any(advice in result.stderr for advice in UNSAFE_ADVICE), line


def test_export_does_not_replace_an_existing_model_without_overwrite(tmp_path):
    checkpoint = REPO_ROOT / "models" / "efc_demo_tiny.pt"
    if not checkpoint.is_file():
        pytest.skip("the shipped demo checkpoint is not in this checkout")
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"someone's model")
    (tmp_path / "model.json").write_text("{}")
    assert_one_line_error(run_efc("export", checkpoint, "-o", existing), "already exist", "--overwrite")
    assert existing.read_bytes() == b"someone's model"
    assert_one_line_error(run_efc("export", checkpoint, "-o", checkpoint.with_suffix(".pt")), "is the input")


def test_verify_json_path_is_checked_before_the_comparison(tmp_path, demo_model):
    a_file = tmp_path / "a_file"
    a_file.write_text("x\n")
    result = run_efc("verify", demo_model, demo_model, "--synthetic", "3", "--json", a_file / "report.json")
    assert_one_line_error(result, "cannot write")
    assert "PASS" not in result.stdout
