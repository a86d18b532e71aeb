"""Opening bags with ``rosbags`` (no ROS install): one typestore, one error type, one image-topic check.

Shared by the bag tools (``efc_ros.bag``) and the rosbag training dataset
(``efc_core.data.datasets.own_video``). Every problem a user can cause (missing path, unreadable or
corrupt bag, unknown topic, topic of a wrong type) is an ``InputError`` with a one-line reason.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from efc_core.errors import InputError

#: Pinned to the oldest target distro so bags open on Humble and Jazzy alike; also the types of
#: bags (ROS 1, old rosbag2) that store no message definitions.
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)


def open_reader(path: str | Path) -> AnyReader:
    """An opened ``AnyReader`` on a bag (rosbag2 folder, single ``.mcap``/``.db3`` file, ROS 1 ``.bag``).

    The caller closes it (``open_bag`` does so in a ``with`` block).

    Raises:
        InputError: the path does not exist, or the bag cannot be opened (bad metadata, corrupt
        storage, unknown format).
    """
    bag_path = Path(path)
    if not bag_path.exists():
        raise InputError(f"bag not found: {bag_path}", kind="missing_bag")
    try:
        reader = AnyReader([bag_path], default_typestore=TYPESTORE)
        reader.open()
    except Exception as error:  # rosbags raises several reader/metadata error types
        raise InputError(f"cannot open bag {bag_path}: {error}", kind="corrupt_bag") from None
    return reader


@contextlib.contextmanager
def open_bag(path: str | Path) -> Iterator[AnyReader]:
    """Context manager around ``open_reader(path)`` whose close never raises."""
    reader = open_reader(path)
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def image_connections(reader: AnyReader, topic: str, bag: str | Path = "") -> list[Any]:
    """The connections of image topic ``topic`` (Image or CompressedImage).

    Raises:
        InputError: ``topic`` is not in the bag (the message lists the bag's image topics) or is
        not an image type.
    """
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        images = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
        where = f" {str(bag)!r}" if bag else ""
        raise InputError(f"topic {topic!r} not in bag{where}; image topics there: {images}", kind="topic")
    if connections[0].msgtype not in IMAGE_TYPES:
        raise InputError(f"topic {topic!r} has type {connections[0].msgtype}, not an image type", kind="topic")
    return connections
