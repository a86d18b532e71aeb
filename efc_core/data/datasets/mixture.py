"""Several datasets drawn in a fixed ratio: labelled CamVid frames next to unlabelled real video.

One training run of EFC takes its segmentation signal from a few labelled frames and its flow,
occlusion and temporal-consistency signal from every other frame of video (docs/METHOD.md §3). The
sources here have very different sizes (CamVid train has ~700 labelled pairs, DAVIS ~13 000
unlabelled ones), so concatenating them would let the largest one decide the ratio; a
:class:`MixtureDataset` draws index ``i`` from source ``s`` with probability ``weights[s]``
instead, through a mapping fixed by ``seed`` (a function of the index only, so the resumable
sampler of the training loop and its ``DataLoader`` workers see the same samples).

Every source must yield the same sample dict (ARCHITECTURE.md, "Training samples") at the same
size: :class:`MixtureDataset` reads one sample of each at construction and names the source that
differs. Give every source the same ``resize`` / ``augment.crop_size``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class MixtureDataset(Dataset):
    """Draws from ``sources`` in the ratio ``weights``; ``len`` is ``length`` (one "epoch").

    Args:
        sources: datasets of sample dicts.
        weights: non-negative share of each source (normalised; at least one > 0).
        names: a label per source for messages and :attr:`source_counts`.
        length: samples per epoch; default: the smallest length at which every source's share
            covers all of its samples at least once (``max_s ceil(len_s / p_s)``).
        seed: seed of the source order and of the per-source permutations.

    Sample ``i`` is sample ``j`` of source ``s``: the sources are laid out in exact proportion
    (largest-remainder rounding) and shuffled; the k-th occurrence of ``s`` takes element
    ``k mod len_s`` of a permutation of ``s``, drawn afresh for every pass over ``s``, so a small
    labelled source is repeated in shuffled passes and a large video source is sampled without
    repetition.
    """

    def __init__(self, sources: Sequence[Dataset], weights: Sequence[float], names: Sequence[str] | None = None,
                 length: int | None = None, seed: int = 0) -> None:
        if not sources:
            raise ValueError("a mixture needs at least one source")
        if len(weights) != len(sources):
            raise ValueError(f"{len(weights)} weights for {len(sources)} sources")
        weights_array = np.asarray(weights, dtype=np.float64)
        if np.any(weights_array < 0) or not np.isfinite(weights_array).all() or weights_array.sum() <= 0:
            raise ValueError(f"mixture weights must be finite, >= 0 and not all 0, got {list(weights)}")
        self.sources = list(sources)
        self.names = list(names) if names is not None else [f"source_{i}" for i in range(len(sources))]
        self.probabilities = weights_array / weights_array.sum()
        sizes = [len(source) for source in self.sources]
        for name, size, p in zip(self.names, sizes, self.probabilities):
            if p > 0 and size == 0:
                raise ValueError(f"mixture source {name!r} is empty")
        if length is None:
            length = max(math.ceil(size / p) for size, p in zip(sizes, self.probabilities) if p > 0)
        if length < 1:
            raise ValueError(f"mixture length must be >= 1, got {length}")
        self.length = int(length)
        self._source_of, self._index_in = self._layout(sizes, seed)
        self._check_samples_agree()
        labelled = [s for s in self.sources if getattr(s, "class_names", None) is not None]
        self.class_names = labelled[0].class_names if labelled else None
        self.palette = labelled[0].palette if labelled else None

    def _layout(self, sizes: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(length,) source index and (length,) index inside that source of every sample."""
        quotas = self.probabilities * self.length
        counts = np.floor(quotas).astype(np.int64)
        remainder_order = np.argsort(-(quotas - counts), kind="stable")
        counts[remainder_order[: self.length - int(counts.sum())]] += 1
        rng = np.random.default_rng(seed)
        source_of = rng.permutation(np.repeat(np.arange(len(sizes)), counts))
        index_in = np.empty(self.length, np.int64)
        for source, (count, size) in enumerate(zip(counts, sizes)):
            if count == 0:
                continue
            passes = [rng.permutation(size) for _ in range(math.ceil(count / size))]
            index_in[source_of == source] = np.concatenate(passes)[:count]
        return source_of, index_in

    def _check_samples_agree(self) -> None:
        """Read the first drawn sample of each used source; ``ValueError`` if keys or sizes differ."""
        reference: tuple[str, dict[str, tuple]] | None = None
        for source in np.unique(self._source_of):
            sample = self.sources[source][int(self._index_in[np.argmax(self._source_of == source)])]
            shapes = {key: tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                      for key, value in sample.items()}
            if reference is None:
                reference = (self.names[source], shapes)
            elif shapes != reference[1]:
                raise ValueError(
                    f"mixture source {self.names[source]!r} yields {shapes}, but {reference[0]!r} yields "
                    f"{reference[1]}: give every source the same resize / augment.crop_size"
                )

    @property
    def source_counts(self) -> dict[str, int]:
        """Samples per epoch drawn from each source, by name."""
        counts = np.bincount(self._source_of, minlength=len(self.sources))
        return {name: int(count) for name, count in zip(self.names, counts)}

    def locate(self, index: int) -> tuple[int, int]:
        """``(source, index inside the source)`` of mixture sample ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"mixture index {index} out of range for length {self.length}")
        return int(self._source_of[index]), int(self._index_in[index])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        source, inner = self.locate(index)
        return self.sources[source][inner]
