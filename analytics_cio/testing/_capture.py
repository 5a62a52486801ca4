"""Capturing what a client would send to Customer.io, with no network: for users' own tests, and ``--dry-run``.

    from analytics_cio.testing import capture

    with capture() as captured:              # the module facade (analytics_cio.track(...))
        signup("ada@example.com")
    assert captured.events(name="Signed Up")
    assert captured.people["ada@example.com"]["plan"] == "pro"

While a capture is active, calls are mapped, encoded and checked exactly as they would be for Customer.io, on the
caller's thread (as with ``sync_mode=True``), so what they produced can be asserted right after the call. Each
operation is checked against the Track API's rules, as the local Customer.io checks it: one Customer.io would
refuse is not captured, and ``on_error`` hears about it with Customer.io's reason, as it would in production.

A client that sends to Customer.io Data Pipelines (``write_key``) is captured by a
:class:`PipelinesCaptureTransport`: its Segment messages are kept as they would be sent, checked as the local
Data Pipelines checks them; ``ops`` are those messages (nothing is mapped on that path) and ``people`` is empty,
since Customer.io builds people from them on its side.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

from .._encoding import encode
from .._errors import DeliveryError
from .._limits import BATCH_BYTES, OP_BYTES
from .._pipelines import PipelinesTransport
from .._transport import DELIVERED, Outcome, WireOp
from ._pipelinesapi import message_problem
from ._state import State
from ._validation import Problem, check_op_size, validate_metrics, validate_op

if TYPE_CHECKING:
    from .._client import Client

Message = dict[str, Any]
OnError = Callable[[DeliveryError, Sequence[Any]], Any]

EVENT_ACTIONS = ("event", "page", "screen")


_Recorder = TypeVar("_Recorder", bound="_Recording")


class _Recording:
    """What both capture transports share: what they accepted, in order, under one lock (a twin shares both)."""

    def __init__(self, validate: bool) -> None:
        self.validate = validate
        self._lock = threading.Lock()
        self._sent: list[tuple[dict[str, Any], Any]] = []

    def _refusal(self, sent: dict[str, Any]) -> Outcome | None:
        """How Customer.io would refuse ``sent`` (decoded), or None."""
        raise NotImplementedError

    def send(self, ops: Sequence[WireOp], stop: threading.Event | None = None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._lock:
            for wire in ops:
                sent = json.loads(wire.data)
                refused = self._refusal(sent) if self.validate else None
                if refused is not None:
                    outcomes.append(refused)
                    continue
                self._sent.append((sent, wire.message))
                outcomes.append(DELIVERED)
        return outcomes

    def close(self) -> None:
        """Nothing to release; what was captured stays readable."""

    def sent(self, start: int = 0) -> list[tuple[dict[str, Any], Any]]:
        """What was accepted (decoded), each with the message it came from, in order, from ``start``."""
        with self._lock:
            return self._sent[start:]

    def count(self) -> int:
        """How many were accepted."""
        with self._lock:
            return len(self._sent)

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()

    def _recording_into_this(self, other: _Recorder) -> _Recorder:
        other._lock, other._sent = self._lock, self._sent
        return other


class CaptureTransport(_Recording):
    """A transport that keeps every operation instead of sending it (see ``Client(transport=...)``).

    ``validate=True`` refuses, as Customer.io would, the operations the Track API does not accept: the client
    then reports them to ``on_error`` with the reason. ``convert_timestamps`` must match the client's option,
    since the transport encodes the operations.
    """

    segment = False  # takes Track API operations (see PipelinesCaptureTransport)
    max_batch_bytes = BATCH_BYTES
    max_op_bytes = OP_BYTES

    def __init__(self, *, convert_timestamps: bool = True, validate: bool = True) -> None:
        super().__init__(validate)
        self.convert_timestamps = convert_timestamps

    def __repr__(self) -> str:
        return f"CaptureTransport({len(self._sent)} operations)"

    def prepare(self, op: Mapping[str, Any], message: Any) -> WireOp:
        return WireOp(encode(op, self.convert_timestamps), message)

    def _refusal(self, sent: dict[str, Any]) -> Outcome | None:
        problems = _problems(sent)
        if not problems:
            return None
        first = problems[0]
        reason = ": ".join(part for part in (first.reason, first.field, first.message) if part)
        return Outcome(False, status=400, reason=reason, field=first.field or None)

    def twin(self, *, convert_timestamps: bool) -> CaptureTransport:
        """A transport for another client that records into this one: one list, in the order of the calls."""
        return self._recording_into_this(CaptureTransport(convert_timestamps=convert_timestamps,
                                                          validate=self.validate))


class PipelinesCaptureTransport(_Recording):
    """A Data Pipelines transport that keeps every message instead of sending it.

    ``validate=True`` refuses what Data Pipelines refuses (``_pipelinesapi.message_problem``): the client then
    reports it to ``on_error`` with the reason.
    """

    segment = True
    max_batch_bytes = PipelinesTransport.max_batch_bytes
    max_op_bytes = PipelinesTransport.max_op_bytes

    def __init__(self, *, validate: bool = True) -> None:
        super().__init__(validate)

    def __repr__(self) -> str:
        return f"PipelinesCaptureTransport({len(self._sent)} messages)"

    def prepare(self, op: Mapping[str, Any], message: Any) -> WireOp:
        return WireOp(encode(op, False), message)

    def _refusal(self, sent: dict[str, Any]) -> Outcome | None:
        problem = message_problem(sent)
        return None if problem is None else Outcome(False, status=400, reason=problem)

    def twin(self, *, convert_timestamps: bool) -> PipelinesCaptureTransport:
        """A transport for another client that records into this one."""
        return self._recording_into_this(PipelinesCaptureTransport(validate=self.validate))


AnyCapture = Union[CaptureTransport, PipelinesCaptureTransport]


def _problems(op: dict[str, Any]) -> list[Problem]:
    if op.get("type") == "delivery" and op.get("action") == "metrics":  # POST /api/v1/metrics, on either API
        return validate_metrics({k: v for k, v in op.items() if k not in ("type", "action")})
    return validate_op(op) or check_op_size(op)


class People(Mapping[str, dict[str, Any]]):
    """The attributes of each person the captured operations describe, looked up by id, email or ``cio_…``."""

    def __init__(self, state: State) -> None:
        self._state = state

    def __getitem__(self, identifier: str) -> dict[str, Any]:
        person = self._state.person(identifier)
        if person is None:
            known = ", ".join(repr(key) for key in self) or "nobody"
            raise KeyError(f"no person {identifier!r} was captured (captured: {known})")
        attributes: dict[str, Any] = person["attributes"]
        return attributes

    def __iter__(self) -> Iterator[str]:
        for person in self._state.people():
            yield person["id"] or person["email"] or f"cio_{person['cio_id']}"

    def __len__(self) -> int:
        return len(self._state.people())

    def __contains__(self, identifier: object) -> bool:
        return isinstance(identifier, str) and self._state.person(identifier) is not None

    def __repr__(self) -> str:
        return f"People({dict(self)!r})"


class Captured:
    """What a client sent while captured: Segment messages, Customer.io operations, and what they amount to."""

    def __init__(self, transport: AnyCapture | None = None) -> None:
        self.transport = transport if transport is not None else CaptureTransport()
        self._errors: list[tuple[DeliveryError, list[Any]]] = []
        self._lock = threading.Lock()
        self._state: State | None = None
        self._state_ops = -1

    def __repr__(self) -> str:
        return f"<Captured {len(self.messages)} messages, {len(self.ops)} operations, {len(self.errors)} errors>"

    @property
    def messages(self) -> list[Message]:
        """The Segment-spec messages whose operations were captured, in order (each once)."""
        seen: set[int] = set()
        messages = []
        for _, message in self.transport.sent():
            if id(message) not in seen:
                seen.add(id(message))
                messages.append(message)
        return messages

    @property
    def ops(self) -> list[dict[str, Any]]:
        """The Customer.io operations (Track API v2 form, as JSON would decode them), in order."""
        return [op for op, _ in self.transport.sent()]

    @property
    def errors(self) -> list[tuple[DeliveryError, list[Any]]]:
        """What ``on_error`` was told while capturing: ``(exception, messages)`` pairs."""
        with self._lock:
            return list(self._errors)

    def events(self, name: str | None = None, *, person: str | None = None) -> list[dict[str, Any]]:
        """The event, page-view and screen-view operations, optionally only those named ``name`` or for the
        person (or anonymous id) ``person``. Each has ``name``, ``attributes`` (the properties),
        ``identifiers``, ``action`` and, when set, ``id`` and ``timestamp``."""
        found = []
        if self.transport.segment:
            kinds = ("track", "page", "screen")
            return [m for m in self.ops if m.get("type") in kinds
                    and (name is None or (m.get("event") or m.get("name")) == name)
                    and (person is None or person in (m.get("userId"), m.get("anonymousId")))]
        for op in self.ops:
            if op.get("type") != "person" or op.get("action") not in EVENT_ACTIONS:
                continue
            if name is not None and op.get("name") != name:
                continue
            if person is not None and person not in op.get("identifiers", {}).values():
                continue
            found.append(op)
        return found

    @property
    def people(self) -> People:
        """``captured.people["user-1"]["plan"]``: each person's attributes after every captured operation
        (empty for Data Pipelines messages: Customer.io maps those on its side)."""
        return People(self.state)

    def person(self, identifier: str) -> dict[str, Any] | None:
        """Everything Customer.io would hold about a person (attributes, devices, events, relationships)."""
        return self.state.person(identifier)

    @property
    def state(self) -> State:
        """The workspace the captured operations produce, modelled as the local Customer.io models it."""
        sent = self.ops
        with self._lock:
            if self._state is None or self._state_ops != len(sent):
                state = State()
                if self.transport.segment:
                    state.receive_pipelines(sent)
                else:
                    state.apply_valid(sent)
                self._state, self._state_ops = state, len(sent)
            return self._state

    def clear(self) -> None:
        """Forget everything captured so far."""
        self.transport.clear()
        with self._lock:
            self._errors.clear()
            self._state = None

    def _chain(self, on_error: OnError | None) -> OnError:
        """An ``on_error`` that records, then calls the application's own."""

        def record(error: DeliveryError, messages: Sequence[Any]) -> None:
            with self._lock:
                self._errors.append((error, list(messages)))
            if on_error is not None:
                on_error(error, messages)

        return record


