"""Testing and local development without Customer.io.

- :func:`capture` / :class:`Captured` (and the pytest fixture ``cio_capture``): what the client would send, as
  Segment messages and as Customer.io operations, with no network.
- :class:`LocalCustomerIO` (and ``analytics-cio serve``): a real HTTP server implementing the Track API (and
  Data Pipelines' ``/v1/batch``) on 127.0.0.1, keeping what it receives in memory and showing it at ``GET /``
  and ``GET /_state``.

The names are imported on first use: the pytest plugin lives in this package, and pytest loads it in every run
wherever analytics-cio is installed, so importing the package must not import the client or an HTTP server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._capture import Captured, CaptureTransport, People, PipelinesCaptureTransport, capture
    from ._server import Faults, LocalCustomerIO, RecordedRequest, Reply

__all__ = [
    "CaptureTransport",
    "Captured",
    "Faults",
    "LocalCustomerIO",
    "People",
    "PipelinesCaptureTransport",
    "RecordedRequest",
    "Reply",
    "capture",
]

_WHERE = {
    "CaptureTransport": "._capture", "Captured": "._capture", "People": "._capture", "capture": "._capture",
    "PipelinesCaptureTransport": "._capture",
    "Faults": "._server", "LocalCustomerIO": "._server", "RecordedRequest": "._server", "Reply": "._server",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
