"""Sending Customer.io operations over HTTP, through one urllib3 pool (``_pool``) for both API versions.

Two transports share one interface (a third, Data Pipelines', is ``_pipelines.PipelinesTransport``):

- :class:`BatchTransport` (Track API v2): operations packed into ``POST /api/v2/batch``; the delivery core
  (``_delivery``) retries whole attempts.
- :class:`RequestTransport` (Track API v1): one request per operation, delivered lane by lane (``_lanes``): a
  person's operations in order, people side by side, each operation with its own retries.

``prepare(op)`` turns an operation (v2 form, see ``_mapping``) into a :class:`WireOp` (its encoded request);
``send(ops)`` makes one attempt and says, for each op, whether it was delivered, refused, or may be retried.
Nothing a server sends makes ``send`` raise: every failure is an :class:`Outcome`.
A transport knows Customer.io's wire formats, never Segment's.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import gzip as gzip_module
import json
import logging
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Final, Protocol
from urllib.parse import urlsplit

from . import _lanes
from ._errors import ArgumentValueError, DeliveryError
from ._limits import BATCH_BYTES, EVENT_DATA_BYTES, OP_BYTES
from ._pool import Answer, HttpPool
from ._ratelimit import RateLimiter
from ._regions import HOSTS, normalise_region
from ._retry import MAX_RETRY_AFTER, RetryPolicy, is_retryable_status, parse_retry_after
from ._v1 import ENTITY_PATH, metrics_request, v1_request
from ._version import __version__

logger = logging.getLogger("analytics_cio")

USER_AGENT: Final = f"analytics-cio/{__version__} (python)"
_REASON_CHARS: Final = 500
_SECRET_MIN_CHARS: Final = 8  # a shorter api_key is no real key, and hiding it would garble every reason


class WireOp:
    """One encoded operation: its request (v1) or its batch item (v2), and the message it came from.

    While it waits in the queue the message is held compact (``compact(json)``): the queue's memory is counted
    in bytes. ``message`` gives it back as a dict, for ``on_error``. ``settled`` is the worker's claim flag.
    """

    __slots__ = ("_message", "data", "lane", "method", "path", "settled", "spool_id")

    def __init__(self, data: bytes, message: Any, method: str = "POST", path: str = "", lane: str = "") -> None:
        self.data = data
        self._message = message
        self.method = method
        self.path = path
        self.lane = lane
        self.spool_id: int | None = None
        self.settled = False

    @property
    def message(self) -> Any:
        """The Segment message this operation came from."""
        held = self._message
        if isinstance(held, bytes):
            try:
                return json.loads(held)
            except ValueError:
                return {}
        return held

    def compact(self, encoded: bytes) -> None:
        """Hold the message as its JSON (``encoded``) instead of as Python objects."""
        self._message = encoded

    @property
    def is_compact(self) -> bool:
        """Whether the message is held as JSON already."""
        return isinstance(self._message, bytes)

    @property
    def size(self) -> int:
        """Bytes this operation holds: its data, and its message when compact (unless that is the data itself, as
        a Data Pipelines message is)."""
        held = self._message
        return len(self.data) + (len(held) if isinstance(held, bytes) and held is not self.data else 0)

    def __repr__(self) -> str:
        return f"WireOp({self.method} {self.path or 'batch item'}, {len(self.data)} bytes)"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt did to one operation."""

    delivered: bool
    retryable: bool = False
    status: int | None = None
    reason: str = ""
    field: str | None = None
    retry_after: float | None = None
    items: tuple[Mapping[str, Any], ...] = ()  # a 207's per-operation errors


DELIVERED: Final = Outcome(True)


class Transport(Protocol):
    """What the worker needs from a transport. ``analytics_cio.testing`` provides one that sends nothing.

    ``prepare`` gets a Track API operation, unless the transport has ``segment = True`` (Data Pipelines,
    ``_pipelines``): then the client maps nothing and hands it each Segment message as it is.
    """

    max_batch_bytes: int  # bytes one send() may carry: the ops' data plus one separator byte each
    max_op_bytes: int

    def prepare(self, op: Mapping[str, Any], message: Any) -> WireOp: ...

    def send(self, ops: Sequence[WireOp], stop: threading.Event | None = None) -> list[Outcome]: ...

    def close(self) -> None: ...


