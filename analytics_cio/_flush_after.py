"""``@flush_after``: deliver what a handler queued before the handler returns.

For processes that may be frozen or ended the moment a handler returns (AWS Lambda, Cloud Functions, cron jobs):
the background thread would otherwise hold the events until the next thaw, or for ever. A :class:`FlushAfter`
owns only its client's ``flush`` and its timeout; the client owns the queue.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Final, TypeVar, cast, overload

from ._errors import ArgumentTypeError, ArgumentValueError

logger = logging.getLogger("analytics_cio")

DEFAULT_TIMEOUT: Final = 5.0
F = TypeVar("F", bound=Callable[..., Any])
Flush = Callable[[float], bool]


class FlushAfter:
    """A decorator that flushes a client after every call of the handler it wraps, for at most ``timeout`` s.

    ``@flush_after`` (5 s) or ``@flush_after(timeout=2)``, on a plain function or an ``async def`` one (whose
    flush waits on a thread, so the event loop keeps running). The flush runs when the handler raises too; the
    handler's return value or exception, name, docstring and signature (``functools.wraps``) are kept. What is
    not delivered within the timeout stays queued (a WARNING says so) and is sent later.
    """

    def __init__(self, flush: Flush, timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ArgumentValueError("timeout", f"must be a number of seconds >= 0, not {timeout!r}")
        self._flush = flush
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"<analytics_cio flush_after timeout={self.timeout:g}>"

    @overload
    def __call__(self, handler: F, /) -> F: ...

    @overload
    def __call__(self, handler: None = None, /, *, timeout: float = ...) -> FlushAfter: ...

    def __call__(self, handler: Any = None, /, *, timeout: float | None = None) -> Any:
        if timeout is not None or handler is None:
            decorator = FlushAfter(self._flush, self.timeout if timeout is None else timeout)
            return decorator if handler is None else decorator(handler)
        if not callable(handler):
            raise ArgumentTypeError("handler", f"must be a function to wrap, not {type(handler).__name__} "
                                               "(use @flush_after or @flush_after(timeout=2))")
        import inspect

        call = type(handler).__call__  # an object whose __call__ is async is an async handler too
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call):
            return self._wrap_async(handler)
        return self._wrap(handler)

    def _wrap(self, handler: F) -> F:
        @functools.wraps(handler)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                self._flush_now()

        return cast(F, call)

    def _wrap_async(self, handler: F) -> F:
        from . import _threadwait

        @functools.wraps(handler)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            finally:  # bounded by the timeout, so a cancelled handler leaves no thread behind for long
                await _threadwait.run(lambda cancelled: self._flush_now(), "analytics-cio-flush-after")

        return cast(F, call)

    def _flush_now(self) -> None:
        """Flush; never raises, so the handler's own result or exception is what its caller gets."""
        try:
            done = self._flush(self.timeout)
        except Exception:
            logger.exception("analytics_cio: flush_after: the flush failed")
            return
        if not done:
            logger.warning("analytics_cio: flush_after: not everything was delivered within %g s; the rest stays "
                           "queued and is sent later", self.timeout)
