"""Counters, rates and per-stage latencies of the perception node, reported as a DiagnosticArray.

``diagnostic_updater`` is not available everywhere (docs/ENVIRONMENT.md), and the node only needs one
status per period, so this builds ``diagnostic_msgs/DiagnosticArray`` directly. All methods are
thread-safe: callbacks, the inference worker and the diagnostics timer run on different threads.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from efc_ros.transport_loss import TransportLossEstimator

#: Stages timed per frame, in milliseconds. ``end_to_end`` runs from the message arriving in the
#: callback to the last output published, so it includes the time a frame waits for the worker.
LATENCY_STAGES: tuple[str, ...] = ("queue", "decode", "preprocess", "inference", "postprocess", "publish", "end_to_end")

#: Inputs older than this many periods without a frame make the status WARN ("no input").
_STALE_PERIODS = 3.0
#: More than this share of the camera's frames lost before the callback in one period makes the status WARN.
TRANSPORT_LOSS_WARN = 0.10


@dataclass
class _Window:
    """Latency samples (ms) of the current reporting period, plus all-time count."""

    samples: list[float] = field(default_factory=list)

    def summary(self) -> tuple[float, float, float]:
        """(mean, p50, max) in ms; NaN when empty."""
        if not self.samples:
            return (float("nan"),) * 3
        values = np.asarray(self.samples)
        return float(values.mean()), float(np.median(values)), float(values.max())


class NodeStatistics:
    """Thread-safe counters for one node; ``report`` turns the current period into a status."""

    def __init__(self, *, clock=time.monotonic) -> None:
        """``clock`` returns seconds (monotonic); injectable for tests."""
        self._clock = clock
        self._lock = threading.Lock()
        self.frames_received = 0
        self.frames_dropped = 0
        self.frames_processed = 0
        self.frames_failed = 0
        self.pair_resets = 0
        self.errors_by_kind: collections.Counter[str] = collections.Counter()
        self.last_error = ""
        self._received_times: collections.deque[float] = collections.deque(maxlen=1000)
        self._output_times: collections.deque[float] = collections.deque(maxlen=1000)
        self._latency = {stage: _Window() for stage in LATENCY_STAGES}
        self._last_report = clock()
        self.transport = TransportLossEstimator()
        self._lost_in_period = 0
        self._received_in_period = 0

    def record_received(self, stamp_ns: int | None = None, frame_id: str = "") -> None:
        """A message arrived in the subscription callback; with its header stamp, gaps count as transport loss."""
        with self._lock:
            self.frames_received += 1
            self._received_times.append(self._clock())
            self._received_in_period += 1
            if stamp_ns is not None:
                self._lost_in_period += self.transport.observe(stamp_ns, frame_id)

    def record_dropped(self) -> None:
        """A frame was replaced by a newer one before the worker took it."""
        with self._lock:
            self.frames_dropped += 1

    def record_processed(self, timings_ms: dict[str, float], *, pair_reset: bool) -> None:
        """A frame produced outputs; ``timings_ms`` has any of ``LATENCY_STAGES``."""
        with self._lock:
            self.frames_processed += 1
            self.pair_resets += int(pair_reset)
            self._output_times.append(self._clock())
            for stage, value in timings_ms.items():
                if stage in self._latency:
                    self._latency[stage].samples.append(float(value))

    def record_error(self, kind: str, message: str) -> int:
        """A frame failed; returns how many errors of this kind so far."""
        with self._lock:
            self.frames_failed += 1
            self.errors_by_kind[kind] += 1
            self.last_error = f"{kind}: {message}"
            return self.errors_by_kind[kind]

    def record_warning(self, kind: str, message: str) -> int:
        """A frame was processed despite a problem (e.g. a corrupt JPEG published on request); counted
        with the errors of ``kind`` but not as a failed frame. Returns the count of this kind.
        """
        with self._lock:
            self.errors_by_kind[kind] += 1
            self.last_error = f"{kind}: {message}"
            return self.errors_by_kind[kind]

    @property
    def errors(self) -> int:
        """All per-frame errors so far."""
        with self._lock:
            return sum(self.errors_by_kind.values())

    def _rate(self, times: collections.deque[float], now: float, window: float) -> float:
        recent = [t for t in times if now - t <= window]
        return len(recent) / window if window > 0 else 0.0

    def report(self, *, name: str, hardware_id: str, info: dict[str, str], period_s: float) -> DiagnosticStatus:
        """One ``DiagnosticStatus`` for the period since the previous report; resets the latency windows.

        Args:
            name: status name, e.g. ``"efc_ros: /cam1/efc_perception"``.
            hardware_id: e.g. the backend and device.
            info: constant key/values added to the status (backend, precision, model ...).
            period_s: the nominal reporting period, used for rates and staleness.
        """
        with self._lock:
            now = self._clock()
            window = max(now - self._last_report, period_s, 1e-6)
            self._last_report = now
            input_rate = self._rate(self._received_times, now, window)
            output_rate = self._rate(self._output_times, now, window)
            latencies = {stage: w.summary() for stage, w in self._latency.items()}
            for w in self._latency.values():
                w.samples.clear()
            lost, arrived = self._lost_in_period, self._received_in_period
            self._lost_in_period = self._received_in_period = 0
            loss = lost / (lost + arrived) if lost + arrived else 0.0
            values = [
                ("camera_rate_hz", f"{self.transport.camera_rate_hz():.2f}"),  # from header stamps
                ("frames_lost_in_transport", str(self.transport.frames_lost)),
                ("transport_loss_percent", f"{100.0 * loss:.1f}"),  # this period
                ("input_rate_hz", f"{input_rate:.2f}"),
                ("output_rate_hz", f"{output_rate:.2f}"),
                ("frames_received", str(self.frames_received)),
                ("frames_processed", str(self.frames_processed)),
                ("frames_dropped", str(self.frames_dropped)),
                ("errors", str(sum(self.errors_by_kind.values()))),
                ("pair_resets", str(self.pair_resets)),
            ]
            for stage, (mean, p50, peak) in latencies.items():
                values += [(f"{stage}_ms_mean", f"{mean:.2f}"), (f"{stage}_ms_p50", f"{p50:.2f}"),
                           (f"{stage}_ms_max", f"{peak:.2f}")]
            values += [(f"errors_{kind}", str(count)) for kind, count in sorted(self.errors_by_kind.items())]
            values.append(("last_error", self.last_error))
            last_input = self._received_times[-1] if self._received_times else None
            errors_now = sum(self.errors_by_kind.values())
            processed_ever = self.frames_processed
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.errors_by_kind.items()))

        status = DiagnosticStatus(name=name, hardware_id=hardware_id)
        status.values = [KeyValue(key=k, value=v) for k, v in list(info.items()) + values]
        if last_input is None or now - last_input > _STALE_PERIODS * period_s:
            status.level, status.message = DiagnosticStatus.WARN, "no input images"
        elif input_rate > 0 and output_rate == 0:
            # Every error kind is named, so the status alone says why nothing comes out.
            status.level = DiagnosticStatus.WARN
            status.message = ("input arrives but no outputs yet" if processed_ever == 0
                              else "input arrives but no outputs in the last period")
            if errors_now:
                status.message += f"; frame errors so far: {kinds}"
        elif loss > TRANSPORT_LOSS_WARN:
            # Stamp gaps: the camera sent frames the node never received (e.g. large images over
            # best-effort DDS without the shared-memory profile, README "Large images over DDS").
            status.level = DiagnosticStatus.WARN
            status.message = (f"{100.0 * loss:.0f}% of camera frames lost before reaching the node "
                              f"({lost} of {lost + arrived} by header stamps)")
        elif errors_now:
            status.level, status.message = DiagnosticStatus.OK, f"running; {errors_now} frame errors so far ({kinds})"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        return status


def diagnostic_array(statuses: list[DiagnosticStatus], stamp) -> DiagnosticArray:
    """Wrap statuses in a ``DiagnosticArray`` stamped with ``stamp`` (a ``builtin_interfaces/Time``)."""
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = statuses
    return array


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """The key/values of a status as a dict (consumers, tests)."""
    return {kv.key: kv.value for kv in status.values}
