"""Track API v1 requests for operations in v2 form: method, path and body, as Customer.io documents them.

Identifiers go into the path percent-encoded as one whole segment (``quote(value, safe="")``), so no user id
(``a/b``, ``?x``, ``#``) can change which endpoint a request reaches. Two things a path cannot say safely:

- ``.`` and ``..``: HTTP clients, proxies and servers resolve them as "this" and "parent" directory, and
  percent-encoding does not help (``%2E`` is an unreserved character, decoded before the path is resolved).
  With requests, ``/customers/../events`` becomes ``/events``.
- who the identifier is: v1 infers the kind from the value's shape (``cio_…`` is a cio_id, an ``@`` makes an
  email, anything else is an id), so an *id* that contains ``@`` (``email_as_id=False``) or starts with
  ``cio_``, or an *email* without ``@``, would name a different person.

Operations like that go as their v2 form through ``POST /api/v2/entity``, which names people in the body, as
``group`` (objects) and relationships always do: the same Customer.io state, reached safely.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

ENTITY_PATH = "/api/v2/entity"
METRICS_PATH = "/api/v1/metrics"
_DOT_SEGMENTS = frozenset({".", ".."})


def segment(value: Any) -> str:
    """One URL path segment: ``/``, ``?``, ``#`` and ``%`` can never change the path (dot segments: see
    :func:`path_safe`)."""
    return quote(str(value), safe="")


def path_safe(value: str) -> bool:
    """Whether ``value`` can be a path segment: anything but empty, ``.`` and ``..``."""
    return bool(value) and value not in _DOT_SEGMENTS


def v1_identifier(identifiers: Mapping[str, Any]) -> str | None:
    """The v1 path identifier that Customer.io reads back as exactly ``identifiers``, or None if there is none."""
    if len(identifiers) != 1:
        return None
    ((kind, raw),) = identifiers.items()
    value = str(raw)
    text = "cio_" + value if kind == "cio_id" else value
    read_as = "cio_id" if text.startswith("cio_") else "email" if "@" in text else "id"
    return text if read_as == kind and path_safe(text) else None


_V1_ACTIONS = frozenset({"identify", "event", "page", "screen", "add_device", "delete_device", "delete", "suppress",
                         "unsuppress", "merge"})


def _lane(identifiers: Mapping[str, Any] | None) -> str:
    """Requests in one lane go in order: a person's (or anonymous visitor's) operations keep their order. A merge
    is in two lanes, written as a JSON list of them (a single lane never starts with "["); see ``_lanes``."""
    if not identifiers:
        return ""
    kind, value = next(iter(identifiers.items()))
    return f"{kind}:{value}"


def _entity(op: Mapping[str, Any]) -> tuple[str, str, Any, str]:
    person = op.get("identifiers") if op.get("type") == "person" else None
    if person is None:
        relationships = op.get("cio_relationships") or [{}]
        person = relationships[0].get("identifiers") if isinstance(relationships[0], Mapping) else None
    return "POST", ENTITY_PATH, op, _lane(person)


def metrics_request(op: Mapping[str, Any]) -> tuple[str, str, Any, str] | None:
    """The ``POST /api/v1/metrics`` request of a delivery metric op (``_mapping.metrics_op``), else None."""
    if op.get("type") != "delivery" or op.get("action") != "metrics":
        return None
    body = {k: v for k, v in op.items() if k not in ("type", "action")}
    return "POST", METRICS_PATH, body, f"delivery:{op.get('delivery_id')}"


def v1_request(op: Mapping[str, Any]) -> tuple[str, str, Any, str]:
    """(method, path, body, lane) of the v1 request for a v2-form operation."""
    metrics = metrics_request(op)
    if metrics is not None:
        return metrics
    if op.get("type") != "person" or op.get("action") not in _V1_ACTIONS or op.get("cio_relationships"):
        # Objects, relationships (an identify's too) and content events have no v1 form.
        return _entity(op)
    action = op["action"]
    if action == "merge":
        merge = {"primary": op["primary"], "secondary": op["secondary"]}
        # In both people's lanes: sent after the secondary's earlier operations (which would otherwise arrive after
        # the merge and make the secondary again, a person of their own), and before its later ones.
        return "POST", "/api/v1/merge_customers", merge, json.dumps([_lane(op["primary"]), _lane(op["secondary"])])
    identifiers = op["identifiers"]
    lane = _lane(identifiers)
    if action in ("event", "page", "screen"):
        body: dict[str, Any] = {"name": op["name"]}
        if "attributes" in op:
            body["data"] = op["attributes"]
        if "id" in op:
            body["id"] = op["id"]
        body["type"] = action
        if "timestamp" in op:
            body["timestamp"] = op["timestamp"]
        if "anonymous_id" in identifiers:
            body["anonymous_id"] = identifiers["anonymous_id"]
            return "POST", "/api/v1/events", body, lane
    person = v1_identifier(identifiers)
    if person is None:
        return _entity(op)
    base = f"/api/v1/customers/{segment(person)}"
    if action in ("event", "page", "screen"):
        return "POST", base + "/events", body, lane
    if action == "identify":
        attributes = dict(op.get("attributes") or {})
        if "timestamp" in op:
            attributes["_timestamp"] = op["timestamp"]
        return "PUT", base, attributes, lane
    if action == "add_device":
        device = dict(op["device"])
        device["id"] = device.pop("token")
        return "PUT", base + "/devices", {"device": device}, lane
    if action == "delete_device":
        token = str(op["device"]["token"])
        if not path_safe(token):
            return _entity(op)
        return "DELETE", f"{base}/devices/{segment(token)}", None, lane
    if action == "delete":
        return "DELETE", base, None, lane
    if action in ("suppress", "unsuppress"):
        # An empty JSON object, as the official clients send: the request is declared application/json.
        return "POST", f"{base}/{action}", {}, lane
    raise ValueError(f"no v1 request for person action {action!r}")
