"""Cityscapes video snippets with the sparse ``gtFine`` labels (docs/METHOD.md §4).

On-disk layout (the official ``leftImg8bit_sequence_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``)::

    root/leftImg8bit_sequence/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    root/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png

Each snippet has 30 frames of which the 20th (index 19) is labelled. Snippets are found as runs of
consecutive frame numbers, labelled frames as those with a ``gtFine`` file, so nothing assumes 30.
Label ids are mapped to the 19 train ids (others: 255) with the table that
``torchvision.datasets.Cityscapes.classes`` carries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import Cityscapes

from efc_core.contract import IGNORE_LABEL
from efc_core.data.datasets.pair_sampling import PairSamplingConfig
from efc_core.data.datasets.sample import RawSample, read_label_png, read_rgb
from efc_core.data.datasets.sequence_pairs import SequencePairDataset

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"


def _train_classes() -> list:
    """torchvision's Cityscapes classes that have a train id (0..18), in train-id order."""
    return sorted((c for c in Cityscapes.classes if 0 <= c.train_id < IGNORE_LABEL), key=lambda c: c.train_id)


CITYSCAPES_CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in _train_classes())
CITYSCAPES_PALETTE: np.ndarray = np.array([c.color for c in _train_classes()], dtype=np.uint8)


def label_id_to_train_id_table() -> np.ndarray:
    """(256,) uint8 lookup table: Cityscapes label id -> train id, 255 for ignored ids.

    Built from ``torchvision.datasets.Cityscapes.classes``; ids without a class (and the
    ``license plate`` entry, id -1) map to 255.
    """
    table = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for cls in Cityscapes.classes:
        if 0 <= cls.id < 256 and 0 <= cls.train_id < IGNORE_LABEL:
            table[cls.id] = cls.train_id
    return table


_LABEL_TABLE = label_id_to_train_id_table()


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map an (H, W) uint8 ``labelIds`` image to (H, W) uint8 train ids (255 = ignore)."""
    if label_ids.dtype != np.uint8:
        raise ValueError(f"label ids must be uint8, got {label_ids.dtype}")
    return _LABEL_TABLE[label_ids]


def _parse_frame_name(name: str, suffix: str) -> tuple[str, int, int]:
    """``aachen_000000_000019_leftImg8bit.png`` -> ("aachen", 0, 19)."""
    city, sequence, frame = name[: -len(suffix)].rsplit("_", 2)
    return city, int(sequence), int(frame)


class CityscapesSequenceDataset(SequencePairDataset):
    """Frame pairs from Cityscapes ``leftImg8bit_sequence`` around the labelled frames.

    Args:
        root: folder holding ``leftImg8bit_sequence/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test`` (test labels are placeholders: use it unlabelled).
        pair_config: pair sampling (default: t in [1, 5] both ways, as many unlabelled pairs as
            labelled ones).
        transform: raw sample -> sample (default ToTensor).
    """

    class_names = CITYSCAPES_CLASS_NAMES
    palette = CITYSCAPES_PALETTE

    def __init__(self, root: str | Path, split: str = "train", pair_config: PairSamplingConfig | None = None,
                 transform: Callable[[RawSample], Any] | None = None) -> None:
        super().__init__(pair_config or PairSamplingConfig(), transform)
        self.root = Path(root)
        image_dir = self.root / "leftImg8bit_sequence" / split
        if not image_dir.is_dir():
            raise FileNotFoundError(f"Cityscapes sequence folder not found: {image_dir} "
                                    f"(expected root/leftImg8bit_sequence/{split}/<city>/*{_IMAGE_SUFFIX})")
        label_dir = self.root / "gtFine" / split
        labelled_keys = {_parse_frame_name(p.name, _LABEL_SUFFIX) for p in label_dir.glob(f"*/*{_LABEL_SUFFIX}")}

        frames_by_snippet: dict[tuple[str, int], list[int]] = defaultdict(list)
        for path in image_dir.glob(f"*/*{_IMAGE_SUFFIX}"):
            city, sequence, frame = _parse_frame_name(path.name, _IMAGE_SUFFIX)
            frames_by_snippet[(city, sequence)].append(frame)

        # A snippet is a run of consecutive frame numbers; a hole starts a new one, so that no
        # pair spans missing frames.
        self.sequences: list[tuple[str, int, list[int]]] = []
        for (city, sequence), frames in sorted(frames_by_snippet.items()):
            frames.sort()
            run = [frames[0]]
            for frame in frames[1:]:
                if frame != run[-1] + 1:
                    self.sequences.append((city, sequence, run))
                    run = []
                run.append(frame)
            self.sequences.append((city, sequence, run))
        self.split = split
        self._set_sequences(
            [[(city, seq, frame) in labelled_keys for frame in frames] for city, seq, frames in self.sequences],
            source=str(image_dir),
        )

    def _stem(self, sequence: int, index: int) -> tuple[str, str]:
        city, seq, frames = self.sequences[sequence]
        return city, f"{city}_{seq:06d}_{frames[index]:06d}"

    def frame_path(self, sequence: int, index: int) -> Path:
        """Path of frame ``index`` of snippet ``sequence``."""
        city, stem = self._stem(sequence, index)
        return self.root / "leftImg8bit_sequence" / self.split / city / f"{stem}{_IMAGE_SUFFIX}"

    def label_path(self, sequence: int, index: int) -> Path:
        """Path of the ``labelIds`` file of a labelled frame."""
        city, stem = self._stem(sequence, index)
        return self.root / "gtFine" / self.split / city / f"{stem}{_LABEL_SUFFIX}"

    def read_frame(self, sequence: int, index: int) -> np.ndarray:
        return read_rgb(self.frame_path(sequence, index))

    def read_label(self, sequence: int, index: int) -> np.ndarray:
        return label_ids_to_train_ids(read_label_png(self.label_path(sequence, index)))
