"""JSON encoding of operations: once per operation, to compact UTF-8 bytes.

The fast path hands the operation straight to the C encoder, with :func:`_values.scalar` as its ``default``
hook for datetimes, Decimals and the like. It falls back to the full :func:`_values.clean` walk only when the
C encoder cannot be trusted with the data: a NaN or infinity (JSON has none), or a key or value with no JSON
form. When timestamps are converted and the text holds a string that looks like an ISO-8601 date-time (every
line of a Segment export does), a light walk converts those strings alone and the C encoder runs again; data
of any other kind than JSON's own (and datetimes) takes the full walk. All paths give the same JSON for the
same data.

With the ``orjson`` extra installed the fast path uses it instead of the standard
library's encoder (about five times faster on a typical event; benchmarks/README.md), unless it is one of the
versions that corrupt memory (see ``orjson_is_safe``). ``ANALYTICS_CIO_JSON=stdlib`` in the environment keeps
the standard library's, to compare the two.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from typing import Any, Callable, Final

from . import _values

# The opening of a JSON string holding a date and a time: only then can a string need converting.
_ISO_HINT: Final = re.compile(r'"\d{4}-\d\d-\d\d[T ]\d\d:\d\d')


def _encoder(convert_timestamps: bool) -> Callable[[Any], str]:
    return json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":"),
        default=_default(convert_timestamps),
    ).encode


class _Unsure(Exception):
    """A value the light walk leaves to :func:`_values.clean`."""


_KEPT: Final = frozenset({int, float, bool, type(None), _values.Verbatim})


def _dates_converted(value: Any, depth: int = 0) -> Any:
    """``value`` with its ISO-8601 date-time strings as Unix seconds, as :func:`_values.clean` converts them;
    containers without one are shared, not copied. Raises :class:`_Unsure` for anything but JSON's own types,
    datetimes and dates, or past clean's depth: only clean knows what becomes of those."""
    if depth >= _values.MAX_DEPTH:
        raise _Unsure
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        is_dict = kind is dict
        copied: Any = list(value) if kind is tuple else None  # a tuple always becomes a list, as JSON has it
        for key, item in value.items() if is_dict else enumerate(value):
            if is_dict and type(key) is not str:
                raise _Unsure
            item_kind = type(item)
            if item_kind is str:  # the common leaf, without a call
                if len(item) < 16 or item[4] != "-":
                    continue
                parsed = _values.parse_iso_datetime(item)
                if parsed is None:
                    continue
                new: Any = _values.to_unix(parsed)
            elif item_kind in _KEPT:
                continue
            else:
                new = _dates_converted(item, depth + 1)
            if new is not item:
                if copied is None:
                    copied = dict(value) if is_dict else list(value)
                copied[key] = new
        return value if copied is None else copied
    if kind is str:
        if len(value) >= 16:
            parsed = _values.parse_iso_datetime(value)
            if parsed is not None:
                return _values.to_unix(parsed)
        return value
    if kind is dt.datetime or kind is dt.date:
        return _values.to_unix(value)  # as the default hook would have made it
    raise _Unsure


def _convert_dates_then(encode_fast: Callable[[Any, bool], bytes], value: Any) -> bytes:
    try:
        converted = _dates_converted(value)
    except (_Unsure, RecursionError):
        return encode_clean(value, True)
    return encode_fast(converted, False)


def _stdlib_fast(value: Any, convert_timestamps: bool) -> bytes:
    try:
        text = _ENCODERS[convert_timestamps](value)
    except (ValueError, TypeError, RecursionError):
        return encode_clean(value, convert_timestamps)
    if convert_timestamps and _ISO_HINT.search(text) is not None:
        return _convert_dates_then(_stdlib_fast, value)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: clean() drops the value holding it
        return encode_clean(value, convert_timestamps)


def _orjson_fast(value: Any, convert_timestamps: bool) -> bytes:
    try:
        data: bytes = _orjson.dumps(value, default=_DEFAULTS[convert_timestamps], option=_ORJSON_OPTIONS)
    except (TypeError, ValueError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return encode_clean(value, convert_timestamps)
    if convert_timestamps and _ISO_HINT_BYTES.search(data) is not None:
        return _convert_dates_then(_orjson_fast, value)
    # orjson's bytes keep the buffer it wrote into (1 KB at least): an exact copy keeps a queued op small.
    return memoryview(data).tobytes()


def _default(convert_timestamps: bool) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        converted = _values.scalar(value, convert_timestamps)
        if converted is _values.DROP:
            raise TypeError("no JSON form")
        return converted

    return default


_DEFAULTS: Final = {True: _default(True), False: _default(False)}
_ENCODERS: Final = {True: _encoder(True), False: _encoder(False)}
_ISO_HINT_BYTES: Final = re.compile(_ISO_HINT.pattern.encode())
# orjson 3.10.6 to 3.11.5 write past their output buffer while closing a deeply nested value (a value 150 levels
# deep in an operation of about 1 KB corrupts the heap and aborts the process; measured on Python 3.9 and 3.12).
# Those versions are left unused on any Python: the standard library's encoder is used instead.
_ORJSON_BROKEN: Final = ((3, 10, 6), (3, 11, 5))


def orjson_is_safe(version: str) -> bool:
    """False for the orjson versions that corrupt memory on deeply nested values."""
    try:
        number = tuple(int(part) for part in version.split(".")[:3])
    except ValueError:
        return True
    return not _ORJSON_BROKEN[0] <= number <= _ORJSON_BROKEN[1]


try:
    if os.environ.get("ANALYTICS_CIO_JSON", "").lower() == "stdlib":
        raise ImportError("the standard library's encoder was asked for")
    import orjson as _orjson

    if not orjson_is_safe(_orjson.__version__):
        raise ImportError(f"orjson {_orjson.__version__} corrupts memory on deeply nested values")

    # Datetimes go to the default hook (they may become Unix seconds); NaN becomes null, as clean() makes it. A
    # key that is not a string is refused (the careful path takes the dict): 1 and "1" would be one key twice.
    _ORJSON_OPTIONS: Final = _orjson.OPT_PASSTHROUGH_DATETIME
    JSON_LIBRARY = "orjson"
    _fast: Callable[[Any, bool], bytes] = _orjson_fast
except ImportError:
    JSON_LIBRARY = "json"
    _fast = _stdlib_fast


def encode(value: Any, convert_timestamps: bool = True) -> bytes:
    """``value`` as compact JSON bytes, cleaned as :func:`_values.clean` cleans it."""
    return _fast(value, convert_timestamps)


def encode_clean(value: Any, convert_timestamps: bool) -> bytes:
    """The slow path: clean every value, then encode."""
    return _utf8(_ENCODERS[False](_values.clean(value, convert_timestamps)))


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate left in an identifier or a name (clean() drops the values holding one) has no UTF-8
        # form; JSON can still carry it escaped, for Customer.io to judge.
        return json.dumps(json.loads(text), ensure_ascii=True, separators=(",", ":")).encode()