def base_url(region: str, host: str | None) -> str:
    if host:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ArgumentValueError("host", f"must be an http(s) URL such as https://track.customer.io, not {host!r}")
        if "@" in parts.netloc:  # never sent (the credentials are site_id and api_key), but logged and in reprs
            raise ArgumentValueError("host", "must not hold a user name or password (user:password@): "
                                             f"{parts.scheme}://***@{parts.netloc.rpartition('@')[2]}")
        if parts.scheme == "http":
            logger.warning("analytics_cio: host %s is plain http: use it only for local testing", parts.netloc)
        return host.rstrip("/")
    return HOSTS[normalise_region(region)]


def error_reason(status: int, body: bytes, redact: Callable[[str], str] = str) -> tuple[str, str | None]:
    """Customer.io's own words for an error answer, in any of its shapes, and the field it names; ``redact`` is
    applied to them before they are cut short."""
    text = redact(body[:2000].decode("utf-8", errors="replace").strip())
    fallback = text[:_REASON_CHARS] or f"HTTP {status}"
    try:
        parsed = json.loads(body)
    except ValueError:
        return fallback, None
    parts: list[str] = []
    field = None
    if isinstance(parsed, Mapping):
        if isinstance(parsed.get("message"), str):  # Data Pipelines: {"code": ..., "message": ...}
            parts.append(parsed["message"])
        meta = parsed.get("meta")
        if isinstance(meta, Mapping):
            if isinstance(meta.get("error"), str):
                parts.append(meta["error"])
            if isinstance(meta.get("errors"), list):
                parts.extend(str(e) for e in meta["errors"])
        errors = parsed.get("errors")
        if isinstance(errors, list):
            for error in errors:
                if isinstance(error, Mapping):
                    parts.append(describe_error(error))
                    field = field or (str(error["field"]) if error.get("field") else None)
                else:
                    parts.append(str(error))
    reason = redact("; ".join(p for p in parts if p)) or fallback
    return reason[:_REASON_CHARS], redact(field) if field else None


def _certificate_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: requests nests urllib3's error, which nests ssl's) is a failed
    certificate verification."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        seen.append(item)
        todo.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    return False


def describe_error(error: Mapping[str, Any]) -> str:
    """One item of Customer.io's v2 ``errors`` list as text: ``reason: field: message``."""
    return ": ".join(str(error[k]) for k in ("reason", "field", "message") if error.get(k))


