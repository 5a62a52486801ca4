"""The retry policy and the rate limiter as pure values, with a frozen clock where time matters."""

from __future__ import annotations

import email.utils
import threading

import pytest

from analytics_cio._ratelimit import RateLimiter
from analytics_cio._retry import RetryPolicy, is_retryable_status, parse_retry_after


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [301, 302, 307, 400, 401, 403, 404, 413, 422, 501, 505])
def test_final_statuses(status: int) -> None:
    assert not is_retryable_status(status)


def test_retry_after_in_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == 30.0
    assert parse_retry_after(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    for garbage in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(garbage) is None


def test_backoff_grows_is_jittered_and_capped() -> None:
    policy = RetryPolicy(max_retries=20, backoff_factor=0.5, max_backoff=8.0, deadline=10_000)
    for attempt in range(12):
        ceiling = min(8.0, 0.5 * 2**attempt)
        delays = [policy.delay(attempt, 0.0) for _ in range(200)]
        assert all(d is not None and 0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, so many clients do not retry in step


def test_policy_gives_up_after_max_retries_or_past_the_deadline() -> None:
    policy = RetryPolicy(max_retries=3, deadline=60)
    assert policy.delay(2, 0.0) is not None
    assert policy.delay(3, 0.0) is None
    # Past the deadline whatever the jitter draws (a draw below 1 s used to pass 9.0 + wait > 10: 1 run in 30).
    assert RetryPolicy(deadline=10, backoff_factor=100).delay(5, 10.0) is None
    assert RetryPolicy(deadline=10).delay(0, 0.0, retry_after=30) is None  # the server asks for more than is left


def test_retry_after_is_a_floor_and_clamped() -> None:
    policy = RetryPolicy(max_retry_after=60, deadline=1000)
    assert policy.delay(0, 0.0, retry_after=20) == 20
    assert policy.delay(0, 0.0, retry_after=10_000) == 60


def test_policy_is_an_immutable_value() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_retries = 3  # type: ignore[misc]


def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(per_second=1000)
    stop = threading.Event()
    import time

    start = time.monotonic()
    assert all(limiter.acquire(stop) for _ in range(50))
    assert time.monotonic() - start >= 0.045  # 50 requests at 1000/s take at least 49 ms, however fast the machine
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_rate_limiter_pause_holds_requests_and_stop_cuts_the_wait() -> None:
    limiter = RateLimiter(None)
    limiter.pause(30)
    stop = threading.Event()
    stop.set()
    assert limiter.acquire(stop) is False  # it would have waited 30 s
