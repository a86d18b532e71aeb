"""Reading and writing ROS 2 bags with ``rosbags``: messages, integrity-checked reading, safe output.

Opening a bag, the typestore and stamps come from ``efc_core.edge`` (shared with the rosbag
training dataset); output arrays are laid out by ``efc_core.edge.image_encode``. Every error a user can cause (missing
or corrupt bag, unknown topic, wrong message type) is an
``InputError`` with a one-line reason, so the CLI can report it and exit non-zero.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin

from efc_core.edge.bag_io import COMPRESSED_TYPE, IMAGE_TYPE, IMAGE_TYPES, TYPESTORE, open_bag  # noqa: F401
from efc_core.edge.image_encode import pack_output
from efc_core.edge.stamps import ns_to_sec_nanosec, stamp_to_ns  # noqa: F401  (re-exported for the bag tools)
from efc_core.errors import InputError
from efc_ros.bag.integrity import ChecksummedWriter, IntegrityReport, drop_corrupt_chunks, message_problem
from efc_ros.output_paths import (
    check_output_apart, check_replaceable, make_staging_folder, remove_stale_staging,
)

_LOG = logging.getLogger(__name__)

BAG_VERSION = 8  # rosbag2 metadata version understood by Humble's rosbag2 and rosbags

_Image = TYPESTORE.types[IMAGE_TYPE]
_CompressedImage = TYPESTORE.types[COMPRESSED_TYPE]
_Header = TYPESTORE.types["std_msgs/msg/Header"]
_Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
_TimeReference = TYPESTORE.types["sensor_msgs/msg/TimeReference"]


@dataclass(frozen=True)
class BagMessage:
    """One deserialised message with its topic, type and bag receive time (ns)."""

    topic: str
    msgtype: str
    bag_time_ns: int
    message: Any


def make_header(stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` (rosbags class) for ``stamp_ns`` and ``frame_id``."""
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return _Header(stamp=_Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_message(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """A ``sensor_msgs/Image`` (rosbags class) of an output array (``efc_core.edge.image_encode.pack_output``).

    Args:
        array: (H, W) or (H, W, C) uint8 for mono8/rgb8/bgr8, float for 32FC1/32FC2.
        encoding: a ``sensor_msgs/image_encodings`` name matching the array.
    """
    packed = pack_output(array, encoding)
    return _Image(header=make_header(stamp_ns, frame_id), height=packed.height, width=packed.width,
                  encoding=encoding, is_bigendian=0, step=packed.step, data=packed.data)


def time_reference_message(time_ref_ns: int, stamp_ns: int, frame_id: str) -> Any:
    """A ``sensor_msgs/TimeReference`` (rosbags class): ``flow/prev_stamp`` of the frame at ``stamp_ns``."""
    sec, nanosec = ns_to_sec_nanosec(time_ref_ns)
    return _TimeReference(header=make_header(stamp_ns, frame_id), time_ref=_Time(sec=sec, nanosec=nanosec),
                          source="previous_frame")


def compressed_message(rgb: np.ndarray, image_format: str, stamp_ns: int, frame_id: str) -> Any:
    """Build a ``sensor_msgs/CompressedImage`` (``jpeg`` or ``png``) from an (H, W, 3) RGB array."""
    import cv2

    if image_format not in ("jpeg", "png"):
        raise ValueError(f"unsupported compressed format {image_format!r}; expected 'jpeg' or 'png'")
    ok, encoded = cv2.imencode(".jpg" if image_format == "jpeg" else ".png", rgb[:, :, ::-1])
    if not ok:
        raise ValueError("OpenCV could not encode the image")
    return _CompressedImage(header=make_header(stamp_ns, frame_id), format=image_format, data=encoded.reshape(-1))


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
            _LOG.info("removed %s, the staging folder of a killed run", folder)
        for folder in unknown:
            _LOG.warning("%s looks like the staging folder of an interrupted run; "
                         "delete it if no other run is writing %s", folder, self.path)
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
