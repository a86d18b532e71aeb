"""Header stamps as integer nanoseconds, the one time representation the pipeline pairs frames by.

Works on any object with ``sec`` and ``nanosec`` (rclpy's and rosbags' ``builtin_interfaces/Time``).
"""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> ``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (the message fields)."""
    return divmod(int(stamp_ns), NS_PER_S)
