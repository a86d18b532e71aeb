"""Which frame pairs a sequence dataset yields (docs/METHOD.md §3 "Sample pairs", §4).

EFC trains on pairs ``(I_i, I_{i+t})`` with ``t in [1, 5]`` in either direction, from the same
video. Labels are sparse (Cityscapes: one frame of 30), so the pairs are built in two groups:

* **labelled pairs**: every labelled frame ``i`` first, paired with each neighbour ``i + d*t``
  (``d`` in ``directions``, ``t`` in ``[min_gap_frames, max_gap_frames]``) that exists in its sequence;
* **unlabelled pairs**: pairs in which neither frame is labelled (they train flow, occlusion and
  temporal consistency only), drawn without replacement from every such pair, as many as
  ``unlabelled_per_labelled`` times the number of labelled pairs (``None``: all of them).

A pair never crosses a sequence boundary. The draw is deterministic for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import InitVar, dataclass

import numpy as np


@dataclass(frozen=True)
class PairSamplingConfig:
    """How pairs are formed; see the module docstring.

    Attributes:
        min_gap_frames, max_gap_frames: range of ``|t|`` in frames of the sequence (paper: 1..5).
        directions: signs of ``t`` to use: ``(1, -1)`` both (paper), ``(1,)`` the next frame(s)
            only, ``(-1,)`` the previous one(s) (e.g. evaluation with the labelled frame as
            "current" and the one before it as "previous").
        unlabelled_per_labelled: unlabelled pairs per labelled pair; ``0`` none, ``None`` all.
        seed: seed of the unlabelled draw.
        min_gap, max_gap: the spelling of the training configs' ``pairs:`` options (YAML keys that
            recipes already use); when given they set ``min_gap_frames`` / ``max_gap_frames``.
    """

    min_gap_frames: int = 1
    max_gap_frames: int = 5
    directions: tuple[int, ...] = (1, -1)
    unlabelled_per_labelled: float | None = 1.0
    seed: int = 0
    min_gap: InitVar[int | None] = None
    max_gap: InitVar[int | None] = None

    def __post_init__(self, min_gap: int | None, max_gap: int | None) -> None:
        # Frozen: the YAML spellings are copied with object.__setattr__, once, at construction.
        if min_gap is not None:
            object.__setattr__(self, "min_gap_frames", min_gap)
        if max_gap is not None:
            object.__setattr__(self, "max_gap_frames", max_gap)
        if not 1 <= self.min_gap_frames <= self.max_gap_frames:
            raise ValueError(f"need 1 <= min_gap_frames <= max_gap_frames, got min_gap_frames={self.min_gap_frames}, "
                             f"max_gap_frames={self.max_gap_frames}")
        unique_signs = len(set(self.directions)) == len(self.directions)
        if not self.directions or any(d not in (1, -1) for d in self.directions) or not unique_signs:
            raise ValueError(f"directions must be a non-empty subset of (1, -1), got {self.directions}")
        if self.unlabelled_per_labelled is not None and self.unlabelled_per_labelled < 0:
            raise ValueError(f"unlabelled_per_labelled must be >= 0 or None, got {self.unlabelled_per_labelled}")

    def offsets(self) -> list[int]:
        """Signed gaps in a fixed order: ``+min..+max`` then ``-min..-max`` (as ``directions`` say)."""
        return [d * t for d in self.directions for t in range(self.min_gap_frames, self.max_gap_frames + 1)]


@dataclass(frozen=True)
class FramePair:
    """Frames ``first`` (image1) and ``second`` (image2) of sequence ``sequence``."""

    sequence: int
    first: int
    second: int
    labelled_first: bool

    @property
    def gap(self) -> int:
        """Signed frame gap ``t = second - first`` (negative: image2 precedes image1)."""
        return self.second - self.first


def build_pairs(labelled: Sequence[Sequence[bool]], config: PairSamplingConfig) -> list[FramePair]:
    """Labelled pairs first, then the unlabelled draw (see the module docstring).

    Args:
        labelled: per sequence, one bool per frame in temporal order (True: the frame has labels).
        config: gaps, directions and the unlabelled share.

    Returns:
        The pairs; ``FramePair.labelled_first`` is True exactly for the labelled group.
    """
    offsets = config.offsets()
    labelled_pairs: list[FramePair] = []
    unlabelled_pool: list[FramePair] = []
    for sequence, flags in enumerate(labelled):
        flags = np.asarray(flags, dtype=bool)
        length = len(flags)
        for first in range(length):
            for offset in offsets:
                second = first + offset
                if not 0 <= second < length:
                    continue
                if flags[first]:
                    labelled_pairs.append(FramePair(sequence, first, second, True))
                elif not flags[second]:
                    unlabelled_pool.append(FramePair(sequence, first, second, False))
    if config.unlabelled_per_labelled is None:
        return labelled_pairs + unlabelled_pool
    wanted = min(len(unlabelled_pool), int(round(config.unlabelled_per_labelled * len(labelled_pairs))))
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(unlabelled_pool), size=wanted, replace=False)) if wanted else []
    return labelled_pairs + [unlabelled_pool[i] for i in chosen]


def split_by_time_gaps(stamps_ns: Sequence[int], max_gap_s: float) -> list[list[int]]:
    """Cut a sorted timestamp list into runs whose consecutive stamps are at most ``max_gap_s`` apart.

    Args:
        stamps_ns: nanosecond timestamps, non-decreasing.
        max_gap_s: largest allowed step in seconds; a longer one (a dropout, a paused recording)
            starts a new sequence so that no pair spans it.

    Returns:
        Lists of indices into ``stamps_ns``, one per sequence, in order.
    """
    if max_gap_s <= 0:
        raise ValueError(f"max_gap_s must be > 0, got {max_gap_s}")
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    if stamps.size == 0:
        return []
    if np.any(np.diff(stamps) < 0):
        raise ValueError("stamps_ns must be sorted in non-decreasing order")
    breaks = np.nonzero(np.diff(stamps) > int(max_gap_s * 1e9))[0] + 1
    return [run.tolist() for run in np.split(np.arange(stamps.size), breaks)]
