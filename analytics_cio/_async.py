"""``AsyncClient``: the client for asyncio applications (FastAPI, aiohttp, any event loop).

The calls are the ``Client``'s own: they only build and queue a message, so they never block the loop. What
waits, ``flush`` and ``shutdown``, is awaited: the waiting happens on a thread of its own (``_threadwait``), so the
event loop keeps serving while Customer.io answers.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from . import _threadwait
from ._client import Client
from ._errors import ArgumentValueError

if TYPE_CHECKING:
    from typing import Concatenate, ParamSpec

    _P = ParamSpec("_P")
_R = TypeVar("_R")


def _forward(method: Callable[Concatenate[Client, _P], _R]) -> Callable[Concatenate[AsyncClient, _P], _R]:
    """``AsyncClient.<name>``: the Client's method of that name, called on the wrapped client."""

    @functools.wraps(method)
    def call(self: AsyncClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(self.client, *args, **kwargs)

    call.__qualname__ = f"AsyncClient.{method.__name__}"
    return call


class AsyncClient:
    """A ``Client`` for asyncio code: the same constructor and calls, with ``flush`` and ``shutdown`` awaited.

    ``async with AsyncClient(...) as client:`` shuts it down on exit. It owns one ``Client`` (``client``), built
    from the same arguments, which holds the queue and the threads; ``sync_mode=True`` is refused, since it
    would send on the event loop's thread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        arguments = inspect.signature(Client).bind(*args, **kwargs).arguments
        if arguments.get("sync_mode"):
            raise ArgumentValueError("sync_mode", "AsyncClient cannot send on the calling thread (it is the event "
                                                  "loop's); leave it False: calls only queue, flush() is awaited")
        self.client = Client(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<analytics_cio.AsyncClient of {self.client!r}>"

    identify = _forward(Client.identify)
    track = _forward(Client.track)
    page = _forward(Client.page)
    screen = _forward(Client.screen)
    group = _forward(Client.group)
    alias = _forward(Client.alias)
    register_device = _forward(Client.register_device)
    remove_device = _forward(Client.remove_device)

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True once it is delivered or reported, False at ``timeout``.

        The loop keeps running meanwhile. Cancelling the await stops the waiting (its thread ends within 50 ms),
        not the delivery.
        """
        wait = self.client._start_flush()  # now: what is queued before the await is what it waits for
        if wait is None:
            return False
        return await _threadwait.run(functools.partial(_threadwait.sliced, wait, timeout), "analytics-cio-flush")

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued, then stop for good, within ``timeout`` (default ``shutdown_timeout``) plus a
        moment, whatever the server does. See ``Client.shutdown``.

        The loop keeps running meanwhile. A cancelled await does not cancel the shutdown: it completes on its
        thread within the same bound.
        """
        return await _threadwait.run(lambda cancelled: self.client.shutdown(timeout), "analytics-cio-shutdown")

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    @property
    def queue_size(self) -> int:
        """Messages and operations waiting to be delivered."""
        return self.client.queue_size


setattr(AsyncClient.__init__, "__signature__", inspect.signature(Client.__init__))  # noqa: B010
