"""JPEG / PNG bytes -> RGB, with the size read from the header first and corrupt data detected.

A PNG or JPEG declares its size in its header (IHDR, SOF), so a frame above the pixel limit is
refused before the decoder allocates anything (a 750 KB PNG can declare 16000x16000). libjpeg and
libpng report corrupt data only as text on stderr; ``decode_compressed`` collects those lines and
returns them, so callers can refuse (or count) a frame whose pixels are partly made up.
Transport-free: numpy and OpenCV only.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from typing import Any

import cv2
import numpy as np

from efc_core.edge.input_limits import DEFAULT_MAX_IMAGE_PIXELS, check_pixel_count
from efc_core.errors import InputError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), not DHT/JPG/DAC.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}


def compressed_image_size(data: bytes | memoryview) -> tuple[str, int, int]:
    """``(kind, height, width)`` declared by a PNG (IHDR) or JPEG (SOF) header, without decoding.

    Raises:
        InputError: the bytes are neither PNG nor JPEG, or the header is cut short (kind ``undecodable``).
    """
    head = bytes(data[:32])
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise InputError("PNG stream without an IHDR header", kind="undecodable")
        return "png", int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if not head.startswith(b"\xff\xd8"):
        raise InputError(f"CompressedImage data is neither PNG nor JPEG (starts with {head[:4].hex()})",
                         kind="undecodable")
    view = memoryview(data)
    position, size = 2, len(view)
    while position + 4 <= size:
        if view[position] != 0xFF:
            raise InputError(f"JPEG header broken at byte {position}", kind="undecodable")
        marker = view[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(view[position + 2:position + 4], "big")
        if marker in _JPEG_SOF_MARKERS:
            if position + 9 > size:
                break
            return "jpeg", int.from_bytes(view[position + 5:position + 7], "big"), \
                int.from_bytes(view[position + 7:position + 9], "big")
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            break
        position += 2 + length
    raise InputError("JPEG stream without a frame (SOF) header", kind="undecodable")


_DECODER_WARNING = re.compile(
    r"^(Corrupt JPEG data|Premature end of JPEG|Invalid SOS parameters|Inconsistent progression|"
    r"Bogus |Warning: |libpng (warning|error))")
_NATIVE_STDERR_LOCK = threading.Lock()
#: One capture file for the process, reused under the lock: a new temporary file per frame
#: would cost a file creation and deletion on every compressed camera frame.
_capture_file: Any = None


def _stderr_capture() -> Any:
    """The process's capture file for fd 2, emptied (call with ``_NATIVE_STDERR_LOCK`` held)."""
    global _capture_file
    if _capture_file is None:
        _capture_file = tempfile.TemporaryFile()
    _capture_file.seek(0)
    _capture_file.truncate()
    return _capture_file


def _imdecode_with_warnings(buffer: np.ndarray) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """``cv2.imdecode`` plus the warnings libjpeg/libpng print on the process's stderr meanwhile.

    The decoders report corrupt data only as text on file descriptor 2, so fd 2 points at a
    reused temporary file for the call (one decode at a time); anything else written there meanwhile
    (another thread's log line) is passed on to the real stderr afterwards.
    """
    with _NATIVE_STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable stderr: decode without listening
            return cv2.imdecode(buffer, cv2.IMREAD_COLOR), ()
        capture = _stderr_capture()
        os.dup2(capture.fileno(), 2)
        try:
            bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    warnings = tuple(line.strip() for line in lines if _DECODER_WARNING.match(line.strip()))
    others = [line for line in lines if not _DECODER_WARNING.match(line.strip())]
    if others:
        os.write(2, ("\n".join(others) + "\n").encode())
    return bgr, warnings


def decode_compressed(data: Any, image_format: str = "", *,
                      max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[np.ndarray, tuple[str, ...]]:
    """Decode JPEG or PNG bytes (a ``sensor_msgs/CompressedImage``'s ``data``) to RGB.

    Args:
        data: the compressed bytes (bytes, memoryview, ``array('B')`` or uint8 array).
        image_format: the message's ``format`` (``"jpeg"``, ``"png"``, or image_transport's
            ``"bgr8; jpeg compressed bgr8"``); only checked for the compression kind, since the
            bytes themselves say what they are. Empty: not checked.
        max_pixels: largest declared ``height * width`` accepted (0: no limit).

    Returns:
        ``(rgb, warnings)``: (H, W, 3) uint8 RGB and the decoder's warnings; non-empty warnings
        mean the stream is corrupt and the pixels are partly made up.

    Raises:
        InputError: wrong format (kind ``encoding``), empty or zero-size (``size``), not PNG/JPEG or
        undecodable (``undecodable``), above ``max_pixels`` (``too_large``).
    """
    fmt = (image_format or "").lower()
    if fmt and not any(kind in fmt for kind in ("jpeg", "jpg", "png")):
        raise InputError(f"unsupported CompressedImage format {image_format!r}; expected jpeg or png",
                         kind="encoding")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise InputError("CompressedImage has no data", kind="size")
    kind, height, width = compressed_image_size(buffer.data)
    if height <= 0 or width <= 0:
        raise InputError(f"{kind} header declares zero size {width}x{height}", kind="size")
    check_pixel_count(height, width, max_pixels, what=f"{kind} image")
    bgr, warnings = _imdecode_with_warnings(buffer)
    if bgr is None:
        detail = f": {warnings[0]}" if warnings else ""
        raise InputError(f"cv2.imdecode could not decode {buffer.size} bytes of {kind}{detail}", kind="undecodable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), warnings
