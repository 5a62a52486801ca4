"""The one HTTP connection pool both transports send through: urllib3, with a deadline no server can extend.

:class:`HttpPool` holds a urllib3 ``PoolManager`` (or ``ProxyManager``) for one Customer.io origin. What it adds
to urllib3, and why:

- **A total deadline per request.** urllib3's read timeout applies to each read, so a server that trickles one
  byte a second keeps a request alive forever. A watchdog thread shuts the socket of any request still running
  at its deadline (``timeout`` seconds after it started), which ends the blocked read at once.
- **Answers read up to a cap** (:data:`MAX_ANSWER_BYTES`): Customer.io's answers are a few hundred bytes; a larger
  one is cut there and its connection dropped, so a huge answer costs no memory. A 207 may list every operation
  of a batch, so it is read up to :data:`MAX_PARTIAL_ANSWER_BYTES`.
- **A connection is reused only after a well-framed answer.** Anything else (an interim 1xx, a 204/304 that may
  hide a body, an answer cut at the cap or by the watchdog) drops it, so bytes left over from one answer can never
  be read as the answer to the next request.
- **One trust store and one proxy, for both transports**: see :func:`ca_bundle` and :func:`proxy_for`.
- No redirects followed, no retries (the delivery core owns retries), TLS always verified.

Who owns what: the urllib3 manager is thread-safe and shared by every sending thread; the watchdog's table of
running requests belongs to the watchdog, under its lock; each sending thread's current request is its own
(a thread-local), read by the connection it uses on that thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import Timeout, make_headers, parse_url

from ._errors import ArgumentValueError

logger = logging.getLogger("analytics_cio")

MAX_ANSWER_BYTES: Final = 8192
# A 207's body is the list of the batch's refused operations: cut short it names none of them, and every one of
# them would count as delivered. A batch (< 500 KB) holds at most a few thousand operations.
MAX_PARTIAL_ANSWER_BYTES: Final = 2 * 1024 * 1024
_NO_BODY: Final = frozenset({204, 304})


class AnswerError(OSError):
    """The server's answer cannot be taken as the answer to this request (an interim 1xx as the final one)."""


