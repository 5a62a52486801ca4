"""Request bodies: undoing ``Content-Encoding`` and parsing strict JSON.

A body is gunzipped when its ``Content-Encoding`` is ``gzip`` (other codings are 415; more than
:data:`~analytics_cio.testing._httpd.MAX_BODY` bytes once decompressed is 413). JSON with NaN or Infinity is
invalid, and so is JSON nested too deeply to parse.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from ._answers import error
from ._httpd import MAX_BODY, Answer


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN/Infinity); ValueError for anything else, including nesting too deep to parse."""
    if not body.strip():
        raise ValueError("the body is empty")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("the body is nested too deeply") from None


class Body:
    """A request body that is known to be readable, with its JSON parsed on demand."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @property
    def empty(self) -> bool:
        return not self.raw.strip()

    def json(self) -> Any:
        return parse_json(self.raw)


def _gunzip(data: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=31)
    out = decompressor.decompress(data, limit + 1)
    if len(out) > limit:
        raise OverflowError
    if not decompressor.eof:
        raise zlib.error("truncated gzip body")
    return out


def decode_body(body: bytes, encoding: str | None, v2: bool) -> Body | Answer:
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return Body(body)
    if coding not in ("gzip", "x-gzip"):
        return error(415, f"unsupported Content-Encoding {coding!r}", v2)
    try:
        return Body(_gunzip(body, MAX_BODY))
    except OverflowError:
        return error(413, "the decompressed body is too large", v2)
    except zlib.error:
        return error(400, "the body is not valid gzip", v2)
