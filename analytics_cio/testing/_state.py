"""The workspace of the local Customer.io: what valid operations do to the people in it.

Both Track API versions end here. The server turns every v1 request into the v2 operation it stands for
(``PUT /api/v1/customers/42`` is ``{"type": "person", "action": "identify", "identifiers": {"id": "42"}}``
plus its attributes), checks it with :func:`~analytics_cio.testing._validation.validate_op` (which operations
are valid is ``_validation.py``'s business), and :meth:`State.apply_valid` changes the in-memory workspace, so
the same calls give the same state through either version.

Where Customer.io's documentation is silent, this model makes a choice and says so here:

- An op naming a person by ``id``, ``email`` or ``phone`` creates the person when missing (identify, events,
  devices, relationships). ``cio_id`` never creates one, and neither do ``delete``, ``suppress``,
  ``unsuppress``, ``delete_device``, ``delete_relationships`` or an identify with ``_update: true``: such ops
  are accepted and listed in ``snapshot()["ignored"]`` with the reason.
- Identify with an ``id``/``email``/``phone`` attribute gives the person that identifier, unless another
  person already has it (then the attribute is stored but the identifier is not moved). Identified by ``id``
  and not found, a person who has the ``email`` attribute's address and no id is that person (and vice versa).
- An attribute sent as ``null`` is removed; everything else is a shallow merge.
- ``anonymous_id`` on an identify links that anonymous id to the person: earlier anonymous events and
  anonymous object relationships move onto the person, and later anonymous events with that id land there too.
  An anonymous id already linked to someone else stays with them.
- Event de-duplication is workspace-wide: an event whose ``id`` was seen before is accepted and ignored, and
  counted in ``duplicates``.
- A device token belongs to one person: adding it to someone moves it off its previous owner.
- Merge folds the secondary into the primary (primary attributes and devices win, events interleave in
  arrival order, missing identifiers are filled in) and removes the secondary. With no secondary nothing
  happens; a missing primary is created from its identifier (unless it is a ``cio_id``).
- ``suppressed`` is a flag only: the local workspace keeps the person and their data.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._validation import Op, validate_op


class _Person:
    __slots__ = (
        "anonymous_ids", "attributes", "cio_id", "devices", "email", "events", "id", "phone", "suppressed",
        "timestamp",
    )

    def __init__(self, cio_id: str) -> None:
        self.cio_id = cio_id
        self.id: Optional[str] = None
        self.email: Optional[str] = None
        self.phone: Optional[str] = None
        self.attributes: Dict[str, Any] = {}
        self.devices: Dict[str, Dict[str, Any]] = {}
        self.events: List[_Event] = []
        self.suppressed = False
        self.anonymous_ids: List[str] = []
        self.timestamp: Optional[int] = None

    @property
    def key(self) -> str:
        """How the person is shown: the identifier a v1 path would use (id, else email, else cio_<cio_id>)."""
        return self.id or self.email or f"cio_{self.cio_id}"


class _Event:
    __slots__ = ("anonymous_id", "data", "id", "name", "seq", "timestamp", "type")

    def __init__(self, seq: int, op: Op) -> None:
        self.seq = seq
        self.name: str = op["name"]
        self.type: str = op["action"]
        self.id: Optional[str] = op.get("id")
        self.timestamp: Optional[int] = op.get("timestamp")
        self.data: Dict[str, Any] = op.get("attributes") or {}
        self.anonymous_id: Optional[str] = op["identifiers"].get("anonymous_id")

    def export(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "id": self.id, "timestamp": self.timestamp,
               "data": _copy(self.data)}
        if self.anonymous_id is not None:
            out["anonymous_id"] = self.anonymous_id
        return out


class _Object:
    __slots__ = ("anonymous", "attributes", "object_id", "people", "type_id")

    def __init__(self, type_id: str, object_id: str) -> None:
        self.type_id = type_id
        self.object_id = object_id
        self.attributes: Dict[str, Any] = {}
        self.people: Dict[str, Dict[str, Any]] = {}  # cio_id -> relationship attributes
        self.anonymous: Dict[str, Dict[str, Any]] = {}  # anonymous_id -> relationship attributes


def _copy(value: Any) -> Any:
    """A copy of a JSON value (faster than copy.deepcopy, which this needs nothing of)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _merge_attributes(target: dict[str, Any], attributes: Mapping[str, Any]) -> None:
    for name, value in attributes.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value


