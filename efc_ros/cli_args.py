"""Argument parsers shared by the command lines (``efc``, ``efc bag``, benchmarks, recipes).

A leaf module: it imports nothing from the project, so every CLI can use it without importing
``efc_ros.cli`` (which imports the subcommands back, an import cycle).
"""

from __future__ import annotations


def parse_size_wh(text: str) -> tuple[int, int]:
    """Parse ``"640x480"`` (WIDTHxHEIGHT) into ``(480, 640)``, i.e. (H, W) in pixels.

    Raises:
        ValueError: naming ``text`` when it is not two positive integers joined by ``x``.
    """
    parts = text.lower().strip().split("x")
    try:
        width, height = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 640x480)") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return height, width
