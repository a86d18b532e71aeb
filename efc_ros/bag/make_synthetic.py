"""``efc bag make-synthetic``: a camera bag of synthetic video with ground-truth topics.

Topics (all stamped with the camera frame's ``header.stamp``, ``frame_id`` of the camera):

* ``/camera/image_raw`` (``sensor_msgs/Image``) or ``/camera/image_raw/compressed``;
* ``/ground_truth/segmentation`` mono8 class ids of every frame;
* ``/ground_truth/flow`` 32FC2 forward flow previous -> current frame on the previous frame's grid,
  stamped with the current frame (the node's ``flow`` convention, docs/METHOD.md §6);
* ``/ground_truth/occlusion`` mono8 0/255: previous-frame pixels with no correspondence.

Long bags are generated segment by segment (bounded memory); the first frame of a segment is a
scene cut, and no flow ground truth is written for the pair that crosses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from efc_core.data.synthetic import SyntheticConfig, generate_sequence
from efc_ros.bag.io import BagOutput, compressed_message, image_message

CAMERA_TOPIC = "/camera/image_raw"
GT_SEGMENTATION_TOPIC = "/ground_truth/segmentation"
GT_FLOW_TOPIC = "/ground_truth/flow"
GT_OCCLUSION_TOPIC = "/ground_truth/occlusion"
RAW_ENCODINGS = ("rgb8", "bgr8", "mono8")
COMPRESSED_FORMATS = ("jpeg", "png")


@dataclass(frozen=True)
class SyntheticBagOptions:
    """What ``make-synthetic`` writes. Times are in seconds, sizes in pixels."""

    width: int = 640
    height: int = 480
    num_frames: int = 60
    fps: float = 15.0
    encoding: str = "rgb8"  # rgb8 | bgr8 | mono8 | jpeg | png
    storage: str = "mcap"  # mcap | sqlite3
    frame_id: str = "camera"
    seed: int = 0
    segment_length: int = 60
    num_classes: int = 6
    start_time_s: float = 1_700_000_000.0
    #: Receive time minus stamp, as a driver and DDS would add; keeps bag time != stamp.
    transport_delay_s: float = 0.004
    with_ground_truth: bool = True
    #: "procedural" or "photo" (efc_core.data.synthetic.SyntheticConfig.texture_source).
    texture_source: str = "procedural"
    #: Further ``SyntheticConfig`` settings of the scenes (motions in px/frame, photometric
    #: changes, ``object_tint``, ...), e.g. those a model was trained on; {} = the generator's.
    scene: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """``ValueError`` naming the first bad option."""
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size {self.width}x{self.height} is too small (min 16x16)")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.encoding not in RAW_ENCODINGS + COMPRESSED_FORMATS:
            raise ValueError(f"unknown encoding {self.encoding!r}; "
                             f"expected one of {RAW_ENCODINGS + COMPRESSED_FORMATS}")
        if self.segment_length < 2:
            raise ValueError(f"segment_length must be >= 2, got {self.segment_length}")
        owned = {"height", "width", "num_frames", "num_classes", "texture_source"}
        known = {f.name for f in dataclasses.fields(SyntheticConfig)} - owned
        unknown = sorted(set(self.scene) - known)
        if unknown:
            raise ValueError(f"unknown scene setting(s) {unknown}; expected some of {sorted(known)}")


def camera_topic(encoding: str) -> str:
    """The camera topic for an encoding: ``.../compressed`` for jpeg and png."""
    return f"{CAMERA_TOPIC}/compressed" if encoding in COMPRESSED_FORMATS else CAMERA_TOPIC


def frame_stamps_ns(options: SyntheticBagOptions) -> np.ndarray:
    """Header stamps (ns) at ``fps`` with a deterministic sub-millisecond driver jitter."""
    rng = np.random.default_rng(options.seed + 7919)
    period_ns = 1e9 / options.fps
    jitter_ns = rng.uniform(-0.3e6, 0.3e6, size=options.num_frames)
    times = options.start_time_s * 1e9 + np.arange(options.num_frames) * period_ns + jitter_ns
    return times.astype(np.int64)


def camera_message(rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """The camera message of one (H, W, 3) RGB frame in the requested encoding."""
    if encoding in COMPRESSED_FORMATS:
        return compressed_message(rgb, encoding, stamp_ns, frame_id)
    if encoding == "bgr8":
        return image_message(rgb[:, :, ::-1], "bgr8", stamp_ns, frame_id)
    if encoding == "mono8":
        gray = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round()
        return image_message(gray.astype(np.uint8), "mono8", stamp_ns, frame_id)
    return image_message(rgb, "rgb8", stamp_ns, frame_id)


def make_synthetic_bag(output: str | Path, options: SyntheticBagOptions, overwrite: bool = False) -> Path:
    """Write the bag and return its path. See the module docstring for the topics."""
    options.validate()
    stamps = frame_stamps_ns(options)
    delay_ns = int(options.transport_delay_s * 1e9)
    topic = camera_topic(options.encoding)
    with BagOutput(output, storage=options.storage, overwrite=overwrite) as bag:
        frame_index = 0
        segment = 0
        while frame_index < options.num_frames:
            length = min(options.segment_length, options.num_frames - frame_index)
            config = SyntheticConfig(
                height=options.height, width=options.width, num_frames=max(length, 2),
                num_classes=options.num_classes, texture_source=options.texture_source, **options.scene,
            )
            sequence = generate_sequence(config, seed=options.seed * 1000 + segment)
            for local in range(length):
                stamp = int(stamps[frame_index])
                bag_time = stamp + delay_ns
                frame = sequence.frames[local]
                bag.write(topic, camera_message(frame, options.encoding, stamp, options.frame_id), bag_time)
                if options.with_ground_truth:
                    labels = sequence.labels[local]
                    bag.write(GT_SEGMENTATION_TOPIC, image_message(labels, "mono8", stamp, options.frame_id), bag_time)
                    if local > 0:
                        flow = sequence.flow(local - 1, local)
                        occlusion = sequence.occlusion(local - 1, local).astype(np.uint8) * 255
                        bag.write(GT_FLOW_TOPIC, image_message(flow, "32FC2", stamp, options.frame_id), bag_time)
                        bag.write(GT_OCCLUSION_TOPIC, image_message(occlusion, "mono8", stamp, options.frame_id),
                                  bag_time)
                frame_index += 1
            segment += 1
    return Path(output)
