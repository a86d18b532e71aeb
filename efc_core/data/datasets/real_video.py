"""Unlabelled real video in the public layouts: DAVIS, KITTI odometry, and folders of video clips.

All three feed :class:`efc_core.data.datasets.own_video.OwnVideoDataset` (placeholder labels 255,
``has_label* = False``, no flow ground truth), which pairs frames t in ``[min_gap_frames, max_gap_frames]``
apart inside one sequence and never across sequences. Layouts::

    davis/<sequence>/frames/00000.jpg ...          DAVIS-2016 (``masks/`` beside ``frames/`` ignored)
    kitti_odometry/sequence_1/000000.jpg ...       KITTI odometry, greyscale frames (read as 3-channel RGB)
    video/clip.mp4  (or one video file)            anything ``cv2.VideoCapture`` opens

Video clips are decoded once at construction: consecutive frames whose structure changes abruptly
(:func:`scene_cut_score` above ``scene_cut_threshold``) start a new sequence, so no pair spans a
scene cut, and the frames are kept in memory as JPEG bytes (about 50 kB per 640x360 frame) so that
shuffled training reads need no seeking in the compressed stream.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from efc_core.data.formats import list_images, natural_sort_key, read_rgb
from efc_core.errors import InputError

#: Default scene-cut threshold in grey levels of :func:`scene_cut_score`. Measured on
#: ``real/video``: cuts in bikes.mp4 score 40-61, fast pans there at most 21, the highway clip
#: solidWhiteRight.mp4 at most 4.
DEFAULT_SCENE_CUT_THRESHOLD: float = 30.0
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
_THUMBNAIL_SIZE = (64, 36)  # (W, H) of the scene-cut thumbnails


def _thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    """(36, 64) float32 grey thumbnail with its mean removed (an exposure change is not a cut)."""
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    small = cv2.resize(grey, _THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    return small - small.mean()


def scene_cut_score(previous_bgr: np.ndarray, current_bgr: np.ndarray) -> float:
    """Mean absolute difference (grey levels, 0-255) of two frames' 64x36 mean-removed thumbnails.

    Args:
        previous_bgr, current_bgr: (H, W, 3) uint8 frames (BGR or RGB alike) or (H, W) grey.

    Returns:
        A score that is small for motion between neighbouring frames and large at a cut.
    """
    return float(np.abs(_thumbnail(current_bgr) - _thumbnail(previous_bgr)).mean())


def _select(names: Sequence[str], wanted: Sequence[str] | None, what: str, root: Path) -> list[str]:
    """``names`` restricted to ``wanted`` (in ``names`` order); ``ValueError`` naming unknown ones."""
    if wanted is None:
        return list(names)
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} {unknown} in {root}; available: {list(names)}")
    return [name for name in names if name in set(wanted)]


class SequenceFoldersSource:
    """One sequence per sub-folder of ``root``: frames in ``root/<sequence>/<frames_subdir>/``.

    Args:
        root: the dataset folder.
        frames_subdir: folder inside each sequence folder holding the frames (``"frames"`` for
            DAVIS), or ``""`` for frames directly in the sequence folder (KITTI odometry here).
        sequences: names of the sequence folders to use (default: all, natural order).
        kind: dataset name for error messages.

    Frames are read with ``cv2.IMREAD_COLOR``, so greyscale files come back as (H, W, 3) RGB.
    """

    def __init__(self, root: str | Path, frames_subdir: str, sequences: Sequence[str] | None = None,
                 kind: str = "sequence folders") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{kind} folder not found: {self.root}")
        found = {}
        for folder in sorted((p for p in self.root.iterdir() if p.is_dir()), key=natural_sort_key):
            frames_dir = folder / frames_subdir if frames_subdir else folder
            if frames_dir.is_dir():
                images = list_images(frames_dir)
                if images:
                    found[folder.name] = images
        if not found:
            pattern = f"<sequence>/{frames_subdir}/*.jpg" if frames_subdir else "<sequence>/*.jpg"
            raise FileNotFoundError(f"no {kind} sequences in {self.root} (expected {pattern})")
        self.sequence_names = _select(list(found), sequences, f"{kind} sequence(s)", self.root)
        self.sequences: list[list[Path]] = [found[name] for name in self.sequence_names]

    def read(self, key: Path) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return read_rgb(key)


def davis_source(root: str | Path, sequences: Sequence[str] | None = None) -> SequenceFoldersSource:
    """DAVIS: ``root/<sequence>/frames/*.jpg`` (the ``masks/`` are object masks, not used)."""
    return SequenceFoldersSource(root, "frames", sequences, kind="DAVIS")


def kitti_odometry_source(root: str | Path, sequences: Sequence[str] | None = None) -> SequenceFoldersSource:
    """KITTI odometry: ``root/<sequence>/*.jpg`` (e.g. ``sequence_1``), greyscale read as RGB."""
    return SequenceFoldersSource(root, "", sequences, kind="KITTI odometry")


class VideoClipsSource:
    """Frames of one video file or of every video in a folder, cut into sequences at scene cuts.

    Args:
        path: a video file, or a folder whose files with a ``VIDEO_SUFFIXES`` suffix are used
            (natural order).
        scene_cut_threshold: :func:`scene_cut_score` above which a new sequence starts; None: no
            cut detection (one sequence per file).
        cache: keep the decoded frames in memory as JPEG (``jpeg_quality``); False re-opens the
            file and seeks on every read (for clips too long to cache).
        jpeg_quality: JPEG quality of the cache (95: invisible at training resolutions).
        max_frames: use at most this many frames of each file (from its start).

    Attributes:
        files: the video files; ``sequences``: per sequence, keys ``(file_index, frame_index)``;
        ``cuts``: per file, the frame indices that start a new scene; ``fps``: per file.
    """

    def __init__(self, path: str | Path, scene_cut_threshold: float | None = DEFAULT_SCENE_CUT_THRESHOLD,
                 cache: bool = True, jpeg_quality: int = 95, max_frames: int | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.files = sorted((p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES), key=natural_sort_key)
            if not self.files:
                raise FileNotFoundError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {path}")
        elif path.is_file():
            self.files = [path]
        else:
            raise FileNotFoundError(f"video file or folder not found: {path}")
        if scene_cut_threshold is not None and scene_cut_threshold <= 0:
            raise ValueError(f"scene_cut_threshold must be > 0 or None, got {scene_cut_threshold}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
        if max_frames is not None and max_frames < 2:
            raise ValueError(f"max_frames must be >= 2 or None, got {max_frames}")
        self.cache = cache
        self._frames: list[list[bytes]] = []
        self.cuts: list[list[int]] = []
        self.fps: list[float] = []
        self.sequences: list[list[tuple[int, int]]] = []
        for file_index, file in enumerate(self.files):
            count, cuts, frames = self._scan(file, scene_cut_threshold, jpeg_quality, max_frames)
            self._frames.append(frames)
            self.cuts.append(cuts)
            bounds = [0, *cuts, count]
            for start, stop in zip(bounds[:-1], bounds[1:]):
                self.sequences.append([(file_index, index) for index in range(start, stop)])
        self._capture: cv2.VideoCapture | None = None
        self._capture_file, self._owner_pid, self._next_frame = -1, -1, 0

    def _scan(self, file: Path, threshold: float | None, quality: int, max_frames: int | None
              ) -> tuple[int, list[int], list[bytes]]:
        """Decode ``file`` once: frame count, scene-cut frame indices and (if caching) JPEG frames."""
        capture = cv2.VideoCapture(str(file))
        if not capture.isOpened():
            raise InputError(f"OpenCV cannot open video {str(file)!r}")
        self.fps.append(float(capture.get(cv2.CAP_PROP_FPS) or 0.0))
        count, cuts, frames, previous = 0, [], [], None
        try:
            while max_frames is None or count < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                if threshold is not None:
                    thumbnail = _thumbnail(frame)
                    if previous is not None and float(np.abs(thumbnail - previous).mean()) > threshold:
                        cuts.append(count)
                    previous = thumbnail
                if self.cache:
                    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                    if not ok:
                        raise InputError(f"cannot JPEG-encode frame {count} of {str(file)!r}")
                    frames.append(encoded.tobytes())
                count += 1
        finally:
            capture.release()
        if count < 2:
            raise InputError(f"video {str(file)!r} has {count} decodable frame(s); pairs need at least 2")
        return count, cuts, frames

    def __getstate__(self) -> dict:
        # A capture handle cannot cross into DataLoader workers: each process opens its own.
        state = self.__dict__.copy()
        state["_capture"], state["_capture_file"], state["_owner_pid"] = None, -1, -1
        return state

    def read(self, key: tuple[int, int]) -> np.ndarray:
        """Frame ``key = (file_index, frame_index)`` as (H, W, 3) uint8 RGB."""
        file_index, frame_index = key
        if self.cache:
            frame = cv2.imdecode(np.frombuffer(self._frames[file_index][frame_index], np.uint8), cv2.IMREAD_COLOR)
        else:
            frame = self._read_from_file(file_index, frame_index)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _read_from_file(self, file_index: int, frame_index: int) -> np.ndarray:
        if self._capture is None or self._owner_pid != os.getpid() or self._capture_file != file_index:
            if self._capture is not None:
                self._capture.release()
            self._capture = cv2.VideoCapture(str(self.files[file_index]))
            self._capture_file, self._owner_pid, self._next_frame = file_index, os.getpid(), 0
        if frame_index != self._next_frame:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
        ok, frame = self._capture.read()
        if not ok:
            raise InputError(f"cannot read frame {frame_index} of video {str(self.files[file_index])!r}")
        self._next_frame = frame_index + 1
        return frame
