"""Photo textures of the synthetic video: the photograph bank and how often each source is drawn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from efc_core.data.synthetic import SyntheticConfig, generate_sequence
from efc_core.data.synthetic_scene import photo_bank, scikit_image_photo_dir


def _write_photos(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for index in range(count):
        # A colour ramp plus noise: varied enough for the bank's "is this a photograph" check.
        ramp = np.linspace(0, 200, 128, dtype=np.float32)[None, :, None] + np.linspace(0, 50, 96)[:, None, None]
        noise = rng.uniform(-25, 25, (96, 128, 3)).astype(np.float32)
        photo = np.clip(ramp * [1.0, 0.6, 0.3] + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"photo_{index}.png"), photo)


def test_bundled_photographs_are_drawn_as_often_as_asked(tmp_path: Path) -> None:
    if scikit_image_photo_dir() is None:
        pytest.skip("scikit-image is not installed (requirements-dev.txt)")
    _write_photos(tmp_path / "mine", 3)
    bundled_count = len(photo_bank(()))
    plain = photo_bank((str(tmp_path / "mine"),))
    weighted = photo_bank((str(tmp_path / "mine"),), bundled_weight=4)
    assert len(plain) == bundled_count + 3
    assert len(weighted) == 4 * bundled_count + 3
    # Repeats are the same arrays (no copies), and the folder's photographs appear once each.
    assert len({id(photo) for photo in weighted}) == len(plain)
    mine = [photo for photo in weighted if photo.shape[:2] == (96, 128)]
    assert len(mine) == 3


def test_bundled_photo_weight_is_validated_and_used_by_the_generator(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bundled_photo_weight"):
        SyntheticConfig(bundled_photo_weight=0)
    if scikit_image_photo_dir() is None:
        pytest.skip("scikit-image is not installed (requirements-dev.txt)")
    _write_photos(tmp_path / "mine", 2)
    config = SyntheticConfig(height=32, width=48, num_frames=2, texture_source="photo",
                             texture_dirs=(str(tmp_path / "mine"),), bundled_photo_weight=3)
    sequence = generate_sequence(config, seed=0)
    assert sequence.frames.shape == (2, 32, 48, 3) and sequence.frames.dtype == np.uint8
    with pytest.raises(ValueError, match="does not exist"):
        photo_bank((str(tmp_path / "missing"),))
