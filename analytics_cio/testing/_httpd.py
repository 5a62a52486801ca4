"""HTTP/1.1 plumbing for the local Customer.io: a threading server that stops cleanly, and request framing.

:class:`HTTPServer` serves each connection in a daemon thread. Once :attr:`~HTTPServer.stopping` is set it
refuses new connections; :meth:`~HTTPServer.close_connections` wakes the handlers waiting on kept-alive ones, and
a connection marked with :meth:`~HTTPServer.drop` is closed with a reset, not a FIN, which a client sees as a
connection error.

:class:`HTTPHandler` reads a request body (``Content-Length`` or chunked; at most :data:`MAX_BODY` bytes, else a
:class:`FramingError`) and writes an :class:`Answer` in one write with a ``Content-Length``, so connections can
be kept alive. What a request means is its subclass's business (``_server.py``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, NamedTuple, TypeVar

logger = logging.getLogger(__name__)
_App = TypeVar("_App")

MAX_BODY = 10_000_000  # anything bigger is not read at all (413, connection closed)


class Answer(NamedTuple):
    """What the server sends: a status, a body and extra headers (``Content-Type`` defaults to JSON)."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class FramingError(Exception):
    """The body cannot be read: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HTTPHandler(BaseHTTPRequestHandler):
    """Reads request bodies and writes answers; subclasses decide what a request means."""

    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length
    server_version = "analytics-cio-local"
    sys_version = ""
    server: HTTPServer[Any]

    def setup(self) -> None:
        super().setup()
        # one write per answer already; no Nagle delay for the small ones either
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests send thousands of requests."""

    def _read_body(self) -> bytes:
        transfer = self.headers.get("Transfer-Encoding")
        if transfer is not None:
            if transfer.strip().lower() != "chunked":
                raise FramingError(501, f"unsupported Transfer-Encoding {transfer!r}")
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise FramingError(400, "invalid Content-Length") from None
        if size < 0:
            raise FramingError(400, "invalid Content-Length")
        if size > MAX_BODY:
            raise FramingError(413, f"the body is over {MAX_BODY} bytes")
        body = self.rfile.read(size)
        if len(body) < size:
            raise FramingError(400, "the body ended early")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise FramingError(400, "invalid chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if size < 0 or total > MAX_BODY:
                raise FramingError(413, f"the body is over {MAX_BODY} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3).strip():
                raise FramingError(400, "invalid chunked body")
            chunks.append(chunk)

    def _send(self, answer: Answer) -> None:
        status, body, extra = answer
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}", f"Date: {self.date_time_string()}"]
        names = {name.lower() for name in extra}
        if "content-type" not in names and status != 204:
            lines.append("Content-Type: application/json")
        lines += [f"{name}: {value}" for name, value in extra.items() if name.lower() != "content-length"]
        if status == 204:
            body = b""
        else:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _drop(self) -> None:
        self.close_connection = True
        self.server.drop(self.connection)


class HTTPServer(ThreadingHTTPServer, Generic[_App]):
    """A threading HTTP server serving ``app`` that stops cleanly and can drop a connection with a reset."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # bursts of new connections from concurrent clients

    def __init__(self, address: tuple[str, int], handler: type[HTTPHandler], app: _App) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._dropped: set[socket.socket] = set()
        self._idle = threading.Condition()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            if self.stopping.is_set():
                self.close_request(request)
                return
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._idle:
            dropped = request in self._dropped
            self._dropped.discard(request)
        if dropped:  # close with a reset, not a graceful FIN
            with contextlib.suppress(OSError):
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_request(request)
        else:
            super().shutdown_request(request)
        with self._idle:
            self._connections.discard(request)
            self._idle.notify_all()

    def drop(self, connection: socket.socket) -> None:
        with self._idle:
            self._dropped.add(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Wake every handler waiting on a kept-alive connection, so it finishes."""
        with self._idle:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not self._connections, timeout)
