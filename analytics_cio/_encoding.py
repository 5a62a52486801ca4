"""JSON encoding of operations: once per operation, to compact UTF-8 bytes.

The fast path hands the operation straight to the C encoder, with :func:`_values.scalar` as its ``default``
hook for datetimes, Decimals and the like. It falls back to the full :func:`_values.clean` walk only when the
C encoder cannot be trusted with the data: a NaN or infinity (JSON has none), a key or value with no JSON form,
or (when timestamps are converted) a string that looks like an ISO-8601 date-time. Both paths give the same
JSON for the same data.

With the ``orjson`` extra installed the fast path uses it instead of the standard library's encoder (about five
times faster on a typical event; benchmarks/README.md). ``ANALYTICS_CIO_JSON=stdlib`` in the environment keeps
the standard library's, to compare the two.
"""

from __future__ import annotations

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


def _stdlib_fast(value: Any, convert_timestamps: bool) -> bytes:
    try:
        text = _ENCODERS[convert_timestamps](value)
    except (ValueError, TypeError, RecursionError):
        return encode_clean(value, convert_timestamps)
    if convert_timestamps and _ISO_HINT.search(text) is not None:
        return encode_clean(value, convert_timestamps)
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
        return encode_clean(value, convert_timestamps)
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
try:
    if os.environ.get("ANALYTICS_CIO_JSON", "").lower() == "stdlib":
        raise ImportError("the standard library's encoder was asked for")
    import orjson as _orjson

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
