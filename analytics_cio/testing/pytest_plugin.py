"""pytest fixtures for applications that use analytics_cio (registered automatically when it is installed).

- ``cio_capture``: everything the module facade (``analytics_cio.track(...)``, the Django app) and the clients
  the integrations built (each Flask app's) send during the test, captured instead of sent (see
  :func:`analytics_cio.testing.capture`).
- ``local_customerio``: a :class:`~analytics_cio.testing.LocalCustomerIO` serving on a free 127.0.0.1 port.

This module is imported by every pytest run in an environment where analytics-cio is installed, so it imports
nothing but pytest until a fixture is used (the packages above it load their names lazily for the same reason:
a test checks that requests, the client and the HTTP server stay unloaded).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from analytics_cio.testing import Captured, LocalCustomerIO


@pytest.fixture
def cio_capture() -> Iterator[Captured]:
    """What the module facade and every integration's client send during the test; nothing reaches the network."""
    from analytics_cio.testing import capture

    with capture() as captured:
        yield captured


@pytest.fixture
def local_customerio() -> Iterator[LocalCustomerIO]:
    """A local Customer.io on 127.0.0.1 (any credentials accepted); ``.url`` is the ``host`` to give a client."""
    from analytics_cio.testing import LocalCustomerIO

    with LocalCustomerIO() as server:
        yield server
