"""Turning caller values into what Customer.io can store, without losing data.

Customer.io takes JSON. Python callers pass datetimes, Decimals, UUIDs, Enums, sets, bytes and dataclasses;
each becomes the JSON value that carries the same information. Timestamps become Unix seconds when
``convert_timestamps`` is on, because Customer.io's segment builder compares dates as Unix seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import math
import numbers
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

logger = logging.getLogger("analytics_cio")

UTC: Final = dt.timezone.utc
# Deeper than this, a value is dropped (with a warning) by clean(). Above the deepest argument a call accepts
# (_message.SNAPSHOT_MAX_DEPTH, 200) plus an operation's own levels, so the careful path sends what the fast
# encoders send; those refuse more than 255 levels.
MAX_DEPTH: Final = 250
# A larger "Unix seconds" value (past the year 2286) is milliseconds: Customer.io rejects it as seconds.
LATEST_UNIX_SECONDS: Final = 9_999_999_999
ISO_DATE_RE: Final = re.compile(r"\d{4}-\d\d-\d\d")
# Integers from this size on have no JSON text here: Python (3.11+) refuses to write more than 4300 digits, and
# no Customer.io value holds them. They are dropped (with a warning) on every Python version alike.
INT_DIGITS_LIMIT: Final = 4300
_INT_LIMIT: Final = 10**INT_DIGITS_LIMIT

# Strict ISO-8601 date *and* time, extended form; 'T' or a space between them. Date-only strings, digit-only
# strings, phone numbers and ids never match.
ISO_DATETIME_RE: Final = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?(?:Z|[+-]\d\d(?::?\d\d)?)?",
)


class Verbatim(str):
    """Text that goes out exactly as it is: identifiers, names, ids, tokens and device attributes.

    ``convert_timestamps`` turns ISO-8601 strings in traits and properties into Unix seconds; a person whose id
    happens to look like a date, or a device attribute (always a string), must never be converted.
    """

    __slots__ = ()


def verbatim(value: Any) -> Verbatim:
    """``value`` as text (a number as ``str()`` gives it), marked to go out exactly as it is."""
    if type(value) is Verbatim:
        return value
    return Verbatim(str.__str__(value) if isinstance(value, str) else str(value))


class _Drop:
    """Marks a value that cannot be represented; its key is dropped (with a warning)."""


DROP: Final = _Drop()


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_NAIVE_EPOCH: Final = dt.datetime(1970, 1, 1)
_SECOND: Final = dt.timedelta(seconds=1)


def to_unix(value: dt.datetime | dt.date) -> int:
    """Unix seconds. Aware datetimes are converted in their own zone, naive ones are taken as UTC."""
    if isinstance(value, dt.datetime):
        # Exact integer arithmetic (no float timestamp to floor), and twice as fast.
        if value.tzinfo is None or value.utcoffset() is None:
            return (value.replace(tzinfo=None) - _NAIVE_EPOCH) // _SECOND
        return (value - _EPOCH) // _SECOND
    return (dt.datetime(value.year, value.month, value.day) - _NAIVE_EPOCH) // _SECOND


def parse_iso_datetime(text: str) -> dt.datetime | None:
    """The datetime a strict ISO-8601 date-time string holds, or None for any other string."""
    if len(text) < 16 or ISO_DATETIME_RE.fullmatch(text) is None:
        return None
    text = text.replace(",", ".")
    try:  # the C parser first; dateutil for what older Pythons' fromisoformat does not read ("Z", "+0200")
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    # Imported here: most processes never need it (on Python 3.11+ fromisoformat reads nearly every strict
    # ISO-8601 string), and importing dateutil costs about 1 MB of memory.
    from dateutil.parser import isoparse

    try:
        return isoparse(text)
    except (ValueError, OverflowError):
        return None


def timestamp_value(value: Any) -> Any:
    """``created_at``-style values as Unix seconds: datetimes, dates, ISO date-times and dates, numeric strings,
    and numbers (milliseconds, recognisable as values past the year 2286, become seconds). Anything else is
    returned as it is, for Customer.io to judge."""
    if isinstance(value, (dt.datetime, dt.date)):
        return to_unix(value)
    if isinstance(value, str):
        parsed = parse_iso_datetime(value)
        if parsed is not None:
            return to_unix(parsed)
        if ISO_DATE_RE.fullmatch(value):
            try:
                return to_unix(dt.date.fromisoformat(value))
            except ValueError:
                return value
        if value.isascii() and value.isdigit():
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    seconds = math.floor(value)
    return seconds // 1000 if seconds > LATEST_UNIX_SECONDS else seconds


def scalar(value: Any, convert_timestamps: bool) -> Any:
    """A non-container value that ``json`` cannot encode, as a JSON value; DROP when there is none.

    Also used as the ``default`` hook of the fast JSON encoder, so it must agree with :func:`clean`.
    """
    if isinstance(value, dt.datetime):
        if convert_timestamps:
            return to_unix(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return to_unix(value) if convert_timestamps else value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return decimal_number(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, (set, frozenset)):
        return sorted_if_possible(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return DROP


def decimal_number(value: Decimal) -> Any:
    """A Decimal as a JSON number: an int when it is whole, else a float; None for NaN and ±inf; DROP for one
    too large for either. The exponent is looked at first: ``int(Decimal("1e400000"))`` alone takes seconds."""
    if not value.is_finite():
        return None
    if value.adjusted() < INT_DIGITS_LIMIT - 1 and value == value.to_integral_value():
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else DROP


def representable_int(value: int) -> bool:
    return -_INT_LIMIT < value < _INT_LIMIT


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (from a bad decode upstream): it has no UTF-8 form."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages; never fails (a huge int has no repr)."""
    if isinstance(value, int) and not representable_int(value):
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    try:
        text = repr(value)
    except Exception:  # a caller's object whose __repr__ fails
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sorted_if_possible(values: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return list(values)


def json_key(key: Any) -> str | None:
    """A dict key as JSON has it (the same spelling ``json.dumps`` gives), or None if it has none."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, enum.Enum):
        return json_key(key.value)
    if isinstance(key, int) and not representable_int(key):
        return None
    if isinstance(key, (int, float, uuid.UUID, Decimal)):
        return str(key)
    if isinstance(key, (dt.date, dt.time)):
        return key.isoformat()
    return None


def clean(value: Any, convert_timestamps: bool, path: str = "", depth: int = 0) -> Any:
    """A JSON-ready copy of ``value``; never mutates it. Unrepresentable entries are dropped with a warning."""
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is Verbatim:
        return value
    if kind is str:
        if has_surrogates(value):
            logger.warning("analytics_cio: dropped %r: the text holds a lone surrogate, which has no UTF-8 form",
                           path or "value")
            return DROP
        if convert_timestamps and len(value) >= 16:
            parsed = parse_iso_datetime(value)
            if parsed is not None:
                return to_unix(parsed)
        return value
    if kind is int:
        if representable_int(value):
            return value
        logger.warning("analytics_cio: dropped %r: an integer of more than %d digits", path or "value",
                       INT_DIGITS_LIMIT)
        return DROP
    if kind is float:
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        logger.warning("analytics_cio: dropped %r: nested deeper than %d levels", path or "value", MAX_DEPTH)
        return DROP
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = json_key(key)
            where = f"{path}.{name}" if path else str(name)
            if name is None or has_surrogates(name):
                logger.warning("analytics_cio: dropped key %s under %r: not a JSON key", short_repr(key), path or "top")
                continue
            if name in out:  # 1 and "1", None and "null": one JSON key, and a reader keeps only one of them
                logger.warning("analytics_cio: dropped key %s under %r: an earlier key is also %r in JSON",
                               short_repr(key), path or "top", name)
                continue
            cleaned = clean(item, convert_timestamps, where, depth + 1)
            if cleaned is not DROP:
                out[name] = cleaned
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for index, item in enumerate(value):
            cleaned = clean(item, convert_timestamps, f"{path}[{index}]", depth + 1)
            if cleaned is not DROP:
                items.append(cleaned)
        return items
    if isinstance(value, str):  # str subclasses, str-valued Enums included, keep their text
        return clean(str.__str__(value), convert_timestamps, path, depth)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return clean(int(value), convert_timestamps, path, depth)
    if isinstance(value, float) and not isinstance(value, enum.Enum):
        return clean(float(value), convert_timestamps, path, depth)
    converted = scalar(value, convert_timestamps)
    if converted is DROP:
        why = "a number too large for JSON" if isinstance(value, Decimal) else f"a value of type {type(value).__name__}"
        logger.warning("analytics_cio: dropped %r: %s has no JSON form", path or "value", why)
        return DROP
    if convert_timestamps and isinstance(converted, str):  # an Enum or bytes holding an ISO string stays text
        return converted
    return clean(converted, convert_timestamps, path, depth + 1)


def stringify(value: Any, convert_timestamps: bool = False, path: str = "") -> Verbatim | None:
    """A device attribute value: Customer.io stores device attributes as strings. Strings are kept as given,
    ``True`` is ``"true"``, datetimes follow ``convert_timestamps`` (Unix seconds as text, else ISO-8601),
    containers become JSON text. None when there is nothing to store (None, NaN, no JSON form)."""
    if isinstance(value, str):
        return verbatim(value)
    if value is True or value is False:
        return Verbatim("true" if value else "false")
    cleaned = clean(value, convert_timestamps, path)
    if cleaned is None or cleaned is DROP:
        return None
    if isinstance(cleaned, str):
        return verbatim(cleaned)
    return Verbatim(json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False))

