"""Keep-alive HTTP/1.1 connections from the standard library, for the v1 transport's many small requests.

``requests`` costs about ten times the CPU of the request itself on a small JSON POST (measured in
benchmarks/README.md); the v1 transport sends one request per operation, so it uses this lean pool instead
whenever no proxy is configured. TLS is verified with the system's default context, as requests does.
"""

from __future__ import annotations

import http.client
import queue
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit


class Answer:
    """Status, headers and body of an HTTP response."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class ConnectionPool:
    """Up to ``size`` keep-alive connections to one origin. A connection that fails is dropped, not reused."""

    def __init__(self, base_url: str, timeout: float, size: int) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize=size)
        self._tls = ssl.create_default_context() if self._https else None

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        """One request; raises OSError or http.client.HTTPException when the exchange fails."""
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = self._connect()
        try:
            connection.request(method, self._prefix + path, body=body, headers=dict(headers))
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        if response.will_close:
            connection.close()
            return answer
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            connection.close()
        return answer

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
