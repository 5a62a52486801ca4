"""From a decoded line to the client: the Segment message to send, which worker sends it, and which lines each
message came from until Customer.io has answered for them.

:func:`message_for` builds the message the client's own method (``track``, ``identify``, …) would build from
the line's fields, with the same argument checks and errors, without the defensive copy the methods make of
the caller's dicts: a decoded line belongs to the import alone. :class:`Dispatch` hands each message to the
client's queue and, when the client reports a message it could not deliver, finds the lines it came from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Final

from . import _message
from ._client import Client
from ._errors import ArgumentValueError, DeliveryError
from ._import_counts import ImportCounts
from ._import_lines import BadLine
from ._mapping import is_disabled
from ._ulid import derived_ulid

Message = dict[str, Any]
TYPES: Final = frozenset(("identify", "track", "page", "screen", "group", "alias"))
_UTC: Final = dt.timezone.utc
_TIME_KEYS: Final = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
# A line with this many brackets may nest deeper than the client accepts: it takes the client's own checks.
_DEEP_BRACKETS: Final = _message.SNAPSHOT_MAX_DEPTH


def _field(message: Mapping[str, Any], camel: str, snake: str) -> Any:
    return message[camel] if camel in message else message.get(snake)


def _timestamp(message: Mapping[str, Any]) -> tuple[str | None, dt.datetime | None]:
    """The message's time as the message builder writes it, and as a datetime (None when the first is already
    the builder's form: read only if a message id must be derived from it)."""
    # Segment's `timestamp` is the event time corrected for the device's clock; exports always carry it, older
    # ones sometimes only the others.
    for key in _TIME_KEYS:
        value = message.get(key)
        if value is None:
            continue
        if type(value) is not str:
            raise BadLine(f"{key} is not a string", f"got {type(value).__name__}")
        if len(value) == 24 and value[23] == "Z" and value[19] == "." and value[10] == "T":
            # Already the builder's own form (Segment writes it so): checked, not rewritten.
            try:
                dt.datetime.fromisoformat(value[:23])
            except ValueError:
                pass
            else:
                return value, None
        try:
            # The C parser first; Python before 3.11 cannot read a "Z", and dateutil reads what it cannot.
            parsed = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            from dateutil.parser import isoparse  # only for what the C parser cannot read (as _values does)

            try:
                parsed = isoparse(value)
            except (ValueError, OverflowError):
                raise BadLine(f"{key} is not an ISO-8601 date-time", repr(value[:60])) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_UTC)
        return _message.format_timestamp(parsed), parsed
    return None, None


def _milliseconds(timestamp: str | None, parsed: dt.datetime | None) -> int:
    if parsed is None and timestamp is not None:
        parsed = dt.datetime.fromisoformat(timestamp[:23]).replace(tzinfo=_UTC)
    return int(parsed.timestamp() * 1000) if parsed is not None else 0


def _mapping(name: str, value: Any, deep: bool) -> dict[str, Any] | None:
    """A dict field as the client's methods take it: refused when it is not an object, copied only when deep."""
    if value is None or (type(value) is dict and not deep):
        return value
    return _message.optional_dict(name, value)


def _identity(name: str, value: Any) -> str | None:
    return value if type(value) is str else _message.identity(name, value)


def message_for(line: Any, raw: bytes) -> Message:
    """The Segment message the client's method would build from ``line`` (a decoded line; ``raw`` its bytes).

    Raises :class:`BadLine` for what is not a Segment message, and the client's ``ArgumentError`` for a field
    the method would refuse.
    """
    if type(line) is not dict:
        raise BadLine("not a JSON object", f"got {type(line).__name__}")
    kind = line.get("type")
    if kind not in TYPES:
        if type(kind) is not str or kind.lower() not in TYPES:
            raise BadLine("unknown or missing type", repr(kind)[:60])
        kind = kind.lower()
    timestamp, parsed = _timestamp(line)
    message_id = line["messageId"] if "messageId" in line else line.get("message_id")
    if type(message_id) is not str or not message_id:
        if isinstance(message_id, int) and not isinstance(message_id, bool):
            message_id = str(message_id)
        else:
            # No usable id: one derived from the line itself, so that a re-run sends the line under the same id.
            message_id = derived_ulid(_milliseconds(timestamp, parsed), raw.strip())
    deep = len(raw) > _DEEP_BRACKETS and raw.count(b"{") + raw.count(b"[") >= _DEEP_BRACKETS
    user = _identity("user_id", line["userId"] if "userId" in line else line.get("user_id"))
    context = line.get("context")
    if context is not None and (type(context) is not dict or deep):
        context = _message.optional_dict("context", context)
    integrations = line.get("integrations")
    if integrations is not None and (type(integrations) is not dict or deep):
        integrations = _message.optional_dict("integrations", integrations)
    message: Message = {"type": kind, "userId": user, "anonymousId": None, "messageId": message_id,
                        "timestamp": timestamp or _message.format_timestamp(None),
                        "context": {**context, "library": dict(_message.LIBRARY)} if context else
                        {"library": dict(_message.LIBRARY)},
                        "integrations": integrations or {}}
    if kind == "track":
        message["event"] = _message.text("event", line.get("event"), required=True)
        message["properties"] = _mapping("properties", line.get("properties"), deep) or {}
    elif kind == "identify":
        traits = line.get("traits")
        if traits is None and type(context) is dict:
            traits = context.get("traits")  # analytics.js also puts them here
        message["traits"] = _mapping("traits", traits, deep) or {}
    elif kind == "page" or kind == "screen":
        message["name"] = _message.text("name", line.get("name") or None, required=False)
        message["category"] = _message.text("category", line.get("category") or None, required=False)
        message["properties"] = _mapping("properties", line.get("properties"), deep) or {}
    elif kind == "group":
        group = _message.identity("group_id", _field(line, "groupId", "group_id"))
        if not group:
            raise ArgumentValueError("group_id", "is required")
        message["groupId"] = group
        message["traits"] = _mapping("traits", line.get("traits"), deep) or {}
    else:
        previous = _message.identity("previous_id", _field(line, "previousId", "previous_id"))
        if not previous:
            raise ArgumentValueError("previous_id", "is required")
        if not user:
            raise ArgumentValueError("user_id", "is required")
        message["previousId"] = previous
        del message["anonymousId"]
        return message
    anonymous = message["anonymousId"] = _identity("anonymous_id", _field(line, "anonymousId", "anonymous_id"))
    if not user and not anonymous:
        raise ArgumentValueError("user_id", "either user_id or anonymous_id is required")
    return message


