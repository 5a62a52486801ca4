"""Keep-alive HTTP/1.1 connections over plain sockets, for the v1 transport's many small requests.

The v1 transport sends one request per operation. Through ``requests`` a small JSON POST costs about 3 ms of
CPU here, through ``http.client`` about 170 µs, and written as one ``sendall`` with the answer read back by
hand about 25 µs (measured by benchmarks/bench_throughput.py's workload). So the v1 transport speaks HTTP/1.1
itself whenever no proxy is configured: requests with a Content-Length, answers with a Content-Length, chunked,
or delimited by the connection closing. TLS is verified with the system's default context, as ``requests`` does.
"""

from __future__ import annotations

import queue
import socket
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

_MAX_LINE = 65536
_MAX_HEADERS = 100
_NO_BODY = frozenset({204, 304})
_IDLE_SECONDS = 30.0  # a connection idle for longer is not trusted to still be open


class ProtocolError(OSError):
    """The server's answer was not HTTP/1.1 we can read, or the connection closed mid-answer."""


class Answer:
    """Status, headers (lower-case names) and body of an HTTP response."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Connection:
    __slots__ = ("idle_since", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class ConnectionPool:
    """Up to ``size`` keep-alive connections to one origin. A connection that fails is closed, never reused."""

    def __init__(self, base_url: str, timeout: float, size: int) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        default_port = 443 if parts.scheme == "https" else 80
        host_header = self._host if self._port == default_port else f"{self._host}:{self._port}"
        if ":" in self._host:  # an IPv6 literal
            host_header = f"[{self._host}]" if self._port == default_port else f"[{self._host}]:{self._port}"
        self._host_header = host_header
        self._timeout = timeout
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._idle: queue.LifoQueue[_Connection] = queue.LifoQueue(maxsize=size)

    def _connect(self) -> _Connection:
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _checkout(self) -> tuple[_Connection, bool]:
        while True:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                return self._connect(), False
            if time.monotonic() - connection.idle_since < _IDLE_SECONDS:
                return connection, True
            connection.close()

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        """One exchange. Raises OSError (ProtocolError included) when it fails.

        A reused connection that turns out to have been closed by the server while idle (nothing at all comes
        back) is replaced once by a fresh one: the server never read that request.
        """
        payload = self._encode(method, path, body, headers)
        connection, reused = self._checkout()
        try:
            answer = self._exchange(connection, payload)
        except _ClosedBeforeAnswer:
            connection.close()
            if not reused:
                raise ProtocolError("the server closed the connection without answering") from None
            connection = self._connect()
            try:
                answer = self._exchange(connection, payload)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            connection.close()
            raise
        if answer.headers.get("connection", "").lower() == "close":
            connection.close()
            return answer
        connection.idle_since = time.monotonic()
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            connection.close()
        return answer

    def _encode(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        data = body or b""
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(data)}")
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("the method, path or a header holds a line break: refused")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data

    def _exchange(self, connection: _Connection, payload: bytes) -> Answer:
        connection.sock.sendall(payload)
        reader = connection.reader
        status_line = reader.readline(_MAX_LINE + 1)
        if not status_line:
            raise _ClosedBeforeAnswer
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers = _read_headers(reader)
        if status in _NO_BODY or 100 <= status < 200:
            return Answer(status, headers, b"")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Answer(status, headers, _read_chunked(reader))
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise ProtocolError(f"bad Content-Length {length!r}")
            return Answer(status, headers, _read_exactly(reader, int(length)))
        headers["connection"] = "close"  # the body runs until the server closes the connection
        return Answer(status, headers, reader.read())

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _ClosedBeforeAnswer(Exception):
    pass


def _read_headers(reader: object) -> dict[str, str]:
    readline = reader.readline  # type: ignore[attr-defined]
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        line = readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line or len(line) > _MAX_LINE:
            raise ProtocolError("the connection closed, or a header line was too long, while reading headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    raise ProtocolError("too many headers")


def _read_exactly(reader: object, length: int) -> bytes:
    data: bytes = reader.read(length)  # type: ignore[attr-defined]
    if len(data) != length:
        raise ProtocolError(f"the connection closed after {len(data)} of {length} body bytes")
    return data


def _read_chunked(reader: object) -> bytes:
    readline = reader.readline  # type: ignore[attr-defined]
    chunks: list[bytes] = []
    while True:
        size_line = readline(_MAX_LINE + 1)
        if not size_line:
            raise ProtocolError("the connection closed inside a chunked body")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {size_line[:40]!r}") from None
        if size == 0:
            _read_headers(reader)  # trailers, up to the blank line
            return b"".join(chunks)
        chunks.append(_read_exactly(reader, size))
        _read_exactly(reader, 2)
