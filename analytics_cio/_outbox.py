"""The outbox: where the encoder hands encoded operations to the sender, and where each one is settled once.

Everything here is guarded by one Condition, ``ready``; nothing outside this class touches what it guards. The
encoder adds rounds of operations and markers, the sender takes batches (and the markers between them), and
whoever settles an operation claims it first: the sender when Customer.io answers, or an overdue ``close()``
that takes everything not settled, the batch in flight included. An operation is settled exactly once, so a
late answer and a shutdown can never both report it.

``added_*`` and ``settled_*`` only grow; their difference is what is held. Callers read them without the lock
to bound the queue (a racy read of two integers is a bound, not a sum, and never a lost update).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from typing import Union

from ._transport import WireOp


class Marker:
    """A flush in the queue (``final``: the shutdown's), released once everything ahead of it is settled."""

    __slots__ = ("done", "final")

    def __init__(self, final: bool = False) -> None:
        self.done = threading.Event()
        self.final = final


Item = Union[WireOp, Marker]


class Outbox:
    """Encoded operations and markers in order, the batch in flight, and the settled totals."""

    def __init__(self, upload_size: int, upload_interval: float, max_batch_bytes: int) -> None:
        self.upload_size = upload_size
        self.upload_interval = upload_interval
        self.max_batch_bytes = max_batch_bytes
        self.ready = threading.Condition(threading.Lock())
        self._items: collections.deque[Item] = collections.deque()
        self._ops = self._bytes = self._markers = 0  # what _items holds
        self._oldest = 0.0  # when the oldest op in _items arrived (monotonic)
        self._in_flight: list[WireOp] = []
        self._kept_in_flight = upload_size  # its length after the last pruning (or a batch's)
        self._abandoned = False
        self.added_ops = self.added_bytes = 0
        self.settled_ops = self.settled_bytes = 0

    @property
    def waiting(self) -> int:
        """Operations waiting to be taken (a hint for the encoder: read without the lock)."""
        return self._ops

    def add(self, items: Sequence[Item], front: bool = False) -> bool:
        """Queue a round of operations and markers in order (``front``: ahead of everything, as a backlog
        loaded from the spool is). False, and nothing queued, once ``abandon()`` has run."""
        ops = [item for item in items if type(item) is WireOp]
        size = sum(op.size for op in ops)
        with self.ready:
            if self._abandoned:
                return False
            if ops and not self._ops:
                self._oldest = time.monotonic() - (self.upload_interval if front else 0.0)
            if front:
                self._items.extendleft(reversed(items))
            else:
                self._items.extend(items)
            self._ops += len(ops)
            self._bytes += size
            self._markers += len(items) - len(ops)
            self.added_ops += len(ops)
            self.added_bytes += size
            self.ready.notify()
        return True

    def take(self, block: bool) -> list[WireOp] | Marker | None:
        """The next marker, or the next batch once it is full, old enough, or a marker waits behind it.

        With ``block``, waits for one; None once abandoned (or, without ``block``, when nothing is ready).
        """
        with self.ready:
            while not self._abandoned:
                items = self._items
                if items and type(items[0]) is Marker:
                    self._markers -= 1
                    marker = items.popleft()
                    assert isinstance(marker, Marker)
                    return marker
                wait: float | None = None
                if self._ops:
                    wait = self._oldest + self.upload_interval - time.monotonic()
                    if (wait <= 0 or self._markers or self._ops >= self.upload_size
                            or self._bytes >= self.max_batch_bytes):
                        return self._cut()
                if not block:
                    return None
                self.ready.wait(wait)
            return None

    def more(self) -> list[WireOp]:
        """The operations queued right behind the batch in flight (not past a marker), whatever their age."""
        with self.ready:
            if self._abandoned or not self._ops or type(self._items[0]) is Marker:
                return []
            if len(self._in_flight) > 2 * self._kept_in_flight:  # a long delivery (v1's lanes) settles as it goes
                self._in_flight = [op for op in self._in_flight if not op.settled]
                self._kept_in_flight = max(self.upload_size, len(self._in_flight))
            return self._cut()

    def _cut(self) -> list[WireOp]:
        items = self._items
        batch: list[WireOp] = []
        size = wire = 0
        while items and len(batch) < self.upload_size:
            op = items[0]
            if type(op) is not WireOp:
                break
            if batch and wire + len(op.data) + 1 > self.max_batch_bytes:
                break
            items.popleft()
            batch.append(op)
            size += op.size
            wire += len(op.data) + 1
        self._ops -= len(batch)
        self._bytes -= size
        if self._ops:
            self._oldest = time.monotonic()
        self._in_flight.extend(batch)
        return batch

    def send_again(self, ops: Sequence[WireOp]) -> None:
        """Count ``ops`` (read back from the spool) as held and in flight again."""
        with self.ready:
            self.added_ops += len(ops)
            self.added_bytes += sum(op.size for op in ops)
            self._in_flight.extend(ops)

    def landed(self) -> None:
        """The sender settled everything it took: nothing is in flight."""
        with self.ready:
            self._in_flight = []
            self._kept_in_flight = self.upload_size

    def claim(self, ops: Sequence[WireOp]) -> list[WireOp]:
        """Mark ``ops`` settled; returns those that no one had settled yet (the caller now settles those)."""
        with self.ready:
            mine = [op for op in ops if not op.settled]
            for op in mine:
                op.settled = True
            self.settled_ops += len(mine)
            self.settled_bytes += sum(op.size for op in mine)
        return mine

    def abandon(self) -> tuple[list[WireOp], list[Marker]]:
        """Take every operation not settled (in flight included) and every marker; nothing is added after."""
        with self.ready:
            self._abandoned = True
            ops = [op for op in self._in_flight if not op.settled]
            markers: list[Marker] = []
            for item in self._items:
                if isinstance(item, Marker):
                    markers.append(item)
                elif not item.settled:
                    ops.append(item)
            self._items.clear()
            self._ops = self._bytes = self._markers = 0
            for op in ops:
                op.settled = True
            self.settled_ops += len(ops)
            self.settled_bytes += sum(op.size for op in ops)
            self.ready.notify_all()
        return ops, markers
