"""Track API v1 requests for operations in v2 form: method, path and body, as Customer.io documents them.

Identifiers go into the path percent-encoded as one whole segment (``quote(value, safe="")``), so no user id
(``../../x``, ``a/b``, ``?``) can ever change which endpoint a request reaches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def segment(value: Any) -> str:
    """One URL path segment: ``/``, ``..``, ``?``, ``#`` and ``%`` can never change the path."""
    return quote(str(value), safe="")


def _v1_person(identifiers: Mapping[str, Any]) -> str:
    if "cio_id" in identifiers:
        return "cio_" + str(identifiers["cio_id"])
    for key in ("id", "email"):
        if key in identifiers:
            return str(identifiers[key])
    raise ValueError(f"no v1 person identifier in {sorted(identifiers)}")


def v1_request(op: Mapping[str, Any]) -> tuple[str, str, Any, str]:
    """(method, path, body, lane) of the v1 request for a v2-form operation."""
    if op.get("type") != "person" or op.get("action") in ("add_relationships", "delete_relationships"):
        return "POST", "/api/v2/entity", op, ""
    action = op["action"]
    if action == "merge":
        return "POST", "/api/v1/merge_customers", {"primary": op["primary"], "secondary": op["secondary"]}, ""
    identifiers = op["identifiers"]
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
            return "POST", "/api/v1/events", body, "anon:" + str(identifiers["anonymous_id"])
        person = _v1_person(identifiers)
        return "POST", f"/api/v1/customers/{segment(person)}/events", body, person
    person = _v1_person(identifiers)
    base = f"/api/v1/customers/{segment(person)}"
    if action == "identify":
        attributes = dict(op.get("attributes") or {})
        if "timestamp" in op:
            attributes["_timestamp"] = op["timestamp"]
        return "PUT", base, attributes, person
    if action == "add_device":
        device = dict(op["device"])
        device["id"] = device.pop("token")
        return "PUT", base + "/devices", {"device": device}, person
    if action == "delete_device":
        return "DELETE", f"{base}/devices/{segment(op['device']['token'])}", None, person
    if action == "delete":
        return "DELETE", base, None, person
    if action in ("suppress", "unsuppress"):
        return "POST", f"{base}/{action}", None, person
    raise ValueError(f"no v1 request for person action {action!r}")
