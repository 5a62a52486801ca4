"""Every mapping rule end to end: a real Client against the local Customer.io, on both transports.

Each test makes user calls, then checks what reached the server — v2: the ops of ``POST /api/v2/batch`` as
received; v1: each request's method, raw (percent-encoded) path and JSON body — and what ``on_error`` got.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from analytics_cio import Client, LimitError, UnmappableError
from analytics_cio.testing._server import LocalCustomerIO

from .conftest import API_KEY, SITE_ID, Errors

WHEN = dt.datetime(2021, 6, 1, 10, 0, tzinfo=dt.timezone.utc)
UNIX = 1622541600


@pytest.fixture(params=["v2", "v1"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(make_client: Callable[..., Client], api: str) -> Callable[..., Client]:
    """A client for the transport under test, with the given mapping options."""
    return lambda **options: make_client(api_version=api, **options)


@pytest.fixture
def client(make: Callable[..., Client]) -> Client:
    return make()


def received(server: LocalCustomerIO, api: str) -> list[Any]:
    """v2: every op of every batch request; v1: (method, raw path, JSON body) of every request."""
    if api == "v2":
        assert all(r.path == "/api/v2/batch" for r in server.requests)
        return [op for r in server.requests for op in r.json()["batch"]]
    return [(r.method, r.path, r.json()) for r in server.requests]


def sent(client: Client, server: LocalCustomerIO, api: str) -> list[Any]:
    assert client.flush(timeout=10)
    return received(server, api)


def expect(api: str, v2: list[Any], v1: list[Any]) -> list[Any]:
    return v2 if api == "v2" else v1


def all_accepted(server: LocalCustomerIO) -> bool:
    return all(r.status == 200 for r in server.requests)


# -- who the person is ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "identifiers", "path"),
    [
        ("cio_d00000000001", {"cio_id": "d00000000001"}, "cio_d00000000001"),  # the person seeded below
        ("ada+x@example.com", {"email": "ada+x@example.com"}, "ada%2Bx%40example.com"),
        ("user 42", {"id": "user 42"}, "user%2042"),
        (42, {"id": "42"}, "42"),
        ("../../x", {"id": "../../x"}, "..%2F..%2Fx"),
        ("a/b?c#d%2F", {"id": "a/b?c#d%2F"}, "a%2Fb%3Fc%23d%252F"),
    ],
)
def test_identifiers(client: Client, server: LocalCustomerIO, api: str, user_id: Any,
                     identifiers: dict[str, str], path: str, errors: Errors) -> None:
    server.state.apply({"type": "person", "action": "identify", "identifiers": {"id": "seed"}})
    client.identify(user_id, {"plan": "pro"}, timestamp=WHEN)
    client.track(user_id, "Signed Up", timestamp=WHEN)
    ops = sent(client, server, api)
    if api == "v2":
        assert [op["identifiers"] for op in ops] == [identifiers] * 2
    else:
        assert [(m, p) for m, p, _ in ops] == [("PUT", f"/api/v1/customers/{path}"),
                                               ("POST", f"/api/v1/customers/{path}/events")]
    assert all_accepted(server) and errors == []
    person = server.state.person(str(user_id))
    assert person is not None and person["attributes"] == {"plan": "pro"}
    assert [e["name"] for e in person["events"]] == ["Signed Up"]


@pytest.mark.parametrize("user_id", ["..", "."])
def test_dot_ids_never_change_the_path(client: Client, server: LocalCustomerIO, api: str, user_id: str) -> None:
    client.identify(user_id, {"plan": "pro"}, timestamp=WHEN)
    client.track(user_id, "Signed Up", timestamp=WHEN)
    ops = sent(client, server, api)
    if api == "v1":
        assert [(m, p) for m, p, _ in ops] == [("POST", "/api/v2/entity")] * 2
    assert all_accepted(server)
    person = server.state.person(user_id)
    assert person is not None and person["id"] == user_id and len(person["events"]) == 1


def test_email_as_id_off(make: Callable[..., Client], server: LocalCustomerIO, api: str) -> None:
    client = make(email_as_id=False)
    client.identify("ada@example.com", {"plan": "pro"}, timestamp=WHEN)
    ops = sent(client, server, api)
    op = {"type": "person", "action": "identify", "identifiers": {"id": "ada@example.com"},
          "attributes": {"plan": "pro"}, "timestamp": UNIX}
    # v1 would read an "@" in the path as an email address: the op goes as itself through /api/v2/entity.
    assert ops == expect(api, [op], [("POST", "/api/v2/entity", op)])
    person = server.state.person("ada@example.com")
    assert person is not None and (person["id"], person["email"]) == ("ada@example.com", None)


@pytest.mark.parametrize("call", ["track", "page", "screen"])
def test_anonymous_events(client: Client, server: LocalCustomerIO, api: str, call: str) -> None:
    if call == "track":
        _, msg = client.track(None, "Viewed Pricing", {"plan": "pro"}, anonymous_id="anon-1", timestamp=WHEN)
    else:
        _, msg = getattr(client, call)(None, None, "Pricing", {"plan": "pro"}, anonymous_id="anon-1",
                                       timestamp=WHEN)
    action, name = {"track": ("event", "Viewed Pricing"), "page": ("page", "Pricing"),
                    "screen": ("event", "Viewed Pricing Screen")}[call]
    assert sent(client, server, api) == expect(
        api,
        [{"type": "person", "action": action, "identifiers": {"anonymous_id": "anon-1"}, "name": name,
          "id": msg["messageId"], "attributes": {"plan": "pro"}, "timestamp": UNIX}],
        [("POST", "/api/v1/events", {"name": name, "data": {"plan": "pro"}, "id": msg["messageId"], "type": action,
                                     "timestamp": UNIX, "anonymous_id": "anon-1"})],
    )
    assert [e["name"] for e in server.state.snapshot()["anonymous_events"]["anon-1"]] == [name]


# -- identify -------------------------------------------------------------------------------------------------


def test_identify(client: Client, server: LocalCustomerIO, api: str) -> None:
    client.track(None, "Browsed", anonymous_id="anon-1", timestamp=WHEN)
    client.flush()
    traits = {"email": "ada@example.com", "unsubscribed": True, "createdAt": dt.datetime(2021, 6, 1, 10),
              "address": {"city": "London", "tags": ["a", "b"]}}
    client.identify("u1", traits, anonymous_id="anon-1", timestamp=WHEN)
    attributes = {"email": "ada@example.com", "unsubscribed": True, "address": {"city": "London", "tags": ["a", "b"]},
                  "created_at": UNIX, "anonymous_id": "anon-1"}
    assert sent(client, server, api)[1:] == expect(
        api,
        [{"type": "person", "action": "identify", "identifiers": {"id": "u1"}, "attributes": attributes,
          "timestamp": UNIX}],
        [("PUT", "/api/v1/customers/u1", {**attributes, "_timestamp": UNIX})],
    )
    person = server.state.person("u1")
    assert person is not None
    assert person["email"] == "ada@example.com" and person["anonymous_ids"] == ["anon-1"]
    assert [e["name"] for e in person["events"]] == ["Browsed"]  # the anonymous activity now belongs to u1


def test_identify_gives_a_person_found_by_email_an_id(client: Client, server: LocalCustomerIO, api: str) -> None:
    client.identify("ada@example.com", {"plan": "pro"}, timestamp=WHEN)
    client.identify("ada@example.com", {"id": "ada-1"}, timestamp=WHEN)
    client.identify(None, {"email": "bob@example.com"}, anonymous_id="anon-2", timestamp=WHEN)
    ops = sent(client, server, api)
    if api == "v2":
        assert [op["identifiers"] for op in ops] == [{"email": "ada@example.com"}] * 2 + [
            {"email": "bob@example.com"}]
    else:  # requests for different people go concurrently
        assert sorted(p for _, p, _ in ops) == ["/api/v1/customers/ada%40example.com"] * 2 + [
            "/api/v1/customers/bob%40example.com"]
    ada = server.state.person("ada-1")
    assert ada is not None and ada["email"] == "ada@example.com"
    assert server.state.person("bob@example.com") is not None


def test_identify_without_a_person_reaches_on_error(client: Client, server: LocalCustomerIO, api: str,
                                                    errors: Errors) -> None:
    _, msg = client.identify(None, {"plan": "pro"}, anonymous_id="anon-1")
    assert sent(client, server, api) == []
    ((error, messages),) = errors
    assert isinstance(error, UnmappableError) and messages == [msg]


# -- track ----------------------------------------------------------------------------------------------------


def test_track(client: Client, server: LocalCustomerIO, api: str) -> None:
    _, msg = client.track("u1", "Order Completed", {"total": Decimal("9.90"), "sku": ["a"]}, timestamp=WHEN)
    assert sent(client, server, api) == expect(
        api,
        [{"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "Order Completed",
          "id": msg["messageId"], "attributes": {"total": 9.9, "sku": ["a"]}, "timestamp": UNIX}],
        [("POST", "/api/v1/customers/u1/events", {"name": "Order Completed", "data": {"total": 9.9, "sku": ["a"]},
                                                  "id": msg["messageId"], "type": "event", "timestamp": UNIX})],
    )


def test_a_resent_event_is_deduplicated_by_its_ulid(client: Client, server: LocalCustomerIO, api: str) -> None:
    _, msg = client.track("u1", "Order Completed", timestamp=WHEN)
    client.track("u1", "Order Completed", timestamp=WHEN, message_id=msg["messageId"])
    client.track("u1", "Order Completed", timestamp=WHEN, message_id="order-42")  # not a ULID: one derived from it
    client.track("u1", "Order Completed", timestamp=WHEN, message_id="order-42")
    ops = sent(client, server, api)
    ids = [op.get("id") for op in ops] if api == "v2" else [body.get("id") for _, _, body in ops]
    assert ids[:2] == [msg["messageId"], msg["messageId"]]
    assert ids[2] == ids[3] and ids[2] not in (None, "order-42", msg["messageId"])
    assert server.state.duplicates == 2


def test_long_event_names_are_cut(client: Client, server: LocalCustomerIO, api: str,
                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        client.track("u1", "ß" * 51, timestamp=WHEN)  # 102 bytes
        (op,) = sent(client, server, api)
    assert (op["name"] if api == "v2" else op[2]["name"]) == "ß" * 50
    assert "event name cut" in caplog.text
    assert all_accepted(server)


# -- page and screen ------------------------------------------------------------------------------------------


def test_page(client: Client, server: LocalCustomerIO, api: str, errors: Errors) -> None:
    client.page("u1", "Docs", "Install", {"url": "https://x.test/install"}, timestamp=WHEN)
    client.page("u1", None, None, {"url": "https://x.test/a"}, timestamp=WHEN)
    client.page("u1", None, None, None, context={"page": {"url": "https://x.test/b"}}, timestamp=WHEN)
    _, unnamed = client.page("u1", None, None, {"title": "?"})
    ops = sent(client, server, api)
    if api == "v2":
        assert [(op["action"], op["name"]) for op in ops] == [
            ("page", "Install"), ("page", "https://x.test/a"), ("page", "https://x.test/b")]
        assert ops[0]["attributes"] == {"url": "https://x.test/install"}
    else:
        assert [(p, b["type"], b["name"]) for _, p, b in ops] == [
            ("/api/v1/customers/u1/events", "page", n) for n in ("Install", "https://x.test/a", "https://x.test/b")]
        assert ops[0][2]["data"] == {"url": "https://x.test/install"}
    ((error, messages),) = errors
    assert isinstance(error, UnmappableError) and error.field == "name" and messages == [unnamed]


def test_screen(make: Callable[..., Client], server: LocalCustomerIO, api: str,
                caplog: pytest.LogCaptureFixture) -> None:
    client = make()
    client.screen("u1", None, "Cart", {"items": 2}, timestamp=WHEN)
    client.screen("u1", timestamp=WHEN)
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        client.screen(None, None, "Ä" * 60, anonymous_id="anon-1", timestamp=WHEN)
        ops = sent(client, server, api)
    views = [(op["action"], op["name"]) for op in ops] if api == "v2" else [
        (body["type"], body["name"]) for _, _, body in ops]
    assert sorted(views) == sorted(  # v1: the anonymous visitor's request may overtake u1's
        ("event", name) for name in ("Viewed Cart Screen", "Viewed Undefined Screen",
                                     "Viewed " + "Ä" * 43 + " Screen"))
    assert "screen name cut" in caplog.text
    assert all_accepted(server)

    native = make(screen_as="screen")
    server.reset()
    native.screen("u1", None, "Cart", timestamp=WHEN)
    (op,) = sent(native, server, api)
    assert ((op["action"], op["name"]) if api == "v2" else (op[2]["type"], op[2]["name"])) == ("screen", "Cart")


# -- mobile lifecycle and devices -----------------------------------------------------------------------------

CONTEXT = {
    "device": {"token": "tok-1", "type": "iPhone OS", "model": "iPhone15,2"},
    "os": {"name": "iOS", "version": "17.1"},
    "app": {"version": "3.2.1"},
    "locale": "en-GB",
}
DEVICE = {"token": "tok-1", "platform": "ios", "last_used": UNIX, "attributes": {
    "device_os": "iOS 17.1", "device_model": "iPhone15,2", "app_version": "3.2.1", "device_locale": "en-GB",
    "push_enabled": "true", "build": "7"}}


@pytest.mark.parametrize("event", ["Application Installed", "Application Opened", "Device Created or Updated",
                                   "device_token_registered"])
def test_lifecycle_events_add_the_device(make: Callable[..., Client], server: LocalCustomerIO, api: str,
                                         event: str) -> None:
    client = make(device_token_event="device_token_registered")
    _, msg = client.track("u1", event, {"push_enabled": True, "build": 7}, CONTEXT, timestamp=WHEN)
    v1_device = {"id": "tok-1", **{k: v for k, v in DEVICE.items() if k != "token"}}
    assert sent(client, server, api) == expect(
        api,
        [{"type": "person", "action": "add_device", "identifiers": {"id": "u1"}, "device": DEVICE},
         {"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": event, "id": msg["messageId"],
          "attributes": {"push_enabled": True, "build": 7}, "timestamp": UNIX}],
        [("PUT", "/api/v1/customers/u1/devices", {"device": v1_device}),
         ("POST", "/api/v1/customers/u1/events", {"name": event, "data": {"push_enabled": True, "build": 7},
                                                  "id": msg["messageId"], "type": "event", "timestamp": UNIX})],
    )
    person = server.state.person("u1")
    assert person is not None
    assert person["devices"] == {"tok-1": {k: v for k, v in DEVICE.items() if k != "token"}}
    assert [e["name"] for e in person["events"]] == [event]


@pytest.mark.parametrize(("kind", "platform"), [("ipados", "ios"), ("watchOS", "ios"), ("tvOS", "ios"),
                                                ("Android", "android")])
def test_device_platforms(client: Client, server: LocalCustomerIO, api: str, kind: str, platform: str) -> None:
    client.track("u1", "Application Opened", context={"device": {"token": "t", "type": kind}}, timestamp=WHEN)
    ops = sent(client, server, api)
    assert (ops[0]["device"] if api == "v2" else ops[0][2]["device"])["platform"] == platform
    assert all_accepted(server)


@pytest.mark.parametrize("lifecycle", [True, False])
def test_an_unknown_platform_adds_no_device_and_is_reported_but_the_event_goes(
    make: Callable[..., Client], server: LocalCustomerIO, api: str, errors: Errors, lifecycle: bool
) -> None:
    client = make(send_lifecycle_events=lifecycle)
    _, msg = client.track("u1", "Application Opened", context={"device": {"token": "t", "type": "Web"}})
    ops = sent(client, server, api)
    assert len(ops) == 1
    assert (ops[0]["action"] if api == "v2" else ops[0][1]) in ("event", "/api/v1/customers/u1/events")
    ((error, messages),) = errors
    assert isinstance(error, UnmappableError) and error.field == "context.device.type" and "'Web'" in str(error)
    assert messages == [msg]
    assert all_accepted(server) and server.state.person("u1")["devices"] == {}  # type: ignore[index]


@pytest.mark.parametrize("event", ["Application Uninstalled", "Device Deleted"])
def test_uninstall_deletes_the_device(client: Client, server: LocalCustomerIO, api: str, event: str) -> None:
    client.track("u1", "Application Installed", context=CONTEXT, timestamp=WHEN)
    client.flush()
    server.reset()
    server.state.apply({"type": "person", "action": "add_device", "identifiers": {"id": "u1"},
                        "device": {"token": "a/b", "platform": "android"}})
    client.track("u1", event, context={"device": {"token": "a/b"}}, timestamp=WHEN)
    ops = sent(client, server, api)
    assert ops[0] == expect(
        api, [{"type": "person", "action": "delete_device", "identifiers": {"id": "u1"}, "device": {"token": "a/b"}}],
        [("DELETE", "/api/v1/customers/u1/devices/a%2Fb", None)],
    )[0]
    assert len(ops) == 2  # and the event itself
    person = server.state.person("u1")
    assert person is not None and person["devices"] == {}


def test_send_lifecycle_events_off(make: Callable[..., Client], server: LocalCustomerIO, api: str) -> None:
    client = make(send_lifecycle_events=False)
    client.track("u1", "Application Opened", context=CONTEXT, timestamp=WHEN)
    client.track("u1", "Application Uninstalled", context=CONTEXT, timestamp=WHEN)
    ops = sent(client, server, api)
    assert ([op["action"] for op in ops] if api == "v2" else [(m, p) for m, p, _ in ops]) == expect(
        api, ["add_device", "delete_device"],
        [("PUT", "/api/v1/customers/u1/devices"), ("DELETE", "/api/v1/customers/u1/devices/tok-1")])


def test_lifecycle_event_without_a_token_is_an_ordinary_event(client: Client, server: LocalCustomerIO,
                                                              api: str) -> None:
    client.track("u1", "Application Opened", context={"device": {"type": "ios"}}, timestamp=WHEN)
    (op,) = sent(client, server, api)
    assert op["action"] == "event" if api == "v2" else op[1] == "/api/v1/customers/u1/events"


def test_a_device_token_without_a_person_is_an_anonymous_event(client: Client, server: LocalCustomerIO, api: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        client.track(None, "Application Opened", context=CONTEXT, anonymous_id="anon-1", timestamp=WHEN)
        (op,) = sent(client, server, api)
    assert (op["identifiers"] if api == "v2" else op[1]) == expect(
        api, [{"anonymous_id": "anon-1"}], ["/api/v1/events"])[0]
    assert "attaches devices to people only" in caplog.text


def test_register_and_remove_device(client: Client, server: LocalCustomerIO, api: str) -> None:
    client.register_device("u1", "tok-9", "iPadOS", {"push_enabled": True}, timestamp=WHEN)
    client.flush()
    person = server.state.person("u1")
    assert person is not None
    assert person["devices"] == {"tok-9": {"platform": "ios", "last_used": UNIX,
                                           "attributes": {"push_enabled": "true"}}}
    assert [e["name"] for e in person["events"]] == ["Device Created or Updated"]
    client.remove_device("u1", "tok-9", timestamp=WHEN)
    ops = sent(client, server, api)
    assert ops[2] == expect(
        api, [{"type": "person", "action": "delete_device", "identifiers": {"id": "u1"}, "device": {"token": "tok-9"}}],
        [("DELETE", "/api/v1/customers/u1/devices/tok-9", None)])[0]
    person = server.state.person("u1")
    assert person is not None and person["devices"] == {}


def test_register_and_remove_device_on_the_facade(facade: Any, server: LocalCustomerIO, api: str) -> None:
    facade.api_version = api
    assert facade.register_device("u1", "tok-9", "android", timestamp=WHEN)[0]
    facade.flush()
    person = server.state.person("u1")
    assert person is not None and person["devices"]["tok-9"]["platform"] == "android"
    assert facade.remove_device("u1", "tok-9")[0]
    facade.flush()
    person = server.state.person("u1")
    assert person is not None and person["devices"] == {}
    assert (server.requests[0].path == "/api/v2/batch") is (api == "v2")


# -- group ----------------------------------------------------------------------------------------------------


def test_group(make: Callable[..., Client], server: LocalCustomerIO, api: str) -> None:
    client = make(object_type_id=2)
    client.group("u1", "acme", {"name": "Acme", "relationshipAttributes": {"role": "admin"}})
    client.group("u1", 7, {"object_type_id": "3", "relationship_attributes": {"role": "owner"}})
    client.group(None, "acme", {"objectTypeId": 2}, anonymous_id="anon-1")
    v2 = [
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "2", "object_id": "acme"},
         "cio_relationships": [{"identifiers": {"id": "u1"}, "relationship_attributes": {"role": "admin"}}],
         "attributes": {"name": "Acme"}},
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "3", "object_id": "7"},
         "cio_relationships": [{"identifiers": {"id": "u1"}, "relationship_attributes": {"role": "owner"}}]},
        {"type": "object", "action": "identify_anonymous",
         "identifiers": {"object_type_id": "2", "object_id": "acme"},
         "cio_relationships": [{"identifiers": {"anonymous_id": "anon-1"}}]},
    ]
    ops = sent(client, server, api)
    if api == "v1":  # objects have no v1 form: one v2 entity request each (order within a person only)
        assert all((m, p) == ("POST", "/api/v2/entity") for m, p, _ in ops)
        ops = sorted((body for _, _, body in ops), key=v2.index)
    assert ops == v2
    assert all_accepted(server)
    acme = server.state.object("2", "acme")
    assert acme is not None and acme["attributes"] == {"name": "Acme"}
    assert acme["relationships"] == {"u1": {"role": "admin"}} and acme["anonymous_relationships"] == {"anon-1": {}}


# -- alias ----------------------------------------------------------------------------------------------------


def test_alias_merges(client: Client, server: LocalCustomerIO, api: str) -> None:
    server.state.apply({"type": "person", "action": "identify", "identifiers": {"id": "old-1"},
                        "attributes": {"plan": "free"}})
    client.alias("old-1", "ada@example.com")
    client.alias("cio_abc", 42)
    merge = [{"primary": {"email": "ada@example.com"}, "secondary": {"id": "old-1"}},
             {"primary": {"id": "42"}, "secondary": {"cio_id": "abc"}}]
    ops = sent(client, server, api)
    if api == "v2":
        assert ops == [{"type": "person", "action": "merge", **m} for m in merge]
    else:  # requests for different people go concurrently
        assert sorted(ops, key=str) == sorted([("POST", "/api/v1/merge_customers", m) for m in merge], key=str)
    assert all_accepted(server)
    (ada,) = server.state.people()  # old-1 was merged into ada (a new person: the primary is created)
    assert (ada["email"], ada["attributes"]) == ("ada@example.com", {"plan": "free"})


# -- Customer.io semantic events ------------------------------------------------------------------------------


def test_semantic_events(client: Client, server: LocalCustomerIO, api: str) -> None:
    server.state.apply(
        {"type": "person", "action": "identify", "identifiers": {"id": "u1"}},
        {"type": "person", "action": "identify", "identifiers": {"id": "u2"}},
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "acme"},
         "cio_relationships": [{"identifiers": {"id": "u1"}}]},
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "2", "object_id": "gone"}},
    )
    client.track("u1", "User Suppressed")
    client.track("u1", "User Unsuppressed")
    client.track("u1", "User Suppressed")
    client.track("u1", "Relationship Deleted", {"object_id": "acme"})
    client.track("u1", "Object Deleted", {"objectId": "gone", "objectTypeId": 2})
    client.track("u2", "User Deleted")
    person = {"identifiers": {"id": "u1"}}
    v2 = [
        {"type": "person", "action": "suppress", **person},
        {"type": "person", "action": "unsuppress", **person},
        {"type": "person", "action": "suppress", **person},
        {"type": "object", "action": "delete_relationships",
         "identifiers": {"object_type_id": "1", "object_id": "acme"}, "cio_relationships": [person]},
        {"type": "object", "action": "delete", "identifiers": {"object_type_id": "2", "object_id": "gone"}},
        {"type": "person", "action": "delete", "identifiers": {"id": "u2"}},
    ]
    ops = sent(client, server, api)
    if api == "v2":
        assert ops == v2
    else:
        assert sorted(ops, key=str) == sorted([
            ("POST", "/api/v1/customers/u1/suppress", {}),
            ("POST", "/api/v1/customers/u1/unsuppress", {}),
            ("POST", "/api/v1/customers/u1/suppress", {}),
            ("POST", "/api/v2/entity", v2[3]),
            ("POST", "/api/v2/entity", v2[4]),
            ("DELETE", "/api/v1/customers/u2", None),
        ], key=str)
        u1_requests = [p for _, p, _ in ops if p.startswith("/api/v1/customers/u1")]
        assert u1_requests == ["/api/v1/customers/u1/suppress", "/api/v1/customers/u1/unsuppress",
                               "/api/v1/customers/u1/suppress"]  # one person's requests keep their order
    assert all_accepted(server)
    u1 = server.state.person("u1")
    assert u1 is not None and u1["suppressed"] is True and u1["events"] == [] and u1["relationships"] == []
    assert server.state.person("u2") is None and server.state.object("2", "gone") is None


# -- timestamps and values -------------------------------------------------------------------------------------

PROPERTIES = {
    "naive": dt.datetime(2021, 6, 1, 10, 0),
    "aware": dt.datetime(2021, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "day": dt.date(2021, 6, 1),
    "iso": "2021-06-01 12:00:00+02:00",
    "nested": [{"at": "2021-06-01T10:00:00Z"}],
    "kept": ["2021-06-01", "20210601", "+44 20 7946 0000"],
}


@pytest.mark.parametrize("convert", [True, False])
def test_convert_timestamps(make: Callable[..., Client], server: LocalCustomerIO, api: str, convert: bool) -> None:
    client = make(convert_timestamps=convert)
    client.identify("u1", {**PROPERTIES, "created_at": "2021-06-01T10:00:00Z"}, timestamp=WHEN)
    client.track("u1", "E", PROPERTIES, timestamp=WHEN)
    identify, event = sent(client, server, api)
    traits = identify["attributes"] if api == "v2" else identify[2]
    data = event["attributes"] if api == "v2" else event[2]["data"]
    if convert:
        converted = {"naive": UNIX, "aware": UNIX, "day": 1622505600, "iso": UNIX, "nested": [{"at": UNIX}],
                     "kept": PROPERTIES["kept"]}
    else:
        converted = {"naive": "2021-06-01T10:00:00+00:00", "aware": "2021-06-01T12:00:00+02:00",
                     "day": "2021-06-01", "iso": PROPERTIES["iso"], "nested": PROPERTIES["nested"],
                     "kept": PROPERTIES["kept"]}
    assert data == converted
    assert {k: v for k, v in traits.items() if k != "_timestamp"} == {**converted, "created_at": UNIX}
    assert all_accepted(server)


def test_values_are_cleaned(client: Client, server: LocalCustomerIO, api: str,
                            caplog: pytest.LogCaptureFixture) -> None:
    properties = {"price": Decimal("1.5"), "tags": {"x"}, "pair": (1, 2), "raw": b"hi", "nan": float("nan"),
                  "lock": object(), "ok": 1}
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        client.track("u1", "E", properties, timestamp=WHEN)
        (op,) = sent(client, server, api)
    data = op["attributes"] if api == "v2" else op[2]["data"]
    assert data == {"price": 1.5, "tags": ["x"], "pair": [1, 2], "raw": "hi", "nan": None, "ok": 1}
    assert "lock'" in caplog.text
    assert all_accepted(server)


# -- limits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field", "allowed"),
    [
        (lambda c: c.identify("x" * 151, {"a": 1}), "identifiers.id", "150"),
        (lambda c: c.identify("u1", {"n" * 151: 1}), "attributes." + "n" * 40, "150"),
        (lambda c: c.identify("u1", {"bio": "é" * 501}), "attributes.bio", "1000"),
        (lambda c: c.identify("u1", {f"a{i}": i for i in range(301)}), "attributes", "300"),
        (lambda c: c.track("u1", "E", {"blob": "x" * 100_001}), "properties", "100000"),
        (lambda c: c.group("u1", "g", {f"a{i}": "x" * 200 for i in range(200)}), "operation", "32768"),
        (lambda c: c.track("u1", "Application Opened", {"note": "x" * 1001},
                           context={"device": {"token": "t", "type": "ios"}}), "device.attributes.note", "1000"),
    ],
)
def test_limits(client: Client, server: LocalCustomerIO, api: str, errors: Errors,
                call: Callable[[Client], Any], field: str, allowed: str) -> None:
    client.track("u1", "Before", timestamp=WHEN)
    _, msg = call(client)
    client.track("u1", "After", timestamp=WHEN)
    ops = sent(client, server, api)
    names = [op.get("name") for op in ops] if api == "v2" else [(body or {}).get("name") for _, _, body in ops]
    assert names[0] == "Before" and names[-1] == "After"  # the rest of the batch is delivered
    assert all_accepted(server)
    (error, messages) = errors[0]
    assert isinstance(error, LimitError) and error.field == field and allowed in str(error)
    assert messages == [msg]


def test_v2_ops_over_32kb_are_not_sent(make: Callable[..., Client], server: LocalCustomerIO, api: str,
                                       errors: Errors) -> None:
    client = make()
    _, msg = client.track("u1", "E", {f"k{i}": "x" * 900 for i in range(40)})  # 36 KB of event data
    ops = sent(client, server, api)
    if api == "v2":  # a v2 op may be at most 32 KB
        assert ops == []
        ((error, messages),) = errors
        assert isinstance(error, LimitError) and "32768" in str(error) and messages == [msg]
    else:  # a v1 event request may carry up to 100 KB of data
        assert len(ops) == 1 and errors == []


def test_limits_in_sync_mode_return_false(make: Callable[..., Client], server: LocalCustomerIO, api: str,
                                          errors: Errors) -> None:
    client = make(sync_mode=True)
    ok, msg = client.identify("x" * 151)
    assert ok is False
    ((error, messages),) = errors
    assert isinstance(error, LimitError) and messages == [msg]
    assert server.requests == []


# -- opting out -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("integrations", [{"Customer.io": False}, {"All": False}, {"All": False, "Other": True}])
def test_integrations_opt_out(client: Client, server: LocalCustomerIO, api: str, errors: Errors,
                              integrations: dict[str, Any]) -> None:
    ok, msg = client.track("u1", "E", integrations=integrations)
    assert ok is True and msg["integrations"] == integrations
    client.track("u1", "Kept", integrations={"All": False, "Customer.io": True})
    ops = sent(client, server, api)
    assert len(ops) == 1 and errors == []


# -- both transports, same Customer.io --------------------------------------------------------------------------


def test_both_transports_produce_the_same_workspace() -> None:
    snapshots = []
    for api in ("v2", "v1"):
        with LocalCustomerIO() as server:
            client = Client(SITE_ID, API_KEY, host=server.url, api_version=api, upload_interval=0.05,
                            max_requests_per_second=None, device_token_event="Token")
            try:
                ids = iter(f"01F7Z3Q8X9ABCDEFGHJKMNPQ{i:02d}" for i in range(50))
                client.track(None, "Browsed", {"at": WHEN}, anonymous_id="anon-1", timestamp=WHEN,
                             message_id=next(ids))
                client.identify("u1", {"email": "ada@example.com", "created_at": WHEN}, anonymous_id="anon-1",
                                timestamp=WHEN)
                client.flush()
                client.page("u1", None, "Home", {"url": "/"}, timestamp=WHEN, message_id=next(ids))
                client.screen("u1", None, "Cart", timestamp=WHEN, message_id=next(ids))
                client.track("u1", "Token", {"push_enabled": True}, CONTEXT, timestamp=WHEN, message_id=next(ids))
                client.group("u1", "acme", {"name": "Acme", "relationship_attributes": {"role": "admin"}})
                client.identify("old", {"plan": "free"}, timestamp=WHEN)
                client.flush()
                client.alias("old", "u1")
                client.track("u1", "User Suppressed")
                client.flush()
            finally:
                client.shutdown()
            assert all_accepted(server)
            snapshots.append(server.state.snapshot())
    assert snapshots[0] == snapshots[1]
    (person,) = snapshots[0]["people"]
    assert person["id"] == "u1" and person["suppressed"] and person["attributes"]["plan"] == "free"
    assert [e["name"] for e in person["events"]] == ["Browsed", "Home", "Viewed Cart Screen", "Token"]
    assert list(person["devices"]) == ["tok-1"]
