"""The Customer.io mapping as pure functions: a Segment message in, the operations (as JSON on the wire) out.

Every rule of the mapping contract (``mapping.md``) is checked here without I/O; ``test_mapping_wire.py`` checks
the same rules end to end on both transports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import math
import os
import uuid
from decimal import Decimal
from typing import Any

import pytest
from dateutil.tz import gettz
from hypothesis import given
from hypothesis import strategies as st

from analytics_cio import LimitError, UnmappableError, _encoding
from analytics_cio._encoding import encode, encode_clean
from analytics_cio._limits import check_op, check_size
from analytics_cio._mapping import MappingOptions, is_disabled, map_message
from analytics_cio._ulid import derived_ulid, is_ulid, new_ulid
from analytics_cio._v1 import v1_request
from analytics_cio._values import clean, timestamp_value, to_unix

TS = "2021-06-01T10:00:00.000Z"
UNIX = 1622541600  # TS in Unix seconds


def message(kind: str, user_id: Any = "u1", anonymous_id: Any = None, **fields: Any) -> dict[str, Any]:
    """A Segment-spec message as the client builds it."""
    built = {
        "type": kind, "userId": user_id, "anonymousId": anonymous_id, "messageId": new_ulid(), "timestamp": TS,
        "context": {"library": {"name": "analytics-cio", "version": "0"}}, "integrations": {},
    }
    built.update(fields)
    return built


def wire(op: Any, convert_timestamps: bool = True) -> Any:
    """What Customer.io receives for ``op``."""
    return json.loads(encode(op, convert_timestamps))


def ops(msg: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    """The operations ``msg`` maps to, as sent; the mapping must report no error."""
    mapped = map_message(msg, MappingOptions(**options))
    assert not mapped.errors
    return [wire(op, options.get("convert_timestamps", True)) for op in mapped.ops]


def op(msg: dict[str, Any], **options: Any) -> dict[str, Any]:
    (only,) = ops(msg, **options)
    return only


def error(msg: dict[str, Any], **options: Any) -> Any:
    mapped = map_message(msg, MappingOptions(**options))
    assert mapped.ops == []
    (only,) = mapped.errors
    return only


# -- who the person is ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "identifiers"),
    [
        ("cio_03000001", {"cio_id": "03000001"}),
        ("ada@example.com", {"email": "ada@example.com"}),
        ("user-42", {"id": "user-42"}),
        ("42", {"id": "42"}),
        ("cio_", {"id": "cio_"}),  # nothing after the prefix: not a cio_id
        ("not an@email", {"id": "not an@email"}),
        ("../../x", {"id": "../../x"}),
        ("2021-06-01T10:00:00Z", {"id": "2021-06-01T10:00:00Z"}),  # an id that looks like a date stays text
    ],
)
def test_identifier_resolution(user_id: str, identifiers: dict[str, str]) -> None:
    for kind in ("identify", "track"):
        assert op(message(kind, user_id, event="E", traits={}))["identifiers"] == identifiers


def test_numbers_are_stringified() -> None:
    assert op(message("track", 42, event="E"))["identifiers"] == {"id": "42"}
    assert op(message("track", None, 7, event="E"))["identifiers"] == {"anonymous_id": "7"}


def test_email_as_id_off_keeps_email_shaped_ids_as_ids() -> None:
    assert op(message("track", "ada@example.com", event="E"), email_as_id=False)["identifiers"] == {
        "id": "ada@example.com"
    }
    assert op(message("track", "cio_abc", event="E"), email_as_id=False)["identifiers"] == {"cio_id": "abc"}


def test_identify_without_user_id_uses_traits_email() -> None:
    sent = op(message("identify", None, "anon-1", traits={"email": "ada@example.com", "plan": "pro"}))
    assert sent["identifiers"] == {"email": "ada@example.com"}
    assert sent["attributes"] == {"email": "ada@example.com", "plan": "pro", "anonymous_id": "anon-1"}


def test_identify_with_no_person_is_not_sent() -> None:
    problem = error(message("identify", None, "anon-1", traits={"plan": "pro"}))
    assert isinstance(problem, UnmappableError)
    assert problem.field == "userId"
    assert "userId or traits.email" in str(problem)


@pytest.mark.parametrize("kind", ["track", "page", "screen"])
def test_events_without_user_id_are_anonymous(kind: str) -> None:
    sent = op(message(kind, None, "anon-1", event="E", name="N"))
    assert sent["identifiers"] == {"anonymous_id": "anon-1"}


# -- identify -------------------------------------------------------------------------------------------------


def test_identify() -> None:
    traits = {
        "email": "ada@example.com", "unsubscribed": False, "id": "ada-1", "plan": "pro",
        "address": {"city": "London", "lines": ["1 Main St"]},
    }
    sent = op(message("identify", "cio_abc", "anon-1", traits=traits))
    assert sent == {
        "type": "person", "action": "identify", "identifiers": {"cio_id": "abc"}, "timestamp": UNIX,
        "attributes": {**traits, "anonymous_id": "anon-1"},
    }


@pytest.mark.parametrize(
    "created",
    [
        dt.datetime(2021, 6, 1, 10, 0),
        dt.datetime(2021, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "2021-06-01T10:00:00Z",
        "2021-06-01 12:00:00+02:00",
        UNIX,
        float(UNIX) + 0.75,
        str(UNIX),
        UNIX * 1000,  # milliseconds
    ],
)
@pytest.mark.parametrize("key", ["created_at", "createdAt"])
@pytest.mark.parametrize("convert", [True, False])
def test_created_at_is_always_unix_seconds(created: Any, key: str, convert: bool) -> None:
    sent = op(message("identify", traits={key: created}), convert_timestamps=convert)
    assert sent["attributes"] == {"created_at": UNIX}


def test_created_at_date_only_is_midnight_utc() -> None:
    assert op(message("identify", traits={"created_at": "2021-06-01"}))["attributes"] == {"created_at": 1622505600}
    assert op(message("identify", traits={"createdAt": dt.date(2021, 6, 1)}))["attributes"] == {
        "created_at": 1622505600
    }


def test_created_at_wins_over_created_at_camel_case() -> None:
    sent = op(message("identify", traits={"createdAt": 1, "created_at": UNIX}))
    assert sent["attributes"] == {"created_at": UNIX}


def test_identify_never_mutates_the_callers_traits() -> None:
    traits = {"createdAt": dt.datetime(2021, 6, 1, 10), "when": dt.date(2021, 6, 1), "tags": {"a"}}
    before = dict(traits)
    ops(message("identify", "u1", "anon", traits=traits))
    assert traits == before


# -- track ----------------------------------------------------------------------------------------------------


def test_track() -> None:
    msg = message("track", event="Order Completed", properties={"total": 42, "items": [{"sku": "a"}]})
    assert op(msg) == {
        "type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "Order Completed",
        "id": msg["messageId"], "timestamp": UNIX, "attributes": {"total": 42, "items": [{"sku": "a"}]},
    }


def test_track_without_properties_has_no_attributes() -> None:
    assert "attributes" not in op(message("track", event="E", properties={}))


def test_event_id_is_the_ulid_message_id() -> None:
    ulid = new_ulid()
    assert op(message("track", event="E", messageId=ulid))["id"] == ulid
    assert op(message("track", event="E", messageId=ulid.lower()))["id"] == ulid  # ULIDs are case-insensitive


@pytest.mark.parametrize("message_id", ["order-42", "6f1c6a2e-3a8b-4b7e-9a1f-0c2d3e4f5a6b", "8" * 26])
def test_a_non_ulid_message_id_is_kept_and_gives_a_derived_ulid(message_id: str) -> None:
    msg = message("track", event="E", messageId=message_id, timestamp="2021-06-01T10:00:00.123Z")
    event_id = op(msg)["id"]
    assert is_ulid(event_id) and event_id != message_id
    assert msg["messageId"] == message_id
    assert op(dict(msg))["id"] == event_id  # the same message again: the same id (Customer.io drops the repeat)
    assert event_id == derived_ulid(1622541600123, message_id.encode())  # time part: the message's timestamp
    other = op(message("track", event="E", messageId=message_id + "x", timestamp="2021-06-01T10:00:00.123Z"))
    assert other["id"] != event_id


def test_long_event_names_are_cut_at_a_character_boundary(caplog: pytest.LogCaptureFixture) -> None:
    name = "é" * 60  # 120 bytes
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        sent = op(message("track", event=name))
    assert sent["name"] == "é" * 50
    assert "event name cut" in caplog.text
    emoji = "a" + "😀" * 30  # 1 + 120 bytes: the cut may not split a 4-byte character
    assert op(message("track", event=emoji))["name"] == "a" + "😀" * 24


def test_a_100_byte_name_is_not_cut(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        assert op(message("track", event="x" * 100))["name"] == "x" * 100
    assert caplog.text == ""


# -- page and screen ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"name": "Pricing", "properties": {"url": "https://x.test/p"}}, "Pricing"),
        ({"name": None, "properties": {"url": "https://x.test/p"}}, "https://x.test/p"),
        ({"name": None, "properties": {}, "context": {"page": {"url": "https://x.test/c"}}}, "https://x.test/c"),
    ],
)
def test_page_name(fields: dict[str, Any], name: str) -> None:
    sent = op(message("page", category="Docs", **fields))
    assert (sent["action"], sent["name"]) == ("page", name)
    assert sent.get("attributes") == (fields["properties"] or None)


def test_page_without_any_name_is_not_sent() -> None:
    problem = error(message("page", name=None, properties={"title": "x"}))
    assert isinstance(problem, UnmappableError) and problem.field == "name"


@pytest.mark.parametrize(("name", "event"), [("Cart", "Viewed Cart Screen"), (None, "Viewed Undefined Screen")])
def test_screen_is_a_viewed_screen_event(name: Any, event: str) -> None:
    sent = op(message("screen", name=name, properties={"a": 1}))
    assert (sent["action"], sent["name"], sent["attributes"]) == ("event", event, {"a": 1})


def test_screen_as_screen_sends_a_native_screen_view() -> None:
    sent = op(message("screen", name="Cart"), screen_as="screen")
    assert (sent["action"], sent["name"]) == ("screen", "Cart")
    assert op(message("screen", name=None), screen_as="screen")["name"] == "Undefined"


@pytest.mark.parametrize("user_id", [None, "u1"])
def test_long_screen_names_are_cut_so_the_whole_event_name_fits(
    user_id: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        sent = op(message("screen", user_id, "anon-1", name="ü" * 80))
    assert sent["name"].startswith("Viewed ü") and sent["name"].endswith("ü Screen")
    assert len(sent["name"].encode()) <= 100
    assert sent["name"] == "Viewed " + "ü" * 43 + " Screen"
    assert "screen name cut" in caplog.text


# -- devices --------------------------------------------------------------------------------------------------


def device_message(event: str = "Application Opened", user_id: Any = "u1", **device: Any) -> dict[str, Any]:
    return message(
        "track", user_id, "anon-1", event=event, properties={"push_enabled": True, "build": 7},
        context={
            "device": {"token": "tok-1", "type": "ios", "model": "iPhone15,2", **device},
            "os": {"name": "iOS", "version": "17.1"},
            "app": {"version": "3.2.1"},
            "locale": "en-GB",
        },
    )


@pytest.mark.parametrize("event", ["Application Installed", "Application Opened", "Device Created or Updated"])
def test_lifecycle_events_add_the_device_and_are_tracked(event: str) -> None:
    add, tracked = ops(device_message(event))
    assert add == {
        "type": "person", "action": "add_device", "identifiers": {"id": "u1"},
        "device": {
            "token": "tok-1", "platform": "ios", "last_used": UNIX,
            "attributes": {
                "device_os": "iOS 17.1", "device_model": "iPhone15,2", "app_version": "3.2.1",
                "device_locale": "en-GB", "push_enabled": "true", "build": "7",
            },
        },
    }
    assert (tracked["action"], tracked["name"]) == ("event", event)
    assert tracked["attributes"] == {"push_enabled": True, "build": 7}


def test_device_token_event_is_configurable() -> None:
    msg = device_message("device_token_registered")
    assert [o["action"] for o in ops(msg)] == ["event"]
    assert [o["action"] for o in ops(msg, device_token_event="device_token_registered")] == ["add_device", "event"]


@pytest.mark.parametrize(
    ("kind", "platform"),
    [
        ("ios", "ios"), ("iOS", "ios"), ("iPhone OS", "ios"), ("ipados", "ios"), ("iPadOS", "ios"),
        ("watchOS", "ios"), ("tvos", "ios"), ("android", "android"), ("Android", "android"),
    ],
)
def test_device_platform_is_normalised(kind: str, platform: str) -> None:
    add, _ = ops(device_message(type=kind))
    assert add["device"]["platform"] == platform


def test_device_platform_falls_back_to_the_os_name() -> None:
    msg = device_message()
    del msg["context"]["device"]["type"]
    msg["context"]["os"]["name"] = "iPhone OS"
    assert ops(msg)[0]["device"]["platform"] == "ios"


def test_device_without_platform_is_reported_and_the_event_still_sent() -> None:
    msg = device_message()
    del msg["context"]["device"]["type"]
    del msg["context"]["os"]
    mapped = map_message(msg, MappingOptions())
    assert [o["action"] for o in mapped.ops] == ["event"]
    (problem,) = mapped.errors
    assert isinstance(problem, UnmappableError) and problem.field == "context.device.type"


@pytest.mark.parametrize("convert", [True, False])
def test_device_attributes_are_strings(convert: bool) -> None:
    when = dt.datetime(2021, 6, 1, 10, tzinfo=dt.timezone.utc)
    msg = device_message()
    msg["context"] = {"device": {"token": "tok-1", "type": "android"}}
    msg["properties"] = {
        "n": 1.5, "flag": False, "nested": {"a": [1, 2]}, "skip": None, "nan": math.nan, "when": when,
        "iso": "2021-06-01T10:00:00Z",
    }
    add, _ = ops(msg, convert_timestamps=convert)
    assert add["device"]["attributes"] == {
        "n": "1.5", "flag": "false", "nested": '{"a":[1,2]}', "when": str(UNIX) if convert else when.isoformat(),
        "iso": "2021-06-01T10:00:00Z",  # strings stay exactly as given: device attributes are text
    }


@pytest.mark.parametrize("event", ["Application Uninstalled", "Device Deleted"])
def test_uninstall_deletes_the_device(event: str) -> None:
    delete, tracked = ops(device_message(event))
    assert delete == {"type": "person", "action": "delete_device", "identifiers": {"id": "u1"},
                      "device": {"token": "tok-1"}}
    assert tracked["name"] == event


@pytest.mark.parametrize("event", ["Application Opened", "Device Deleted"])
def test_send_lifecycle_events_off_sends_only_the_device_op(event: str) -> None:
    assert [o["action"] for o in ops(device_message(event), send_lifecycle_events=False)] == [
        "delete_device" if event == "Device Deleted" else "add_device"
    ]


def test_lifecycle_event_without_token_is_an_ordinary_event() -> None:
    msg = device_message()
    del msg["context"]["device"]["token"]
    sent = op(msg)
    assert (sent["action"], sent["name"]) == ("event", "Application Opened")


def test_device_token_without_a_person_is_an_anonymous_event(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        sent = op(device_message(user_id=None))
    assert (sent["action"], sent["identifiers"]) == ("event", {"anonymous_id": "anon-1"})
    assert "attaches devices to people only" in caplog.text


# -- group ----------------------------------------------------------------------------------------------------


def test_group_is_an_object_with_a_relationship() -> None:
    traits = {"name": "Acme", "plan": "enterprise", "relationship_attributes": {"role": "admin"}}
    assert op(message("group", groupId="acme", traits=traits)) == {
        "type": "object", "action": "identify",
        "identifiers": {"object_type_id": "1", "object_id": "acme"},
        "attributes": {"name": "Acme", "plan": "enterprise"},
        "cio_relationships": [{"identifiers": {"id": "u1"}, "relationship_attributes": {"role": "admin"}}],
    }


@pytest.mark.parametrize(
    ("traits", "option", "type_id"),
    [
        ({}, "1", "1"),
        ({}, "4", "4"),
        ({"object_type_id": "2"}, "4", "2"),
        ({"objectTypeId": 3}, "4", "3"),
        ({"object_type_id": None, "objectTypeId": "5"}, "4", "5"),
    ],
)
def test_group_object_type_id(traits: dict[str, Any], option: str, type_id: str) -> None:
    sent = op(message("group", groupId=99, traits={**traits, "relationshipAttributes": {"r": 1}, "x": 1}),
              object_type_id=option)
    assert sent["identifiers"] == {"object_type_id": type_id, "object_id": "99"}
    assert sent["attributes"] == {"x": 1}
    assert sent["cio_relationships"][0]["relationship_attributes"] == {"r": 1}


def test_anonymous_group_uses_identify_anonymous() -> None:
    sent = op(message("group", None, "anon-1", groupId="acme", traits={}))
    assert sent["action"] == "identify_anonymous"
    assert sent["cio_relationships"] == [{"identifiers": {"anonymous_id": "anon-1"}}]
    assert "attributes" not in sent


def test_group_relationship_attributes_must_be_a_dict() -> None:
    problem = error(message("group", groupId="acme", traits={"relationship_attributes": "admin"}))
    assert isinstance(problem, UnmappableError) and problem.field == "traits.relationship_attributes"


# -- alias ----------------------------------------------------------------------------------------------------


def test_alias_merges_the_previous_person_into_the_user() -> None:
    assert op(message("alias", "ada@example.com", previousId="cio_old")) == {
        "type": "person", "action": "merge", "primary": {"email": "ada@example.com"}, "secondary": {"cio_id": "old"},
    }
    assert op(message("alias", 42, previousId="anon-7")) == {
        "type": "person", "action": "merge", "primary": {"id": "42"}, "secondary": {"id": "anon-7"},
    }


# -- Customer.io semantic events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "action"),
    [("User Deleted", "delete"), ("User Suppressed", "suppress"), ("User Unsuppressed", "unsuppress")],
)
def test_person_semantic_events(event: str, action: str) -> None:
    assert op(message("track", "ada@example.com", event=event, properties={"reason": "x"})) == {
        "type": "person", "action": action, "identifiers": {"email": "ada@example.com"},
    }
    problem = error(message("track", None, "anon-1", event=event))
    assert isinstance(problem, UnmappableError) and problem.field == "userId"


def test_object_deleted() -> None:
    assert op(message("track", event="Object Deleted", properties={"objectId": "acme", "objectTypeId": 2})) == {
        "type": "object", "action": "delete", "identifiers": {"object_type_id": "2", "object_id": "acme"},
    }
    assert op(message("track", event="Object Deleted", properties={"object_id": "acme"}), object_type_id="3")[
        "identifiers"
    ] == {"object_type_id": "3", "object_id": "acme"}
    problem = error(message("track", event="Object Deleted", properties={}))
    assert isinstance(problem, UnmappableError) and problem.field == "properties.object_id"


def test_relationship_deleted() -> None:
    assert op(message("track", event="Relationship Deleted", properties={"object_id": "acme"})) == {
        "type": "object", "action": "delete_relationships", "identifiers": {"object_type_id": "1", "object_id": "acme"},
        "cio_relationships": [{"identifiers": {"id": "u1"}}],
    }


# -- timestamps and values -------------------------------------------------------------------------------------


def test_convert_timestamps_anywhere_in_properties() -> None:
    berlin = gettz("Europe/Berlin")
    properties = {
        "naive": dt.datetime(2021, 6, 1, 10, 0),
        "aware": dt.datetime(2021, 6, 1, 12, 0, tzinfo=berlin),  # CEST, UTC+2: the same instant
        "day": dt.date(2021, 6, 1),
        "iso": "2021-06-01T10:00:00Z",
        "iso_offset": "2021-06-01 12:00:00+02:00",
        "iso_fraction": "2021-06-01T10:00:00.999Z",
        "nested": {"deeper": [{"at": "2021-06-01T10:00:00+00:00"}, dt.datetime(2021, 6, 1, 10)]},
        "untouched": ["2021-06-01", "20210601", "+1 415 555 0100", "1622541600", "order-2021-06-01",
                      "2021-06-01T10:00:00Z trailing", "6f1c6a2e-3a8b-4b7e-9a1f-0c2d3e4f5a6b"],
    }
    sent = op(message("track", event="E", properties=properties))["attributes"]
    assert sent == {
        "naive": UNIX, "aware": UNIX, "day": 1622505600, "iso": UNIX, "iso_offset": UNIX, "iso_fraction": UNIX,
        "nested": {"deeper": [{"at": UNIX}, UNIX]},
        "untouched": properties["untouched"],
    }


def test_convert_timestamps_off_sends_iso_strings() -> None:
    properties = {
        "naive": dt.datetime(2021, 6, 1, 10, 0), "day": dt.date(2021, 6, 1), "iso": "2021-06-01T10:00:00Z",
        "aware": dt.datetime(2021, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    }
    sent = op(message("identify", traits=properties), convert_timestamps=False)["attributes"]
    assert sent == {"naive": "2021-06-01T10:00:00+00:00", "day": "2021-06-01", "iso": "2021-06-01T10:00:00Z",
                    "aware": "2021-06-01T12:00:00+02:00"}


def test_aware_datetimes_convert_in_their_own_zone() -> None:
    # The official client's old bug: replacing the zone with UTC would give 1622556000 here.
    new_york = dt.datetime(2021, 6, 1, 6, 0, tzinfo=gettz("America/New_York"))
    assert to_unix(new_york) == UNIX
    assert to_unix(dt.datetime(2021, 6, 1, 10, 0)) == UNIX


def test_ids_names_and_tokens_that_look_like_dates_are_never_converted() -> None:
    iso = "2021-06-01T10:00:00Z"
    sent = op(message("track", iso, event=iso, properties={"at": iso}))
    assert (sent["identifiers"], sent["name"], sent["attributes"]) == ({"id": iso}, iso, {"at": UNIX})
    sent = op(message("identify", traits={"id": iso, "email": "a@b.co", "seen": iso}))
    assert sent["attributes"] == {"id": iso, "email": "a@b.co", "seen": UNIX}
    sent = op(message("group", None, iso, groupId=iso, traits={}))
    assert sent["identifiers"]["object_id"] == iso
    assert sent["cio_relationships"][0]["identifiers"] == {"anonymous_id": iso}


class Color(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    LARGE = 3


@dataclasses.dataclass
class Point:
    x: int
    y: Decimal


def test_values_are_cleaned_without_losing_data() -> None:
    uid = uuid.UUID("6f1c6a2e-3a8b-4b7e-9a1f-0c2d3e4f5a6b")
    properties = {
        "price": Decimal("19.99"), "count": Decimal("3"), "uid": uid, "color": Color.RED, "size": Size.LARGE,
        "tags": {"b", "a"}, "pair": (1, 2), "raw": b"caf\xc3\xa9", "point": Point(1, Decimal("2.5")),
        "nan": math.nan, "inf": math.inf, "ninf": -math.inf, "dnan": Decimal("NaN"), "nested": {"f": math.nan},
    }
    sent = op(message("track", event="E", properties=properties))["attributes"]
    assert sent == {
        "price": 19.99, "count": 3, "uid": str(uid), "color": "red", "size": 3, "tags": ["a", "b"], "pair": [1, 2],
        "raw": "café", "point": {"x": 1, "y": 2.5}, "nan": None, "inf": None, "ninf": None, "dnan": None,
        "nested": {"f": None},
    }


def test_unrepresentable_values_are_dropped_for_their_key_only(caplog: pytest.LogCaptureFixture) -> None:
    properties = {"ok": 1, "bad": object(), "nested": {"lock": object(), "fine": "x"}, "list": [1, object(), 2]}
    with caplog.at_level(logging.WARNING, logger="analytics_cio"):
        sent = op(message("track", event="E", properties=properties))["attributes"]
    assert sent == {"ok": 1, "nested": {"fine": "x"}, "list": [1, 2]}
    for key in ("bad'", "nested.lock'", "list[1]'"):
        assert f"dropped 'attributes.{key}: a value of type object has no JSON form" in caplog.text


def test_cleaning_never_mutates_the_callers_data() -> None:
    inner = {"when": dt.datetime(2021, 6, 1, 10), "nan": math.nan}
    properties = {"inner": inner, "items": [inner], "tags": {"a"}}
    clean(properties, True)
    encode(properties, True)
    assert properties == {"inner": inner, "items": [inner], "tags": {"a"}}
    assert isinstance(inner["when"], dt.datetime)


def test_message_timestamp_is_unix_seconds() -> None:
    sent = op(message("track", event="E", timestamp="2021-06-01T12:00:00.500+02:00"))
    assert sent["timestamp"] == UNIX


def test_timestamp_value_leaves_other_values_alone() -> None:
    for value in ("yesterday", None, True, math.inf, {"a": 1}):
        assert timestamp_value(value) is value


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
    st.datetimes(timezones=st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5))])),
    st.dates(), st.decimals(), st.uuids(),
    st.sampled_from(["2021-06-01T10:00:00Z", "2021-06-01 10:00", "2021-06-01", "20210601"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


FAST_ENCODERS = [_encoding._stdlib_fast] + ([_encoding._orjson_fast] if _encoding.JSON_LIBRARY == "orjson" else [])


@pytest.mark.parametrize("fast", FAST_ENCODERS, ids=lambda f: f.__name__)
@given(value=json_values, convert=st.booleans())
def test_the_fast_encoders_agree_with_the_careful_one(fast: Any, value: Any, convert: bool) -> None:
    # The same JSON; the spelling of a float may differ between encoders ("1e16" and "1e+16").
    assert json.loads(fast(value, convert)) == json.loads(encode_clean(value, convert))


def test_the_optional_encoder_is_used_when_installed() -> None:
    try:
        import orjson
    except ImportError:
        assert _encoding.JSON_LIBRARY == "json"
    else:
        # Not in the versions that abort the process on deep values (the last ones for Python 3.9 among them).
        usable = os.environ.get("ANALYTICS_CIO_JSON") != "stdlib" and _encoding.orjson_is_safe(orjson.__version__)
        assert ("orjson" if usable else "json") == _encoding.JSON_LIBRARY


def test_orjson_versions_that_corrupt_memory_on_deep_values_are_left_unused() -> None:
    # 3.10.6 to 3.11.5 abort the process ("realloc(): invalid next size") on a value 150 levels deep, on Python
    # 3.12 as on 3.9; the deep value tests in test_attacks.py run whichever encoder is in use.
    assert [_encoding.orjson_is_safe(v) for v in ("3.8.3", "3.10.5", "3.10.6", "3.11.0", "3.11.5", "3.11.6",
                                                  "3.13.0", "4.0.0rc1")] == [
        True, True, False, False, False, True, True, True]


# -- limits ---------------------------------------------------------------------------------------------------


def limit(operation: dict[str, Any]) -> LimitError | None:
    data = encode(operation)
    return check_op(operation, len(data), encode)


@pytest.mark.parametrize(
    ("operation", "field", "allowed"),
    [
        ({"type": "person", "action": "identify", "identifiers": {"id": "x" * 151}}, "identifiers.id", "150"),
        ({"type": "person", "action": "event", "name": "E", "identifiers": {"anonymous_id": "é" * 76}},
         "identifiers.anonymous_id", "150"),
        ({"type": "person", "action": "merge", "primary": {"id": "a"}, "secondary": {"email": "x" * 151}},
         "secondary.email", "150"),
        ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "x" * 151}},
         "identifiers.object_id", "150"),
        ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "o"},
          "cio_relationships": [{"identifiers": {"id": "x" * 151}}]}, "cio_relationships.0.identifiers.id", "150"),
        ({"type": "person", "action": "identify", "identifiers": {"id": "a"}, "attributes": {"n" * 151: 1}},
         "attributes." + "n" * 40, "150"),
        ({"type": "person", "action": "identify", "identifiers": {"id": "a"}, "attributes": {"bio": "x" * 1001}},
         "attributes.bio", "1000"),
        ({"type": "person", "action": "identify", "identifiers": {"id": "a"},
          "attributes": {"tags": ["abcdefghi"] * 100}}, "attributes.tags", "1000"),
        ({"type": "person", "action": "identify", "identifiers": {"id": "a"},
          "attributes": {f"a{i}": i for i in range(301)}}, "attributes", "300"),
        ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "o"},
          "cio_relationships": [{"identifiers": {"id": "a"}, "relationship_attributes": {"r": "x" * 1001}}]},
         "cio_relationships.0.relationship_attributes.r", "1000"),
        ({"type": "person", "action": "add_device", "identifiers": {"id": "a"},
          "device": {"token": "t", "platform": "ios", "attributes": {"note": "x" * 1001}}},
         "device.attributes.note", "1000"),
        ({"type": "person", "action": "event", "identifiers": {"id": "a"}, "name": "E",
          "attributes": {"blob": "x" * 100_000}}, "properties", "100000"),
        ({"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "o"},
          "attributes": {f"a{i}": "x" * 200 for i in range(200)}}, "operation", "32768"),
    ],
)
def test_limits(operation: dict[str, Any], field: str, allowed: str) -> None:
    problem = limit(operation)
    assert isinstance(problem, LimitError)
    assert problem.field == field
    assert allowed in str(problem)


def test_within_limits() -> None:
    assert limit({"type": "person", "action": "identify", "identifiers": {"id": "x" * 150},
                  "attributes": {"n" * 150: "v" * 1000, **{f"a{i}": i for i in range(299)}}}) is None
    assert limit({"type": "person", "action": "event", "identifiers": {"id": "a"}, "name": "E",
                  "attributes": {"blob": "x" * 99_000}}) is None  # event data has no per-value limit
    assert check_size(32 * 1024, 32 * 1024, "operation") is None
    problem = check_size(32 * 1024 + 1, 32 * 1024, "operation")
    assert problem is not None and "32768" in str(problem)


# -- opting out -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("integrations", "disabled"),
    [
        (None, False), ({}, False), ({"Customer.io": True}, False), ({"Customer.io": False}, True),
        ({"All": False}, True), ({"All": False, "Customer.io": True}, False),
        ({"All": False, "Customer.io": {"some": "setting"}}, False), ({"All": True, "Customer.io": False}, True),
        ({"Other": False}, False),
    ],
)
def test_integrations_opt_out(integrations: Any, disabled: bool) -> None:
    assert is_disabled(integrations) is disabled


# -- v1 requests ----------------------------------------------------------------------------------------------

EVENT = {"type": "person", "action": "event", "name": "E", "id": "01F7Z3Q8X9ABCDEFGHJKMNPQRS", "timestamp": UNIX,
         "attributes": {"a": 1}}


@pytest.mark.parametrize(
    ("operation", "method", "path", "body"),
    [
        ({"type": "person", "action": "identify", "identifiers": {"id": "u 1"}, "attributes": {"a": 1},
          "timestamp": UNIX}, "PUT", "/api/v1/customers/u%201", {"a": 1, "_timestamp": UNIX}),
        ({**EVENT, "identifiers": {"email": "a+b@x.co"}}, "POST", "/api/v1/customers/a%2Bb%40x.co/events",
         {"name": "E", "data": {"a": 1}, "id": EVENT["id"], "type": "event", "timestamp": UNIX}),
        ({**EVENT, "action": "page", "identifiers": {"anonymous_id": "an/1"}}, "POST", "/api/v1/events",
         {"name": "E", "data": {"a": 1}, "id": EVENT["id"], "type": "page", "timestamp": UNIX,
          "anonymous_id": "an/1"}),
        ({"type": "person", "action": "add_device", "identifiers": {"cio_id": "abc"},
          "device": {"token": "t", "platform": "ios", "last_used": UNIX}}, "PUT", "/api/v1/customers/cio_abc/devices",
         {"device": {"id": "t", "platform": "ios", "last_used": UNIX}}),
        ({"type": "person", "action": "delete_device", "identifiers": {"id": "u1"}, "device": {"token": "a/b?c"}},
         "DELETE", "/api/v1/customers/u1/devices/a%2Fb%3Fc", None),
        ({"type": "person", "action": "delete", "identifiers": {"id": "../../x"}}, "DELETE",
         "/api/v1/customers/..%2F..%2Fx", None),
        ({"type": "person", "action": "suppress", "identifiers": {"id": "u1"}}, "POST",
         "/api/v1/customers/u1/suppress", {}),
        ({"type": "person", "action": "unsuppress", "identifiers": {"id": "u1"}}, "POST",
         "/api/v1/customers/u1/unsuppress", {}),
        ({"type": "person", "action": "merge", "primary": {"id": "a"}, "secondary": {"email": "b@x.co"}}, "POST",
         "/api/v1/merge_customers", {"primary": {"id": "a"}, "secondary": {"email": "b@x.co"}}),
    ],
)
def test_v1_requests(operation: dict[str, Any], method: str, path: str, body: Any) -> None:
    assert v1_request(operation)[:3] == (method, path, body)


@pytest.mark.parametrize(
    "identifiers",
    [{"id": ".."}, {"id": "."}, {"id": "ada@example.com"}, {"id": "cio_x"}, {"email": "no-at-sign"}],
)
def test_v1_identifiers_a_path_cannot_carry_go_through_the_entity_endpoint(identifiers: dict[str, str]) -> None:
    operation = {"type": "person", "action": "identify", "identifiers": identifiers, "attributes": {}}
    assert v1_request(operation)[:3] == ("POST", "/api/v2/entity", operation)


def test_v1_objects_and_relationships_go_through_the_entity_endpoint() -> None:
    group = {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "o"},
             "cio_relationships": [{"identifiers": {"id": "u1"}}]}
    method, path, body, lane = v1_request(group)
    assert (method, path, body) == ("POST", "/api/v2/entity", group)
    identify = {"type": "person", "action": "identify", "identifiers": {"id": "u1"}}
    assert lane == v1_request(identify)[3]  # after the person's own earlier requests
    assert v1_request({"type": "person", "action": "delete_device", "identifiers": {"id": "u1"},
                       "device": {"token": ".."}})[1] == "/api/v2/entity"
