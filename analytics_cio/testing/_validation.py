"""Which operations the local Customer.io accepts: the Track API's documented rules, as :func:`validate_op`.

Every operation is checked in its v2 shape (the server translates v1 requests first): its ``type`` and
``action``, its identifiers, and Customer.io's limits on ids, attribute names and values, attributes per call,
event names and event data. :func:`check_op_size` adds v2's limit on one operation (:data:`OP_LIMIT` bytes as
compact UTF-8 JSON). Each problem is a :class:`Problem`, in the words of Customer.io's v2 error objects.

Where Customer.io's documentation is silent, these rules make a choice:

- Event ids are ULIDs (26 Crockford base-32 characters, case-insensitive, first character 0-7); any other
  ``id`` is rejected (Customer.io does not document this).
- Timestamps must be integer Unix seconds; a value above 9,999,999,999 is rejected as milliseconds.
- The content events (``viewed_content``, ``clicked_content``: person actions Customer.io's Data Pipelines send,
  absent from the published Track API description) are checked as events are.

Delivery metrics come two ways, as Customer.io documents them: the v2 ``delivery`` op (``action: event``, the
metric in ``name``: ``opened``, ``converted`` or ``delivered``, ``attributes.device_token`` required), and
``POST /api/v1/metrics`` (:func:`validate_metrics`: ``delivery_id``, ``metric`` from the channels' lists,
``timestamp``, and ``recipient``, ``reason``, ``href`` where given).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Callable, Dict, NamedTuple

ID_LIMIT = 150
ATTRIBUTE_NAME_LIMIT = 150
ATTRIBUTE_VALUE_LIMIT = 1000
ATTRIBUTES_PER_CALL = 300
EVENT_NAME_LIMIT = 100
EVENT_DATA_LIMIT = 100_000
OP_LIMIT = 32_768
LATEST_UNIX_SECONDS = 9_999_999_999

PERSON_KEYS = ("id", "email", "cio_id", "phone")
MERGE_KEYS = ("id", "email", "cio_id")
PLATFORMS = ("ios", "android")
EVENT_ACTIONS = ("event", "page", "screen")
CONTENT_ACTIONS = ("viewed_content", "clicked_content")
DELIVERY_NAMES = ("opened", "converted", "delivered")  # the v2 delivery op's metrics
# Every metric of POST /api/v1/metrics, over all its channels (email, in-app, push, Slack, SMS, webhook).
METRICS = ("bounced", "clicked", "converted", "deferred", "delivered", "dropped", "opened", "spammed")
PERSON_ACTIONS = (
    "identify", *EVENT_ACTIONS, *CONTENT_ACTIONS, "add_device", "delete_device", "delete", "suppress",
    "unsuppress", "merge", "add_relationships", "delete_relationships",
)
OBJECT_ACTIONS = ("identify", "identify_anonymous", "delete", "add_relationships", "delete_relationships")

_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.IGNORECASE)
_OBJECT_TYPE_ID = re.compile(r"[0-9]+")

Op = Dict[str, Any]


class Problem(NamedTuple):
    """Why an operation is invalid, in the words of Customer.io's v2 error objects."""

    reason: str  # "required" | "invalid" | "too_long" | "too_many" | "too_large"
    field: str  # dotted path inside the operation ("" for the operation itself)
    message: str


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON: how every size limit here is measured."""
    return utf8_size(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def is_ulid(value: object) -> bool:
    return isinstance(value, str) and len(value) == 26 and _ULID.fullmatch(value) is not None


def check_op_size(op: Any) -> list[Problem]:
    """The v2 limit on one operation (v1 requests have none besides the event data limit)."""
    size = json_size(op)
    if size > OP_LIMIT:
        return [Problem("too_large", "", f"the operation is {size} bytes; the limit is {OP_LIMIT}")]
    return []


def validate_op(op: Any) -> list[Problem]:
    """Every way ``op`` breaks Customer.io's documented rules (none: it is valid). Size is not checked."""
    if not isinstance(op, dict):
        return [Problem("invalid", "", "an operation must be a JSON object")]
    kind, action = op.get("type"), op.get("action")
    if kind is None:
        return [Problem("required", "type", "type is required")]
    if kind not in ("person", "object", "delivery"):
        return [Problem("invalid", "type", "type must be person, object or delivery")]
    if action is None:
        return [Problem("required", "action", "action is required")]
    if kind == "delivery":
        return _check_delivery(op)
    allowed = PERSON_ACTIONS if kind == "person" else OBJECT_ACTIONS
    if action not in allowed:
        return [Problem("invalid", "action", f"{kind} action must be one of {', '.join(allowed)}")]
    return _CHECKS[(kind, action)](op)


