"""Limits every decoded frame must respect, and the name of each kind of refusal.

Shared by the raw and the compressed decoders (``image_decode``, ``compressed_decode``).
"""

from __future__ import annotations

from efc_core.errors import InputError

#: Largest frame accepted by default, in pixels: 2**25 = 33.5 MP (8K UHD, 7680x4320, fits).
DEFAULT_MAX_IMAGE_PIXELS = 1 << 25


def error_kind(error: BaseException) -> str:
    """The short name of an input problem (``InputError.kind``), for counting per kind."""
    return getattr(error, "kind", None) or type(error).__name__


def check_pixel_count(height: int, width: int, max_pixels: int, what: str = "image") -> None:
    """``InputError`` (kind ``too_large``) when ``height * width`` exceeds ``max_pixels`` (0: no limit).

    Called before any pixel buffer is allocated, so an oversized frame costs nothing.
    """
    if max_pixels > 0 and height * width > max_pixels:
        raise InputError(f"{what} of {width}x{height} = {height * width} pixels exceeds the limit of "
                         f"{max_pixels} pixels (max_image_pixels)", kind="too_large")
