"""The queue between the callers and Customer.io: an inbox, two background threads, and who owns what.

    callers ──put()──▶ inbox ──▶ encoder thread ──▶ outbox ──▶ sender thread ──▶ transport
                                 prepare, compact,             cut a batch, deliver with
                                 write to the spool            retries, settle each op

Who owns what (nothing else is shared):

====================================  ================================================================
the inbox: messages and markers       callers append (``deque.append`` is atomic); the encoder pops
the encoder's round (at most ROUND)   the encoder thread alone; callers read its size (``_in_hand``), so
                                      a message the encoder holds still counts against the queue's bounds
the outbox, the batch in flight,      ``Outbox`` (``_outbox.py``), under its one Condition: the encoder
each op's ``settled`` claim           adds, the sender takes and claims, an overdue ``close()`` abandons
retry state of the batch in flight    the sender thread alone (``_delivery.deliver``)
spool rows set aside (``_set_aside``) the sender thread alone
the pacing count (``_backlog_puts``)  callers (a racy count is fine: it only spaces their yields)
====================================  ================================================================

The encoder takes at most ROUND items from the inbox at a time, so callers that never pause cannot keep it from
handing work on: batches are cut, spooled and sent while they keep calling; and once more than a batch waits, one
call in YIELD_EVERY lets the worker threads run, so the sender is not starved of the GIL either. What waits
is held encoded: each operation's JSON and, once more than two batches wait (or with a spool), its message as
compact JSON (``WireOp.compact``), which ``on_error`` gets back decoded.

A marker is a flush in the same FIFO: released once everything queued before it is settled (delivered or
reported). The final marker is ``close()``'s: the threads end after it, and a closed worker never restarts.
``close(timeout)`` returns within its timeout even when a request never returns: it then abandons the outbox,
taking every op that is not settled, the batch in flight included, and reports it (or leaves it in the spool).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Callable, Final, Protocol

from ._delivery import deliver
from ._errors import DeliveryError, RetriesExhaustedError, ShutdownError
from ._outbox import Item, Marker, Outbox
from ._retry import RetryPolicy
from ._transport import Transport, WireOp

logger = logging.getLogger("analytics_cio")

Message = Any
Report = Callable[[DeliveryError, Sequence[Message]], None]  # the client's: messages, not ops
Prepare = Callable[[Message], Sequence[WireOp]]  # reports what it cannot prepare itself
Compact = Callable[[Message], bytes]

ROUND: Final = 500  # inbox items the encoder takes at a time
YIELD_EVERY: Final = 64  # while a backlog waits, one call in this many gives the GIL to the worker threads
_THREAD_NAMES: Final = ("analytics-cio", "analytics-cio-send")


class Spool(Protocol):
    """Durable storage of prepared operations (see ``_spool``)."""

    def add(self, ops: Sequence[WireOp]) -> list[WireOp]: ...  # returns the ops it could not store

    def remove(self, ops: Sequence[WireOp]) -> None: ...

    def backlog(self) -> list[WireOp]: ...

    def load(self, ids: Sequence[int]) -> list[WireOp]: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for worker in list(_workers):
        worker._reset_after_fork()


if hasattr(os, "register_at_fork"):  # once for the module, not once per worker
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Worker:
    """The inbox, the encoder and the sender of one client. Threads start on first use; ``close`` is final."""

    def __init__(
        self,
        *,
        transport: Transport,
        prepare: Prepare,
        compact: Compact,
        report: Report,
        policy: RetryPolicy,
        upload_size: int,
        upload_interval: float,
        max_queue_size: int,
        max_queue_bytes: int,
        open_spool: Callable[[], Spool] | None = None,
    ) -> None:
        self.transport = transport
        self.prepare = prepare
        self.compact = compact
        self.report = report
        self.policy = policy
        self.upload_size = upload_size
        self.upload_interval = upload_interval
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.spool: Spool | None = None  # opened by the encoder thread, so a bad file never reaches a caller
        self._open_spool = open_spool
        self._closed = False
        self._final: Marker | None = None
        self._reset()
        _workers.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._inbox: collections.deque[Any] = collections.deque()
        self._outbox = Outbox(self.upload_size, self.upload_interval, self.transport.max_batch_bytes)
        self._average_bytes = 1024.0
        self._backlog = self.upload_size
        self._backlog_puts = 0  # calls made while more than _backlog ops waited
        self._in_hand = 0  # messages taken from the inbox and not yet in the outbox (written by the encoder)
        self._set_aside: list[int] = []  # sender: spool ids whose retries ran out, kept for a later attempt
        self._wake = threading.Event()
        self._signaled = False
        self._stop = threading.Event()
        self._flushes = self._flushes_seen = 0
        self._start_lock = threading.Lock()
        self._threads: tuple[threading.Thread, threading.Thread] | None = None
        self._lone_sender: threading.Thread | None = None  # started when the encoder could not be
        self._backlog_loaded = self._open_spool is None

    def _reset_after_fork(self) -> None:
        """The child starts empty, with its own threads, locks and connections; the parent keeps its queue."""
        self._reset()
        reset = getattr(self.transport, "reset_after_fork", None)
        if reset is not None:
            reset()
        if self.spool is not None and not self._closed:
            try:
                self.spool.reopen()  # a new owner: it adopts what dead processes left, not what the parent holds
            except Exception as exc:
                logger.warning("analytics_cio: the spool could not be reopened after fork (%s); delivering from "
                               "memory", exc)
                self.spool = None
                self._backlog_loaded = True

    # -- the callers' side ---------------------------------------------------------------------------------

    def put(self, message: Message) -> bool:
        """Queue ``message``; False when the worker is closed or its count or byte budget is used up."""
        if self._pid != os.getpid():
            self._reset_after_fork()
        if self._closed:
            return False
        inbox, outbox = self._inbox, self._outbox
        waiting = len(inbox) + self._in_hand
        if (
            waiting + outbox.added_ops - outbox.settled_ops >= self.max_queue_size
            or outbox.added_bytes - outbox.settled_bytes + waiting * self._average_bytes >= self.max_queue_bytes
        ):
            return False
        inbox.append(message)
        if not self._signaled:  # the first message since the encoder went idle wakes it
            self._signaled = True
            self._wake.set()
        if self._threads is None:
            self._start()
        elif outbox.waiting > self._backlog:
            # A caller loop that never pauses keeps the GIL for 5 ms at a time, and the sender needs it back after
            # each of a request's half-dozen socket calls: delivery falls behind and the backlog grows. Once more
            # than a batch waits, every YIELD_EVERY-th call lets another thread run, never blocking for long.
            self._backlog_puts += 1
            if not self._backlog_puts % YIELD_EVERY:
                time.sleep(0)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver or report everything queued so far; False at ``timeout``, after close, or on a worker thread."""
        wait = self.start_flush()
        return False if wait is None else wait(timeout)

    def start_flush(self) -> Callable[[float | None], bool] | None:
        """Queue a flush now; return the wait for it: ``wait(timeout)`` is True once everything queued before
        the flush is settled, and may be called again (in slices, by an awaiting thread). None: no flush can
        happen (closed, or called on a worker thread)."""
        if self._pid != os.getpid():
            self._reset_after_fork()
        if self._closed or _on_worker_thread():
            return None  # a worker thread cannot wait for itself (on_error calling flush)
        marker = Marker()
        self._flushes += 1
        self._enqueue_marker(marker)
        if self._threads is None and not self._start():
            return functools.partial(self._work_inline, marker)
        return lambda timeout: marker.done.wait(_waitable(timeout))

    def close(self, timeout: float | None) -> bool:
        """Deliver what is queued, then stop for good. Returns within ``timeout`` (plus a moment) even when a
        request never returns: what is not delivered by then is reported, or left in the spool."""
        self.begin_close()
        return self.finish_close(None if timeout is None else time.monotonic() + timeout)

    def begin_close(self) -> None:
        """Refuse new messages and queue the final marker (idempotent)."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        self._final = Marker(final=True)
        self._enqueue_marker(self._final)

    def finish_close(self, deadline: float | None) -> bool:
        """Wait for the final marker until ``deadline`` (monotonic); past it, report what is left."""
        marker = self._final
        if marker is None or _on_worker_thread():  # on_error calling shutdown: the threads end by themselves
            return marker is not None and marker.done.is_set()
        if marker.done.is_set() and self._threads is None:
            return True  # a repeated shutdown() of a client that never started its threads: none to start now
        timeout = None if deadline is None else _waitable(max(0.0, deadline - time.monotonic()))
        if self._threads is None and self._open_spool is None and list(self._inbox) == [marker]:
            marker.done.set()  # never used: nothing to deliver, no thread to start
            done = True
        elif self._threads is None and not self._start():
            done = self._work_inline(marker, timeout)
        else:
            done = marker.done.wait(timeout)
        if not done:
            self._abandon()
            try:  # a request blocked on the network returns now, so the sender ends and the spool can close
                self.transport.close()
            except Exception:
                logger.exception("analytics_cio: closing the transport failed")
        threads = self._threads or ()
        for thread in threads:
            thread.join(0.5 if done else 0.2)
        if not threads or not threads[0].is_alive():
            self._drain_stranded()
        if self.spool is not None and not any(t.is_alive() for t in threads):
            try:
                self.spool.close()
            except Exception:
                logger.exception("analytics_cio: could not close the spool")
        return done

    def _drain_stranded(self) -> None:
        """What a racing caller appended behind the final marker: a flush is released, a message reported."""
        messages, markers = self._empty_inbox()
        for marker in markers:
            marker.done.set()
        if messages:
            self._report_messages(ShutdownError("the client shut down as these were queued"), messages)

    def _empty_inbox(self) -> tuple[list[Message], list[Marker]]:
        messages: list[Message] = []
        markers: list[Marker] = []
        while True:
            try:
                item = self._inbox.popleft()
            except IndexError:
                return messages, markers
            (markers if type(item) is Marker else messages).append(item)

    def queued(self) -> int:
        """Messages and operations not yet delivered or reported."""
        return len(self._inbox) + self._in_hand + self._outbox.added_ops - self._outbox.settled_ops

    def _enqueue_marker(self, marker: Marker) -> None:
        self._inbox.append(marker)
        self._signaled = True
        self._wake.set()

    def _start(self) -> bool:
        """Start both threads (once per process). False when no thread can be started (interpreter exit)."""
        with self._start_lock:
            if self._threads is not None:
                return True
            sender = threading.Thread(target=_as_worker(self._run_sender), name=_THREAD_NAMES[1], daemon=True)
            encoder = threading.Thread(target=_as_worker(self._run_encoder), name=_THREAD_NAMES[0], daemon=True)
            try:
                sender.start()
                encoder.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown": the caller works inline
                self._lone_sender = sender if sender.is_alive() else None
                return False
            self._threads = (encoder, sender)
            return True

    def _work_inline(self, marker: Marker, timeout: float | None) -> bool:
        """No threads can start (interpreter exit): the calling thread encodes and sends, within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not marker.done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self._inbox:
                self._encode_round()
            elif self._lone_sender is not None and self._lone_sender.is_alive():
                marker.done.wait(0.05)
            elif not self._send_one(block=False):
                break
        return marker.done.is_set()

    # -- the encoder ---------------------------------------------------------------------------------------

    def _run_encoder(self) -> None:
        if not self._backlog_loaded:
            self._load_backlog()
        while not self._stop.is_set():
            try:
                if not self._inbox:
                    self._wake.clear()
                    self._signaled = False
                    if not self._inbox:
                        self._wake.wait()
                        continue
                if self._encode_round():
                    return
            except Exception:  # the thread outlives any bug or bad message
                logger.exception("analytics_cio: unexpected error in the encoder; it keeps running")
                self._in_hand = 0
                time.sleep(0.05)

    def _encode_round(self) -> bool:
        """Prepare up to ROUND items from the inbox and hand them to the sender. True after the final marker."""
        inbox = self._inbox
        items: list[Item] = []
        failures: list[tuple[Message, BaseException]] = []
        final = False
        size = 0
        ops = 0
        # While the sender keeps up, what waits is one or two batches and the message dicts go with them: no
        # second encode. Once more waits (an outage, a slow server) or the spool needs it, messages go compact.
        compacting = self.spool is not None or self._outbox.waiting >= 2 * self.upload_size
        for _ in range(min(len(inbox), ROUND)):
            self._in_hand += 1  # counted before it leaves the inbox: the bounds never see it nowhere
            item = inbox.popleft()
            if type(item) is Marker:
                items.append(item)
                final = final or item.final
                continue
            try:
                prepared = self.prepare(item)
                if not prepared:
                    continue
                if compacting and not prepared[0].is_compact:
                    compact = self.compact(item)
                    for op in prepared:
                        op.compact(compact)
            except Exception as exc:  # a bug in preparing one message must not lose the others
                failures.append((item, exc))
                continue
            for op in prepared:
                size += op.size
            items.extend(prepared)
            ops += len(prepared)
        if ops and self.spool is not None:
            self._spool_add([op for op in items if type(op) is WireOp])
        # Reported before the round is handed on: a flush queued behind these must not be released first.
        for message, problem in failures:
            logger.error("analytics_cio: could not prepare a message", exc_info=problem)
            self._report_messages(DeliveryError(f"could not prepare the message: {problem!r}"), [message])
        abandoned = not self._outbox.add(items)
        self._in_hand = 0
        if ops:
            self._average_bytes = 0.9 * self._average_bytes + 0.1 * size / ops
        if abandoned:  # close() gave up meanwhile: these never reached the outbox it emptied
            self._give_up([i for i in items if type(i) is WireOp])
            for item in items:
                if type(item) is Marker:
                    item.done.set()
        return final

    def _spool_add(self, ops: list[WireOp]) -> None:
        assert self.spool is not None
        try:
            failed = self.spool.add(ops)
        except Exception:
            logger.exception("analytics_cio: could not write to the spool; these are delivered from memory")
            return
        for op in failed:
            logger.warning("analytics_cio: an operation could not be written to the spool (%r); it is delivered "
                           "from memory, so it would not survive the process being killed", op)

    def _load_backlog(self) -> None:
        self._backlog_loaded = True
        if self.spool is None and self._open_spool is not None:
            try:
                self.spool = self._open_spool()
            except Exception as exc:
                logger.warning("analytics_cio: the spool cannot be used (%s: %s); delivering from memory, so queued "
                               "messages will not survive the process being killed", type(exc).__name__, exc)
                return
        if self.spool is None:
            return
        try:
            backlog = self.spool.backlog()
        except Exception:
            logger.exception("analytics_cio: could not read the spool; delivering from memory only")
            return
        if not backlog:
            return
        logger.info("analytics_cio: delivering %d operations left in the spool", len(backlog))
        self._outbox.add(backlog, front=True)

    # -- the sender ----------------------------------------------------------------------------------------

    def _run_sender(self) -> None:
        while not self._stop.is_set():
            try:
                if self._send_one(block=True) is None:
                    return
            except Exception:  # the thread outlives any bug
                logger.exception("analytics_cio: unexpected error in the sender; it keeps running")
                time.sleep(0.05)

    def _send_one(self, block: bool) -> bool | None:
        """Take the next batch or marker and settle it. None after the final marker; False if nothing was ready."""
        item = self._outbox.take(block)
        if item is None:
            return None if self._stop.is_set() else False
        if type(item) is Marker:
            item.done.set()
            return None if item.final else True
        assert isinstance(item, list)
        self._flushes_seen = self._flushes
        delivered = self._send(item)
        self._outbox.landed()
        if self._set_aside and delivered:  # Customer.io answers again: what outlived its deadline goes now
            self._retry_set_aside()
        return True

    def _send(self, batch: list[WireOp]) -> int:
        """Deliver ``batch`` (retrying) and settle every op; returns how many were delivered."""
        reported: set[int] = set()

        def report(error: DeliveryError, ops: Sequence[WireOp]) -> None:
            reported.update(map(id, ops))
            self._settle(ops, error)

        try:
            # What v1's lanes deliver is settled at once: they may keep taking ops (more()) for a long while.
            settled = deliver(self.transport, self.policy, batch, report, self._wait_between, self._stop,
                              self._outbox.more, lambda ops: self._settle(ops, None))
        except Exception as exc:
            logger.exception("analytics_cio: unexpected error while delivering")
            self._settle(batch, DeliveryError(f"not delivered: unexpected error {exc!r}"))
            return 0
        delivered = [op for op in settled if id(op) not in reported]
        self._settle(delivered, None)
        return len(delivered)

    def _settle(self, ops: Sequence[WireOp], error: DeliveryError | None) -> None:
        """Claim ``ops`` (those no one settled yet), then remove them from the spool and report the error."""
        mine = self._outbox.claim(ops)
        if not mine:
            return
        keep: list[WireOp] = []
        if error is not None and self.spool is not None and isinstance(error, RetriesExhaustedError):
            keep = [op for op in mine if op.spool_id is not None]  # kept in the spool, tried again later
            if keep:
                self._set_aside.extend(op.spool_id for op in keep if op.spool_id is not None)
                logger.warning("analytics_cio: %d operations outlived the retry deadline (%s); kept in the spool "
                               "and tried again once Customer.io accepts a request", len(keep), error)
                mine = [op for op in mine if op.spool_id is None]
        if self.spool is not None and mine:
            try:
                self.spool.remove(mine)
            except Exception:
                logger.exception("analytics_cio: could not update the spool")
        if error is not None and mine:
            self._report_ops(error, mine)

    def _retry_set_aside(self) -> None:
        """After a delivered batch, the spooled ops whose retries ran out during the outage go again."""
        assert self.spool is not None
        ids, self._set_aside = self._set_aside[: self.upload_size], self._set_aside[self.upload_size:]
        try:
            ops = self.spool.load(ids)
        except Exception:
            logger.exception("analytics_cio: could not read set-aside operations back from the spool")
            return
        if ops:
            self._outbox.send_again(ops)
            self._send(ops)
            self._outbox.landed()

    def _wait_between(self, seconds: float) -> bool:
        """Sleep between retries; False when close() gives up. A flush cuts one wait short (a server's
        Retry-After still holds: the rate limiter keeps every request back until then)."""
        deadline = time.monotonic() + seconds
        while True:
            if self._flushes != self._flushes_seen:
                self._flushes_seen = self._flushes
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._stop.wait(min(remaining, 0.05)):
                return False

    # -- giving up -----------------------------------------------------------------------------------------

    def _abandon(self) -> None:
        """close() ran out of time: take every op that is not settled, in flight included, and report it."""
        self._stop.set()
        self._wake.set()
        ops, markers = self._outbox.abandon()
        messages, more_markers = self._empty_inbox()
        markers += more_markers
        self._give_up(ops)
        if messages:
            self._report_messages(ShutdownError("the client shut down before these could be sent"), messages)
        for marker in markers:
            marker.done.set()

    def _give_up(self, ops: Sequence[WireOp]) -> None:
        kept = [op for op in ops if op.spool_id is not None] if self.spool is not None else []
        if kept:
            logger.warning("analytics_cio: %d operations kept in the spool for the next start", len(kept))
        lost = [op for op in ops if op.spool_id is None] if kept else list(ops)
        if lost:
            self._report_ops(ShutdownError("the client shut down before these could be delivered"), lost)

    def _report_ops(self, error: DeliveryError, ops: Sequence[WireOp]) -> None:
        self._report_messages(error, [op.message for op in ops])

    def _report_messages(self, error: DeliveryError, messages: Sequence[Message]) -> None:
        try:
            self.report(error, messages)
        except BaseException:  # nothing a callback does may stop the worker
            logger.exception("analytics_cio: reporting undelivered messages failed")


def _waitable(seconds: float | None) -> float | None:
    """A timeout threading can wait for: it refuses one past ``TIMEOUT_MAX`` (``math.inf``), which means none."""
    return None if seconds is None or seconds > threading.TIMEOUT_MAX else seconds


_local = threading.local()


def _on_worker_thread() -> bool:
    """Whether the calling thread is one of any client's worker threads (on_error runs there)."""
    return getattr(_local, "worker", False)


def _as_worker(run: Callable[[], None]) -> Callable[[], None]:
    def target() -> None:
        _local.worker = True
        run()

    return target
