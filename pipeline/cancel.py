"""Cancellation that works across threads and processes.

A cancel from this process sets the event at once; a cancel from another process (the CLI,
a second web worker) flips the job row, which the token notices on its next poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CancelToken:
    def __init__(
        self, check_cancelled: Callable[[], bool] | None = None, poll_seconds: float = 1.0
    ) -> None:
        self._event = threading.Event()
        self._check = check_cancelled
        self._poll_seconds = poll_seconds
        self._last_poll = 0.0

    def cancel(self) -> None:
        self._event.set()

    def is_cancelled(self) -> bool:
        if self._event.is_set():
            return True
        now = time.monotonic()
        if self._check is not None and now - self._last_poll >= self._poll_seconds:
            self._last_poll = now
            if self._check():
                self._event.set()
        return self._event.is_set()
