"""The local Customer.io: a real HTTP server that speaks the Track API (and Data Pipelines' ``/v1/batch``) on
127.0.0.1.

Tests script it (:meth:`LocalCustomerIO.script`, :class:`Faults`) and read what it received
(:attr:`~LocalCustomerIO.requests`, :meth:`~LocalCustomerIO.ops`) and what that did (:attr:`~LocalCustomerIO.state`);
developers point an app at it and watch ``GET /`` in a browser.

What happens to a request, in order:

1. The body is read (``Content-Length`` or chunked; at most :data:`~analytics_cio.testing._httpd.MAX_BODY`
   bytes, else 413 and the connection closes). Inspection endpoints (``/``, ``/_state``, ``/_requests``,
   ``POST /_reset``, ``/favicon.ico``) are answered now and never recorded.
2. A scripted :class:`Reply`, if one is queued, answers it; else :class:`Faults` may delay, drop or fail it.
   Neither reaches validation or state.
3. The path must be one of the Track API's or Data Pipelines' ``/v1/batch`` (404; 405 for a wrong method),
   then its auth (401): HTTP Basic with the site id and API key, or for ``/v1/batch`` the write key.
4. The body is gunzipped (``Content-Encoding: gzip``; other codings 415) and goes to the endpoint: a v1 one
   translates the request into the v2 operations it stands for, a v2 one checks its size and parses it. The ops
   are validated and valid ones change :class:`~analytics_cio.testing._state.State`. With ``validate=False``
   every request that parses (and, for v1, translates) is answered 200 and the ops that can be applied are.

Every API request is recorded (scripted, faulted and rejected ones too, with the status they got; 0 when the
connection was dropped) before its answer is sent, so a client holding its answer already finds it in
``requests``.

This module is the server and the order above; each step's details have their own module: ``_httpd.py``
(connections and body framing), ``_scripting.py`` (:class:`Reply`, :class:`Faults`), ``_recorded.py``
(:class:`RecordedRequest`), ``_body.py`` (gzip and strict JSON), ``_routes.py`` (finding the endpoint),
``_v1api.py``, ``_v2api.py`` and ``_pipelinesapi.py`` (the endpoints, with v1's translation and the size
limits), ``_answers.py`` (Customer.io's answer shapes), ``_validation.py`` (which operations are valid) and
``_state.py`` (what they do, and the model's choices).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hmac
import logging
import random
import threading
import time
from collections import deque
from typing import Any, Callable, List, Tuple
from urllib.parse import unquote, urlsplit

from ._answers import OK, error, json_answer
from ._body import Body, decode_body
from ._httpd import Answer, FramingError, HTTPHandler, HTTPServer
from ._page import CONTENT_SECURITY_POLICY, render_page
from ._pipelinesapi import PIPELINES_ROUTES, pipelines_error
from ._recorded import Headers, RecordedRequest
from ._routes import Route, match
from ._scripting import Faults, Reply
from ._state import State
from ._v1api import V1_ROUTES
from ._v2api import V2_ROUTES
from ._validation import Op

__all__ = ["Faults", "LocalCustomerIO", "RecordedRequest", "Reply"]

logger = logging.getLogger(__name__)

_RETRY_AFTER_STATUSES = (429, 503)
_ROUTES: list[Route] = [*V1_ROUTES, *V2_ROUTES, *PIPELINES_ROUTES]


# ---------------------------------------------------------------------------------------------- the server


_Ticket = Tuple[int, int, float]  # (generation, arrival number, monotonic time)


class LocalCustomerIO:
    """A local Customer.io: the Track API and Data Pipelines' ``/v1/batch``. ``with LocalCustomerIO() as cio: ...``
    serves on a free port.

    ``site_id``/``api_key`` None accept any HTTP Basic credentials on the Track API, ``write_key`` None any
    Data Pipelines key (but a missing or malformed ``Authorization`` is still 401). ``validate=False`` accepts
    and applies whatever parses.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        site_id: str | None = None,
        api_key: str | None = None,
        validate: bool = True,
        faults: Faults | None = None,
        region: str = "us",
        write_key: str | None = None,
    ) -> None:
        self.host = host
        self.write_key = write_key
        self.site_id = site_id
        self.api_key = api_key
        self.validate = validate
        self.faults = faults if faults is not None else Faults()
        self.region = region
        self.state = State()
        self._port = port
        self._lock = threading.Condition(threading.RLock())
        self._httpd: HTTPServer[LocalCustomerIO] | None = None
        self._thread: threading.Thread | None = None
        self._script: deque[Reply] = deque()
        self._requests: List[RecordedRequest] = []
        self._arrivals: List[int] = []  # arrival numbers of _requests, ascending
        self._arrived = 0
        self._generation = 0
        self._ops: List[Op] = []
        self._rng: random.Random | None = None
        self._rng_faults: Faults | None = None
        self._rng_seed: int | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; known once started (after a restart it is the same)."""
        if self._port == 0:
            raise RuntimeError("the server has no port until start()")
        return f"http://{self.host}:{self._port}"

    def start(self) -> LocalCustomerIO:
        """Serve in a daemon thread (again on the same port after a stop). Returns self."""
        with self._lock:
            if self._httpd is None:
                httpd = HTTPServer((self.host, self._port), _RequestHandler, self)
                self._port = int(httpd.server_address[1])
                self._thread = threading.Thread(
                    target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                    name=f"LocalCustomerIO:{self._port}", daemon=True,
                )
                self._httpd = httpd
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; scripted delays in progress are cut short. Idempotent."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        httpd.wait_idle(5.0)
        if thread is not None:
            thread.join(5.0)

    def __enter__(self) -> LocalCustomerIO:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port else "not started"
        return f"<LocalCustomerIO {where}, {self.request_count} requests>"

    # -- scripting and inspection

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests, in order, ahead of faults, validation and state."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"script() takes Reply objects, not {type(reply).__name__}")
        with self._lock:
            self._script.extend(replies)

    @property
    def scripted(self) -> int:
        """How many scripted replies are still waiting for a request."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request received, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def ops(self) -> list[dict[str, Any]]:
        """Every v2 op received and accepted (batch items and entity bodies), in order."""
        with self._lock:
            return list(self._ops)

    def messages(self) -> list[dict[str, Any]]:
        """Every Data Pipelines message received and accepted (``POST /v1/batch``), in order."""
        return self.state.pipelines_messages()

    def wait_for(self, predicate: Callable[[LocalCustomerIO], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` holds (re-checked as requests arrive); False when time runs out."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._lock:
                self._lock.wait(min(remaining, 0.05))
        return True

    def reset(self) -> None:
        """Forget requests, scripted replies, ops and state; faults restart their sequence."""
        with self._lock:
            self._requests.clear()
            self._arrivals.clear()
            self._script.clear()
            self._ops.clear()
            self._generation += 1
            self._rng = None
            self.state.reset()

    # -- used by the request handler

    def _arrive(self) -> _Ticket:
        with self._lock:
            self._arrived += 1
            return self._generation, self._arrived, time.monotonic()

    def _record(self, ticket: _Ticket, request: RecordedRequest) -> None:
        generation, arrival, _ = ticket
        with self._lock:
            if generation != self._generation:
                return  # arrived before a reset()
            if not self._arrivals or self._arrivals[-1] < arrival:
                self._arrivals.append(arrival)
                self._requests.append(request)
            else:
                i = bisect.bisect(self._arrivals, arrival)
                self._arrivals.insert(i, arrival)
                self._requests.insert(i, request)
            self._lock.notify_all()

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _draw(self, faults: Faults) -> tuple[float, float]:
        with self._lock:
            if self._rng is None or self._rng_faults is not faults or self._rng_seed != faults.seed:
                self._rng = random.Random(faults.seed)  # a new Faults or seed starts a new sequence
                self._rng_faults, self._rng_seed = faults, faults.seed
            return self._rng.random(), self._rng.random()

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, colon, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(colon) and all(
            expected is None or hmac.compare_digest(given.encode(), expected.encode())
            for given, expected in ((user, self.site_id), (password, self.api_key))
        )

    def _authorized_pipelines(self, header: str | None) -> bool:
        """Basic with the key as the user name and a blank password, or Bearer (region-prefixed keys)."""
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer":
            key = token
        elif scheme.lower() == "basic":
            try:
                key, colon, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            if not colon or password:
                return False
        else:
            return False
        return bool(key) and (self.write_key is None or hmac.compare_digest(key.encode(), self.write_key.encode()))

    def _dispatch(self, method: str, raw_path: str, headers: Headers, body: Body | Answer) -> Answer:
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        v2 = raw_path.startswith("/api/v2/")
        allowed: list[str] = []
        for pattern, methods, handler in _ROUTES:
            params = match(pattern, segments)
            if params is None:
                continue
            if method not in methods:
                allowed += methods
                continue
            if pattern[0] == "v1":  # Data Pipelines
                if not self._authorized_pipelines(headers.get("authorization")):
                    return pipelines_error(401, "Unauthorized: the API key is missing or wrong",
                                           {"WWW-Authenticate": 'Basic realm="Customer.io Data Pipelines"'})
                params = ["strict"] if headers.get("x-strict-mode", "").strip() == "1" else []
            elif not self._authorized(headers.get("authorization")):
                return json_answer(401, {"meta": {"error": "Unauthorized request"}},
                                   {"WWW-Authenticate": 'Basic realm="Customer.io"'})
            return body if isinstance(body, Answer) else handler(self, params, body)
        if allowed:
            return error(405, "method not allowed", v2, {"Allow": ", ".join(sorted(set(allowed)))})
        return error(404, "not found", v2)

    def _receive(self, messages: list[dict[str, Any]], ignored: list[dict[str, Any]]) -> None:
        self.state.receive_pipelines(messages, ignored)

    def _apply(self, ops: list[Op], *, v2: bool) -> None:
        self.state.apply_valid(ops)
        if v2:
            with self._lock:
                self._ops.extend(ops)


# ---------------------------------------------------------------------------------------------- a request


class _RequestHandler(HTTPHandler):
    """One connection's requests, each taken through the steps in this module's docstring."""

    server: HTTPServer[LocalCustomerIO]

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _handle(self) -> None:
        try:
            self._handle_request()
        except OSError:
            self.close_connection = True  # the client went away
        except Exception:
            logger.exception("local Customer.io failed on %s %s", self.command, self.path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(error(500, "internal error in the local Customer.io", False))

    def _handle_request(self) -> None:
        app = self.server.app
        target = self.path
        if not target.startswith("/"):  # absolute-form request target
            target = urlsplit(target)._replace(scheme="", netloc="").geturl()
        raw_path, _, query = target.partition("?")
        v2 = raw_path.startswith("/api/v2/")
        if raw_path == "/" or raw_path.startswith("/_") or raw_path == "/favicon.ico":
            try:
                self._read_body()
            except FramingError as exc:
                self.close_connection = True
                self._send(error(exc.status, str(exc), v2))
            else:
                self._send(self._inspect(raw_path))
            return
        ticket = app._arrive()
        answer: Answer | None
        headers = Headers()
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            raw = self._read_body()
        except FramingError as exc:
            self.close_connection = True
            raw, answer = b"", error(exc.status, str(exc), v2)
        else:
            body = decode_body(raw, headers.get("content-encoding"), v2)
            if isinstance(body, Body):
                raw = body.raw
            answer = self._decide(app, raw_path, headers, body)
        status = 0 if answer is None else answer.status
        app._record(ticket, RecordedRequest(self.command, raw_path, query, headers, raw, status, ticket[2]))
        if answer is None:
            self._drop()
        else:
            self._send(answer)

    def _decide(
        self, app: LocalCustomerIO, raw_path: str, headers: Headers, body: Body | Answer
    ) -> Answer | None:
        """The answer to an API request, or None to drop the connection."""
        reply = app._next_reply()
        if reply is not None:
            if reply.delay and self.server.stopping.wait(reply.delay):
                return None
            if reply.drop:
                return None
            return Answer(reply.status, reply.encoded_body(), reply.headers or {})
        faults = app.faults
        drop_draw, error_draw = app._draw(faults)
        if faults.latency and self.server.stopping.wait(faults.latency):
            return None
        if drop_draw < faults.drop_rate:
            return None
        if error_draw < faults.error_rate:
            status = faults.error_status
            extra = {}
            if faults.retry_after is not None and status in _RETRY_AFTER_STATUSES:
                extra["Retry-After"] = _format_retry_after(faults.retry_after)
            return error(status, f"simulated fault: HTTP {status}", raw_path.startswith("/api/v2/"), extra)
        return app._dispatch(self.command, raw_path, headers, body)

    def _inspect(self, raw_path: str) -> Answer:
        app = self.server.app
        if raw_path == "/favicon.ico":
            return Answer(404, b"", {})
        pages: dict[str, Callable[[], Answer]] = {
            "/": lambda: Answer(
                200,
                render_page(app.state.snapshot(), url=app.url, request_count=app.request_count).encode(
                    "utf-8", "replace"
                ),
                {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
            ),
            "/_state": lambda: json_answer(200, app.state.snapshot()),
            "/_requests": lambda: json_answer(200, [
                {"method": r.method, "path": r.path, "query": r.query, "status": r.status, "json": r.json()}
                for r in app.requests
            ]),
        }
        if raw_path == "/_reset":
            if self.command != "POST":
                return error(405, "method not allowed", False, {"Allow": "POST"})
            app.reset()
            return OK
        if raw_path not in pages:
            return error(404, "not found", False)
        if self.command != "GET":
            return error(405, "method not allowed", False, {"Allow": "GET"})
        return pages[raw_path]()

def _format_retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
