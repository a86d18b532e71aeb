"""How to fill ``sensor_msgs/Image.data`` from a numpy array, and what ``publish`` costs, in this rclpy.

Measures, per output size (640x480 by default: mono8 0.3 MB, rgb8 0.9 MB, 32FC2 flow 2.5 MB):

* ``array('B').frombytes`` (what ``efc_ros.image_conversions`` does): one memcpy; the generated
  setter stores an ``array('B')`` as is;
* ``bytes`` (``ndarray.tobytes()``) and ``memoryview`` assignment: the setter converts them with
  ``array.array('B', value)``; with field checks on (``ROS_PYTHON_CHECK_FIELDS=1`` here, always in
  Humble's generated code unless Python runs with ``-O``) it first checks every element in Python;
* ``publish`` of the finished message with no subscriber (rclpy still converts and serialises it).

    .venv/bin/python -m benchmarks.bench_image_msg [--size 640x480] [--repeat 20]

ROS traffic stays on loopback (the script sets the loopback environment before rclpy starts).
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import sys
import time
from typing import Callable

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import numpy as np  # noqa: E402


def median_ms(function: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``function()`` over ``repeat`` calls, ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def fill_methods(values: np.ndarray, check_fields: bool) -> dict[str, Callable[[], object]]:
    """Ways of putting ``values``' bytes into a fresh ``Image.data``."""
    from sensor_msgs.msg import Image

    def with_array() -> Image:
        msg = Image(check_fields=check_fields)
        data = array.array("B")
        data.frombytes(np.ascontiguousarray(values).data.cast("B"))
        msg.data = data
        return msg

    def with_bytes() -> Image:
        msg = Image(check_fields=check_fields)
        msg.data = values.tobytes()
        return msg

    def with_memoryview() -> Image:
        msg = Image(check_fields=check_fields)
        msg.data = memoryview(np.ascontiguousarray(values)).cast("B")
        return msg

    return {"array_frombytes": with_array, "bytes": with_bytes, "memoryview": with_memoryview}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--slow-repeat", type=int, default=2, help="repeats of the per-element checked paths")
    args = parser.parse_args(argv)
    from efc_ros.cli_args import parse_size_wh

    height, width = parse_size_wh(args.size)
    rng = np.random.default_rng(0)
    outputs = {
        "mono8": rng.integers(0, 255, (height, width), dtype=np.uint8),
        "rgb8": rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
        "32FC2": rng.standard_normal((height, width, 2)).astype(np.float32),
    }
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("efc_bench_image_msg")
    publisher = node.create_publisher(Image, "efc_bench_image_msg", 1)
    results: dict[str, dict[str, float]] = {}
    try:
        for encoding, values in outputs.items():
            row: dict[str, float] = {"megabytes": values.nbytes / 1e6}
            for check_fields in (False, True):
                for method, function in fill_methods(values, check_fields).items():
                    slow = check_fields and method != "array_frombytes"
                    msg = function()
                    if bytes(msg.data[:64]) != values.tobytes()[:64] or len(msg.data) != values.nbytes:
                        raise AssertionError(f"{method} produced different bytes")
                    key = f"{method}{'_checked' if check_fields else ''}_ms"
                    row[key] = median_ms(function, args.slow_repeat if slow else args.repeat)
            msg = fill_methods(values, False)["array_frombytes"]()
            msg.height, msg.width = height, width
            row["publish_no_subscriber_ms"] = median_ms(lambda: publisher.publish(msg), args.repeat)
            results[encoding] = row
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
