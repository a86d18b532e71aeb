"""The two-frame state machine (docs/ROS_NODE.md must-have 3).

The network looks at a pair (previous frame, current frame). The previous frame is only a valid
partner when it comes from the same camera (``frame_id``), has the same resolution and image
format (an rgb8 frame never pairs with a mono8 or depth frame), and is strictly older by at most
``max_frame_gap_s``. Anything else (first frame, a rosbag looping back
in time, a dropped stretch of frames, a camera switching resolution) resets the pair: the current
frame is processed on its own and becomes the partner of the next one.

Usage: ``decision = pairer.decide(stamp, frame_id, size)`` (no state change), run the network,
then ``pairer.accept(stamp, frame_id, size, payload)`` so that a frame whose processing failed
never becomes anyone's partner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

PayloadT = TypeVar("PayloadT")

RESET_FIRST_FRAME = "first frame"
RESET_FRAME_ID = "frame_id changed"
RESET_RESOLUTION = "resolution changed"
RESET_BACKWARDS = "time went backwards"
RESET_GAP = "gap too large"
RESET_DUPLICATE = "duplicate stamp"
RESET_FORMAT = "image format changed"
RESET_REASONS: tuple[str, ...] = (
    RESET_FIRST_FRAME, RESET_FRAME_ID, RESET_RESOLUTION, RESET_BACKWARDS, RESET_GAP, RESET_DUPLICATE,
    RESET_FORMAT,
)


@dataclass(frozen=True)
class FrameInfo(Generic[PayloadT]):
    """A frame kept as the next pair's partner.

    stamp_ns: header stamp in nanoseconds; size: (height, width) in pixels of the input image;
    payload: what the pipeline needs of it later (encoder features or the preprocessed tensor);
    image_format: the source's format (e.g. a ROS encoding), "" when unknown.
    """

    stamp_ns: int
    frame_id: str
    size: tuple[int, int]
    payload: PayloadT
    image_format: str = ""


@dataclass(frozen=True)
class PairDecision(Generic[PayloadT]):
    """Outcome of ``FramePairer.decide`` for the current frame.

    ``previous`` is the partner (None when the pair was reset); ``reset_reason`` is one of
    ``RESET_REASONS`` exactly when ``previous`` is None.
    """

    previous: FrameInfo[PayloadT] | None
    reset_reason: str | None
    #: Seconds from the partner to the current frame (None on reset).
    dt_s: float | None = None

    @property
    def has_previous(self) -> bool:
        return self.previous is not None

    @property
    def prev_stamp_ns(self) -> int | None:
        return self.previous.stamp_ns if self.previous is not None else None


class FramePairer(Generic[PayloadT]):
    """Keeps the previous frame and decides whether it pairs with the next one.

    Args:
        max_frame_gap_s: largest accepted ``stamp(cur) - stamp(prev)`` in seconds (> 0; ``inf``
            accepts any positive gap).
    """

    def __init__(self, max_frame_gap_s: float = 0.5) -> None:
        if not isinstance(max_frame_gap_s, (int, float)) or isinstance(max_frame_gap_s, bool) \
                or math.isnan(max_frame_gap_s) or max_frame_gap_s <= 0:
            raise ValueError(f"max_frame_gap_s must be a positive number of seconds, got {max_frame_gap_s!r}")
        self.max_frame_gap_s = float(max_frame_gap_s)
        # Integer nanoseconds keep the comparison exact for stamps of any epoch.
        self._max_gap_ns = math.inf if math.isinf(self.max_frame_gap_s) else round(self.max_frame_gap_s * 1e9)
        self._previous: FrameInfo[PayloadT] | None = None

    @property
    def previous(self) -> FrameInfo[PayloadT] | None:
        """The frame the next one may pair with (None before the first accepted frame)."""
        return self._previous

    def decide(self, stamp_ns: int, frame_id: str, size: tuple[int, int],
               image_format: str = "") -> PairDecision[PayloadT]:
        """Whether the kept frame is a valid partner for a frame ``(stamp_ns, frame_id, size)``.

        Args:
            stamp_ns: header stamp of the current frame, nanoseconds.
            frame_id: its ``header.frame_id``.
            size: its (height, width) in pixels.
            image_format: its source format (e.g. ``"rgb8"``); a change resets the pair.
        """
        previous = self._previous
        if previous is None:
            return PairDecision(None, RESET_FIRST_FRAME)
        if frame_id != previous.frame_id:
            return PairDecision(None, RESET_FRAME_ID)
        if tuple(size) != previous.size:
            return PairDecision(None, RESET_RESOLUTION)
        if image_format != previous.image_format:
            return PairDecision(None, RESET_FORMAT)
        dt_ns = int(stamp_ns) - previous.stamp_ns
        if dt_ns < 0:
            return PairDecision(None, RESET_BACKWARDS)
        if dt_ns == 0:
            return PairDecision(None, RESET_DUPLICATE)
        if dt_ns > self._max_gap_ns:
            return PairDecision(None, RESET_GAP)
        return PairDecision(previous, None, dt_ns * 1e-9)

    def accept(self, stamp_ns: int, frame_id: str, size: tuple[int, int], payload: PayloadT,
               image_format: str = "") -> None:
        """Keep this frame (processed successfully) as the partner of the next one."""
        height, width = (int(v) for v in size)
        self._previous = FrameInfo(int(stamp_ns), str(frame_id), (height, width), payload, str(image_format))

    def reset(self) -> None:
        """Forget the kept frame; the next one starts a new pair (reason "first frame")."""
        self._previous = None


def describe(decision: PairDecision[Any]) -> str:
    """One-line human description, e.g. for node diagnostics."""
    if decision.previous is None:
        return f"no pair ({decision.reset_reason})"
    return f"paired with {decision.previous.stamp_ns} ns (dt {decision.dt_s:.3f} s)"