def _required(field: str, what: str) -> Problem:
    return Problem("required", field, f"{what} is required")


def _identifier(value: Any, field: str, keys: tuple[str, ...]) -> list[Problem]:
    """``value`` must be an object holding exactly one of ``keys``, a non-empty string."""
    if value is None:
        return [_required(field, field)]
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in keys:
        return [Problem("invalid", field, f"{field} must hold exactly one of {', '.join(keys)}")]
    key, ident = next(iter(value.items()))
    where = f"{field}.{key}"
    if not isinstance(ident, str) or not ident:
        return [Problem("invalid", where, f"{where} must be a non-empty string")]
    if key == "id" and utf8_size(ident) > ID_LIMIT:
        return [Problem("too_long", where, f"{where} is over {ID_LIMIT} bytes")]
    if key == "cio_id" and ident.startswith("cio_"):
        return [Problem("invalid", where, f"{where} must not include the cio_ prefix")]
    return []


def _unix_seconds(op: Mapping[str, Any], field: str) -> list[Problem]:
    value = op.get(field)
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return [Problem("invalid", field, f"{field} must be an integer number of Unix seconds")]
    if value > LATEST_UNIX_SECONDS:
        return [Problem("invalid", field, f"{field} must be Unix seconds, not milliseconds")]
    return []


def _attributes(value: Any, field: str, *, strings_only: bool = False) -> list[Problem]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [Problem("invalid", field, f"{field} must be a JSON object")]
    problems = []
    if len(value) > ATTRIBUTES_PER_CALL:
        message = f"{field} has {len(value)} attributes; the limit is {ATTRIBUTES_PER_CALL} per call"
        problems.append(Problem("too_many", field, message))
    for name, item in value.items():
        where = f"{field}.{name}"
        if utf8_size(name) > ATTRIBUTE_NAME_LIMIT:
            problems.append(Problem("too_long", where, f"attribute name over {ATTRIBUTE_NAME_LIMIT} bytes"))
        size = utf8_size(item) if isinstance(item, str) else json_size(item)
        if size > ATTRIBUTE_VALUE_LIMIT:
            message = f"{where} is {size} bytes; the limit is {ATTRIBUTE_VALUE_LIMIT}"
            problems.append(Problem("too_long", where, message))
        if strings_only and not isinstance(item, str):
            problems.append(Problem("invalid", where, f"{where} must be a string"))
    return problems


def _identity_attributes(attributes: Any) -> list[Problem]:
    """Attributes that change who the person is must be usable as identifiers."""
    if not isinstance(attributes, dict):
        return []
    problems = []
    for key in ("id", "anonymous_id"):
        if key in attributes:
            problems += _identifier({key: attributes[key]}, "attributes", (key,))
    if "email" in attributes and not isinstance(attributes["email"], (str, type(None))):
        problems.append(Problem("invalid", "attributes.email", "attributes.email must be a string"))
    return problems


def _relationships(
    op: Mapping[str, Any], check: Callable[[Any, str], list[Problem]], *, required: bool
) -> list[Problem]:
    value = op.get("cio_relationships")
    if value is None:
        return [_required("cio_relationships", "cio_relationships")] if required else []
    if not isinstance(value, list) or (required and not value):
        return [Problem("invalid", "cio_relationships", "cio_relationships must be a non-empty list")]
    problems = []
    for i, item in enumerate(value):
        where = f"cio_relationships.{i}"
        if not isinstance(item, dict):
            problems.append(Problem("invalid", where, f"{where} must be a JSON object"))
            continue
        problems += check(item.get("identifiers"), f"{where}.identifiers")
        problems += _attributes(item.get("relationship_attributes"), f"{where}.relationship_attributes")
    return problems


