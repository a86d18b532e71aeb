"""Several cameras in one process, sharing one inference backend (docs/ROS_NODE.md §13, the bonus).

    python -m efc_ros.multi_camera --cameras front rear --ros-args -p model_path:=/models/efc.onnx

starts one ``PerceptionNode`` per camera, each in its own namespace (``/front/image`` ->
``/front/segmentation`` ...), with its own pairing state and worker thread, but one model in memory:
nodes whose backend settings (``backend``, ``model_path`` and the backend options of their
``PerceptorConfig``: threads, device, ...) are equal share one
backend, whose calls are serialised by a lock. Parameters given with ``-p`` apply to every camera;
a params file can set one camera's with its node key (``/front/efc_perception:``).
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from efc_ros.node_parameters import PerceptionParameters
from efc_ros.perception_node import NODE_NAME, PerceptionNode, load_backend
from efc_ros.dds_profile import use_large_image_profile
from efc_ros.node_startup import create_or_exit_code


class SharedBackend:
    """One backend used by several nodes: ``infer``/``encode``/``decode`` are serialised by a lock.

    ONNX Runtime sessions are thread-safe anyway, but a TensorRT execution context is not, and two
    threads running one model at once would not be faster on one accelerator.
    ``close`` is a no-op: the ``SharedBackendProvider`` that created it closes the real one.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self.manifest = backend.manifest
        self.name = backend.name
        self.precision = backend.precision
        self.supports_streaming = backend.supports_streaming

    def infer(self, prev: Any, cur: Any) -> Any:
        """``Backend.infer`` under the lock: (1, 3, H, W) float32 inputs -> ModelOutputs."""
        with self._lock:
            return self._backend.infer(prev, cur)

    def encode(self, image: Any) -> Any:
        """``Backend.encode`` under the lock: (1, 3, H, W) float32 -> features."""
        with self._lock:
            return self._backend.encode(image)

    def decode(self, prev_features: Any, cur_features: Any) -> Any:
        """``Backend.decode`` under the lock."""
        with self._lock:
            return self._backend.decode(prev_features, cur_features)

    def close(self) -> None:
        """Nothing: the provider closes the underlying backend once every node is gone."""


class SharedBackendProvider:
    """``backend_provider`` for ``PerceptionNode``: one backend per distinct (backend, model, backend options)."""

    def __init__(self) -> None:
        self._shared: dict[tuple[Any, ...], SharedBackend] = {}
        self._owned: list[Any] = []

    def __call__(self, settings: PerceptionParameters) -> SharedBackend:
        """The shared backend for ``settings``; created (``ModelError``/``BackendError``) on first use."""
        config = settings.perceptor_config()
        key = (config.backend, config.model_path, tuple(sorted(config.backend_options().items())))
        shared = self._shared.get(key)
        if shared is None:
            backend = load_backend(settings)
            self._owned.append(backend)
            shared = self._shared[key] = SharedBackend(backend)
        return shared

    @property
    def backend_count(self) -> int:
        """How many distinct backends were created."""
        return len(self._owned)

    def close(self) -> None:
        """Close every backend created (after the nodes using them were destroyed)."""
        for backend in self._owned:
            backend.close()
        self._owned.clear()
        self._shared.clear()


def _namespace(camera: str) -> str:
    if not camera or any(c in camera for c in " :"):
        raise ValueError(f"camera namespace must be a ROS name like 'front' or '/robot/front', got {camera!r}")
    return camera if camera.startswith("/") else f"/{camera}"


def main(args: list[str] | None = None) -> int:
    """Run one node per ``--cameras`` namespace in this process until SIGINT; 1 when they cannot start."""
    argv = sys.argv if args is None else args
    parser = argparse.ArgumentParser(prog="multi_camera", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", nargs="+", required=True, help="namespaces, one per camera")
    options = parser.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])
    use_large_image_profile()  # before the first DDS participant (README: large images over DDS)
    rclpy.init(args=argv)
    provider = SharedBackendProvider()
    nodes: list[PerceptionNode] = []
    executor = SingleThreadedExecutor()
    try:
        def create_nodes() -> list[PerceptionNode]:
            for camera in options.cameras:
                # Appended one by one: the ones built before a failure are destroyed below.
                nodes.append(PerceptionNode(namespace=_namespace(camera), backend_provider=provider))
            return nodes

        created, exit_code = create_or_exit_code(create_nodes, NODE_NAME)
        if created is None:
            return exit_code
        for node in nodes:
            executor.add_node(node)
        rclpy.logging.get_logger(NODE_NAME).info(
            f"{len(nodes)} cameras {[n.get_namespace() for n in nodes]} share {provider.backend_count} backend(s)")
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        provider.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
