"""A request-rate limit shared by every request a client sends, and a pause for the server's Retry-After."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Spaces requests so that no more than ``per_second`` start in any second (None: unlimited).

    ``pause(seconds)`` holds every request back until then: a 429's Retry-After applies to the whole client,
    not only to the request that received it.
    """

    def __init__(self, per_second: float | None) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("max_requests_per_second must be positive or None")
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a request slot. False if ``stop`` was set while waiting."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next, self._paused_until)
            self._next = start + self._interval
        wait = start - now
        if wait <= 0:
            return True
        if stop is None:
            time.sleep(wait)
            return True
        return not stop.wait(wait)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
