"""Awaiting a blocking wait without blocking the event loop: the wait runs on a thread of its own.

Each wait gets a new daemon thread, not the loop's default executor: ``asyncio.run()`` joins the executor's
threads when it ends, so a long flush there would hold up the program's exit, and an executor's queue can make
one wait stand behind another. The thread owns nothing but its wait; the awaiting coroutine owns the result.

Cancelling the await sets the ``cancelled`` event handed to the wait, and the wait must then return within a
moment (:func:`sliced` does that for an ``Event.wait``-like call), so no thread is left blocked for a task that
is gone. A wait that cannot be cut short (a shutdown) must be bounded by itself; its result is then dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Callable, Final, TypeVar, cast

T = TypeVar("T")

SLICE: Final = 0.05  # seconds a cancelled wait may go on before its thread ends


async def run(wait: Callable[[threading.Event], T], name: str = "analytics-cio-wait") -> T:
    """Run ``wait(cancelled)`` on a new daemon thread; return (or raise) what it does, leaving the loop free."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    cancelled = threading.Event()

    def settle(result: T | None, error: BaseException | None) -> None:  # on the loop's thread
        if future.done():  # the await was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def target() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (wait(cancelled), None)
        except BaseException as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    try:
        return await future
    finally:
        cancelled.set()


def sliced(wait: Callable[[float], bool], timeout: float | None, cancelled: threading.Event) -> bool:
    """``wait(seconds)`` (True once done) called in slices of :data:`SLICE` until it is done (True), ``timeout``
    seconds have passed or ``cancelled`` is set (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = SLICE if deadline is None else max(0.0, min(SLICE, deadline - time.monotonic()))
        if wait(step):
            return True
        if cancelled.is_set() or (deadline is not None and time.monotonic() >= deadline):
            return False
