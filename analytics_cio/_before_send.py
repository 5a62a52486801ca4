"""The ``before_send`` hook: the application's last look at each message, on the caller's thread.

``before_send(message)`` returns the message to queue (the same dict changed, or a new one) or None to drop it on
purpose. The hook's own mistakes never cost the application a message or an exception: when it raises, or
returns something that is not a sendable message of the same type, the error is logged (once per kind of error)
and the message is queued as it was built.

A :class:`BeforeSend` belongs to one client and owns the hook, the count of messages it dropped and the kinds
of error already logged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from ._errors import ArgumentError, ArgumentTypeError
from ._message import Message, checked

logger = logging.getLogger("analytics_cio")

Hook = Callable[[Message], Optional[Message]]


class BeforeSend:
    """Runs one client's ``before_send`` hook and counts what it drops."""

    def __init__(self, hook: Hook) -> None:
        if not callable(hook):
            raise ArgumentTypeError("before_send", "must be callable as before_send(message) -> message or None")
        self.hook = hook
        self._lock = threading.Lock()
        self._dropped = 0
        self._logged: set[Any] = set()
        self._running = threading.local()  # a call made from inside the hook is not hooked again

    @property
    def dropped(self) -> int:
        """Messages the hook returned None for."""
        return self._dropped

    def __call__(self, message: Message) -> Message | None:
        """The message to queue, or None when the hook dropped it."""
        if getattr(self._running, "active", False):
            return message
        self._running.active = True
        try:
            returned = self.hook(message)
        except Exception as exc:
            self._log_once(type(exc), "before_send raised %s; the message is sent as built", exc)
            return message
        finally:
            self._running.active = False
        if returned is None:
            with self._lock:
                self._dropped += 1
            return None
        try:
            return checked(returned, message)
        except ArgumentError as exc:
            self._log_once(str(exc), "%s; the message is sent as built", exc)
            return message

    def _log_once(self, kind: Any, text: str, exc: Exception) -> None:
        with self._lock:
            if kind in self._logged:
                return
            self._logged.add(kind)
        shown = exc if isinstance(exc, ArgumentError) else f"{type(exc).__name__}: {exc}"
        logger.error("analytics_cio: " + text + " (logged once for each kind of error)", shown,
                     exc_info=not isinstance(exc, ArgumentError))
