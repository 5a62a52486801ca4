"""Serverless and one-shot code: ``with Client(...)`` and ``@flush_after`` deliver before the process may freeze,
and are bounded when the server never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from analytics_cio import Client, ClientClosedError, ShutdownError
from analytics_cio.testing._server import LocalCustomerIO

from ._raw import CLOSE, RawServer, Request
from .conftest import API_KEY, SITE_ID, Errors

SLACK = 2.0  # seconds past a bound that a loaded 2-core machine may add


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


# -- with Client(...) ----------------------------------------------------------------------------------------


def test_with_block_delivers_everything(server: LocalCustomerIO, errors: Errors) -> None:
    with Client(SITE_ID, API_KEY, host=server.url, on_error=errors) as client:
        for n in range(5):
            client.track("u1", f"E{n}")
    assert [e["name"] for e in server.state.events()] == [f"E{n}" for n in range(5)]
    assert errors == []
    assert client.track("u1", "late") == (False, errors.messages[0])
    assert isinstance(errors[0][0], ClientClosedError)


def test_with_block_exit_is_bounded_when_the_server_never_answers(silent_server: RawServer, errors: Errors) -> None:
    started = time.monotonic()
    with Client(SITE_ID, API_KEY, host=silent_server.url, on_error=errors, shutdown_timeout=1,
                upload_interval=0.01) as client:
        client.track("u1", "Stuck")
        assert _wait(lambda: silent_server.requests)  # the batch is in flight, unanswered
    elapsed = time.monotonic() - started
    assert elapsed < 1 + SLACK, elapsed
    assert [type(e) for e, _ in errors] == [ShutdownError]
    assert [m["event"] for m in errors.messages] == ["Stuck"]


def test_with_block_shuts_down_when_the_block_raises(silent_server: RawServer, errors: Errors) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="handler failed"), \
            Client(SITE_ID, API_KEY, host=silent_server.url, on_error=errors, shutdown_timeout=0.5) as client:
        client.track("u1", "Before the crash")
        raise RuntimeError("handler failed")
    assert time.monotonic() - started < 0.5 + SLACK
    assert [m["event"] for m in errors.messages] == ["Before the crash"]
    assert client.flush() is False  # shut down for good


def _wait(condition: Callable[[], Any], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False
