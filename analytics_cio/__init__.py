"""analytics_cio: Segment's analytics-python API, delivered to Customer.io.

    import analytics_cio as analytics
    analytics.site_id = "..."
    analytics.api_key = "..."
    analytics.track("user-1", "Order Completed", {"total": 42})

or, to send to Customer.io Data Pipelines (Customer.io maps the messages; ``site_id``/``api_key`` left unset)::

    analytics.write_key = "..."

Module attributes configure the default client. Setting one after the first call takes effect on the next
call: the default client is rebuilt with the new settings, and the old one is shut down on a thread of its own
(its messages are delivered or reported; the call does not wait for it).
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Mapping
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any

from . import _lifecycle
from ._errors import (
    AnalyticsError,
    ArgumentError,
    ArgumentTypeError,
    ArgumentValueError,
    ClientClosedError,
    DeliveryError,
    LimitError,
    QueueFullError,
    RejectedError,
    RetriesExhaustedError,
    ShutdownError,
    UnmappableError,
)
from ._flush_after import FlushAfter as _FlushAfter
from ._lifecycle import shutdown_all
from ._regions import normalise_region as _normalise_region
from ._version import __version__

if TYPE_CHECKING:
    from ._async import AsyncClient
    from ._before_send import Hook
    from ._client import Client, OnError, Result
    from ._import_counts import ImportCounts
    from ._importer import import_partition
    from ._transport import Transport

# Imported on first use, not with the package: ``import analytics_cio`` (and so the pytest plugin that every
# pytest run in an environment with analytics-cio loads) stays free of requests, urllib3 and the client.
_LAZY = {"Client": "._client", "AsyncClient": "._async", "ImportCounts": "._import_counts",
         "import_partition": "._importer"}

__all__ = [
    "AnalyticsError",
    "ArgumentError",
    "ArgumentTypeError",
    "ArgumentValueError",
    "AsyncClient",
    "Client",
    "ClientClosedError",
    "DeliveryError",
    "ImportCounts",
    "LimitError",
    "QueueFullError",
    "RejectedError",
    "RetriesExhaustedError",
    "ShutdownError",
    "UnmappableError",
    "__version__",
    "alias",
    "flush",
    "flush_after",
    "group",
    "identify",
    "import_partition",
    "join",
    "page",
    "register_device",
    "remove_device",
    "screen",
    "shutdown",
    "shutdown_all",
    "track",
]

# -- settings of the default client (names and defaults as in analytics-python, plus Customer.io's) ---------
site_id: str | None = None
api_key: str | None = None
write_key: str | None = None  # a Data Pipelines source's API key: selects Data Pipelines instead of the Track API
region: str = "us"
host: str | None = None
api_version: str = "v2"
on_error: OnError | None = None
debug: bool = False
send: bool = True
sync_mode: bool = False
max_queue_size: int = 100_000
max_queue_bytes: int = 64 * 1024 * 1024
upload_size: int = 1000
upload_interval: float = 0.5
gzip: bool = False
timeout: float = 15
max_retries: int = 10
retry_deadline: float = 600.0
shutdown_timeout: float = 10.0
proxies: Mapping[str, str] | None = None
ca_certs: str | None = None
thread: int = 4
max_requests_per_second: float | None = 100
spool_path: str | None = None
convert_timestamps: bool = True
screen_as: str = "event"
device_token_event: str | None = None
send_lifecycle_events: bool = True
email_as_id: bool = True
object_type_id: str | int = "1"
before_send: Hook | None = None
transport: Transport | None = None  # where the default client sends (analytics_cio.testing.capture() sets it)

default_client: Client | None = None

_SETTINGS = (
    "site_id", "api_key", "region", "host", "api_version", "on_error", "debug", "send", "sync_mode",
    "max_queue_size", "max_queue_bytes", "upload_size", "upload_interval", "gzip", "timeout", "max_retries",
    "retry_deadline", "shutdown_timeout", "proxies", "thread", "max_requests_per_second", "spool_path",
    "convert_timestamps", "screen_as", "device_token_event", "send_lifecycle_events", "email_as_id",
    "object_type_id", "transport", "ca_certs", "before_send", "write_key",
)
_lock = threading.Lock()
_stale = False


class _Settings(types.ModuleType):
    """Notices when a setting changes, so the next call rebuilds the default client (one flag check a call)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "region":  # refused here, where it is set, rather than at the next call
            value = _normalise_region(value)
        super().__setattr__(name, value)
        if name in _SETTINGS:
            super().__setattr__("_stale", True)

    def __getattr__(self, name: str) -> Any:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        super().__setattr__(name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_LAZY))