def _object_identifiers(value: Any, field: str = "identifiers") -> list[Problem]:
    if value is None:
        return [_required(field, field)]
    if not isinstance(value, dict):
        return [Problem("invalid", field, f"{field} must be a JSON object")]
    problems = []
    type_id, object_id = value.get("object_type_id"), value.get("object_id")
    if type_id is None:
        problems.append(_required(f"{field}.object_type_id", "object_type_id"))
    elif not isinstance(type_id, str) or not _OBJECT_TYPE_ID.fullmatch(type_id):
        message = "object_type_id must be a string holding an integer"
        problems.append(Problem("invalid", f"{field}.object_type_id", message))
    if object_id is None:
        problems.append(_required(f"{field}.object_id", "object_id"))
    elif not isinstance(object_id, str) or not object_id:
        problems.append(Problem("invalid", f"{field}.object_id", "object_id must be a non-empty string"))
    return problems


def _person_ref(keys: tuple[str, ...]) -> Callable[[Any, str], list[Problem]]:
    return lambda value, field: _identifier(value, field, keys)


def _check_identify(op: Op) -> list[Problem]:
    return (
        _identifier(op.get("identifiers"), "identifiers", PERSON_KEYS)
        + _attributes(op.get("attributes"), "attributes")
        + _identity_attributes(op.get("attributes"))
        + _unix_seconds(op, "timestamp")
        + _relationships(op, _object_identifiers, required=False)
    )


def _check_event(op: Op) -> list[Problem]:
    problems = _identifier(op.get("identifiers"), "identifiers", (*PERSON_KEYS, "anonymous_id"))
    name = op.get("name")
    if name is None:
        problems.append(_required("name", "the event name"))
    elif not isinstance(name, str) or not name:
        problems.append(Problem("invalid", "name", "the event name must be a non-empty string"))
    elif utf8_size(name) > EVENT_NAME_LIMIT:
        problems.append(Problem("too_long", "name", f"the event name is over {EVENT_NAME_LIMIT} bytes"))
    if op.get("id") is not None and not is_ulid(op["id"]):
        problems.append(Problem("invalid", "id", "the event id must be a ULID"))
    problems += _unix_seconds(op, "timestamp")
    data = op.get("attributes")
    if data is not None and not isinstance(data, dict):
        problems.append(Problem("invalid", "attributes", "the event data must be a JSON object"))
    elif data is not None and json_size(data) > EVENT_DATA_LIMIT:
        message = f"the event data is {json_size(data)} bytes; the limit is {EVENT_DATA_LIMIT}"
        problems.append(Problem("too_large", "attributes", message))
    return problems


def _check_delivery(op: Op) -> list[Problem]:
    if op.get("action") != "event":
        return [Problem("invalid", "action", "a delivery's action must be event")]
    problems = _identifier(op.get("identifiers"), "identifiers", ("id",))
    if op.get("name") not in DELIVERY_NAMES:
        problems.append(Problem("invalid", "name", f"a delivery's name must be one of {', '.join(DELIVERY_NAMES)}"))
    attributes = op.get("attributes")
    if not isinstance(attributes, dict):
        problems.append(_required("attributes", "attributes (with device_token)"))
    elif not isinstance(attributes.get("device_token"), str) or not attributes["device_token"]:
        problems.append(_required("attributes.device_token", "attributes.device_token"))
    return problems + _unix_seconds(op, "timestamp")


