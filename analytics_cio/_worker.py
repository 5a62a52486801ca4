"""The queue and the two background threads that turn messages into Customer.io requests.

Callers append messages to an inbox; the caller pays only for an append (and, rarely, a wake-up).

- The *encoder* thread prepares each message (mapping + JSON encoding, once) and holds the encoded operations
  until a batch is full, old enough, or a flush asks for it; then it hands the batch to the sender.
- The *sender* thread delivers batches one at a time, in order, with the retry policy.

Sending waits on the network, which releases the GIL, so encoding goes on meanwhile: in a burst the next batch
is ready when the last one is answered, and during an outage new arrivals are still encoded, so what the queue
holds is measured in real bytes.

A flush is a barrier in the same FIFO: everything appended before it is delivered or reported before it is
released, whatever the callers on other threads do meanwhile.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Callable, Protocol, Union

from ._errors import DeliveryError, RejectedError, RetriesExhaustedError, ShutdownError
from ._retry import RetryPolicy
from ._transport import Outcome, Transport, WireOp

logger = logging.getLogger("analytics_cio")

Message = Any
Report = Callable[[DeliveryError, Sequence[Message]], None]
Prepare = Callable[[Message], Sequence[WireOp]]  # reports what it cannot prepare itself


class Spool(Protocol):
    """Durable storage of prepared operations (see ``_spool``)."""

    def add(self, ops: Sequence[WireOp]) -> None: ...

    def remove(self, ops: Sequence[WireOp]) -> None: ...

    def backlog(self) -> list[WireOp]: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class _Barrier:
    """A flush in the queue: released once everything ahead of it is delivered or reported."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


Pending = Union[WireOp, _Barrier]
SPOOL_DELAY = 0.05  # seconds: the longest a message waits in memory before it is written to the spool


def deliver(
    transport: Transport,
    policy: RetryPolicy,
    ops: Sequence[WireOp],
    report: Report,
    wait: Callable[[float], bool],
    stop: threading.Event | None = None,
) -> list[WireOp]:
    """Send ``ops`` until each is delivered or reported; returns the settled ones.

    ``wait(seconds)`` sleeps between attempts and returns False to give up (shutdown): what is still unsent
    then is returned unsettled, for the caller to keep (spool) or report.
    """
    settled: list[WireOp] = []
    pending = list(ops)
    started = time.monotonic()
    attempt = 0
    while pending:
        outcomes = transport.send(pending, stop)
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
            report(RejectedError(text, status=status, field=field), [op.message for op in group])
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
                    f"gave up after {attempt + 1} attempts in {time.monotonic() - started:.1f}s; last error: {why}",
                    status=last.status,
                ),
                [op.message for op in retry],
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


