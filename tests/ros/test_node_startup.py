"""Start-up of the node executables (``efc_ros.node_startup``) with real rclpy and a real SIGINT.

A Ctrl-C during start-up used to end the node with exit code 1 and "cannot start: backend
'onnxruntime' needs the onnxruntime package (initialization failed)" (SIGINT interrupted the
import of onnxruntime), or with rclpy's "context is not valid" traceback.
"""

from __future__ import annotations

import signal
import time

import pytest
import rclpy

from efc_core.errors import BackendError
from efc_ros.node_startup import create_or_exit_code
from tests.ros.ros_helpers import require_loopback_environment

pytestmark = pytest.mark.ros


@pytest.fixture
def ros_context():
    require_loopback_environment()
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _fail(error: Exception):
    def create():
        raise error
    return create


def _send_sigint_and_wait() -> None:
    """SIGINT to this thread, then wait for Python's handler to raise KeyboardInterrupt.

    ``os.kill`` on the process may land on one of DDS's threads, and the main thread runs the handler
    only at its next check (a full run here once reached the next statement first); ``raise_signal`` targets the
    calling thread, and the sleep is where the handler runs (at once, or when the sleep ends).
    """
    signal.raise_signal(signal.SIGINT)
    time.sleep(5.0)


def _interrupted_import():
    """Fail like an import of a C extension hit by SIGINT, as the backends report it.

    A BackendError around the ImportError that pybind11 raises from the KeyboardInterrupt.
    """
    try:
        try:
            _send_sigint_and_wait()
        except KeyboardInterrupt as interrupt:
            raise ImportError("initialization failed") from interrupt
    except ImportError as error:
        raise BackendError(f"backend 'onnxruntime' needs the onnxruntime package ({error})") from None
    raise AssertionError("SIGINT did not interrupt")


def test_a_node_is_returned_with_exit_code_0(ros_context) -> None:
    assert create_or_exit_code(lambda: "node", "efc_test") == ("node", 0)


def test_a_failed_start_is_one_line_and_exit_code_1(ros_context, capfd) -> None:
    assert create_or_exit_code(_fail(BackendError("model file x.onnx does not exist")), "efc_test") == (None, 1)
    assert "cannot start: model file x.onnx does not exist" in capfd.readouterr().err


def test_ctrl_c_during_start_up_is_not_a_failure(ros_context, capfd) -> None:
    def interrupted():
        _send_sigint_and_wait()
        raise AssertionError("SIGINT did not interrupt")

    assert create_or_exit_code(interrupted, "efc_test") == (None, 0)
    assert create_or_exit_code(_interrupted_import, "efc_test") == (None, 0)
    assert "cannot start" not in capfd.readouterr().err


def test_unexpected_errors_propagate(ros_context) -> None:
    with pytest.raises(RuntimeError, match="bug"):
        create_or_exit_code(_fail(RuntimeError("bug")), "efc_test")
