"""The two-frame state machine (docs/ROS_NODE.md must-have 3)."""

from __future__ import annotations

import math

import pytest

from efc_core.pairing import (
    RESET_BACKWARDS,
    RESET_DUPLICATE,
    RESET_FIRST_FRAME,
    RESET_FRAME_ID,
    RESET_GAP,
    RESET_RESOLUTION,
    FramePairer,
)

MS = 1_000_000
SIZE = (480, 640)


def _step(pairer: FramePairer, stamp_ns: int, frame_id: str = "cam", size=SIZE, payload=None):
    decision = pairer.decide(stamp_ns, frame_id, size)
    pairer.accept(stamp_ns, frame_id, size, payload if payload is not None else stamp_ns)
    return decision


def test_normal_sequence_pairs_each_frame_with_the_previous_one() -> None:
    pairer = FramePairer(max_frame_gap_s=0.5)
    first = _step(pairer, 10_000 * MS)
    assert first.previous is None and first.reset_reason == RESET_FIRST_FRAME
    for index in range(1, 5):
        stamp = 10_000 * MS + index * 33 * MS
        decision = _step(pairer, stamp)
        assert decision.reset_reason is None
        assert decision.prev_stamp_ns == stamp - 33 * MS
        assert decision.previous.payload == stamp - 33 * MS
        assert decision.dt_s == pytest.approx(0.033)


@pytest.mark.parametrize(
    ("stamp_ns", "frame_id", "size", "reason"),
    [
        (1_100 * MS, "other_cam", SIZE, RESET_FRAME_ID),
        (1_100 * MS, "cam", (240, 320), RESET_RESOLUTION),
        (1_100 * MS, "cam", (640, 480), RESET_RESOLUTION),     # transposed is a different resolution
        (900 * MS, "cam", SIZE, RESET_BACKWARDS),              # rosbag loop
        (1_000 * MS, "cam", SIZE, RESET_DUPLICATE),
        (1_501 * MS, "cam", SIZE, RESET_GAP),                  # 501 ms > 500 ms
    ],
)
def test_mismatch_resets_the_pair(stamp_ns: int, frame_id: str, size, reason: str) -> None:
    pairer = FramePairer(max_frame_gap_s=0.5)
    _step(pairer, 1_000 * MS)
    decision = _step(pairer, stamp_ns, frame_id, size)
    assert decision.previous is None
    assert decision.reset_reason == reason
    assert decision.prev_stamp_ns is None and decision.dt_s is None
    # The frame that reset the pair is the partner of the next one.
    follow = _step(pairer, stamp_ns + 30 * MS, frame_id, size)
    assert follow.reset_reason is None and follow.prev_stamp_ns == stamp_ns


def test_gap_exactly_at_the_limit_is_accepted() -> None:
    pairer = FramePairer(max_frame_gap_s=0.5)
    _step(pairer, 0)
    assert _step(pairer, 500 * MS).reset_reason is None
    assert _step(pairer, 1_000 * MS + 1).reset_reason == RESET_GAP


def test_decide_does_not_change_state_until_accept() -> None:
    pairer = FramePairer(max_frame_gap_s=1.0)
    _step(pairer, 0, payload="frame0")
    pairer.decide(100 * MS, "cam", SIZE)          # e.g. inference then failed: never accepted
    decision = pairer.decide(200 * MS, "cam", SIZE)
    assert decision.previous.payload == "frame0" and decision.dt_s == pytest.approx(0.2)


def test_reset_forgets_the_previous_frame() -> None:
    pairer = FramePairer()
    _step(pairer, 0)
    pairer.reset()
    assert pairer.previous is None
    assert _step(pairer, 10 * MS).reset_reason == RESET_FIRST_FRAME


def test_infinite_gap_accepts_any_forward_step() -> None:
    pairer = FramePairer(max_frame_gap_s=math.inf)
    _step(pairer, 0)
    assert _step(pairer, 3_600 * 1_000 * MS).reset_reason is None


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), "0.5", True])
def test_bad_gap_is_rejected_with_its_value(bad) -> None:
    with pytest.raises(ValueError, match="max_frame_gap_s"):
        FramePairer(max_frame_gap_s=bad)
