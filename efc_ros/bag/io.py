"""Reading and writing ROS 2 bags with ``rosbags``: typestore, messages, safe output.

Every error a user can cause (missing or corrupt bag, unknown topic, wrong message type) is an
``InputError`` with a one-line reason, so the CLI can report it and exit non-zero.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_typestore

from efc_core.errors import InputError
from efc_ros.bag.integrity import ChecksummedWriter, IntegrityReport, drop_corrupt_chunks, message_problem
from efc_ros.output_paths import (
    check_output_apart, check_replaceable, make_staging_folder, remove_stale_staging,
)

#: Pinned to the oldest target distro so bags open on Humble and Jazzy alike (ROS_NODE.md).
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
BAG_VERSION = 8  # rosbag2 metadata version understood by Humble's rosbag2 and rosbags

_Image = TYPESTORE.types[IMAGE_TYPE]
_CompressedImage = TYPESTORE.types[COMPRESSED_TYPE]
_Header = TYPESTORE.types["std_msgs/msg/Header"]
_Time = TYPESTORE.types["builtin_interfaces/msg/Time"]

#: Output encodings this module writes, with their channel counts (decoding lives in
#: ``efc_ros.image_conversions``, shared with the node).
_FLOAT_ENCODINGS = {"32FC1": 1, "32FC2": 2}
_UINT8_ENCODINGS = {"mono8": 1, "rgb8": 3, "bgr8": 3}


@dataclass(frozen=True)
class BagMessage:
    """One deserialised message with its topic, type and bag receive time (ns)."""

    topic: str
    msgtype: str
    bag_time_ns: int
    message: Any


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` (rosbags class) for ``stamp_ns`` and ``frame_id``."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return _Header(stamp=_Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_message(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """Build a ``sensor_msgs/Image`` from an array.

    Args:
        array: (H, W) or (H, W, C) uint8 for mono8/rgb8/bgr8, float32 for 32FC1/32FC2.
        encoding: a ``sensor_msgs/image_encodings`` name matching the array.
    """
    channels = _UINT8_ENCODINGS.get(encoding) or _FLOAT_ENCODINGS.get(encoding)
    if channels is None:
        raise ValueError(f"unsupported output encoding {encoding!r}")
    dtype = np.float32 if encoding in _FLOAT_ENCODINGS else np.uint8
    data = np.ascontiguousarray(array, dtype=dtype)
    height, width = data.shape[:2]
    if data.size != height * width * channels:
        raise ValueError(f"array of shape {array.shape} does not match encoding {encoding!r}")
    return _Image(
        header=make_header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=width * channels * data.itemsize, data=data.reshape(-1).view(np.uint8),
    )


def compressed_message(rgb: np.ndarray, image_format: str, stamp_ns: int, frame_id: str) -> Any:
    """Build a ``sensor_msgs/CompressedImage`` (``jpeg`` or ``png``) from an (H, W, 3) RGB array."""
    import cv2

    if image_format not in ("jpeg", "png"):
        raise ValueError(f"unsupported compressed format {image_format!r}; expected 'jpeg' or 'png'")
    ok, encoded = cv2.imencode(".jpg" if image_format == "jpeg" else ".png", rgb[:, :, ::-1])
    if not ok:
        raise ValueError("OpenCV could not encode the image")
    return _CompressedImage(header=make_header(stamp_ns, frame_id), format=image_format, data=encoded.reshape(-1))


@contextlib.contextmanager
def open_bag(path: str | Path) -> Iterator[AnyReader]:
    """Open a bag (folder or single ``.mcap``/``.db3`` file) for reading, with one-line errors."""
    bag_path = Path(path)
    if not bag_path.exists():
        raise InputError(f"bag not found: {bag_path}")
    try:
        reader = AnyReader([bag_path], default_typestore=TYPESTORE)
        reader.open()
    except Exception as error:  # rosbags raises several reader/metadata error types
        raise InputError(f"cannot open bag {bag_path}: {error}") from None
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def read_messages(reader: AnyReader, topics: list[str],
                  integrity: IntegrityReport | None = None) -> Iterator[BagMessage]:
    """Deserialised messages of ``topics`` in bag order.

    Corrupt data is counted in ``integrity`` and skipped: MCAP chunks failing their CRC (see
    ``efc_ros.bag.integrity``), records that do not deserialise, images whose size fields disagree
    with their data. Without ``integrity`` a corrupt message is an ``InputError``. A bag whose
    storage cannot be read at all (truncated file, broken index) is always an ``InputError``.
    """
    report = integrity if integrity is not None else IntegrityReport()
    connections = [c for c in reader.connections if c.topic in topics]
    try:
        drop_corrupt_chunks(reader, set(topics), report)
    except Exception as error:
        raise InputError(f"corrupt bag data while checking {topics}: {error}") from None
    _raise_unless_collected(report, integrity)
    try:
        for connection, bag_time_ns, raw in reader.messages(connections=connections):
            try:
                message = reader.deserialize(raw, connection.msgtype)
                problem = message_problem(connection.msgtype, message)
            except Exception as error:  # rosbags' CDR errors (SerdeError, struct/index errors)
                problem = f"CDR data does not deserialise as {connection.msgtype}: {type(error).__name__}"
            if problem is not None:
                report.add(connection.topic, 1, f"message at bag time {bag_time_ns} ns: {problem}")
                _raise_unless_collected(report, integrity)
                continue
            yield BagMessage(connection.topic, connection.msgtype, bag_time_ns, message)
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"corrupt bag data while reading {topics}: {error}") from None


def _raise_unless_collected(report: IntegrityReport, integrity: IntegrityReport | None) -> None:
    if integrity is None and report.total:
        raise InputError(f"corrupt bag data: {report.problems[0]}")


def topic_types(reader: AnyReader) -> dict[str, str]:
    """Topic name -> message type of every connection in the bag."""
    return {connection.topic: connection.msgtype for connection in reader.connections}


def find_image_topic(reader: AnyReader, requested: str | None = None) -> tuple[str, str]:
    """The image topic to process: ``requested``, or the only camera topic of the bag.

    Topics under the ground-truth and output namespaces are not candidates.
    Returns ``(topic, msgtype)``; ``InputError`` when missing, ambiguous or of a wrong type.
    """
    types = topic_types(reader)
    if requested is not None:
        if requested not in types:
            raise InputError(f"topic {requested!r} not in bag; topics: {', '.join(sorted(types)) or 'none'}")
        if types[requested] not in IMAGE_TYPES:
            raise InputError(f"topic {requested!r} has type {types[requested]}, expected Image or CompressedImage")
        return requested, types[requested]
    candidates = sorted(
        topic for topic, msgtype in types.items()
        if msgtype in IMAGE_TYPES and not topic.startswith(("/ground_truth", "/efc"))
    )
    if not candidates:
        raise InputError("no sensor_msgs/Image or CompressedImage topic in the bag; use --topic")
    if len(candidates) > 1:
        raise InputError(f"several image topics ({', '.join(candidates)}); choose one with --topic")
    return candidates[0], types[candidates[0]]


class BagOutput:
    """A bag written into a hidden staging folder and moved into place only on success.

    A failed or interrupted run leaves nothing at ``path`` that could be mistaken for a finished
    output, and its staging folder is removed (on SIGKILL, by the next run writing ``path``).
    Nothing is touched before every check passed: ``path`` is not one of ``inputs``, does not
    contain one and does not lie inside one; with ``overwrite`` it replaces only a bag folder.
    MCAP chunks carry CRC-32s (``efc_ros.bag.integrity.ChecksummedWriter``).
    """

    def __init__(self, path: str | Path, storage: str = "mcap", overwrite: bool = False,
                 inputs: Iterable[str | Path] = ()) -> None:
        self.path = Path(path)
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"unknown storage {storage!r}; expected 'mcap' or 'sqlite3'")
        check_output_apart(self.path, inputs)
        check_replaceable(self.path, overwrite, what="bag")
        removed, unknown = remove_stale_staging(self.path)
        for folder in removed:
            print(f"efc: removed {folder}, the staging folder of a killed run", file=sys.stderr)
        for folder in unknown:
            print(f"efc: warning: {folder} looks like the staging folder of an interrupted run; "
                  f"delete it if no other run is writing {self.path}", file=sys.stderr)
        self._staging = make_staging_folder(self.path)
        self._bag_dir = self._staging / self.path.name
        self._writer = ChecksummedWriter(self._bag_dir, version=BAG_VERSION, storage_plugin=plugins[storage])
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> "BagOutput":
        try:
            self._writer.open()
        except BaseException:
            shutil.rmtree(self._staging, ignore_errors=True)
            raise
        return self

    def write(self, topic: str, message: Any, bag_time_ns: int) -> None:
        """Serialise ``message`` (a rosbags message) onto ``topic`` at receive time ``bag_time_ns``."""
        msgtype = message.__msgtype__
        self.write_raw(topic, msgtype, TYPESTORE.serialize_cdr(message, msgtype), bag_time_ns)

    def write_raw(self, topic: str, msgtype: str, raw: bytes, bag_time_ns: int) -> None:
        """Write already serialised CDR bytes (e.g. straight from rclpy) onto ``topic``."""
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self._connections[topic] = connection
        self._writer.write(connection, int(bag_time_ns), raw)

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        try:
            if exc_type is None:
                self._writer.close()
                if self.path.exists():
                    # Move the old bag aside first: the new one takes its place in one rename.
                    self.path.rename(self._staging / f"{self.path.name}.replaced")
                self._bag_dir.rename(self.path)
            else:
                with contextlib.suppress(Exception):
                    self._writer.abort()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
