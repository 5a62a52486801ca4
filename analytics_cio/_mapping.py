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
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from . import _values
from ._errors import DeliveryError, UnmappableError
from ._ulid import is_ulid
from ._values import Verbatim, verbatim

logger = logging.getLogger("analytics_cio")

Op = dict[str, Any]
Message = Mapping[str, Any]

EVENT_NAME_BYTES: Final = 100
# The integrations keys Segment users have for Customer.io: the classic destination's, then the Actions one's.
DESTINATION_NAMES: Final = ("Customer.io", "Customer.io (Actions)")
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

_APPLE_PLATFORMS: Final = frozenset({"ios", "ipados", "watchos", "tvos", "iphone os"})
_GROUP_META_KEYS: Final = ("object_type_id", "objectTypeId", "relationship_attributes", "relationshipAttributes")


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


def is_disabled(integrations: Mapping[str, Any] | None) -> bool:
    """Whether ``integrations`` turns Customer.io off for this message, as Segment reads it."""
    if not integrations:
        return False
    for name in DESTINATION_NAMES:
        own = integrations.get(name)
        if own is not None:
            return own is False
    return integrations.get("All") is False


# -- who the person is ---------------------------------------------------------------------------------------


_MEMO_SIZE: Final = 4096
_identifiers_memo: dict[bool, dict[str, dict[str, str]]] = {True: {}, False: {}}  # by email_as_id, then id


def person_identifiers(user_id: Any, options: MappingOptions) -> dict[str, str]:
    """``cio_…`` → cio_id, an email address → email (unless email_as_id is off), else id."""
    # The same people come back again and again: remember the answer (a fresh dict each time, it is the op's).
    if type(user_id) is not str:
        return _resolve_person(user_id, options)
    memo = _identifiers_memo[options.email_as_id]
    known = memo.get(user_id)
    if known is None:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        known = memo[user_id] = _resolve_person(user_id, options)
    return dict(known)


def _resolve_person(user_id: Any, options: MappingOptions) -> dict[str, str]:
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


_last_second: tuple[str, int] = ("", 0)


def _unix(message: Message) -> int | None:
    global _last_second
    value = message.get("timestamp")
    if value is None:
        return None
    # The builder's own form, "2024-05-01T12:00:00.123Z": messages arrive in bursts within one second, so the
    # seconds are remembered, not parsed again (parsing was a third of the worker's time per message).
    if type(value) is str and len(value) == 24 and value[19] == "." and value[23] == "Z":
        second = value[:19]
        last = _last_second
        if last[0] == second:
            return last[1]
        try:
            seconds = _values.to_unix(dt.datetime.fromisoformat(second))
        except ValueError:
            seconds = None
        if seconds is not None:
            _last_second = (second, seconds)
            return seconds
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
    attributes = dict(traits)
    created = attributes.pop("createdAt", None)
    if "created_at" in attributes:
        created = attributes["created_at"]
    if created is not None:
        attributes["created_at"] = _values.timestamp_value(created)
    for key in ("id", "email"):  # identifiers a person is given: never converted
        if isinstance(attributes.get(key), str):
            attributes[key] = verbatim(attributes[key])
    if _has(message.get("anonymousId")):
        attributes["anonymous_id"] = verbatim(message["anonymousId"])
    op: Op = {"type": "person", "action": "identify", "identifiers": identifiers, "attributes": attributes}
    return _with_timestamp(op, message)


# -- track and its special events ----------------------------------------------------------------------------


def cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


_names_memo: dict[str, Verbatim] = {}


def event_name(name: str) -> Verbatim:
    known = _names_memo.get(name)
    if known is not None:
        return known
    cut = cut_utf8(name, EVENT_NAME_BYTES)
    if cut != name:  # not remembered: every such event gets its warning
        logger.warning("analytics_cio: event name cut to Customer.io's %d bytes: %r", EVENT_NAME_BYTES, cut)
        return verbatim(cut)
    if len(_names_memo) >= _MEMO_SIZE:
        _names_memo.clear()
    known = _names_memo[name] = verbatim(name)
    return known


def event_id(message_id: Any) -> Verbatim | None:
    """The message id as Customer.io's de-duplicating event ``id``: only a ULID (canonical upper case)."""
    if not isinstance(message_id, str):
        return None
    upper = message_id.upper()
    return Verbatim(upper) if is_ulid(upper) else None


def _event_op(message: Message, options: MappingOptions, action: str, name: str) -> Op:
    """A person event, page view or screen view; anonymous when there is no userId."""
    op: Op = {
        "type": "person",
        "action": action,
        "identifiers": _event_identifiers(message, options),
        "name": event_name(name),
    }
    ulid = event_id(message.get("messageId"))
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
        relationship = {"identifiers": _object_identifiers(properties, options)}
        op: Op = {"type": "person", "action": "delete_relationships", "identifiers": person,
                  "cio_relationships": [relationship]}
        return Mapped([op])
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
    """Customer.io's platform name for a Segment ``context.device.type``."""
    if not isinstance(kind, str) or not kind.strip():
        return None
    lowered = kind.strip().lower()
    return "ios" if lowered in _APPLE_PLATFORMS else lowered


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
    platform = device_platform(device.get("type")) or device_platform(_context_part(message, "os").get("name"))
    if platform is None:
        result.errors = [*result.errors, UnmappableError(
            "the device has no platform: set context.device.type (ios or android)", field="context.device.type",
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
    relationship_attributes = _first(traits, "relationship_attributes", "relationshipAttributes")
    attributes = {k: v for k, v in traits.items() if k not in _GROUP_META_KEYS}
    if _has(message.get("userId")):
        action, person = "identify", person_identifiers(message["userId"], options)
    elif _has(message.get("anonymousId")):
        action, person = "identify_anonymous", {"anonymous_id": verbatim(message["anonymousId"])}
    else:
        raise UnmappableError("group needs a userId or an anonymousId", field="userId")
    relationship: dict[str, Any] = {"identifiers": person}
    if relationship_attributes is not None:
        if not isinstance(relationship_attributes, Mapping):
            raise UnmappableError("traits.relationship_attributes must be a dict", field="relationship_attributes")
        if relationship_attributes:
            relationship["relationship_attributes"] = relationship_attributes
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
