"""An outsider's attacks on the README's promises ("Guarantees", "Configuration"), each test named for the promise
it tries to break, against real servers on 127.0.0.1: raw-socket ones that answer in hostile shapes, and the local
Customer.io. The other test files cover the common cases; these are the odd ones an adversarial user tries.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import pytest

from analytics_cio import ArgumentError, Client, DeliveryError, RejectedError, _encoding
from analytics_cio._retry import RetryPolicy
from analytics_cio.testing._server import Faults, LocalCustomerIO

from . import conftest
from ._raw import RawServer, Request, ok

SITE_ID, API_KEY = "site-attack", "attack-secret-key-5f4e3d2c"
TOKEN = base64.b64encode(f"{SITE_ID}:{API_KEY}".encode()).decode()
VERSIONS = pytest.mark.parametrize("version", ["v2", "v1"])


class Errors(conftest.Errors):
    """What on_error received: (exception, messages) pairs."""

    def events(self) -> list[str]:
        return sorted(m["event"] for _, ms in self for m in ms)


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[Request, socket.socket], bytes | None]], RawServer]]:
    """Starts raw-socket servers (``tests/_raw.py``), closed after the test."""
    made: list[RawServer] = []

    def start(handler: Callable[[Request, socket.socket], bytes | None]) -> RawServer:
        made.append(RawServer(handler))
        return made[-1]

    yield start
    for server in made:
        server.close()


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[Client, Errors]]]:
    """Builds clients with quick retries and their own on_error record; each is shut down after the test."""
    made: list[Client] = []

    def build(url: str, version: str = "v2", retries: int = 1, **options: Any) -> tuple[Client, Errors]:
        errors = Errors()
        options.setdefault("upload_interval", 0.05)
        options.setdefault("max_requests_per_second", None)
        client = Client(SITE_ID, API_KEY, host=url, api_version=version, on_error=errors, **options)
        client.policy = RetryPolicy(max_retries=retries, backoff_factor=0.01, max_backoff=0.05)
        made.append(client)
        return client, errors

    yield build
    for client in made:
        client.shutdown(timeout=2)


def batch_size(request: Request) -> int:
    return len(json.loads(request.body)["batch"])


# -- Security: "they never appear in logs (DEBUG included), exception messages or reprs" --------------------------


@VERSIONS
@pytest.mark.parametrize("status", ["401 Unauthorized", "500 Internal Server Error"])
def test_credentials_never_appear_in_exceptions_or_logs_even_when_a_server_echoes_the_request(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str, status: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # A debugging proxy or a misconfigured gateway answers with the request it got, Authorization header
    # included: as plain text, or inside Customer.io's JSON error shape with "/" escaped as "\/" (as PHP writes
    # it), the token straddling the point where a reason is cut short.
    def echo(request: Request, _: socket.socket) -> bytes:
        head = request.head.decode("latin-1")
        if "E0" in request.body.decode():
            return ok(head.encode(), status)
        pad = "x" * (500 - head.index(TOKEN) - len(TOKEN) // 2)
        text = json.dumps({"meta": {"error": pad + head}, "errors": [{"field": head, "reason": head}]})
        return ok(text.replace("/", "\\/").encode(), status)

    server = raw(echo)
    caplog.set_level(logging.DEBUG, logger="analytics_cio")
    client, errors = make(server.url, version, debug=True)
    for i in range(2):  # one request each (v2 too), one echoed as text, the other as JSON
        client.track("u-1", f"E{i}")
        assert client.flush(timeout=30) is True
    assert errors.events() == ["E0", "E1"]
    assert all(TOKEN in r.head.decode() for r in server.requests)  # it did reach the server, and came back
    told = " ".join(f"{e} {e.field} {e!r}" for e, _ in errors) + caplog.text
    for secret in (TOKEN, TOKEN[:12], TOKEN[-12:], API_KEY):
        assert secret not in told
    assert "***" in told


# -- "RejectedError ... listed in a 207 (only those ops)"; "a 207 that did not list it" is delivered ------------


def test_a_207_listing_many_refused_ops_reports_every_one_of_them(raw: Callable[..., RawServer],
                                                                  make: Callable[..., tuple[Client, Errors]]) -> None:
    # Customer.io's error list for a big batch is longer than the 8 KB an ordinary answer is read to: cut short,
    # it listed nothing, and 100 refused operations counted as delivered.
    def partial(request: Request, _: socket.socket) -> bytes:
        listed = [{"batch_index": i, "reason": "invalid", "field": "attributes",
                   "message": "attribute value exceeds 1000 bytes"} for i in range(0, batch_size(request), 2)]
        body = json.dumps({"errors": listed}).encode()
        assert len(body) > 8192
        return ok(body, "207 Multi-Status")

    server = raw(partial)
    client, errors = make(server.url)
    for i in range(200):
        client.track("u-1", f"E{i:03}")
    assert client.flush(timeout=30) is True
    assert len(server.requests) == 1  # one batch, never re-sent
    assert errors.events() == [f"E{i:03}" for i in range(0, 200, 2)]
    assert all(isinstance(e, RejectedError) and e.status == 207 and e.field == "attributes" for e, _ in errors)


@pytest.mark.parametrize("index", [True, -1, "0", 0.0, 10**30, None])
def test_a_207_entry_whose_batch_index_is_no_index_of_the_batch_refuses_nothing(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], index: Any) -> None:
    body = json.dumps({"errors": [{"batch_index": index, "reason": "invalid"}]}).encode()
    server = raw(lambda request, _: ok(body, "207 Multi-Status"))
    client, errors = make(server.url)
    for i in range(3):
        client.track("u-1", f"E{i}")
    assert client.flush(timeout=30) is True
    assert errors == [] and len(server.requests) == 1


# -- The spool: "The database, its WAL and the lock files are created 0600" ---------------------------------------


def test_spool_files_are_private_even_under_umask_0_and_over_an_existing_world_readable_file(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], tmp_path: Path) -> None:
    server = raw(lambda request, _: ok())
    existing = tmp_path / "existing.sqlite"
    existing.touch()
    os.chmod(existing, 0o644)  # made by a deploy script, or by `touch` under umask 022
    database = tmp_path / "database.sqlite"
    sqlite3.connect(database).execute("CREATE TABLE t (x)").connection.close()  # a spool from an older release
    os.chmod(database, 0o644)
    other = tmp_path / "notes.txt"  # a spool_path pointing at the wrong file: refused, its mode left alone
    other.write_text("not a database")
    os.chmod(other, 0o644)
    previous = os.umask(0)
    try:
        client, errors = make(server.url, spool_path=str(other))
        client.track("u-1", "From memory")
        assert client.flush(timeout=30) is True and errors == []
        assert stat.S_IMODE(other.stat().st_mode) == 0o644
        for path in (tmp_path / "new-dir" / "cio.sqlite", existing, database):
            client, errors = make(server.url, spool_path=str(path))
            client.track("u-1", "Spooled")
            assert client.flush(timeout=30) is True and errors == []
            files = sorted(path.parent.glob(path.name + "*"))
            assert {f.name[len(path.name):].split("-owner-")[0] for f in files} >= {"", "-wal", "-shm"}
            for file in files:
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
            client.shutdown(timeout=5)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new-dir").stat().st_mode) == 0o700  # not 0777: no one else may swap files
    assert len(server.requests) == 4


# -- "Changing a module setting rebuilds the default client at once and shuts the old one down on a thread of its
# -- own: the call never waits for it, and its messages are still delivered or reported" ---------------------------

SETTING_THEN_EXIT = textwrap.dedent("""
    import sys
    import analytics_cio as analytics
    analytics.site_id, analytics.api_key, analytics.host = "site", "key", sys.argv[1]
    analytics.upload_interval, analytics.max_requests_per_second, analytics.upload_size = 0.01, None, 10
    analytics.on_error = lambda error, messages: print("reported", len(messages), flush=True)
    for i in range(100):
        analytics.track("u-1", f"Old {i}")
    analytics.gzip = False   # any setting: the next call rebuilds the default client
    analytics.track("u-1", "New")
    if sys.argv[2] == "flush":
        print("flushed", analytics.flush(timeout=60), flush=True)
    # and the process ends at once, the old client still delivering on its own thread
