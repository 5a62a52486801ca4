"""Both transports against raw-socket servers that answer in every shape, broken ones included.

Each test is a user's view: calls, flush/shutdown, then what the server received and what ``on_error`` got.
Nothing a server sends may make a message vanish, shift one request's answer onto another, hold a request past
its deadline, cost memory, or carry the credentials anywhere but the configured host.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from analytics_cio import Client, RejectedError, RetriesExhaustedError, ShutdownError
from analytics_cio._retry import RetryPolicy

from ._raw import CLOSE, Handler, RawProxy, RawServer, Request, ok, self_signed_certificate, servers

SITE_ID, API_KEY = "site-1", "secret-key-0123456789"
TOKEN = base64.b64encode(f"{SITE_ID}:{API_KEY}".encode()).decode()
VERSIONS = pytest.mark.parametrize("version", ["v2", "v1"])


class Errors(list):  # type: ignore[type-arg]
    def __call__(self, error: Exception, messages: list[Any]) -> None:
        self.append((error, list(messages)))

    def names(self) -> list[str]:
        return sorted(m["event"] for _, ms in self for m in ms)


@pytest.fixture
def started() -> Iterator[list[RawServer | RawProxy]]:
    yield from servers()


@pytest.fixture
def raw(started: list[RawServer | RawProxy]) -> Callable[..., RawServer]:
    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler, tls)
        started.append(server)
        return server

    return start


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.shutdown(timeout=2)


@pytest.fixture
def make(clients: list[Client]) -> Callable[..., tuple[Client, Errors]]:
    def build(version: str, url: str, retries: int = 1, **options: Any) -> tuple[Client, Errors]:
        errors = Errors()
        options.setdefault("upload_interval", 0.05)
        options.setdefault("max_requests_per_second", None)
        client = Client(SITE_ID, API_KEY, host=url, api_version=version, on_error=errors, **options)
        client.policy = RetryPolicy(max_retries=retries, backoff_factor=0.01, max_backoff=0.05,
                                    deadline=options.get("retry_deadline", 600.0))
        clients.append(client)
        return client, errors

    return build


def names_in(request: Request) -> list[str]:
    """The event names a request carries (v1: one; v2: every op of the batch)."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return []
    ops = body.get("batch", [body]) if isinstance(body, dict) else []
    return [op.get("name") for op in ops if isinstance(op, dict) and op.get("name")]


# -- the request on the wire, keep-alive, logging ------------------------------------------------------------


@VERSIONS
def test_one_request_on_the_wire(raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]],
                                 version: str) -> None:
    server = raw(lambda request, _: ok())
    client, errors = make(version, server.url)
    client.track("u-1", "Signed Up")
    assert client.flush(timeout=30) is True and errors == []
    (request,) = server.requests
    method, path, _ = request.line.split(" ")
    assert method == "POST"
    assert path == ("/api/v2/batch" if version == "v2" else "/api/v1/customers/u-1/events")
    assert request.header("authorization") == f"Basic {TOKEN}"
    assert request.header("host") == f"127.0.0.1:{server.port}"
    assert request.header("content-type") == "application/json"
    assert request.header("content-length") == str(len(request.body))
    assert names_in(request) == ["Signed Up"]


@VERSIONS
def test_keep_alive_reuses_one_connection(raw: Callable[..., RawServer],
                                          make: Callable[..., tuple[Client, Errors]], version: str) -> None:
    server = raw(lambda request, _: ok())
    client, errors = make(version, server.url)
    for i in range(3):
        client.track("u-1", f"E{i}")
        assert client.flush(timeout=30) is True
    assert len(server.requests) == 3 and server.stats.connections == 1 and errors == []


@VERSIONS
def test_debug_logs_each_request_and_its_result_never_the_credentials(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        caplog: pytest.LogCaptureFixture) -> None:
    server = raw(lambda request, _: ok(b'{"meta":{"error":"nope"}}', "400 Bad Request"))
    caplog.set_level(logging.DEBUG, logger="analytics_cio")
    client, errors = make(version, server.url, debug=True)
    client.track("u-1", "Logged")
    assert client.flush(timeout=30) is True and len(errors) == 1
    path = "/api/v2/batch" if version == "v2" else "/api/v1/customers/u-1/events"
    assert any(f"POST {path} -> 400 in " in r.getMessage() and " ms" in r.getMessage() for r in caplog.records)
    assert API_KEY not in caplog.text and TOKEN not in caplog.text


# -- answers that must not shift onto the next request ----------------------------------------------------------


def answer_per_name(first: bytes) -> Handler:
    """``first`` for the request carrying "A", 400 for "B-refused", 200 otherwise."""

    def handle(request: Request, _: socket.socket) -> bytes:
        if "A" in names_in(request):
            return first
        if "B-refused" in names_in(request):
            return ok(b'{"meta":{"error":"refused B"}}', "400 Bad Request")
        return ok()

    return handle


