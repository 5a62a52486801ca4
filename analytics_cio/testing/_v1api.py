"""The Track API v1, translated: each v1 request becomes the v2 operations it stands for.

``PUT /api/v1/customers/42`` is ``{"type": "person", "action": "identify", "identifiers": {"id": "42"}}`` plus
its attributes. The ops are then validated and applied as v2's are (``_validation.py``, ``_state.py``), so the
same calls give the same state through either version. A 400 lists every problem found (merge: joined into
one ``error``). With ``validate=False`` a request that can be translated at all is answered 200 and the ops that
can be applied are.

Where v1 says things its own way:

- The person in the path is a ``cio_id`` when it starts with ``cio_``, an email when it holds ``@``, else an id.
- In an identify body ``_update``, ``_timestamp`` and ``cio_relationships`` are not attributes.
  ``cio_relationships`` is a list to add, or ``{"action": "add_relationships" | "delete_relationships",
  "relationships": [...]}``.
- An event's ``type`` is ``event``, ``page`` or ``screen``, and its ``data`` is the op's attributes.
  ``POST /api/v1/events`` (an anonymous event) requires ``anonymous_id``.
- A device's token is ``device.id`` (v2: ``device.token``).
- v2's limit on one operation's size does not apply.
- ``POST /api/v1/metrics`` (a delivery metric) has no v2 op that holds all of it: it is checked as itself
  (:func:`~._validation.validate_metrics`) and kept as ``{"type": "delivery", "action": "metrics", **body}``.
"""

from __future__ import annotations

from typing import Any

from ._answers import OK, json_answer, v1_invalid
from ._body import Body
from ._httpd import Answer
from ._routes import Handler, Route, Server
from ._validation import EVENT_ACTIONS, Op, Problem, validate_metrics, validate_op


def _person_from_path(identifier: str) -> dict[str, str]:
    """v1 infers the kind of identifier from its shape."""
    if identifier.startswith("cio_"):
        return {"cio_id": identifier[4:]}
    if "@" in identifier:
        return {"email": identifier}
    return {"id": identifier}


def _json_object(body: Body) -> tuple[dict[str, Any] | None, list[Problem]]:
    try:
        value = body.json()
    except ValueError as exc:
        return None, [Problem("invalid", "", f"invalid JSON: {exc}")]
    if not isinstance(value, dict):
        return None, [Problem("invalid", "", "the request body must be a JSON object")]
    return value, []


def _apply(
    app: Server, ops: list[Op], problems: list[Problem] | None = None, *, merge: bool = False
) -> Answer:
    """Validate and apply the ops a v1 request stands for; ``problems`` were found translating it."""
    if app.validate:
        problems = (problems or []) + [p for op in ops for p in validate_op(op)]
        if problems:
            return v1_invalid(problems, merge=merge)
        app._apply(ops, v2=False)
    else:
        app._apply([op for op in ops if not validate_op(op)], v2=False)  # unusable ops can't be applied
    return OK


_CONTROL = ("_update", "_timestamp", "cio_relationships")


def _identify(app: Server, params: list[str], body: Body) -> Answer:
    identifiers = _person_from_path(params[0])
    data, problems = ({}, []) if body.empty else _json_object(body)
    if data is None:
        return v1_invalid(problems)
    op: Op = {"type": "person", "action": "identify", "identifiers": identifiers,
              "attributes": {k: v for k, v in data.items() if k not in _CONTROL}}
    if "_timestamp" in data:
        op["timestamp"] = data["_timestamp"]
    if data.get("_update") is not None:
        if not isinstance(data["_update"], bool):
            problems.append(Problem("invalid", "_update", "_update must be true or false"))
        op["_update"] = data["_update"]
    ops = [op]
    relationships = data.get("cio_relationships")
    if isinstance(relationships, list):
        op["cio_relationships"] = relationships
    elif isinstance(relationships, dict):  # {"action": "add_relationships" | "delete_relationships", ...}
        action = relationships.get("action", "add_relationships")
        if action == "add_relationships":
            op["cio_relationships"] = relationships.get("relationships")
        elif action == "delete_relationships":
            ops.append({"type": "person", "action": "delete_relationships", "identifiers": identifiers,
                        "cio_relationships": relationships.get("relationships")})
        else:
            message = "cio_relationships.action must be add_relationships or delete_relationships"
            problems.append(Problem("invalid", "cio_relationships.action", message))
    elif relationships is not None:
        problems.append(Problem("invalid", "cio_relationships", "cio_relationships must be a list or object"))
    return _apply(app, ops, problems)