def partial_errors(body: bytes) -> tuple[Mapping[str, Any], ...]:
    """The per-operation errors of a 207 answer."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ()
    errors = parsed.get("errors") if isinstance(parsed, Mapping) else None
    return tuple(e for e in errors if isinstance(e, Mapping)) if isinstance(errors, list) else ()


class HttpTransport:
    """What both transports share: one :class:`~analytics_cio._pool.HttpPool`, Basic auth, gzip, the rate limit."""

    max_batch_bytes = BATCH_BYTES
    max_op_bytes = OP_BYTES

    def __init__(
        self,
        site_id: str,
        api_key: str,
        *,
        encode: Callable[[Any], bytes],
        region: str = "us",
        host: str | None = None,
        timeout: float = 15.0,
        gzip: bool = False,
        proxies: Mapping[str, str] | None = None,
        ca_certs: str | None = None,
        rate_limiter: RateLimiter | None = None,
        pool_size: int = 10,
    ) -> None:
        self.base_url = base_url(region, host)
        self.encode = encode
        self.timeout = timeout
        self.gzip = gzip
        self.proxies = dict(proxies) if proxies is not None else None
        self.ca_certs = ca_certs
        self.rate_limiter = rate_limiter or RateLimiter(None)
        token = base64.b64encode(f"{site_id}:{api_key}".encode()).decode()
        # A server (or a proxy) may echo the request back in its error text: never let it carry these on.
        self._secrets = tuple(s for s in (token, api_key) if len(s) >= _SECRET_MIN_CHARS)
        self._headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        self._pool_size = pool_size
        self._pool = self._new_pool()

    def __repr__(self) -> str:  # never the credentials
        return f"{type(self).__name__}({self.base_url})"

    def _new_pool(self) -> HttpPool:
        return HttpPool(self.base_url, timeout=self.timeout, maxsize=self._pool_size, ca_certs=self.ca_certs,
                        proxies=self.proxies)

    def reset_after_fork(self) -> None:
        """A forked child must not share the parent's sockets (nor its watchdog, which did not survive the fork)."""
        self._pool = self._new_pool()

    def close(self) -> None:
        """Abort the requests in flight (their ops get a retryable outcome at once) and refuse new ones."""
        self._pool.close()

    def request(self, method: str, path: str, data: bytes | None) -> Outcome:
        """One HTTP request; never raises: whatever goes wrong is the outcome."""
        headers = self._headers
        if data is not None and self.gzip:
            data = gzip_module.compress(data, compresslevel=6)
            headers = {**headers, "Content-Encoding": "gzip"}
        started = time.monotonic()
        try:
            answer = self._pool.request(method, path, data, headers)
        except Exception as exc:  # of any type: a server must not be able to make a batch vanish
            # The exception's text may hold the URL, never the credentials (they travel in a header).
            reason = self.redact(self._pool.redact(f"{type(exc).__name__}: {exc}"))[:_REASON_CHARS]
            _log(method, path, reason, started)
            if _certificate_refused(exc):  # a certificate that fails verification does not fix itself
                return Outcome(False, reason=f"TLS certificate verification failed: {reason}")
            return Outcome(False, retryable=True, reason=reason)
        _log(method, path, answer.status, started)
        return self._classify(answer)

    def redact(self, text: str) -> str:
        """``text`` without the credentials, in case a server echoed the ``Authorization`` header."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _classify(self, answer: Answer) -> Outcome:
        status, body = answer.status, answer.body
        for secret in self._secrets:  # before any of it is parsed or cut short, so no part of one survives
            body = body.replace(secret.encode(), b"***")
        if status == 207:
            return Outcome(True, status=207, items=partial_errors(body))
        if 200 <= status < 300:
            return Outcome(True, status=status)
        if 300 <= status < 400:
            where = self.redact(answer.headers.get("location", "?"))
            return Outcome(False, status=status, reason=f"Customer.io redirected to {where}: is region right?")
        reason, field = error_reason(status, body, self.redact)
        retryable = is_retryable_status(status)
        # A refusal (400, 403, ...) is not retried: a Retry-After on it must not hold the client's other requests.
        retry_after = parse_retry_after(answer.headers.get("retry-after")) if retryable else None
        if retry_after is not None:
            # Hold back every request of this client at once, not only this one's retry.
            self.rate_limiter.pause(min(retry_after, MAX_RETRY_AFTER))
        return Outcome(False, retryable, status, reason, field, retry_after)


def _log(method: str, path: str, result: int | str, started: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("analytics_cio: %s %s -> %s in %.1f ms", method, path, result,
                     (time.monotonic() - started) * 1000)


class BatchTransport(HttpTransport):
    """Track API v2: every attempt is one ``POST /api/v2/batch`` carrying all the given operations."""

    # The items' budget: `{"batch":[` + `]}` around them must still fit below Customer.io's 500 KB. The worker
    # counts one separator per item, one more than the commas, so a full request stays strictly smaller.
    max_batch_bytes = BATCH_BYTES - len(b'{"batch":[]}')

    def prepare(self, op: Mapping[str, Any], message: Any) -> WireOp:
        metrics = metrics_request(op)  # delivery metrics have no whole v2 form: POST /api/v1/metrics
        if metrics is not None:
            method, path, body, lane = metrics
            return WireOp(self.encode(body), message, method, path, lane)
        return WireOp(self.encode(op), message)

    def send(self, ops: Sequence[WireOp], stop: threading.Event | None = None) -> list[Outcome]:
        if any(op.path for op in ops):  # requests of their own (metrics) go one by one, the rest as one batch
            own = [i for i, op in enumerate(ops) if op.path]
            batched = [i for i, op in enumerate(ops) if not op.path]
            outcomes: list[Outcome] = [DELIVERED] * len(ops)
            for i in own:
                limited = self.rate_limiter.acquire(stop)
                outcomes[i] = self.request(ops[i].method, ops[i].path, ops[i].data) if limited else Outcome(
                    False, retryable=True, reason="stopped before sending")
            for i, outcome in zip(batched, self.send([ops[i] for i in batched], stop)):
                outcomes[i] = outcome
            return outcomes
        if not ops:
            return []
        if not self.rate_limiter.acquire(stop):
            return [Outcome(False, retryable=True, reason="stopped before sending")] * len(ops)
        body = b'{"batch":[' + b",".join(op.data for op in ops) + b"]}"
        outcome = self.request("POST", "/api/v2/batch", body)
        if outcome.status != 207:
            return [outcome] * len(ops)
        return self._partial(ops, outcome)

    def _partial(self, ops: Sequence[WireOp], outcome: Outcome) -> list[Outcome]:
        """207: the listed operations failed, every other one was accepted. Nothing is resent."""
        outcomes = [DELIVERED] * len(ops)
        for error in outcome.items:
            index = error.get("batch_index")
            if type(index) is int and 0 <= index < len(ops):  # JSON's true is not an index
                reason = self.redact(describe_error(error))
                field = self.redact(str(error["field"])) if error.get("field") else None
                outcomes[index] = Outcome(False, False, 207, reason[:_REASON_CHARS] or "invalid operation", field)
        if not outcome.items:
            logger.warning("analytics_cio: Customer.io answered 207 without a readable error list")
        return outcomes


class RequestTransport(HttpTransport):
    """Track API v1: one request per operation, a lane per person (see ``_lanes``), ``concurrency`` requests in
    flight at once. ``group`` (objects) has no v1 form and uses ``/api/v2/entity``."""

    max_batch_bytes = 10 * BATCH_BYTES  # no request carries more than one op; this only bounds one send()
    max_op_bytes = EVENT_DATA_BYTES + 4096

    def __init__(self, *args: Any, concurrency: int = 4, **kwargs: Any) -> None:
        kwargs.setdefault("pool_size", concurrency)
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency

    def prepare(self, op: Mapping[str, Any], message: Any) -> WireOp:
        method, path, body, lane = v1_request(op)
        return WireOp(self.encode(body) if body is not None else b"", message, method, path, lane)

    def attempt(self, op: WireOp, stop: threading.Event | None = None) -> Outcome:
        """One request for one op, once the rate limit lets it start."""
        if not self.rate_limiter.acquire(stop):
            return Outcome(False, retryable=True, reason="stopped before sending")
        # No path: a v2 batch item that a v2 client left in the spool. It is the body /api/v2/entity takes.
        return self.request(op.method, op.path or ENTITY_PATH, op.data if op.method != "DELETE" else None)

    def deliver(
        self,
        ops: Sequence[WireOp],
        policy: RetryPolicy,
        report: _lanes.OpReport,
        wait: Callable[[float], bool],
        stop: threading.Event | None = None,
        more: Callable[[], Sequence[WireOp]] | None = None,
        delivered: Callable[[Sequence[WireOp]], None] | None = None,
    ) -> list[WireOp]:
        """Deliver ``ops`` (and those ``more()`` hands over) lane by lane, each op with its own retries."""
        return _lanes.deliver(functools.partial(self.attempt, stop=stop), self.concurrency, ops, policy, report,
                              wait, stop, more, delivered)

    def send(self, ops: Sequence[WireOp], stop: threading.Event | None = None) -> list[Outcome]:
        """One attempt for each op (a person's in order, people side by side); a failure holds back that
        person's later ops."""
        outcomes: dict[int, Outcome] = {}
        failed: dict[str, Outcome] = {}
        lock = threading.Lock()

        def one(op: WireOp) -> Outcome:
            with lock:
                earlier = failed.get(op.lane) if op.lane else None
            if earlier is not None:
                outcome = Outcome(False, True, earlier.status, "held back: an earlier op of this person failed",
                                  retry_after=earlier.retry_after)
            else:
                outcome = self.attempt(op, stop)
            with lock:
                outcomes[id(op)] = outcome
                if op.lane and not outcome.delivered and outcome.retryable:
                    failed.setdefault(op.lane, outcome)
            return DELIVERED if outcome.delivered else Outcome(False, reason="settled")

        # One attempt each: a policy that never retries, and every op settled through the outcomes above.
        _lanes.deliver(one, self.concurrency, ops, RetryPolicy(max_retries=0), _ignore, lambda _: False, stop, None)
        return [outcomes.get(id(op)) or Outcome(False, True, reason="stopped before sending") for op in ops]


def _ignore(error: DeliveryError, ops: Sequence[WireOp]) -> None:
    pass
