"""``Client``: the object behind the module facade. Builds messages on the caller's thread, hands them to the
worker, and tells ``on_error`` about every message that is not delivered."""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import _lifecycle, _message, _runtime
from ._before_send import BeforeSend, Hook
from ._delivery import deliver
from ._encoding import encode
from ._errors import ArgumentTypeError, ArgumentValueError, ClientClosedError, DeliveryError, QueueFullError
from ._flush_after import FlushAfter
from ._limits import OP_BYTES, check_op, check_size
from ._message import Message, is_disabled
from ._pipelines import PipelinesTransport
from ._ratelimit import RateLimiter
from ._regions import normalise_region
from ._retry import RetryPolicy
from ._transport import BatchTransport, RequestTransport, Transport, WireOp
from ._v1 import ENTITY_PATH
from ._worker import Worker

if TYPE_CHECKING:
    from ._mapping import Mapped, MappingOptions

# No NullHandler: with no logging set up by the application, Python's last-resort handler prints WARNING and
# ERROR records to stderr, so undelivered data is visible by default. An application that configures logging
# gets them through its own handlers only.
logger = logging.getLogger("analytics_cio")

OnError = Callable[[DeliveryError, Sequence[Message]], Any]
Result = tuple[bool, Message]


class _DebugLogging:
    """``debug=True``: DEBUG records of the ``analytics_cio`` logger to stderr while a debug client lives.

    One handler however many debug clients; the logger's level and handlers are restored when the last one
    shuts down, so a debug client does not change the process's logging for good.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._handler: logging.Handler | None = None
        self._saved_level = logging.NOTSET

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._handler = logging.StreamHandler(sys.stderr)
                self._handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
                self._saved_level = logger.level
                logger.addHandler(self._handler)
                logger.setLevel(logging.DEBUG)

    def release(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0 and self._handler is not None:
                logger.removeHandler(self._handler)
                logger.setLevel(self._saved_level)
                self._handler = None


_debug_logging = _DebugLogging()


class _Throttle:
    """At most one log line per ``seconds`` for a repeated condition (a queue that stays full), with a count."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = 0.0
        self._count = 0

    def due(self) -> int:
        """How many times it happened since the last line, when a line is due now; else 0."""
        self._count += 1
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + self.seconds
        count, self._count = self._count, 0
        return count