sys.modules[__name__].__class__ = _Settings


def _default() -> Client:
    # (Not named _client: importing the submodule analytics_cio._client, now on first use, would rebind that name.)
    global default_client, _stale
    client = default_client
    if client is not None and not _stale:
        return client
    with _lock:
        if default_client is not None and not _stale:
            return default_client
        old = default_client
        settings = {name: globals()[name] for name in _SETTINGS}
        from ._client import Client

        default_client = Client(**settings)
        _stale = False
    if old is not None:  # on its own thread: the caller never waits for the old client's delivery
        _lifecycle.retire(old)
    return default_client


def identify(
    user_id: Any = None,
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> Result:
    """Create or update a person. See :meth:`Client.identify`."""
    return _default().identify(user_id, traits, context, timestamp, anonymous_id, integrations, message_id)


def track(
    user_id: Any = None,
    event: str | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> Result:
    """Record an event. See :meth:`Client.track`."""
    return _default().track(user_id, event, properties, context, timestamp, anonymous_id, integrations, message_id)


def page(
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
    """Record a page view. See :meth:`Client.page`."""
    return _default().page(user_id, category, name, properties, context, timestamp, anonymous_id, integrations,
                          message_id)


def screen(
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
    """Record a screen view. See :meth:`Client.screen`."""
    return _default().screen(user_id, category, name, properties, context, timestamp, anonymous_id, integrations,
                            message_id)


def group(
    user_id: Any = None,
    group_id: Any = None,
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Any = None,
    anonymous_id: Any = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> Result:
    """Create or update an object and relate the person to it. See :meth:`Client.group`."""
    return _default().group(user_id, group_id, traits, context, timestamp, anonymous_id, integrations, message_id)


def alias(
    previous_id: Any = None,
    user_id: Any = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Any = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> Result:
    """Merge two people. See :meth:`Client.alias`."""
    return _default().alias(previous_id, user_id, context, timestamp, integrations, message_id)


def register_device(
    user_id: Any,
    token: str,
    platform: str,
    attributes: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Any = None,
) -> Result:
    """Add or update a person's push device. See :meth:`Client.register_device`."""
    return _default().register_device(user_id, token, platform, attributes, context, timestamp)


def remove_device(user_id: Any, token: str, context: Mapping[str, Any] | None = None, timestamp: Any = None) -> Result:
    """Remove a person's push device. See :meth:`Client.remove_device`."""
    return _default().remove_device(user_id, token, context, timestamp)


def flush(timeout: float | None = None) -> bool:
    """Send everything queued now; True once all of it was delivered or reported, False at ``timeout``.

    What a default client that a setting change replaced still holds counts too."""
    deadline = None if timeout is None else _monotonic() + timeout
    done = _default().flush(timeout) if default_client is not None or site_id or write_key else True
    return done and _lifecycle.wait_retired(deadline)  # (not done: on a worker thread, which must not wait)


# ``@analytics_cio.flush_after`` / ``@analytics_cio.flush_after(timeout=2)``: the default client's flush after
# every call of the handler (see FlushAfter); the client is looked up at each flush, not when decorating.
flush_after = _FlushAfter(lambda timeout: flush(timeout))


def join() -> None:
    """Stop the worker thread after its current batch."""
    if default_client is not None:
        default_client.join()


def shutdown(timeout: float | None = None) -> bool:
    """Flush, then stop the default client for good."""
    global default_client
    deadline = None if timeout is None else _monotonic() + timeout
    client = default_client
    if client is None:
        return _lifecycle.wait_retired(deadline)
    default_client = None
    return client.shutdown(timeout) and _lifecycle.wait_retired(deadline)
