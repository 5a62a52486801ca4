"""Customer.io Data Pipelines: ``write_key`` sends Segment messages as they are to ``POST /v1/batch``.

The client's side (configuration, the wire, limits, retries, spool, fork, shutdown) against the local Customer.io,
then the local Data Pipelines endpoint itself, then ``capture()`` of a Pipelines client.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from analytics_cio import ArgumentValueError, Client, LimitError, RejectedError, RetriesExhaustedError
from analytics_cio._pipelines import PipelinesTransport, sent_at
from analytics_cio._retry import RetryPolicy
from analytics_cio._transport import WireOp
from analytics_cio.testing import LocalCustomerIO, PipelinesCaptureTransport, Reply, capture
from analytics_cio.testing._scripting import Faults

from .conftest import Errors, spool_count

WRITE_KEY = "pipelines-write-key-3c2b1a"


@pytest.fixture
def pipelines() -> Iterator[LocalCustomerIO]:
    with LocalCustomerIO(write_key=WRITE_KEY) as local:
        yield local


@pytest.fixture
def make_pipelines(pipelines: LocalCustomerIO, errors: Errors) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("host", pipelines.url)
        options.setdefault("on_error", errors)
        options.setdefault("upload_interval", 0.05)
        options.setdefault("max_requests_per_second", None)
        client = Client(write_key=options.pop("write_key", WRITE_KEY), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=5)


def batches(server: LocalCustomerIO) -> list[dict[str, Any]]:
    return [r.json() for r in server.requests if r.path == "/v1/batch" and r.status == 200]


def fast_retries(client: Client, retries: int = 5) -> None:
    client.policy = RetryPolicy(max_retries=retries, backoff_factor=0.01, max_backoff=0.02, deadline=5)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url + "/v1/batch", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
            "Content-Type": "application/json"}


STRICT = {"X-Strict-Mode": "1"}


# -- configuration -----------------------------------------------------------------------------------------


def test_write_key_selects_data_pipelines_and_region_selects_its_host() -> None:
    us = Client(write_key="k")
    eu = Client(write_key="k", region="EU")
    try:
        assert isinstance(us.transport, PipelinesTransport) and us.transport.base_url == "https://cdp.customer.io"
        assert eu.transport.base_url == "https://cdp-eu.customer.io"  # type: ignore[attr-defined]
    finally:
        us.shutdown()
        eu.shutdown()


def test_site_id_and_api_key_keep_selecting_the_track_api() -> None:
    client = Client("site", "key")
    try:
        assert not isinstance(client.transport, PipelinesTransport)
        assert client.transport.base_url == "https://track.customer.io"  # type: ignore[attr-defined]
    finally:
        client.shutdown()


@pytest.mark.parametrize("credentials", [{"site_id": "s", "api_key": "k"}, {"site_id": "s"}, {"api_key": "k"}])
def test_write_key_with_track_credentials_is_refused_naming_write_key(credentials: dict[str, str]) -> None:
    with pytest.raises(ArgumentValueError, match=r"write_key.*not both") as caught:
        Client(write_key="wk", **credentials)
    assert caught.value.argument == "write_key"


def test_no_credentials_at_all_is_refused_and_the_error_mentions_both_choices() -> None:
    with pytest.raises(ArgumentValueError, match=r"site_id.*write_key"):
        Client()


@pytest.mark.parametrize("key", ["", "  \n", 42])
def test_an_empty_or_non_string_write_key_is_refused(key: Any) -> None:
    with pytest.raises(ArgumentValueError, match="write_key"):
        Client(write_key=key)


def test_the_facade_write_key_setting_sends_to_data_pipelines(pipelines: LocalCustomerIO, facade: Any) -> None:
    facade.site_id = facade.api_key = None
    facade.write_key = WRITE_KEY
    facade.host = pipelines.url
    facade.track("u1", "Signed Up", {"plan": "pro"})
    assert facade.flush(timeout=10) is True
    assert [(m["type"], m["event"]) for m in pipelines.messages()] == [("track", "Signed Up")]


def test_the_facade_with_both_write_key_and_site_id_refuses_the_call_naming_write_key(facade: Any) -> None:
    facade.write_key = WRITE_KEY
    with pytest.raises(ArgumentValueError, match="write_key"):
        facade.track("u1", "Signed Up")


def test_repr_and_logs_never_show_the_write_key(make_pipelines: Callable[..., Client],
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="analytics_cio")
    client = make_pipelines(debug=True)
    client.track("u1", "Viewed")
    client.flush(timeout=10)
    assert WRITE_KEY not in repr(client) and WRITE_KEY not in repr(client.transport)
    assert WRITE_KEY not in caplog.text
    assert base64.b64encode(f"{WRITE_KEY}:".encode()).decode() not in caplog.text


@pytest.mark.parametrize(("key", "host"), [("sk_eu_" + "a" * 32, "https://cdp-eu.customer.io"),
                                           ("pk_us_" + "b" * 32, "https://cdp.customer.io"),
                                           ("plain-key", "https://cdp.customer.io")])
def test_a_region_prefixed_key_picks_its_region_s_host(key: str, host: str) -> None:
    client = Client(write_key=key)
    try:
        assert client.transport.base_url == host  # type: ignore[attr-defined]
    finally:
        client.shutdown()


def test_a_region_prefixed_key_sent_to_the_other_region_s_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(write_key="sk_eu_" + "a" * 32, host="https://cdp.customer.io")
    client.shutdown()
    assert "EU API key is being sent to the US host" in caplog.text


def test_a_region_prefixed_key_goes_as_a_bearer_token_and_a_trailing_newline_is_dropped(
        pipelines: LocalCustomerIO, errors: Errors) -> None:
    key = "sk_us_" + "c" * 32
    pipelines.write_key = key
    client = Client(write_key=key + "\n", host=pipelines.url, on_error=errors, upload_interval=0.01)
    client.track("u1", "Ordered")
    assert client.flush(timeout=10) is True
    client.shutdown()
    assert errors == []
    assert pipelines.requests[0].headers["authorization"] == f"Bearer {key}"


# -- the wire ----------------------------------------------------------------------------------------------


def test_messages_go_as_they_are_in_one_batch_with_sent_at_and_basic_auth(
        make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO, errors: Errors) -> None:
    client = make_pipelines()
    _, tracked = client.track("u1", "Order Completed", {"total": 42}, context={"ip": "10.0.0.1"})
    _, identified = client.identify("u1", {"email": "ada@example.com"})
    assert client.flush(timeout=10) is True
    assert errors == []
    (request,) = pipelines.requests
    assert request.path == "/v1/batch"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert request.headers["x-strict-mode"] == "1"
    body = request.json()
    assert set(body) == {"batch", "sentAt"}
    assert dt.datetime.fromisoformat(body["sentAt"].replace("Z", "+00:00")).tzinfo is not None
    assert body["batch"] == [json.loads(json.dumps(tracked)), json.loads(json.dumps(identified))]
    assert body["batch"][0]["context"]["ip"] == "10.0.0.1"


def test_no_track_api_mapping_runs_every_call_type_arrives_in_its_segment_form(
        make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO, errors: Errors) -> None:
    client = make_pipelines()
    client.identify(anonymous_id="anon-1", traits={"plan": "free"})  # the Track API would need a person id
    client.page("u1", "Docs", "Install", {"url": "https://example.com/install"})
    client.screen("u1", name="Home")
    client.group("u1", "acme", {"name": "Acme"})
    client.alias("anon-1", "u1")
    client.register_device("u1", "tok-1", "ios")
    assert client.flush(timeout=10) is True
    assert errors == []
    kinds = [(m["type"], m.get("event") or m.get("name") or m.get("groupId") or m.get("previousId"))
             for m in pipelines.messages()]
    assert kinds == [("identify", None), ("page", "Install"), ("screen", "Home"), ("group", "acme"),
                     ("alias", "anon-1"), ("track", "Device Created or Updated")]
    assert pipelines.messages()[-1]["context"]["device"] == {"token": "tok-1", "type": "ios"}
    assert pipelines.state.people() == []  # Customer.io maps them on its side


def test_dates_stay_iso_8601_strings_as_segment_s_spec_has_them(
        make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO) -> None:
    client = make_pipelines()  # convert_timestamps=True is the Track API's business only
    client.identify("u1", {"created_at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
                           "birthday": dt.date(1990, 1, 2)}, timestamp=dt.datetime(2024, 5, 1, 12, 0))
    assert client.flush(timeout=10) is True
    (message,) = pipelines.messages()
    assert message["traits"] == {"created_at": "2024-05-01T12:00:00+00:00", "birthday": "1990-01-02"}
    assert message["timestamp"] == "2024-05-01T12:00:00.000Z"


@pytest.mark.parametrize("integrations", [{"Customer.io": False}, {"All": False}, {"Customer.io (Actions)": False}])
def test_the_integrations_opt_out_still_applies(make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO,
                                                integrations: dict[str, bool]) -> None:
    client = make_pipelines()
    ok, _ = client.track("u1", "Skipped", integrations=integrations)
    client.track("u1", "Sent", integrations={"All": False, "Customer.io": True})
    assert ok is True
    assert client.flush(timeout=10) is True
    assert [m["event"] for m in pipelines.messages()] == ["Sent"]


def test_a_message_over_32_kb_is_reported_as_a_limit_error_and_the_rest_are_delivered(
        make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO, errors: Errors) -> None:
    client = make_pipelines()
    client.track("u1", "Before")
    _, big = client.track("u1", "Huge", {"blob": "x" * 33_000})
    client.track("u1", "After")
    assert client.flush(timeout=10) is True
    assert [m["event"] for m in pipelines.messages()] == ["Before", "After"]
    ((error, reported),) = errors
    assert isinstance(error, LimitError) and error.field == "message" and "32768" in str(error)
    assert reported == [big]


def test_a_message_of_exactly_32_kb_is_sent(make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO,
                                            errors: Errors) -> None:
    client = make_pipelines()
    _, probe = client.track("u1", "Sized", {"blob": ""}, message_id="m-1")
    size = len(json.dumps(probe, separators=(",", ":")).encode())
    client.track("u1", "Sized", {"blob": "x" * (32_768 - size)}, message_id="m-2")
    assert client.flush(timeout=10) is True
    assert errors == [] and len(pipelines.messages()) == 2


def test_sync_mode_reports_a_message_too_large_at_the_call(make_pipelines: Callable[..., Client],
                                                           errors: Errors) -> None:
    client = make_pipelines(sync_mode=True)
    ok, _ = client.track("u1", "Huge", {"blob": "x" * 40_000})
    assert ok is False and isinstance(errors[0][0], LimitError)


def test_batches_stay_under_500_kb_a_request(make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO,
                                             errors: Errors) -> None:
    client = make_pipelines(upload_interval=0.5)
    for i in range(60):
        client.track("u1", "Chunky", {"seq": i, "blob": "y" * 25_000})
    assert client.flush(timeout=20) is True
    assert errors == []
    sizes = [len(r.body) for r in pipelines.requests]
    assert len(sizes) >= 3 and max(sizes) < 500_000
    assert sorted(m["properties"]["seq"] for m in pipelines.messages()) == list(range(60))


def test_upload_size_and_gzip(make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO,
                              errors: Errors) -> None:
    client = make_pipelines(upload_size=10, gzip=True)
    for i in range(25):
        client.track("u1", "Zipped", {"seq": i})
    assert client.flush(timeout=10) is True
    assert errors == []
    assert all(r.headers["content-encoding"] == "gzip" for r in pipelines.requests)
    assert [len(b["batch"]) for b in batches(pipelines)] == [10, 10, 5]


def test_sent_at_is_iso_8601_utc_with_milliseconds() -> None:
    text = sent_at()
    assert len(text) == len("2026-01-01T00:00:00.000Z") and text.endswith("Z")
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs((parsed - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 5


# -- retries, refusals, shutdown, spool, fork -------------------------------------------------------------


def test_a_500_is_retried_and_each_message_is_delivered_once(make_pipelines: Callable[..., Client],
                                                             pipelines: LocalCustomerIO, errors: Errors) -> None:
    pipelines.script(Reply(500), Reply(503))
    client = make_pipelines()
    fast_retries(client)
    for i in range(5):
        client.track("u1", "Retried", {"seq": i})
    assert client.flush(timeout=10) is True
    assert errors == []
    assert [m["properties"]["seq"] for m in pipelines.messages()] == list(range(5))
    assert pipelines.state.snapshot()["pipelines"]["duplicates"] == 0


def test_retry_after_is_honoured(make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO,
                                 errors: Errors) -> None:
    pipelines.script(Reply(429, headers={"Retry-After": "1"}))
    client = make_pipelines()
    fast_retries(client)
    client.track("u1", "Limited")
    assert client.flush(timeout=10) is True
    first, second = pipelines.requests
    assert second.received_at - first.received_at >= 0.9
    assert errors == [] and len(pipelines.messages()) == 1


def test_a_refused_batch_is_halved_so_only_the_refused_message_is_reported(
        make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO, errors: Errors) -> None:
    # Four messages: the whole batch is refused, its first half accepted, its second half refused; of that, the
    # first message is accepted and the last refused (scripted, in that order).
    refused = Reply(400, {"code": "invalid_request", "message": "batch[0]: bad"})
    pipelines.script(refused, Reply(200), refused, Reply(200), refused)
    client = make_pipelines(upload_size=4, upload_interval=1)
    sent = [client.track("u1", "Halved", {"seq": i})[1] for i in range(4)]
    assert client.flush(timeout=10) is True
    assert [len(r.json()["batch"]) for r in pipelines.requests] == [4, 2, 2, 1, 1]
    ((error, reported),) = errors
    assert isinstance(error, RejectedError) and error.status == 400 and "batch[0]: bad" in str(error)
    assert reported == [sent[3]]


def test_a_wrong_write_key_is_reported_once_and_not_retried(make_pipelines: Callable[..., Client],
                                                           pipelines: LocalCustomerIO, errors: Errors) -> None:
    client = make_pipelines(write_key="not-the-key")
    client.track("u1", "Denied")
    assert client.flush(timeout=10) is True
    assert len(pipelines.requests) == 1
    ((error, _),) = errors
    assert isinstance(error, RejectedError) and error.status == 401


def test_retries_that_run_out_are_reported(make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO,
                                           errors: Errors) -> None:
    pipelines.faults = Faults(error_rate=1.0, error_status=500)
    client = make_pipelines()
    fast_retries(client, retries=2)
    client.track("u1", "Lost")
    assert client.flush(timeout=10) is True
    assert len(pipelines.requests) == 3
    assert isinstance(errors[0][0], RetriesExhaustedError)


def test_shutdown_delivers_what_is_queued_and_later_calls_are_refused(
        make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO, errors: Errors) -> None:
    client = make_pipelines(upload_interval=5)
    for i in range(300):
        client.track("u1", "Queued", {"seq": i})
    assert client.shutdown(timeout=10) is True
    assert len(pipelines.messages()) == 300
    ok, _ = client.track("u1", "Late")
    assert ok is False and type(errors[-1][0]).__name__ == "ClientClosedError"


def test_the_spool_keeps_messages_through_an_outage_and_sends_them_later(
        make_pipelines: Callable[..., Client], pipelines: LocalCustomerIO, errors: Errors, tmp_path: Path) -> None:
    spool = tmp_path / "spool.db"
    pipelines.faults = Faults(error_rate=1.0, error_status=503)
    client = make_pipelines(spool_path=str(spool))
    client.policy = RetryPolicy(max_retries=2, backoff_factor=0.01, max_backoff=0.02, deadline=0.5)
    for i in range(5):
        client.track("u1", "Outage", {"seq": i})
    assert client.flush(timeout=10) is True
    assert errors == [] and spool_count(spool) == 5
    pipelines.faults = Faults()
    client.track("u1", "Back", {"seq": 5})
    assert client.flush(timeout=10) is True
    assert pipelines.wait_for(lambda s: len(s.messages()) >= 6, timeout=10)
    assert sorted(m["properties"]["seq"] for m in pipelines.messages()) == list(range(6))
    assert spool_count(spool) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_delivers_its_own_messages(make_pipelines: Callable[..., Client],
                                                  pipelines: LocalCustomerIO) -> None:
    client = make_pipelines()
    client.track("parent", "Before fork")
    assert client.flush(timeout=10) is True
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            client.track("child", "In child")
            os._exit(0 if client.flush(timeout=10) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.track("parent", "After fork")
    assert client.flush(timeout=10) is True
    assert sorted(m["userId"] + ":" + m["event"] for m in pipelines.messages()) == [
        "child:In child", "parent:After fork", "parent:Before fork"]


# -- the local Data Pipelines endpoint ---------------------------------------------------------------------


def _body(*messages: dict[str, Any]) -> bytes:
    return json.dumps({"batch": list(messages), "sentAt": sent_at()}).encode()


TRACK = {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m1"}


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json"},
    basic("wrong-key"),
    basic(WRITE_KEY, "a-password"),
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": "Token " + WRITE_KEY},
])
def test_the_endpoint_refuses_missing_or_wrong_keys(pipelines: LocalCustomerIO, headers: dict[str, str]) -> None:
    status, answer = post(pipelines.url, _body(TRACK), headers)
    assert status == 401 and "message" in answer
    assert pipelines.messages() == []


@pytest.mark.parametrize("headers", [basic(WRITE_KEY), {"Authorization": f"Bearer {WRITE_KEY}"}])
def test_the_endpoint_takes_basic_or_bearer_with_the_key(pipelines: LocalCustomerIO, headers: dict[str, str]) -> None:
    assert post(pipelines.url, _body(TRACK), headers)[0] == 200
    assert pipelines.messages() == [TRACK]


def test_the_track_api_still_asks_for_its_own_credentials(pipelines: LocalCustomerIO) -> None:
    request = urllib.request.Request(pipelines.url + "/api/v2/entity", data=b"{}", headers=basic(WRITE_KEY, "x"),
                                     method="POST")
    pipelines.site_id, pipelines.api_key = "site", "key"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    with caught.value:
        assert caught.value.code == 401


def test_a_request_of_500_000_bytes_or_more_is_413(pipelines: LocalCustomerIO) -> None:
    message = {**TRACK, "properties": {"blob": ""}}
    body = _body(message)
    message["properties"]["blob"] = "z" * (500_000 - len(body))
    status, _ = post(pipelines.url, _body(message), basic(WRITE_KEY))
    assert status == 413


@pytest.mark.parametrize(("message", "problem"), [
    ({"type": "track", "userId": "u1"}, "track requires event"),
    ({"type": "track", "event": "E"}, "requires userId or anonymousId"),
    ({"type": "identify", "userId": "", "anonymousId": None}, "requires userId or anonymousId"),
    ({"type": "group", "userId": "u1"}, "group requires groupId"),
    ({"type": "alias", "userId": "u1"}, "alias requires userId and previousId"),
    ({"type": "purchase", "userId": "u1"}, "type must be one of"),
    ({"type": "identify", "userId": "u1", "traits": ["not", "an", "object"]}, "traits must be an object"),
    ({"type": "track", "userId": "u1", "event": "E", "properties": {"blob": "x" * 33_000}}, "at most 32768 bytes"),
    ("not an object", "must be an object"),
])
def test_strict_mode_refuses_an_invalid_message_with_400_and_keeps_nothing(
        pipelines: LocalCustomerIO, message: Any, problem: str) -> None:
    status, answer = post(pipelines.url, _body(TRACK, message), {**basic(WRITE_KEY), **STRICT})
    assert status == 400 and problem in answer["message"] and "batch[1]" in answer["message"]
    assert pipelines.messages() == []


def test_without_strict_mode_an_invalid_message_is_dropped_with_200(pipelines: LocalCustomerIO) -> None:
    status, _ = post(pipelines.url, _body(TRACK, {"type": "track", "userId": "u1"}), basic(WRITE_KEY))
    assert status == 200
    assert pipelines.messages() == [TRACK]
    (ignored,) = pipelines.state.snapshot()["pipelines"]["ignored"]
    assert ignored["reason"] == "track requires event"


@pytest.mark.parametrize("body", [b"{not json", b'{"batch": []}', b'{"batch": {}}', b"[]"])
def test_a_body_that_is_not_a_batch_is_400(pipelines: LocalCustomerIO, body: bytes) -> None:
    assert post(pipelines.url, body, basic(WRITE_KEY))[0] == 400


def test_validate_false_keeps_whatever_parses(errors: Errors) -> None:
    with LocalCustomerIO(validate=False) as local:
        assert post(local.url, _body({"type": "nonsense"}), {**basic("any"), **STRICT})[0] == 200
        assert local.messages() == [{"type": "nonsense"}]


def test_state_page_and_reset_show_the_messages_received(pipelines: LocalCustomerIO) -> None:
    post(pipelines.url, _body(TRACK, TRACK, {"type": "page", "anonymousId": "a1", "name": "Pricing"}),
         basic(WRITE_KEY))
    with urllib.request.urlopen(pipelines.url + "/_state", timeout=5) as answer:
        snapshot = json.loads(answer.read())
    assert [m["type"] for m in snapshot["pipelines"]["messages"]] == ["track", "track", "page"]
    assert snapshot["pipelines"]["duplicates"] == 1
    with urllib.request.urlopen(pipelines.url + "/", timeout=5) as answer:
        page = answer.read().decode()
    assert "Data Pipelines messages" in page and "Signed Up" in page and "Pricing" in page and "a1" in page
    pipelines.reset()
    assert pipelines.messages() == [] and pipelines.state.snapshot()["pipelines"]["messages"] == []


def test_the_page_escapes_what_a_message_carries(pipelines: LocalCustomerIO) -> None:
    post(pipelines.url, _body({**TRACK, "event": "<script>alert(1)</script>"}), basic(WRITE_KEY))
    with urllib.request.urlopen(pipelines.url + "/", timeout=5) as answer:
        page = answer.read().decode()
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_a_gzipped_batch_is_read(pipelines: LocalCustomerIO) -> None:
    status, _ = post(pipelines.url, gzip.compress(_body(TRACK)), {**basic(WRITE_KEY), "Content-Encoding": "gzip"})
    assert status == 200 and pipelines.messages() == [TRACK]


# -- capture() ---------------------------------------------------------------------------------------------


def test_capture_of_a_pipelines_client_keeps_its_segment_messages(errors: Errors) -> None:
    client = Client(write_key=WRITE_KEY, on_error=errors)
    try:
        with capture(client) as captured:
            client.track("u1", "Signed Up", {"plan": "pro"})
            client.identify("u1", {"email": "ada@example.com"})
            client.page(anonymous_id="a1", name="Pricing")
        assert isinstance(captured.transport, PipelinesCaptureTransport)
        assert [m["type"] for m in captured.messages] == ["track", "identify", "page"]
        assert captured.ops[0]["properties"] == {"plan": "pro"}
        assert [m["event"] for m in captured.events("Signed Up")] == ["Signed Up"]
        assert [m["name"] for m in captured.events(person="a1")] == ["Pricing"]
        assert len(captured.people) == 0
        assert len(captured.state.pipelines_messages()) == 3
        assert errors == []
    finally:
        client.shutdown()


def test_capture_of_the_facade_with_a_write_key(facade: Any) -> None:
    facade.site_id = facade.api_key = None
    facade.write_key = WRITE_KEY
    with capture() as captured:
        facade.track("u1", "Captured")
    assert isinstance(captured.transport, PipelinesCaptureTransport)
    assert [m["event"] for m in captured.messages] == ["Captured"]


def test_capture_reports_what_data_pipelines_would_refuse() -> None:
    transport = PipelinesCaptureTransport()
    (outcome,) = transport.send([WireOp(json.dumps({"type": "track", "userId": "u1"}).encode(), {})])
    assert outcome.delivered is False and outcome.status == 400 and "event" in outcome.reason
    assert transport.count() == 0


def test_capture_reports_a_message_too_large_through_on_error(errors: Errors) -> None:
    client = Client(write_key=WRITE_KEY, on_error=errors)
    try:
        with capture(client) as captured:
            ok, _ = client.track("u1", "Huge", {"blob": "x" * 40_000})
        assert ok is False and captured.messages == []
        assert isinstance(captured.errors[0][0], LimitError)
    finally:
        client.shutdown()


# -- the command line --------------------------------------------------------------------------------------


def _cli(*argv: str) -> tuple[int, str, str]:
    from analytics_cio.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_cli_sends_to_data_pipelines_with_write_key(pipelines: LocalCustomerIO,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", "from-env")  # not used: the write key chose Data Pipelines
    code, _, err = _cli("track", "-u", "u1", "-e", "Signed Up", "-p", "plan=pro", "--host", pipelines.url,
                        "--write-key", WRITE_KEY)
    assert code == 0, err
    (message,) = pipelines.messages()
    assert (message["type"], message["event"], message["properties"]) == ("track", "Signed Up", {"plan": "pro"})


def test_the_cli_dry_run_with_a_write_key_prints_the_segment_message() -> None:
    code, out, _ = _cli("track", "-u", "u1", "-e", "Signed Up", "--dry-run", "--write-key", "wk")
    assert code == 0
    assert '"type": "track"' in out or '"type":"track"' in out
    assert "identifiers" not in out  # no Track API operation


class _RefusingTransport(PipelinesCaptureTransport):
    """A transport whose prepare fails on one message (a bug in a custom transport)."""

    def prepare(self, op: Any, message: Any) -> WireOp:
        if message.get("event") == "Breaks":
            raise RuntimeError("this transport cannot prepare it")
        return super().prepare(op, message)


def test_flush_returns_only_after_a_message_that_could_not_be_prepared_was_reported(errors: Errors) -> None:
    client = Client(transport=_RefusingTransport(), on_error=errors, upload_interval=0.01)
    try:
        for _ in range(100):
            errors.clear()
            client.track("u1", "Breaks")
            assert client.flush(timeout=10) is True
            assert [m["event"] for m in errors.messages] == ["Breaks"]  # reported before flush() returned
    finally:
        client.shutdown()
