"""What the local Customer.io received: each API request as a :class:`RecordedRequest`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, TypeVar, overload

from ._body import parse_json

_T = TypeVar("_T")


class Headers(Dict[str, str]):
    """Request headers: a dict with lower-case names whose look-ups ignore case."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    @overload
    def get(self, name: str, default: None = None, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...
    def get(self, name: str, default: Any = None, /) -> Any:
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received. ``path`` is raw (still percent-encoded, no query); ``body`` is gunzipped."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes
    status: int  # what the server answered; 0 when it closed the connection instead
    received_at: float = 0.0  # time.monotonic() on arrival

    def json(self) -> Any:
        """The parsed body, or None when it is empty or not JSON."""
        try:
            return parse_json(self.body)
        except ValueError:
            return None
