"""The user's own unlabelled video as training pairs: an image folder, a video file or a rosbag topic.

EFC learns flow and occlusion from photometric self-supervision and keeps segmentation temporally
consistent through the flow, so recordings from the user's robot adapt all three without a single
label. Samples carry placeholder labels (255, ``has_label* = False``) and no flow ground truth.

Sources (each indexed once at construction; frames are decoded when a pair is read):

* :class:`ImageFolderSource`: images in a folder in natural name order (one sequence), or one
  sequence per sub-folder;
* :class:`VideoFileSource`: any file ``cv2.VideoCapture`` opens (one sequence);
* :class:`RosbagImageSource`: a ``sensor_msgs/msg/Image`` or ``CompressedImage`` topic of a
  rosbag2 (sqlite3 or MCAP) or ROS 1 bag, read with ``rosbags`` (message types pinned to ROS 2
  Humble where the bag stores none) and decoded by ``efc_core.edge.image_decode``, the decoder the
  ROS node uses, so training sees the pixels serving sees; frames ordered by header stamp and cut into sequences
  wherever two stamps are more than ``max_gap_s`` apart, so no pair spans a dropout.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from efc_core.data.formats import IMAGE_SUFFIXES, list_images, natural_sort_key
from efc_core.data.datasets.pair_sampling import PairSamplingConfig, split_by_time_gaps
from efc_core.data.datasets.sample import RawSample, read_rgb
from efc_core.data.datasets.sequence_pairs import SequencePairDataset
from efc_core.edge.image_decode import decode_image
from efc_core.edge.stamps import stamp_to_ns
from efc_core.errors import InputError


class ImageFolderSource:
    """Frames from image files; ``sequences`` holds one list of paths per sequence."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")

        direct = list_images(root)
        if direct:
            self.sequences: list[list[Any]] = [direct]
        else:
            subfolders = sorted((p for p in root.iterdir() if p.is_dir()), key=natural_sort_key)
            self.sequences = [images for images in map(list_images, subfolders) if images]
        if not self.sequences:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root} or its sub-folders")

    def read(self, key: Path) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return read_rgb(key)


class VideoFileSource:
    """Frames of a video file, counted once by a full pass of ``grab()`` (container frame counts lie)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise InputError(f"OpenCV cannot open video {str(self.path)!r}")
        count = 0
        while capture.grab():
            count += 1
        capture.release()
        if count < 2:
            raise InputError(f"video {str(self.path)!r} has {count} frame(s); pairs need at least 2")
        self.sequences = [list(range(count))]
        self._capture: cv2.VideoCapture | None = None
        self._owner_pid = -1
        self._next_frame = 0

    def __getstate__(self) -> dict:
        # A capture handle cannot cross into DataLoader workers: each process opens its own.
        state = self.__dict__.copy()
        state["_capture"], state["_owner_pid"] = None, -1
        return state

    def read(self, key: int) -> np.ndarray:
        """Frame ``key`` as (H, W, 3) uint8 RGB; reads on without seeking when frames come in order."""
        if self._capture is None or self._owner_pid != os.getpid():
            self._capture = cv2.VideoCapture(str(self.path))
            self._owner_pid, self._next_frame = os.getpid(), 0
        if key != self._next_frame:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, key)
        ok, frame = self._capture.read()
        if not ok:
            raise InputError(f"cannot read frame {key} of video {str(self.path)!r}")
        self._next_frame = key + 1
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class RosbagImageSource:
    """Frames of one image topic of a bag; keys are ``(log_time_ns, ordinal)`` for random access.

    Args:
        path: bag folder (rosbag2) or ``.bag`` file (ROS 1).
        topic: image topic, ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        max_gap_s: largest header-stamp step inside one sequence.
    """

    def __init__(self, path: str | Path, topic: str, max_gap_s: float = 0.5) -> None:
        self.path, self.topic = Path(path), topic
        entries: list[tuple[int, int, int]] = []
        reader = self._open()
        try:
            connections = self._connections(reader)
            self.msgtype = connections[0].msgtype
            previous_time, ordinal = None, 0
            for connection, log_time, raw in reader.messages(connections=connections):
                ordinal = ordinal + 1 if log_time == previous_time else 0
                previous_time = log_time
                stamp = stamp_to_ns(reader.deserialize(raw, connection.msgtype).header.stamp)
                # An unset stamp (0) says nothing about capture time; the recording time does.
                entries.append((stamp or log_time, log_time, ordinal))
        except InputError:
            raise
        except Exception as error:  # rosbags' storage and CDR errors: one error type for a corrupt bag
            raise InputError(f"corrupt bag data in {str(self.path)!r} on {self.topic!r}: {error}",
                             kind="corrupt_bag") from None
        finally:
            reader.close()
        entries.sort()
        # Two messages with one stamp are the same frame republished: keep the first.
        unique = [e for i, e in enumerate(entries) if i == 0 or e[0] != entries[i - 1][0]]
        self.stamps_ns = [e[0] for e in unique]
        runs = split_by_time_gaps(self.stamps_ns, max_gap_s)
        self.sequences = [[(unique[i][1], unique[i][2]) for i in run] for run in runs]
        self.sequence_stamps_ns = [[unique[i][0] for i in run] for run in runs]
        self._reader = None
        self._owner_pid = -1

    def _open(self) -> Any:
        """An opened reader (``InputError`` for a missing or unreadable bag)."""
        # Imported here: rosbags is needed only by rosbag sources.
        from efc_core.edge.bag_io import open_reader

        return open_reader(self.path)

    def _connections(self, reader: Any) -> list:
        from efc_core.edge.bag_io import image_connections

        return image_connections(reader, self.topic, self.path)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"], state["_owner_pid"] = None, -1
        return state

    def read(self, key: tuple[int, int]) -> np.ndarray:
        """The message recorded at ``log_time`` (the ``ordinal``-th at that time) as RGB."""
        if self._reader is None or self._owner_pid != os.getpid():
            self._reader, self._owner_pid = self._open(), os.getpid()
            self._reader_connections = self._connections(self._reader)
        log_time, ordinal = key
        messages = self._reader.messages(connections=self._reader_connections, start=log_time, stop=log_time + 1)
        for index, (connection, _, raw) in enumerate(messages):
            if index == ordinal:
                return decode_image(self._reader.deserialize(raw, connection.msgtype)).rgb
        raise InputError(f"message at {log_time} ns (#{ordinal}) of {self.topic!r} vanished from {str(self.path)!r}")


class OwnVideoDataset(SequencePairDataset):
    """Unlabelled pairs from a frame source; every pair within a sequence is used.

    Args:
        source: an :class:`ImageFolderSource`, :class:`VideoFileSource` or :class:`RosbagImageSource`.
        pair_config: gaps and directions (default t in [1, 5] both ways); with no labelled frame
            at all, ``unlabelled_per_labelled`` is ignored and every pair is kept.
        transform: raw sample -> sample (default ToTensor).
    """

    def __init__(self, source: Any, pair_config: PairSamplingConfig | None = None,
                 transform: Callable[[RawSample], Any] | None = None) -> None:
        config = dataclasses.replace(pair_config or PairSamplingConfig(), unlabelled_per_labelled=None)
        super().__init__(config, transform)
        self.source = source
        self._set_sequences([[False] * len(keys) for keys in source.sequences], source=repr(type(source).__name__))

    def read_frame(self, sequence: int, index: int) -> np.ndarray:
        return self.source.read(self.source.sequences[sequence][index])

    def read_label(self, sequence: int, index: int) -> np.ndarray:
        raise InputError("own video has no labels")
