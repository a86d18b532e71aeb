"""Latest-frame-wins hand-off from subscription callbacks to one inference thread.

Inference is slower than many cameras (docs/ROS_NODE.md §2). Queuing frames would make every output
later than the one before, so the callback only stores the newest item in a one-slot mailbox; an
item still waiting when a newer one arrives is dropped and counted. One dedicated thread runs all
inference, which is also what a CUDA context wants (docs/DEPLOY.md: one thread owns the context).
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

Item = TypeVar("Item")


class LatestFrameWorker(Generic[Item]):
    """A single worker thread that always processes the newest submitted item.

    ``submit`` never blocks on processing: it replaces the pending item (counting the replaced one
    as dropped) and wakes the thread. Exceptions raised by ``process`` go to ``on_error`` and the
    thread carries on with the next item.
    """

    def __init__(
        self,
        process: Callable[[Item], None],
        on_error: Callable[[Item, BaseException], None],
        *,
        name: str = "efc-inference",
        on_drop: Callable[[Item], None] | None = None,
    ) -> None:
        """Start the thread.

        Args:
            process: called on the worker thread with each item that is not superseded.
            on_error: called on the worker thread when ``process`` raises.
            name: thread name (shows in debuggers and ``py-spy``).
            on_drop: called on the submitting thread with each item replaced before processing.
        """
        self._process = process
        self._on_error = on_error
        self._on_drop = on_drop
        self._condition = threading.Condition()
        self._pending: Item | None = None
        self._has_pending = False
        self._stopping = False
        self._busy = False
        self.submitted = 0
        self.dropped = 0
        self.processed = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> bool:
        """Hand ``item`` to the worker; returns True when an older pending item was dropped."""
        with self._condition:
            if self._stopping:
                return False
            replaced = self._pending if self._has_pending else None
            dropped = self._has_pending
            self._pending = item
            self._has_pending = True
            self.submitted += 1
            if dropped:
                self.dropped += 1
            self._condition.notify()
        if dropped and self._on_drop is not None:
            self._on_drop(replaced)  # type: ignore[arg-type]
        return dropped

    @property
    def idle(self) -> bool:
        """True when nothing is pending or being processed."""
        with self._condition:
            return not self._has_pending and not self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until the worker is idle or ``timeout`` seconds pass; returns ``idle``."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._has_pending and not self._busy, timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Drop what is pending, let the current item finish and join the thread.

        Returns:
            True when the thread ended within ``timeout`` seconds.
        """
        with self._condition:
            self._stopping = True
            self._pending = None
            self._has_pending = False
            self._condition.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._has_pending or self._stopping)
                if self._stopping:
                    return
                item = self._pending
                self._pending = None
                self._has_pending = False
                self._busy = True
            try:
                self._process(item)  # type: ignore[arg-type]
                outcome_ok = True
            except Exception as error:  # noqa: BLE001 - one bad frame must not end the thread
                outcome_ok = False
                try:
                    self._on_error(item, error)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - a failing error handler must not end it either
                    pass
            with self._condition:
                self._busy = False
                if outcome_ok:
                    self.processed += 1
                else:
                    self.failed += 1
                self._condition.notify_all()