class Client:
    """A Customer.io client with the API of Segment's analytics-python ``Client``.

    ``site_id`` and ``api_key`` are the workspace's Track API credentials: this client maps each message to
    Track API operations. ``write_key`` (a Data Pipelines source's API key) sends the messages as they are to
    Customer.io Data Pipelines instead, which maps them on its side. Calls return ``(ok, message)``
    at once; messages are mapped, batched and delivered by a background thread (or on the calling thread with
    ``sync_mode=True``). Every message that is not delivered is passed to ``on_error(exc, messages)``.
    See the README for every option.
    """

    def __init__(
        self,
        site_id: str | None = None,
        api_key: str | None = None,
        host: str | None = None,
        debug: bool = False,
        max_queue_size: int = 100_000,
        send: bool = True,
        on_error: OnError | None = None,
        gzip: bool = False,
        max_retries: int = 10,
        sync_mode: bool = False,
        timeout: float = 15,
        proxies: Mapping[str, str] | None = None,
        thread: int = 4,
        upload_size: int = 1000,
        upload_interval: float = 0.5,
        *,
        region: str = "us",
        api_version: str = "v2",
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_requests_per_second: float | None = 100,
        retry_deadline: float = 600.0,
        shutdown_timeout: float = 10.0,
        spool_path: str | None = None,
        convert_timestamps: bool = True,
        screen_as: str = "event",
        device_token_event: str | None = None,
        send_lifecycle_events: bool = True,
        email_as_id: bool = True,
        object_type_id: str | int = "1",
        transport: Transport | None = None,
        ca_certs: str | None = None,
        before_send: Hook | None = None,
        write_key: str | None = None,
    ) -> None:
        _check_credentials(site_id, api_key, write_key, required=send and transport is None)
        _check_positive_int("max_queue_size", max_queue_size)
        _check_positive_int("max_queue_bytes", max_queue_bytes)
        _check_positive_int("upload_size", upload_size)
        _check_positive_int("thread", thread)
        _check_non_negative_int("max_retries", max_retries)
        for name, number in (("upload_interval", upload_interval), ("timeout", timeout),
                             ("retry_deadline", retry_deadline), ("shutdown_timeout", shutdown_timeout)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not number >= 0:  # NaN too
                raise ArgumentValueError(name, f"must be a number of seconds >= 0, not {number!r}")
        # A request needs some time, and a deadline (urllib3 refuses 0; an endless one is what timeout prevents);
        # a partial batch must go out some time. retry_deadline and shutdown_timeout may be endless.
        if not 0 < timeout < math.inf:
            raise ArgumentValueError("timeout", f"must be a positive, finite number of seconds, not {timeout!r}")
        if upload_interval == math.inf:
            raise ArgumentValueError("upload_interval", "must be a finite number of seconds, not inf")
        region = normalise_region(region)  # with a host or a transport too: a typo surfaces here, not later
        if api_version not in ("v1", "v2"):
            raise ArgumentValueError("api_version", f"must be 'v1' or 'v2', not {api_version!r}")
        if screen_as not in ("event", "screen"):
            raise ArgumentValueError("screen_as", f"must be 'event' or 'screen', not {screen_as!r}")
        if not callable(on_error):
            if on_error:
                raise ArgumentTypeError("on_error", "must be callable as on_error(exception, messages)")
            on_error = None  # any falsy value (False, as Segment's own tests set) means no callback, as in Segment
        if max_requests_per_second is not None and max_requests_per_second <= 0:
            raise ArgumentValueError("max_requests_per_second", "must be positive, or None for no limit")
        if ca_certs is not None and not (isinstance(ca_certs, str) and os.path.exists(ca_certs)):
            raise ArgumentValueError("ca_certs", f"must be the path of a CA bundle file or directory, not {ca_certs!r}")

        self.site_id = site_id
        self.write_key = write_key
        self.host = host
        self.gzip = gzip
        self.timeout = timeout
        self.api_version = api_version
        self.on_error = on_error
        self.send = send
        self.sync_mode = sync_mode
        # Where a background thread would starve (uWSGI without threads), calls send as with sync_mode.
        self._threads_starve = send and _runtime.threads_starve()
        if self._threads_starve and not sync_mode:
            _runtime.warn_threads_starve()
        self.shutdown_timeout = shutdown_timeout
        self.debug = debug
        self._debug_held = debug  # released once, by the first shutdown() to finish: shutdown() may be repeated
        if debug:
            _debug_logging.acquire()
        # The Track API mapping is imported when it is first needed: a Data Pipelines client never maps, and its
        # process is spared the module (about 1 MB).
        self._mapping_settings: dict[str, Any] = {
            "convert_timestamps": convert_timestamps, "screen_as": screen_as,
            "device_token_event": device_token_event, "send_lifecycle_events": send_lifecycle_events,
            "email_as_id": email_as_id, "object_type_id": str(object_type_id),
        }
        self._mapping: tuple[MappingOptions, Callable[[Message, MappingOptions], Mapped]] | None = None
        if write_key is None:
            self._load_mapping()
        policy = RetryPolicy(max_retries=max_retries, deadline=retry_deadline)
        self._encode: Callable[[Any], bytes] = functools.partial(encode, convert_timestamps=convert_timestamps)
        # Segment's spec keeps dates as ISO 8601 strings: Data Pipelines converts them itself.
        self._encode_segment: Callable[[Any], bytes] = functools.partial(encode, convert_timestamps=False)
        if transport is None and write_key is not None:
            transport = PipelinesTransport(
                write_key, encode=self._encode_segment, region=region, host=host, timeout=timeout, gzip=gzip,
                proxies=proxies, ca_certs=ca_certs, rate_limiter=RateLimiter(max_requests_per_second),
            )
        if transport is None:
            kind = RequestTransport if api_version == "v1" else BatchTransport
            options: dict[str, Any] = {}
            if api_version == "v1":
                options["concurrency"] = thread
            transport = kind(
                site_id or "", api_key or "", encode=self._encode, region=region, host=host, timeout=timeout,
                gzip=gzip, proxies=proxies, ca_certs=ca_certs, rate_limiter=RateLimiter(max_requests_per_second),
                **options,
            )
        self.transport = transport
        open_spool = None
        if spool_path is not None:
            from ._spool import SqliteSpool

            open_spool = functools.partial(SqliteSpool, spool_path)
        self._worker = Worker(
            transport=transport,
            prepare=self._prepare,
            compact=functools.partial(encode, convert_timestamps=False),
            report=self._report,
            policy=policy,
            upload_size=upload_size,
            upload_interval=upload_interval,
            max_queue_size=max_queue_size,
            max_queue_bytes=max_queue_bytes,
            open_spool=open_spool,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        self._queue_full_log = _Throttle(5.0)
        self._before_send = BeforeSend(before_send) if before_send else None  # None, False: no hook
        _lifecycle.track(self)

    @property
    def mapping_options(self) -> MappingOptions:
        """How messages map to Track API operations (``convert_timestamps``, ``screen_as`` and the others)."""
        return (self._mapping or self._load_mapping())[0]

    def _load_mapping(self) -> tuple[MappingOptions, Callable[[Message, MappingOptions], Mapped]]:
        from ._mapping import MappingOptions, map_message

        self._mapping = (MappingOptions(**self._mapping_settings), map_message)
        return self._mapping

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy, for the worker and ``sync_mode`` alike (``max_retries``, ``retry_deadline``)."""
        return self._worker.policy

    @policy.setter
    def policy(self, policy: RetryPolicy) -> None:
        self._worker.policy = policy

    def __repr__(self) -> str:  # no credential appears: the site id only by its first characters
        if self.write_key is not None and self.site_id is None:
            return f"<analytics_cio.Client transport={self.transport!r}>"
        shown = f"{self.site_id[:4]}…" if self.site_id else self.site_id
        return f"<analytics_cio.Client site_id={shown!r} transport={self.transport!r}>"

    # -- the calls -----------------------------------------------------------------------------------------

    def identify(
        self,
        user_id: Any = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Create or update a person; ``traits`` become their attributes."""
        message = _message.build("identify", user_id=user_id, anonymous_id=anonymous_id, context=context,
                                 timestamp=timestamp, integrations=integrations, message_id=message_id)
        message["traits"] = _message.properties("traits", traits)
        return self._enqueue(message)

    def track(
        self,
        user_id: Any = None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Record an event. Mobile lifecycle and Customer.io semantic events also manage devices and people."""
        name = _message.text("event", event, required=True)
        message = _message.build("track", user_id=user_id, anonymous_id=anonymous_id, context=context,
                                 timestamp=timestamp, integrations=integrations, message_id=message_id)
        message["event"] = name
        message["properties"] = _message.properties("properties", properties)
        return self._enqueue(message)

    def page(
        self,
        user_id: Any = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Record a page view (named by ``name``, else ``properties.url``, else ``context.page.url``)."""
        return self._view("page", user_id, category, name, properties, context, timestamp, anonymous_id,
                          integrations, message_id)

    def screen(
        self,
        user_id: Any = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Record a screen view: a ``Viewed {name} Screen`` event, or a native screen view (``screen_as``)."""
        return self._view("screen", user_id, category, name, properties, context, timestamp, anonymous_id,
                          integrations, message_id)

    def _view(self, kind: str, user_id: Any, category: Any, name: Any, properties: Any, context: Any,
              timestamp: Any, anonymous_id: Any, integrations: Any, message_id: Any) -> Result:
        checked_name = _message.text("name", name or None, required=False)
        checked_category = _message.text("category", category or None, required=False)
        message = _message.build(kind, user_id=user_id, anonymous_id=anonymous_id, context=context,
                                 timestamp=timestamp, integrations=integrations, message_id=message_id)
        message["name"] = checked_name
        message["category"] = checked_category
        message["properties"] = _message.properties("properties", properties)
        return self._enqueue(message)

    def group(
        self,
        user_id: Any = None,
        group_id: Any = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: Any = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Create or update a Customer.io object (``group_id``) and relate the person to it."""
        group = _message.identity("group_id", group_id)
        if not group:
            raise ArgumentValueError("group_id", "is required")
        message = _message.build("group", user_id=user_id, anonymous_id=anonymous_id, context=context,
                                 timestamp=timestamp, integrations=integrations, message_id=message_id)
        message["groupId"] = group
        message["traits"] = _message.properties("traits", traits)
        return self._enqueue(message)

    def alias(
        self,
        previous_id: Any = None,
        user_id: Any = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Merge the person ``previous_id`` into the person ``user_id``."""
        previous = _message.identity("previous_id", previous_id)
        user = _message.identity("user_id", user_id)
        if not previous:
            raise ArgumentValueError("previous_id", "is required")
        if not user:
            raise ArgumentValueError("user_id", "is required")
        message = _message.build("alias", user_id=user, anonymous_id=None, context=context, timestamp=timestamp,
                                 integrations=integrations, message_id=message_id)
        message["previousId"] = previous
        del message["anonymousId"]
        return self._enqueue(message)

    def register_device(
        self,
        user_id: Any,
        token: str,
        platform: str,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Any = None,
    ) -> Result:
        """Add or update a person's push device: a ``Device Created or Updated`` event carrying the token."""
        user = _message.identity("user_id", user_id)
        if not user:
            raise ArgumentValueError("user_id", "is required: Customer.io attaches devices to people")
        _message.text("token", token, required=True)
        _message.text("platform", platform, required=True)
        device_context = dict(context or {})
        device_context["device"] = {**dict(device_context.get("device") or {}), "token": token, "type": platform}
        return self.track(user, "Device Created or Updated", attributes, device_context, timestamp)

    def remove_device(self, user_id: Any, token: str, context: Mapping[str, Any] | None = None,
                      timestamp: Any = None) -> Result:
        """Remove a person's push device: a ``Device Deleted`` event carrying the token."""
        user = _message.identity("user_id", user_id)
        if not user:
            raise ArgumentValueError("user_id", "is required: Customer.io attaches devices to people")
        _message.text("token", token, required=True)
        device_context = dict(context or {})
        device_context["device"] = {**dict(device_context.get("device") or {}), "token": token}
        return self.track(user, "Device Deleted", None, device_context, timestamp)

    # -- queue and lifecycle -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; return once it is delivered or reported (True), or at ``timeout``."""
        wait = self._start_flush()
        return False if wait is None else wait(timeout)

    def _start_flush(self) -> Callable[[float | None], bool] | None:
        """Queue a flush now and return the wait for it, or None when it cannot happen (``Worker.start_flush``).
        ``AsyncClient`` waits on a thread, in slices."""
        if self._send_inline or not self.send:
            return _delivered
        return self._worker.start_flush()

    @property
    def flush_after(self) -> FlushAfter:
        """``@client.flush_after`` or ``@client.flush_after(timeout=2)``: flush this client after every call of the
        decorated handler (sync or async), for at most 5 s by default. See the README's serverless section."""
        return FlushAfter(self.flush)

    def join(self) -> None:
        """Wait until everything queued is delivered or reported (``flush()`` without a timeout).

        In analytics-python ``join()`` stops the consumer threads; here they stay ready for the next call,
        idle at no cost, so a call made after ``join()`` is never stranded. ``shutdown()`` stops them for good.
        """
        self.flush()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued, then stop for good (idempotent).

        Returns within ``timeout`` seconds (default ``shutdown_timeout``) plus a moment, even when a request
        never returns: what is not delivered by then, the batch in flight included, is reported to ``on_error``
        as a ``ShutdownError`` (or left in the spool). True when everything was delivered or reported in time.
        Later calls return ``(False, msg)`` and report ``ClientClosedError``; ``flush()`` returns False.
        """
        self._begin_shutdown()
        limit = self.shutdown_timeout if timeout is None else timeout
        return self._finish_shutdown(time.monotonic() + limit)

    def _begin_shutdown(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _lifecycle.forget(self)
        if self.send and not self._send_inline:
            self._worker.begin_close()

    def _finish_shutdown(self, deadline: float) -> bool:
        done = True
        if self.send and not self._send_inline:
            done = self._worker.finish_close(deadline)
        self.transport.close()
        with self._close_lock:
            held, self._debug_held = self._debug_held, False
        if held:
            _debug_logging.release()
        return done

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """``shutdown()``: returns within ``shutdown_timeout`` (10 s by default) plus a moment, whatever the
        server does; what is not delivered by then is reported. An exception from the block propagates."""
        self.shutdown()

    @property
    def _send_inline(self) -> bool:
        """Calls send on the calling thread: ``sync_mode``, or a process where the worker's threads starve."""
        return self.sync_mode or self._threads_starve

    @property
    def queue_size(self) -> int:
        """Messages and operations waiting to be delivered."""
        return self._worker.queued()

    @property
    def before_send_dropped(self) -> int:
        """Messages ``before_send`` dropped on purpose (returned None for); they are not errors."""
        return 0 if self._before_send is None else self._before_send.dropped

    def _enqueue(self, message: Message) -> Result:
        if self._before_send is not None:
            hooked = self._before_send(message)
            if hooked is None:
                return True, message
            message = hooked
        if is_disabled(message["integrations"]):
            return True, message
        if self._closed:
            self._report(ClientClosedError("the client was shut down; call refused"), [message])
            return False, message
        if not self.send:
            return True, message
        if self._send_inline:
            return self._send_now(message), message
        if self._worker.put(message):
            return True, message
        if self._worker._closed:  # shut down by another thread since the check above
            self._report(ClientClosedError("the client was shut down; call refused"), [message])
        else:
            self._report(QueueFullError("the queue is full; message refused"), [message])
        return False, message

    def _send_now(self, message: Message) -> bool:
        failures: list[DeliveryError] = []

        def report(error: DeliveryError, messages: Sequence[Message]) -> None:
            failures.append(error)
            self._report(error, messages)

        ops = self._prepare(message, report, queued=False)
        if not ops:
            return not failures
        deliver(self.transport, self.policy, ops, lambda error, wire: report(error, [message]), _sleep)
        return not failures

    # -- the worker's side ---------------------------------------------------------------------------------

    def _prepare(self, message: Message, report: Optional[Callable[[DeliveryError, Sequence[Message]], None]] = None,
                 queued: bool = True) -> list[WireOp]:
        """Map a message to operations, encode each once, and set aside those that break a limit."""
        report = report or self._report
        if getattr(self.transport, "segment", False):  # Data Pipelines: the message as it is, mapped by Customer.io
            return self._prepare_segment(message, report, queued)
        options, map_message = self._mapping or self._load_mapping()
        mapped = map_message(message, options)
        for error in mapped.errors:
            report(error, [message])
        prepared = []
        for op in mapped.ops:
            wire = self.transport.prepare(op, message)
            size = len(wire.data)
            # An operation sent as one v2 entity (the v1 transport's objects, and ids a v1 path would misread) is
            # held to the v2 operation limit whatever the transport.
            op_limit = OP_BYTES if wire.path == ENTITY_PATH else self.transport.max_op_bytes
            problem = check_op(op, size, self._encode) or check_size(size, op_limit, "operation")
            if problem is not None:
                report(problem, [message])
                continue
            prepared.append(wire)
        return prepared

    def _prepare_segment(self, message: Message, report: Callable[[DeliveryError, Sequence[Message]], None],
                         queued: bool) -> list[WireOp]:
        wire = self.transport.prepare(message, message)
        problem = check_size(len(wire.data), self.transport.max_op_bytes, "message")
        if problem is not None:
            report(problem, [message])
            return []
        if queued:
            # What waits in the queue is the message's own JSON: the dict is let go at once, and on_error gets it
            # back decoded from the very bytes that were sent.
            wire.compact(wire.data)
        return [wire]

    def _report(self, error: DeliveryError, messages: Sequence[Message]) -> None:
        """Tell the log and ``on_error`` about undelivered messages; nothing ``on_error`` does escapes."""
        unique = list({_identity(m): m for m in messages}.values())
        if isinstance(error, QueueFullError):  # a caller loop against a full queue: one line per 5 s, not per call
            count = self._queue_full_log.due()
            if count:
                logger.error("analytics_cio: %d message(s) refused: the queue is full (max_queue_size=%d, "
                             "max_queue_bytes=%d)", count, self._worker.max_queue_size, self._worker.max_queue_bytes)
        else:
            logger.error("analytics_cio: %d message(s) not delivered: %s", len(unique), error)
        on_error = self.on_error
        if on_error is None:
            return
        try:
            on_error(error, unique)
        except BaseException:  # SystemExit or KeyboardInterrupt included: the worker must live
            logger.exception("analytics_cio: on_error raised; ignored")


def _identity(message: Any) -> Any:
    """Messages are the same when their ids are (one message can be reported through several of its ops)."""
    if isinstance(message, Mapping):
        key = message.get("messageId")
        if isinstance(key, str):
            return key
    return id(message)


def _delivered(timeout: float | None) -> bool:
    return True


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _check_credentials(site_id: Any, api_key: Any, write_key: Any, required: bool) -> None:
    """Track API credentials or a Data Pipelines write key, never both; with ``required``, one of them."""
    if write_key is not None:
        if not isinstance(write_key, str) or not write_key.strip():
            raise ArgumentValueError("write_key", "must be a Data Pipelines API key (a non-empty string)")
        if site_id is not None or api_key is not None:
            raise ArgumentValueError(
                "write_key", "give either write_key (Data Pipelines) or site_id and api_key (Track API), not both"
            )
        return
    if not required:
        return
    for name, value in (("site_id", site_id), ("api_key", api_key)):
        if not isinstance(value, str) or not value:
            raise ArgumentValueError(
                name, "is required (Customer.io > Settings > API Credentials); or give write_key=... alone to send "
                "to Customer.io Data Pipelines",
            )


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArgumentValueError(name, f"must be a positive integer, not {value!r}")


def _check_non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArgumentValueError(name, f"must be an integer >= 0, not {value!r}")
