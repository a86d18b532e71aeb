"""``efc bag from-video``: a phone or dash-cam clip as a rosbag2 camera recording.

Every decoded frame becomes one ``sensor_msgs/msg/Image`` (``rgb8``) or, with ``compressed``, one
``sensor_msgs/msg/CompressedImage`` (``jpeg``) on ``topic`` (``.../compressed`` appended for
compressed images, the image_transport convention). Header stamps follow the clip's frame rate:
frame ``i`` is stamped ``start_time_s + i / fps`` (container timestamps of variable-frame-rate
phone clips are not used), and the bag's receive time equals the stamp. The result feeds
``efc bag process`` / ``efc bag eval`` and the ``rosbag`` training dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from efc_core.errors import InputError
from efc_ros.bag.io import BagOutput, compressed_message, image_message

DEFAULT_TOPIC = "/camera/image_raw"
#: Default first stamp (s since the epoch): a fixed, plausible wall-clock time, so that no stamp
#: is 0 (which tools read as "unset") and conversions are reproducible.
DEFAULT_START_TIME_S = 1_700_000_000.0


@dataclass(frozen=True)
class VideoBagOptions:
    """What ``from-video`` writes. ``size`` is (H, W) in pixels; times in seconds."""

    topic: str = DEFAULT_TOPIC
    compressed: bool = False
    frame_id: str = "camera"
    max_frames: int | None = None
    size: tuple[int, int] | None = None
    fps: float | None = None  # None: the clip's own frame rate
    start_time_s: float = DEFAULT_START_TIME_S
    storage: str = "mcap"

    def validate(self) -> None:
        """``ValueError`` naming the first bad option."""
        if not self.topic.startswith("/") or self.topic.endswith("/"):
            raise ValueError(f"topic must be an absolute name like /camera/image_raw, got {self.topic!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"size must be (H, W) with positive sides, got {self.size}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not self.start_time_s > 0:
            raise ValueError(f"start_time_s must be > 0, got {self.start_time_s}")

    @property
    def output_topic(self) -> str:
        """``topic``, with ``/compressed`` appended for compressed images (unless already there)."""
        if self.compressed and not self.topic.endswith("/compressed"):
            return f"{self.topic}/compressed"
        return self.topic


@dataclass(frozen=True)
class VideoBagResult:
    """What was written: ``frames`` messages of ``width`` x ``height`` at ``fps`` on ``topic``."""

    path: Path
    topic: str
    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        """Time from the first to the last stamp."""
        return (self.frames - 1) / self.fps if self.frames else 0.0


def frame_stamp_ns(index: int, fps: float, start_time_s: float) -> int:
    """Header stamp (ns) of frame ``index`` at ``fps``, rounded to the nanosecond."""
    return int(round(start_time_s * 1e9)) + int(round(index * 1e9 / fps))


def _open_video(video: Path, fps_override: float | None) -> tuple[cv2.VideoCapture, float, int]:
    """The capture, its frame rate and its (container, possibly wrong) frame count."""
    if not video.exists():
        raise FileNotFoundError(f"video not found: {video}")
    if not video.is_file():
        raise InputError(f"video {str(video)!r} is not a file")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise InputError(f"OpenCV cannot open video {str(video)!r} (not a video, or an unsupported codec)")
    fps = fps_override or float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        capture.release()
        raise InputError(f"video {str(video)!r} reports frame rate {fps}; pass --fps")
    return capture, fps, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)


def video_to_bag(video: str | Path, output: str | Path, options: VideoBagOptions = VideoBagOptions(),
                 overwrite: bool = False, progress: Callable[[int, int | None], None] | None = None) -> VideoBagResult:
    """Write the frames of ``video`` into a new bag at ``output``; see the module docstring.

    Args:
        video: any file ``cv2.VideoCapture`` opens.
        output: bag folder to create; an existing one is an ``InputError`` unless ``overwrite``.
        options: topic, encoding, frame limit, resize, frame rate, start time, storage.
        progress: called as ``progress(frames_done, expected_total_or_None)`` after each frame.

    Raises:
        FileNotFoundError: ``video`` does not exist. InputError: it cannot be decoded (or has no
        frame), or ``output`` exists. ValueError: a bad option.
    """
    options.validate()
    video, output = Path(video), Path(output)
    if output.exists() and not overwrite:
        raise InputError(f"output {output} already exists (use --overwrite)")
    if output.resolve() == video.resolve():
        raise InputError(f"output {output} is the input video")
    capture, fps, container_count = _open_video(video, options.fps)
    expected = container_count or None
    if options.max_frames is not None:
        expected = min(expected, options.max_frames) if expected else options.max_frames
    topic = options.output_topic
    frames, width, height = 0, 0, 0
    try:
        with BagOutput(output, storage=options.storage, overwrite=overwrite) as bag:
            while options.max_frames is None or frames < options.max_frames:
                ok, frame_bgr = capture.read()
                if not ok:
                    break
                if options.size is not None and frame_bgr.shape[:2] != tuple(options.size):
                    height_out, width_out = options.size
                    shrinking = height_out * width_out < frame_bgr.shape[0] * frame_bgr.shape[1]
                    frame_bgr = cv2.resize(frame_bgr, (width_out, height_out),
                                           interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
                rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
                height, width = rgb.shape[:2]
                stamp = frame_stamp_ns(frames, fps, options.start_time_s)
                message = (compressed_message(rgb, "jpeg", stamp, options.frame_id) if options.compressed
                           else image_message(rgb, "rgb8", stamp, options.frame_id))
                bag.write(topic, message, stamp)
                frames += 1
                if progress is not None:
                    progress(frames, expected)
            if frames == 0:
                raise InputError(f"no frame could be decoded from video {str(video)!r}")
    finally:
        capture.release()
    return VideoBagResult(path=output, topic=topic, frames=frames, fps=fps, width=width, height=height)
