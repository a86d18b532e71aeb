"""Frames a camera sent that never reached the node, counted from gaps in header stamps.

``input_rate_hz`` alone cannot tell a 6 Hz camera from a 30 Hz camera losing 80 % of its frames in
DDS (best-effort large images without a big enough shared-memory segment, see README "Large
images over DDS"). Cameras stamp frames at a steady period, so a gap of k periods between two
consecutive received stamps of one ``frame_id`` means k - 1 frames were lost on the way: in the
transport, or overwritten in the subscription's keep-last queue before the callback ran. Frames
dropped later by latest-frame-wins are not counted here (they did arrive).

The period is estimated from the stamps themselves: a low percentile of recent gaps, which is the
true period as long as some consecutive frames arrive (with 80 % random loss one gap in five is a
single period). A camera whose frames arrive in a strictly regular pattern (exactly every fifth)
looks like a slower camera: stamps alone cannot tell; DDS fragment loss is not regular like that. Gaps longer than
``max_gap_s`` are a paused stream (or a bag loop), not loss;
stamps going backwards restart the stream.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

#: Gaps kept per stream for the period estimate, and how many are needed before counting.
_HISTORY = 200
_MIN_GAPS = 16
#: Percentile of recent gaps taken as the camera period (robust to a few early or duplicate stamps).
_PERIOD_PERCENTILE = 5.0


@dataclass
class _Stream:
    last_stamp_ns: int | None = None
    gaps_ns: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=_HISTORY))
    period_ns: float | None = None


class TransportLossEstimator:
    """Per-``frame_id`` stamp bookkeeping; not thread-safe (``NodeStatistics`` holds its lock)."""

    def __init__(self, *, max_gap_s: float = 2.0) -> None:
        """``max_gap_s``: longer gaps between received stamps count as a pause, not as lost frames."""
        if max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be positive, got {max_gap_s!r}")
        self._max_gap_ns = int(max_gap_s * 1e9)
        self._streams: dict[str, _Stream] = {}
        self.frames_lost = 0

    def observe(self, stamp_ns: int, frame_id: str) -> int:
        """A frame with ``stamp_ns`` of ``frame_id`` arrived; returns the frames counted lost before it."""
        stream = self._streams.get(frame_id)
        if stream is None:
            if len(self._streams) > 64:  # frame_ids that keep changing must not grow this forever
                self._streams.clear()
            stream = self._streams[frame_id] = _Stream()
        previous, stream.last_stamp_ns = stream.last_stamp_ns, stamp_ns
        if previous is None:
            return 0
        gap = stamp_ns - previous
        if gap <= 0 or gap > self._max_gap_ns:
            return 0  # time went backwards, a repeated stamp, or a pause: nothing to count
        stream.gaps_ns.append(gap)
        if len(stream.gaps_ns) < _MIN_GAPS:
            return 0
        first_estimate = stream.period_ns is None
        period = stream.period_ns = float(np.percentile(np.fromiter(stream.gaps_ns, dtype=np.int64),
                                                        _PERIOD_PERCENTILE))
        if period <= 0:
            return 0
        # With the first estimate, the gaps seen while learning the period are counted too.
        counted = stream.gaps_ns if first_estimate else (gap,)
        lost = sum(max(0, int(round(g / period)) - 1) for g in counted)
        self.frames_lost += lost
        return lost

    def camera_rate_hz(self) -> float:
        """The highest stamp rate among the streams (NaN before enough frames arrived)."""
        periods = [s.period_ns for s in self._streams.values() if s.period_ns]
        return 1e9 / min(periods) if periods else float("nan")
