"""The clients the framework integrations build, so that a capture of the app captures them too.

The Flask extension builds one ``Client`` per app, where the code under test never hands it to
:func:`analytics_cio.testing.capture`. Each integration announces what it builds here (:func:`built`); a capture
of the facade (``capture()``, the ``cio_capture`` fixture) takes the ones alive when it starts and is told of
each one built while it runs (:func:`watching`).

This module owns ``_alive`` and ``_watchers``, under ``_lock``; a watcher is called on the thread that built the
client, outside the lock.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .._client import Client

Watcher = Callable[["Client"], None]

_lock = threading.Lock()
_alive: weakref.WeakSet[Client] = weakref.WeakSet()
_watchers: list[Watcher] = []


def built(client: Client) -> None:
    """An integration built ``client`` for an app: remember it (weakly) and tell the active captures."""
    with _lock:
        _alive.add(client)
        watchers = list(_watchers)
    for watch in watchers:
        watch(client)


@contextlib.contextmanager
def watching(watch: Watcher) -> Iterator[list[Client]]:
    """Yields the integration clients alive now; ``watch(client)`` is called for each one built until the block
    ends. Each client is in exactly one of the two."""
    with _lock:
        _watchers.append(watch)
        alive = list(_alive)
    try:
        yield alive
    finally:
        with _lock:
            _watchers.remove(watch)
