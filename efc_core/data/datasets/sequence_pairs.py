"""Base class of the datasets that pair frames of (sparsely labelled) video sequences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from efc_core.data.datasets.pair_sampling import FramePair, PairSamplingConfig, build_pairs
from efc_core.data.datasets.sample import RawSample, make_raw_sample
from efc_core.data.datasets.transforms import ToTensor


class SequencePairDataset(Dataset):
    """Pairs of frames from sequences, built by :func:`build_pairs`; one sample dict per pair.

    Subclasses index their sequences, then call :meth:`_set_sequences` with one labelled flag per
    frame, and implement :meth:`read_frame` and :meth:`read_label`.

    Args:
        pair_config: gaps, directions and labelled/unlabelled mix.
        transform: raw sample -> sample (default: :class:`ToTensor` only).
    """

    #: Class names and RGB palette (K, 3) of the label space; None for unlabelled data.
    class_names: tuple[str, ...] | None = None
    palette: np.ndarray | None = None

    def __init__(self, pair_config: PairSamplingConfig, transform: Callable[[RawSample], Any] | None = None) -> None:
        self.pair_config = pair_config
        self.transform = transform or ToTensor()
        self.labelled: list[np.ndarray] = []
        self.pairs: list[FramePair] = []

    def _set_sequences(self, labelled: Sequence[Sequence[bool]], source: str) -> None:
        """Store the per-frame labelled flags and build the pairs; ``ValueError`` if there are none."""
        self.labelled = [np.asarray(flags, dtype=bool) for flags in labelled]
        self.pairs = build_pairs(self.labelled, self.pair_config)
        if not self.pairs:
            lengths = [len(flags) for flags in self.labelled]
            raise ValueError(
                f"no frame pairs in {source}: {len(lengths)} sequences of lengths {lengths[:10]}, "
                f"{sum(int(f.sum()) for f in self.labelled)} labelled frames, pair config {self.pair_config}"
            )

    def read_frame(self, sequence: int, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame ``index`` of sequence ``sequence``."""
        raise NotImplementedError

    def read_label(self, sequence: int, index: int) -> np.ndarray:
        """(H, W) uint8 train ids (255 ignore) of a labelled frame."""
        raise NotImplementedError

    @property
    def num_labelled_pairs(self) -> int:
        """Pairs whose first frame is labelled."""
        return sum(pair.labelled_first for pair in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def raw_sample(self, index: int) -> RawSample:
        """The untransformed sample of pair ``index``."""
        if not 0 <= index < len(self.pairs):
            raise IndexError(f"pair index {index} out of range for {len(self.pairs)} pairs")
        pair = self.pairs[index]
        flags = self.labelled[pair.sequence]
        label1 = self.read_label(pair.sequence, pair.first) if flags[pair.first] else None
        label2 = self.read_label(pair.sequence, pair.second) if flags[pair.second] else None
        return make_raw_sample(
            self.read_frame(pair.sequence, pair.first), self.read_frame(pair.sequence, pair.second),
            label1=label1, label2=label2, frame_gap=pair.gap,
        )

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.raw_sample(index))
