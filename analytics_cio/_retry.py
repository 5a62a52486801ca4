"""The retry policy: which failures are retried, and how long to wait. Data only; the worker applies it."""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import time
from typing import Final

# Customer.io documents no 429, but its Node client retries 408/429/5xx and honours Retry-After; so do we.
# 501 (not implemented) and 505 (HTTP version) will not change on a retry.
NEVER_RETRY_5XX: Final = frozenset({501, 505})
MAX_RETRY_AFTER: Final = 300.0  # seconds: a longer Retry-After is taken as this


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or (500 <= status < 600 and status not in NEVER_RETRY_5XX)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date. None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed is None:
            return None
        if parsed.tzinfo is None:  # HTTP dates are GMT
            return None
        seconds = parsed.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by a count and by a total deadline.

    ``delay(attempt, elapsed, retry_after)`` answers how long to wait before retry number ``attempt + 1``, or
    None when the policy gives up: after ``max_retries`` retries, or when waiting would pass ``deadline``
    seconds since the first attempt. A server's ``Retry-After`` is a floor, clamped to ``max_retry_after``.
    """

    max_retries: int = 10
    backoff_factor: float = 0.5
    max_backoff: float = 30.0
    deadline: float = 600.0
    max_retry_after: float = MAX_RETRY_AFTER

    def delay(self, attempt: int, elapsed: float, retry_after: float | None = None) -> float | None:
        if attempt >= self.max_retries:
            return None
        # Full jitter, as backoff.full_jitter computes it: importing backoff would import asyncio (about 6 MB of
        # memory in every process that sends) for this one line.
        wait = random.uniform(0, min(self.max_backoff, self.backoff_factor * (2.0**attempt)))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        if elapsed + wait > self.deadline:
            return None
        return wait
