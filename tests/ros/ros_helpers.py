"""Helpers for the ROS tests: the node in a subprocess and an rclpy test client.

Every process that starts rclpy here runs on loopback (tests/conftest.py sets the environment;
``require_loopback_environment`` refuses to start anything without it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_NAME = "efc_perception"
#: ``RosClient.call_service``: seconds before an idempotent request is sent again.
RESEND_AFTER_S = 2.0


def require_loopback_environment() -> None:
    """Fail unless ROS traffic is confined to loopback (docs/ENVIRONMENT.md)."""
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST" or os.environ.get("ROS_LOCALHOST_ONLY") != "1":
        pytest.fail("ROS tests need ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and ROS_LOCALHOST_ONLY=1")
    if not os.environ.get("ROS_DOMAIN_ID"):
        pytest.fail("ROS tests need a ROS_DOMAIN_ID of their own")


def node_arguments(parameters: dict[str, Any], *, namespace: str | None = None, name: str | None = None,
                   remappings: dict[str, str] | None = None) -> list[str]:
    """``--ros-args`` for the node: parameters as ``-p name:=value``, plus namespace, name, remappings."""
    args = ["--ros-args"]
    for key, value in parameters.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text}"]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    if name:
        args += ["-r", f"__node:={name}"]
    for source, target in (remappings or {}).items():
        args += ["-r", f"{source}:={target}"]
    return args


class NodeProcess:
    """The perception node in its own process (``python -m efc_ros.perception_node``)."""

    def __init__(self, log_path: Path, parameters: dict[str, Any], *, module: str = "efc_ros.perception_node",
                 program_args: tuple[str, ...] = (), **arguments: Any) -> None:
        """Start ``python -m module *program_args --ros-args ...``; stdout and stderr go to ``log_path``."""
        require_loopback_environment()
        self.log_path = log_path
        # PYTHONFAULTHANDLER: a crash in native code (rclpy, DDS, ONNX Runtime) prints every thread's
        # Python stack into the log, which the failing assertion shows.
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0",
                   RCUTILS_COLORIZED_OUTPUT="0", OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
        self._log_file = open(log_path, "w")
        command = [sys.executable, "-m", module, *program_args, *node_arguments(parameters, **arguments)]
        self.process = subprocess.Popen(command, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                        cwd=REPO_ROOT)

    def log(self) -> str:
        """Everything the node printed so far."""
        return self.log_path.read_text()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself; returns its exit code."""
        try:
            return self.process.wait(timeout)
        finally:
            self._log_file.close()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (as Ctrl-C would), wait, and return the exit code (SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


class RosClient:
    """A test-side rclpy node in its own context, spun on a background thread."""

    def __init__(self, name: str) -> None:
        require_loopback_environment()
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._service_clients: dict[tuple[Any, str], Any] = {}   # reused: their reply path is matched
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, RuntimeError):
            pass

    def subscribe(self, msg_type: Any, topic: str, *, reliable: bool = True, depth: int = 100) -> list:
        """Collect every message on ``topic`` into the returned list."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        received: list = []
        qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)

        def store(msg: Any) -> None:
            with self._lock:
                received.append(msg)

        self.node.create_subscription(msg_type, topic, store, qos)
        return received

    def publisher(self, msg_type: Any, topic: str, *, reliable: bool = True, depth: int = 100) -> Any:
        """A publisher on ``topic``."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
        """Poll ``predicate`` until true or ``timeout`` seconds; returns its last value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    def wait_for_publishers(self, topics: list[str], timeout: float) -> bool:
        """True once every topic has a publisher (the node finished starting and discovery ran)."""
        return self.wait_for(lambda: all(self.node.count_publishers(t) > 0 for t in topics), timeout, 0.1)

    def call_service(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0,
                     idempotent: bool = False) -> Any:
        """Call a service and return the response (fails the test on timeout).

        A request sent right after ``wait_for_service`` can lose its response: the client sees
        the server before the server's reply writer has matched the client's new reader, and
        Fast DDS drops the reply ("failed to send response (timeout)"; seen once in 800 tests
        on a loaded CPU). ``idempotent`` requests (reading state, setting the same values again)
        are therefore sent again every ``RESEND_AFTER_S`` until ``timeout``; state-changing ones
        are sent once. Clients are kept for the next call to the same service, whose reply path
        is then matched already.
        """
        client = self._service_clients.get((srv_type, name))
        if client is None:
            client = self._service_clients[(srv_type, name)] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            pytest.fail(f"service {name} not available")
        deadline = time.monotonic() + timeout
        while True:
            future = client.call_async(request)
            window = min(RESEND_AFTER_S, deadline - time.monotonic()) if idempotent else timeout
            if self.wait_for(future.done, max(window, 0.0)):
                return future.result()
            if not idempotent or time.monotonic() >= deadline:
                pytest.fail(f"service {name} did not answer in {timeout} s")

    def set_parameters(self, node: str, values: dict[str, Any]) -> list:
        """Set parameters through the node's real ``set_parameters`` service; returns the results."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return list(self.call_service(SetParameters, f"{node}/set_parameters", request, idempotent=True).results)

    def list_parameters(self, node: str) -> set[str]:
        """Names of every parameter of ``node`` (``list_parameters`` service)."""
        from rcl_interfaces.srv import ListParameters

        return set(self.call_service(ListParameters, f"{node}/list_parameters", ListParameters.Request(),
                                     idempotent=True).result.names)

    def close(self) -> None:
        """Shut the context down and join the spin thread."""
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self._thread.join(5.0)


