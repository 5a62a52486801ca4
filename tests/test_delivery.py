"""Delivery that loses nothing: faults, Retry-After, rate limits, fork, bounded shutdown, the spool."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

from analytics_cio import Client, RejectedError, RetriesExhaustedError, ShutdownError
from analytics_cio._retry import RetryPolicy
from analytics_cio._spool import SqliteSpool
from analytics_cio.testing._server import Faults, LocalCustomerIO, Reply

from .conftest import API_KEY, SITE_ID, Errors, spool_count


def fast(client: Client, **policy: Any) -> Client:
    """Retries in milliseconds, so fault tests stay quick; the policy's rules are unchanged."""
    client.policy = RetryPolicy(backoff_factor=0.01, max_backoff=0.05, **policy)
    return client


def event_names(server: LocalCustomerIO) -> list[str]:
    return [op["name"] for op in server.ops() if "name" in op]


# -- retries -------------------------------------------------------------------------------------------------


def test_a_flaky_server_loses_nothing_and_duplicates_nothing(make_client: Callable[..., Client],
                                                             server: LocalCustomerIO, errors: Errors) -> None:
    server.faults = Faults(error_rate=0.3, drop_rate=0.1, seed=7)
    client = fast(make_client(upload_size=50))
    for i in range(2000):
        client.track(f"user-{i % 37}", "Flaky", {"i": i})
    assert client.flush(timeout=60) is True
    assert errors == []
    assert sorted(op["attributes"]["i"] for op in server.ops()) == list(range(2000))
    assert server.state.duplicates == 0
    assert any(r.status >= 500 for r in server.requests) and any(r.status == 0 for r in server.requests)


def test_retry_after_is_honoured_and_pauses_the_whole_pipeline(make_client: Callable[..., Client],
                                                               server: LocalCustomerIO) -> None:
    server.script(Reply(429, headers={"Retry-After": "2"}))
    client = fast(make_client(upload_size=12, api_version="v1", thread=4))
    for i in range(12):
        client.track(f"user-{i}", "Paced", {"i": i})  # twelve people: twelve lanes that could go in parallel
    client.flush()
    refused = server.requests[0].received_at
    assert len(server.requests) == 13
    # Requests already on their way when the 429 came back arrive just after it; after that, nothing at all
    # until Retry-After has passed, on any of the four connections.
    during_pause = [r for r in server.requests[1:] if 0.5 < r.received_at - refused < 1.95]
    assert during_pause == []
    assert max(r.received_at for r in server.requests) - refused >= 1.95
    assert sorted(r.json()["data"]["i"] for r in server.requests if r.status == 200) == list(range(12))


def test_order_is_kept_across_retries(make_client: Callable[..., Client], server: LocalCustomerIO) -> None:
    server.script(Reply(503), Reply(500))
    client = fast(make_client(upload_size=3))
    for i in range(9):
        client.track("u", f"E{i}")
    client.flush()
    assert event_names(server) == [f"E{i}" for i in range(9)]


def test_the_deadline_bounds_retrying(make_client: Callable[..., Client], server: LocalCustomerIO,
                                      errors: Errors) -> None:
    server.faults = Faults(error_rate=1.0, error_status=503)
    client = make_client()
    client.policy = RetryPolicy(max_retries=1000, backoff_factor=0.05, max_backoff=0.1, deadline=1.0)
    _, msg = client.track("u", "Never")
    started = time.monotonic()
    assert client.flush(timeout=30) is True  # delivered or reported: here, reported
    assert time.monotonic() - started < 20
    assert errors.messages == [msg] and isinstance(errors[0][0], RetriesExhaustedError)
    assert "503" in str(errors[0][0])


