"""Customer.io Data Pipelines: ``POST /v1/batch`` (``{"batch": [message, ...], "sentAt": ...}``).

As Customer.io documents it (Pipelines API: "Rate and payload limits", "Batch requests"):

- Auth: HTTP Basic with the source's API key as the user name and a blank password, or (region-prefixed
  ``pk_``/``sk_`` keys, as customerio-cdp-analytics sends them) ``Bearer <key>``. The server's ``write_key``
  None accepts any key; a missing or malformed ``Authorization`` is 401 either way.
- Sizes, counted on the decompressed body: a request must be under :data:`BATCH_LIMIT` (500,000 bytes, else 413);
  each message at most :data:`MESSAGE_LIMIT` (32,768 bytes as compact UTF-8 JSON).
- Each message: a ``type`` among identify, track, page, screen, group, alias; ``userId`` or ``anonymousId``
  (a non-empty string); ``event`` for track, ``groupId`` for group, ``previousId`` and ``userId`` for alias;
  ``traits``/``properties``/``context``/``integrations`` objects when present.
- ``X-Strict-Mode: 1``: a batch with an invalid message is refused whole with 400 naming the first problem.
  Without it Data Pipelines answers 200 and drops the invalid messages (they are listed in the state's
  ``pipelines.ignored``). With ``validate=False`` every message of a parsed batch is kept.

Accepted messages are kept in arrival order (``LocalCustomerIO.messages()``, ``GET /_state``'s ``pipelines``).
Customer.io maps them to people on its side; this model keeps them as sent, without building people from them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from ._answers import OK, json_answer
from ._body import Body
from ._httpd import Answer
from ._routes import Route, Server

BATCH_LIMIT: Final = 500_000
MESSAGE_LIMIT: Final = 32_768
TYPES: Final = ("identify", "track", "page", "screen", "group", "alias")
_OBJECTS: Final = ("traits", "properties", "context", "integrations")


def pipelines_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Answer:
    """Data Pipelines' error shape."""
    return json_answer(status, {"code": {400: "invalid_request", 413: "too_large"}.get(status, "error"),
                                "message": message}, headers)


def _text(message: Mapping[str, Any], key: str) -> bool:
    value = message.get(key)
    return isinstance(value, str) and bool(value)


def message_problem(message: Any) -> str | None:
    """The first thing Data Pipelines would refuse in ``message``, or None."""
    if not isinstance(message, dict):
        return "each item of batch must be an object"
    kind = message.get("type")
    if kind not in TYPES:
        return f"type must be one of {', '.join(TYPES)}, not {kind!r}"
    if kind == "alias":
        if not _text(message, "userId") or not _text(message, "previousId"):
            return "alias requires userId and previousId"
    elif not _text(message, "userId") and not _text(message, "anonymousId"):
        return f"{kind} requires userId or anonymousId"
    if kind == "track" and not _text(message, "event"):
        return "track requires event"
    if kind == "group" and not _text(message, "groupId"):
        return "group requires groupId"
    for key in _OBJECTS:
        if key in message and message[key] is not None and not isinstance(message[key], dict):
            return f"{key} must be an object"
    size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MESSAGE_LIMIT:
        return f"a message may be at most {MESSAGE_LIMIT} bytes; this one is {size}"
    return None


def _batch(app: Server, params: list[str], body: Body) -> Answer:
    """``params`` is ``["strict"]`` when the request had ``X-Strict-Mode: 1`` (the server adds it)."""
    strict = params == ["strict"]
    if len(body.raw) >= BATCH_LIMIT:
        return pipelines_error(413, f"a batch request must be smaller than {BATCH_LIMIT} bytes")
    try:
        data = body.json()
    except ValueError as exc:
        return pipelines_error(400, f"invalid JSON: {exc}")
    batch = data.get("batch") if isinstance(data, dict) else None
    if not isinstance(batch, list) or not batch:
        return pipelines_error(400, 'the body must be {"batch": [message, ...]}')
    accepted: list[dict[str, Any]] = []
    ignored: list[dict[str, Any]] = []
    for index, message in enumerate(batch):
        problem = message_problem(message) if app.validate else None
        if problem is None:
            accepted.append(message)
        elif strict:
            return pipelines_error(400, f"batch[{index}]: {problem}")
        else:
            ignored.append({"message": message, "reason": problem})
    app._receive(accepted, ignored)
    return OK


PIPELINES_ROUTES: list[Route] = [
    (("v1", "batch"), ("POST",), _batch),
]