def frame_stamp(index: int, *, start_s: int = 1000, period_ns: int = 100_000_000):
    """``builtin_interfaces/Time`` of frame ``index`` of a 10 Hz camera."""
    from builtin_interfaces.msg import Time

    total = start_s * 1_000_000_000 + index * period_ns
    return Time(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)


def stamp_ns(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def messages_with_stamp(messages: list, stamp: Any) -> list:
    """The messages among ``messages`` whose header stamp equals ``stamp``."""
    wanted = stamp_ns(stamp)
    return [m for m in list(messages) if stamp_ns(m.header.stamp) == wanted]


def publish_frame(publisher: Any, rgb: Any, index: int, *, frame_id: str = "camera", encoding: str = "rgb8",
                  stamp: Any = None) -> Any:
    """Publish ``rgb`` as an Image stamped like frame ``index`` of a 10 Hz camera; returns its header."""
    from std_msgs.msg import Header

    from efc_ros.image_conversions import rgb_to_image_msg

    header = Header(stamp=stamp if stamp is not None else frame_stamp(index), frame_id=frame_id)
    publisher.publish(rgb_to_image_msg(rgb, encoding, header))
    return header


def start_node_and_client(log_path: Path, parameters: dict[str, Any], namespace: str, client_name: str,
                          topics: dict[str, Any], timeout: float = 90.0) -> tuple[NodeProcess, RosClient, Any,
                                                                                  dict[str, list]]:
    """Start the node, a client subscribed (reliable) to ``topics`` {relative name: type} and an image publisher.

    Returns once the node's publishers and our image publisher are matched.
    """
    from sensor_msgs.msg import CompressedImage, Image

    node = NodeProcess(log_path, parameters, namespace=namespace)
    client = RosClient(client_name)
    received = {topic: client.subscribe(msg_type, f"{namespace}/{topic}" if not topic.startswith("/") else topic)
                for topic, msg_type in topics.items()}
    compressed = bool(parameters.get("use_compressed"))
    image_topic = f"{namespace}/image/compressed" if compressed else f"{namespace}/image"
    publisher = client.publisher(CompressedImage if compressed else Image, image_topic)
    own = [t for t in topics if not t.startswith("/")]
    ready = client.wait_for(lambda: publisher.get_subscription_count() > 0
                            and all(client.node.count_publishers(f"{namespace}/{t}") for t in own), timeout, 0.1)
    if not ready:
        client.close()
        node.stop()
        pytest.fail(f"node did not come up in {timeout} s; its log:\n{node.log()}")
    time.sleep(1.0)  # let our subscriptions match the node's publishers as well
    return node, client, publisher, received


def spin_in_background(executor: Any) -> threading.Thread:
    """Spin ``executor`` on a daemon thread until its context shuts down; returns the thread."""
    from rclpy.executors import ExternalShutdownException

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    return spinner