def worker_of(line: Any, line_number: int, workers: int) -> int:
    """Which of ``workers`` sends a decoded line: one person's lines (by ``userId``, else ``anonymousId``) all
    go to the same worker; a line naming no one is placed by its line number."""
    if workers == 1:
        return 0
    if type(line) is dict:
        for camel, snake in (("userId", "user_id"), ("anonymousId", "anonymous_id")):
            person = _field(line, camel, snake)
            if person is not None and person != "" and not isinstance(person, (dict, list, bool)):
                return zlib.crc32(str(person).encode("utf-8", "surrogatepass")) % workers
    return line_number % workers


@dataclasses.dataclass
class Chunk:
    """The lines of one file between two checkpoints, until every one of them is delivered or reported."""

    file_index: int = 0
    lines: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # message id -> lines sent with it
    rejected: dict[int, str] = dataclasses.field(default_factory=dict)  # line -> its first reason
    bad: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, kind)
    skipped: int = 0
    next_file: int = 0  # where a resumed import starts once this chunk is settled: file, line, byte offset
    next_line: int = 1
    offset: int = 0
    last: bool = False  # the worker's last chunk


class Dispatch:
    """Owns the client and the chunks of lines it has not answered for yet.

    The reader calls :meth:`send` for each message (recording its line before the client may report it), and
    :meth:`close_chunk` at each checkpoint; the settling side takes closed chunks with :meth:`take` once a
    flush has returned. The client's ``on_error`` (called on its worker thread) marks the lines it reports.
    """

    def __init__(self, make_client: Callable[[Callable[[DeliveryError, Sequence[Any]], None]], Client]) -> None:
        self.lock = threading.Condition()
        self.current = Chunk()
        self.waiting: list[Chunk] = []  # closed, not yet settled
        self.client = make_client(self._on_error)

    def _on_error(self, error: DeliveryError, messages: Sequence[Any]) -> None:
        reason = str(error)
        with self.lock:
            chunks = [*self.waiting, self.current]
            for message in messages:
                message_id = message.get("messageId") if isinstance(message, dict) else None
                for chunk in chunks:
                    lines = chunk.lines.get(message_id)  # type: ignore[arg-type]
                    if lines:
                        for line in lines:
                            chunk.rejected.setdefault(line, reason)
                        break

    def send(self, line: int, message: Message) -> bool:
        """Queue ``message`` from ``line``; False when its ``integrations`` turn Customer.io off (skipped)."""
        integrations = message["integrations"]
        if integrations and is_disabled(integrations):
            self.current.skipped += 1
            return False
        message_id = message["messageId"]
        lines = self.current.lines.get(message_id)
        if lines is None:
            self.current.lines[message_id] = [line]  # before the call: the worker may report it at once
        else:
            lines.append(line)
        self.client._enqueue(message)
        return True

    def bad(self, line: int, kind: str) -> None:
        self.current.bad.append((line, kind))

    def close_chunk(self, next_file: int, next_line: int, offset: int, *, last: bool = False) -> Chunk:
        """Close the current chunk (to be settled once a flush returns) and start the next one."""
        with self.lock:
            chunk = self.current
            chunk.next_file, chunk.next_line, chunk.offset, chunk.last = next_file, next_line, offset, last
            self.waiting.append(chunk)
            self.current = Chunk(next_file)
            self.lock.notify_all()
            return chunk

    def take(self, count: int) -> list[Chunk]:
        """The ``count`` oldest closed chunks, settled: call only after a flush queued behind them returned."""
        with self.lock:
            taken, self.waiting = self.waiting[:count], self.waiting[count:]
            self.lock.notify_all()
            return taken


def count_chunk(chunk: Chunk, counts: ImportCounts, place: Callable[[int], str],
                rejected: Callable[[int, str], None] | None = None) -> None:
    """Add a settled chunk to ``counts``; ``place(line)`` names a line, ``rejected(line, reason)`` hears of
    each line Customer.io refused, in line order."""
    counts.skipped += chunk.skipped
    for line, kind in chunk.bad:
        counts.bad += 1
        counts.note(f"bad line: {kind}", place(line))
    if not chunk.rejected:
        counts.delivered += sum(len(lines) for lines in chunk.lines.values())
        return
    for line in sorted(line for lines in chunk.lines.values() for line in lines):
        reason = chunk.rejected.get(line)
        if reason is None:
            counts.delivered += 1
        else:
            counts.rejected += 1
            counts.note(reason[:200], place(line))
            if rejected is not None:
                rejected(line, reason)
