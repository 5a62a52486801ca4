"""Delivering one batch: attempts, the retry policy applied to them, and each operation's outcome.

``deliver()`` is the whole retry loop; the worker's sender and ``sync_mode`` both call it. A transport that
delivers on its own schedule (v1: a lane per person, each with its own backoff) provides ``deliver`` itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Callable

from ._errors import DeliveryError, RejectedError, RetriesExhaustedError
from ._retry import RetryPolicy
from ._transport import Outcome, Transport, WireOp

logger = logging.getLogger("analytics_cio")

OpReport = Callable[[DeliveryError, Sequence[WireOp]], None]


def deliver(
    transport: Transport,
    policy: RetryPolicy,
    ops: Sequence[WireOp],
    report: OpReport,
    wait: Callable[[float], bool],
    stop: threading.Event | None = None,
    more: Callable[[], Sequence[WireOp]] | None = None,
    delivered: Callable[[Sequence[WireOp]], None] | None = None,
) -> list[WireOp]:
    """Send ``ops`` until each is delivered or reported; returns the settled ones (reported ones included).

    ``wait(seconds)`` sleeps between attempts and returns False to give up (shutdown): what is still unsent
    then is returned unsettled, for the caller to keep (spool) or report. ``more()`` hands over the ops queued
    behind, for a transport that can send them while some of these back off (v1's lanes); those are settled and
    returned by this call too, and such a transport settles what it delivers as it goes through ``delivered``.
    """
    custom = getattr(transport, "deliver", None)
    if custom is not None:  # the v1 transport: one lane per person, each with its own backoff
        settled: list[WireOp] = custom(ops, policy, report, wait, stop, more, delivered)
        return settled
    settled = []
    pending = list(ops)
    started = time.monotonic()
    attempt = 0
    while pending:
        try:
            outcomes = transport.send(pending, stop)
        except Exception as exc:  # a transport bug must not make a batch vanish: it is a failed attempt
            logger.exception("analytics_cio: the transport failed")
            outcomes = [Outcome(False, retryable=True, reason=f"{type(exc).__name__}: {exc}")] * len(pending)
        retry: list[WireOp] = []
        refused: dict[tuple[int | None, str, str | None], list[WireOp]] = {}
        last: Outcome | None = None
        for op, outcome in zip(pending, outcomes):
            if outcome.delivered:
                settled.append(op)
            elif outcome.retryable:
                retry.append(op)
                last = outcome
            else:
                refused.setdefault((outcome.status, outcome.reason, outcome.field), []).append(op)
        for (status, reason, field), group in refused.items():
            text = f"Customer.io refused it (HTTP {status}): {reason}" if status else f"not delivered: {reason}"
            report(RejectedError(text, status=status, field=field), group)
            settled.extend(group)
        if not retry:
            break
        assert last is not None
        retry_after = max((o.retry_after for o in outcomes if o.retry_after is not None), default=None)
        delay = policy.delay(attempt, time.monotonic() - started, retry_after)
        if delay is None:
            why = f"HTTP {last.status}: {last.reason}" if last.status else last.reason
            report(
                RetriesExhaustedError(
                    f"gave up after {attempt + 1} attempt{'s' if attempt else ''} in "
                    f"{time.monotonic() - started:.1f}s; last error: {why}",
                    status=last.status,
                ),
                retry,
            )
            settled.extend(retry)
            break
        logger.debug("analytics_cio: %d ops failed (%s); retry %d in %.2fs", len(retry), last.reason,
                     attempt + 1, delay)
        if not wait(delay):
            break
        attempt += 1
        pending = retry
    return settled
