"""Building Segment-spec messages on the caller's thread: validate the arguments, snapshot the data.

This is the only per-call work the caller pays for (mapping and JSON encoding happen on the worker), so it is
kept to what must happen at the call: argument errors are raised here, and the caller's dicts are copied so that
later changes to them cannot change what is sent.
"""

from __future__ import annotations

import datetime as dt
import functools
import numbers
import time
from collections.abc import Mapping
from typing import Any, Callable, Final, TypeVar

from ._errors import ArgumentError, ArgumentTypeError, ArgumentValueError
from ._ulid import new_ulid
from ._values import has_surrogates, scalar, short_repr
from ._version import __version__

Message = dict[str, Any]
LIBRARY: Final = {"name": "analytics-cio", "version": __version__}
_UTC: Final = dt.timezone.utc
_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None), dt.datetime, dt.date})
# Deeper than this, a structure is refused at the call (it is most likely one that contains itself): copying it
# would exhaust the interpreter's recursion limit. What passes is encoded whole (_values.MAX_DEPTH is deeper).
SNAPSHOT_MAX_DEPTH: Final = 200
_T = TypeVar("_T")


class _TooDeep(Exception):
    pass


def snapshot(value: Any, depth: int = 0) -> Any:
    """A copy of the containers in ``value``, deep enough that the caller's later changes cannot reach it.

    Immutable scalars are shared, not copied. Mutable non-JSON containers (sets, dataclasses, mappings of other
    kinds, bytearrays) are converted to their JSON-shaped equivalent here, while they still hold what was passed.
    Raises ``_TooDeep`` past :data:`SNAPSHOT_MAX_DEPTH` levels (a structure that contains itself has no end).
    """
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if depth >= SNAPSHOT_MAX_DEPTH:
        raise _TooDeep
    if kind is dict:
        return {k: v if type(v) in _IMMUTABLE else snapshot(v, depth + 1) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _IMMUTABLE else snapshot(v, depth + 1) for v in value]
    if isinstance(value, (Mapping, list, tuple, set, frozenset, bytearray, memoryview)) or hasattr(
        value, "__dataclass_fields__"
    ):
        converted = scalar(value, False) if not isinstance(value, (list, tuple)) else list(value)
        return snapshot(converted, depth + 1) if type(converted) in (dict, list) else converted
    return value


def _contains_itself(value: Any) -> bool:
    """Whether a dict or list inside ``value`` holds one of the containers it is inside of."""
    inside: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, leaving = stack.pop()
        if leaving:
            inside.discard(id(item))
            continue
        if not isinstance(item, (Mapping, list, tuple)):
            continue
        if id(item) in inside:
            return True
        inside.add(id(item))
        stack.append((item, True))
        stack.extend((child, False) for child in (item.values() if isinstance(item, Mapping) else item))
    return False


def optional_dict(name: str, value: Any) -> dict[str, Any] | None:
    """A snapshot of the dict argument ``name``, or None when it was not given."""
    if value is None:
        return None
    if type(value) is not dict:
        if not isinstance(value, Mapping):
            raise ArgumentTypeError(name, f"must be a dict, not {type(value).__name__}")
        value = dict(value)
    try:
        copied: dict[str, Any] = snapshot(value)
    except (_TooDeep, RecursionError):
        if _contains_itself(value):
            raise ArgumentValueError(name, "contains itself (a cycle): it has no JSON form") from None
        raise ArgumentValueError(name, f"is nested deeper than {SNAPSHOT_MAX_DEPTH} levels") from None
    return copied


def identity(name: str, value: Any) -> str | None:
    """A user, anonymous or group id argument as a string (numbers are accepted, as analytics-python does)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _utf8_text(name, value)
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # an integer of more than 4,300 digits has no text (Python 3.11+)
            raise ArgumentValueError(name, "is a number too large to write as text") from None
    raise ArgumentTypeError(name, f"must be a string or a number, not {type(value).__name__}")


def text(name: str, value: Any, required: bool) -> str | None:
    """A string argument (an event or page name)."""
    if value is None:
        if required:
            raise ArgumentValueError(name, "is required")
        return None
    if not isinstance(value, str):
        raise ArgumentTypeError(name, f"must be a string, not {type(value).__name__}")
    if required and not value:
        raise ArgumentValueError(name, "must not be empty")
    return _utf8_text(name, value)


def _utf8_text(name: str, value: str) -> str:
    """``value``, unless it holds a lone surrogate (a bad decode upstream): no UTF-8 form, no URL, no limit check."""
    if has_surrogates(value):
        raise ArgumentValueError(name, f"holds a lone surrogate, which has no UTF-8 form: {short_repr(value)}")
    return value


def _guess_timezone(value: dt.datetime) -> dt.datetime:
    """Segment's rule for naive datetimes: one within 5 s of local now is local time, any other is UTC."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value
    if abs((dt.datetime.now() - value).total_seconds()) < 5:
        return value.astimezone()
    return value.replace(tzinfo=_UTC)


_last_second: tuple[int, str] = (-1, "")