class Worker:
    """One inbox, an encoder and a sender thread; started on first use, restarted after fork or if stopped."""

    def __init__(
        self,
        *,
        transport: Transport,
        prepare: Prepare,
        report: Report,
        policy: RetryPolicy,
        upload_size: int,
        upload_interval: float,
        max_queue_size: int,
        max_queue_bytes: int,
        spool: Spool | None = None,
    ) -> None:
        self.transport = transport
        self.prepare = prepare
        self.report = report
        self.policy = policy
        self.upload_size = upload_size
        self.upload_interval = upload_interval
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.spool = spool
        self._reset_state()
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(after_in_child=lambda: (lambda m: m and m())(ref()))

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._inbox: collections.deque[Any] = collections.deque()  # messages and barriers, from callers
        # Encoder-owned: encoded operations (and barriers) not yet cut into a batch.
        self._pending: collections.deque[Pending] = collections.deque()
        self._pending_ops = 0
        self._pending_bytes = 0
        self._barriers = 0  # barriers in _pending
        self._oldest = 0.0
        # Cut batches (and barriers) waiting for the sender, in order; guarded by _outbox_ready.
        self._outbox: collections.deque[list[WireOp] | _Barrier] = collections.deque()
        self._outbox_ready = threading.Condition(threading.Lock())
        self._in_flight: list[WireOp] | None = None
        # Encoded and not yet settled (pending, outbox, in flight): the queue's byte budget counts these.
        self._held_ops = 0
        self._held_bytes = 0
        self._held_lock = threading.Lock()
        # Messages not yet encoded are counted at the average size of the operations encoded so far.
        self._average_bytes = 1024.0
        self._wake = threading.Event()
        self._signaled = False
        self._stop = threading.Event()  # abandon retries and exit (shutdown past its timeout)
        self._flushes = 0  # flushes asked for; one that came after a batch started cuts its retry wait short
        self._flushes_seen = 0
        self._exit_when_idle = False  # close(): send everything queued, then exit
        self._exit_now = False  # join(): exit after the current batch
        self._lock = threading.Lock()
        self._encoder: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._running = False
        self._backlog_loaded = self.spool is None

    def _after_fork_in_child(self) -> None:
        """The child starts empty: the parent delivers its own queue. Nothing of the parent's is shared."""
        self._reset_state()
        reset = getattr(self.transport, "reset_after_fork", None)
        if reset is not None:
            reset()
        if self.spool is not None:
            self.spool.reopen()
            self._backlog_loaded = True  # the parent owns the backlog it loaded

    # -- caller side ---------------------------------------------------------------------------------------

    def put(self, message: Message) -> bool:
        """Queue ``message``; False when the queue's count or byte budget is used up. Never blocks."""
        if self._pid != os.getpid():
            self._after_fork_in_child()
        inbox = self._inbox
        waiting = len(inbox)
        if (
            waiting + self._held_ops >= self.max_queue_size
            or self._held_bytes + waiting * self._average_bytes >= self.max_queue_bytes
        ):
            return False
        inbox.append(message)
        # Wake the encoder for the first message after it went idle, and when a batch's worth is waiting; the
        # Event is a lock and a notify, so it is set only when it is not set already.
        if not self._signaled or (waiting >= self.upload_size and not self._wake.is_set()):
            self._signaled = True
            self._wake.set()
        if not self._running:
            self._start()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver or report everything queued so far. False if ``timeout`` passed first."""
        if self._pid != os.getpid():
            self._after_fork_in_child()
        barrier = _Barrier()
        self._inbox.append(barrier)
        self._signaled = True
        self._flushes += 1
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._running:
                self._start()
            remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if remaining <= 0:
                return barrier.done.is_set()
            if barrier.done.wait(remaining):
                return True

    def close(self, timeout: float | None) -> bool:
        """Flush, then stop the threads. Past ``timeout``, what is left is reported (or kept in the spool)."""
        delivered = self.flush(timeout)
        self._exit_when_idle = True
        if not delivered:
            self._stop.set()
        self._nudge()
        self._join_threads(5.0)
        if not delivered and not self._alive():
            self._abandon()
        if self.spool is not None and not self._alive():
            self.spool.close()
        return delivered

    def join(self) -> None:
        """Stop the threads after the batch in flight; what is still queued stays queued for a later flush."""
        self._exit_now = True
        self._nudge()
        self._join_threads(None)
        self._exit_now = False

    def queued(self) -> int:
        """Messages and operations not yet delivered or reported."""
        return len(self._inbox) + self._held_ops

    def _nudge(self) -> None:
        self._wake.set()
        with self._outbox_ready:
            self._outbox_ready.notify_all()

    def _alive(self) -> bool:
        return any(t is not None and t.is_alive() for t in (self._encoder, self._sender))

    def _join_threads(self, timeout: float | None) -> None:
        for thread in (self._encoder, self._sender):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self._exit_now = self._exit_when_idle = False
            try:
                if self._sender is None or not self._sender.is_alive():
                    self._sender = threading.Thread(target=self._run_sender, name="analytics-cio-send", daemon=True)
                    self._sender.start()
                self._encoder = threading.Thread(target=self._run_encoder, name="analytics-cio", daemon=True)
                self._encoder.start()
            except RuntimeError:  # interpreter shutdown: no new threads, so the calling thread does the work
                self._running = False
                self._work_inline()

    def _work_inline(self) -> None:
        self._exit_when_idle = True
        self._drain_inbox()
        self._cut_batches()
        while self._outbox and not self._stop.is_set():
            self._send_next()

    # -- the encoder ---------------------------------------------------------------------------------------

    def _run_encoder(self) -> None:
        try:
            if not self._backlog_loaded:
                self._load_backlog()
            while not self._stop.is_set() and not self._exit_now:
                try:
                    self._wait_for_work()
                    self._drain_inbox()
                    self._cut_batches()
                except Exception:  # the thread must outlive any bug or bad message
                    logger.exception("analytics_cio: unexpected error in the worker; it keeps running")
                    time.sleep(0.05)
                if self._exit_when_idle and not self._inbox and not self._pending:
                    break
        finally:
            self._running = False
            with self._outbox_ready:
                self._outbox_ready.notify_all()

    def _wait_for_work(self) -> None:
        if self._inbox or self._exit_when_idle or self._barriers:
            return
        if not self._pending:
            self._wake.clear()
            self._signaled = False
            if not self._inbox:
                self._wake.wait()
            return
        # A partial batch: send it when it is old enough and the sender is free (else it may still fill up).
        remaining = self._oldest + self.upload_interval - time.monotonic()
        if remaining > 0 or self._outbox or self._in_flight is not None:
            wait = max(remaining, 0.01) if remaining > 0 else self.upload_interval
            if self.spool is not None:  # new arrivals reach the spool within SPOOL_DELAY, not upload_interval
                wait = min(wait, SPOOL_DELAY)
            self._wake.clear()
            if not self._inbox:
                self._wake.wait(wait)

    def _drain_inbox(self) -> None:
        inbox = self._inbox
        prepared: list[WireOp] = []
        pending = self._pending
        while inbox:
            item = inbox.popleft()
            if isinstance(item, _Barrier):
                pending.append(item)
                self._barriers += 1
                continue
            try:
                ops = self.prepare(item)
            except Exception as exc:  # a bug in preparing one message must not lose the others
                logger.exception("analytics_cio: could not prepare a message")
                self._safe_report(DeliveryError(f"could not prepare the message: {exc!r}"), [item])
                continue
            if not ops:
                continue
            if not self._pending_ops:
                self._oldest = time.monotonic()
            pending.extend(ops)
            prepared.extend(ops)
            self._pending_ops += len(ops)
        if not prepared:
            return
        size = sum(len(op.data) for op in prepared)
        self._pending_bytes += size
        with self._held_lock:
            self._held_ops += len(prepared)
            self._held_bytes += size
        self._average_bytes = 0.9 * self._average_bytes + 0.1 * size / len(prepared)
        if self.spool is not None:
            try:
                self.spool.add(prepared)
            except Exception:
                logger.exception("analytics_cio: could not write to the spool; delivery goes on from memory")

    def _cut_batches(self) -> None:
        """Hand every batch that is ready to the sender, barriers in their place between them."""
        while True:
            self._pass_barriers()
            if not self._pending_ops:
                return
            full = self._pending_ops >= self.upload_size or self._pending_bytes >= self.transport.max_batch_bytes
            sender_idle = not self._outbox and self._in_flight is None
            aged = time.monotonic() - self._oldest >= self.upload_interval
            if not (full or self._barriers or self._exit_when_idle or (aged and sender_idle)):
                return
            self._hand_over(self._cut_one())

    def _cut_one(self) -> list[WireOp]:
        limit = self.transport.max_batch_bytes
        batch: list[WireOp] = []
        size = 0
        pending = self._pending
        while pending and len(batch) < self.upload_size:
            item = pending[0]
            if isinstance(item, _Barrier):
                break
            if batch and size + len(item.data) + 1 > limit:
                break
            pending.popleft()
            batch.append(item)
            size += len(item.data) + 1
        self._pending_ops -= len(batch)
        self._pending_bytes -= size - len(batch)
        if self._pending_ops:
            self._oldest = time.monotonic()
        return batch

    def _pass_barriers(self) -> None:
        pending = self._pending
        while pending and isinstance(pending[0], _Barrier):
            barrier = pending.popleft()
            assert isinstance(barrier, _Barrier)
            self._barriers -= 1
            self._hand_over(barrier)

    def _hand_over(self, item: list[WireOp] | _Barrier) -> None:
        with self._outbox_ready:
            self._outbox.append(item)
            self._outbox_ready.notify()

    # -- the sender ----------------------------------------------------------------------------------------

    def _run_sender(self) -> None:
        try:
            while True:
                with self._outbox_ready:
                    while not self._outbox:
                        if self._stop.is_set() or self._exit_now:
                            return
                        if not self._running and (self._exit_when_idle or self._encoder is None
                                                  or not self._encoder.is_alive()):
                            return
                        self._outbox_ready.wait(0.5)
                if self._stop.is_set():
                    return
                try:
                    self._send_next()
                except Exception:
                    logger.exception("analytics_cio: unexpected error while sending; the sender keeps running")
                if self._exit_now:
                    return
        finally:
            if self._stop.is_set():
                self._abandon()

    def _send_next(self) -> None:
        with self._outbox_ready:
            item = self._outbox.popleft()
            if not isinstance(item, _Barrier):
                self._in_flight = item
        if isinstance(item, _Barrier):
            item.done.set()
            return
        self._flushes_seen = self._flushes
        try:
            self._send(item)
        finally:
            self._in_flight = None
            if not self._outbox:
                self._wake.set()  # the encoder may now send a partial batch it was holding back

    def _send(self, batch: list[WireOp]) -> None:
        try:
            settled = deliver(self.transport, self.policy, batch, self._safe_report, self._wait_between, self._stop)
        finally:
            with self._held_lock:
                self._held_ops -= len(batch)
                self._held_bytes -= sum(len(op.data) for op in batch)
        if settled and self.spool is not None:
            try:
                self.spool.remove(settled)
            except Exception:
                logger.exception("analytics_cio: could not update the spool")
        if len(settled) < len(batch):
            settled_ids = {id(op) for op in settled}
            self._give_up([op for op in batch if id(op) not in settled_ids])

    def _wait_between(self, seconds: float) -> bool:
        """Sleep between retries; False when shutdown cuts the wait. A flush cuts it short too, for one retry
        now (a server's Retry-After still holds: the rate limiter keeps every request back until then)."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if self._flushes != self._flushes_seen:  # each flush cuts one wait short
                self._flushes_seen = self._flushes
                return True
            if remaining <= 0:
                return True
            if self._stop.wait(min(remaining, 0.05)):
                return False

    # -- giving up -----------------------------------------------------------------------------------------

    def _give_up(self, ops: Sequence[WireOp]) -> None:
        if not ops:
            return
        if self.spool is not None:
            logger.warning("analytics_cio: %d operations kept in the spool for the next start", len(ops))
            return
        self._safe_report(ShutdownError("the client shut down before these could be delivered"),
                          [op.message for op in ops])

    def _abandon(self) -> None:
        """Shutdown passed its timeout: report (or leave in the spool) everything still queued."""
        leftovers: list[WireOp] = []
        messages: list[Message] = []
        with self._outbox_ready:
            outbox = list(self._outbox)
            self._outbox.clear()
        for item in [*outbox, *self._pending]:
            if isinstance(item, _Barrier):
                item.done.set()
            elif isinstance(item, list):
                leftovers.extend(item)
            else:
                leftovers.append(item)
        self._pending.clear()
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, _Barrier):
                item.done.set()
            else:
                messages.append(item)
        self._pending_ops = self._pending_bytes = self._barriers = 0
        with self._held_lock:
            self._held_ops = self._held_bytes = 0
        self._give_up(leftovers)
        if messages:
            self._safe_report(ShutdownError("the client shut down before these could be sent"), messages)

    def _load_backlog(self) -> None:
        self._backlog_loaded = True
        assert self.spool is not None
        try:
            backlog = self.spool.backlog()
        except Exception:
            logger.exception("analytics_cio: could not read the spool's backlog")
            return
        if backlog:
            logger.info("analytics_cio: delivering %d operations left in the spool", len(backlog))
            size = sum(len(op.data) for op in backlog)
            self._pending.extendleft(reversed(backlog))
            self._pending_ops += len(backlog)
            self._pending_bytes += size
            with self._held_lock:
                self._held_ops += len(backlog)
                self._held_bytes += size
            self._oldest = time.monotonic() - self.upload_interval

    def _safe_report(self, error: DeliveryError, messages: Sequence[Message]) -> None:
        try:
            self.report(error, messages)
        except Exception:
            logger.exception("analytics_cio: reporting an undelivered message failed")