@contextlib.contextmanager
def capture(client: Client | None = None, *, validate: bool = True) -> Iterator[Captured]:
    """Capture what ``client`` sends, instead of sending it. Without a client: the module facade, and every client
    the integrations built for an app (each Flask app's), whether built before the block or inside it.

    Calls made inside the block are delivered to the capture on the calling thread. Whatever a client had
    queued before is flushed first, for real. On exit each client goes back to its own transport and settings.
    """
    if client is None:
        with _capture_facade(validate) as captured, _capture_integrations(captured):
            yield captured
    else:
        transport: AnyCapture
        if getattr(client.transport, "segment", False):
            transport = PipelinesCaptureTransport(validate=validate)
        else:
            transport = CaptureTransport(convert_timestamps=client.mapping_options.convert_timestamps,
                                         validate=validate)
        captured = Captured(transport)
        with _capture_client(client, captured, captured.transport):
            yield captured


@contextlib.contextmanager
def _capture_facade(validate: bool) -> Iterator[Captured]:
    import analytics_cio as facade

    transport: AnyCapture
    if (facade.write_key is not None and facade.site_id is None) or getattr(facade.transport, "segment", False):
        transport = PipelinesCaptureTransport(validate=validate)
    else:
        transport = CaptureTransport(convert_timestamps=facade.convert_timestamps, validate=validate)
    captured = Captured(transport)
    saved = {name: getattr(facade, name) for name in ("transport", "sync_mode", "send", "on_error")}
    # Setting these makes the facade build a new default client on its next call; it keeps the transport even
    # if the code under test changes another setting inside the block.
    facade.transport = captured.transport
    facade.sync_mode = True
    facade.send = True
    facade.on_error = captured._chain(saved["on_error"])
    try:
        yield captured
    finally:
        current = facade.default_client
        if current is not None and current.transport is captured.transport:
            facade.shutdown()
        for name, value in saved.items():
            setattr(facade, name, value)


@contextlib.contextmanager
def _capture_integrations(captured: Captured) -> Iterator[None]:
    """Captures, into ``captured``, the clients the framework integrations built (see ``contrib._clients``)."""
    from ..contrib import _clients

    stack = contextlib.ExitStack()
    lock = threading.Lock()  # the stack is shared with threads that build an app while the capture runs

    def take(client: Client) -> None:
        twin = captured.transport.twin(convert_timestamps=client.mapping_options.convert_timestamps)
        with lock:
            stack.enter_context(_capture_client(client, captured, twin))

    with stack, _clients.watching(take) as alive:
        for client in alive:
            take(client)
        yield


@contextlib.contextmanager
def _capture_client(client: Client, captured: Captured, transport: AnyCapture) -> Iterator[None]:
    client.flush()
    saved = (client.transport, client.sync_mode, client.send, client.on_error)
    client.transport = transport
    client.sync_mode = True  # the worker (and the client's own transport) sit idle meanwhile
    client.send = True
    client.on_error = captured._chain(saved[3])
    try:
        yield
    finally:
        client.transport, client.sync_mode, client.send, client.on_error = saved
