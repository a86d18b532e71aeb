"""Progress logging for TensorRT engine builds, which take minutes on a Jetson.

``BuildLog.phase(name)`` logs the start and the elapsed time of each step of ``build_engine``
(parse, precision pinning, building, writing). During ``build_serialized_network`` TensorRT's own
phases are logged through ``IProgressMonitor`` where the release has it (10.0 and newer,
``config.progress_monitor``); on 8.5 / 8.6 a heartbeat line says the build is still running.
Only logging happens here: a progress callback never calls back into TensorRT or CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Iterator

LOG = logging.getLogger("efc_core.export.tensorrt_build")

#: Seconds between "still building" lines (heartbeat) and between step lines of one phase.
HEARTBEAT_S = 30.0
STEP_LOG_INTERVAL_S = 10.0


class BuildLog:
    """Phase timing for one build; ``total_s`` is the time since it was created."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._start = time.monotonic()
        self.phases: dict[str, float] = {}

    @property
    def total_s(self) -> float:
        return time.monotonic() - self._start

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Log ``name`` when it starts and its duration when it ends (also on failure)."""
        LOG.info("%s: %s ...", self.label, name)
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = time.monotonic() - start
            LOG.info("%s: %s done in %.1f s (%.1f s total)", self.label, name, self.phases[name], self.total_s)

    @contextlib.contextmanager
    def heartbeat(self, what: str, interval_s: float = HEARTBEAT_S) -> Iterator[None]:
        """Log "still <what>" every ``interval_s`` until the block ends (for releases without a
        progress monitor).
        """
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                LOG.info("%s: still %s (%.0f s total)", self.label, what, self.total_s)

        thread = threading.Thread(target=beat, name="efc-build-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=1.0)


def make_progress_monitor(trt: Any, build_log: BuildLog) -> Any | None:
    """An ``IProgressMonitor`` that logs TensorRT's build phases, or None where the release has none.

    TensorRT calls ``phase_start(phase_name, parent_phase, num_steps)``, ``step_complete(phase_name,
    step)`` (return True to continue) and ``phase_finish(phase_name)``.
    """
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class LoggingProgressMonitor(base):  # type: ignore[misc, valid-type]

        def __init__(self) -> None:
            base.__init__(self)
            self._started: dict[str, float] = {}
            self._steps: dict[str, int] = {}
            self._last_step_log: dict[str, float] = {}
            self._lock = threading.Lock()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self._started[phase_name] = time.monotonic()
                self._steps[phase_name] = int(num_steps)
                self._last_step_log[phase_name] = time.monotonic()
            parent = f" (in {parent_phase})" if parent_phase else ""
            LOG.info("%s: TensorRT %s%s: %d steps", build_log.label, phase_name, parent, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            now = time.monotonic()
            with self._lock:
                due = now - self._last_step_log.get(phase_name, 0.0) >= STEP_LOG_INTERVAL_S
                if due:
                    self._last_step_log[phase_name] = now
                total = self._steps.get(phase_name, 0)
            if due:
                LOG.info("%s: TensorRT %s: step %d/%d (%.0f s total)", build_log.label, phase_name, step + 1,
                         total, build_log.total_s)
            return True

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                started = self._started.pop(phase_name, time.monotonic())
            LOG.info("%s: TensorRT %s done in %.1f s", build_log.label, phase_name, time.monotonic() - started)

    return LoggingProgressMonitor()
