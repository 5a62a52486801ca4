"""``Client``: the object behind the module facade. Builds messages on the caller's thread, hands them to the
worker, and tells ``on_error`` about every message that is not delivered."""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

from . import _message
from ._encoding import encode
from ._errors import ArgumentTypeError, ArgumentValueError, DeliveryError, QueueFullError, ShutdownError
from ._limits import OP_BYTES, check_op, check_size
from ._mapping import MappingOptions, is_disabled, map_message
from ._message import Message
from ._ratelimit import RateLimiter
from ._retry import RetryPolicy
from ._transport import BatchTransport, RequestTransport, Transport, WireOp
from ._v1 import ENTITY_PATH
from ._worker import Worker, deliver

logger = logging.getLogger("analytics_cio")
logger.addHandler(logging.NullHandler())

OnError = Callable[[DeliveryError, Sequence[Message]], Any]
Result = tuple[bool, Message]

_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_debug_handler: logging.Handler | None = None


def _enable_debug_logging() -> None:
    global _debug_handler
    if _debug_handler is None:
        _debug_handler = logging.StreamHandler()
        _debug_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(_debug_handler)
    logger.setLevel(logging.DEBUG)


@atexit.register
def _flush_at_exit() -> None:
    """Deliver what is queued when the interpreter exits, within each client's ``shutdown_timeout``."""
    for client in list(_live_clients):
        try:
            client.shutdown()
        except Exception:
            logger.exception("analytics_cio: shutdown at exit failed")


class Client:
    """A Customer.io client with the API of Segment's analytics-python ``Client``.

    ``site_id`` and ``api_key`` are the workspace's Track API credentials. Calls return ``(ok, message)``
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
    ) -> None:
        if send and transport is None:
            for name, value in (("site_id", site_id), ("api_key", api_key)):
                if not isinstance(value, str) or not value:
                    raise ArgumentValueError(name, "is required (Customer.io > Settings > API Credentials)")
        _check_positive_int("max_queue_size", max_queue_size)
        _check_positive_int("max_queue_bytes", max_queue_bytes)
        _check_positive_int("upload_size", upload_size)
        _check_positive_int("thread", thread)
        _check_non_negative_int("max_retries", max_retries)
        for name, number in (("upload_interval", upload_interval), ("timeout", timeout),
                             ("retry_deadline", retry_deadline), ("shutdown_timeout", shutdown_timeout)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
                raise ArgumentValueError(name, f"must be a number of seconds >= 0, not {number!r}")
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

        self.site_id = site_id
        self.api_version = api_version
        self.on_error = on_error
        self.send = send
        self.sync_mode = sync_mode
        self.shutdown_timeout = shutdown_timeout
        self.debug = debug
        if debug:
            _enable_debug_logging()
        self.mapping_options = MappingOptions(
            convert_timestamps=convert_timestamps,
            screen_as=screen_as,
            device_token_event=device_token_event,
            send_lifecycle_events=send_lifecycle_events,
            email_as_id=email_as_id,
            object_type_id=str(object_type_id),
        )
        policy = RetryPolicy(max_retries=max_retries, deadline=retry_deadline)
        self._encode: Callable[[Any], bytes] = functools.partial(encode, convert_timestamps=convert_timestamps)
        if transport is None:
            kind = RequestTransport if api_version == "v1" else BatchTransport
            options: dict[str, Any] = {}
            if api_version == "v1":
                options["concurrency"] = thread
            transport = kind(
                site_id or "", api_key or "", encode=self._encode, region=region, host=host, timeout=timeout,
                gzip=gzip, proxies=proxies, rate_limiter=RateLimiter(max_requests_per_second), **options,
            )
        self.transport = transport
        spool = None
        if spool_path is not None:
            from ._spool import SqliteSpool

            spool = SqliteSpool(spool_path)
        self._worker = Worker(
            transport=transport,
            prepare=self._prepare,
            report=self._report,
            policy=policy,
            upload_size=upload_size,
            upload_interval=upload_interval,
            max_queue_size=max_queue_size,
            max_queue_bytes=max_queue_bytes,
            spool=spool,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        _live_clients.add(self)

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy, for the worker and ``sync_mode`` alike (``max_retries``, ``retry_deadline``)."""
        return self._worker.policy

    @policy.setter
    def policy(self, policy: RetryPolicy) -> None:
        self._worker.policy = policy

    def __repr__(self) -> str:  # the site id is not secret; the api key never appears
        return f"<analytics_cio.Client site_id={self.site_id!r} transport={self.transport!r}>"

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
        if self.sync_mode or not self.send:
            return True
        return self._worker.flush(timeout)

    def join(self) -> None:
        """Stop the worker thread after its current batch. Queued messages stay queued (a later call or flush
        starts the worker again; the exit hook delivers them)."""
        self._worker.join()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop for good (idempotent). Past ``timeout`` (default ``shutdown_timeout``), what is left
        is reported to ``on_error``. Later calls are refused with a warning."""
        with self._close_lock:
            if self._closed:
                return True
            self._closed = True
        _live_clients.discard(self)
        delivered = True
        if self.send and not self.sync_mode:
            delivered = self._worker.close(self.shutdown_timeout if timeout is None else timeout)
        self.transport.close()
        return delivered

    @property
    def queue_size(self) -> int:
        """Messages and operations waiting to be delivered."""
        return self._worker.queued()

    def _enqueue(self, message: Message) -> Result:
        if is_disabled(message["integrations"]):
            return True, message
        if self._closed:
            logger.warning("analytics_cio: the client was shut down; message refused")
            self._report(ShutdownError("the client was shut down; call refused"), [message])
            return False, message
        if not self.send:
            return True, message
        if self.sync_mode:
            return self._send_now(message), message
        if self._worker.put(message):
            return True, message
        self._report(QueueFullError("the queue is full; message refused"), [message])
        return False, message

    def _send_now(self, message: Message) -> bool:
        failures: list[DeliveryError] = []

        def report(error: DeliveryError, messages: Sequence[Message]) -> None:
            failures.append(error)
            self._report(error, messages)

        ops = self._prepare(message, report)
        if not ops:
            return not failures
        deliver(self.transport, self.policy, ops, report, _sleep)
        return not failures

    # -- the worker's side ---------------------------------------------------------------------------------

    def _prepare(self, message: Message, report: Optional[Callable[[DeliveryError, Sequence[Message]], None]] = None
                 ) -> list[WireOp]:
        """Map a message to operations, encode each once, and set aside those that break a limit."""
        report = report or self._report
        mapped = map_message(message, self.mapping_options)
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

    def _report(self, error: DeliveryError, messages: Sequence[Message]) -> None:
        unique = list({id(m): m for m in messages}.values())
        logger.error("analytics_cio: %d message(s) not delivered: %s", len(unique), error)
        if self.on_error is None:
            return
        try:
            self.on_error(error, unique)
        except Exception:
            logger.exception("analytics_cio: on_error raised; ignored")


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArgumentValueError(name, f"must be a positive integer, not {value!r}")


def _check_non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArgumentValueError(name, f"must be an integer >= 0, not {value!r}")
