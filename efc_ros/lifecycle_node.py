"""Managed (lifecycle) variant of the perception node (docs/ROS_NODE.md §14).

    python -m efc_ros.lifecycle_node --ros-args -p model_path:=/models/efc.onnx
    ros2 lifecycle set /efc_perception configure   # loads the model (a bad model: transition fails)
    ros2 lifecycle set /efc_perception activate    # subscribes to the camera, starts the worker

Transitions:

* ``configure``: create the backend, Perceptor and publishers. A missing or mismatched model is
  logged in one line and returns FAILURE: the node stays unconfigured, ``model_path`` and
  ``backend`` can be set (``ros2 param set``; they are read-only once configured) and configure
  retried.
* ``activate``: start the worker thread, subscribe to ``image`` (or ``<image>/compressed``), start
  diagnostics. ``deactivate`` undoes exactly that (the frame in flight finishes first).
* ``cleanup`` / ``shutdown``: destroy publishers and close the backend.

``--autostart`` configures and activates at start-up (for launch files without a lifecycle manager).
Topics, parameters and outputs are the same as ``efc_ros.perception_node``.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

from efc_core.errors import EfcError
from efc_ros.node_parameters import UNCONFIGURED_PARAMETERS, declare_perception_parameters
from efc_ros.perception_node import NODE_NAME, BackendProvider, PerceptionCallbacks
from efc_ros.dds_profile import use_large_image_profile
from efc_ros.node_startup import create_or_exit_code


class PerceptionLifecycleNode(PerceptionCallbacks, LifecycleNode):
    """The perception node as a managed node: the model is loaded in ``on_configure``."""

    def __init__(self, node_name: str = NODE_NAME, *, backend_provider: BackendProvider | None = None,
                 **node_kwargs: Any) -> None:
        """Declare the parameters (``ParameterError`` on bad start-up values); loads nothing yet."""
        super().__init__(node_name, **node_kwargs)
        self._backend_provider = backend_provider
        self.backend = None
        self._configured = False
        try:
            self.settings = declare_perception_parameters(self, not_read_only=UNCONFIGURED_PARAMETERS)
        except Exception:
            self.destroy_node()
            raise
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load the model and create the publishers; FAILURE with a one-line reason when it cannot."""
        try:
            self._load(self._backend_provider)
        except (EfcError, ValueError) as error:
            self.get_logger().error(f"configure failed: {' '.join(str(error).split())}")
            self._unload()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        self.get_logger().info(f"configured: {self.backend.name} ({self.backend.precision}) "
                               f"model {self.backend.manifest.model_name!r}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Start processing camera frames."""
        self._start_io()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Stop processing: unsubscribe and join the worker."""
        self._stop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Release the model and the publishers."""
        self._unload()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Release everything from whichever state the node is in."""
        self._stop_io()
        self._unload()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """An exception escaped a transition: release everything, back to unconfigured."""
        self._stop_io()
        self._unload()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def _writable_now(self) -> frozenset[str]:
        """``model_path`` and ``backend`` may change while the node holds no model."""
        return frozenset() if self._configured else UNCONFIGURED_PARAMETERS

    def destroy_node(self) -> None:
        """Stop and release everything, then destroy the ROS node."""
        self._stop_io()
        self._unload()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the lifecycle node until SIGINT; with ``--autostart`` configure + activate first (exit 1 on failure)."""
    argv = list(sys.argv if args is None else args)
    autostart = "--autostart" in argv
    argv = [a for a in argv if a != "--autostart"]
    use_large_image_profile()  # before the first DDS participant (README: large images over DDS)
    rclpy.init(args=argv)
    try:
        node, exit_code = create_or_exit_code(PerceptionLifecycleNode, NODE_NAME)
        if node is None:
            return exit_code
        try:
            if autostart:
                if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                    return 1
                node.trigger_activate()
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
