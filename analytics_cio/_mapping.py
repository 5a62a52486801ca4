"""Segment-spec messages to Customer.io Track API operations. Pure functions: no I/O, no clock, no state.

Every operation is produced in Track API v2 form (``{"type", "action", "identifiers", ...}``), the one shape
Customer.io defines for all of its operations; the v1 transport translates it to a v1 request. Traits and
properties are left as the caller gave them (after the snapshot taken at the call); JSON encoding cleans them.
What this module writes itself (identifiers, names, event ids, tokens, device attributes) is marked
:class:`~._values.Verbatim`, so that ``convert_timestamps`` never turns an id that looks like a date into a number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from . import _values
from ._errors import DeliveryError, UnmappableError
from ._message import DESTINATION_NAMES as DESTINATION_NAMES  # re-exported: they were defined here
from ._message import is_disabled as is_disabled
from ._ulid import derived_ulid, is_ulid
from ._values import Verbatim, verbatim

logger = logging.getLogger("analytics_cio")

Op = dict[str, Any]
Message = Mapping[str, Any]

EVENT_NAME_BYTES: Final = 100
EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

DEVICE_ADD_EVENTS: Final = frozenset({"Application Installed", "Application Opened", "Device Created or Updated"})
DEVICE_DELETE_EVENTS: Final = frozenset({"Application Uninstalled", "Device Deleted"})
# Customer.io Data Pipelines' semantic events; each is an operation, not also an event.
PERSON_SEMANTIC_EVENTS: Final = {
    "User Deleted": "delete",
    "User Suppressed": "suppress",
    "User Unsuppressed": "unsuppress",
}
OBJECT_DELETED: Final = "Object Deleted"
RELATIONSHIP_DELETED: Final = "Relationship Deleted"
REPORT_DELIVERY_EVENT: Final = "Report Delivery Event"
REPORT_CONTENT_EVENT: Final = "Report Content Event"
CONTENT_ACTIONS: Final = ("viewed_content", "clicked_content")
# POST /api/v1/metrics: the one operation with no v2 form that carries all of it (v2's "delivery" op takes only
# push metrics); both transports send it to that endpoint. Its op is the request body plus this type and action.
METRICS_TYPE: Final = "delivery"
METRICS_ACTION: Final = "metrics"

_APPLE_PLATFORMS: Final = frozenset({"ios", "ipados", "watchos", "tvos", "iphone os"})
_OBJECT_ATTRIBUTES_KEYS: Final = ("objectAttributes", "object_attributes")
_GROUP_META_KEYS: Final = frozenset(
    {"object_type_id", "objectTypeId", "relationship_attributes", "relationshipAttributes", *_OBJECT_ATTRIBUTES_KEYS}
)
# The traits that relate a person to an object on identify (as Segment's Actions destination reads them).
_RELATIONSHIP_KEYS: Final = frozenset(
    {"objectId", "object_id", "objectTypeId", "object_type_id", "relationshipAttributes", "relationship_attributes"}
)


@dataclasses.dataclass(frozen=True)
class MappingOptions:
    """The client options that change how messages map onto Customer.io."""

    convert_timestamps: bool = True
    screen_as: str = "event"  # "event": a "Viewed X Screen" event; "screen": Customer.io's screen view
    device_token_event: str | None = None
    send_lifecycle_events: bool = True
    email_as_id: bool = True
    object_type_id: str = "1"


@dataclasses.dataclass
class Mapped:
    """What one message became: the operations to send, and the parts that cannot be sent, with why."""

    ops: list[Op] = dataclasses.field(default_factory=list)
    errors: Sequence[DeliveryError] = ()  # a tuple unless there are errors: one allocation less per message


def map_message(message: Message, options: MappingOptions) -> Mapped:
    """The Customer.io operations for one Segment message (see the README's mapping table)."""
    kind = message.get("type")
    try:
        if kind == "identify":
            return Mapped([identify_op(message, options)])
        if kind == "track":
            return track_ops(message, options)
        if kind == "page":
            return Mapped([page_op(message, options)])
        if kind == "screen":
            return Mapped([screen_op(message, options)])
        if kind == "group":
            return Mapped([group_op(message, options)])
        if kind == "alias":
            return Mapped([alias_op(message, options)])
    except UnmappableError as exc:
        return Mapped(errors=[exc])
    return Mapped(errors=[UnmappableError(f"unknown message type {kind!r}", field="type")])


# -- who the person is ---------------------------------------------------------------------------------------


def person_identifiers(user_id: Any, options: MappingOptions) -> dict[str, str]:
    """``cio_…`` → cio_id, an email address → email (unless email_as_id is off), else id."""
    value = verbatim(user_id)
    if value.startswith("cio_") and len(value) > 4:
        return {"cio_id": Verbatim(value[4:])}
    if options.email_as_id and EMAIL_RE.fullmatch(value):
        return {"email": value}
    return {"id": value}


def _has(value: Any) -> bool:
    return value is not None and value != ""


def _event_identifiers(message: Message, options: MappingOptions) -> dict[str, str]:
    if _has(message.get("userId")):
        return person_identifiers(message["userId"], options)
    if _has(message.get("anonymousId")):
        return {"anonymous_id": verbatim(message["anonymousId"])}
    raise UnmappableError("the message has neither userId nor anonymousId", field="userId")


def _known_person(message: Message, options: MappingOptions, what: str) -> dict[str, str]:
    if not _has(message.get("userId")):
        raise UnmappableError(f"{what} needs a userId: Customer.io cannot {what} an anonymous person", field="userId")
    return person_identifiers(message["userId"], options)


_EPOCH: Final = dt.datetime(1970, 1, 1)
_SECOND: Final = dt.timedelta(seconds=1)


def _unix(message: Message) -> int | None:
    value = message.get("timestamp")
    if value is None:
        return None
    # The builder's own form, "2024-05-01T12:00:00.123Z", read by the C parser (Python 3.9's reads no "Z").
    if type(value) is str and len(value) == 24 and value[19] == "." and value[23] == "Z":
        try:
            return (dt.datetime.fromisoformat(value[:19]) - _EPOCH) // _SECOND  # a quarter of to_unix's cost
        except ValueError:
            pass
    converted = _values.timestamp_value(value)
    return converted if isinstance(converted, int) else None


def _with_timestamp(op: Op, message: Message) -> Op:
    ts = _unix(message)
    if ts is not None:
        op["timestamp"] = ts
    return op


# -- identify ------------------------------------------------------------------------------------------------


def identify_op(message: Message, options: MappingOptions) -> Op:
    traits: Mapping[str, Any] = message.get("traits") or {}
    if _has(message.get("userId")):
        identifiers = person_identifiers(message["userId"], options)
    elif isinstance(traits.get("email"), str) and traits["email"]:
        identifiers = {"email": verbatim(traits["email"])}
    else:
        raise UnmappableError(
            "identify needs a userId or traits.email: Customer.io cannot create a person from an anonymousId",
            field="userId",
        )
    attributes = {k: v for k, v in traits.items() if k not in _RELATIONSHIP_KEYS}
    created_key = "created_at" if "created_at" in traits else "createdAt" if "createdAt" in traits else None
    attributes.pop("createdAt", None)
    attributes.pop("created_at", None)
    if created_key is not None:
        created = _values.timestamp_value(traits[created_key])
        if isinstance(created, int) and not isinstance(created, bool):
            attributes["created_at"] = created
        else:
            logger.warning("analytics_cio: traits.%s %s is not a time: not sent as created_at",
                           created_key, _values.short_repr(traits[created_key]))
    if isinstance(attributes.get("email"), str):  # an identifier a person is given: never converted
        attributes["email"] = verbatim(attributes["email"])
    if "id" in attributes and _is_id(attributes["id"]):
        attributes["id"] = verbatim(attributes["id"])  # ids are strings, as analytics-python makes user ids
    if _has(message.get("anonymousId")):
        attributes["anonymous_id"] = verbatim(message["anonymousId"])
    op: Op = {"type": "person", "action": "identify", "identifiers": identifiers, "attributes": attributes}
    object_id = _first(traits, "objectId", "object_id")
    if object_id is not None:
        relationship: dict[str, Any] = {
            "identifiers": {"object_type_id": _object_type_id(traits, options), "object_id": verbatim(object_id)},
        }
        _add_relationship_attributes(relationship, traits)
        op["cio_relationships"] = [relationship]
    return _with_timestamp(op, message)


def _is_id(value: Any) -> bool:
    """A string, or a number (not a bool) that analytics-python would send as its text."""
    return isinstance(value, str) or (isinstance(value, numbers.Number) and not isinstance(value, bool))


def _add_relationship_attributes(relationship: dict[str, Any], traits: Mapping[str, Any]) -> None:
    attributes = _first(traits, "relationship_attributes", "relationshipAttributes")
    if attributes is None:
        return
    if not isinstance(attributes, Mapping):
        raise UnmappableError("traits.relationship_attributes must be a dict", field="traits.relationship_attributes")
    if attributes:
        relationship["relationship_attributes"] = attributes


# -- track and its special events ----------------------------------------------------------------------------


def cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def event_name(name: str) -> Verbatim:
    cut = cut_utf8(name, EVENT_NAME_BYTES)
    if cut != name:
        logger.warning("analytics_cio: event name cut to Customer.io's %d bytes: %r", EVENT_NAME_BYTES, cut)
    return verbatim(cut)


def event_id(message_id: Any, message: Message | None = None) -> Verbatim | None:
    """The message id as Customer.io's de-duplicating event ``id``, a ULID (canonical upper case).

    A message id that is not a ULID (Segment exports carry UUIDs) gives a ULID derived from it: the time part is
    the message's timestamp in milliseconds, the rest the first 80 bits of the SHA-256 of the id's UTF-8 text.
    The same message, sent or imported again, keeps its event id.
    """
    if isinstance(message_id, bool) or not isinstance(message_id, (str, int)) or message_id == "":
        return None
    text = str(message_id)
    upper = text.upper()
    if is_ulid(upper):
        return Verbatim(upper)
    return Verbatim(derived_ulid(_unix_ms(message or {}), text.encode("utf-8", "surrogatepass")))


def _unix_ms(message: Message) -> int:
    """The message's timestamp in milliseconds (0 when it has none)."""
    value = message.get("timestamp")
    if type(value) is str and len(value) == 24 and value[19] == "." and value[23] == "Z" and value[20:23].isdigit():
        seconds = _unix(message)
        if seconds is not None:
            return seconds * 1000 + int(value[20:23])
    seconds = _unix(message)
    return seconds * 1000 if seconds is not None else 0


def _event_op(message: Message, options: MappingOptions, action: str, name: str) -> Op:
    """A person event, page view or screen view; anonymous when there is no userId."""
    op: Op = {
        "type": "person",
        "action": action,
        "identifiers": _event_identifiers(message, options),
        "name": event_name(name),
    }
    ulid = event_id(message.get("messageId"), message)
    if ulid is not None:
        op["id"] = ulid
    properties = message.get("properties")
    if properties:
        op["attributes"] = properties
    return _with_timestamp(op, message)


def track_ops(message: Message, options: MappingOptions) -> Mapped:
    name = message.get("event")
    if not isinstance(name, str) or not name:
        raise UnmappableError("track needs an event name", field="event")
    properties: Mapping[str, Any] = message.get("properties") or {}
    if name in PERSON_SEMANTIC_EVENTS:
        action = PERSON_SEMANTIC_EVENTS[name]
        return Mapped([{"type": "person", "action": action, "identifiers": _known_person(message, options, action)}])
    if name == OBJECT_DELETED:
        return Mapped([{"type": "object", "action": "delete", "identifiers": _object_identifiers(properties, options)}])
    if name == RELATIONSHIP_DELETED:
        person = _known_person(message, options, "delete relationships of")
        op: Op = {"type": "object", "action": "delete_relationships",
                  "identifiers": _object_identifiers(properties, options),
                  "cio_relationships": [{"identifiers": person}]}
        return Mapped([op])
    if name == REPORT_DELIVERY_EVENT:
        return Mapped([metrics_op(message, properties)])
    if name == REPORT_CONTENT_EVENT:
        return Mapped([content_op(message, options, properties)])
    if name in DEVICE_ADD_EVENTS or name in DEVICE_DELETE_EVENTS or name == options.device_token_event:
        return _device_ops(message, options, name)
    return Mapped([_event_op(message, options, "event", name)])


def _first(values: Mapping[str, Any], *keys: str) -> Any:
    """The first of ``keys`` that ``values`` holds a value for (not None, not "")."""
    for key in keys:
        value = values.get(key)
        if _has(value):
            return value
    return None


def _object_type_id(values: Mapping[str, Any], options: MappingOptions) -> Verbatim:
    return verbatim(_first(values, "object_type_id", "objectTypeId") or options.object_type_id)


def _object_identifiers(properties: Mapping[str, Any], options: MappingOptions) -> dict[str, str]:
    object_id = _first(properties, "object_id", "objectId")
    if object_id is None:
        raise UnmappableError("needs properties.object_id", field="properties.object_id")
    return {"object_type_id": _object_type_id(properties, options), "object_id": verbatim(object_id)}


# -- devices -------------------------------------------------------------------------------------------------


def device_platform(kind: Any) -> str | None:
    """Customer.io's platform for a Segment ``context.device.type``: ``ios`` or ``android``, the only two it
    registers; None for any other."""
    if not isinstance(kind, str):
        return None
    lowered = kind.strip().lower()
    if lowered in _APPLE_PLATFORMS:
        return "ios"
    return "android" if lowered == "android" else None


def _context_part(message: Message, key: str) -> Mapping[str, Any]:
    context = message.get("context")
    part = context.get(key) if isinstance(context, Mapping) else None
    return part if isinstance(part, Mapping) else {}


def device_attributes(message: Message, convert_timestamps: bool = True) -> dict[str, str]:
    """The documented device attributes from the context, then the event's properties, all as strings."""
    context = message.get("context")
    locale = context.get("locale") if isinstance(context, Mapping) else None
    device, os_, app = _context_part(message, "device"), _context_part(message, "os"), _context_part(message, "app")
    device_os = " ".join(str(v) for v in (os_.get("name"), os_.get("version")) if _has(v))
    found: list[tuple[Any, Any]] = [
        ("device_os", device_os),
        ("device_model", device.get("model")),
        ("app_version", app.get("version")),
        ("device_locale", locale),
    ]
    found += list((message.get("properties") or {}).items())
    attributes: dict[str, str] = {}
    for key, value in found:
        name = _values.json_key(key)
        if name is None or not _has(value):
            continue
        text = _values.stringify(value, convert_timestamps, name)
        if text is not None:
            attributes[name] = text
    return attributes


def _device_ops(message: Message, options: MappingOptions, name: str) -> Mapped:
    token = _context_part(message, "device").get("token")
    event = _event_op(message, options, "event", name)
    if not _has(token):
        logger.debug("analytics_cio: %r has no context.device.token: sent as an ordinary event", name)
        return Mapped([event])
    if not _has(message.get("userId")):
        logger.warning(
            "analytics_cio: %r carries a device token but no userId: Customer.io attaches devices to people "
            "only, so it is sent as an anonymous event without the device", name,
        )
        return Mapped([event])
    person = person_identifiers(message["userId"], options)
    result = Mapped([event] if options.send_lifecycle_events else [])
    if name in DEVICE_DELETE_EVENTS:
        result.ops.insert(0, {"type": "person", "action": "delete_device", "identifiers": person,
                              "device": {"token": verbatim(token)}})
        return result
    device = _context_part(message, "device")
    kind = device.get("type")
    platform = device_platform(kind) if _has(kind) else device_platform(_context_part(message, "os").get("name"))
    if platform is None:
        problem = f"is {_values.short_repr(kind)}" if _has(kind) else "is missing"
        result.errors = [*result.errors, UnmappableError(
            f"context.device.type {problem}: Customer.io registers only ios and android devices, so the device "
            "is not added (the event is sent)", field="context.device.type",
        )]
        if not result.ops:
            result.ops.append(event)
        return result
    body: dict[str, Any] = {"token": verbatim(token), "platform": verbatim(platform)}
    last_used = _unix(message)
    if last_used is not None:
        body["last_used"] = last_used
    attributes = device_attributes(message, options.convert_timestamps)
    if attributes:
        body["attributes"] = attributes
    result.ops.insert(0, {"type": "person", "action": "add_device", "identifiers": person, "device": body})
    return result


# -- page and screen -----------------------------------------------------------------------------------------


def page_op(message: Message, options: MappingOptions) -> Op:
    properties: Mapping[str, Any] = message.get("properties") or {}
    name = message.get("name") or properties.get("url") or _context_part(message, "page").get("url")
    if not _has(name):
        raise UnmappableError("a page view needs a name, properties.url or context.page.url", field="name")
    return _event_op(message, options, "page", str.__str__(name) if isinstance(name, str) else str(name))


def screen_op(message: Message, options: MappingOptions) -> Op:
    name = message.get("name")
    if options.screen_as == "screen":
        return _event_op(message, options, "screen", str(name) if _has(name) else "Undefined")
    inner = str(name) if _has(name) else "Undefined"
    # Cut the screen's own name, so that the whole "Viewed … Screen" stays within 100 bytes.
    room = EVENT_NAME_BYTES - len("Viewed  Screen")
    if len(inner.encode()) > room:
        inner = cut_utf8(inner, room)
        logger.warning("analytics_cio: screen name cut to fit Customer.io's %d-byte event names", EVENT_NAME_BYTES)
    return _event_op(message, options, "event", f"Viewed {inner} Screen")


# -- group and alias -----------------------------------------------------------------------------------------


def group_op(message: Message, options: MappingOptions) -> Op:
    if not _has(message.get("groupId")):
        raise UnmappableError("group needs a groupId", field="groupId")
    traits: Mapping[str, Any] = message.get("traits") or {}
    attributes = {k: v for k, v in traits.items() if k not in _GROUP_META_KEYS}
    for key in _OBJECT_ATTRIBUTES_KEYS:  # Segment's Actions field: the object's attributes, merged in
        merged = traits.get(key)
        if merged is None:
            continue
        if not isinstance(merged, Mapping):
            raise UnmappableError(f"traits.{key} must be a dict", field=f"traits.{key}")
        attributes.update(merged)
    if _has(message.get("userId")):
        action, person = "identify", person_identifiers(message["userId"], options)
    elif _has(message.get("anonymousId")):
        action, person = "identify_anonymous", {"anonymous_id": verbatim(message["anonymousId"])}
    else:
        raise UnmappableError("group needs a userId or an anonymousId", field="userId")
    relationship: dict[str, Any] = {"identifiers": person}
    _add_relationship_attributes(relationship, traits)
    op: Op = {
        "type": "object",
        "action": action,
        "identifiers": {"object_type_id": _object_type_id(traits, options), "object_id": verbatim(message["groupId"])},
        "cio_relationships": [relationship],
    }
    if attributes:
        op["attributes"] = attributes
    return op


def alias_op(message: Message, options: MappingOptions) -> Op:
    if not _has(message.get("userId")) or not _has(message.get("previousId")):
        raise UnmappableError("alias needs both userId and previousId", field="previousId")
    return {
        "type": "person",
        "action": "merge",
        "primary": person_identifiers(message["userId"], options),
        "secondary": person_identifiers(message["previousId"], options),
    }


# -- delivery metrics and content events ---------------------------------------------------------------------

# Report Delivery Event: properties (camelCase as Segment's Actions destination reads them, or snake_case) to the
# fields of POST /api/v1/metrics.
_METRIC_FIELDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("recipient", ("recipient",)),
    ("reason", ("reason",)),
    ("href", ("href",)),
)
_METRIC_METADATA: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("action_name", ("actionName", "action_name")),
    ("action_value", ("actionValue", "action_value")),
)


