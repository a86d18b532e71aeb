"""training.camvid_eval on fixture trees in CamVid's SegNet layout: per-sequence scores, no pairing across a cut."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.data.fixtures import write_camvid_tree
from training.camvid_eval import camvid_sequence, evaluate_camvid, format_table

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = REPO_ROOT / "models" / "efc_camvid_tiny.onnx"

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} is not shipped in this checkout")

SEQUENCES = {"0001TP": 3, "0006R0": 3}


def _copy_sequence(source: Path, target: Path, sequence: str) -> None:
    """``target/train`` and ``target/trainannot`` holding only ``sequence``'s files of ``source``."""
    for folder in ("train", "trainannot"):
        (target / folder).mkdir(parents=True)
        for path in (source / folder).glob(f"{sequence}_*"):
            shutil.copy(path, target / folder / path.name)


def test_sequence_is_the_file_name_before_the_first_underscore() -> None:
    assert camvid_sequence(Path("val/0016E5_07959.jpg")) == "0016E5"
    assert camvid_sequence(Path("Seq05VD_f00660.png")) == "Seq05VD"


def test_each_sequence_is_scored_as_if_it_ran_alone(tmp_path: Path) -> None:
    # With temporal fusion on, a first frame paired with the previous sequence's last frame would
    # be fused with an unrelated segmentation and score differently from the sequence run alone.
    root = tmp_path / "all"
    write_camvid_tree(root, "train", sequences=SEQUENCES, size=(72, 96))
    report = evaluate_camvid(MODEL, root, fusions=(0.5,), threads=1, split="train")
    run = report["runs"][0]
    assert report["frames"] == 6
    assert set(run["miou_per_sequence"]) == set(SEQUENCES)
    for sequence in SEQUENCES:
        alone_root = tmp_path / sequence
        _copy_sequence(root, alone_root, sequence)
        alone = evaluate_camvid(MODEL, alone_root, fusions=(0.5,), threads=1, split="train")["runs"][0]
        assert run["miou_per_sequence"][sequence] == pytest.approx(alone["miou"], abs=1e-9), sequence
    assert "mIoU sequence 0006R0" in format_table(report)
