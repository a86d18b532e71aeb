"""``efc bag process``: run the node's ``Perceptor`` over a bag and write the outputs to a new bag.

Frames are decoded by ``efc_core.edge.image_decode`` and outputs rendered by
``efc_core.edge.render``, exactly as in the node: the output bag holds the node's topics under
``/efc`` (``flow/prev_stamp`` as ``sensor_msgs/TimeReference``), drawn with the same options.

Frames are paired by ``header.stamp``, not by bag receive time: messages go through a small
reorder buffer sorted by stamp, so a bag recorded out of order still yields the right pairs.
The input is streamed (one message at a time), so bags larger than memory work.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from efc_core.edge import render
from efc_core.edge.bag_io import open_bag
from efc_core.edge.image_decode import decode_image
from efc_core.edge.input_limits import DEFAULT_MAX_IMAGE_PIXELS, error_kind
from efc_core.edge.stamps import stamp_to_ns
from efc_core.errors import InputError
from efc_core.perceptor import PerceptionResult, Perceptor
from efc_ros.bag.integrity import IntegrityReport
from efc_ros.bag.io import BagOutput, find_image_topic, image_message, read_messages, time_reference_message

OUTPUT_NAMESPACE = "/efc"
#: Colour renderings, left out with ``colors=False`` (``efc bag process --no-color``).
COLOUR_TOPICS = frozenset({render.SEGMENTATION_COLOR, render.OVERLAY, render.FLOW_COLOR, render.OCCLUSION_COLOR})


@dataclass
class ProcessStats:
    """Counts and the wall time (s) of each stage of a ``process_bag`` run."""

    frames: int = 0
    pairs: int = 0
    pair_resets: dict[str, int] = field(default_factory=dict)
    reordered: int = 0
    #: Camera frames read but not processed, by reason (corrupt image, duplicate stamp, ...).
    skipped_frames: dict[str, int] = field(default_factory=dict)
    #: Messages skipped as corrupt while reading (chunk CRC, CDR, size fields).
    integrity: IntegrityReport = field(default_factory=IntegrityReport)
    #: First few "stamp: reason" lines of the skipped frames.
    skip_details: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {
        "read": 0.0, "decode": 0.0, "inference": 0.0, "outputs": 0.0, "write": 0.0})

    def skip(self, reason: str, detail: str) -> None:
        """Count a camera frame that produced no outputs."""
        self.skipped_frames[reason] = self.skipped_frames.get(reason, 0) + 1
        if len(self.skip_details) < 20:
            self.skip_details.append(detail)

    def as_dict(self) -> dict[str, Any]:
        total = sum(self.seconds.values())
        return {
            "frames": self.frames, "pairs": self.pairs, "pair_resets": dict(self.pair_resets),
            "reordered": self.reordered, "skipped_frames": dict(self.skipped_frames),
            "skip_details": list(self.skip_details), "integrity": self.integrity.as_dict(),
            "seconds": dict(self.seconds),
            "frames_per_second": self.frames / total if total > 0 else 0.0,
            "share": {k: (v / total if total > 0 else 0.0) for k, v in self.seconds.items()},
        }


def output_messages(result: PerceptionResult, rgb: np.ndarray | None,
                    options: render.RenderOptions) -> dict[str, Any]:
    """Output topic (under ``/efc``) -> rosbags message for one result, rendered like the node's."""
    stamp, frame_id = result.stamp_ns, result.frame_id
    messages = {}
    for suffix, (values, encoding) in render.render_outputs(result, rgb, options).items():
        messages[f"{OUTPUT_NAMESPACE}/{suffix}"] = (
            time_reference_message(int(values), stamp, frame_id) if encoding == render.TIME_REFERENCE
            else image_message(values, encoding, stamp, frame_id))
    return messages


def bag_render_options(perceptor: Perceptor, *, colors: bool = True, **settings: Any) -> render.RenderOptions:
    """Every output topic (colour ones only with ``colors``) for ``perceptor``'s model.

    ``settings``: ``RenderOptions`` settings (``occlusion_threshold``, ``flow_color_max``,
    ``overlay_alpha``); those left out keep the node's parameters' defaults.
    """
    demand = frozenset(render.OUTPUT_TOPICS) - (frozenset() if colors else COLOUR_TOPICS)
    return render.RenderOptions(palette=perceptor.backend.manifest.palette, demand=demand, **settings)