""")


@pytest.mark.parametrize("ending", ["exit", "flush"])
def test_a_setting_change_right_before_exit_or_flush_loses_none_of_the_old_clients_messages(ending: str) -> None:
    # The old client's shutdown ran on a daemon thread that had left the exit hook's list: the interpreter
    # killed it half way, and 90 of 101 messages were neither delivered nor reported; flush() said True.
    with LocalCustomerIO(faults=Faults(latency=0.1)) as slow:
        done = subprocess.run([sys.executable, "-c", SETTING_THEN_EXIT, slow.url, ending], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "reported" not in done.stdout
        if ending == "flush":
            assert "flushed True" in done.stdout
        names = [op["name"] for op in slow.ops()]
    assert sorted(names) == sorted([f"Old {i}" for i in range(100)] + ["New"])


# -- "values in traits and properties: cleaned without loss ... a value with no JSON form is dropped for its key
# -- only, with a warning naming it" ------------------------------------------------------------------------------


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate JSON keys: {keys}"
    return dict(pairs)


@pytest.mark.xfail(_encoding.JSON_LIBRARY == "json", strict=True,
                   reason="the standard library's C encoder writes 1 and '1' as the same key, and has no key hook")
@VERSIONS
def test_keys_that_are_one_json_key_are_never_sent_twice_and_the_dropped_one_is_named(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # {1: "x", "1": "y"} went out as {"1":"x","1":"y"}: a JSON reader keeps one, and the other vanished unsaid.
    server = raw(lambda request, _: ok())
    client, errors = make(server.url, version)
    properties: dict[Any, Any] = {1: "int", "1": "str", None: "none", "null": "text", "nested": {True: 1, "true": 2}}
    client.track("u-1", "Keys", properties)
    assert client.flush(timeout=30) is True and errors == []
    (request,) = server.requests
    body = json.loads(request.body, object_pairs_hook=no_duplicate_keys)
    data = body["batch"][0]["attributes"] if version == "v2" else body["data"]
    assert data == {"1": "int", "null": "none", "nested": {"true": 1}}  # the first of each; none silently
    for dropped in ("'1'", "'null'", "'true'"):
        assert f"dropped key {dropped}" in caplog.text


@VERSIONS
def test_a_deep_value_the_call_accepts_is_sent_whole_whichever_encoding_path_it_takes(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # 150 levels pass the call (it refuses more than 200). A date string elsewhere in the message sends it down the
    # careful encoding path, which dropped everything past 64 levels; the fast path sent it whole.
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(150):
        deep = {"a": deep}
    server = raw(lambda request, _: ok())
    client, errors = make(server.url, version)
    client.track("u-1", "Plain", {"deep": deep})
    client.track("u-1", "With a date", {"deep": deep, "at": "2024-05-14T12:40:00Z"})
    assert client.flush(timeout=30) is True and errors == []
    bodies = [json.loads(r.body) for r in server.requests]
    sent = [op["attributes"] for op in bodies[0]["batch"]] if version == "v2" else [b["data"] for b in bodies]
    assert [s["deep"] for s in sent] == [deep, deep]
    assert "nested deeper" not in caplog.text


# -- The spool: "Operations that outlive retry_deadline are kept in the spool ... sent again ... by the next
# -- process on that path" ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "then"), [("v2", "v1"), ("v1", "v2")])
def test_what_the_spool_kept_is_sent_by_the_next_process_even_on_the_other_api_version(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], tmp_path: Path, first: str,
        then: str) -> None:
    # A v2 client's rows are batch items with no path: a v1 client sent them to "" (HostChangedError, retried
    # for good) and kept them in the spool forever.
    down = raw(lambda request, _: ok(b"{}", "503 Service Unavailable"))
    path = str(tmp_path / "cio.sqlite")
    client, errors = make(down.url, first, retries=0, spool_path=path)
    client.identify("user-1", {"plan": "pro"})
    client.track("user-1", "Kept")
    assert client.flush(timeout=30) is True and errors == []  # kept, not reported
    client.shutdown(timeout=5)
    with LocalCustomerIO() as cio:
        client, errors = make(cio.url, then, spool_path=path)
        client.track("user-1", "New")
        assert client.flush(timeout=30) is True and errors == []
        client.shutdown(timeout=5)
        person = cio.state.person("user-1")
        assert person is not None and person["attributes"].get("plan") == "pro"
        assert sorted(e["name"] for e in cio.state.events()) == ["Kept", "New"]
    assert conftest.spool_count(path) == 0


# -- debug: "one handler, however many clients; the logger is restored when the last debug client shuts down" ----


def test_a_repeated_shutdown_does_not_take_debug_logging_from_a_debug_client_still_alive(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]]) -> None:
    # shutdown() is idempotent, but each call released the shared debug handler once more: a `with` block that
    # also called shutdown(), and another debug client lost its DEBUG lines.
    server = raw(lambda request, _: ok())
    log = logging.getLogger("analytics_cio")
    level, handlers = log.level, list(log.handlers)
    alive, _ = make(server.url, debug=True)
    with Client(SITE_ID, API_KEY, host=server.url, debug=True) as short_lived:
        short_lived.shutdown()
    short_lived.shutdown()
    assert log.level == logging.DEBUG and len(log.handlers) == len(handlers) + 1
    alive.shutdown()
    assert log.level == level and log.handlers == handlers


# -- "shutdown(timeout) ... is final: ... and no thread restarts" --------------------------------------------------


@pytest.mark.parametrize("used", [False, True])
def test_a_repeated_shutdown_starts_no_thread_and_returns_at_once(raw: Callable[..., RawServer],
                                                                  make: Callable[..., tuple[Client, Errors]],
                                                                  used: bool) -> None:
    # A client that never sent anything (a web app's, on a quiet worker) started both its threads on its second
    # shutdown(): they stayed, and every further shutdown() waited a second for them.
    server = raw(lambda request, _: ok())
    client, errors = make(server.url)
    if used:
        client.track("u-1", "Sent")
    assert client.shutdown(timeout=5) is True
    time.sleep(0.6)  # the used client's threads end within their join
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        started = time.monotonic()
        assert client.shutdown(timeout=5) is True
        assert time.monotonic() - started < 0.5
    assert {t.ident for t in threading.enumerate()} <= before
    assert errors == [] and len(server.requests) == (1 if used else 0)


# -- "Bad arguments raise at the call, naming the argument: ArgumentError" --------------------------------------


@pytest.mark.parametrize("argument", ["user_id", "anonymous_id"])
def test_an_id_too_large_to_write_as_text_is_an_argument_error_naming_it(argument: str) -> None:
    # Numbers are accepted as ids and sent as their text; an int of more than 4,300 digits has none, and the call
    # raised Python's own ValueError, naming nothing.
    client = Client(SITE_ID, API_KEY, send=False)
    with pytest.raises(ArgumentError, match=argument) as raised:
        arguments: dict[str, Any] = {argument: 10**5000, "event": "Huge"}
        client.track(**arguments)
    assert isinstance(raised.value, AssertionError)  # what analytics-python raises for bad arguments


# -- "flush(timeout) never hangs: it returns False at the timeout"; "shutdown(timeout) returns within its timeout" ---


def test_an_endless_timeout_means_no_limit_rather_than_an_overflow_error(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]]) -> None:
    # math.inf is the natural "no limit"; threading refuses to wait that long, and flush() and shutdown() raised
    # OverflowError (shutdown half done: closed, but its transport left open and nothing reported).
    server = raw(lambda request, _: ok())
    client, errors = make(server.url)
    client.track("u-1", "One")
    assert client.flush(timeout=math.inf) is True
    client.track("u-1", "Two")
    assert client.shutdown(timeout=math.inf) is True
    endless, _ = make(server.url, shutdown_timeout=math.inf)
    endless.track("u-1", "Three")
    assert endless.shutdown() is True
    assert errors == [] and len(server.requests) == 3


@pytest.mark.parametrize(("option", "value"), [("timeout", 0), ("timeout", math.inf), ("timeout", math.nan),
                                               ("upload_interval", math.inf), ("shutdown_timeout", math.nan),
                                               ("retry_deadline", math.nan)])
def test_a_timeout_option_no_request_can_keep_is_an_argument_error_naming_it(option: str, value: float) -> None:
    # timeout=0 raised urllib3's ValueError; NaN passed every check (NaN < 0 is False) and disabled deadlines.
    options: dict[str, Any] = {option: value}
    with pytest.raises(ArgumentError, match=option):
        Client(SITE_ID, API_KEY, **options)


# -- Retries: "A Retry-After header ... is a floor for the next attempt and holds back every request of the client" --


@VERSIONS
@pytest.mark.parametrize("status", ["400 Bad Request", "403 Forbidden", "413 Payload Too Large"])
def test_a_retry_after_on_a_refusal_holds_nothing_back(raw: Callable[..., RawServer],
                                                       make: Callable[..., tuple[Client, Errors]], version: str,
                                                       status: str) -> None:
    # A gateway's refusal with "Retry-After: 120" is not retried, yet it held every later request of the client
    # back for two minutes.
    def refuse_first(request: Request, _: socket.socket) -> bytes:
        if b"Refused" in request.body:
            return f"HTTP/1.1 {status}\r\nRetry-After: 120\r\nContent-Length: 2\r\n\r\n{{}}".encode()
        return ok()

    server = raw(refuse_first)
    client, errors = make(server.url, version)
    client.track("u-1", "Refused")
    assert client.flush(timeout=10) is True
    started = time.monotonic()
    client.track("u-2", "Next")
    assert client.flush(timeout=10) is True
    assert time.monotonic() - started < 3
    assert errors.events() == ["Refused"] and isinstance(errors[0][0], RejectedError)


# -- Security: "proxy credentials go in Proxy-Authorization and are never logged"; bad input names the argument ----


@pytest.mark.parametrize("proxy", ["http://user:pr0xy-secret@[::1", "http://user:pr0xy-secret@host:port",
                                   "socks5://user:pr0xy-secret@127.0.0.1:1080"])
@pytest.mark.parametrize("source", ["option", "environment"])
def test_a_malformed_proxy_url_is_an_argument_error_that_keeps_its_password_to_itself(
        proxy: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib3's LocationParseError quoted the whole URL, password included, and named no option.
    options: dict[str, Any] = {}
    if source == "option":
        options["proxies"] = {"https": proxy}
    else:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    with pytest.raises(ArgumentError, match="proxies") as raised:
        Client(SITE_ID, API_KEY, **options)
    assert "pr0xy-secret" not in f"{raised.value} {raised.value!r}"


@pytest.mark.parametrize("host", ["http://user:h0st-secret@127.0.0.1:8080", "https://h0st-secret@gateway.example",
                                  "ftp://track.customer.io", "track.customer.io"])
def test_a_host_that_is_no_usable_base_url_is_an_argument_error_naming_host_and_hiding_any_password(
        host: str, caplog: pytest.LogCaptureFixture) -> None:
    # A user:password@ in host was never sent (the credentials are site_id and api_key) but went into the plain-http
    # WARNING and every repr; a scheme other than http(s) raised a bare ValueError.
    with pytest.raises(ArgumentError, match="host") as raised:
        Client(SITE_ID, API_KEY, host=host)
    assert isinstance(raised.value, ValueError)
    assert "h0st-secret" not in f"{raised.value} {caplog.text}"


@pytest.mark.parametrize(("call", "argument"), [
    (lambda c: c.track("bad \ud800 id", "E"), "user_id"),
    (lambda c: c.track(None, "E", anonymous_id="\udc80"), "anonymous_id"),
    (lambda c: c.track("u-1", "bad \udc80 name"), "event"),
    (lambda c: c.page("u-1", None, "\ud800"), "name"),
    (lambda c: c.group("u-1", "\ud800"), "group_id"),
    (lambda c: c.alias("\ud800", "u-1"), "previous_id"),
])
def test_an_id_or_name_holding_a_lone_surrogate_is_refused_at_the_call_naming_it(
        call: Callable[[Client], Any], argument: str) -> None:
    # It has no UTF-8 form: v1 failed to put it in a URL, v2 failed to measure a name against its limit, each a
    # "could not prepare the message" DeliveryError naming nothing, while v2 sent the same id escaped.
    client = Client(SITE_ID, API_KEY, send=False)
    with pytest.raises(ArgumentError, match=argument):
        call(client)


@VERSIONS
@pytest.mark.parametrize("retry_after", ["-5", "soon", "1e309", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999"])
def test_any_retry_after_a_server_sends_neither_loses_nor_strands_a_message(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str,
        retry_after: str) -> None:
    # Garbage, negative, infinite or past values are no wait at all; a huge one is clamped (300 s) and still
    # leaves flush() and shutdown() their bounds, with the message reported rather than left behind.
    def busy_once(request: Request, _: socket.socket) -> bytes:
        if len(server.requests) == 1:
            return f"HTTP/1.1 503 Busy\r\nRetry-After: {retry_after}\r\nContent-Length: 2\r\n\r\n{{}}".encode()
        return ok()

    server = raw(busy_once)
    client, errors = make(server.url, version, retries=3)
    client.track("u-1", "Busy")
    huge = retry_after == "99999999"
    started = time.monotonic()
    assert client.flush(timeout=1 if huge else 10) is not huge
    assert client.shutdown(timeout=1) is not huge  # False: it had to give up (and report) at its timeout
    assert time.monotonic() - started < 5
    if huge:
        assert len(server.requests) == 1 and errors.events() == ["Busy"]
        assert type(errors[0][0]).__name__ == "ShutdownError"
    else:
        assert len(server.requests) == 2 and errors == []


# -- Security: "Ids and device tokens are percent-encoded as one whole path segment ... no user-supplied id changes a
# -- URL's path" ----------------------------------------------------------------------------------------------------

HOSTILE_IDS = ["a/b", "..", ".", "../admin", "%2F", "%2e%2e", "a@b", "a?b=1", "a#frag", "a;b", "a\\..", " ", "a\r\nb",
               "cio_x/y", "x@y.z/..", "~", "%", "..%2F..", "a%00b", "\u2024\u2024"]
V1_PATHS = [r"/api/v1/customers/[^/]+", r"/api/v1/customers/[^/]+/events", r"/api/v1/customers/[^/]+/devices",
            r"/api/v1/customers/[^/]+/devices/[^/]+", r"/api/v1/events", r"/api/v1/merge_customers", r"/api/v2/entity"]


@VERSIONS
def test_no_hostile_id_or_token_changes_which_endpoint_a_request_reaches(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str) -> None:
    server = raw(lambda request, _: ok())
    client, errors = make(server.url + "/base", version, email_as_id=False, thread=8)
    for hostile in HOSTILE_IDS:
        client.identify(hostile, {"plan": "pro"})
        client.track(hostile, "Event")
        client.page(hostile, None, "Page")
        client.register_device(hostile, hostile, "ios")
        client.remove_device("u-1", hostile)
        client.alias(hostile, "u-1")
        client.track(None, "Anonymous", anonymous_id=hostile)
    assert client.flush(timeout=60) is True and errors == []
    paths = [r.line.split(" ")[1] for r in server.requests]
    allowed = [r"/api/v2/batch"] if version == "v2" else V1_PATHS
    for path in paths:
        assert path.startswith("/base/") and "?" not in path and "#" not in path, path
        rest = path[len("/base"):]
        assert any(re.fullmatch(pattern, rest) for pattern in allowed), path
        assert not any(part in (".", "..") for part in rest.split("/")), path
        assert not any(unquote(part) in (".", "..") for part in rest.split("/")), path
    if version == "v1":  # every id that did reach a path is exactly the id, decoded once
        segments = {unquote(p.split("/")[5]) for p in paths if p.startswith("/base/api/v1/customers/")}
        assert segments <= set(HOSTILE_IDS) | {"u-1"}


# -- "Whatever on_error does — raise anything ... — the worker lives on" ------------------------------------------


@VERSIONS
def test_on_error_raising_keyboard_interrupt_or_queueing_more_from_the_worker_thread_kills_nothing(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], version: str) -> None:
    # The other tests raise SystemExit and call flush()/shutdown(); here on_error raises KeyboardInterrupt every
    # other time and queues a follow-up call from the worker thread (re-entrant put), itself refused once more.
    def refuse_some(request: Request, _: socket.socket) -> bytes:
        body = json.loads(request.body)
        if "batch" in body:  # v2: a 207 listing the refused operations
            refused = [{"batch_index": i, "reason": "no"} for i, op in enumerate(body["batch"])
                       if "Refused" in op["name"]]
            return ok(json.dumps({"errors": refused}).encode(), "207 Multi-Status") if refused else ok()
        return ok(b'{"meta":{"error":"no"}}', "400 Bad Request") if "Refused" in body["name"] else ok()

    server = raw(refuse_some)
    seen: list[str] = []
    client: Client

    def on_error(error: DeliveryError, messages: Sequence[dict[str, Any]]) -> None:
        for message in messages:
            seen.append(message["event"])
            if message["event"].count("Refused") < 3:
                client.track("u-9", "Refused again " + message["event"])
        if len(seen) % 2:
            raise KeyboardInterrupt

    client, _ = make(server.url, version)
    client.on_error = on_error
    for i in range(4):
        client.track(f"u-{i}", f"Refused {i}" if i % 2 else f"Fine {i}")
    assert client.flush(timeout=30) is True
    assert client.flush(timeout=30) is True  # what on_error queued meanwhile
    for i in range(10):
        client.track("u-1", f"Later {i}")
    assert client.flush(timeout=30) is True
    assert sorted(seen) == sorted(f"{'Refused again ' * n}Refused {i}" for i in (1, 3) for n in range(3))
    bodies = [json.loads(r.body) for r in server.requests]
    names = [op["name"] for body in bodies for op in body.get("batch", [body]) if "Refused" not in op["name"]]
    assert sorted(names) == sorted(["Fine 0", "Fine 2"] + [f"Later {i}" for i in range(10)])


# -- Methods: "`timestamp` ISO-8601 UTC with milliseconds"; nothing changed silently -------------------------------


@pytest.mark.parametrize("year", [1, 999])
def test_a_timestamp_before_the_year_1000_is_iso_8601_and_is_not_silently_replaced_by_now(
        raw: Callable[..., RawServer], make: Callable[..., tuple[Client, Errors]], year: int) -> None:
    # strftime("%Y") wrote "999-05-01T…": no ISO-8601 reader took it, and the event went out with no timestamp at
    # all (Customer.io would file it at the time it arrived) and a message id from the current time.
    server = raw(lambda request, _: ok())
    client, errors = make(server.url)
    when = dt.datetime(year, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    _, message = client.track("u-1", "Ancient", timestamp=when)
    assert message["timestamp"] == f"{year:04d}-05-01T12:30:00.000Z"
    assert client.flush(timeout=30) is True and errors == []
    (op,) = json.loads(server.requests[0].body)["batch"]
    assert op["timestamp"] == (when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(seconds=1)


# -- "Both transports produce the same Customer.io state for the same calls"; "on v1 a person's operations stay in
# -- order" ----------------------------------------------------------------------------------------------------------


@VERSIONS
def test_an_alias_merges_everything_the_old_id_did_before_it_on_both_transports(version: str) -> None:
    # v1 sent the merge in the new person's lane only: most of the old id's earlier events arrived after it and made
    # the old person again, with 18 of its 20 events; v2 (one ordered batch) merged all 20.
    with LocalCustomerIO() as cio:
        client = Client(SITE_ID, API_KEY, host=cio.url, api_version=version, upload_interval=0.2,
                        max_requests_per_second=None)
        for i in range(20):
            client.track("old-user", f"Before {i}")
        client.identify("new-user", {"plan": "pro"})
        client.alias("old-user", "new-user")
        client.alias("new-user", "new-user")  # a person merged into themselves: one lane, not two
        client.track("new-user", "After")
        assert client.shutdown(timeout=30) is True
        assert [person["id"] for person in cio.state.people()] == ["new-user"]
        assert sorted(e["name"] for e in cio.state.events()) == sorted([f"Before {i}" for i in range(20)] + ["After"])
        assert {e["person"] for e in cio.state.events()} == {"new-user"}
