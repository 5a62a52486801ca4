"""Reading an export: its lines as bytes, with their numbers and byte offsets (plain or gzipped), and one line
decoded to JSON or refused as a :class:`BadLine`.

JSON is decoded by orjson when it is installed, else by the standard library; a line orjson refuses is decoded
again by the standard library, which reads what orjson does not (NaN, infinities, lone surrogates) and names the
problem the same way whichever decoder is installed. orjson reads an integer past 64 bits as the nearest float:
a line with 19 digits in a row goes to the standard library, which keeps every digit.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from typing import IO, Any, Callable, Final

_fast_loads: Callable[[bytes], Any] | None
try:
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is optional
    _fast_loads = None

BLANK: Final = object()  # what decode() returns for an empty line: not a message, not a problem


class BadLine(Exception):
    """A line that is not a usable Segment message. ``kind`` groups it in the summary."""

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


READ_BUFFER = 1 << 20


def open_bytes(path: str) -> IO[bytes]:
    """The file's bytes; Segment's exports to S3 come gzipped (``.gz``)."""
    # A large buffer: each refill lets the client's threads take the GIL, and the reader waits to get it back.
    if path.endswith(".gz"):
        return io.BufferedReader(gzip.GzipFile(path, "rb"), READ_BUFFER)
    return open(path, "rb", buffering=READ_BUFFER)


def numbered_lines(path: str, offset: int = 0, line: int = 1) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, byte offset just after the line, the line)`` for each line from ``offset`` on, where
    line ``line`` starts. Offsets count uncompressed bytes, so a gzipped file resumes where a plain one would."""
    with open_bytes(path) as handle:
        if offset:
            handle.seek(offset)
        for raw in handle:
            offset += len(raw)
            yield line, offset, raw
            line += 1


def count_lines(path: str) -> int:
    """Lines in the file (a last line without a newline counts)."""
    lines = 0
    last = b"\n"
    with open_bytes(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _standard_decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine("not UTF-8", f"byte {exc.start + 1}") from None
    if not text.strip():
        return BLANK
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # json's own texts may end in "at" ("Unterminated string starting at"): say it once
        where = exc.msg[:-3] if exc.msg.endswith(" at") else exc.msg
        raise BadLine("invalid JSON", f"{where} at character {exc.pos + 1}") from None


_LONG_DIGITS: Final = re.compile(rb"[0-9]{19}")


def _orjson_decode(raw: bytes) -> Any:
    if _LONG_DIGITS.search(raw) is not None:  # maybe an integer past 64 bits: orjson would round it
        return _standard_decode(raw)
    try:
        return _fast_loads(raw)  # type: ignore[misc]  # (never None here)
    except ValueError:  # orjson.JSONDecodeError
        return _standard_decode(raw)


# decode(raw): the line's JSON value, or BLANK; raises BadLine when it is neither.
decode: Final[Callable[[bytes], Any]] = _standard_decode if _fast_loads is None else _orjson_decode