def process_bag(
    input_bag: str | Path,
    output_bag: str | Path,
    perceptor: Perceptor,
    *,
    topic: str | None = None,
    storage: str = "mcap",
    colors: bool = True,
    copy_input: bool = True,
    reorder_window: int = 16,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    render_options: render.RenderOptions | None = None,
) -> ProcessStats:
    """Process ``input_bag`` into ``output_bag``; returns counts and stage timings.

    Args:
        topic: image topic (``sensor_msgs/Image`` or ``CompressedImage``); found automatically
            when the bag has exactly one camera topic.
        copy_input: also write the input image topic (and ``/ground_truth/*``) so that one bag
            shows camera, outputs and ground truth together.
        reorder_window: messages held back to sort by ``header.stamp`` before pairing.
        progress: called with the number of frames done so far.
        max_image_pixels: camera frames declaring more pixels are skipped before decoding.
        render_options: thresholds, colours and topics as the node's parameters give them;
            default ``bag_render_options(perceptor, colors=colors)``.

    Corrupt messages are skipped and counted in ``stats.integrity``; camera frames that cannot be
    used (undecodable or corrupt image, refused encoding, duplicate stamp) in
    ``stats.skipped_frames``. The output must not be, contain or lie inside the input.
    """
    if reorder_window < 1:
        raise ValueError(f"reorder_window must be >= 1, got {reorder_window}")
    stats = ProcessStats()
    options = render_options if render_options is not None else bag_render_options(perceptor, colors=colors)
    perceptor.reset()
    with open_bag(input_bag) as reader, \
            BagOutput(output_bag, storage=storage, overwrite=overwrite, inputs=[input_bag]) as output:
        image_topic, _ = find_image_topic(reader, topic)
        copied = [t for t in (c.topic for c in reader.connections) if copy_input and t.startswith("/ground_truth")]
        pending: list[tuple[int, int, int, Any]] = []  # (stamp, order, bag_time, message)
        order = 0

        def handle(stamp_ns: int, bag_time_ns: int, message: Any) -> None:
            started = time.perf_counter()
            try:
                image = decode_image(message, max_pixels=max_image_pixels)
                decoded = time.perf_counter()
                result = perceptor.process(image.rgb, stamp_ns=stamp_ns, frame_id=message.header.frame_id,
                                           image_format=image.image_format, with_flow=options.needs_flow,
                                           with_occlusion=options.needs_occlusion)
            except InputError as error:
                reason = error_kind(error)
                stats.skip(reason, f"{stamp_ns} ns: {error}")
                return
            inferred = time.perf_counter()
            messages = output_messages(result, image.rgb, options)
            produced = time.perf_counter()
            for out_topic, out_message in messages.items():
                output.write(out_topic, out_message, bag_time_ns)
            written = time.perf_counter()
            stats.seconds["decode"] += decoded - started
            stats.seconds["inference"] += inferred - decoded
            stats.seconds["outputs"] += produced - inferred
            stats.seconds["write"] += written - produced
            stats.frames += 1
            stats.pairs += result.prev_stamp_ns is not None
            if result.pair_reset_reason:
                stats.pair_resets[result.pair_reset_reason] = stats.pair_resets.get(result.pair_reset_reason, 0) + 1
            if progress is not None:
                progress(stats.frames)

        read_started = time.perf_counter()
        for item in read_messages(reader, [image_topic] + copied, stats.integrity):
            stats.seconds["read"] += time.perf_counter() - read_started
            if copy_input:
                started = time.perf_counter()
                output.write(item.topic, item.message, item.bag_time_ns)
                stats.seconds["write"] += time.perf_counter() - started
            if item.topic == image_topic:
                stamp = stamp_to_ns(item.message.header.stamp)
                if pending and stamp < max(entry[0] for entry in pending):
                    stats.reordered += 1
                heapq.heappush(pending, (stamp, order, item.bag_time_ns, item.message))
                order += 1
                if len(pending) > reorder_window:
                    stamp_ns, _, bag_time, message = heapq.heappop(pending)
                    handle(stamp_ns, bag_time, message)
            read_started = time.perf_counter()
        while pending:
            stamp_ns, _, bag_time, message = heapq.heappop(pending)
            handle(stamp_ns, bag_time, message)
        if stats.frames == 0:
            # An empty topic is an input error, not an empty success (the output is discarded).
            skipped = sum(stats.skipped_frames.values()) + stats.integrity.skipped.get(image_topic, 0)
            if skipped:
                first = (stats.skip_details or stats.integrity.problems)[0]
                raise InputError(f"none of the {skipped} frames on {image_topic!r} could be used; first: {first}")
            raise InputError(f"topic {image_topic!r} has no messages")
    return stats
