"""Training pairs ``(I_i, I_{i+t})`` from synthetic layered video (docs/METHOD.md §3-§4).

Every sample is the dict of ``docs/ARCHITECTURE.md`` ("Training samples"). Pairs follow the
paper's sampling: a gap ``t in [min_gap, max_gap]`` in either direction, never across a sequence
boundary, and -- for a configurable share of samples -- anchored on a labelled frame that comes
first in the pair, so that sparse labels (``label_every`` N) still reach every batch. Labels of
frames that are not ``labelled`` are hidden (255): that is the sparse-label setting EFC targets.

A sample depends only on ``(seed, split, index)``, so shuffling, workers, several ranks and resumed
runs all see the same data. Sequences are generated on demand and kept in a small LRU cache.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from efc_core.contract import IGNORE_LABEL
from efc_core.data.synthetic import SyntheticConfig, SyntheticSequence, generate_sequence

#: Offsets that keep the sequences of each split disjoint for the same ``seed``.
_SPLIT_OFFSETS: dict[str, int] = {"train": 0, "val": 1_000_003, "test": 2_000_003}
PAIRING_MODES: tuple[str, ...] = ("random", "consecutive")


@dataclasses.dataclass(frozen=True)
class PairIndex:
    """Where one sample comes from: frames ``first`` and ``second`` of sequence ``sequence``."""

    sequence: int
    first: int
    second: int

    @property
    def gap(self) -> int:
        """Signed frame gap ``t = second - first`` (negative: image2 precedes image1)."""
        return self.second - self.first


class SyntheticVideoDataset(Dataset):
    """Pairs of frames from deterministic synthetic sequences, as training/evaluation samples.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; each split draws its own sequences.
        num_sequences: sequences in this split.
        seed: base seed; sequence ``k`` of a split uses ``seed * 7919 + offset(split) + k``.
        config: generator settings; keyword ``synthetic_overrides`` (``height``, ``width``,
            ``label_every``, ...) replace single fields of it.
        pairing: ``"random"`` draws one pair per index (training); ``"consecutive"`` enumerates
            every ``(i, i + 1)`` once (evaluation, temporal consistency). Default: random for train.
        pairs_per_sequence: samples per sequence in random mode (default ``num_frames``).
        min_gap, max_gap: range of ``|t|`` in random mode (paper: 1..5).
        labelled_anchor_fraction: share of random samples whose first frame is a labelled frame.
        hide_unlabelled: set labels of frames not ``labelled`` to 255 (default: only for train).
        cache_size: sequences kept in memory (per process / worker).
    """

    def __init__(
        self,
        split: str = "train",
        num_sequences: int = 16,
        seed: int = 0,
        config: SyntheticConfig | None = None,
        pairing: str | None = None,
        pairs_per_sequence: int | None = None,
        min_gap: int = 1,
        max_gap: int = 5,
        labelled_anchor_fraction: float = 0.5,
        hide_unlabelled: bool | None = None,
        cache_size: int = 32,
        with_labels: bool = True,
        **synthetic_overrides: Any,
    ) -> None:
        if split not in _SPLIT_OFFSETS:
            raise ValueError(f"unknown split {split!r}; expected one of {tuple(_SPLIT_OFFSETS)}")
        known = {f.name for f in dataclasses.fields(SyntheticConfig)}
        for key in synthetic_overrides:
            if key not in known:
                raise ValueError(f"unknown synthetic dataset option {key!r}; expected one of {sorted(known)}")
        self.config = dataclasses.replace(config or SyntheticConfig(), **synthetic_overrides)
        if num_sequences < 1:
            raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
        if self.config.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 to form pairs, got {self.config.num_frames}")
        if not 1 <= min_gap <= max_gap:
            raise ValueError(f"need 1 <= min_gap <= max_gap, got min_gap={min_gap}, max_gap={max_gap}")
        if min_gap > self.config.num_frames - 1:
            raise ValueError(f"min_gap={min_gap} does not fit sequences of {self.config.num_frames} frames")
        if not 0.0 <= labelled_anchor_fraction <= 1.0:
            raise ValueError(f"labelled_anchor_fraction must be in [0, 1], got {labelled_anchor_fraction}")
        pairing = pairing or ("random" if split == "train" else "consecutive")
        if pairing not in PAIRING_MODES:
            raise ValueError(f"unknown pairing {pairing!r}; expected one of {PAIRING_MODES}")
        self.split = split
        self.num_sequences = num_sequences
        self.seed = seed
        self.pairing = pairing
        self.pairs_per_sequence = pairs_per_sequence or self.config.num_frames
        self.min_gap = min_gap
        # A gap longer than the sequence can never be drawn; clip instead of looping forever.
        self.max_gap = min(max_gap, self.config.num_frames - 1)
        self.labelled_anchor_fraction = labelled_anchor_fraction
        self.hide_unlabelled = (split == "train") if hide_unlabelled is None else hide_unlabelled
        self.cache_size = max(cache_size, 1)
        # False: every label hidden (a flow/occlusion source mixed with a dataset of other classes).
        self.with_labels = with_labels
        self._cache: OrderedDict[int, SyntheticSequence] = OrderedDict()

    # ------------------------------------------------------------------ indexing
    def __len__(self) -> int:
        if self.pairing == "consecutive":
            return self.num_sequences * (self.config.num_frames - 1)
        return self.num_sequences * self.pairs_per_sequence

    def sequence_seed(self, sequence: int) -> int:
        """Generator seed of sequence ``sequence`` of this split."""
        return self.seed * 7919 + _SPLIT_OFFSETS[self.split] + sequence

    def sequence(self, sequence: int) -> SyntheticSequence:
        """The generated sequence ``sequence`` (cached, least recently used evicted)."""
        if not 0 <= sequence < self.num_sequences:
            raise IndexError(f"sequence {sequence} out of range [0, {self.num_sequences})")
        cached = self._cache.get(sequence)
        if cached is not None:
            self._cache.move_to_end(sequence)
            return cached
        generated = generate_sequence(self.config, self.sequence_seed(sequence))
        self._cache[sequence] = generated
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return generated

    def pair_index(self, index: int) -> PairIndex:
        """The frames of sample ``index``; depends only on ``(seed, split, index)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range [0, {len(self)})")
        num_frames = self.config.num_frames
        if self.pairing == "consecutive":
            sequence, first = divmod(index, num_frames - 1)
            return PairIndex(sequence, first, first + 1)
        sequence = index // self.pairs_per_sequence
        rng = np.random.default_rng([self.seed, _SPLIT_OFFSETS[self.split], index])
        # The generator's own ``labelled`` flags are the authority on which frames carry labels.
        labelled = np.flatnonzero(self.sequence(sequence).labelled)
        if labelled.size and rng.random() < self.labelled_anchor_fraction:
            first = int(rng.choice(labelled))
        else:
            first = int(rng.integers(num_frames))
        # Every admissible signed gap from this anchor; always non-empty because
        # min_gap <= num_frames - 1 lets at least one direction fit.
        gaps = [
            sign * size
            for size in range(self.min_gap, self.max_gap + 1)
            for sign in (1, -1)
            if 0 <= first + sign * size < num_frames
        ]
        return PairIndex(sequence, first, first + int(rng.choice(gaps)))

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        where = self.pair_index(index)
        sequence = self.sequence(where.sequence)
        sample = make_sample(sequence, where.first, where.second, hide_unlabelled=self.hide_unlabelled)
        if not self.with_labels:
            for key in ("label1", "label2"):
                sample[key] = torch.full_like(sample[key], IGNORE_LABEL)
            sample["has_label1"] = sample["has_label2"] = torch.tensor(False)
        return sample


