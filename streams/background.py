"""A loop in a daemon thread beside the worker's batch loop (the merger, the policy engine)."""

from __future__ import annotations

import threading
import time


class BackgroundService:
    """``start`` runs :meth:`_run` in its own thread; ``_run`` loops until ``_stop`` is set;
    ``stop`` sets it and waits."""

    thread_name = "shadowcanary-service"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: When the loop last went round (``time.monotonic()``): a loop stuck in a call shows here.
        self.last_loop = time.monotonic()

    def went_round(self) -> None:
        """Called by ``_run`` on every turn of its loop."""
        self.last_loop = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError
