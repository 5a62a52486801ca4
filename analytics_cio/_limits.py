"""Customer.io's documented limits, checked when an operation is built, before anything is sent.

Sources: Customer.io's Track API reference (limits section). An operation that breaks one is never sent:
Customer.io would refuse it (or worse, the whole batch it travels in), so it is reported to ``on_error`` with
the field and the limit instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Final

from ._errors import LimitError

ID_BYTES: Final = 150
ATTRIBUTE_NAME_BYTES: Final = 150
ATTRIBUTE_VALUE_BYTES: Final = 1000
ATTRIBUTES_PER_CALL: Final = 300
EVENT_DATA_BYTES: Final = 100_000
OP_BYTES: Final = 32 * 1024
BATCH_BYTES: Final = 500 * 1000  # a v2 batch request must be smaller than this

_ID_KEYS: Final = frozenset({"id", "email", "cio_id", "anonymous_id", "object_id"})


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def check_identifiers(identifiers: Mapping[str, Any] | None, field: str) -> LimitError | None:
    if not identifiers:
        return None
    for key, value in identifiers.items():
        # 37 characters are at most 148 UTF-8 bytes: only longer ids need measuring.
        if key in _ID_KEYS and isinstance(value, str) and len(value) > ID_BYTES // 4 and _utf8_len(value) > ID_BYTES:
            return LimitError(
                f"{field}.{key} is {_utf8_len(value)} bytes; Customer.io allows {ID_BYTES}", field=f"{field}.{key}"
            )
    return None


def check_attributes(
    attributes: Mapping[str, Any] | None, field: str, encoded_size: int, encode: Callable[[Any], bytes]
) -> LimitError | None:
    """Count, name length and value length. ``encoded_size`` bounds every value: no value can be longer than
    the operation holding it, so values are only measured one by one when the operation is long enough."""
    if not attributes:
        return None
    if len(attributes) > ATTRIBUTES_PER_CALL:
        return LimitError(
            f"{field} has {len(attributes)} attributes; Customer.io allows {ATTRIBUTES_PER_CALL} per call",
            field=field,
        )
    for name in attributes:
        if _utf8_len(str(name)) > ATTRIBUTE_NAME_BYTES:
            return LimitError(
                f"attribute name {str(name)[:40]!r}... is longer than Customer.io's {ATTRIBUTE_NAME_BYTES} bytes",
                field=f"{field}.{str(name)[:40]}",
            )
    if encoded_size <= ATTRIBUTE_VALUE_BYTES:
        return None
    for name, value in attributes.items():
        size = _utf8_len(value) if isinstance(value, str) else len(encode(value))
        if size > ATTRIBUTE_VALUE_BYTES:
            return LimitError(
                f"attribute {name!r} is {size} bytes; Customer.io allows {ATTRIBUTE_VALUE_BYTES} per value",
                field=f"{field}.{name}",
            )
    return None


def check_relationships(
    relationships: Any, encoded_size: int, encode: Callable[[Any], bytes]
) -> LimitError | None:
    if not isinstance(relationships, list):
        return None
    for index, relationship in enumerate(relationships):
        if not isinstance(relationship, Mapping):
            continue
        field = f"cio_relationships.{index}"
        problem = check_identifiers(relationship.get("identifiers"), f"{field}.identifiers") or check_attributes(
            relationship.get("relationship_attributes"), f"{field}.relationship_attributes", encoded_size, encode
        )
        if problem:
            return problem
    return None


def check_op(op: Mapping[str, Any], encoded_size: int, encode: Callable[[Any], bytes]) -> LimitError | None:
    """The first limit ``op`` breaks, or None. ``encoded_size`` is the length of its encoded request or item."""
    problem = (
        check_identifiers(op.get("identifiers"), "identifiers")
        or check_identifiers(op.get("primary"), "primary")
        or check_identifiers(op.get("secondary"), "secondary")
        or check_relationships(op.get("cio_relationships"), encoded_size, encode)
    )
    if problem:
        return problem
    action = op.get("action")
    if op.get("type") == "object" or action in ("add_relationships", "delete_relationships"):
        # These always travel as v2 operations (``/api/v2/entity`` on the v1 transport too).
        problem = check_size(encoded_size, OP_BYTES, "operation")
        if problem:
            return problem
    if action in ("event", "page", "screen"):
        if encoded_size > EVENT_DATA_BYTES and "attributes" in op:
            size = len(encode(op["attributes"]))
            if size > EVENT_DATA_BYTES:
                return LimitError(
                    f"event data is {size} bytes encoded; Customer.io allows {EVENT_DATA_BYTES}", field="properties"
                )
        return None
    if action == "add_device":
        device = op.get("device") or {}
        return check_attributes(device.get("attributes"), "device.attributes", encoded_size, encode)
    return check_attributes(op.get("attributes"), "attributes", encoded_size, encode)


def check_size(encoded_size: int, limit: int, what: str) -> LimitError | None:
    if encoded_size > limit:
        return LimitError(f"{what} is {encoded_size} bytes encoded; Customer.io allows {limit}", field=what)
    return None
