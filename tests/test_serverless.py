"""Serverless and one-shot code: ``with Client(...)`` and ``@flush_after`` deliver before the process may freeze,
and are bounded when the server never answers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable

import pytest

import analytics_cio
from analytics_cio import ArgumentError, Client, ClientClosedError, ShutdownError
from analytics_cio.testing._server import Faults, LocalCustomerIO

from ._raw import RawServer
from ._waiting import MAX_GAP, max_tick_gap, wait_until
from .conftest import API_KEY, SITE_ID, Errors

MakeClient = Callable[..., Client]
SLACK = 2.0  # seconds past a bound that a loaded 2-core machine may add


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
        assert wait_until(lambda: silent_server.requests)  # the batch is in flight, unanswered
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


# -- @flush_after ------------------------------------------------------------------------------------------


def test_flush_after_delivers_before_the_handler_returns(make_client: MakeClient, server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=5)  # without the flush, nothing would go for 5 s

    @client.flush_after
    def handler(event: dict[str, Any], context: object) -> dict[str, int]:
        """A Lambda handler."""
        for n in range(event["count"]):
            client.track("u1", f"E{n}")
        return {"statusCode": 200}

    assert handler({"count": 10}, None) == {"statusCode": 200}
    assert len(server.state.events()) == 10  # at once: no waiting after the return
    assert handler.__name__ == "handler" and handler.__doc__ == "A Lambda handler."
    assert inspect.signature(handler) == inspect.signature(handler.__wrapped__)  # type: ignore[attr-defined]


def test_flush_after_flushes_when_the_handler_raises(make_client: MakeClient, server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=5)
    problem = ValueError("bad input")

    @client.flush_after(timeout=3)
    def handler() -> None:
        client.track("u1", "Failed Import")
        raise problem

    with pytest.raises(ValueError) as raised:
        handler()
    assert raised.value is problem
    assert [e["name"] for e in server.state.events()] == ["Failed Import"]


def test_flush_after_is_bounded_when_the_server_never_answers(silent_server: RawServer, errors: Errors,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    client = Client(SITE_ID, API_KEY, host=silent_server.url, on_error=errors, shutdown_timeout=0.5)

    @client.flush_after(timeout=1)
    def handler() -> str:
        client.track("u1", "Stuck")
        return "done"

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        assert handler() == "done"
    assert time.monotonic() - started < 1 + SLACK
    assert "not everything was delivered within 1 s" in caplog.text
    assert errors == [] and client.queue_size == 1  # still queued, not given up
    client.shutdown()


def test_flush_after_async_handler(make_client: MakeClient, server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=5)

    @client.flush_after
    async def handler(count: int) -> int:
        for n in range(count):
            client.track("u1", f"E{n}")
        return count

    assert inspect.iscoroutinefunction(handler)
    assert asyncio.run(handler(5)) == 5
    assert len(server.state.events()) == 5

    @client.flush_after
    async def failing() -> None:
        client.track("u1", "Crashed")
        raise KeyError("x")

    with pytest.raises(KeyError):
        asyncio.run(failing())
    assert server.state.events()[-1]["name"] == "Crashed"


def test_flush_after_an_object_with_an_async_call(make_client: MakeClient, server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=5)

    class Handler:
        async def __call__(self, name: str) -> str:
            await asyncio.sleep(0.05)  # the flush must come after this, not when the coroutine is created
            client.track("u1", name)
            return name

    handler = client.flush_after(Handler())
    assert inspect.iscoroutinefunction(handler)
    assert asyncio.run(handler("Awaited")) == "Awaited"
    assert [e["name"] for e in server.state.events()] == ["Awaited"]


def test_flush_after_async_keeps_the_loop_running(server: LocalCustomerIO, make_client: MakeClient) -> None:
    server.faults = Faults(latency=1.0)
    client = make_client(upload_interval=5)

    @client.flush_after(timeout=5)
    async def handler() -> None:
        client.track("u1", "Slow")

    assert asyncio.run(max_tick_gap(handler())) < MAX_GAP
    assert len(server.state.events()) == 1


def test_module_flush_after_flushes_the_default_client(facade: Any, server: LocalCustomerIO) -> None:
    facade.upload_interval = 5

    @analytics_cio.flush_after
    def handler() -> None:
        analytics_cio.track("u1", "Via Facade")

    handler()
    assert [e["name"] for e in server.state.events()] == ["Via Facade"]
    assert "flush_after" in repr(analytics_cio.flush_after)


def test_flush_after_arguments_are_checked() -> None:
    with pytest.raises(ArgumentError, match="timeout: must be a number of seconds >= 0"):
        analytics_cio.flush_after(timeout=-1)
    with pytest.raises(ArgumentError, match="handler: must be a function to wrap, not int"):
        analytics_cio.flush_after(5)  # type: ignore[call-overload]
    assert analytics_cio.flush_after().timeout == 5.0


FREEZE_CHILD = textwrap.dedent("""
    import os, sys
    import analytics_cio

    analytics_cio.site_id = os.environ["SITE_ID"]
    analytics_cio.api_key = os.environ["API_KEY"]
    analytics_cio.host = os.environ["HOST"]
    analytics_cio.upload_interval = 5  # without a flush, nothing would go before the freeze

    def handler(event, context):
        for n in range(10):
            analytics_cio.track("u1", f"E{n}")
        return "ok"

    if sys.argv[1] == "flush_after":
        handler = analytics_cio.flush_after(handler)
    for line in sys.stdin:
        print(handler({}, None), flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
@pytest.mark.parametrize("decorated", [True, False])
def test_lambda_freeze_right_after_the_handler_returns(decorated: bool, server: LocalCustomerIO) -> None:
    env = {**os.environ, "SITE_ID": SITE_ID, "API_KEY": API_KEY, "HOST": server.url}
    with subprocess.Popen([sys.executable, "-c", FREEZE_CHILD, "flush_after" if decorated else "plain"], env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write("invoke\n")
            child.stdin.flush()
            assert child.stdout.readline() == "ok\n"
            child.send_signal(signal.SIGSTOP)  # what the Lambda runtime does once the handler has returned
            delivered = len(server.state.events())
            child.send_signal(signal.SIGCONT)
        finally:
            child.kill()
    assert delivered == (10 if decorated else 0)