class Answer:
    """Status, headers (case-insensitive) and body (at most :data:`MAX_ANSWER_BYTES`) of an HTTP answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def ca_bundle(ca_certs: str | None) -> str | None:
    """The CA bundle both transports trust: ``ca_certs``, else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``, else
    certifi's (what ``requests`` uses). None: the system's default store (certifi missing)."""
    if ca_certs:
        return ca_certs
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(name)
        if path:
            if os.path.exists(path):
                return path
            logger.warning("analytics_cio: %s=%s does not exist; ignored", name, path)
    try:
        import certifi
    except ImportError:  # requests depends on certifi; without it, the system's store
        return None
    return str(certifi.where())


def proxy_for(base_url: str, proxies: Mapping[str, str] | None) -> str | None:
    """The proxy for ``base_url``: from ``proxies`` (keys as in requests: ``"https://host"``, ``"https"``,
    ``"all"``) when given, else from the environment (``HTTPS_PROXY``/``ALL_PROXY``, minus ``NO_PROXY``)."""
    parts = urlsplit(base_url)
    scheme, host = parts.scheme, parts.hostname or ""
    if proxies is not None:
        for key in (f"{scheme}://{host}", scheme, "all"):
            if proxies.get(key):
                return _with_scheme(proxies[key])
        return None
    found = urllib.request.getproxies()
    proxy = found.get(scheme) or found.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return _with_scheme(proxy)


def _with_scheme(proxy: str) -> str:
    return proxy if "://" in proxy else f"http://{proxy}"


class _Attempt:
    """One request in progress on one thread, the connection it runs on once it has one, and why it was
    aborted (by the watchdog at its deadline, or by ``close()``), if it was."""

    __slots__ = ("aborted", "connection", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connection: HTTPConnection | None = None
        self.aborted: str | None = None


_current = threading.local()  # .attempt and .watchdog: the calling thread's request, set by HttpPool.request


def _watched(connection: HTTPConnection) -> None:
    """Called by a connection as it connects or sends: put the current request under its watchdog."""
    attempt: _Attempt | None = getattr(_current, "attempt", None)
    if attempt is not None and attempt.connection is None:
        attempt.connection = connection
        _current.watchdog.watch(attempt)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _watched(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        _watched(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watched(self)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _abort(connection: HTTPConnection | None) -> None:
    """Shut the connection's socket down under whoever is blocked on it: their read or write fails at once."""
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    # socket.socket's own shutdown: on a TLS socket, ssl's would tear its state down under a reading thread.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """Aborts requests that outlive their deadline. Owns ``_running`` (under ``_ready``) and its thread, which
    ends after a few idle seconds and starts again with the next request."""

    IDLE_SECONDS: Final = 5.0

    def __init__(self) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._running: set[_Attempt] = set()
        self._wake_at: float | None = None  # when the thread next looks
        self._thread: threading.Thread | None = None
        self._closed = False  # the pool was closed: the thread ends as soon as nothing runs

    def watch(self, attempt: _Attempt) -> None:
        with self._ready:
            self._running.add(attempt)
            self._closed = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="analytics-cio-watchdog", daemon=True)
                self._thread.start()
            elif self._wake_at is None or attempt.deadline < self._wake_at:
                self._ready.notify()

    def done(self, attempt: _Attempt) -> None:
        with self._ready:
            self._running.discard(attempt)
            if self._closed and not self._running:
                self._ready.notify()

    def close(self) -> None:
        """Abort every request running now; the thread ends (a later request starts a new one)."""
        with self._ready:
            self._closed = True
            for attempt in self._running:
                attempt.aborted = "the client shut down"
                _abort(attempt.connection)
            self._ready.notify()

    def _run(self) -> None:
        with self._ready:
            while True:
                now = time.monotonic()
                for attempt in [a for a in self._running if a.deadline <= now]:
                    attempt.aborted = attempt.aborted or "the deadline passed"
                    if attempt.connection is not None and attempt.connection.sock is not None:
                        _abort(attempt.connection)
                        self._running.discard(attempt)
                if not self._running and (self._closed or (self._wake_at is not None and now >= self._wake_at)):
                    self._thread = None  # idle long enough: the next request starts a new thread
                    return
                # A request past its deadline that is still connecting has no socket yet: look again shortly.
                self._wake_at = min((max(a.deadline, now + 0.05) for a in self._running),
                                    default=now + self.IDLE_SECONDS)
                self._ready.wait(self._wake_at - now)


class HttpPool:
    """Keep-alive connections to one origin (through a proxy when there is one), shared by every sending thread.

    ``request()`` makes one exchange within ``timeout`` seconds in total and returns its :class:`Answer`; it raises
    for anything else (network errors, timeouts, malformed answers, a refused certificate). ``close()`` aborts
    the requests in flight and drops idle connections; a later request (a flush from ``on_error`` that called
    ``shutdown()``) opens a new one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        maxsize: int = 10,
        ca_certs: str | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.proxy = proxy_for(base_url, proxies)
        bundle = ca_bundle(ca_certs)
        options: dict[str, Any] = {
            "num_pools": 2,
            "maxsize": maxsize,
            "block": False,
            "timeout": Timeout(connect=timeout, read=timeout),
            "retries": False,
            "cert_reqs": "CERT_REQUIRED",
        }
        if bundle is not None:
            options["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
        self._secret: str | None = None
        manager: urllib3.PoolManager
        if self.proxy is not None:
            try:
                proxy = parse_url(self.proxy)
                if proxy.auth:
                    self._secret = proxy.auth
                    options["proxy_headers"] = make_headers(proxy_basic_auth=proxy.auth)
                    self.proxy = proxy._replace(auth=None).url
                manager = urllib3.ProxyManager(self.proxy, **options)
            except ValueError as exc:  # urllib3's LocationParseError, ProxySchemeUnknown: their text holds the URL
                shown = re.sub(r"//[^/@]*@", "//***@", self.proxy)
                raise ArgumentValueError("proxies", f"{shown} (from the option, else from HTTPS_PROXY/ALL_PROXY) is "
                                                    f"not a usable proxy URL ({type(exc).__name__})") from None
        else:
            manager = urllib3.PoolManager(**options)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._manager = manager
        # Through a plain-http proxy, an http origin is reached by sending the proxy absolute URLs: the manager
        # does that. Otherwise the origin's own pool is looked up once (the manager's per-request lookup costs
        # a third of a request's CPU).
        self._forwarded = self.proxy is not None and parts.scheme == "http"
        self._origin_pool = None if self._forwarded else manager.connection_from_url(self.origin)
        self._watchdog = _Watchdog()

    def __repr__(self) -> str:
        via = f" via {self.proxy}" if self.proxy else ""
        return f"HttpPool({self.origin}{via})"

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        attempt = _Attempt(time.monotonic() + self.timeout)
        _current.attempt, _current.watchdog = attempt, self._watchdog
        response = None
        try:
            pool = self._origin_pool
            if pool is None:
                response = self._manager.urlopen(
                    method, self.origin + self.prefix + path, body=body, headers=dict(headers),
                    redirect=False, retries=False, preload_content=False, decode_content=False,
                )
            else:
                response = pool.urlopen(
                    method, self.prefix + path, body=body, headers=dict(headers),
                    redirect=False, retries=False, preload_content=False, decode_content=False,
                )
            answer = self._read(response)
        except Exception as exc:
            if response is not None:
                response.close()  # whatever is left unread goes with the connection
            if attempt.aborted == "the deadline passed":
                raise TimeoutError(f"no complete answer within {self.timeout:g}s (the request was aborted)") from exc
            if attempt.aborted:
                raise ConnectionAbortedError(f"{attempt.aborted} (the request was aborted)") from exc
            raise
        finally:
            _current.attempt = _current.watchdog = None
            self._watchdog.done(attempt)
            if response is not None:
                response.release_conn()
        return answer

    def _read(self, response: Any) -> Answer:
        status = int(response.status)
        if status < 200:  # urllib3 skips 100 Continue; any other interim answer stands in for the real one
            response.close()
            raise AnswerError(f"the server answered with an interim HTTP {status} as its final answer")
        cap = MAX_PARTIAL_ANSWER_BYTES if status == 207 else MAX_ANSWER_BYTES
        chunks: list[bytes] = []
        size = 0
        complete = False
        while size <= cap:
            data = response.read(cap + 1 - size)
            if not data:
                complete = True
                break
            chunks.append(data)
            size += len(data)
        if not complete or status in _NO_BODY:
            response.close()  # what is left of this answer must never be read as the next one
        return Answer(status, response.headers, b"".join(chunks)[:cap])

    def redact(self, text: str) -> str:
        """``text`` without the proxy's credentials."""
        return text.replace(self._secret, "***") if self._secret else text

    def close(self) -> None:
        """Abort the requests in flight and drop the idle connections (idempotent)."""
        self._watchdog.close()
        self._manager.clear()  # closes every pool; a later request (from on_error, say) gets a new one
        if not self._forwarded:
            self._origin_pool = self._manager.connection_from_url(self.origin)
