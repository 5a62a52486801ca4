"""The local Customer.io, driven over real HTTP with `requests`, as the project's tests and users drive it."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from analytics_cio.testing._server import Faults, LocalCustomerIO, RecordedRequest, Reply

SITE, KEY = "site-1", "key-1"


def ulid(n: int) -> str:
    """A valid ULID (digits are Crockford base-32 characters)."""
    return f"01{n:024d}"


def compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_op(user: str = "42", name: str = "Signed Up", **fields: Any) -> dict[str, Any]:
    return {"type": "person", "action": "event", "identifiers": {"id": user}, "name": name, **fields}


def identify_op(user: str = "42", /, **attributes: Any) -> dict[str, Any]:
    return {"type": "person", "action": "identify", "identifiers": {"id": user}, "attributes": attributes}


class Api:
    """A keep-alive session with the right credentials, and shorthands for the two API versions."""

    def __init__(self, cio: LocalCustomerIO, session: requests.Session) -> None:
        self.cio = cio
        self.session = session

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.cio.url + path, timeout=10, **kwargs)

    def batch(self, *ops: Any) -> requests.Response:
        return self.call("POST", "/api/v2/batch", json={"batch": list(ops)})

    def entity(self, op: Any) -> requests.Response:
        return self.call("POST", "/api/v2/entity", json=op)


@pytest.fixture
def cio() -> Iterator[LocalCustomerIO]:
    with LocalCustomerIO(site_id=SITE, api_key=KEY) as server:
        yield server


@pytest.fixture
def api(cio: LocalCustomerIO) -> Iterator[Api]:
    with requests.Session() as session:
        session.auth = (SITE, KEY)
        yield Api(cio, session)


# ---------------------------------------------------------------------------------------------- v1 endpoints


def test_v1_identify_creates_then_merges_attributes(api: Api, cio: LocalCustomerIO) -> None:
    assert api.call("PUT", "/api/v1/customers/42", json={"email": "ann@example.com", "plan": "free"}).json() == {}
    r = api.call("PUT", "/api/v1/customers/42", json={"plan": "pro", "_timestamp": 1700000000, "seats": 3})

    assert r.status_code == 200 and r.json() == {}
    person = cio.state.person("42")
    assert person is not None
    assert person["attributes"] == {"email": "ann@example.com", "plan": "pro", "seats": 3}
    assert person["email"] == "ann@example.com" and person["timestamp"] == 1700000000
    assert cio.state.person("ann@example.com") == person == cio.state.person(f"cio_{person['cio_id']}")


def test_v1_identify_by_email_and_by_cio_id(api: Api, cio: LocalCustomerIO) -> None:
    api.call("PUT", "/api/v1/customers/bob%40example.com", json={"name": "Bob"})
    person = cio.state.person("bob@example.com")
    assert person is not None and person["id"] is None

    api.call("PUT", f"/api/v1/customers/cio_{person['cio_id']}", json={"id": "7", "name": "Bobby"})

    assert cio.state.person("7") == {**person, "id": "7", "attributes": {"name": "Bobby", "id": "7"}}
    # a cio_id that is not there creates nobody
    api.call("PUT", "/api/v1/customers/cio_ffff", json={"x": 1})
    assert len(cio.state.people()) == 1
    assert cio.state.snapshot()["ignored"][0]["reason"] == "no such person"


def test_v1_identify_update_only_and_null_removes(api: Api, cio: LocalCustomerIO) -> None:
    api.call("PUT", "/api/v1/customers/nobody", json={"_update": True, "plan": "pro"})
    assert cio.state.person("nobody") is None

    api.call("PUT", "/api/v1/customers/42", json={"plan": "pro", "coupon": "X"})
    api.call("PUT", "/api/v1/customers/42", json={"_update": True, "coupon": None})
    assert cio.state.person("42")["attributes"] == {"plan": "pro"}  # type: ignore[index]


def test_v1_identify_without_a_body_and_with_relationships(api: Api, cio: LocalCustomerIO) -> None:
    assert api.call("PUT", "/api/v1/customers/42").status_code == 200
    acme = {"identifiers": {"object_type_id": "1", "object_id": "acme"}, "relationship_attributes": {"role": "admin"}}
    api.call("PUT", "/api/v1/customers/42", json={"cio_relationships": [acme]})
    api.call("PUT", "/api/v1/customers/43", json={"cio_relationships": {"action": "add_relationships",
                                                                        "relationships": [acme]}})
    assert cio.state.object("1", "acme")["relationships"] == {  # type: ignore[index]
        "42": {"role": "admin"}, "43": {"role": "admin"}
    }

    api.call("PUT", "/api/v1/customers/43", json={"cio_relationships": {"action": "delete_relationships",
                                                                        "relationships": [acme]}})
    assert list(cio.state.object("1", "acme")["relationships"]) == ["42"]  # type: ignore[index]
    r = api.call("PUT", "/api/v1/customers/42", json={"_update": "yes", "cio_relationships": "acme"})
    assert r.json() == {"meta": {"errors": [
        "_update must be true or false", "cio_relationships must be a list or object"
    ]}}


def test_state_can_be_seeded_directly(cio: LocalCustomerIO) -> None:
    cio.state.apply(identify_op(plan="pro"), event_op())
    assert [e["name"] for e in cio.state.person("42")["events"]] == ["Signed Up"]  # type: ignore[index]
    with pytest.raises(ValueError, match="name"):
        cio.state.apply(event_op(name=""))


def test_v1_delete_person(api: Api, cio: LocalCustomerIO) -> None:
    api.call("PUT", "/api/v1/customers/42", json={})
    assert api.call("DELETE", "/api/v1/customers/42").status_code == 200
    assert cio.state.person("42") is None
    # deleting someone who is not there is not an error
    assert api.call("DELETE", "/api/v1/customers/42").status_code == 200


def test_v1_events_pages_and_screens(api: Api, cio: LocalCustomerIO) -> None:
    api.call("POST", "/api/v1/customers/42/events", json={"name": "Order Completed", "data": {"total": 9.5},
                                                           "id": ulid(1), "timestamp": 1700000000})
    api.call("POST", "/api/v1/customers/42/events", json={"name": "/pricing", "type": "page"})
    api.call("POST", "/api/v1/customers/42/events", json={"name": "Home", "type": "screen"})

    assert [(e["type"], e["name"]) for e in cio.state.events()] == [
        ("event", "Order Completed"), ("page", "/pricing"), ("screen", "Home")
    ]
    first = cio.state.events("Order Completed")[0]
    assert first == {"name": "Order Completed", "type": "event", "id": ulid(1), "timestamp": 1700000000,
                     "data": {"total": 9.5}, "person": "42"}


def test_v1_anonymous_events_need_an_anonymous_id(api: Api, cio: LocalCustomerIO) -> None:
    r = api.call("POST", "/api/v1/events", json={"name": "Viewed"})
    assert r.status_code == 400 and r.json() == {"meta": {"errors": ["anonymous_id is required"]}}

    assert api.call("POST", "/api/v1/events", json={"name": "Viewed", "anonymous_id": "a1"}).status_code == 200
    assert cio.state.snapshot()["anonymous_events"] == {
        "a1": [{"name": "Viewed", "type": "event", "id": None, "timestamp": None, "data": {}, "anonymous_id": "a1"}]
    }


def test_v1_devices_add_update_move_delete(api: Api, cio: LocalCustomerIO) -> None:
    device = {"id": "tok/1", "platform": "ios", "last_used": 1700000000, "attributes": {"app_version": "1.0"}}
    assert api.call("PUT", "/api/v1/customers/42/devices", json={"device": device}).status_code == 200
    api.call("PUT", "/api/v1/customers/42/devices",
             json={"device": {"id": "tok/1", "platform": "ios", "attributes": {"push_enabled": "true"}}})
    assert cio.state.person("42")["devices"] == {  # type: ignore[index]
        "tok/1": {"platform": "ios", "last_used": 1700000000,
                  "attributes": {"app_version": "1.0", "push_enabled": "true"}}
    }

    api.call("PUT", "/api/v1/customers/43/devices", json={"device": {"id": "tok/1", "platform": "ios"}})
    assert cio.state.person("42")["devices"] == {}  # type: ignore[index]

    assert api.call("DELETE", "/api/v1/customers/43/devices/tok%2F1").status_code == 200
    assert cio.state.person("43")["devices"] == {}  # type: ignore[index]


def test_v1_device_needs_its_token_as_id(api: Api) -> None:
    r = api.call("PUT", "/api/v1/customers/42/devices", json={"device": {"token": "t", "platform": "ios"}})
    assert r.status_code == 400 and r.json() == {"meta": {"errors": ["device.id (the device token) is required"]}}
    r = api.call("PUT", "/api/v1/customers/42/devices", json={"device": {"id": "t", "platform": "windows"}})
    assert r.json() == {"meta": {"errors": ["the device platform must be one of ios, android"]}}


def test_v1_suppress_and_unsuppress(api: Api, cio: LocalCustomerIO) -> None:
    api.call("PUT", "/api/v1/customers/42", json={})
    assert api.call("POST", "/api/v1/customers/42/suppress").status_code == 200
    assert cio.state.person("42")["suppressed"] is True  # type: ignore[index]
    assert api.call("POST", "/api/v1/customers/42/unsuppress").status_code == 200
    assert cio.state.person("42")["suppressed"] is False  # type: ignore[index]


def test_v1_merge_folds_the_secondary_into_the_primary(api: Api, cio: LocalCustomerIO) -> None:
    api.call("PUT", "/api/v1/customers/anon-visitor%40example.com", json={"plan": "trial", "source": "ad"})
    api.call("POST", "/api/v1/customers/anon-visitor%40example.com/events", json={"name": "First"})
    api.call("PUT", "/api/v1/customers/anon-visitor%40example.com/devices",
             json={"device": {"id": "t1", "platform": "android"}})
    api.call("PUT", "/api/v1/customers/42", json={"plan": "pro"})
    api.call("POST", "/api/v1/customers/42/events", json={"name": "Second"})

    r = api.call("POST", "/api/v1/merge_customers",
                 json={"primary": {"id": "42"}, "secondary": {"email": "anon-visitor@example.com"}})

    assert r.status_code == 200
    person = cio.state.person("42")
    assert person is not None and len(cio.state.people()) == 1
    assert person["attributes"] == {"plan": "pro", "source": "ad"}
    assert [e["name"] for e in person["events"]] == ["First", "Second"]
    assert list(person["devices"]) == ["t1"]
    assert person["email"] == "anon-visitor@example.com"
    assert cio.state.merges == [{"primary": {"id": "42"}, "secondary": {"email": "anon-visitor@example.com"},
                                 "applied": True}]


def test_v1_merge_errors_use_the_singular_error_shape(api: Api) -> None:
    r = api.call("POST", "/api/v1/merge_customers",
                 json={"primary": {"id": "1", "email": "a@b.c"}, "secondary": {"id": "2"}})
    assert r.status_code == 400
    assert r.json() == {"meta": {"error": "primary must hold exactly one of id, email, cio_id"}}


def test_v1_region(api: Api, cio: LocalCustomerIO) -> None:
    assert api.call("GET", "/api/v1/accounts/region").json() == {
        "url": cio.url, "region": "us", "environment_id": 1
    }


# ---------------------------------------------------------------------------------------------- v2 endpoints


def test_v2_entity_and_batch_apply_like_v1(api: Api, cio: LocalCustomerIO) -> None:
    assert api.entity(identify_op(plan="pro")).json() == {}
    r = api.batch(
        event_op(id=ulid(1), attributes={"total": 3}),
        {"type": "person", "action": "page", "identifiers": {"email": "x@y.z"}, "name": "/home"},
        {"type": "person", "action": "add_device", "identifiers": {"id": "42"},
         "device": {"token": "t", "platform": "android", "attributes": {"app_version": "2"}}},
        {"type": "delivery", "action": "event", "identifiers": {"id": "dlv_1"}, "name": "opened",
         "attributes": {"device_token": "t"}, "timestamp": 1700000000},
    )

    assert (r.status_code, r.json()) == (200, {})
    assert [(e["person"], e["name"], e["data"]) for e in cio.state.events()] == [
        ("42", "Signed Up", {"total": 3}), ("x@y.z", "/home", {})
    ]
    assert cio.state.person("42")["devices"]["t"]["platform"] == "android"  # type: ignore[index]
    assert cio.state.snapshot()["deliveries"] == [
        {"delivery_id": "dlv_1", "metric": "opened", "timestamp": 1700000000, "attributes": {"device_token": "t"}}
    ]
    assert [op["action"] for op in cio.ops()] == ["identify", "event", "page", "add_device", "event"]


def test_v2_entity_errors(api: Api) -> None:
    r = api.entity({"type": "person", "action": "event", "identifiers": {"id": "42"}})
    assert r.status_code == 400
    assert r.json() == {"errors": [{"reason": "required", "field": "name", "message": "the event name is required"}]}


def test_v2_batch_with_invalid_ops_is_207_and_applies_the_rest(api: Api, cio: LocalCustomerIO) -> None:
    r = api.batch(
        event_op(name="Kept 1"),
        event_op(name=""),
        "not an op",
        event_op(name="Kept 2"),
    )

    assert r.status_code == 207
    assert r.json() == {"errors": [
        {"batch_index": 1, "reason": "invalid", "field": "name",
         "message": "the event name must be a non-empty string"},
        {"batch_index": 2, "reason": "invalid", "field": "", "message": "an operation must be a JSON object"},
    ]}
    assert [e["name"] for e in cio.state.events()] == ["Kept 1", "Kept 2"]
    assert [op["name"] for op in cio.ops()] == ["Kept 1", "Kept 2"]


@pytest.mark.parametrize("body", [{}, {"batch": []}, {"batch": {"type": "person"}}, []])
def test_v2_batch_shape_errors_are_400(api: Api, body: Any) -> None:
    r = api.call("POST", "/api/v2/batch", json=body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "batch"


def test_v2_anonymous_events_objects_and_relationships(api: Api, cio: LocalCustomerIO) -> None:
    api.batch(
        {"type": "object", "action": "identify_anonymous", "identifiers": {"object_type_id": "1", "object_id": "acme"},
         "attributes": {"name": "Acme"}, "cio_relationships": [{"identifiers": {"anonymous_id": "a1"}}]},
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "globex"},
         "cio_relationships": [{"identifiers": {"id": "42"}, "relationship_attributes": {"role": "admin"}}]},
        {"type": "person", "action": "add_relationships", "identifiers": {"id": "42"},
         "cio_relationships": [{"identifiers": {"object_type_id": "2", "object_id": "team-a"}}]},
    )
    assert cio.state.object("1", "acme") == {"object_type_id": "1", "object_id": "acme",
                                             "attributes": {"name": "Acme"}, "relationships": {},
                                             "anonymous_relationships": {"a1": {}}}
    assert cio.state.object("1", "globex")["relationships"] == {"42": {"role": "admin"}}  # type: ignore[index]

    api.batch(
        {"type": "object", "action": "delete_relationships",
         "identifiers": {"object_type_id": "1", "object_id": "globex"},
         "cio_relationships": [{"identifiers": {"id": "42"}}]},
        {"type": "object", "action": "delete", "identifiers": {"object_type_id": "2", "object_id": "team-a"}},
        identify_op("7", anonymous_id="a1"),
    )
    assert cio.state.object("1", "globex")["relationships"] == {}  # type: ignore[index]
    assert cio.state.object("2", "team-a") is None
    assert cio.state.object("1", "acme")["relationships"] == {"7": {}}  # type: ignore[index]
    assert cio.state.person("7")["relationships"] == [  # type: ignore[index]
        {"object_type_id": "1", "object_id": "acme", "attributes": {}}
    ]


# ---------------------------------------------------------------------------------------------- validation


BIG = "x" * 1001
PERSON_LIMIT_CASES = [
    # (op, field, reason)
    ({"type": "person", "action": "identify"}, "identifiers", "required"),
    ({"type": "person", "action": "identify", "identifiers": {}}, "identifiers", "invalid"),
    ({"type": "person", "action": "identify", "identifiers": {"id": "1", "email": "a@b.c"}}, "identifiers", "invalid"),
    ({"type": "person", "action": "identify", "identifiers": {"id": 42}}, "identifiers.id", "invalid"),
    ({"type": "person", "action": "identify", "identifiers": {"id": "x" * 151}}, "identifiers.id", "too_long"),
    ({"type": "person", "action": "identify", "identifiers": {"cio_id": "cio_ab"}}, "identifiers.cio_id", "invalid"),
    ({"type": "person", "action": "identify", "identifiers": {"anonymous_id": "a"}}, "identifiers", "invalid"),
    (identify_op(**{"n" * 151: 1}), "attributes." + "n" * 151, "too_long"),
    (identify_op(bio=BIG), "attributes.bio", "too_long"),
    (identify_op(bio="é" * 500 + "x"), "attributes.bio", "too_long"),  # 1001 UTF-8 bytes
    (identify_op(tags={"k": "x" * 993}), "attributes.tags", "too_long"),  # {"k":"…"} is 1001 bytes
    (identify_op(**{f"a{i}": i for i in range(301)}), "attributes", "too_many"),
    ({**identify_op(), "timestamp": 1700000000000}, "timestamp", "invalid"),
    ({**identify_op(), "timestamp": "2023-01-01"}, "timestamp", "invalid"),
    (event_op(name="n" * 101), "name", "too_long"),
    (event_op(name="€" * 34), "name", "too_long"),  # 102 bytes
    ({"type": "person", "action": "event", "identifiers": {"id": "1"}}, "name", "required"),
    (event_op(id="not-a-ulid"), "id", "invalid"),
    (event_op(id="81" + "0" * 24), "id", "invalid"),  # first character above 7
    (event_op(attributes=[1]), "attributes", "invalid"),
    ({"type": "person", "action": "add_device", "identifiers": {"id": "1"}}, "device", "required"),
    ({"type": "person", "action": "add_device", "identifiers": {"id": "1"}, "device": {"platform": "ios"}},
     "device.token", "required"),
    ({"type": "person", "action": "add_device", "identifiers": {"id": "1"}, "device": {"token": "t"}},
     "device.platform", "required"),
    ({"type": "person", "action": "add_device", "identifiers": {"id": "1"},
      "device": {"token": "t", "platform": "ios", "attributes": {"push_enabled": True}}},
     "device.attributes.push_enabled", "invalid"),
    ({"type": "person", "action": "delete_device", "identifiers": {"id": "1"}, "device": {}}, "device.token",
     "required"),
    ({"type": "person", "action": "merge", "primary": {"id": "1"}}, "secondary", "required"),
    ({"type": "person", "action": "merge", "primary": {"phone": "1"}, "secondary": {"id": "2"}}, "primary", "invalid"),
    ({"type": "person", "action": "merge", "primary": {"id": "1"}, "secondary": {"id": "1"}}, "secondary", "invalid"),
    ({"type": "person", "action": "add_relationships", "identifiers": {"id": "1"}, "cio_relationships": []},
     "cio_relationships", "invalid"),
    ({"type": "object", "action": "identify", "identifiers": {"object_id": "acme"}},
     "identifiers.object_type_id", "required"),
    ({"type": "object", "action": "identify", "identifiers": {"object_type_id": 1, "object_id": "acme"}},
     "identifiers.object_type_id", "invalid"),
    ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "1"}},
     "identifiers.object_id", "required"),
    ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "a"},
      "cio_relationships": [{"identifiers": {"anonymous_id": "x"}}]}, "cio_relationships.0.identifiers", "invalid"),
    ({"type": "person", "action": "fly", "identifiers": {"id": "1"}}, "action", "invalid"),
    ({"type": "account", "action": "identify"}, "type", "invalid"),
    ({"action": "identify"}, "type", "required"),
]


@pytest.mark.parametrize(("op", "field", "reason"), PERSON_LIMIT_CASES)
def test_v2_rejects_invalid_ops(api: Api, cio: LocalCustomerIO, op: Any, field: str, reason: str) -> None:
    r = api.batch(identify_op("ok"), op)

    assert r.status_code == 207
    [error] = r.json()["errors"]
    assert (error["batch_index"], error["field"], error["reason"]) == (1, field, reason)
    assert error["message"]
    assert [p["id"] for p in cio.state.people()] == ["ok"]


@pytest.mark.parametrize("op", [
    identify_op(**{"n" * 150: "x" * 1000}),
    identify_op(bio="é" * 500, tags={"k": "x" * 992}),
    identify_op(**{f"a{i}": i for i in range(300)}),
    event_op(name="n" * 100, id=ulid(5).lower()),
    event_op(name="€" * 33 + "x"),
    {"type": "person", "action": "identify", "identifiers": {"id": "x" * 150}},
    {"type": "person", "action": "event", "identifiers": {"anonymous_id": "a"}, "name": "n"},
    {"type": "person", "action": "screen", "identifiers": {"phone": "+15555550100"}, "name": "Home"},
    {"type": "person", "action": "identify", "identifiers": {"cio_id": "abc"}},
])
def test_v2_accepts_values_at_the_limits(api: Api, op: Any) -> None:
    assert (api.batch(op).status_code, api.entity(op).status_code) == (200, 200)


def test_v1_validation_errors_list_every_problem(api: Api) -> None:
    r = api.call("POST", "/api/v1/customers/42/events", json={"type": "click", "id": "nope"})
    assert r.status_code == 400
    assert r.json() == {"meta": {"errors": [
        "type must be one of event, page, screen", "the event name is required", "the event id must be a ULID"
    ]}}


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/api/v1/customers/42"), ("POST", "/api/v1/customers/42/events"), ("POST", "/api/v2/entity"),
    ("POST", "/api/v2/batch"), ("POST", "/api/v1/merge_customers"),
])
@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"a": NaN}', b"[" * 20_000],
                         ids=["malformed", "not-an-object", "nan", "deep"])
def test_bad_json_is_400_in_the_version_s_shape(api: Api, method: str, path: str, body: bytes) -> None:
    r = api.call(method, path, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    payload = r.json()
    if path.startswith("/api/v2/"):
        assert set(payload["errors"][0]) == {"reason", "field", "message"}
    elif path.endswith("merge_customers"):
        assert isinstance(payload["meta"]["error"], str)
    else:
        assert isinstance(payload["meta"]["errors"][0], str)


def test_event_data_limit_v1(api: Api) -> None:
    def send(size: int) -> int:
        data = {"d": "x" * (size - len(compact({"d": ""})))}
        assert len(compact(data)) == size
        return api.call("POST", "/api/v1/customers/42/events", json={"name": "n", "data": data}).status_code

    assert send(100_000) == 200
    assert send(100_001) == 400


def test_v2_op_size_limit(api: Api) -> None:
    def op_of(size: int) -> dict[str, Any]:
        op = event_op(attributes={"pad": ""})
        op["attributes"]["pad"] = "x" * (size - len(compact(op)))
        assert len(compact(op)) == size
        return op

    assert api.batch(op_of(32_768)).status_code == 200
    r = api.batch(op_of(32_768), op_of(32_769))
    assert r.status_code == 207 and r.json()["errors"][0]["reason"] == "too_large"


def test_request_size_limits(api: Api) -> None:
    def padded(value: Any, size: int) -> bytes:
        body = compact(value)
        return body + b" " * (size - len(body))

    def post(path: str, body: bytes) -> requests.Response:
        return api.call("POST", path, data=body, headers={"Content-Type": "application/json"})

    op = event_op(attributes={"pad": "x" * 30_000})
    assert post("/api/v2/entity", padded(op, 32_768)).status_code == 200
    r = post("/api/v2/entity", padded(op, 32_769))
    assert r.status_code == 413 and r.json()["errors"][0]["reason"] == "too_large"

    batch = {"batch": [event_op(attributes={"pad": "x" * 30_000})] * 16}
    assert post("/api/v2/batch", padded(batch, 499_999)).status_code == 200
    assert post("/api/v2/batch", padded(batch, 500_000)).status_code == 413
    # counted after decompression
    r = api.call("POST", "/api/v2/batch", data=gzip.compress(padded(batch, 500_000)),
                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 413


def test_gzip_bodies(api: Api, cio: LocalCustomerIO) -> None:
    body = compact({"batch": [event_op()]})
    r = api.call("POST", "/api/v2/batch", data=gzip.compress(body),
                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    assert r.status_code == 200
    assert cio.requests[-1].body == body and cio.requests[-1].json() == {"batch": [event_op()]}
    assert cio.requests[-1].headers["Content-Encoding"] == "gzip"
    bad = api.call("POST", "/api/v2/batch", data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert bad.status_code == 400
    unknown = api.call("POST", "/api/v2/batch", data=body, headers={"Content-Encoding": "br"})
    assert unknown.status_code == 415


def test_validate_false_accepts_anything_that_parses(api: Api) -> None:
    with LocalCustomerIO(validate=False) as lax:
        r = api.session.post(lax.url + "/api/v2/batch", json={"batch": [event_op(name=""), event_op()]}, timeout=10)
        assert (r.status_code, r.json()) == (200, {})
        assert [e["name"] for e in lax.state.events()] == ["Signed Up"]


# ---------------------------------------------------------------------------------------------- de-duplication


def test_a_repeated_event_id_is_ignored_and_counted(api: Api, cio: LocalCustomerIO) -> None:
    api.call("POST", "/api/v1/customers/42/events", json={"name": "Paid", "id": ulid(1)})
    api.batch(event_op(name="Paid", id=ulid(1)), event_op(name="Paid", id=ulid(2)))
    api.entity(event_op(name="Paid", id=ulid(1).lower()))  # ULIDs are case-insensitive
    api.batch(event_op(name="No id"), event_op(name="No id"))

    assert [e["id"] for e in cio.state.events("Paid")] == [ulid(1), ulid(2)]
    assert len(cio.state.events("No id")) == 2
    assert cio.state.duplicates == 2 == cio.state.snapshot()["duplicates"]


# ---------------------------------------------------------------------------------------------- anonymous activity


def test_identify_with_anonymous_id_moves_anonymous_activity_onto_the_person(api: Api, cio: LocalCustomerIO) -> None:
    api.batch({"type": "person", "action": "page", "identifiers": {"anonymous_id": "a1"}, "name": "/"})
    api.call("POST", "/api/v1/events", json={"name": "Viewed Pricing", "anonymous_id": "a1"})
    api.call("POST", "/api/v1/events", json={"name": "Someone else", "anonymous_id": "a2"})
    api.call("POST", "/api/v1/customers/42/events", json={"name": "Signed Up"})

    api.call("PUT", "/api/v1/customers/42", json={"anonymous_id": "a1"})
    api.batch({"type": "person", "action": "event", "identifiers": {"anonymous_id": "a1"}, "name": "Later"})

    person = cio.state.person("42")
    assert person is not None
    assert [e["name"] for e in person["events"]] == ["/", "Viewed Pricing", "Signed Up", "Later"]
    assert person["anonymous_ids"] == ["a1"]
    assert list(cio.state.snapshot()["anonymous_events"]) == ["a2"]
    assert [e["person"] for e in cio.state.events()] == ["42", "42", None, "42", "42"]


# ---------------------------------------------------------------------------------------------- paths


def test_a_percent_encoded_identifier_is_one_path_segment(api: Api, cio: LocalCustomerIO) -> None:
    assert api.call("PUT", "/api/v1/customers/..%2F..%2Fx", json={"a": 1}).status_code == 200
    assert api.call("POST", "/api/v1/customers/a%2Fb%20c/events", json={"name": "n"}).status_code == 200

    assert cio.state.person("../../x") is not None
    assert cio.state.events()[0]["person"] == "a/b c"
    assert cio.requests[0].path == "/api/v1/customers/..%2F..%2Fx"


def test_extra_path_segments_are_404(api: Api, cio: LocalCustomerIO) -> None:
    r = api.call("PUT", "/api/v1/customers/a/b", json={})
    assert r.status_code == 404 and r.json() == {"meta": {"errors": ["not found"]}}
    assert api.call("PUT", "/api/v1/customers/", json={}).status_code == 404
    assert api.call("POST", "/api/v2/nope", json={}).json()["errors"][0]["message"] == "not found"
    assert [(r.path, r.status) for r in cio.requests] == [
        ("/api/v1/customers/a/b", 404), ("/api/v1/customers/", 404), ("/api/v2/nope", 404)
    ]
    assert cio.state.people() == []


def test_wrong_method_is_405(api: Api) -> None:
    r = api.call("GET", "/api/v2/batch")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_query_strings_are_recorded_apart(api: Api, cio: LocalCustomerIO) -> None:
    api.call("PUT", "/api/v1/customers/42?debug=1", json={})
    assert (cio.requests[0].path, cio.requests[0].query) == ("/api/v1/customers/42", "debug=1")


# ---------------------------------------------------------------------------------------------- auth


def test_credentials_are_checked(cio: LocalCustomerIO) -> None:
    url = cio.url + "/api/v1/customers/42"
    unauthorized = {"meta": {"error": "Unauthorized request"}}
    for auth, headers in [(None, {}), ((SITE, "wrong"), {}), (("wrong", KEY), {}),
                          (None, {"Authorization": "Basic !!!"}), (None, {"Authorization": "Bearer x"})]:
        r = requests.put(url, json={}, auth=auth, headers=headers, timeout=10)
        assert (r.status_code, r.json()) == (401, unauthorized)
    assert requests.put(url, json={}, auth=(SITE, KEY), timeout=10).status_code == 200
    assert [r.status for r in cio.requests] == [401] * 5 + [200]


def test_without_configured_credentials_any_basic_credentials_pass() -> None:
    with LocalCustomerIO() as cio:
        url = cio.url + "/api/v1/accounts/region"
        assert requests.get(url, auth=("anything", "goes"), timeout=10).status_code == 200
        assert requests.get(url, timeout=10).status_code == 401


# ---------------------------------------------------------------------------------------------- scripts


def test_scripted_replies_answer_the_next_requests_in_order(api: Api, cio: LocalCustomerIO) -> None:
    cio.script(
        Reply(503, headers={"Retry-After": "7"}),
        Reply(body="upstream broke", headers={"Content-Type": "text/plain"}),
        Reply(drop=True),
        Reply(202, {"queued": True}, delay=0.3),
    )
    assert cio.scripted == 4

    r = api.call("PUT", "/api/v1/customers/1", json={})
    assert (r.status_code, r.headers["Retry-After"], r.json()) == (503, "7", {})
    r = requests.put(cio.url + "/api/v1/customers/2", data=b"{not json", timeout=10)  # no auth, no JSON
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (200, "upstream broke", "text/plain")
    with pytest.raises(requests.ConnectionError):
        api.call("PUT", "/api/v1/customers/3", json={})
    started = time.monotonic()
    r = api.call("PUT", "/api/v1/customers/4", json={})
    assert time.monotonic() - started >= 0.3 and (r.status_code, r.json()) == (202, {"queued": True})
    assert api.call("PUT", "/api/v1/customers/5", json={}).status_code == 200

    assert [r.status for r in cio.requests] == [503, 200, 0, 202, 200]
    assert [p["id"] for p in cio.state.people()] == ["5"]  # scripted answers never reach state
    assert cio.scripted == 0


def test_a_204_reply_has_no_body(api: Api, cio: LocalCustomerIO) -> None:
    cio.script(Reply(204), Reply(200, [1, 2]))
    r = api.batch(event_op())
    assert (r.status_code, r.content, "Content-Length" in r.headers) == (204, b"", False)
    assert api.batch(event_op()).json() == [1, 2]  # and the connection is still good for the next answer


def test_reply_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Reply(99)
    with pytest.raises(ValueError):
        Reply(headers={"X-Evil": "a\r\nSet-Cookie: x"})
    with pytest.raises(TypeError):
        LocalCustomerIO().script(500)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- faults


def _statuses_under(faults: Faults, count: int) -> list[int]:
    with LocalCustomerIO(faults=faults) as cio, requests.Session() as session:
        for i in range(count):
            with contextlib.suppress(requests.ConnectionError):
                session.post(cio.url + "/api/v1/customers/42/events", json={"name": f"e{i}"}, auth=("s", "k"),
                             timeout=10)
        statuses = [r.status for r in cio.requests]
        kept = len(cio.state.events())
    assert kept == statuses.count(200)  # faulted requests are recorded but not applied
    return statuses


def test_faults_are_deterministic_with_a_seed() -> None:
    first = _statuses_under(Faults(error_rate=0.3, drop_rate=0.1, seed=7), 60)
    second = _statuses_under(Faults(error_rate=0.3, drop_rate=0.1, seed=7), 60)
    other = _statuses_under(Faults(error_rate=0.3, drop_rate=0.1, seed=8), 60)

    assert first == second != other
    assert {0, 200, 500} == set(first)


def test_fault_status_and_retry_after(api: Api, cio: LocalCustomerIO) -> None:
    cio.faults = Faults(error_rate=1.0, error_status=429, retry_after=2)
    r = api.batch(event_op())
    assert (r.status_code, r.headers["Retry-After"]) == (429, "2")
    assert set(r.json()["errors"][0]) == {"reason", "field", "message"}

    cio.faults.error_status = 500
    r = api.call("POST", "/api/v1/customers/42/events", json={"name": "n"})
    assert r.status_code == 500 and "Retry-After" not in r.headers and r.json()["meta"]["errors"]
    assert cio.state.events() == [] and cio.ops() == []


def test_fault_drops_and_latency(api: Api, cio: LocalCustomerIO) -> None:
    cio.faults = Faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.batch(event_op())
    assert cio.requests[-1].status == 0

    cio.faults = Faults(latency=0.25)
    started = time.monotonic()
    assert api.batch(event_op()).status_code == 200
    assert time.monotonic() - started >= 0.25


# ---------------------------------------------------------------------------------------------- inspection


def test_state_page_and_requests_endpoints_are_not_recorded(api: Api, cio: LocalCustomerIO) -> None:
    api.batch(identify_op(plan="pro"), event_op())

    state = requests.get(cio.url + "/_state", timeout=10)
    assert state.status_code == 200 and state.json() == cio.state.snapshot()
    listed = requests.get(cio.url + "/_requests", timeout=10).json()
    assert listed == [{"method": "POST", "path": "/api/v2/batch", "query": "", "status": 200,
                       "json": {"batch": [identify_op(plan="pro"), event_op()]}}]
    assert "authorization" not in json.dumps(listed).lower()
    assert requests.get(cio.url + "/", timeout=10).status_code == 200
    assert requests.get(cio.url + "/favicon.ico", timeout=10).status_code == 404
    assert requests.get(cio.url + "/_nope", timeout=10).status_code == 404
    assert cio.request_count == 1


def test_the_page_escapes_what_people_send(api: Api, cio: LocalCustomerIO) -> None:
    hostile = '<script>alert("x")</script>'
    api.batch(
        identify_op(hostile, **{hostile: hostile, "plan": "pro"}),
        event_op(hostile, name=hostile, attributes={"q": hostile}),
        {"type": "person", "action": "add_device", "identifiers": {"id": hostile},
         "device": {"token": hostile, "platform": "ios"}},
        {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": hostile},
         "attributes": {hostile: hostile}},
    )

    page = requests.get(cio.url + "/", timeout=10)

    assert page.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none': no scripts at all
    assert "<script" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text
    assert "plan" in page.text and "pro" in page.text


def test_the_page_shows_times_as_utc_dates_and_marks_anonymous_activity(api: Api, cio: LocalCustomerIO) -> None:
    march_first = 1709284260  # 2024-03-01T09:11:00Z
    api.batch(
        {"type": "person", "action": "page", "identifiers": {"anonymous_id": "anon-5b1e"}, "name": "Pricing",
         "timestamp": march_first - 600},
        {"type": "person", "action": "identify", "identifiers": {"id": "42"}, "timestamp": march_first,
         "attributes": {"created_at": march_first, "anonymous_id": "anon-5b1e", "seen_at": "yesterday",
                        "visits": march_first}},
        event_op(timestamp=march_first),
        {"type": "person", "action": "add_device", "identifiers": {"id": "42"}, "timestamp": march_first,
         "device": {"token": "tok-1", "platform": "ios", "last_used": march_first}},
        event_op(user="anon-only", name="Never Linked", timestamp=march_first),
        {"type": "person", "action": "event", "identifiers": {"anonymous_id": "anon-other"}, "name": "Browsed",
         "timestamp": march_first},
    )
    page = requests.get(cio.url + "/", timeout=10).text

    shown = '<time datetime="2024-03-01T09:11:00Z" title="Unix time 1709284260"><code>2024-03-01T09:11:00Z</code>'
    assert page.count(shown) == 5  # created_at, Signed Up, last_used, Never Linked, Browsed
    assert '<time datetime="2024-03-01T09:01:00Z" title="Unix time 1709283660">' in page  # the page view
    assert "<code>yesterday</code>" in page  # an ..._at that is not a time stays as it is
    assert "<td><code>visits</code></td><td><code>1709284260</code></td>" in page  # nor is any number a time
    assert page.count("while anonymous</span>") == 1  # Pricing, sent before identify linked anon-5b1e
    assert 'title="anonymous_id anon-5b1e">while anonymous' in page
    assert "Browsed</code> <span" not in page  # still anonymous: shown under Anonymous activity, unmarked
    state = requests.get(cio.url + "/_state", timeout=10).json()  # the JSON keeps the numbers
    assert state["people"][0]["attributes"]["created_at"] == march_first


def test_reset_forgets_everything(api: Api, cio: LocalCustomerIO) -> None:
    api.batch(event_op())
    cio.script(Reply(500))
    cio.reset()
    assert (cio.requests, cio.ops(), cio.state.people(), cio.scripted) == ([], [], [], 0)
    assert requests.post(cio.url + "/_reset", timeout=10).json() == {}


def test_wait_for(api: Api, cio: LocalCustomerIO) -> None:
    timer = threading.Timer(0.1, lambda: api.batch(event_op()))
    timer.start()
    try:
        assert cio.wait_for(lambda s: len(s.state.events()) == 1, timeout=5)
    finally:
        timer.join()
    assert not cio.wait_for(lambda s: s.request_count > 1, timeout=0.1)


# ---------------------------------------------------------------------------------------------- HTTP behaviour


def test_keep_alive_serves_many_requests_on_one_connection(cio: LocalCustomerIO) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", int(cio.url.rsplit(":", 1)[1]), timeout=10)
    try:
        sockets = set()
        for i in range(3):
            connection.request("POST", "/api/v1/customers/42/events", json.dumps({"name": f"e{i}"}),
                               {"Authorization": "Basic c2l0ZS0xOmtleS0x", "Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Content-Length") == "2"
            response.read()
            sockets.add(id(connection.sock))
        assert len(sockets) == 1
    finally:
        connection.close()


def test_thousands_of_small_requests(api: Api, cio: LocalCustomerIO) -> None:
    started = time.monotonic()
    for i in range(2000):
        api.call("POST", "/api/v1/customers/42/events", json={"name": "n", "id": ulid(i)})
    assert len(cio.state.events()) == 2000
    assert time.monotonic() - started < 60


def test_concurrent_clients(cio: LocalCustomerIO) -> None:
    def send(worker: int) -> None:
        with requests.Session() as session:
            for i in range(100):
                session.post(cio.url + "/api/v2/batch", auth=(SITE, KEY), timeout=10,
                             json={"batch": [event_op(str(worker), id=ulid(worker * 1000 + i))]})

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(cio.state.events()) == 800 and cio.state.duplicates == 0 and len(cio.ops()) == 800
    arrivals = [r.received_at for r in cio.requests]
    assert len(arrivals) == 800 and arrivals == sorted(arrivals)


def test_chunked_bodies(api: Api, cio: LocalCustomerIO) -> None:
    body = compact({"batch": [event_op()]})
    r = api.call("POST", "/api/v2/batch", data=iter([body[:10], body[10:]]),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and cio.requests[0].body == body


def _raw_exchange(cio: LocalCustomerIO, request: bytes) -> bytes:
    host, port = cio.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # no more to send: a short body ends here
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_garbage_does_not_hurt_the_server(api: Api, cio: LocalCustomerIO) -> None:
    assert b"400" in _raw_exchange(cio, b"NONSENSE\r\n\r\n")  # http.server's own error page
    huge = b"POST /api/v2/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
    answer = _raw_exchange(cio, huge)
    assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer
    short = b"POST /api/v2/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}"
    assert _raw_exchange(cio, short).startswith(b"HTTP/1.1 400")
    bad_chunks = b"POST /api/v2/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    assert _raw_exchange(cio, bad_chunks).startswith(b"HTTP/1.1 400")

    assert api.batch(event_op()).status_code == 200


def test_stop_closes_kept_alive_connections_and_start_reuses_the_port() -> None:
    cio = LocalCustomerIO()
    with pytest.raises(RuntimeError):
        _ = cio.url
    cio.start()
    url = cio.url
    with requests.Session() as session:
        assert session.get(url + "/api/v1/accounts/region", auth=("s", "k"), timeout=10).status_code == 200
        started = time.monotonic()
        cio.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(requests.ConnectionError):
            session.get(url + "/api/v1/accounts/region", auth=("s", "k"), timeout=10)
        cio.start()
        try:
            assert cio.url == url
            assert session.get(url + "/api/v1/accounts/region", auth=("s", "k"), timeout=10).status_code == 200
        finally:
            cio.stop()
    cio.stop()  # idempotent


def test_stop_cuts_a_scripted_delay_short() -> None:
    cio = LocalCustomerIO().start()
    cio.script(Reply(delay=30))
    errors: list[Exception] = []

    def call() -> None:
        try:
            requests.get(cio.url + "/api/v1/accounts/region", auth=("s", "k"), timeout=10)
        except requests.ConnectionError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert cio.wait_for(lambda s: s.scripted == 0)
    started = time.monotonic()
    cio.stop()
    caller.join(5)
    assert time.monotonic() - started < 5 and len(errors) == 1


def test_recorded_request_helpers(api: Api, cio: LocalCustomerIO) -> None:
    api.call("DELETE", "/api/v1/customers/42")
    request = cio.requests[0]
    assert isinstance(request, RecordedRequest)
    assert request.json() is None and request.body == b""
    assert request.headers["AUTHORIZATION"] == request.headers.get("authorization")
    assert "Authorization" in request.headers and request.headers.get("X-Missing", "-") == "-"
