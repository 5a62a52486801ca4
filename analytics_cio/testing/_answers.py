"""What the local Customer.io answers, in Customer.io's shapes.

200 ``{}`` (:data:`OK`); v1 400 ``{"meta": {"errors": [...]}}`` (merge: ``{"meta": {"error": ...}}``); v2 400
``{"errors": [{"reason", "field", "message"}]}``; 207 ``{"errors": [{"batch_index", ...}]}`` with the valid ops
applied; 401 ``{"meta": {"error": "Unauthorized request"}}``; 413 for an oversized request. Other errors (404,
405, 415, 500, simulated faults) take the shape of the API version the request was for (:func:`error`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._httpd import Answer
from ._validation import Problem


def json_answer(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Answer:
    """``payload`` as compact JSON."""
    return Answer(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"), headers or {})


OK = json_answer(200, {})


def error(status: int, message: str, v2: bool, headers: Mapping[str, str] | None = None) -> Answer:
    """An error in the shape of the API version the request was for."""
    if v2:
        reason = {413: "too_large", 415: "invalid"}.get(status, "invalid" if status == 400 else "error")
        return json_answer(status, {"errors": [{"reason": reason, "field": "", "message": message}]}, headers)
    return json_answer(status, {"meta": {"errors": [message]}}, headers)


def v1_invalid(problems: list[Problem], *, merge: bool = False) -> Answer:
    """v1's 400: every problem's message (merge joins them into one ``error``)."""
    messages = [p.message for p in problems]
    if merge:
        return json_answer(400, {"meta": {"error": "; ".join(messages)}})
    return json_answer(400, {"meta": {"errors": messages}})


def v2_invalid(problems: list[Problem]) -> Answer:
    """v2's 400: every problem as a ``{"reason", "field", "message"}`` error object."""
    return json_answer(400, {"errors": [p._asdict() for p in problems]})
