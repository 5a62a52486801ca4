"""Scripting the local Customer.io: answers a test imposes instead of Customer.io's.

A queued :class:`Reply` (:meth:`~analytics_cio.testing.LocalCustomerIO.script`) answers the next request;
:class:`Faults` may delay, drop or fail the requests no script answers. Neither reaches validation or state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union


@dataclass(frozen=True)
class Reply:
    """A scripted answer. ``body`` is JSON-encoded unless it is ``bytes`` or ``str`` (default ``{}``).

    ``delay`` seconds pass before answering; ``drop=True`` closes the connection with no answer at all (a reset),
    which the client sees as a connection error.
    """

    status: int = 200
    body: Any = None
    headers: Optional[Dict[str, str]] = None
    delay: float = 0.0
    drop: bool = False

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be 200-599, not {self.status}")
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        for name, value in (self.headers or {}).items():
            text = f"{name}{value}"
            if "\r" in text or "\n" in text or ":" in name or not text.isprintable() or not text.isascii():
                raise ValueError(f"invalid header {name!r}: {value!r}")
        if self.headers is not None:
            object.__setattr__(self, "headers", dict(self.headers))

    def encoded_body(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps({} if self.body is None else self.body, separators=(",", ":")).encode("utf-8")


@dataclass
class Faults:
    """Trouble for the requests no script answers, drawn per request from ``random.Random(seed)``.

    Each such request takes two draws, in arrival order: the first below ``drop_rate`` closes the connection
    unanswered, else the second below ``error_rate`` answers ``error_status`` (with ``Retry-After: retry_after``
    when the status is 429 or 503). ``latency`` seconds pass before any answer. So the n-th request's fate
    depends only on ``seed`` and n. Faulted requests are recorded (dropped ones with status 0), never applied.
    """

    error_rate: float = 0.0
    error_status: int = 500
    retry_after: Union[float, str, None] = None
    latency: float = 0.0
    drop_rate: float = 0.0
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if not (0.0 <= self.error_rate <= 1.0 and 0.0 <= self.drop_rate <= 1.0):
            raise ValueError("error_rate and drop_rate must be between 0 and 1")
        if not 400 <= self.error_status <= 599:
            raise ValueError("error_status must be 400-599")
        if self.latency < 0:
            raise ValueError("latency must not be negative")