def metrics_op(message: Message, properties: Mapping[str, Any]) -> Op:
    """``Report Delivery Event``: a delivery metric for ``POST /api/v1/metrics`` (see METRICS_TYPE)."""
    delivery_id = _first(properties, "deliveryId", "delivery_id")
    if delivery_id is None:
        raise UnmappableError("Report Delivery Event needs properties.deliveryId", field="properties.deliveryId")
    metric = properties.get("metric")
    if not isinstance(metric, str) or not metric:
        raise UnmappableError("Report Delivery Event needs properties.metric (e.g. opened, clicked)",
                              field="properties.metric")
    op: Op = {"type": METRICS_TYPE, "action": METRICS_ACTION, "delivery_id": verbatim(delivery_id),
              "metric": verbatim(metric)}
    for field, keys in _METRIC_FIELDS:
        value = _first(properties, *keys)
        if value is not None:
            op[field] = verbatim(value)
    metadata = {}
    for field, keys in _METRIC_METADATA:  # Segment's in-app action fields
        value = _first(properties, *keys)
        if value is not None:
            metadata[field] = verbatim(value)
    if metadata:
        op["metadata"] = metadata
    return _with_timestamp(op, message)


def content_op(message: Message, options: MappingOptions, properties: Mapping[str, Any]) -> Op:
    """``Report Content Event``: Customer.io's ``viewed_content`` / ``clicked_content`` person op."""
    action = _first(properties, "actionType", "action_type")
    if action not in CONTENT_ACTIONS:
        raise UnmappableError(
            f"Report Content Event needs properties.actionType {' or '.join(CONTENT_ACTIONS)}, not "
            f"{_values.short_repr(action)}", field="properties.actionType",
        )
    data = {k: v for k, v in properties.items() if k not in ("actionType", "action_type")}
    return _event_op({**message, "properties": data}, options, action, action)