def format_timestamp(value: Any) -> str:
    """A call's timestamp as every message carries it: UTC, milliseconds, a "Z"; now when it is None."""
    global _last_second
    if value is None:
        millis = time.time_ns() // 1_000_000
        second = millis // 1000
        last = _last_second
        if last[0] != second:  # formatted once a second, not once a call
            last = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
        return f"{last[1]}{millis % 1000:03d}Z"
    if not isinstance(value, dt.datetime):
        if isinstance(value, dt.date):
            value = dt.datetime(value.year, value.month, value.day)
        else:
            raise ArgumentTypeError("timestamp", f"must be a datetime, not {type(value).__name__}")
    try:
        utc = _guess_timezone(value).astimezone(_UTC)
    except (OverflowError, ValueError):  # datetime.min at +05:00 is before the year 1 in UTC
        raise ArgumentValueError("timestamp", f"{value.isoformat()} is out of the range of dates in UTC") from None
    # isoformat, not strftime: "%Y" writes the year 999 as "999", which no ISO-8601 reader (the mapping's) takes.
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def build(
    kind: str,
    *,
    user_id: Any,
    anonymous_id: Any,
    context: Any,
    timestamp: Any,
    integrations: Any,
    message_id: Any,
    require_identity: bool = True,
) -> Message:
    """The common part of every message; the caller adds the call's own fields."""
    user = identity("user_id", user_id)
    anonymous = identity("anonymous_id", anonymous_id)
    if require_identity and not user and not anonymous:
        raise ArgumentValueError("user_id", "either user_id or anonymous_id is required")
    if message_id is not None and not isinstance(message_id, str):
        if isinstance(message_id, numbers.Number):
            message_id = str(message_id)
        else:
            raise ArgumentTypeError("message_id", f"must be a string, not {type(message_id).__name__}")
    copied_context = optional_dict("context", context) or {}
    copied_context["library"] = dict(LIBRARY)
    message: Message = {
        "type": kind,
        "userId": user,
        "anonymousId": anonymous,
        "messageId": message_id or new_ulid(),
        "timestamp": format_timestamp(timestamp),
        "context": copied_context,
        "integrations": optional_dict("integrations", integrations) or {},
    }
    return message


# The integrations keys Segment users have for Customer.io: the classic destination's, then the Actions one's.
DESTINATION_NAMES: Final = ("Customer.io", "Customer.io (Actions)")


def is_disabled(integrations: Mapping[str, Any] | None) -> bool:
    """Whether ``integrations`` turns Customer.io off for this message, as Segment reads it."""
    if not integrations:
        return False
    for name in DESTINATION_NAMES:
        own = integrations.get(name)
        if own is not None:
            return own is False
    return integrations.get("All") is False


def properties(name: str, value: Any) -> dict[str, Any]:
    """A snapshot of a traits or properties argument; ``{}`` when it was not given."""
    return optional_dict(name, value) or {}


_DICT_FIELDS: Final = ("context", "integrations", "properties", "traits")
_ID_FIELDS: Final = ("userId", "anonymousId", "groupId", "previousId")
_TEXT_FIELDS: Final = ("event", "name", "category")


def checked(returned: Any, original: Message) -> Message:
    """What a ``before_send`` hook returned, checked as the builder checks arguments, and snapshotted.

    The hook may scrub, add or change fields, but the result must still be a message of the original's type:
    a dict, ``type`` unchanged, a non-empty string ``messageId``, ``timestamp`` a string or a datetime, ids
    strings or numbers, ``context``/``integrations``/``properties``/``traits`` dicts (None or missing: ``{}``),
    a track's ``event`` a non-empty string. Raises ``ArgumentError`` naming ``before_send`` and the field.
    """
    if not isinstance(returned, Mapping):
        raise ArgumentTypeError("before_send", f"must return a message dict or None, not {type(returned).__name__}")
    try:
        message: Message = snapshot(dict(returned))
    except (_TooDeep, RecursionError):
        raise ArgumentValueError("before_send", "returned a message that contains itself or is nested too deep") \
            from None
    kind = original["type"]
    if message.get("type") != kind:
        raise ArgumentValueError("before_send", f"returned a message whose 'type' is not {kind!r}: a hook cannot "
                                                "change what a message is")
    message_id = message.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise ArgumentValueError("before_send", "returned a message whose 'messageId' is not a non-empty string")
    stamp = message.get("timestamp")
    if stamp is None:
        raise ArgumentValueError("before_send", "returned a message without a 'timestamp'")
    if not isinstance(stamp, str):
        message["timestamp"] = _restated(functools.partial(format_timestamp, stamp))
    for key in _ID_FIELDS:
        if key in message:
            message[key] = _restated(functools.partial(identity, key, message[key]))
    for key in _DICT_FIELDS:
        if key in original or key in message:
            message[key] = _restated(functools.partial(optional_dict, key, message.get(key))) or {}
    for key in _TEXT_FIELDS:
        if key in original or key in message:
            required = kind == "track" and key == "event"
            message[key] = _restated(functools.partial(text, key, message.get(key), required))
    return message


def _restated(check: Callable[[], _T]) -> _T:
    """``check()``, with its ArgumentError restated as the hook's: the hook, not the caller, set the field."""
    try:
        return check()
    except ArgumentError as exc:
        problem = str(exc)[len(exc.argument) + 2:]
        kind = ArgumentTypeError if isinstance(exc, TypeError) else ArgumentValueError
        raise kind("before_send", f"returned a message whose {exc.argument!r} {problem}") from None