def _person_action(action: str) -> Handler:
    def handle(app: Server, params: list[str], body: Body) -> Answer:
        return _apply(app, [{"type": "person", "action": action, "identifiers": _person_from_path(params[0])}])

    return handle


def _event_op(identifiers: dict[str, Any], data: dict[str, Any]) -> tuple[Op, list[Problem]]:
    kind = data.get("type", "event")
    problems = []
    if kind not in EVENT_ACTIONS:
        problems.append(Problem("invalid", "type", f"type must be one of {', '.join(EVENT_ACTIONS)}"))
    op: Op = {"type": "person", "action": kind if kind in EVENT_ACTIONS else "event", "identifiers": identifiers}
    for field, target in (("name", "name"), ("id", "id"), ("timestamp", "timestamp"), ("data", "attributes")):
        if field in data:
            op[target] = data[field]
    return op, problems


def _event(app: Server, params: list[str], body: Body) -> Answer:
    data, problems = _json_object(body)
    if data is None:
        return v1_invalid(problems)
    op, problems = _event_op(_person_from_path(params[0]), data)
    return _apply(app, [op], problems)


def _anonymous_event(app: Server, params: list[str], body: Body) -> Answer:
    data, problems = _json_object(body)
    if data is None:
        return v1_invalid(problems)
    if "anonymous_id" not in data:
        return v1_invalid([Problem("required", "anonymous_id", "anonymous_id is required")])
    op, problems = _event_op({"anonymous_id": data["anonymous_id"]}, data)
    return _apply(app, [op], problems)


def _add_device(app: Server, params: list[str], body: Body) -> Answer:
    data, problems = _json_object(body)
    if data is None:
        return v1_invalid(problems)
    device = data.get("device")
    if not isinstance(device, dict):
        return v1_invalid([Problem("required", "device", "device must be a JSON object")])
    if "id" not in device:  # v1 calls the token "id" (v2: "token")
        return v1_invalid([Problem("required", "device.id", "device.id (the device token) is required")])
    translated = {"token" if k == "id" else k: v for k, v in device.items() if k != "token"}
    op = {"type": "person", "action": "add_device", "identifiers": _person_from_path(params[0]),
          "device": translated}
    return _apply(app, [op])


def _delete_device(app: Server, params: list[str], body: Body) -> Answer:
    op = {"type": "person", "action": "delete_device", "identifiers": _person_from_path(params[0]),
          "device": {"token": params[1]}}
    return _apply(app, [op])


def _merge(app: Server, params: list[str], body: Body) -> Answer:
    data, problems = _json_object(body)
    if data is None:
        return v1_invalid(problems, merge=True)
    op = {"type": "person", "action": "merge", "primary": data.get("primary"), "secondary": data.get("secondary")}
    return _apply(app, [op], merge=True)


def _metrics(app: Server, params: list[str], body: Body) -> Answer:
    data, problems = _json_object(body)
    if data is None:
        return v1_invalid(problems)
    problems = validate_metrics(data)
    if problems and app.validate:
        return v1_invalid(problems)
    if not problems:
        app._apply([{**data, "type": "delivery", "action": "metrics"}], v2=False)
    return OK


def _region(app: Server, params: list[str], body: Body) -> Answer:
    return json_answer(200, {"url": app.url, "region": app.region, "environment_id": 1})


V1_ROUTES: list[Route] = [
    (("api", "v1", "customers", "{}"), ("PUT",), _identify),
    (("api", "v1", "customers", "{}"), ("DELETE",), _person_action("delete")),
    (("api", "v1", "customers", "{}", "events"), ("POST",), _event),
    (("api", "v1", "events"), ("POST",), _anonymous_event),
    (("api", "v1", "customers", "{}", "devices"), ("PUT",), _add_device),
    (("api", "v1", "customers", "{}", "devices", "{}"), ("DELETE",), _delete_device),
    (("api", "v1", "customers", "{}", "suppress"), ("POST",), _person_action("suppress")),
    (("api", "v1", "customers", "{}", "unsuppress"), ("POST",), _person_action("unsuppress")),
    (("api", "v1", "merge_customers"), ("POST",), _merge),
    (("api", "v1", "metrics"), ("POST",), _metrics),
    (("api", "v1", "accounts", "region"), ("GET",), _region),
]
