"""The core client against the local Customer.io: the Segment-compatible API, batching, flush, shutdown."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
import subprocess
import sys
import textwrap
from typing import Any, Callable

import pytest

import analytics_cio
from analytics_cio import (
    ArgumentError,
    Client,
    QueueFullError,
    RejectedError,
    ShutdownError,
    UnmappableError,
)
from analytics_cio._ulid import is_ulid
from analytics_cio.testing._server import LocalCustomerIO, Reply

from ._recording_proxy import RecordingProxy
from .conftest import API_KEY, BASIC_TOKEN, SITE_ID, Errors

ISO_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def batches(server: LocalCustomerIO) -> list[list[dict[str, Any]]]:
    return [r.json()["batch"] for r in server.requests if r.path == "/api/v2/batch"]


# -- the public API ------------------------------------------------------------------------------------------


def test_facade_sends_every_call_to_customerio(facade: Any, server: LocalCustomerIO) -> None:
    ok, msg = facade.identify("u1", {"email": "u1@example.com", "plan": "pro"})
    assert ok and msg["type"] == "identify" and msg["userId"] == "u1" and msg["traits"]["plan"] == "pro"
    assert facade.track("u1", "Order Completed", {"total": 42})[0]
    assert facade.page("u1", "Docs", "Install", {"url": "https://x.test/install"})[0]
    assert facade.screen("u1", name="Cart")[0]
    assert facade.flush() is True
    ops = [op for batch in batches(server) for op in batch]
    assert [(op["action"], op.get("name")) for op in ops] == [
        ("identify", None), ("event", "Order Completed"), ("page", "Install"), ("event", "Viewed Cart Screen"),
    ]
    assert ops[0]["attributes"] == {"email": "u1@example.com", "plan": "pro"}
    assert all(op["identifiers"] == {"id": "u1"} for op in ops)


def test_message_is_segment_spec(client: Client) -> None:
    ok, msg = client.track("u1", "Signed Up", {"plan": "pro"}, context={"ip": "1.2.3.4"},
                           integrations={"Other": False})
    assert ok is True
    assert is_ulid(msg["messageId"])
    assert ISO_MS_UTC.fullmatch(msg["timestamp"])
    assert msg["context"] == {"ip": "1.2.3.4", "library": {"name": "analytics-cio",
                                                           "version": analytics_cio.__version__}}
    assert msg["integrations"] == {"Other": False}
    assert (msg["type"], msg["userId"], msg["anonymousId"], msg["event"]) == ("track", "u1", None, "Signed Up")


def test_timestamps_follow_segment(client: Client) -> None:
    aware = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert client.track("u", "E", timestamp=aware)[1]["timestamp"] == "2024-05-01T10:00:00.123Z"
    naive_old = dt.datetime(2020, 1, 1, 8, 30)  # far from now: taken as UTC, as analytics-python does
    assert client.track("u", "E", timestamp=naive_old)[1]["timestamp"] == "2020-01-01T08:30:00.000Z"


def test_numeric_ids_are_strings(client: Client, server: LocalCustomerIO) -> None:
    _ok, msg = client.track(42, "E", anonymous_id=7)
    assert (msg["userId"], msg["anonymousId"]) == ("42", "7")
    client.flush()
    assert server.ops()[0]["identifiers"] == {"id": "42"}


def test_caller_message_id_is_kept(client: Client) -> None:
    assert client.track("u", "E", message_id="my-id")[1]["messageId"] == "my-id"


def test_setting_a_module_attribute_after_the_first_call_takes_effect(facade: Any, server: LocalCustomerIO) -> None:
    facade.track("u1", "First")
    first_client = facade.default_client
    with LocalCustomerIO() as other:
        facade.host = other.url
        facade.track("u1", "Second")
        facade.flush()
        assert facade.default_client is not first_client
        assert [op["name"] for op in other.ops()] == ["Second"]
    assert [op["name"] for op in server.ops()] == ["First"]  # the old client flushed what it held


def test_facade_passes_every_option_through(facade: Any) -> None:
    facade.upload_size = 7
    facade.thread = 3
    facade.api_version = "v1"
    facade.proxies = {"https": "http://127.0.0.1:1"}
    facade.track("u", "E")
    client = facade.default_client
    assert client._worker.upload_size == 7
    assert client.transport.concurrency == 3
    assert client.transport.proxies == {"https": "http://127.0.0.1:1"}


# -- argument errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "argument", "kind"),
    [
        (lambda c: c.track("u", None), "event", ValueError),
        (lambda c: c.track("u", 5), "event", TypeError),
        (lambda c: c.track(None, "E"), "user_id", ValueError),
        (lambda c: c.track("u", "E", properties=[1]), "properties", TypeError),
        (lambda c: c.track("u", "E", context="x"), "context", TypeError),
        (lambda c: c.track("u", "E", timestamp="yesterday"), "timestamp", TypeError),
        (lambda c: c.track("u", "E", integrations=1), "integrations", TypeError),
        (lambda c: c.track({"id": 1}, "E"), "user_id", TypeError),
        (lambda c: c.identify("u", traits="x"), "traits", TypeError),
        (lambda c: c.page("u", name=3), "name", TypeError),
        (lambda c: c.screen("u", category=3), "category", TypeError),
        (lambda c: c.group("u", None), "group_id", ValueError),
        (lambda c: c.alias(None, "u"), "previous_id", ValueError),
        (lambda c: c.alias("a", None), "user_id", ValueError),
        (lambda c: c.register_device("u", "", "ios"), "token", ValueError),
        (lambda c: c.register_device(None, "t", "ios"), "user_id", ValueError),
    ],
)
def test_argument_errors_name_the_argument(client: Client, call: Callable[[Client], Any], argument: str,
                                           kind: type) -> None:
    with pytest.raises(ArgumentError) as raised:
        call(client)
    assert isinstance(raised.value, AssertionError)  # what analytics-python raises
    assert isinstance(raised.value, kind)
    assert raised.value.argument == argument and str(raised.value).startswith(argument)


def test_bad_client_options_are_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Client("site", None)
    with pytest.raises(ValueError, match="upload_size"):
        Client("site", "key", upload_size=0)
    with pytest.raises(ValueError, match="api_version"):
        Client("site", "key", api_version="v3")
    with pytest.raises(ValueError, match="region"):
        Client("site", "key", region="mars")


@pytest.mark.parametrize("region, host", [("EU", "track-eu.customer.io:443"), (" eu ", "track-eu.customer.io:443"),
                                          ("Us", "track.customer.io:443")])
def test_the_region_is_read_in_any_case(region: str, host: str, errors: Errors) -> None:
    with RecordingProxy() as proxy:  # stands in for the network: records where the client went
        client = Client("site", "key", region=region, proxies={"https": proxy.url}, sync_mode=True, max_retries=0,
                        on_error=errors)
        client.track("u1", "Went")
        client.shutdown()
    assert proxy.targets == [host]


def test_a_wrong_region_is_refused_at_once_naming_it() -> None:
    for options in ({}, {"host": "http://127.0.0.1:1"}, {"send": False}):  # even where the region is not used
        with pytest.raises(ArgumentError, match=r"^region: must be 'us' or 'eu' \(any case\), not 'europe'$"):
            Client("site", "key", region="europe", **options)


def test_the_facade_region_is_checked_where_it_is_set() -> None:
    saved = analytics_cio.region
    try:
        analytics_cio.region = "EU"
        assert analytics_cio.region == "eu"
        with pytest.raises(ArgumentError, match=r"^region: must be 'us' or 'eu'"):
            analytics_cio.region = "mars"
        assert analytics_cio.region == "eu"  # the refused value was not kept
    finally:
        analytics_cio.region = saved


# -- data is the caller's ------------------------------------------------------------------------------------


def test_caller_data_is_never_mutated_and_later_changes_are_not_sent(client: Client, server: LocalCustomerIO) -> None:
    properties = {"items": [{"sku": "a", "at": dt.datetime(2024, 1, 1)}], "meta": {"tags": {"x"}}, "n": 1}
    context = {"device": {"token": "t"}, "locale": "en"}
    traits = {"createdAt": "2024-01-01T00:00:00Z", "email": "x@y.co"}
    before = copy.deepcopy((properties, context, traits))
    client.track("u", "E", properties, context)
    client.identify("u", traits, anonymous_id="a")
    assert (properties, context, traits) == before  # nothing we did changed them
    properties["items"][0]["sku"] = "changed"  # the caller reuses its dicts at once
    properties["n"] = 2
    traits["email"] = "changed@y.co"
    client.flush()
    event, person = server.ops()
    assert event["attributes"]["items"][0]["sku"] == "a" and event["attributes"]["n"] == 1
    assert person["attributes"]["email"] == "x@y.co"


# -- batching ------------------------------------------------------------------------------------------------


def test_batches_are_cut_by_count(make_client: Callable[..., Client], server: LocalCustomerIO) -> None:
    client = make_client(upload_size=10, upload_interval=60)
    for i in range(25):
        client.track("u", f"E{i}")
    client.flush()
    assert [len(b) for b in batches(server)] == [10, 10, 5]
    assert [op["name"] for b in batches(server) for op in b] == [f"E{i}" for i in range(25)]


def test_batches_are_cut_by_bytes_below_500kb(make_client: Callable[..., Client], server: LocalCustomerIO) -> None:
    client = make_client(upload_size=10_000, upload_interval=60)
    for i in range(60):  # ~30 KB each: one request cannot carry them all
        client.track("u", "Big", {"blob": "x" * 30_000, "i": i})
    client.flush()
    bodies = [r.body for r in server.requests if r.path == "/api/v2/batch"]
    assert len(bodies) >= 4
    assert all(len(body) < 500_000 for body in bodies)
    assert max(len(body) for body in bodies) > 400_000  # batches are filled, not merely cut small
    assert sorted(op["attributes"]["i"] for b in batches(server) for op in b) == list(range(60))


def test_a_partial_batch_goes_out_after_upload_interval(make_client: Callable[..., Client],
                                                          server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=0.2)
    client.track("u", "Lonely")
    assert server.wait_for(lambda s: len(s.ops()) == 1, timeout=10)


def test_flush_sends_a_partial_batch_now_and_waits_for_it(make_client: Callable[..., Client],
                                                          server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=3600)
    for i in range(3):
        client.track("u", f"E{i}")
    assert client.flush() is True
    assert [op["name"] for op in server.ops()] == ["E0", "E1", "E2"]
    assert client.queue_size == 0


def test_an_op_over_32kb_is_reported_and_the_rest_of_the_batch_delivered(client: Client, server: LocalCustomerIO,
                                                                         errors: Errors) -> None:
    client.track("u", "Fine")
    _ok, too_big = client.identify("u", {f"k{i}": "v" * 900 for i in range(40)})
    client.track("u", "Also fine")
    client.flush()
    assert [op.get("name") for op in server.ops()] == ["Fine", "Also fine"]
    assert len(errors) == 1 and errors.messages == [too_big]
    assert errors[0][0].field == "operation" and "32768" in str(errors[0][0])


# -- what Customer.io answers --------------------------------------------------------------------------------


def test_207_reports_exactly_the_listed_ops_and_resends_nothing(client: Client, server: LocalCustomerIO,
                                                                errors: Errors) -> None:
    server.script(Reply(207, {"errors": [{"batch_index": 1, "reason": "invalid", "field": "name",
                                          "message": "name is too long"}]}))
    _, _first = client.track("u", "A")
    _, second = client.track("u", "B")
    _, _third = client.track("u", "C")
    client.flush()
    assert len(server.requests) == 1
    assert len(errors) == 1
    error, messages = errors[0]
    assert messages == [second]
    assert isinstance(error, RejectedError) and error.status == 207 and error.field == "name"
    assert "name is too long" in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_4xx_reports_the_batch_without_retrying(client: Client, server: LocalCustomerIO, errors: Errors,
                                                status: int) -> None:
    server.script(Reply(status, {"errors": [{"reason": "bad", "message": f"refused with {status}"}]}))
    client.track("u", "A")
    client.track("u", "B")
    client.flush()
    assert len(server.requests) == 1
    assert len(errors) == 1 and len(errors.messages) == 2
    assert errors[0][0].status == status and f"refused with {status}" in str(errors[0][0])


@pytest.mark.parametrize("reply", [Reply(500), Reply(503), Reply(429), Reply(408), Reply(drop=True)])
def test_server_errors_and_dropped_connections_are_retried(make_client: Callable[..., Client],
                                                           server: LocalCustomerIO, errors: Errors,
                                                           reply: Reply) -> None:
    client = make_client()
    client.policy = type(client.policy)(backoff_factor=0.01)
    server.script(reply, reply)
    client.track("u", "A")
    client.flush()
    assert len(server.requests) == 3
    assert [op["name"] for op in server.ops()] == ["A"]
    assert errors == []


def test_retries_end_in_on_error(make_client: Callable[..., Client], server: LocalCustomerIO, errors: Errors) -> None:
    client = make_client(max_retries=2)
    client.policy = type(client.policy)(max_retries=2, backoff_factor=0.01)
    server.script(Reply(500, "boom"), Reply(500, "boom"), Reply(500, "boom"))
    _, msg = client.track("u", "A")
    client.flush()
    assert len(server.requests) == 3
    assert errors.messages == [msg]
    assert "3 attempts" in str(errors[0][0]) and "500" in str(errors[0][0])


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_gzip_bodies(make_client: Callable[..., Client], server: LocalCustomerIO, version: str) -> None:
    client = make_client(gzip=True, api_version=version)
    client.track("u", "Zipped", {"x": "y" * 1000})
    client.flush()
    request = server.requests[0]
    assert request.headers["Content-Encoding"] == "gzip"  # the server gunzips it before recording the body
    body = request.json()
    assert (body["batch"][0] if version == "v2" else body)["name"] == "Zipped"
    assert [event["name"] for event in server.state.events()] == ["Zipped"]


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_requests_use_basic_auth(make_client: Callable[..., Client], server: LocalCustomerIO, version: str) -> None:
    client = make_client(api_version=version)
    for i in range(3):
        client.track("u", f"E{i}")
        client.flush()
    assert {r.headers["Authorization"] for r in server.requests} == {f"Basic {BASIC_TOKEN}"}
    assert len(server.requests) == 3


# -- send, sync_mode, opt-out --------------------------------------------------------------------------------


def test_send_false_builds_and_validates_but_sends_nothing(make_client: Callable[..., Client],
                                                           server: LocalCustomerIO) -> None:
    client = make_client(send=False)
    ok, msg = client.track("u", "E")
    assert ok and msg["event"] == "E"
    with pytest.raises(ArgumentError):
        client.track("u", None)
    assert client.flush() is True
    assert server.requests == []


def test_sync_mode_delivers_before_returning(make_client: Callable[..., Client], server: LocalCustomerIO,
                                             errors: Errors) -> None:
    client = make_client(sync_mode=True)
    assert client.track("u", "Now")[0] is True
    assert [op["name"] for op in server.ops()] == ["Now"]
    server.script(Reply(400, {"errors": [{"reason": "nope"}]}))
    ok, msg = client.track("u", "Refused")
    assert ok is False and errors.messages == [msg]


def test_integrations_opt_out_sends_nothing(client: Client, server: LocalCustomerIO) -> None:
    assert client.track("u", "A", integrations={"Customer.io": False})[0]
    assert client.track("u", "B", integrations={"All": False})[0]
    assert client.track("u", "C", integrations={"All": False, "Customer.io": True})[0]
    client.flush()
    assert [op["name"] for op in server.ops()] == ["C"]


# -- on_error and the worker's health ------------------------------------------------------------------------


def test_unmappable_messages_reach_on_error(client: Client, errors: Errors) -> None:
    _, msg = client.identify(anonymous_id="anon", traits={"plan": "x"})
    client.flush()
    assert errors.messages == [msg] and isinstance(errors[0][0], UnmappableError)


def test_a_raising_on_error_never_kills_the_worker(make_client: Callable[..., Client], server: LocalCustomerIO,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    def on_error(*_: Any) -> None:
        raise RuntimeError("callback bug")

    client = make_client(on_error=on_error)
    server.script(Reply(400))
    client.track("u", "Refused")
    client.flush()
    client.track("u", "Later")
    assert client.flush() is True
    assert [op["name"] for op in server.ops()] == ["Later"]
    assert "on_error raised" in caplog.text


def test_queue_full_refuses_without_blocking(make_client: Callable[..., Client], server: LocalCustomerIO,
                                             errors: Errors) -> None:
    client = make_client(max_queue_size=5, upload_interval=3600)
    results = [client.track("u", f"E{i}")[0] for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert len(errors) == 3 and all(isinstance(e, QueueFullError) for e, _ in errors)
    client.flush()
    assert len(server.ops()) == 5


# -- shutdown and exit ---------------------------------------------------------------------------------------


def test_shutdown_delivers_then_refuses_later_calls(client: Client, server: LocalCustomerIO, errors: Errors,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    client.track("u", "Before")
    assert client.shutdown() is True
    assert client.shutdown() is True  # idempotent
    ok, msg = client.track("u", "After")
    assert ok is False
    assert errors.messages == [msg] and isinstance(errors[0][0], ShutdownError)
    assert "shut down" in caplog.text
    assert [op["name"] for op in server.ops()] == ["Before"]


def test_join_stops_the_worker_and_keeps_the_queue(make_client: Callable[..., Client],
                                                   server: LocalCustomerIO) -> None:
    client = make_client(upload_interval=3600)
    client.track("u", "Queued")
    client.join()
    assert client.flush() is True  # a later flush starts the worker again
    assert [op["name"] for op in server.ops()] == ["Queued"]


def test_exit_without_flush_delivers_everything(server: LocalCustomerIO) -> None:
    script = textwrap.dedent(f"""
        import analytics_cio as analytics
        analytics.site_id, analytics.api_key, analytics.host = "s", "k", {server.url!r}
        for i in range(1000):
            analytics.track("user-%d" % (i % 50), "Exit Event", {{"i": i}})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    received = sorted(op["attributes"]["i"] for op in server.ops())
    assert received == list(range(1000))


