"""Wrong input never gives wrong output (issue 13, cases 6-10 and 12): the real node in its own process.

Raw node: a 16UC1 depth frame is refused and never paired; rgb8 -> mono8 resets the pair; a
repeated stamp is dropped; the pixel limit applies; /diagnostics names every error kind and no
longer says "no outputs yet" once outputs were produced. Compressed node (``image`` remapped, as
image_transport users do): listens on ``<remapped image>/compressed``; a corrupt JPEG is detected
and skipped or, on request, published; a PNG decompression bomb is refused from its header.
"""

from __future__ import annotations

import array
import time
import zlib
from binascii import crc32

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image, TimeReference
from std_msgs.msg import Header

from efc_ros.image_conversions import rgb_to_compressed_msg
from tests.ros.ros_helpers import (
    NodeProcess,
    RosClient,
    frame_stamp,
    messages_with_stamp,
    publish_frame,
    stamp_ns,
    start_node_and_client,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

HEIGHT, WIDTH = 96, 128
RAW_NS = "/efc_integrity"
CMP_NS = "/efc_integrity_cmp"
CMP_BASE = "/integrity_cam/image_raw"


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    return generate_sequence(SyntheticConfig(height=HEIGHT, width=WIDTH, num_frames=4), seed=5).frames


PARAMETERS = {"qos_reliability": "reliable", "qos_depth": 20, "num_threads": 1, "log_throttle_sec": 0.0,
              "diagnostics_period": 0.5}


@pytest.fixture(scope="module")
def raw_node(demo_model, tmp_path_factory):
    node, client, publisher, received = start_node_and_client(
        tmp_path_factory.mktemp("integrity") / "node.log", {"model_path": str(demo_model), **PARAMETERS},
        RAW_NS, "efc_integrity_client",
        {"segmentation": Image, "flow": Image, "flow/prev_stamp": TimeReference, "/diagnostics": DiagnosticArray})
    yield node, client, publisher, received
    client.close()
    assert node.stop() == 0
    assert "Traceback" not in node.log()


def _wait_segmentation(running, stamp, present: bool = True, timeout: float = 30.0) -> list:
    node, client, _, received = running
    if present:
        assert client.wait_for(lambda: messages_with_stamp(received["segmentation"], stamp), timeout), node.log()
    else:
        client.wait_for(lambda: False, 1.0)
    return messages_with_stamp(received["segmentation"], stamp)


def _depth_message(index: int) -> Image:
    msg = Image(header=Header(stamp=frame_stamp(index), frame_id="camera"), encoding="16UC1",
                height=HEIGHT, width=WIDTH, step=WIDTH * 2)
    msg.data = array.array("B", (np.arange(HEIGHT * WIDTH, dtype=np.uint16) * 7).tobytes())
    return msg


def test_depth_frame_is_refused_and_never_paired_and_an_encoding_change_resets(ros_environment, raw_node, frames):
    node, client, publisher, received = raw_node
    publish_frame(publisher, frames[0], 0)
    _wait_segmentation(raw_node, frame_stamp(0))
    publisher.publish(_depth_message(1))
    assert client.wait_for(lambda: "not a camera intensity image" in node.log(), 10), node.log()
    assert _wait_segmentation(raw_node, frame_stamp(1), present=False) == []
    publish_frame(publisher, frames[1], 2)
    _wait_segmentation(raw_node, frame_stamp(2))
    assert client.wait_for(lambda: messages_with_stamp(received["flow/prev_stamp"], frame_stamp(2)), 5)
    [reference] = messages_with_stamp(received["flow/prev_stamp"], frame_stamp(2))
    assert stamp_ns(reference.time_ref) == stamp_ns(frame_stamp(0)), "paired with the depth frame"
    publish_frame(publisher, frames[2], 3, encoding="mono8")
    _wait_segmentation(raw_node, frame_stamp(3))
    client.wait_for(lambda: False, 0.5)
    assert messages_with_stamp(received["flow"], frame_stamp(3)) == [], "rgb8 -> mono8 was paired"
    assert "image format changed" in node.log()


def test_a_repeated_stamp_is_dropped_and_counted(ros_environment, raw_node, frames):
    node, client, publisher, received = raw_node
    publish_frame(publisher, frames[0], 20)
    _wait_segmentation(raw_node, frame_stamp(20))
    publish_frame(publisher, frames[3], 20)  # same header, different image
    assert client.wait_for(lambda: "same stamp as the previous" in node.log(), 10), node.log()
    assert len(_wait_segmentation(raw_node, frame_stamp(20))) == 1
    publish_frame(publisher, frames[1], 21)
    assert client.wait_for(lambda: messages_with_stamp(received["flow"], frame_stamp(21)), 30), node.log()


def test_frames_above_the_pixel_limit_are_refused(ros_environment, raw_node, frames):
    node, client, publisher, _ = raw_node
    [result] = client.set_parameters(f"{RAW_NS}/efc_perception", {"max_image_pixels": 1000})
    assert result.successful, result.reason
    publish_frame(publisher, frames[0], 30)
    assert client.wait_for(lambda: "exceeds the limit of 1000 pixels" in node.log(), 10), node.log()
    assert _wait_segmentation(raw_node, frame_stamp(30), present=False) == []
    [result] = client.set_parameters(f"{RAW_NS}/efc_perception", {"max_image_pixels": 1 << 25})
    assert result.successful
    publish_frame(publisher, frames[1], 31)
    _wait_segmentation(raw_node, frame_stamp(31))


def _statuses(received: list, since: float) -> list:
    node_name = f"{RAW_NS}/efc_perception"
    return [status for arrival, array_msg in list(received) if arrival >= since
            for status in array_msg.status if node_name in status.name]


def test_diagnostics_name_every_error_kind_after_outputs_were_produced(ros_environment, raw_node, frames):
    node, client, publisher, received = raw_node
    arrivals: list = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics",
                                    lambda msg: arrivals.append((time.monotonic(), msg)), 50)
    started = time.monotonic()
    for index in range(40, 70):  # 3 s of depth frames only: input arrives, nothing comes out
        publisher.publish(_depth_message(index))
        time.sleep(0.1)
    statuses = list(_statuses(arrivals, started + 1.5))
    assert statuses, "no /diagnostics status received"
    messages = [status.message for status in statuses]
    assert not any("no outputs yet" in message for message in messages), messages
    quiet = [status for status in statuses if "no outputs in the last period" in status.message]
    assert quiet, messages
    values = {kv.key: kv.value for kv in quiet[-1].values}
    assert int(values["errors_input_encoding"]) >= 20, values
    kinds = [key.removeprefix("errors_") for key in values if key.startswith("errors_input")]
    assert all(kind in quiet[-1].message for kind in kinds), (kinds, quiet[-1].message)