SHIFTED_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


@VERSIONS
@pytest.mark.parametrize("first", [
    b"HTTP/1.1 100 Continue\r\n\r\n" + SHIFTED_200,
    b"HTTP/1.1 102 Processing\r\n\r\n" + SHIFTED_200,
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + SHIFTED_200,
    b"HTTP/1.1 204 No Content\r\nContent-Length: " + str(len(SHIFTED_200)).encode() + b"\r\n\r\n" + SHIFTED_200,
    b"HTTP/1.1 204 No Content\r\n\r\n" + SHIFTED_200,
], ids=["100", "102", "103", "204-with-length", "204-with-body"])
def test_an_answer_never_lands_on_the_next_request(raw: Callable[..., RawServer],
                                                   make: Callable[..., tuple[Client, Errors]], version: str,
                                                   first: bytes) -> None:
    server = raw(answer_per_name(first))
    client, errors = make(version, server.url, retries=3)
    client.track("u-1", "A")
    assert client.flush(timeout=30) is True
    client.track("u-1", "B-refused")
    assert client.flush(timeout=30) is True
    by_name = {m["event"]: e for e, ms in errors for m in ms}
    # B was refused, and says so: the 200 left over from A's answer was never taken as B's.
    assert type(by_name.pop("B-refused")) is RejectedError and "refused B" in str(errors[-1][0])
    if first.startswith((b"HTTP/1.1 102", b"HTTP/1.1 103")):
        # An interim answer other than 100 is not read past (urllib3 does not): A's attempts fail and A is
        # reported, possibly delivered, never silently lost and never shifted.
        assert [type(e) for e in by_name.values()] == [RetriesExhaustedError]
        assert "interim HTTP" in str(by_name["A"])
    else:
        assert by_name == {}  # A was answered 2xx


# -- malformed answers: reported, never lost --------------------------------------------------------------------

MALFORMED = {
    "huge-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\n{}",
    "huge-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffffffff\r\n{}\r\n",
    "duplicate-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
    "chunk-0x-prefix": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    "negative-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n{}\r\n0\r\n\r\n",
    "no-crlf-after-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    "garbage": b"HELLO THERE\r\n\r\n",
    "half-a-status-line": b"HTTP/1.",
    "status-out-of-range": b"HTTP/1.1 999999999999999999999 Huge\r\nContent-Length: 0\r\n\r\n",
    "dropped": CLOSE,
}