# -- credentials ---------------------------------------------------------------------------------------------


def test_credentials_never_appear_in_logs_reprs_or_errors(make_client: Callable[..., Client],
                                                          server: LocalCustomerIO, errors: Errors,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="analytics_cio")
    client = make_client(debug=True, max_retries=1)
    client.policy = type(client.policy)(max_retries=1, backoff_factor=0.01)
    server.script(Reply(401, {"meta": {"error": "Unauthorized request"}}), Reply(500), Reply(drop=True))
    client.track("u", "A")
    client.flush()
    client.track("u", "B")
    client.flush()
    seen = caplog.text + repr(client) + repr(client.transport) + repr(client._worker.transport)
    seen += "".join(f"{e!r} {e}" for e, _ in errors)
    assert len(errors) == 2
    assert API_KEY not in seen and BASIC_TOKEN not in seen
    assert SITE_ID not in repr(client) and SITE_ID[:4] in repr(client)  # enough to tell clients apart


def test_debug_does_not_stack_handlers(make_client: Callable[..., Client]) -> None:
    make_client(debug=True)
    make_client(debug=True)
    handlers = [h for h in logging.getLogger("analytics_cio").handlers if isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.NullHandler) and type(h) is logging.StreamHandler]
    assert len(handlers) == 1



def test_the_actions_destination_name_opts_out_too(client: Client, server: LocalCustomerIO) -> None:
    assert client.track("u", "A", integrations={"Customer.io (Actions)": False})[0]
    assert client.track("u", "B", integrations={"All": False, "Customer.io (Actions)": True})[0]
    client.flush()
    assert [op["name"] for op in server.ops()] == ["B"]


def test_a_v1_op_rerouted_to_the_entity_endpoint_keeps_the_32kb_limit(make_client: Callable[..., Client],
                                                                      server: LocalCustomerIO,
                                                                      errors: Errors) -> None:
    client = make_client(api_version="v1")
    _, msg = client.identify("..", {f"k{i}": "v" * 900 for i in range(40)})  # ".." travels as a v2 entity
    client.identify("..", {"plan": "pro"})
    client.flush()
    assert errors.messages == [msg] and errors[0][0].field == "operation" and "32768" in str(errors[0][0])
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/api/v2/entity")]
