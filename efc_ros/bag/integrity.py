"""Integrity of bag data: MCAP chunk CRCs written and checked, corrupt messages counted and skipped.

The checks are the ones the formats carry, plus field consistency:

* MCAP chunks hold a CRC-32 of their uncompressed records. ``ros2 bag record`` writes it; the
  ``rosbags`` writer leaves it 0 ("not computed"), so ``ChecksummedWriter`` fills it in for every
  bag this project writes. ``drop_corrupt_chunks`` verifies each chunk before reading and takes
  the ones that fail out of the reader's index: their messages are reported and skipped instead
  of aborting the whole bag (``rosbags`` raises on the first bad chunk).
* CDR records that do not deserialise, and images whose size fields disagree with their data,
  are reported and skipped one message at a time (``message_problem``).

sqlite3 bags and MCAP files written without CRCs have no checksum: a flipped pixel there is
undetectable, but impossible values are still caught downstream (``efc bag eval`` refuses
non-finite or out-of-range ground truth).
"""

from __future__ import annotations

import collections
from binascii import crc32
from dataclasses import dataclass, field
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.storage_mcap import McapReader, McapWriter, decompress

from efc_core.edge.image_decode import bytes_per_pixel

#: Byte offset of ``uncompressed_crc`` inside an MCAP Chunk record: opcode (1) + record length (8)
#: + message_start_time (8) + message_end_time (8) + uncompressed_size (8).
_CHUNK_CRC_OFFSET = 1 + 8 + 24
#: Most problems listed one by one in a report (every one is counted).
_MAX_LISTED = 20


@dataclass
class IntegrityReport:
    """Corrupt data met while reading a bag: skipped messages per topic and what was wrong."""

    skipped: collections.Counter = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, topic: str, count: int, reason: str) -> None:
        """Record ``count`` messages of ``topic`` skipped because of ``reason`` (one line)."""
        self.skipped[topic] += int(count)
        if len(self.problems) < _MAX_LISTED:
            self.problems.append(f"{topic}: {reason}")

    @property
    def total(self) -> int:
        """Number of messages skipped."""
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line: how many messages of which topics were skipped, and the first reason."""
        topics = ", ".join(f"{topic} {count}" for topic, count in sorted(self.skipped.items()))
        first = self.problems[0] if self.problems else ""
        return f"skipped {self.total} corrupt message(s) ({topics}); first: {first}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts and the listed problems."""
        return {"corrupt_messages": self.total, "by_topic": dict(self.skipped), "problems": list(self.problems)}


class _ChecksummedMcapWriter(McapWriter):
    """``rosbags``' MCAP writer, with the CRC-32 of each chunk's uncompressed records filled in."""

    def close_chunk(self) -> None:
        records = self.chunk.bio.getvalue()
        chunk_start = self.bio.tell()
        super().close_chunk()
        end = self.bio.tell()
        self.bio.seek(chunk_start + _CHUNK_CRC_OFFSET)
        self.bio.write(crc32(records).to_bytes(4, "little"))
        self.bio.seek(end)


class ChecksummedWriter(Writer):
    """``rosbags.rosbag2.Writer`` whose MCAP storage records chunk CRCs (as ``ros2 bag record`` does)."""

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _ChecksummedMcapWriter}


def _mcap_storages(reader: Any) -> list[McapReader]:
    """The MCAP storage readers behind an open ``AnyReader`` (none for sqlite3 or rosbag1)."""
    storages: list[McapReader] = []
    for bag in getattr(reader, "readers", []):
        storage = getattr(bag, "storage", None)
        for candidate in getattr(storage, "storages", [storage]):
            if isinstance(candidate, McapReader):
                storages.append(candidate)
    return storages


def drop_corrupt_chunks(reader: Any, topics: set[str], report: IntegrityReport) -> None:
    """Verify every MCAP chunk holding ``topics``; remove failing chunks from the reader's index.

    A chunk fails when its data cannot be decompressed, its size disagrees with its header or its
    recorded CRC-32 (non-zero) does not match. Its messages of ``topics`` are counted in ``report``.
    """
    for storage in _mcap_storages(reader):
        if storage.bio is None:
            continue
        wanted = {cid for cid, channel in storage.channels.items() if channel.topic in topics}
        kept = []
        for chunk in storage.chunks:
            if not any(chunk.channel_count.get(cid, 0) for cid in wanted):
                kept.append(chunk)
                continue
            problem = _chunk_problem(storage, chunk)
            if problem is None:
                kept.append(chunk)
                continue
            for cid, count in chunk.channel_count.items():
                if cid in wanted and count:
                    report.add(storage.channels[cid].topic, count,
                               f"MCAP chunk at byte {chunk.chunk_start_offset}: {problem}")
        storage.chunks = kept


def _chunk_problem(storage: McapReader, chunk: Any) -> str | None:
    """Why a chunk's data is corrupt, or None."""
    bio = storage.bio
    try:
        bio.seek(chunk.chunk_start_offset + _CHUNK_CRC_OFFSET)
        crc = int.from_bytes(bio.read(4), "little")
        bio.seek(chunk.chunk_start_offset + _CHUNK_CRC_OFFSET + 4 + 4 + len(chunk.compression) + 8)
        data = bio.read(chunk.compressed_size)
        if len(data) != chunk.compressed_size:
            return f"truncated ({len(data)} of {chunk.compressed_size} bytes)"
        decompress(data, chunk.compression, chunk.uncompressed_size, crc)
    except ReaderError as error:
        return str(error).rstrip(".").lower()
    except Exception as error:  # a decompressor's own error types
        return f"{type(error).__name__}: {error}"
    return None


def message_problem(msgtype: str, message: Any) -> str | None:
    """Why a deserialised image message is inconsistent (size fields vs data), or None.

    Only ``sensor_msgs/Image`` and ``CompressedImage`` are checked; other types pass.
    """
    if msgtype == "sensor_msgs/msg/Image":
        height, width, step, size = int(message.height), int(message.width), int(message.step), len(message.data)
        if size != height * step:
            return f"data has {size} bytes but height*step = {height}*{step} = {height * step}"
        pixel_bytes = bytes_per_pixel(message.encoding)  # the decoder's encoding table; None: unknown
        if pixel_bytes is not None and step < width * pixel_bytes:
            return f"step {step} < width*{pixel_bytes} = {width * pixel_bytes} for {message.encoding}"
    elif msgtype == "sensor_msgs/msg/CompressedImage" and len(message.data) == 0:
        return "CompressedImage has no data"
    return None
