"""Start-up of the node executables: build the nodes, or say in one line why not.

Shared by ``perception_node``, ``lifecycle_node`` and ``multi_camera`` so that all three treat a
bad start-up parameter, a missing model and a Ctrl-C during start-up alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import rclpy
import rclpy.logging

from efc_core.errors import EfcError

T = TypeVar("T")


def create_or_exit_code(create: Callable[[], T], logger_name: str) -> tuple[T | None, int]:
    """Run ``create`` (node construction) after ``rclpy.init``.

    Returns:
        ``(nodes, 0)`` on success; ``(None, 1)`` after logging ``cannot start: <reason>`` for an
        ``EfcError`` or ``ValueError`` (rclpy's ``ParameterError`` is one); ``(None, 0)`` when
        SIGINT arrived during start-up, whatever it broke (an extension module interrupted
        mid-import fails as an ``ImportError`` that the backends would report as a missing
        package; rclpy refuses to create a node in the shut-down context): Ctrl-C is a request,
        not a failure. Anything else propagates.
    """
    try:
        return create(), 0
    except KeyboardInterrupt:
        return None, 0
    except Exception as error:
        if _caused_by_interrupt(error) or not rclpy.ok():
            return None, 0
        if not isinstance(error, (EfcError, ValueError)):
            raise
        rclpy.logging.get_logger(logger_name).fatal(f"cannot start: {' '.join(str(error).split())}")
        return None, 1


def _caused_by_interrupt(error: BaseException) -> bool:
    """Whether a ``KeyboardInterrupt`` is in ``error``'s cause/context chain.

    pybind11 turns an exception raised during a module's initialisation into
    ``ImportError("initialization failed")`` raised *from* it, and the backends wrap that import
    error; rclpy's SIGINT handler shuts the context down on another thread, so ``rclpy.ok()`` may
    not have caught up yet when the interrupted import fails.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
    return False
