"""``AsyncClient``: the calls never block the event loop, nor do ``await flush()`` and ``await shutdown()``."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from analytics_cio import ArgumentError, AsyncClient, Client, ShutdownError
from analytics_cio.testing._server import Faults, LocalCustomerIO

from ._raw import RawServer
from ._waiting import MAX_GAP, max_tick_gap, wait_until
from .conftest import API_KEY, SITE_ID, Errors

SLACK = 2.0


@pytest.fixture
def make_async(server: LocalCustomerIO, errors: Errors) -> Iterator[type[AsyncClient]]:
    clients: list[AsyncClient] = []

    def make(**options: object) -> AsyncClient:
        options.setdefault("host", server.url)
        options.setdefault("on_error", errors)
        options.setdefault("max_requests_per_second", None)
        client = AsyncClient(SITE_ID, API_KEY, **options)
        clients.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in clients:
        client.client.shutdown(timeout=5)


def _waiting_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("analytics-cio-flush", "analytics-cio-shut"))]


def test_calls_queue_and_flush_delivers(make_async: type[AsyncClient], server: LocalCustomerIO,
                                        errors: Errors) -> None:
    async def main() -> bool:
        client = make_async(upload_interval=5)
        ok, message = client.identify("u1", {"plan": "pro"})
        assert ok and message["type"] == "identify"
        for call in (client.track("u1", "Paid"), client.page("u1", name="Home"), client.screen("u1", name="Cart"),
                     client.group("u1", "acme"), client.register_device("u1", "tok", "ios")):
            assert call[0]
        assert client.queue_size > 0
        return await client.flush()

    assert asyncio.run(main()) is True
    assert [e["name"] for e in server.state.events()] == ["Paid", "Home", "Viewed Cart Screen",
                                                         "Device Created or Updated"]
    assert errors == []


def test_flush_keeps_the_event_loop_running(make_async: type[AsyncClient], server: LocalCustomerIO) -> None:
    server.faults = Faults(latency=1.0)
    client = make_async(upload_interval=5)

    async def flush() -> None:
        client.track("u1", "Slow")
        started = time.monotonic()
        assert await client.flush() is True
        assert time.monotonic() - started >= 0.9  # it did wait for the slow server

    gap = asyncio.run(max_tick_gap(flush()))
    assert gap < MAX_GAP, gap
    assert len(server.state.events()) == 1

    async def blocking_flush() -> None:  # the control: the same wait on the loop's thread shows as a gap
        client.track("u1", "Slow")
        client.client.flush()

    assert asyncio.run(max_tick_gap(blocking_flush())) >= 0.9


def test_concurrent_flushes(make_async: type[AsyncClient], server: LocalCustomerIO) -> None:
    server.faults = Faults(latency=0.3)
    client = make_async(upload_interval=5)

    async def request(n: int) -> bool:
        client.track(f"u{n}", "Request")
        await asyncio.sleep(0.01 * n)
        return await client.flush(10)

    async def main() -> list[bool]:
        return list(await asyncio.gather(*(request(n) for n in range(8))))

    assert asyncio.run(max_tick_gap(main())) < MAX_GAP
    results = asyncio.run(main())
    assert results == [True] * 8
    assert len(server.state.events("Request")) == 16


def test_a_cancelled_flush_leaves_no_thread_behind(make_async: type[AsyncClient], server: LocalCustomerIO) -> None:
    server.faults = Faults(latency=2.0)
    client = make_async(upload_interval=5)

    async def main() -> None:
        client.track("u1", "Slow")
        waiting = asyncio.ensure_future(client.flush())
        await asyncio.sleep(0.2)
        assert _waiting_threads() == ["analytics-cio-flush"]
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
    assert wait_until(lambda: not _waiting_threads(), 1.0), _waiting_threads()
    assert client.client.flush(5)  # the delivery itself went on
    assert len(server.state.events()) == 1


def test_flush_timeout(make_async: type[AsyncClient], silent_server: RawServer) -> None:
    client = make_async(host=silent_server.url, upload_interval=0.01, shutdown_timeout=0.5)

    async def main() -> bool:
        client.track("u1", "Stuck")
        return await client.flush(0.5)

    started = time.monotonic()
    assert asyncio.run(main()) is False
    assert time.monotonic() - started < 0.5 + SLACK


def test_async_with_shutdown_is_bounded_when_the_server_never_answers(silent_server: RawServer,
                                                                      errors: Errors) -> None:
    async def main() -> AsyncClient:
        async with AsyncClient(SITE_ID, API_KEY, host=silent_server.url, on_error=errors, shutdown_timeout=1,
                               upload_interval=0.01) as client:
            client.track("u1", "Stuck")
        return client

    started = time.monotonic()
    gaps: list[float] = []

    async def measured() -> AsyncClient:
        task = asyncio.ensure_future(main())
        gaps.append(await max_tick_gap(task))
        return task.result()

    client = asyncio.run(measured())
    assert time.monotonic() - started < 1 + SLACK
    assert gaps[0] < MAX_GAP
    assert [type(e) for e, _ in errors] == [ShutdownError]
    assert client.track("u1", "late")[0] is False


def test_a_cancelled_shutdown_still_completes(silent_server: RawServer, errors: Errors) -> None:
    client = AsyncClient(SITE_ID, API_KEY, host=silent_server.url, on_error=errors, shutdown_timeout=0.5)

    async def main() -> None:
        client.track("u1", "Stuck")
        closing = asyncio.ensure_future(client.shutdown())
        await asyncio.sleep(0.1)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing

    asyncio.run(main())
    assert wait_until(lambda: not _waiting_threads(), 0.5 + SLACK), _waiting_threads()
    assert [type(e) for e, _ in errors] == [ShutdownError]


def test_same_constructor_and_calls_as_client() -> None:
    assert inspect.signature(AsyncClient) == inspect.signature(Client)
    for name in ("identify", "track", "page", "screen", "group", "alias", "register_device", "remove_device"):
        assert inspect.signature(getattr(AsyncClient, name)) == inspect.signature(getattr(Client, name)), name
    assert AsyncClient.track.__doc__ == Client.track.__doc__
    with pytest.raises(ArgumentError, match="sync_mode: AsyncClient cannot send on the calling thread"):
        AsyncClient(SITE_ID, API_KEY, sync_mode=True)
    with pytest.raises(TypeError):
        AsyncClient(SITE_ID, API_KEY, no_such_option=1)
    client = AsyncClient(SITE_ID, API_KEY, send=False)
    assert API_KEY not in repr(client) and "AsyncClient" in repr(client)
    asyncio.run(client.shutdown())


def test_import_stays_light() -> None:
    code = ("import sys, analytics_cio; assert 'analytics_cio._async' not in sys.modules; "
            "assert 'asyncio' not in sys.modules; analytics_cio.AsyncClient; "
            "assert 'analytics_cio._async' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_flush_after_or_during_shutdown_returns(silent_server: RawServer, errors: Errors) -> None:
    client = AsyncClient(SITE_ID, API_KEY, host=silent_server.url, on_error=errors, shutdown_timeout=0.5,
                         upload_interval=0.01)

    async def main() -> tuple[bool, bool, bool]:
        client.track("u1", "Stuck")
        waiting = asyncio.ensure_future(client.flush())  # no timeout: only the shutdown can end it
        await asyncio.sleep(0.1)
        closed = await client.shutdown()
        return await asyncio.wait_for(waiting, 5), closed, await asyncio.wait_for(client.flush(), 1)

    flushed, closed, after = asyncio.run(main())
    assert (closed, after) == (False, False)  # nothing was delivered; a flush after shutdown is refused at once
    assert flushed is True  # released: the message was reported, not left waiting
    assert [type(e) for e, _ in errors] == [ShutdownError]
