"""A durable spool: prepared operations in SQLite until Customer.io has accepted them.

Opt-in with ``spool_path=``. The worker writes each operation here as soon as it is prepared, before it is
sent, and deletes it once Customer.io accepted it (or refused it for good, which was reported). A process that
is killed, or an outage longer than the retry deadline, leaves the operations here; the next client opened on
the same path delivers that backlog before anything new. Event ids are ULIDs, so an operation sent twice (sent,
then the process died before the delete) is ignored by Customer.io the second time.

WAL mode with ``synchronous=NORMAL``: a committed write survives the process being killed (it is in the OS's
page cache), not necessarily a power cut. One process at a time should own a spool path.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from ._encoding import encode
from ._transport import WireOp

logger = logging.getLogger("analytics_cio")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    lane TEXT NOT NULL,
    data BLOB NOT NULL,
    message BLOB NOT NULL
)
"""


class SqliteSpool:
    """Operations waiting for delivery, in a SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db = self._open()

    def __repr__(self) -> str:
        return f"SqliteSpool({self.path!r})"

    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        return db

    def add(self, ops: Sequence[WireOp]) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for op in ops:
                    cursor = db.execute(
                        "INSERT INTO ops (method, path, lane, data, message) VALUES (?, ?, ?, ?, ?)",
                        (op.method, op.path, op.lane, op.data, encode(op.message, False)),
                    )
                    op.spool_id = cursor.lastrowid
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def remove(self, ops: Sequence[WireOp]) -> None:
        ids = [(op.spool_id,) for op in ops if op.spool_id is not None]
        if not ids:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany("DELETE FROM ops WHERE id = ?", ids)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        for op in ops:
            op.spool_id = None

    def backlog(self) -> list[WireOp]:
        """Every operation still waiting, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, method, path, lane, data, message FROM ops ORDER BY id").fetchall()
        ops = []
        for row_id, method, path, lane, data, message in rows:
            op = WireOp(bytes(data), _decode(message), method, path, lane)
            op.spool_id = row_id
            ops.append(op)
        return ops

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM ops").fetchone()
        return int(n)

    def reopen(self) -> None:
        """In a forked child: a fresh connection (a SQLite connection must not cross fork)."""
        self._lock = threading.Lock()
        self._db = self._open()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _decode(message: bytes) -> Any:
    try:
        return json.loads(message)
    except ValueError:
        logger.warning("analytics_cio: a spooled message could not be read back")
        return {}