def test_one_error_log_per_dropped_batch_not_per_attempt(make_client: Callable[..., Client],
                                                         server: LocalCustomerIO,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    server.faults = Faults(error_rate=1.0)
    client = fast(make_client(), max_retries=4)
    for i in range(5):
        client.track("u", f"E{i}")
    client.flush()
    assert len(server.requests) == 5
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1


# -- redirects, TLS, plain http ------------------------------------------------------------------------------


@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server that answers 307 to another local server, which records the headers it receives."""
    seen: list[dict[str, str]] = []

    class Target(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    target = ThreadingHTTPServer(("127.0.0.1", 0), Target)

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{target.server_port}/api/v2/batch")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    source = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (target, source)]
    for t in threads:
        t.start()
    yield f"http://127.0.0.1:{source.server_port}", seen
    for s in (source, target):
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_redirects_are_not_followed_so_credentials_stay_home(redirecting: tuple[str, list[dict[str, str]]],
                                                            errors: Errors, version: str) -> None:
    url, seen = redirecting
    client = Client(SITE_ID, API_KEY, host=url, on_error=errors, api_version=version)
    client.track("u", "E")
    client.flush()
    client.shutdown()
    assert seen == []  # the other host never saw the request, let alone the Authorization header
    assert isinstance(errors[0][0], RejectedError) and "redirected" in str(errors[0][0])


def test_tls_verification_is_on_and_plain_http_warns(caplog: pytest.LogCaptureFixture) -> None:
    secure = Client(SITE_ID, API_KEY)  # verification against a real self-signed server: tests/test_http.py
    assert secure.transport.base_url == "https://track.customer.io"  # type: ignore[attr-defined]
    assert Client(SITE_ID, API_KEY, region="eu").transport.base_url == "https://track-eu.customer.io"  # type: ignore[attr-defined]
    Client(SITE_ID, API_KEY, host="http://127.0.0.1:1")
    assert "plain http" in caplog.text


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_request_that_times_out_is_retried(make_client: Callable[..., Client], server: LocalCustomerIO,
                                             errors: Errors, version: str) -> None:
    server.script(Reply(200, delay=3.0))  # answers, but only after the client stopped waiting
    client = fast(make_client(api_version=version, timeout=0.5))
    client.track("u", "Slow")
    assert client.flush(timeout=30) is True
    assert errors == []
    assert server.wait_for(lambda s: len(s.requests) == 2, timeout=10)  # the slow one is recorded as it answers
    # The retry's copy; Customer.io drops a late duplicate by its id.
    assert [event["name"] for event in server.state.events()] == ["Slow"]


# -- rate limit ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_request_rate_limit(make_client: Callable[..., Client], server: LocalCustomerIO, version: str) -> None:
    client = make_client(api_version=version, max_requests_per_second=20, upload_size=1, thread=4)
    for i in range(21):
        client.track(f"user-{i}", "Limited")
    client.flush()
    arrivals = sorted(r.received_at for r in server.requests)
    assert len(arrivals) == 21
    assert arrivals[-1] - arrivals[0] >= 0.95  # 21 requests at 20/s span at least one second


# -- memory bound --------------------------------------------------------------------------------------------


def test_byte_budget_refuses_without_blocking_and_reports(make_client: Callable[..., Client],
                                                          server: LocalCustomerIO, errors: Errors) -> None:
    server.script(Reply(200, delay=1.0))  # the first batch is slow: the queue fills behind it
    client = make_client(max_queue_bytes=200_000, upload_size=1)
    results = []
    for i in range(400):
        results.append(client.track("u", "Big", {"blob": "x" * 2_000, "i": i})[0])
        time.sleep(0.002)
    assert False in results
    refused = results.count(False)
    assert len(errors) == refused and all(type(e).__name__ == "QueueFullError" for e, _ in errors)
    client.flush()
    delivered = [op for r in server.requests for op in r.json()["batch"]]  # the scripted answer bypasses state
    assert len(delivered) == results.count(True)


# -- fork ----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_worker_and_parent_keeps_its_queue(make_client: Callable[..., Client],
                                                                   server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=3600)
    client.track("parent", "Before fork")
    pid = os.fork()
    if pid == 0:  # the child: like a gunicorn --preload or Celery worker
        code = 1
        try:
            ok = client.track("child", "In child")[0]
            code = 0 if ok and client.flush(timeout=20) else 2
        finally:
            os._exit(code)
    client.track("parent", "After fork")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.flush(timeout=20) is True
    names = event_names(server)
    assert sorted(names) == ["After fork", "Before fork", "In child"]  # each once: nothing sent twice


# -- bounded flush and shutdown ------------------------------------------------------------------------------


def test_flush_with_timeout_returns_when_the_server_is_down(errors: Errors) -> None:
    client = Client(SITE_ID, API_KEY, host="http://127.0.0.1:9", on_error=errors, timeout=1)
    client.track("u", "Nowhere")
    started = time.monotonic()
    assert client.flush(timeout=1.0) is False
    assert time.monotonic() - started < 5
    assert client.shutdown(timeout=0.5) is False
    assert len(errors) == 1 and isinstance(errors[0][0], ShutdownError)


def test_shutdown_past_its_timeout_reports_what_is_left(make_client: Callable[..., Client],
                                                        server: LocalCustomerIO, errors: Errors) -> None:
    server.faults = Faults(error_rate=1.0)
    client = make_client(shutdown_timeout=0.5)
    sent = [client.track("u", f"E{i}")[1] for i in range(10)]
    started = time.monotonic()
    assert client.shutdown() is False
    assert time.monotonic() - started < 8
    assert sorted(m["messageId"] for m in errors.messages) == sorted(m["messageId"] for m in sent)


def test_join_waits_for_delivery_and_a_later_call_is_never_stranded(make_client: Callable[..., Client],
                                                                     server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=3600)
    client.track("u", "A")
    client.join()  # waits for delivery, as flush() does
    assert event_names(server) == ["A"]
    client.track("u", "B")  # the threads are still there: B goes with the next flush, or at exit
    assert client.flush(timeout=10) is True
    assert event_names(server) == ["A", "B"]


def test_exit_hook_is_bounded_and_reports(server: LocalCustomerIO, tmp_path: Any) -> None:
    server.faults = Faults(error_rate=1.0)
    script = textwrap.dedent(f"""
        import time, analytics_cio as analytics
        reported = []
        analytics.site_id, analytics.api_key, analytics.host = "s", "k", {server.url!r}
        analytics.shutdown_timeout = 1.0
        analytics.on_error = lambda e, ms: open({str(tmp_path / "reported")!r}, "a").write(
            type(e).__name__ + " %d\\n" % len(ms))
        for i in range(20):
            analytics.track("u", "Doomed", {{"i": i}})
    """)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert time.monotonic() - started < 20
    lines = (tmp_path / "reported").read_text().split()
    assert lines[0] == "ShutdownError" and sum(int(n) for n in lines[1::2]) == 20


# -- the spool -----------------------------------------------------------------------------------------------


def test_spool_survives_sigkill(server: LocalCustomerIO, tmp_path: Any) -> None:
    spool = tmp_path / "spool.db"
    server.faults = Faults(error_rate=1.0, error_status=503)  # an outage while the process dies
    script = textwrap.dedent(f"""
        import os, signal, time, analytics_cio as analytics
        client = analytics.Client("s", "k", host={server.url!r}, spool_path={str(spool)!r}, upload_interval=0.05)
        for i in range(300):
            client.track("user-%d" % (i % 7), "Durable", {{"i": i}})
        client.identify("user-1", {{"plan": "pro"}})
        while client._worker.spool is None or client._worker.spool.count() < 301:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert spool_count(spool) == 301
    assert server.ops() == []  # nothing got through during the outage

    server.faults = Faults()
    client = Client(SITE_ID, API_KEY, host=server.url, spool_path=str(spool), upload_interval=0.05)
    client.track("user-1", "After restart")
    assert client.flush(timeout=30) is True
    client.shutdown()
    names = event_names(server)
    assert names[:300] == ["Durable"] * 300 and names[-1] == "After restart"  # the backlog goes first
    assert sorted(op["attributes"]["i"] for op in server.ops() if op.get("name") == "Durable") == list(range(300))
    assert any(op["action"] == "identify" for op in server.ops())
    assert spool_count(spool) == 0


def test_spool_keeps_what_outlives_the_retry_deadline(server: LocalCustomerIO, tmp_path: Any,
                                                       errors: Errors) -> None:
    spool = str(tmp_path / "spool.db")
    server.faults = Faults(error_rate=1.0)
    client = Client(SITE_ID, API_KEY, host=server.url, spool_path=spool, on_error=errors, upload_interval=0.05,
                    shutdown_timeout=0.5)
    for i in range(5):
        client.track("u", "Outage", {"i": i})
    client.shutdown()
    assert spool_count(spool) == 5
    assert errors == []  # not lost, so not reported: kept for the next start

    server.faults = Faults()
    again = Client(SITE_ID, API_KEY, host=server.url, spool_path=spool, upload_interval=0.05)
    again.flush(timeout=10)
    again.shutdown()
    assert [op["attributes"]["i"] for op in server.ops()] == list(range(5))


def test_refused_ops_leave_the_spool(server: LocalCustomerIO, tmp_path: Any, errors: Errors) -> None:
    spool = str(tmp_path / "spool.db")
    server.script(Reply(400, {"errors": [{"reason": "invalid"}]}))
    client = Client(SITE_ID, API_KEY, host=server.url, spool_path=spool, on_error=errors, upload_interval=0.05)
    client.track("u", "Refused")
    client.flush()
    client.shutdown()
    assert spool_count(spool) == 0 and len(errors) == 1
    with pytest.raises(sqlite3.ProgrammingError):  # shutdown released the spool's connection
        client._worker.spool.count()  # type: ignore[union-attr]



def test_the_spool_takes_each_message_promptly_even_while_a_batch_is_held(server: LocalCustomerIO,
                                                                           tmp_path: Any) -> None:
    spool = tmp_path / "spool.db"
    client = Client(SITE_ID, API_KEY, host=server.url, spool_path=str(spool), upload_interval=3600)
    reader = SqliteSpool(spool)

    def spooled(n: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if reader.count() == n:
                return True
            time.sleep(0.01)
        return False

    client.track("u", "First")
    assert spooled(1)
    client.track("u", "Second")  # the first is held for an hour's batch: the second must not wait for it
    assert spooled(2)
    assert server.requests == []
    client.shutdown()
    assert reader.count() == 0 and len(server.ops()) == 2
    reader.close()


class _PatientPolicy(RetryPolicy):
    """Waits a minute before every retry: only a flush can make the retry happen sooner."""

    def delay(self, attempt: int, elapsed: float, retry_after: float | None = None) -> float | None:
        return 60.0 if attempt < 3 else None


def test_flush_cuts_a_backoff_wait_short(make_client: Callable[..., Client], server: LocalCustomerIO) -> None:
    server.script(Reply(500))
    client = make_client()
    client.policy = _PatientPolicy()
    client.track("u", "Retried")
    assert server.wait_for(lambda s: len(s.requests) == 1, timeout=10)
    assert client.flush(timeout=20) is True  # not after the 60 s backoff: the flush asked for a retry now
    assert event_names(server) == ["Retried"]


def test_flush_does_not_override_retry_after(make_client: Callable[..., Client], server: LocalCustomerIO,
                                            errors: Errors) -> None:
    server.script(Reply(429, headers={"Retry-After": "30"}))
    client = make_client()
    client.policy = _PatientPolicy()
    client.track("u", "Waits")
    assert server.wait_for(lambda s: len(s.requests) == 1, timeout=10)
    assert client.flush(timeout=1.0) is False  # the server asked for 30 s; a flush does not cut that
    assert len(server.requests) == 1
    # Nor does it hold a shutdown past its own timeout: what waits is reported, not waited out.
    started = time.monotonic()
    assert client.shutdown(timeout=0.5) is False
    assert time.monotonic() - started < 5
    assert [type(error) for error, _ in errors] == [ShutdownError]
    assert len(server.requests) == 1
