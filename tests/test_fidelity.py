"""Issue 11's nine points, each against the local Customer.io, on both transports: what reaches Customer.io, what
it holds afterwards, what ``on_error`` hears, and what a call raises."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from analytics_cio import ArgumentError, ArgumentTypeError, Client, UnmappableError
from analytics_cio._ulid import derived_ulid, is_ulid
from analytics_cio.cli import main
from analytics_cio.testing._server import LocalCustomerIO

from .conftest import API_KEY, SITE_ID, Errors

WHEN = dt.datetime(2021, 6, 1, 10, 0, tzinfo=dt.timezone.utc)
UNIX = 1622541600


@pytest.fixture(params=["v2", "v1"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(make_client: Callable[..., Client], api: str) -> Callable[..., Client]:
    return lambda **options: make_client(api_version=api, **options)


@pytest.fixture
def client(make: Callable[..., Client]) -> Client:
    return make()


def delivered(client: Client, server: LocalCustomerIO) -> list[tuple[str, str, Any]]:
    """(method, path, body) of every request, once the client has settled everything."""
    assert client.flush(timeout=10)
    return [(r.method, r.path, r.json()) for r in server.requests]


def all_accepted(server: LocalCustomerIO) -> bool:
    return all(r.status == 200 for r in server.requests)


# -- 1. group: the object's attributes -------------------------------------------------------------------------


def test_group_object_attributes_are_merged_in_and_helper_keys_are_not_attributes(
    client: Client, server: LocalCustomerIO, errors: Errors
) -> None:
    client.group("u1", "acme", {"name": "Acme", "objectTypeId": "2", "relationshipAttributes": {"role": "owner"},
                                "objectAttributes": {"plan": "enterprise", "seats": 40, "since": WHEN}})
    delivered(client, server)
    assert all_accepted(server) and errors == []
    acme = server.state.object("2", "acme")
    assert acme is not None
    assert acme["attributes"] == {"name": "Acme", "plan": "enterprise", "seats": 40, "since": UNIX}
    assert acme["relationships"] == {"u1": {"role": "owner"}}


def test_group_object_attributes_must_be_a_dict(client: Client, server: LocalCustomerIO, errors: Errors) -> None:
    _, msg = client.group("u1", "acme", {"object_attributes": "enterprise"})
    delivered(client, server)
    ((error, messages),) = errors
    assert isinstance(error, UnmappableError) and error.field == "traits.object_attributes"
    assert messages == [msg] and server.requests == []


# -- 2. relationship on identify -------------------------------------------------------------------------------


def test_identify_relates_the_person_to_the_object_and_the_helper_traits_are_not_attributes(
    client: Client, server: LocalCustomerIO, api: str, errors: Errors
) -> None:
    client.identify("u1", {"plan": "pro", "objectId": "acme", "objectTypeId": "2",
                           "relationshipAttributes": {"role": "admin"}}, timestamp=WHEN)
    client.identify("u2", {"object_id": 306, "relationship_attributes": {"seat": 1}})  # the client's type: "1"
    requests = delivered(client, server)
    assert all_accepted(server) and errors == []
    u1, u2 = server.state.person("u1"), server.state.person("u2")
    assert u1 is not None and u2 is not None
    assert u1["attributes"] == {"plan": "pro"}
    assert u1["relationships"] == [{"object_type_id": "2", "object_id": "acme", "attributes": {"role": "admin"}}]
    assert u2["attributes"] == {}
    assert u2["relationships"] == [{"object_type_id": "1", "object_id": "306", "attributes": {"seat": 1}}]
    if api == "v1":  # the identify and its relationship go together, through the v2 entity endpoint
        assert [(method, path) for method, path, _ in requests] == [("POST", "/api/v2/entity")] * 2


# -- 3. delivery metrics and content events --------------------------------------------------------------------


def test_report_delivery_event_posts_a_metric_on_both_transports(
    client: Client, server: LocalCustomerIO, errors: Errors
) -> None:
    client.track("u1", "Report Delivery Event", {"deliveryId": "dlv-1", "metric": "opened", "recipient": "tok-1"},
                 timestamp=WHEN)
    client.track("u1", "Report Delivery Event", {"delivery_id": "dlv-1", "metric": "clicked",
                                                 "href": "https://example.com/", "actionName": "buy",
                                                 "actionValue": "now", "extra": "ignored"}, timestamp=WHEN)
    requests = delivered(client, server)
    assert requests == [
        ("POST", "/api/v1/metrics", {"delivery_id": "dlv-1", "metric": "opened", "recipient": "tok-1",
                                     "timestamp": UNIX}),
        ("POST", "/api/v1/metrics", {"delivery_id": "dlv-1", "metric": "clicked", "href": "https://example.com/",
                                     "metadata": {"action_name": "buy", "action_value": "now"},
                                     "timestamp": UNIX}),
    ]
    assert all_accepted(server) and errors == []
    assert [(d["delivery_id"], d["metric"]) for d in server.state.snapshot()["deliveries"]] == [
        ("dlv-1", "opened"), ("dlv-1", "clicked")
    ]
    assert server.state.events() == []  # not also an event


def test_a_delivery_event_without_its_fields_is_reported(client: Client, server: LocalCustomerIO,
                                                         errors: Errors) -> None:
    client.track("u1", "Report Delivery Event", {"metric": "opened"})
    client.track("u1", "Report Delivery Event", {"deliveryId": "dlv-1"})
    delivered(client, server)
    assert [e.field for e, _ in errors] == ["properties.deliveryId", "properties.metric"]
    assert server.requests == []


def test_the_local_customer_io_checks_metrics_as_customer_io_documents_them(
    client: Client, server: LocalCustomerIO, errors: Errors
) -> None:
    client.track("u1", "Report Delivery Event", {"deliveryId": "dlv-1", "metric": "liked"})
    delivered(client, server)
    ((error, _),) = errors
    assert "metric must be one of" in str(error)
    assert [r.status for r in server.requests] == [400] and server.state.snapshot()["deliveries"] == []


def test_report_content_event_sends_the_content_op(client: Client, server: LocalCustomerIO, api: str,
                                                   errors: Errors) -> None:
    client.track("u1", "Report Content Event", {"actionType": "viewed_content", "contentId": 7}, timestamp=WHEN)
    client.track(anonymous_id="anon-1", event="Report Content Event",
                 properties={"actionType": "clicked_content", "contentId": 7, "actionName": "open"})
    requests = delivered(client, server)
    assert all_accepted(server) and errors == []
    # Two people: on v1 their requests go side by side, so the server may receive them in either order.
    events = sorted(server.state.events(), key=lambda e: e["type"], reverse=True)
    assert [(e["person"], e["type"], e["name"], e["data"]) for e in events] == [
        ("u1", "viewed_content", "viewed_content", {"contentId": 7}),
        (None, "clicked_content", "clicked_content", {"contentId": 7, "actionName": "open"}),
    ]
    assert all(is_ulid(e["id"]) for e in events) and events[0]["timestamp"] == UNIX
    paths = {path for _, path, _ in requests}
    assert paths == ({"/api/v2/batch"} if api == "v2" else {"/api/v2/entity"})  # v1 has no content op


def test_a_content_event_needs_a_known_action_type(client: Client, server: LocalCustomerIO, errors: Errors) -> None:
    client.track("u1", "Report Content Event", {"actionType": "liked_content"})
    delivered(client, server)
    ((error, _),) = errors
    assert isinstance(error, UnmappableError) and error.field == "properties.actionType"
    assert server.requests == []


# -- 4. device platforms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("device", "platform"), [
    ({"type": "iPadOS"}, "ios"), ({"type": "Android"}, "android"), ({"type": "web"}, None),
    ({"type": "mobile"}, None), ({}, None),
])
def test_only_ios_and_android_devices_are_added_the_event_always_goes(
    client: Client, server: LocalCustomerIO, errors: Errors, device: dict[str, str], platform: str | None
) -> None:
    _, msg = client.track("u1", "Application Installed", context={"device": {"token": "tok", **device}})
    delivered(client, server)
    assert all_accepted(server)
    person = server.state.person("u1")
    assert person is not None and [e["name"] for e in person["events"]] == ["Application Installed"]
    if platform is not None:
        assert person["devices"]["tok"]["platform"] == platform and errors == []
    else:
        assert person["devices"] == {}
        ((error, messages),) = errors
        assert isinstance(error, UnmappableError) and error.field == "context.device.type"
        assert messages == [msg]


# -- 5. created_at -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", None, "not a time", "2018-03-04T12:08:56.235 PDT", [], {"at": 1}])
def test_a_created_at_that_is_no_time_is_never_sent(client: Client, server: LocalCustomerIO, value: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        client.identify("u1", {"plan": "pro", "created_at": value})
        client.identify("u2", {"createdAt": value})
        requests = delivered(client, server)
    assert all("created_at" not in json.dumps(body) for _, _, body in requests)
    assert server.state.person("u1")["attributes"] == {"plan": "pro"}  # type: ignore[index]
    assert "is not a time: not sent as created_at" in caplog.text and "traits.createdAt" in caplog.text


@pytest.mark.parametrize(("value", "unix"), [(WHEN, UNIX), ("1622541600", UNIX), ("2021-06-01T10:00:00Z", UNIX),
                                             (1622541600000, UNIX)])
def test_a_created_at_that_is_a_time_goes_as_unix_seconds(client: Client, server: LocalCustomerIO, value: Any,
                                                          unix: int) -> None:
    client.identify("u1", {"createdAt": value})
    delivered(client, server)
    assert server.state.person("u1")["attributes"] == {"created_at": unix}  # type: ignore[index]


# -- 6. ids are strings --------------------------------------------------------------------------------------


def test_ids_are_strings_on_both_transports(client: Client, server: LocalCustomerIO, errors: Errors) -> None:
    client.identify("ada@example.com", {"id": 42})  # assigning an id to a person found by email
    client.identify(7, {"plan": "pro"})
    client.track(anonymous_id=987654, event="Viewed")
    client.group(7, 306, {"name": "Acme"})
    client.track(7, "Object Deleted", {"objectId": 5})
    requests = delivered(client, server)
    assert all_accepted(server) and errors == []
    text = json.dumps([body for _, _, body in requests])
    assert '"id":42' not in text.replace(" ", "") and '"42"' in text
    assert server.state.person("42")["email"] == "ada@example.com"  # type: ignore[index]
    assert server.state.person("7") is not None
    assert server.state.object("1", "306") is not None
    assert server.state.snapshot()["anonymous_events"].keys() == {"987654"}


# -- 7. non-ULID message ids ---------------------------------------------------------------------------------


def test_a_resent_message_with_a_uuid_id_keeps_its_event_id(make: Callable[..., Client],
                                                             server: LocalCustomerIO) -> None:
    ids = [str(uuid.uuid4()) for _ in range(100)]
    for _ in range(2):  # the answer to the first attempt was lost: the application sends them again
        client = make()
        for message_id in ids:
            client.track("u1", "Order Completed", {"total": 1}, timestamp=WHEN, message_id=message_id)
        assert client.flush(timeout=10)
    assert len(server.state.events("Order Completed")) == 100  # not 200
    assert server.state.duplicates == 100
    first = server.state.events("Order Completed")[0]
    assert first["id"] == derived_ulid(UNIX * 1000, ids[0].encode())


def test_reimporting_a_segment_export_does_not_double_events(server: LocalCustomerIO, tmp_path: Path,
                                                             api: str) -> None:
    export = tmp_path / "export.ndjson"
    export.write_text("".join(
        json.dumps({"type": "track", "userId": "u1", "event": "Order Completed", "messageId": str(uuid.uuid4()),
                    "timestamp": "2021-06-01T10:00:00.000Z", "properties": {"n": n}}) + "\n"
        for n in range(100)
    ), encoding="utf-8")
    for _ in range(2):
        out, err = io.StringIO(), io.StringIO()
        code = main(["import", str(export), "--host", server.url, "--site-id", SITE_ID, "--api-key", API_KEY,
                     "--api-version", api], out, err)
        assert code == 0, err.getvalue()
    assert len(server.state.events("Order Completed")) == 100 and server.state.duplicates == 100


# -- 8. on_error=False ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("falsy", [False, None, 0, ""])
def test_a_falsy_on_error_means_no_callback(server: LocalCustomerIO, falsy: Any) -> None:
    client = Client(SITE_ID, API_KEY, host=server.url, on_error=falsy, sync_mode=True, max_retries=0)
    assert client.on_error is None
    ok, _ = client.identify(anonymous_id="anon-only")  # cannot be delivered: reported to nobody, no exception
    assert ok is False
    client.shutdown()


def test_a_truthy_non_callable_on_error_is_refused() -> None:
    with pytest.raises(ArgumentTypeError, match="on_error"):
        Client(send=False, on_error="log it")


def test_the_facade_takes_on_error_false_as_segments_tests_set_it(facade: Any, server: LocalCustomerIO) -> None:
    facade.on_error = False
    facade.sync_mode = True
    facade.track("u1", "Signed Up")
    facade.identify(anonymous_id="anon-only")  # undeliverable: nothing to call, nothing raised
    assert facade.flush(timeout=10) is not False
    assert [e["name"] for e in server.state.events()] == ["Signed Up"]


# -- 9. hostile values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", [Decimal("1e400000"), Decimal("-1e1000000"), 10**5000, "bad \ud800 text"],
                         ids=["decimal-1e400000", "decimal-1e1000000", "5000-digit-int", "lone-surrogate"])
def test_one_bad_value_drops_its_key_only_quickly_with_a_warning(
    client: Client, server: LocalCustomerIO, errors: Errors, hostile: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        client.track("u1", "Order Completed", {"total": 3, "bad": hostile}, timestamp=WHEN)
        client.identify("u1", {"plan": "pro", "bad": hostile})
        delivered(client, server)
    assert time.monotonic() - started < 3  # int(Decimal("1e400000")) alone takes seconds
    assert all_accepted(server) and errors == []
    (event,) = server.state.events()
    assert event["data"] == {"total": 3}
    assert server.state.person("u1")["attributes"] == {"plan": "pro"}  # type: ignore[index]
    assert re.search(r"dropped '(attributes\.|data\.)?bad'", caplog.text)  # the key, where it is in the request


def test_a_key_with_a_lone_surrogate_is_dropped(client: Client, server: LocalCustomerIO) -> None:
    client.track("u1", "E", {"ok": 1, "k\udc80": 2}, timestamp=WHEN)
    delivered(client, server)
    assert server.state.events()[0]["data"] == {"ok": 1}


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    return value


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"x": [value]}
    return value


@pytest.mark.parametrize(("argument", "call"), [
    ("properties", lambda c, v: c.track("u1", "E", v)),
    ("traits", lambda c, v: c.identify("u1", v)),
    ("context", lambda c, v: c.page("u1", "Home", context=v)),
    ("traits", lambda c, v: c.group("u1", "g", v)),
])
@pytest.mark.parametrize("make_value", [_cyclic, lambda: _deep(10_000)], ids=["cyclic", "10000-deep"])
def test_a_cyclic_or_bottomless_argument_is_an_argument_error_naming_it(
    client: Client, argument: str, call: Callable[[Client, Any], Any], make_value: Callable[[], Any]
) -> None:
    with pytest.raises(ArgumentError, match=rf"^{argument}: ") as raised:
        call(client, make_value())
    assert raised.value.argument == argument
    assert not isinstance(raised.value, RecursionError)


@pytest.mark.parametrize("when", [
    dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(hours=5))),
    dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5))),
])
def test_a_timestamp_out_of_range_in_utc_is_an_argument_error(client: Client, when: dt.datetime) -> None:
    with pytest.raises(ArgumentError, match=r"^timestamp: ") as raised:
        client.track("u1", "E", timestamp=when)
    assert raised.value.argument == "timestamp"


def test_a_deep_but_finite_argument_still_goes(client: Client, server: LocalCustomerIO) -> None:
    client.track("u1", "E", {"shallow": 1, "deep": _deep(40)}, timestamp=WHEN)
    delivered(client, server)
    assert all_accepted(server) and server.state.events()[0]["data"]["shallow"] == 1
