"""How the local Customer.io finds the endpoint for a request, and what an endpoint gets to work with.

A :data:`Route` is a path pattern (decoded path segments; ``{}`` stands for any one non-empty segment), the
methods it answers and the :data:`Handler` that answers them. A handler gets the server as a :class:`Server`
(only what an endpoint may use of it), the values of the pattern's ``{}`` segments and the request's body. The
routes themselves are in ``_v1api.py``, ``_v2api.py`` and ``_pipelinesapi.py`` (whose one route has no ``{}``
segment: the server passes ``["strict"]`` as its values when the request asks for Data Pipelines' strict mode).
"""

from __future__ import annotations

from typing import Any, Callable, List, Protocol, Tuple

from ._body import Body
from ._httpd import Answer
from ._validation import Op


class Server(Protocol):
    """What an endpoint may use of the local Customer.io."""

    validate: bool  # False: apply what can be applied and answer 200
    region: str  # what GET /api/v1/accounts/region answers

    @property
    def url(self) -> str: ...

    def _apply(self, ops: list[Op], *, v2: bool) -> None:
        """Apply ops that passed validation (v2 ones are also kept for ``ops()``)."""

    def _receive(self, messages: list[dict[str, Any]], ignored: list[dict[str, Any]]) -> None:
        """Keep Data Pipelines messages that passed validation, and those it dropped (permissive mode)."""


Handler = Callable[[Server, List[str], Body], Answer]
Route = Tuple[Tuple[str, ...], Tuple[str, ...], Handler]  # (path pattern, methods, handler)


def match(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
    """The values of ``pattern``'s ``{}`` segments (each one whole, decoded path segment), or None."""
    if len(pattern) != len(segments):
        return None
    params = []
    for expected, segment in zip(pattern, segments):
        if expected == "{}":
            if not segment:
                return None
            params.append(segment)
        elif expected != segment:
            return None
    return params
