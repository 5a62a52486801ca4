"""v1 delivery: a lane per person, each with its own backoff, sharing a few request threads.

Track API v1 takes one request per operation, and Customer.io applies a person's operations in the order they
arrive. So each person's operations go one at a time, in order (a *lane*), and different people's go side by
side, up to ``concurrency`` requests in flight. A failed operation waits out its backoff at the head of its lane,
holding back only that person's later operations: the other lanes keep sending, and whenever a request thread
would sit idle the scheduler takes the operations queued behind (``more()``). One person's trouble never stalls
everyone else's delivery.

Each operation's retries follow the retry policy on their own: attempts are counted per operation, and its
deadline runs from when it entered the scheduler.

A merge concerns two people: it is in both their lanes (its ``lane`` is a JSON list of the two) and goes once it
heads both, so the secondary's earlier operations are not sent after it (they would make the secondary again).

Who owns what: the scheduler (the thread that calls :func:`deliver`, the worker's sender) owns the lanes, the
backoff heap and each operation's retry state; request threads only run ``attempt(op)`` and hand the outcome
back through a queue.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import json
import queue
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Optional, Union

from ._errors import DeliveryError, RejectedError, RetriesExhaustedError
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._transport import Outcome, WireOp

OpReport = Callable[[DeliveryError, Sequence["WireOp"]], None]
_Result = Union["Outcome", Exception]
_POLL = 0.1  # seconds between looks at ``stop`` while requests are in flight


def _keys(op: WireOp) -> list[str]:
    """The lanes ``op`` is in: its person's, both people's for a merge, a lane of its own when it has no person."""
    if op.lane.startswith("["):
        keys: list[str] = json.loads(op.lane)
        return list(dict.fromkeys(keys))  # a person merged into themselves: one lane
    return [op.lane or f"#{id(op)}"]  # no person (objects): a lane of its own


class _Lane:
    """One person's operations in order, each with when it entered; the head's attempts and backoff."""

    __slots__ = ("attempts", "key", "ops")

    def __init__(self, key: str) -> None:
        self.key = key
        self.ops: collections.deque[tuple[WireOp, float]] = collections.deque()
        self.attempts = 0


def deliver(
    attempt: Callable[[WireOp], Outcome],
    concurrency: int,
    ops: Sequence[WireOp],
    policy: RetryPolicy,
    report: OpReport,
    wait: Callable[[float], bool],
    stop: threading.Event | None,
    more: Callable[[], Sequence[WireOp]] | None,
    delivered: Callable[[Sequence[WireOp]], None] | None = None,
) -> list[WireOp]:
    """Deliver ``ops`` and what ``more()`` hands over, lane by lane; returns every op settled (reported included).

    ``attempt(op)`` makes one request. ``report`` settles what is refused or outlives its retries, ``delivered``
    (when given) what was delivered, each as soon as it is known. ``wait(seconds)`` sleeps while every lane backs
    off (a flush cuts it short); False from it, or ``stop`` set, ends delivery: what is unsettled is left to the
    caller.
    """
    return _Scheduler(attempt, concurrency, policy, report, wait, stop, more, delivered).run(ops)


class _Scheduler:
    def __init__(
        self,
        attempt: Callable[[WireOp], Outcome],
        concurrency: int,
        policy: RetryPolicy,
        report: OpReport,
        wait: Callable[[float], bool],
        stop: threading.Event | None,
        more: Callable[[], Sequence[WireOp]] | None,
        delivered: Callable[[Sequence[WireOp]], None] | None,
    ) -> None:
        self.attempt = attempt
        self.concurrency = max(1, concurrency)
        self.policy = policy
        self.report = report
        self.wait = wait
        self.stop = stop
        self.more = more
        self.delivered = delivered
        self.lanes: dict[str, _Lane] = {}
        self.ready: collections.deque[_Lane] = collections.deque()  # lanes whose head can go now
        self.backing_off: list[tuple[float, int, _Lane]] = []  # a heap: (when the head may go again, tiebreak, lane)
        self.order = itertools.count()
        self.in_flight = 0
        self.settled: list[WireOp] = []
        self.work: queue.SimpleQueue[Optional[tuple[_Lane, WireOp]]] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[tuple[_Lane, WireOp, _Result]] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.inline = False
        self.running: set[int] = set()  # id() of the ops in flight: a merge heads two lanes, and goes once
        self.held: dict[int, float] = {}  # id() of a merge backing off -> when it may go (its other lane waits too)

    def run(self, ops: Sequence[WireOp]) -> list[WireOp]:
        self.add(ops)
        # One person and nothing more to come (sync_mode): no thread is worth starting.
        self.inline = self.more is None and len(self.lanes) <= 1
        try:
            while self.step():
                pass
        finally:
            for _ in self.threads:
                self.work.put(None)
        return self.settled

    def add(self, ops: Sequence[WireOp]) -> None:
        now = time.monotonic()
        for op in ops:
            for key in _keys(op):
                lane = self.lanes.get(key)
                if lane is None:
                    lane = self.lanes[key] = _Lane(key)
                    self.ready.append(lane)
                lane.ops.append((op, now))

    def step(self) -> bool:
        """Start what can start, take more when idle, wait for one outcome. False when done or stopped."""
        now = time.monotonic()
        while self.backing_off and self.backing_off[0][0] <= now:
            self.ready.append(heapq.heappop(self.backing_off)[2])
        while self.ready and self.in_flight < self.concurrency:
            self.start(self.ready.popleft())
        if self.in_flight < self.concurrency and not self.ready and self.more is not None:
            taken = self.more()
            if taken:
                self.add(taken)
                return True
        if not self.in_flight and not self.ready and not self.backing_off:
            return False
        if self.stop is not None and self.stop.is_set():
            return False
        if not self.in_flight:  # every lane backs off: sleep the worker's way (flush, shutdown), in short
            # slices, so that ops queued meanwhile (more()) start at once
            until = min(self.backing_off[0][0], now + _POLL)
            if not self.wait(until - now):
                return False
            if time.monotonic() < until - 0.001:  # a flush cut the wait short: every lane goes now
                self.ready.extend(lane for _, _, lane in self.backing_off)
                self.backing_off = []
                self.held.clear()
            return True
        timeout = self.backing_off[0][0] - now if self.backing_off else None
        if self.stop is not None:
            timeout = _POLL if timeout is None else min(timeout, _POLL)
        try:
            lane, op, result = self.results.get(timeout=timeout)
        except queue.Empty:
            return True
        self.in_flight -= 1
        self.finish(lane, op, result)
        return True

    def start(self, lane: _Lane) -> None:
        if not lane.ops or self.lanes.get(lane.key) is not lane:
            return  # emptied by a merge it shared, and dropped, while it waited in ready or backing off
        op = lane.ops[0][0]
        if id(op) in self.running or self.held.get(id(op), 0.0) > time.monotonic():
            return  # a merge in flight or backing off: its own lane's turn starts it again
        if any(key not in self.lanes or self.lanes[key].ops[0][0] is not op for key in _keys(op)):
            return  # a merge that does not head its other lane yet: that lane starts it when it does
        self.running.add(id(op))
        self.in_flight += 1
        if not self.inline and len(self.threads) < self.in_flight:
            thread = threading.Thread(target=self.serve, name="analytics-cio-v1", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter exit: no new threads; this one sends
                self.inline = not self.threads
            else:
                self.threads.append(thread)
        if self.inline:
            self.results.put((lane, op, self.run_attempt(op)))
        else:
            self.work.put((lane, op))

    def serve(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                return
            lane, op = item
            self.results.put((lane, op, self.run_attempt(op)))

    def run_attempt(self, op: WireOp) -> _Result:
        try:
            return self.attempt(op)
        except Exception as exc:  # whatever happens, the op gets an outcome: nothing vanishes
            return exc

    def finish(self, lane: _Lane, op: WireOp, result: _Result) -> None:
        self.running.discard(id(op))
        if isinstance(result, Exception):
            delivered, retryable, status, reason = False, True, None, f"{type(result).__name__}: {result}"[:500]
            field = retry_after = None
        else:
            delivered, retryable, status, reason = result.delivered, result.retryable, result.status, result.reason
            field, retry_after = result.field, result.retry_after
        if delivered:
            self.settled.append(op)
            if self.delivered is not None:
                self.delivered([op])
        elif not retryable:
            text = f"Customer.io refused it (HTTP {status}): {reason}" if status else f"not delivered: {reason}"
            self.report(RejectedError(text, status=status, field=field), [op])
            self.settled.append(op)
        else:
            now = time.monotonic()
            elapsed = now - lane.ops[0][1]
            delay = self.policy.delay(lane.attempts, elapsed, retry_after)
            if delay is not None:
                lane.attempts += 1
                heapq.heappush(self.backing_off, (now + delay, next(self.order), lane))
                if len(_keys(op)) > 1:
                    self.held[id(op)] = now + delay
                return
            why = f"HTTP {status}: {reason}" if status else reason
            self.report(RetriesExhaustedError(
                f"gave up after {lane.attempts + 1} attempts in {elapsed:.1f}s; last error: {why}", status=status,
            ), [op])
            self.settled.append(op)
        self.held.pop(id(op), None)
        for key in _keys(op):  # the op heads each of its lanes
            lane = self.lanes[key]
            lane.ops.popleft()
            lane.attempts = 0
            if lane.ops:
                self.ready.append(lane)
            else:
                del self.lanes[key]
