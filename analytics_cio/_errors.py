"""Exceptions raised or reported by analytics_cio.

The hierarchy::

    AnalyticsError
    ├── ArgumentError (AssertionError)        raised at the call: the caller passed something wrong
    │   ├── ArgumentValueError (ValueError)
    │   └── ArgumentTypeError (TypeError)
    └── DeliveryError                         handed to ``on_error``: why messages were not delivered
        ├── RejectedError                     Customer.io answered 4xx, or listed the op in a 207
        ├── RetriesExhaustedError             a retryable failure outlived max_retries or the deadline
        ├── LimitError                        a documented Customer.io limit was broken; never sent
        ├── UnmappableError                   the message has no Customer.io form (e.g. no person)
        ├── QueueFullError                    the queue's count or byte budget was reached
        └── ShutdownError                     the client shut down (or the process exited) first
            └── ClientClosedError             the call came after ``shutdown()``; refused at the call

``ArgumentError`` subclasses ``AssertionError`` because that is what analytics-python raises, so code with
``except AssertionError`` keeps working, and ``ValueError``/``TypeError`` so that idiomatic code works too.
"""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base class of every exception this library raises or reports."""


class ArgumentError(AnalyticsError, AssertionError):
    """A call was given an argument it cannot accept; the message names the argument."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {problem}")


class ArgumentValueError(ArgumentError, ValueError):
    """An argument has the right type but a value that cannot be used."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument has the wrong type."""


class DeliveryError(AnalyticsError):
    """Why messages were not delivered to Customer.io. Passed to ``on_error(exc, messages)``.

    ``status`` is the HTTP status when Customer.io answered, ``field`` the field it (or a limit) names.
    """

    def __init__(self, reason: str, *, status: int | None = None, field: str | None = None) -> None:
        self.reason = reason
        self.status = status
        self.field = field
        super().__init__(reason)


class RejectedError(DeliveryError):
    """Customer.io refused the operation (4xx, or listed in a 207 answer). It is not retried."""


class RetriesExhaustedError(DeliveryError):
    """Every attempt failed with a retryable error, until ``max_retries`` or the retry deadline."""


class LimitError(DeliveryError):
    """The operation breaks one of Customer.io's documented limits, so it was not sent."""


class UnmappableError(DeliveryError):
    """The message has no Customer.io operation (for instance an identify with no user id or email)."""


class QueueFullError(DeliveryError):
    """The queue was full (``max_queue_size`` or ``max_queue_bytes``); the message was refused."""


class ShutdownError(DeliveryError):
    """The client was shut down, or the process exited, before the message could be delivered."""


class ClientClosedError(ShutdownError):
    """The call was made after ``shutdown()``: the call returned ``(False, msg)`` and nothing was queued."""