# ---- compressed input, image remapped as with image_transport ----

def _bomb_png(width: int = 16000, height: int = 16000) -> bytes:
    """A real PNG of ``width`` x ``height`` grey zeros, compressed row by row (about 250 KB)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + crc32(kind + payload).to_bytes(4, "big")

    compressor = zlib.compressobj(9)
    rows = bytes(width + 1) * 500
    body = b"".join(compressor.compress(rows) for _ in range(height // 500)) + compressor.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.fixture(scope="module")
def compressed_node(demo_model, tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("integrity_cmp") / "node.log",
                       {"model_path": str(demo_model), "use_compressed": True, **PARAMETERS},
                       namespace=CMP_NS, remappings={"image": CMP_BASE})
    client = RosClient("efc_integrity_cmp_client")
    received = {"segmentation": client.subscribe(Image, f"{CMP_NS}/segmentation"),
                "flow": client.subscribe(Image, f"{CMP_NS}/flow")}
    publisher = client.publisher(CompressedImage, f"{CMP_BASE}/compressed")
    ready = client.wait_for(lambda: publisher.get_subscription_count() > 0
                            and client.node.count_publishers(f"{CMP_NS}/segmentation") > 0, 90, 0.1)
    if not ready:
        client.close()
        node.stop()
        pytest.fail(f"the compressed node does not listen on {CMP_BASE}/compressed; its log:\n{node.log()}")
    time.sleep(1.0)
    yield node, client, publisher, received
    client.close()
    assert node.stop() == 0
    assert "Traceback" not in node.log()


def _jpeg(rgb: np.ndarray, index: int, *, corrupt: bool = False) -> CompressedImage:
    msg = rgb_to_compressed_msg(rgb, "jpeg", Header(stamp=frame_stamp(index), frame_id="camera"))
    if corrupt:
        data = bytearray(msg.data)
        third, quarter = len(data) // 3, len(data) // 4
        data[third:third + quarter] = bytes(quarter)
        msg.data = array.array("B", bytes(data))
    return msg


def test_compressed_topic_follows_the_remapped_image_topic(ros_environment, compressed_node, frames):
    node, client, publisher, received = compressed_node
    assert f"subscribed to {CMP_BASE}/compressed" in node.log()
    publisher.publish(_jpeg(frames[0], 0))
    _wait_segmentation(compressed_node, frame_stamp(0))


def test_corrupt_jpeg_is_skipped_or_published_as_configured(ros_environment, compressed_node, frames):
    node, client, publisher, received = compressed_node
    publisher.publish(_jpeg(frames[0], 10))
    _wait_segmentation(compressed_node, frame_stamp(10))
    publisher.publish(_jpeg(frames[1], 11, corrupt=True))
    assert client.wait_for(lambda: "input_corrupt_image error" in node.log(), 10), node.log()
    assert _wait_segmentation(compressed_node, frame_stamp(11), present=False) == []
    raw_lines = [line for line in node.log().splitlines() if line.startswith("Corrupt JPEG data")]
    assert raw_lines == [], "libjpeg's warning went to stderr unhandled"
    publisher.publish(_jpeg(frames[1], 12))
    assert client.wait_for(lambda: messages_with_stamp(received["flow"], frame_stamp(12)), 30), node.log()
    [result] = client.set_parameters(f"{CMP_NS}/efc_perception", {"corrupt_image_policy": "publish"})
    assert result.successful, result.reason
    publisher.publish(_jpeg(frames[2], 13, corrupt=True))
    _wait_segmentation(compressed_node, frame_stamp(13))
    assert "published although corrupt" in node.log()


def test_png_decompression_bomb_is_refused_from_its_header(ros_environment, compressed_node, frames):
    node, client, publisher, received = compressed_node
    bomb = CompressedImage(header=Header(stamp=frame_stamp(20), frame_id="camera"), format="png")
    bomb.data = array.array("B", _bomb_png())
    before = _rss_mb(node.process.pid)
    sent = time.monotonic()
    publisher.publish(bomb)
    assert client.wait_for(lambda: "16000x16000 = 256000000 pixels exceeds the limit" in node.log(), 10), node.log()
    assert time.monotonic() - sent < 5.0
    assert _rss_mb(node.process.pid) - before < 100, "the bomb was decoded"
    publisher.publish(_jpeg(frames[0], 21))
    _wait_segmentation(compressed_node, frame_stamp(21))