def validate_metrics(body: Any) -> list[Problem]:
    """Every way a ``POST /api/v1/metrics`` body breaks Customer.io's documented rules."""
    if not isinstance(body, dict):
        return [Problem("invalid", "", "the request body must be a JSON object")]
    problems = []
    delivery_id = body.get("delivery_id")
    if delivery_id is None:
        problems.append(_required("delivery_id", "delivery_id"))
    elif not isinstance(delivery_id, str) or not delivery_id:
        problems.append(Problem("invalid", "delivery_id", "delivery_id must be a non-empty string"))
    metric = body.get("metric")
    if metric is None:
        problems.append(_required("metric", "metric"))
    elif metric not in METRICS:
        problems.append(Problem("invalid", "metric", f"metric must be one of {', '.join(METRICS)}"))
    for field in ("reason", "href"):
        if field in body and not isinstance(body[field], str):
            problems.append(Problem("invalid", field, f"{field} must be a string"))
    recipient = body.get("recipient")  # an email address, a person's id, a device token; SMS: a phone number
    if recipient is not None and (isinstance(recipient, bool) or not isinstance(recipient, (str, int))):
        problems.append(Problem("invalid", "recipient", "recipient must be a string"))
    if "metadata" in body and not isinstance(body["metadata"], dict):
        problems.append(Problem("invalid", "metadata", "metadata must be a JSON object"))
    return problems + _unix_seconds(body, "timestamp")


def _check_device(op: Op, *, adding: bool) -> list[Problem]:
    problems = _identifier(op.get("identifiers"), "identifiers", PERSON_KEYS)
    device = op.get("device")
    if device is None:
        return [*problems, _required("device", "device")]
    if not isinstance(device, dict):
        return [*problems, Problem("invalid", "device", "device must be a JSON object")]
    token = device.get("token")
    if token is None:
        problems.append(_required("device.token", "the device token"))
    elif not isinstance(token, str) or not token:
        problems.append(Problem("invalid", "device.token", "the device token must be a non-empty string"))
    if adding:
        platform = device.get("platform")
        if platform is None:
            problems.append(_required("device.platform", "the device platform"))
        elif platform not in PLATFORMS:
            message = f"the device platform must be one of {', '.join(PLATFORMS)}"
            problems.append(Problem("invalid", "device.platform", message))
        problems += _unix_seconds({"device.last_used": device.get("last_used")}, "device.last_used")
        problems += _attributes(device.get("attributes"), "device.attributes", strings_only=True)
    return problems


def _check_merge(op: Op) -> list[Problem]:
    problems = _identifier(op.get("primary"), "primary", MERGE_KEYS)
    problems += _identifier(op.get("secondary"), "secondary", MERGE_KEYS)
    if not problems and op["primary"] == op["secondary"]:
        problems.append(Problem("invalid", "secondary", "primary and secondary are the same person"))
    return problems


def _check_person(op: Op) -> list[Problem]:
    return _identifier(op.get("identifiers"), "identifiers", PERSON_KEYS)


def _check_person_relationships(op: Op) -> list[Problem]:
    return _check_person(op) + _relationships(op, _object_identifiers, required=True)


def _check_object_identify(op: Op, people: tuple[str, ...]) -> list[Problem]:
    return (
        _object_identifiers(op.get("identifiers"))
        + _attributes(op.get("attributes"), "attributes")
        + _relationships(op, _person_ref(people), required=False)
    )


def _check_object_relationships(op: Op) -> list[Problem]:
    people = _person_ref((*PERSON_KEYS, "anonymous_id"))
    return _object_identifiers(op.get("identifiers")) + _relationships(op, people, required=True)


_CHECKS: dict[tuple[str, str], Callable[[Op], list[Problem]]] = {
    ("person", "identify"): _check_identify,
    **{("person", action): _check_event for action in (*EVENT_ACTIONS, *CONTENT_ACTIONS)},
    ("person", "add_device"): lambda op: _check_device(op, adding=True),
    ("person", "delete_device"): lambda op: _check_device(op, adding=False),
    ("person", "delete"): _check_person,
    ("person", "suppress"): _check_person,
    ("person", "unsuppress"): _check_person,
    ("person", "merge"): _check_merge,
    ("person", "add_relationships"): _check_person_relationships,
    ("person", "delete_relationships"): _check_person_relationships,
    ("object", "identify"): lambda op: _check_object_identify(op, PERSON_KEYS),
    ("object", "identify_anonymous"): lambda op: _check_object_identify(op, ("anonymous_id",)),
    ("object", "delete"): lambda op: _object_identifiers(op.get("identifiers")),
    ("object", "add_relationships"): _check_object_relationships,
    ("object", "delete_relationships"): _check_object_relationships,
}
