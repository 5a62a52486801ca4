"""A durable spool: prepared operations in SQLite until Customer.io has accepted them.

Opt-in with ``spool_path=``. The encoder thread writes each operation here as soon as it is prepared, before it
is sent; the sender deletes it once Customer.io accepted it (or refused it for good, which was reported). A
process that is killed, or an outage longer than the retry deadline, leaves the operations here. Event ids are
ULIDs, so an operation sent twice (sent, then the process died before the delete) is ignored by Customer.io.

Ownership: each open spool is an *owner* (a random id) holding an exclusive ``flock`` on its own lock file
beside the database for as long as it lives, and every row names its owner. On open, a spool adopts the rows of
every owner whose lock it can take (that process is gone: killed, or ended without delivering), and only those:
rows of a live process (another worker on the same path, a preload parent) are never sent twice. A forked child
opens as a new owner. Without ``fcntl`` (Windows) there is no lock, and a new spool adopts every row.

Files are created readable by their owner only (0600): they hold personal data. WAL mode with
``synchronous=NORMAL``: a committed write survives the process being killed, not necessarily a power cut.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from ._transport import WireOp

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("analytics_cio")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    lane TEXT NOT NULL,
    data BLOB NOT NULL,
    message BLOB NOT NULL,
    owner TEXT NOT NULL DEFAULT ''
)
"""
_SQLITE_HEADER = b"SQLite format 3\x00"
_inherited: list[sqlite3.Connection] = []  # connections a forked child inherited: never touched again
_INSERT = "INSERT INTO ops (method, path, lane, data, message, owner) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT = "SELECT id, method, path, lane, data, message FROM ops"


class SqliteSpool:
    """Operations waiting for delivery, in a SQLite file. Raises ``sqlite3.Error``/``OSError`` when the file
    cannot be used; the worker then delivers from memory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._lock = threading.Lock()
        self._owner_file: IO[bytes] | None = None
        self._db = self._open()

    def __repr__(self) -> str:
        return f"SqliteSpool({self.path!r})"

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        _create_private(self.path)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(ops)")}
            if "owner" not in columns:  # a spool written by 0.1.0: its rows have no owner, so they are adopted
                db.execute("ALTER TABLE ops ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
        except BaseException:
            db.close()
            raise
        self.owner = secrets.token_hex(8)  # its lock is taken on the first write or backlog read, not to count
        return db

    def _lock_path(self, owner: str) -> str:
        return f"{self.path}-owner-{owner}.lock"

    def _own(self) -> None:
        """Hold this owner's lock from now on (under ``_lock``)."""
        if fcntl is None or self._owner_file is not None:
            return
        path = self._lock_path(self.owner)
        _create_private(path)
        handle = open(path, "rb")  # noqa: SIM115 (held open for the spool's life: that is the lock)
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._owner_file = handle

    def _adopt(self) -> None:
        """Take over the rows of every owner that is gone (its lock is free)."""
        owners = [row[0] for row in self._db.execute("SELECT DISTINCT owner FROM ops WHERE owner != ?",
                                                      (self.owner,))]
        for owner in owners:
            if fcntl is not None and owner:
                path = self._lock_path(owner)
                try:
                    handle = open(path, "rb")  # noqa: SIM115
                except FileNotFoundError:
                    handle = None
                if handle is not None:
                    try:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:  # alive: its rows are its own
                        handle.close()
                        continue
            else:
                handle = None
            self._db.execute("UPDATE ops SET owner = ? WHERE owner = ?", (self.owner, owner))
            if handle is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                handle.close()
        self._remove_stale_lock_files()

    def _remove_stale_lock_files(self) -> None:
        if fcntl is None:
            return
        for path in glob.glob(glob.escape(self.path) + "-owner-*.lock"):
            if path == self._lock_path(self.owner):
                continue
            try:
                if time.time() - os.stat(path).st_mtime < 60:  # it may be a new owner's, not locked yet
                    continue
                with open(path, "rb") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(path)
            except OSError:
                continue

    def add(self, ops: Sequence[WireOp]) -> list[WireOp]:
        """Store ``ops``; returns those that could not be stored (the others are, whatever they hold)."""
        with self._lock:
            self._own()
            try:
                return self._insert(ops, one_by_one=False)
            except sqlite3.Error:
                return self._insert(ops, one_by_one=True)

    def _insert(self, ops: Sequence[WireOp], one_by_one: bool) -> list[WireOp]:
        db = self._db
        failed: list[WireOp] = []
        db.execute("BEGIN")
        try:
            for op in ops:
                row = (op.method, op.path, op.lane, op.data, _held(op), self.owner)
                if not one_by_one:
                    op.spool_id = db.execute(_INSERT, row).lastrowid
                    continue
                try:
                    op.spool_id = db.execute(_INSERT, row).lastrowid
                except sqlite3.Error:
                    op.spool_id = None
                    failed.append(op)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            for op in ops:
                op.spool_id = None
            raise
        return failed

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
        """Every operation this spool owns once it has adopted those of owners that are gone, oldest first."""
        with self._lock:
            self._own()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._adopt()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            rows = self._db.execute(_SELECT + " WHERE owner = ? ORDER BY id", (self.owner,)).fetchall()
        return [_op(row) for row in rows]

    def load(self, ids: Sequence[int]) -> list[WireOp]:
        """The operations with these ids that are still stored, oldest first."""
        with self._lock:
            rows = [self._db.execute(_SELECT + " WHERE id = ?", (i,)).fetchone() for i in ids]
        return sorted((_op(row) for row in rows if row is not None), key=lambda op: op.spool_id or 0)

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM ops").fetchone()
        return int(n)

    def reopen(self) -> None:
        """In a forked child: a fresh connection and a new owner (neither a connection nor a lock crosses fork).

        The inherited connection is neither used nor closed (closing it in the child could checkpoint or
        release what the parent holds); it is kept referenced, so no ResourceWarning fires when it is collected.
        """
        _inherited.append(self._db)
        inherited = self._owner_file
        self._lock = threading.Lock()
        self._owner_file = None
        if inherited is not None:
            inherited.close()  # the parent's lock stays held: the parent still has its own descriptor
        self._db = self._open()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._owner_file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._lock_path(self.owner))
                self._owner_file.close()
                self._owner_file = None


def _create_private(path: str) -> None:
    """Create ``path`` if missing, readable and writable by its owner only. A file that was there already is made
    so too: SQLite gives the WAL and shared-memory files it creates the database's own mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Only an empty file or a SQLite database: a spool_path pointing at some other file is refused by SQLite
        # next, and that file's mode is not ours to change.
        if os.fstat(fd).st_mode & 0o077 and hasattr(os, "fchmod") and hasattr(os, "pread") and os.pread(
                fd, 16, 0) in (b"", _SQLITE_HEADER):
            with contextlib.suppress(OSError):  # another user's file: used as it is
                os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _held(op: WireOp) -> bytes:
    held: Any = op._message
    if isinstance(held, bytes):
        return held
    from ._encoding import encode

    return encode(held, False)


def _op(row: tuple[Any, ...]) -> WireOp:
    row_id, method, path, lane, data, message = row
    op = WireOp(bytes(data), bytes(message), method, path, lane)
    op.spool_id = row_id
    return op