def _image_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float().div_(255.0)


def _label_tensor(sequence: SyntheticSequence, frame: int, hide_unlabelled: bool) -> tuple[torch.Tensor, bool]:
    """(H, W) int64 labels of ``frame``, all 255 when hidden; and whether labels are present."""
    labels = torch.from_numpy(sequence.labels[frame].astype(np.int64))
    if hide_unlabelled and not bool(sequence.labelled[frame]):
        return torch.full_like(labels, IGNORE_LABEL), False
    return labels, True


def make_sample(
    sequence: SyntheticSequence, first: int, second: int, *, hide_unlabelled: bool = True
) -> dict[str, torch.Tensor]:
    """The training sample dict of frames ``first`` -> ``second`` of ``sequence``.

    Flow and occlusion come from the generator's exact ground truth: ``flow_fw`` = flow(first,
    second) on frame 1's grid, ``flow_bw`` = flow(second, first) on frame 2's grid, in pixels.
    """
    num_frames = sequence.frames.shape[0]
    for frame in (first, second):
        if not 0 <= frame < num_frames:
            raise ValueError(f"frame {frame} outside a sequence of {num_frames} frames")
    if first == second:
        raise ValueError(f"a pair needs two different frames, got {first} twice")
    label1, has_label1 = _label_tensor(sequence, first, hide_unlabelled)
    label2, has_label2 = _label_tensor(sequence, second, hide_unlabelled)
    flow_fw = torch.from_numpy(np.ascontiguousarray(sequence.flow(first, second).transpose(2, 0, 1)))
    flow_bw = torch.from_numpy(np.ascontiguousarray(sequence.flow(second, first).transpose(2, 0, 1)))
    return {
        "image1": _image_tensor(sequence.frames[first]),
        "image2": _image_tensor(sequence.frames[second]),
        "label1": label1,
        "label2": label2,
        "flow_fw": flow_fw.float(),
        "flow_bw": flow_bw.float(),
        # Synthetic flow is defined at every pixel (occluded ones included).
        "flow_valid": torch.ones(label1.shape, dtype=torch.bool),
        "flow_valid_bw": torch.ones(label1.shape, dtype=torch.bool),
        "occ_fw": torch.from_numpy(np.asarray(sequence.occlusion(first, second), dtype=bool)),
        "occ_bw": torch.from_numpy(np.asarray(sequence.occlusion(second, first), dtype=bool)),
        "has_flow": torch.tensor(True),
        "has_occlusion": torch.tensor(True),
        "has_label1": torch.tensor(has_label1),
        "has_label2": torch.tensor(has_label2),
        "frame_gap": torch.tensor(second - first, dtype=torch.int64),
    }


def build_synthetic_dataset(root: str | None, split: str, **options: Any) -> SyntheticVideoDataset:
    """Factory entry for ``build_dataset("synthetic", root, split, **options)``; ``root`` is unused."""
    del root  # generated on the fly, nothing to read
    return SyntheticVideoDataset(split=split, **options)
