"""Celery workers: every event a task tracks is delivered, however the worker process ends.

    # where the Celery app is defined (celery.py, tasks.py)
    import analytics_cio.contrib.celery
    analytics_cio.contrib.celery.connect()

Celery's prefork children (billiard) end with ``os._exit`` from inside their loop, past ``atexit`` and every
finalizer, after ``--max-tasks-per-child`` tasks or when the pool shrinks. :func:`connect` hooks two signals:

- ``task_postrun``: after each task, flush what the task queued (bounded by ``flush_timeout``; a counter read
  when nothing is queued), so a child killed later loses nothing;
- ``worker_process_shutdown``: shut the clients down (bounded by ``shutdown_timeout``) before the child exits.

This module owns the set of clients it was asked to look after (``_targets``, under ``_lock``); the signal
receivers are connected once per process, with fixed ``dispatch_uid`` values.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Union

from .. import _lifecycle
from .._errors import ArgumentTypeError, ArgumentValueError

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["connect", "disconnect"]

_lock = threading.Lock()
_targets: weakref.WeakSet[Client] = weakref.WeakSet()
_every_client = False
_flush_timeout = 5.0
_shutdown_timeout: float | None = None
_connected = False


def connect(
    client: Union[Client, Iterable[Client], None] = None,
    *,
    flush_timeout: float = 5.0,
    shutdown_timeout: float | None = None,
) -> None:
    """Flush after each task and shut down when the worker process ends, for ``client``.

    ``client`` is a ``Client``, several, or None for every client of the process (the module facade's default
    client included, whenever it is built). Calling it again adds clients and updates the timeouts; it never
    connects a receiver twice. ``shutdown_timeout`` None means each client's own ``shutdown_timeout``.
    """
    global _every_client, _flush_timeout, _shutdown_timeout, _connected
    clients = _clients(client)
    for name, value in (("flush_timeout", flush_timeout), ("shutdown_timeout", shutdown_timeout)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ArgumentValueError(name, f"must be a number of seconds >= 0, not {value!r}")
    from celery import signals

    with _lock:
        if clients is None:
            _every_client = True
        else:
            _targets.update(clients)
        _flush_timeout = flush_timeout
        _shutdown_timeout = shutdown_timeout
        if _connected:
            return
        signals.task_postrun.connect(_after_task, weak=False, dispatch_uid="analytics_cio.flush")
        signals.worker_process_shutdown.connect(_at_process_shutdown, weak=False, dispatch_uid="analytics_cio.shutdown")
        _connected = True


def disconnect() -> None:
    """Undo :func:`connect`: disconnect both receivers and forget the clients."""
    global _every_client, _connected
    from celery import signals

    with _lock:
        signals.task_postrun.disconnect(_after_task, dispatch_uid="analytics_cio.flush")
        signals.worker_process_shutdown.disconnect(_at_process_shutdown, dispatch_uid="analytics_cio.shutdown")
        _targets.clear()
        _every_client = False
        _connected = False


def _clients(client: Union[Client, Iterable[Client], None]) -> list[Client] | None:
    from .._client import Client

    if client is None:
        return None
    if isinstance(client, Client):
        return [client]
    if isinstance(client, Iterable) and not isinstance(client, (str, bytes)):
        clients = list(client)
        if all(isinstance(c, Client) for c in clients):
            return clients
    raise ArgumentTypeError("client", f"must be a Client, an iterable of Clients, or None, not {client!r}")


def _chosen() -> list[Client] | None:
    """The clients to act on now; None for every client of the process."""
    with _lock:
        return None if _every_client else list(_targets)


def _after_task(**_: Any) -> None:
    clients = _chosen()
    if clients is None:
        _lifecycle.flush_all(_flush_timeout)
    else:
        _lifecycle.flush_clients(clients, _flush_timeout)


def _at_process_shutdown(**_: Any) -> None:
    clients = _chosen()
    if clients is None:
        _lifecycle.shutdown_all(_shutdown_timeout)
    else:
        _lifecycle.shutdown_clients(clients, _shutdown_timeout)
