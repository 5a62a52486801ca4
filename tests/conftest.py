"""Fixtures shared by the test suite: a local Customer.io, and clients pointed at it."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import pytest

import analytics_cio
from analytics_cio import Client, DeliveryError
from analytics_cio._spool import SqliteSpool
from analytics_cio.testing._server import LocalCustomerIO

from ._raw import CLOSE, RawServer, Request

SITE_ID = "test-site"
API_KEY = "test-secret-api-key-9f8e7d"
BASIC_TOKEN = base64.b64encode(f"{SITE_ID}:{API_KEY}".encode()).decode()


class Errors(list):  # type: ignore[type-arg]
    """What on_error received: (exception, messages) pairs."""

    def __call__(self, error: DeliveryError, messages: Sequence[Any]) -> None:
        self.append((error, list(messages)))

    @property
    def messages(self) -> list[Any]:
        return [m for _, ms in self for m in ms]


def spool_count(path: Any) -> int:
    """Operations in the spool at ``path``, read through a connection closed at once (Python 3.13 warns, and
    this suite fails, on a connection left to the garbage collector)."""
    spool = SqliteSpool(path)
    try:
        return spool.count()
    finally:
        spool.close()


@pytest.fixture
def server() -> Iterator[LocalCustomerIO]:
    with LocalCustomerIO() as local:
        yield local


@pytest.fixture
def errors() -> Errors:
    return Errors()


@pytest.fixture
def make_client(server: LocalCustomerIO, errors: Errors) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("host", server.url)
        options.setdefault("on_error", errors)
        options.setdefault("upload_interval", 0.05)
        options.setdefault("max_requests_per_second", None)
        client = Client(options.pop("site_id", SITE_ID), options.pop("api_key", API_KEY), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=5)


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


@pytest.fixture
def facade(server: LocalCustomerIO, errors: Errors) -> Iterator[Any]:
    """The module facade configured for the local server, restored afterwards."""
    saved = {name: getattr(analytics_cio, name) for name in analytics_cio._SETTINGS}
    analytics_cio.shutdown()
    analytics_cio.site_id = SITE_ID
    analytics_cio.api_key = API_KEY
    analytics_cio.host = server.url
    analytics_cio.on_error = errors
    analytics_cio.upload_interval = 0.05
    analytics_cio.max_requests_per_second = None
    yield analytics_cio
    analytics_cio.shutdown(timeout=5)
    for name, value in saved.items():
        setattr(analytics_cio, name, value)


@pytest.fixture
def silent_server() -> Iterator[RawServer]:
    """A server that reads every request and never answers (until the test ends)."""
    release = threading.Event()

    def never_answer(request: Request, conn: socket.socket) -> bytes:
        release.wait(60)
        return CLOSE

    server = RawServer(never_answer)
    yield server
    release.set()
    server.close()