@VERSIONS
@pytest.mark.parametrize("answer", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_answer_is_a_failed_attempt_and_every_message_is_accounted_for(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        answer: bytes) -> None:
    # Every request gets the broken answer, then the connection closes: no attempt can be taken as delivered
    # except where a 200 was readable, and every message must reach on_error or a readable 2xx.
    def handle(request: Request, conn: socket.socket) -> bytes:
        if answer:
            conn.sendall(answer)
        return CLOSE

    server = raw(handle)
    client, errors = make(version, server.url, retries=1, timeout=5)
    names = [f"E{i}" for i in range(20)]
    for i, name in enumerate(names):
        client.track(f"u-{i % 4}", name)
    started = time.monotonic()
    assert client.flush(timeout=60) is True
    assert time.monotonic() - started < 45
    reported = errors.names()
    assert len(reported) == len(set(reported))  # each at most once
    if answer.startswith(b"HTTP/1.1 200") and reported != sorted(names):
        # A 200 whose body framing is wrong but whose status was read: the message got through.
        assert set(reported) <= set(names)
    else:
        assert reported == sorted(names)
        assert all(isinstance(e, (RetriesExhaustedError, RejectedError)) for e, _ in errors)
    assert server.requests  # it did reach the server


@VERSIONS
def test_a_trickled_answer_cannot_outlast_the_timeout(raw: Callable[..., RawServer],
                                                      make: Callable[..., tuple[Client, Errors]],
                                                      version: str) -> None:
    def trickle(request: Request, conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b" " * 1000:
            conn.sendall(bytes([byte]))
            time.sleep(2)

    server = raw(trickle)
    client, errors = make(version, server.url, timeout=5, retry_deadline=20)
    client.policy = RetryPolicy(deadline=20)  # the default backoff, bounded by retry_deadline=20
    client.track("u-1", "Trickled")
    started = time.monotonic()
    assert client.flush(timeout=90) is True
    elapsed = time.monotonic() - started
    assert elapsed < 20 + 5 + 8  # the deadline, one last attempt, slack for a slow machine
    assert [type(e) for e, _ in errors] == [RetriesExhaustedError]
    assert "no complete answer within 5s" in str(errors[0][0])
    assert len(server.requests) >= 3


RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    from analytics_cio import Client
    errors = []
    client = Client("site", "key", host=sys.argv[1], api_version=sys.argv[2], max_retries=0,
                    upload_interval=0.01, on_error=lambda e, ms: errors.append(str(e)))
    client.track("u-1", "warm-up")   # imports, connections, threads: everything but the huge answer
    client.flush()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client.track("u-1", "huge")
    client.flush()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client.shutdown()
    print((after - before) // 1024, len(errors), len(errors[-1]) if errors else 0)
""")


@VERSIONS
def test_a_huge_answer_costs_no_memory(raw: Callable[..., RawServer], version: str) -> None:
    size = 300 * 1024 * 1024

    def huge(request: Request, conn: socket.socket) -> bytes | None:
        if "warm-up" in names_in(request):
            return ok()
        conn.sendall(f"HTTP/1.1 400 Bad Request\r\nContent-Length: {size}\r\n\r\n".encode())
        block = b"x" * 65536
        for _ in range(size // len(block)):
            conn.sendall(block)
        return CLOSE

    server = raw(huge)
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, server.url, version], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown_mb, reported, reason_chars = map(int, done.stdout.split())
    assert reported == 1 and reason_chars < 2000  # refused (400), with the start of the answer as its reason
    assert grown_mb < 8


# -- TLS: one trust store for both -------------------------------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    if not os.environ.get("ANALYTICS_CIO_REQUIRE_CRYPTOGRAPHY"):
        pytest.importorskip("cryptography")  # the test extra has it; CI requires it
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                 "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@VERSIONS
def test_a_certificate_that_fails_verification_is_reported_at_once(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        tls: tuple[ssl.SSLContext, Path], clean_env: pytest.MonkeyPatch) -> None:
    server = raw(lambda request, _: ok(), tls=tls[0])
    client, errors = make(version, server.url, retries=10)
    client.track("u-1", "Over TLS")
    assert client.flush(timeout=30) is True  # not retried for minutes: a bad certificate stays bad
    assert server.requests == []  # nothing was sent over the unverified connection
    assert [type(e) for e, _ in errors] == [RejectedError] and errors.names() == ["Over TLS"]
    assert "certificate verification failed" in str(errors[0][0]) and errors[0][0].status is None


@VERSIONS
@pytest.mark.parametrize("source", ["ca_certs", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "ca_certs-over-env",
                                    "SSL_CERT_FILE-over-REQUESTS_CA_BUNDLE"])
def test_the_ca_bundle_comes_from_the_option_then_the_environment(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str, source: str,
        tls: tuple[ssl.SSLContext, Path], clean_env: pytest.MonkeyPatch) -> None:
    import certifi

    server = raw(lambda request, _: ok(), tls=tls[0])
    ours, other = str(tls[1]), certifi.where()  # other: a real bundle that does not hold our certificate
    options: dict[str, Any] = {}
    if source == "ca_certs":
        options["ca_certs"] = ours
    elif source == "ca_certs-over-env":
        options["ca_certs"] = ours
        clean_env.setenv("SSL_CERT_FILE", other)
        clean_env.setenv("REQUESTS_CA_BUNDLE", other)
    elif source == "SSL_CERT_FILE-over-REQUESTS_CA_BUNDLE":
        clean_env.setenv("SSL_CERT_FILE", ours)
        clean_env.setenv("REQUESTS_CA_BUNDLE", other)
    else:
        clean_env.setenv(source, ours)
    client, errors = make(version, server.url, **options)
    client.track("u-1", "Trusted")
    assert client.flush(timeout=30) is True
    assert errors == [] and [names_in(r) for r in server.requests] == [["Trusted"]]


def test_a_ca_bundle_that_does_not_exist_is_refused_at_construction() -> None:
    from analytics_cio import ArgumentValueError

    with pytest.raises(ArgumentValueError, match="ca_certs"):
        Client(SITE_ID, API_KEY, ca_certs="/nonexistent/bundle.pem")


# -- proxies ---------------------------------------------------------------------------------------------------


@pytest.fixture
def proxy(started: list[RawServer | RawProxy]) -> RawProxy:
    server = RawProxy()
    started.append(server)
    return server


@VERSIONS
@pytest.mark.parametrize("how", ["option", "HTTPS_PROXY"])
def test_a_proxy_tunnels_https_and_never_sees_the_credentials(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str, how: str,
        proxy: RawProxy, tls: tuple[ssl.SSLContext, Path], clean_env: pytest.MonkeyPatch) -> None:
    server = raw(lambda request, _: ok(), tls=tls[0])
    options: dict[str, Any] = {"ca_certs": str(tls[1])}
    if how == "option":
        options["proxies"] = {"https": f"http://user:proxy-pass@127.0.0.1:{proxy.port}"}
    else:
        clean_env.setenv("HTTPS_PROXY", f"http://user:proxy-pass@127.0.0.1:{proxy.port}")
    client, errors = make(version, server.url, **options)
    client.track("u-1", "Proxied")
    assert client.flush(timeout=30) is True and errors == []
    (connect,) = proxy.heads
    assert connect.line.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.")
    assert connect.header("authorization") is None  # the Track API credentials stay inside the tunnel
    assert connect.header("proxy-authorization") == "Basic " + base64.b64encode(b"user:proxy-pass").decode()
    assert server.requests[0].header("authorization") == f"Basic {TOKEN}"
    assert "proxy-pass" not in repr(client) and "proxy-pass" not in repr(client.transport._pool)  # type: ignore[attr-defined]


@VERSIONS
def test_no_proxy_bypasses_the_environment_proxy(raw: Callable[..., RawServer],
                                                 make: Callable[..., tuple[Client, Errors]], version: str,
                                                 proxy: RawProxy, clean_env: pytest.MonkeyPatch) -> None:
    server = raw(lambda request, _: ok())
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    client, errors = make(version, server.url)
    client.track("u-1", "Direct")
    assert client.flush(timeout=30) is True and errors == []
    assert proxy.heads == [] and len(server.requests) == 1


@VERSIONS
def test_a_plain_http_proxy_forwards_and_an_explicit_option_ignores_the_environment(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        proxy: RawProxy, clean_env: pytest.MonkeyPatch) -> None:
    server = raw(lambda request, _: ok())
    clean_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: used, it would fail
    client, errors = make(version, server.url, proxies={"http": proxy.url})
    client.track("u-1", "Forwarded")
    assert client.flush(timeout=30) is True and errors == []
    (head,) = proxy.heads
    assert head.line.split(" ")[1].startswith(f"http://127.0.0.1:{server.port}/api/")


# -- redirects, credentials, dropped connections -----------------------------------------------------------------


@VERSIONS
@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect",
                                    "308 Permanent Redirect"])
def test_redirects_are_not_followed_and_the_credentials_go_nowhere_else(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        status: str) -> None:
    elsewhere = raw(lambda request, _: ok())
    server = raw(lambda request, _: f"HTTP/1.1 {status}\r\nLocation: {elsewhere.url}/api/v2/batch\r\n"
                                    "Content-Length: 0\r\n\r\n".encode())
    client, errors = make(version, server.url, retries=3)
    client.track("u-1", "Redirected")
    assert client.flush(timeout=30) is True
    assert elsewhere.requests == [] and len(server.requests) == 1
    assert [type(e) for e, _ in errors] == [RejectedError] and "redirected" in str(errors[0][0])


@VERSIONS
def test_dropped_connections_are_retried_on_a_new_connection(raw: Callable[..., RawServer],
                                                             make: Callable[..., tuple[Client, Errors]],
                                                             version: str) -> None:
    count = {"n": 0}

    def flaky(request: Request, _: socket.socket) -> bytes:
        count["n"] += 1
        return CLOSE if count["n"] % 2 else ok()

    server = raw(flaky)
    client, errors = make(version, server.url, retries=5)
    for i in range(3):
        client.track("u-1", f"E{i}")
        assert client.flush(timeout=30) is True
    assert errors == []
    delivered = [n for i, r in enumerate(server.requests) if i % 2 for n in names_in(r)]
    assert sorted(set(delivered)) == ["E0", "E1", "E2"]


# -- shutdown aborts what is in flight ----------------------------------------------------------------------------


@VERSIONS
def test_shutdown_aborts_a_request_in_flight_and_reports_it(raw: Callable[..., RawServer],
                                                            make: Callable[..., tuple[Client, Errors]],
                                                            version: str) -> None:
    release = threading.Event()

    def never(request: Request, _: socket.socket) -> bytes:
        release.wait(60)
        return CLOSE

    server = raw(never)
    before = set(threading.enumerate())
    client, errors = make(version, server.url, timeout=60)
    client.track("u-1", "Stuck")
    assert wait_for(lambda: len(server.requests) == 1)
    started = time.monotonic()
    assert client.shutdown(timeout=1) is False
    assert time.monotonic() - started < 4
    assert [type(e) for e, _ in errors] == [ShutdownError] and errors.names() == ["Stuck"]
    # The request itself returned: no thread of this client is left, waiting on the socket or otherwise.
    assert wait_for(lambda: not [t for t in threading.enumerate() if t not in before
                                 and t.name.startswith("analytics-cio")], timeout=5)
    release.set()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()

