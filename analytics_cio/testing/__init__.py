"""Testing and local development without Customer.io.

- :func:`capture` / :class:`Captured` (and the pytest fixture ``cio_capture``): what the client would send, as
  Segment messages and as Customer.io operations, with no network.
- :class:`LocalCustomerIO` (and ``analytics-cio serve``): a real HTTP server implementing the Track API on
  127.0.0.1, keeping what it receives in memory and showing it at ``GET /`` and ``GET /_state``.
"""

from __future__ import annotations

from ._capture import Captured, CaptureTransport, People, capture
from ._server import Faults, LocalCustomerIO, RecordedRequest, Reply

__all__ = [
    "CaptureTransport",
    "Captured",
    "Faults",
    "LocalCustomerIO",
    "People",
    "RecordedRequest",
    "Reply",
    "capture",
]