class State:
    """The people, objects and activity of the local workspace. Thread-safe; every read returns copies."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._people: Dict[str, _Person] = {}  # by cio_id, in creation order
            self._index: Dict[str, Dict[str, str]] = {"id": {}, "email": {}, "phone": {}}  # value -> cio_id
            self._device_owner: Dict[str, str] = {}  # token -> cio_id
            self._anonymous: Dict[str, List[_Event]] = {}
            self._links: Dict[str, str] = {}  # anonymous_id -> cio_id
            self._objects: Dict[Tuple[str, str], _Object] = {}
            self._merges: List[Dict[str, Any]] = []
            self._deliveries: List[Dict[str, Any]] = []
            self._ignored: List[Dict[str, Any]] = []
            self._event_ids: set[str] = set()
            self._duplicates = 0
            self._pipelines: List[Dict[str, Any]] = []  # Data Pipelines messages, as received
            self._pipelines_ignored: List[Dict[str, Any]] = []
            self._pipelines_ids: set[str] = set()
            self._pipelines_duplicates = 0
            self._seq = itertools.count()
            self._cio_ids = itertools.count(1)

    # -- writing

    def apply(self, *ops: Mapping[str, Any]) -> None:
        """Apply operations in the v2 shape, as if Customer.io had accepted them (seeds a test's workspace).

        Raises ``ValueError`` naming the first problem of an invalid op; nothing is applied then.
        """
        copies = [_copy(dict(op)) for op in ops]
        for i, op in enumerate(copies):
            problems = validate_op(op)
            if problems:
                raise ValueError(f"op {i}: {problems[0].field}: {problems[0].message}")
        self.apply_valid(copies)

    def apply_valid(self, ops: Iterable[Op]) -> None:
        """Apply ops that passed :func:`validate_op`, in order, atomically. The ops are kept, not copied."""
        with self._lock:
            for op in ops:
                if op["type"] == "delivery":
                    self._delivery(op)
                else:
                    self._APPLY[(op["type"], op["action"])](self, op)

    def receive_pipelines(self, messages: Iterable[Dict[str, Any]], ignored: Iterable[Dict[str, Any]] = ()) -> None:
        """Keep Data Pipelines messages (Customer.io maps them on its side; no people are built from them here).

        A message whose ``messageId`` was seen before is kept too, and counted in ``pipelines.duplicates``.
        """
        with self._lock:
            for message in messages:
                key = message.get("messageId")
                if isinstance(key, str):
                    if key in self._pipelines_ids:
                        self._pipelines_duplicates += 1
                    self._pipelines_ids.add(key)
                self._pipelines.append(message)
            self._pipelines_ignored.extend(ignored)

    def pipelines_messages(self) -> list[dict[str, Any]]:
        """The Data Pipelines messages received, in arrival order (copies)."""
        with self._lock:
            messages: list[dict[str, Any]] = _copy(self._pipelines)
            return messages

    def _ignore(self, op: Op, reason: str) -> None:
        self._ignored.append({"op": _copy(op), "reason": reason})

    def _find(self, identifiers: Mapping[str, str]) -> _Person | None:
        ((key, value),) = identifiers.items()
        cio_id = value if key == "cio_id" else self._index.get(key, {}).get(value)
        return self._people.get(cio_id) if cio_id is not None else None

    def _find_or_create(self, identifiers: Mapping[str, str]) -> _Person | None:
        person = self._find(identifiers)
        if person is None:
            ((key, value),) = identifiers.items()
            if key in self._index:
                person = _Person(f"{0xD00000000000 + next(self._cio_ids):012x}")
                self._people[person.cio_id] = person
                self._assign(person, key, value)
        return person

    def _assign(self, person: _Person, key: str, value: str | None) -> None:
        """Give ``person`` the identifier ``key=value`` (None: take it away), unless someone else has it."""
        index = self._index[key]
        if value is not None and index.get(value, person.cio_id) != person.cio_id:
            return
        if value is None and not any(getattr(person, k) for k in self._index if k != key):
            return  # the person's only identifier stays
        old = getattr(person, key)
        if old is not None:
            index.pop(old, None)
        setattr(person, key, value)
        if value is not None:
            index[value] = person.cio_id

    def _identify(self, op: Op) -> None:
        identifiers: dict[str, str] = op["identifiers"]
        attributes: dict[str, Any] = op.get("attributes") or {}
        person = self._find(identifiers)
        ((kind, _),) = identifiers.items()
        if person is None and kind in self._index:  # known by another identifier that is now being added
            for key in self._index:
                value = attributes.get(key)
                cio_id = self._index[key].get(value) if key != kind and isinstance(value, str) else None
                if cio_id is not None and getattr(self._people[cio_id], kind) is None:
                    person = self._people[cio_id]
                    self._assign(person, kind, identifiers[kind])
                    break
        if person is None and (op.get("_update") or kind == "cio_id"):
            self._ignore(op, "no such person")
            return
        person = person or self._find_or_create(identifiers)
        assert person is not None
        for key in self._index:
            if key in attributes and (attributes[key] is None or isinstance(attributes[key], str)):
                self._assign(person, key, attributes[key])
        _merge_attributes(person.attributes, attributes)
        if op.get("timestamp") is not None:
            person.timestamp = op["timestamp"]
        anonymous_id = attributes.get("anonymous_id")
        if isinstance(anonymous_id, str):
            self._link(person, anonymous_id)
        self._relate_objects(person, op.get("cio_relationships") or [], add=True)

    def _link(self, person: _Person, anonymous_id: str) -> None:
        if self._links.setdefault(anonymous_id, person.cio_id) != person.cio_id:
            return
        if anonymous_id not in person.anonymous_ids:
            person.anonymous_ids.append(anonymous_id)
        events = self._anonymous.pop(anonymous_id, [])
        if events:
            person.events = sorted(person.events + events, key=lambda e: e.seq)
        for obj in self._objects.values():
            if anonymous_id in obj.anonymous:
                obj.people.setdefault(person.cio_id, obj.anonymous.pop(anonymous_id))

    def _event(self, op: Op) -> None:
        event_id = op.get("id")
        if event_id is not None and event_id.upper() in self._event_ids:
            self._duplicates += 1
            return
        anonymous_id = op["identifiers"].get("anonymous_id")
        if anonymous_id is not None and anonymous_id not in self._links:
            self._anonymous.setdefault(anonymous_id, []).append(_Event(next(self._seq), op))
        else:
            person = (
                self._people[self._links[anonymous_id]] if anonymous_id is not None
                else self._find_or_create(op["identifiers"])
            )
            if person is None:
                self._ignore(op, "no such person")
                return
            person.events.append(_Event(next(self._seq), op))
        if event_id is not None:
            self._event_ids.add(event_id.upper())

    def _add_device(self, op: Op) -> None:
        person = self._find_or_create(op["identifiers"])
        if person is None:
            self._ignore(op, "no such person")
            return
        device: dict[str, Any] = op["device"]
        token: str = device["token"]
        owner = self._device_owner.get(token)
        if owner is not None and owner != person.cio_id:
            self._people[owner].devices.pop(token, None)
        record = person.devices.setdefault(token, {"platform": None, "last_used": None, "attributes": {}})
        record["platform"] = device["platform"]
        if device.get("last_used") is not None:
            record["last_used"] = device["last_used"]
        _merge_attributes(record["attributes"], device.get("attributes") or {})
        self._device_owner[token] = person.cio_id

    def _delete_device(self, op: Op) -> None:
        person = self._find(op["identifiers"])
        token: str = op["device"]["token"]
        if person is None or token not in person.devices:
            self._ignore(op, "no such device")
            return
        del person.devices[token]
        self._device_owner.pop(token, None)

    def _delete(self, op: Op) -> None:
        person = self._find(op["identifiers"])
        if person is None:
            self._ignore(op, "no such person")  # not an error, as Customer.io documents
            return
        self._remove(person)
        for obj in self._objects.values():
            obj.people.pop(person.cio_id, None)

    def _remove(self, person: _Person) -> None:
        del self._people[person.cio_id]
        for key, index in self._index.items():
            value = getattr(person, key)
            if value is not None:
                index.pop(value, None)
        for token in person.devices:
            self._device_owner.pop(token, None)
        for anonymous_id in person.anonymous_ids:
            self._links.pop(anonymous_id, None)

    def _suppress(self, op: Op) -> None:
        person = self._find(op["identifiers"])
        if person is None:
            self._ignore(op, "no such person")
        else:
            person.suppressed = op["action"] == "suppress"

    def _merge(self, op: Op) -> None:
        secondary = self._find(op["secondary"])
        primary = self._find(op["primary"]) if secondary is not None else None
        if secondary is not None and primary is None:
            primary = self._find_or_create(op["primary"])
        applied = primary is not None and secondary is not None and primary is not secondary
        self._merges.append({"primary": dict(op["primary"]), "secondary": dict(op["secondary"]),
                             "applied": applied})
        if not applied or primary is None or secondary is None:
            return
        for name, value in secondary.attributes.items():
            primary.attributes.setdefault(name, value)
        primary.events = sorted(primary.events + secondary.events, key=lambda e: e.seq)
        for token, device in secondary.devices.items():
            if token not in primary.devices:
                primary.devices[token] = device
        self._remove(secondary)
        for token in primary.devices:
            self._device_owner[token] = primary.cio_id
        for anonymous_id in secondary.anonymous_ids:
            self._link(primary, anonymous_id)
        for obj in self._objects.values():
            if secondary.cio_id in obj.people:
                obj.people.setdefault(primary.cio_id, obj.people.pop(secondary.cio_id))
        for key in self._index:
            if getattr(primary, key) is None and getattr(secondary, key) is not None:
                self._assign(primary, key, getattr(secondary, key))

    def _object(self, identifiers: Mapping[str, str]) -> _Object:
        key = (identifiers["object_type_id"], identifiers["object_id"])
        obj = self._objects.get(key)
        if obj is None:
            obj = self._objects[key] = _Object(*key)
        return obj

    def _relate_objects(self, person: _Person, relationships: list[dict[str, Any]], *, add: bool) -> None:
        for relationship in relationships:
            obj = self._object(relationship["identifiers"])
            if add:
                attributes = obj.people.setdefault(person.cio_id, {})
                _merge_attributes(attributes, relationship.get("relationship_attributes") or {})
            else:
                obj.people.pop(person.cio_id, None)

    def _person_relationships(self, op: Op) -> None:
        adding = op["action"] == "add_relationships"
        person = self._find_or_create(op["identifiers"]) if adding else self._find(op["identifiers"])
        if person is None:
            self._ignore(op, "no such person")
            return
        self._relate_objects(person, op["cio_relationships"], add=adding)

    def _object_op(self, op: Op) -> None:
        action: str = op["action"]
        key = (op["identifiers"]["object_type_id"], op["identifiers"]["object_id"])
        if action == "delete":
            if self._objects.pop(key, None) is None:
                self._ignore(op, "no such object")
            return
        if action == "delete_relationships" and key not in self._objects:
            self._ignore(op, "no such object")
            return
        obj = self._object(op["identifiers"])
        _merge_attributes(obj.attributes, op.get("attributes") or {})
        for relationship in op.get("cio_relationships") or []:
            identifiers: dict[str, str] = relationship["identifiers"]
            anonymous_id = identifiers.get("anonymous_id")
            person = None
            if anonymous_id is not None and anonymous_id in self._links:
                person = self._people[self._links[anonymous_id]]
            elif anonymous_id is None:
                deleting = action == "delete_relationships"
                person = self._find(identifiers) if deleting else self._find_or_create(identifiers)
                if person is None:
                    self._ignore({**op, "cio_relationships": [relationship]}, "no such person")
                    continue
            related = obj.people if person is not None else obj.anonymous
            member = person.cio_id if person is not None else str(anonymous_id)
            if action == "delete_relationships":
                related.pop(member, None)
            else:
                attributes = related.setdefault(member, {})
                _merge_attributes(attributes, relationship.get("relationship_attributes") or {})

    def _delivery(self, op: Op) -> None:
        """A delivery metric: a v2 delivery op, or (``action: metrics``) a ``POST /api/v1/metrics`` body."""
        if op["action"] == "metrics":
            record = {"delivery_id": op["delivery_id"], "metric": op["metric"], "timestamp": op.get("timestamp"),
                      "attributes": {k: _copy(v) for k, v in op.items() if k in ("recipient", "reason", "href",
                                                                                   "metadata")}}
        else:
            record = {"delivery_id": op["identifiers"]["id"], "metric": op["name"], "timestamp": op.get("timestamp"),
                      "attributes": _copy(op.get("attributes") or {})}
        self._deliveries.append(record)

    _APPLY: dict[tuple[str, str], Callable[[State, Op], None]] = {
        ("person", "identify"): _identify,
        ("person", "event"): _event,
        ("person", "page"): _event,
        ("person", "screen"): _event,
        ("person", "viewed_content"): _event,
        ("person", "clicked_content"): _event,
        ("person", "add_device"): _add_device,
        ("person", "delete_device"): _delete_device,
        ("person", "delete"): _delete,
        ("person", "suppress"): _suppress,
        ("person", "unsuppress"): _suppress,
        ("person", "merge"): _merge,
        ("person", "add_relationships"): _person_relationships,
        ("person", "delete_relationships"): _person_relationships,
        ("object", "identify"): _object_op,
        ("object", "identify_anonymous"): _object_op,
        ("object", "delete"): _object_op,
        ("object", "add_relationships"): _object_op,
        ("object", "delete_relationships"): _object_op,
    }

    # -- reading

    @property
    def duplicates(self) -> int:
        """How many events were ignored because their ``id`` had been seen before."""
        with self._lock:
            return self._duplicates

    @property
    def merges(self) -> list[dict[str, Any]]:
        with self._lock:
            merges: list[dict[str, Any]] = _copy(self._merges)
            return merges

    def person(self, identifier: str) -> dict[str, Any] | None:
        """The person whose id, email, cio_id (with or without ``cio_``) or phone is ``identifier``."""
        with self._lock:
            for key in ("id", "email", "cio_id", "phone"):
                person = self._find({key: identifier})
                if person is not None:
                    return self._export_person(person, self._relationships_by_person())
            if identifier.startswith("cio_"):
                person = self._find({"cio_id": identifier[4:]})
                if person is not None:
                    return self._export_person(person, self._relationships_by_person())
            return None

    def people(self) -> list[dict[str, Any]]:
        """Every person, in the order they were created."""
        with self._lock:
            relationships = self._relationships_by_person()
            return [self._export_person(p, relationships) for p in self._people.values()]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every event, page and screen view kept (people's and anonymous), in arrival order.

        Each has ``person`` (the person's display key, or None while anonymous) besides its own fields.
        """
        with self._lock:
            owned: list[tuple[_Event, str | None]] = [
                (e, p.key) for p in self._people.values() for e in p.events
            ]
            owned += [(e, None) for events in self._anonymous.values() for e in events]
            owned.sort(key=lambda pair: pair[0].seq)
            return [{**e.export(), "person": key} for e, key in owned if name is None or e.name == name]

    def object(self, object_type_id: str, object_id: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get((object_type_id, object_id))
            return None if obj is None else self._export_object(obj)

    def snapshot(self) -> dict[str, Any]:
        """The whole workspace as JSON-able data (what ``GET /_state`` answers)."""
        with self._lock:
            relationships = self._relationships_by_person()
            return {
                "people": [self._export_person(p, relationships) for p in self._people.values()],
                "anonymous_events": {
                    aid: [e.export() for e in events] for aid, events in self._anonymous.items()
                },
                "objects": [self._export_object(obj) for obj in self._objects.values()],
                "merges": _copy(self._merges),
                "deliveries": _copy(self._deliveries),
                "duplicates": self._duplicates,
                "ignored": _copy(self._ignored),
                "pipelines": {
                    "messages": _copy(self._pipelines),
                    "duplicates": self._pipelines_duplicates,
                    "ignored": _copy(self._pipelines_ignored),
                },
            }

    def _relationships_by_person(self) -> dict[str, list[dict[str, Any]]]:
        by_person: dict[str, list[dict[str, Any]]] = {}
        for obj in self._objects.values():
            for cio_id, attributes in obj.people.items():
                related = {"object_type_id": obj.type_id, "object_id": obj.object_id}
                by_person.setdefault(cio_id, []).append({**related, "attributes": _copy(attributes)})
        return by_person

    def _export_person(self, person: _Person, relationships: Mapping[str, list[Any]]) -> dict[str, Any]:
        return {
            "cio_id": person.cio_id,
            "id": person.id,
            "email": person.email,
            "phone": person.phone,
            "attributes": _copy(person.attributes),
            "devices": _copy(person.devices),
            "events": [e.export() for e in person.events],
            "suppressed": person.suppressed,
            "anonymous_ids": list(person.anonymous_ids),
            "timestamp": person.timestamp,
            "relationships": relationships.get(person.cio_id, []),
        }

    def _export_object(self, obj: _Object) -> dict[str, Any]:
        return {
            "object_type_id": obj.type_id,
            "object_id": obj.object_id,
            "attributes": _copy(obj.attributes),
            "relationships": {self._people[c].key: _copy(a) for c, a in obj.people.items()},
            "anonymous_relationships": _copy(obj.anonymous),
        }
