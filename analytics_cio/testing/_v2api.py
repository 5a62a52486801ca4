"""The Track API v2: ``POST /api/v2/entity`` (one operation) and ``POST /api/v2/batch`` (``{"batch": [...]}``).

Sizes are counted on the decompressed body: a batch request must be under :data:`BATCH_LIMIT` (500,000 bytes:
499,999 is accepted, 500,000 is 413), an entity request at most :data:`ENTITY_LIMIT` (32,768 bytes), each batch
op at most 32,768 bytes as compact UTF-8 JSON. An empty batch is a 400. A batch is taken op by op: the valid ops
are applied and a 207 lists one error per invalid op (its first problem). Applied ops are kept for
:meth:`~analytics_cio.testing.LocalCustomerIO.ops`. With ``validate=False`` an invalid op is skipped (answered
200), not an error.
"""

from __future__ import annotations

from typing import Any

from ._answers import OK, error, json_answer, v2_invalid
from ._body import Body
from ._httpd import Answer
from ._routes import Route, Server
from ._validation import Problem, check_op_size, validate_op

BATCH_LIMIT = 500_000  # a v2 batch request must be smaller than this
ENTITY_LIMIT = 32_768  # a v2 entity request may be this big


def _json_body(body: Body) -> tuple[Any, Answer | None]:
    try:
        return body.json(), None
    except ValueError as exc:
        return None, v2_invalid([Problem("invalid", "", f"invalid JSON: {exc}")])


def _entity(app: Server, params: list[str], body: Body) -> Answer:
    if len(body.raw) > ENTITY_LIMIT:
        return error(413, f"an entity request may be at most {ENTITY_LIMIT} bytes", True)
    op, invalid = _json_body(body)
    if invalid is not None:
        return invalid
    problems = validate_op(op)
    if problems and app.validate:
        return v2_invalid(problems)
    if not problems:
        app._apply([op], v2=True)
    return OK


def _batch(app: Server, params: list[str], body: Body) -> Answer:
    if len(body.raw) >= BATCH_LIMIT:
        return error(413, f"a batch request must be smaller than {BATCH_LIMIT} bytes", True)
    data, invalid = _json_body(body)
    if invalid is not None:
        return invalid
    batch = data.get("batch") if isinstance(data, dict) else None
    if not isinstance(batch, list) or not batch:
        return v2_invalid([Problem("invalid", "batch", "the body must be {\"batch\": [operation, ...]}")])
    errors, accepted = [], []
    for index, op in enumerate(batch):
        problems = validate_op(op) or check_op_size(op)
        if not problems:
            accepted.append(op)
        elif app.validate:
            errors.append({"batch_index": index, **problems[0]._asdict()})
    app._apply(accepted, v2=True)
    return json_answer(207, {"errors": errors}) if errors else OK


V2_ROUTES: list[Route] = [
    (("api", "v2", "entity"), ("POST",), _entity),
    (("api", "v2", "batch"), ("POST",), _batch),
]
