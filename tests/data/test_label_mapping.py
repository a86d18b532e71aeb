"""Cityscapes labelId -> trainId and CamVid void mapping against the official tables."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.data.datasets.camvid import CAMVID_CLASS_NAMES, camvid_label_to_train_id
from efc_core.data.datasets.cityscapes import (
    CITYSCAPES_CLASS_NAMES, CITYSCAPES_PALETTE, label_id_to_train_id_table, label_ids_to_train_ids,
)

# The official 19-class table (cityscapesScripts helpers/labels.py), typed here independently of
# torchvision so that the test can catch a wrong derivation.
OFFICIAL_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


@pytest.mark.parametrize("label_id, train_id",
                         [(7, 0), (8, 1), (26, 13), (33, 18), (0, 255), (4, 255), (9, 255), (29, 255)])
def test_named_cityscapes_ids(label_id: int, train_id: int) -> None:
    assert label_id_to_train_id_table()[label_id] == train_id


def test_whole_table_matches_official() -> None:
    table = label_id_to_train_id_table()
    expected = np.full(256, 255, np.uint8)
    for label_id, train_id in OFFICIAL_TRAIN_IDS.items():
        expected[label_id] = train_id
    np.testing.assert_array_equal(table, expected)


def test_class_names_and_palette_in_train_id_order() -> None:
    assert len(CITYSCAPES_CLASS_NAMES) == 19 and CITYSCAPES_PALETTE.shape == (19, 3)
    assert CITYSCAPES_CLASS_NAMES[0] == "road" and CITYSCAPES_CLASS_NAMES[13] == "car"
    assert CITYSCAPES_CLASS_NAMES[18] == "bicycle"
    assert tuple(CITYSCAPES_PALETTE[0]) == (128, 64, 128)


def test_image_mapping_and_dtype_check() -> None:
    ids = np.array([[7, 8, 26], [33, 0, 255]], np.uint8)
    np.testing.assert_array_equal(label_ids_to_train_ids(ids), [[0, 1, 13], [18, 255, 255]])
    with pytest.raises(ValueError, match="uint8"):
        label_ids_to_train_ids(ids.astype(np.int32))


def test_camvid_void_becomes_ignore() -> None:
    assert len(CAMVID_CLASS_NAMES) == 11
    label = np.array([[0, 10, 11, 12]], np.uint8)
    np.testing.assert_array_equal(camvid_label_to_train_id(label), [[0, 10, 255, 255]])
