"""The peers' own test cases, run through this client: every difference is deliberate, and mapping.md says why.

``../shared/reference/peer-cases/`` holds the test cases of Segment's Customer.io (Actions) destination and of
RudderStack's Customer.io destination: a raw Segment message in, the exact Customer.io requests out. Each input
goes through the importer's raw-message path (``message_for``, then the client's queue) with the case's client
options, against the local Customer.io; what reached it is compared with what the peer sends.

Before comparing, what is only a matter of form is normalised: key order, ``2`` vs ``2.0``, an empty
``attributes``/``data`` object vs none, a DELETE's ``null`` body vs none. Then each deliberate difference is
taken out by a :class:`Rule` that names the sentence of ``mapping.md`` that chooses it (the sentence must be in
mapping.md, or the rule fails). A case matches when nothing but form differs, is deliberately different when
rules were needed, and is unexplained otherwise: an unexplained case fails, showing both sides.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from analytics_cio._ulid import is_ulid
from analytics_cio._values import stringify, timestamp_value
from analytics_cio.testing._server import LocalCustomerIO

from .conftest import Errors
from .peer_cases import load_cases, make_case_client, run_message, shared_dir

EVENT_ACTIONS = ("event", "page", "screen", "viewed_content", "clicked_content")
HELPER_TRAITS = ("objectId", "object_id", "objectTypeId", "object_type_id", "relationshipAttributes",
                 "relationship_attributes")
Entry = dict[str, Any]


# -- what one message gave, on both sides --------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """One message of a case: the peer's requests (``expected``) and ours (``actual``), being reconciled."""

    input: dict[str, Any]
    expected: list[Entry]
    actual: list[Entry]
    problems: list[str]
    expected_error: str | None
    client: dict[str, Any]


def payload(entry: Entry) -> dict[str, Any]:
    """The op (v2) or the body (v1) of an entry; {} when there is none."""
    value = entry.get("op") if entry["api"] == "v2" else entry.get("body")
    return value if isinstance(value, dict) else {}


def is_event(entry: Entry) -> bool:
    if entry["api"] == "v2":
        return payload(entry).get("action") in EVENT_ACTIONS
    return entry.get("method") == "POST" and str(entry.get("path", "")).endswith("/events")


def is_identify(entry: Entry) -> bool:
    if entry["api"] == "v2":
        return payload(entry).get("type") == "person" and payload(entry).get("action") == "identify"
    return entry.get("method") == "PUT" and re.fullmatch(r"/api/v1/customers/[^/]+", entry.get("path", "")) is not None


def is_device(entry: Entry) -> bool:
    if entry["api"] == "v2":
        return payload(entry).get("action") == "add_device"
    return entry.get("method") == "PUT" and str(entry.get("path", "")).endswith("/devices")


def data_of(entry: Entry) -> dict[str, Any] | None:
    """An event's data (v2 ``attributes``, v1 ``data``), an identify's or object's attributes."""
    body = payload(entry)
    if entry["api"] == "v1" and is_identify(entry):
        return body
    value = body.get("data" if entry["api"] == "v1" else "attributes")
    return value if isinstance(value, dict) else None


def device_of(entry: Entry) -> dict[str, Any]:
    device = payload(entry).get("device")
    return device if isinstance(device, dict) else {}


def is_anonymous(entry: Entry) -> bool:
    if entry["api"] == "v1":
        return entry.get("path") == "/api/v1/events"
    return "anonymous_id" in (payload(entry).get("identifiers") or {})


def person_named(entry: Entry) -> str | None:
    """The person an entry addresses (v1: the path's identifier, v2: the identifier's value)."""
    if entry["api"] == "v1":
        match = re.match(r"/api/v1/customers/([^/]+)", entry.get("path", ""))
        return unquote(match.group(1)) if match else None
    identifiers = payload(entry).get("identifiers") or {}
    return str(next(iter(identifiers.values()))) if len(identifiers) == 1 else None


def normalise(value: Any) -> Any:
    """The same JSON, minus what is only form: 2.0 is 2; an empty attributes/data object or a null body is none."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        out = {k: normalise(v) for k, v in value.items()}
        for key in ("attributes", "data", "body"):
            if key in out and out[key] in ({}, None):
                del out[key]
        return out
    return value


def unix_of(text: Any) -> int | None:
    """What a peer's date string is in Unix seconds (None when it is not one)."""
    if not isinstance(text, str):
        return None
    converted = timestamp_value(text)
    return converted if isinstance(converted, int) and not isinstance(converted, bool) else None


def _walk_pairs(expected: Any, actual: Any) -> Iterator[tuple[dict[str, Any], str, Any, Any]]:
    """(expected dict, key, expected value, actual value) for every key both sides' dicts hold, recursively."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected):
            if key in actual:
                yield expected, key, expected[key], actual[key]
                yield from _walk_pairs(expected[key], actual[key])
    elif isinstance(expected, list) and isinstance(actual, list):
        for e, a in zip(expected, actual):
            yield from _walk_pairs(e, a)


# -- the deliberate differences ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """A difference mapping.md chooses: ``sentence`` is quoted from it; ``apply`` takes the difference out of an
    outcome (changing either side) and says whether it found any."""

    name: str
    sentence: str
    apply: Callable[[Outcome], bool]


def _pairs(o: Outcome, which: Callable[[Entry], bool]) -> Iterator[tuple[Entry, Entry]]:
    for e, a in zip(o.expected, o.actual):
        if which(e) and which(a):
            yield e, a


def refused_timestamp(o: Outcome) -> bool:
    if o.actual or not o.expected or not any("is not an ISO-8601 date-time" in p for p in o.problems):
        return False
    o.expected = []
    return True


def unnamed_page(o: Outcome) -> bool:
    if o.actual or not o.expected or not any("a page view needs a name" in p for p in o.problems):
        return False
    o.expected = []
    return True


def _user_id(o: Outcome) -> Any:
    return o.input.get("userId") or o.input.get("user_id")


def context_traits_person(o: Outcome) -> bool:
    """No userId: the peer addresses the person found in context.traits; this client sends anonymously (and,
    with no person, adds no device: the event goes instead)."""
    traits = (o.input.get("context") or {}).get("traits")
    if _user_id(o) or not isinstance(traits, dict):
        return False
    known = {str(v) for k, v in traits.items() if k in ("email", "userId", "id") and v}
    if not known or not any(person_named(e) in known for e in o.expected):
        return False
    if not o.actual and any("either user_id or anonymous_id is required" in p for p in o.problems):
        o.expected = []  # nothing to send it under: refused at the call
        return True
    found = False
    for index, (e, a) in enumerate(zip(list(o.expected), o.actual)):
        if person_named(e) not in known or not (is_anonymous(a) and is_event(a)):
            continue
        if is_event(e) and e["api"] == "v1":
            e["path"] = a["path"]
            payload(e)["anonymous_id"] = payload(a)["anonymous_id"]
        elif is_event(e):
            payload(e)["identifiers"] = payload(a)["identifiers"]
        else:  # a device op: no person to add it to, the event goes
            o.expected[index] = copy.deepcopy(a)
        found = True
    return found


def token_without_person(o: Outcome) -> bool:
    """A device token but no userId: the peer reports an error; this client sends the event anonymously."""
    token = ((o.input.get("context") or {}).get("device") or {}).get("token")
    if _user_id(o) or not token or o.expected or not o.expected_error:
        return False
    if not o.actual or not all(is_anonymous(a) and payload(a).get("name") == o.input.get("event") for a in o.actual):
        return False
    o.expected = copy.deepcopy(o.actual)
    return True


def unknown_platform(o: Outcome) -> bool:
    found = False
    for index, entry in enumerate(list(o.expected)):
        if is_device(entry) and device_of(entry).get("platform") not in ("ios", "android"):
            if not any("context.device.type" in p for p in o.problems):
                continue
            events = [a for a in o.actual if is_event(a) and payload(a).get("name") == o.input.get("event")]
            o.expected[index:index + 1] = copy.deepcopy(events)
            found = True
    return found


_DEVICE_FIELDS = ("id", "token", "platform", "last_used", "attributes")


def device_attributes(o: Outcome) -> bool:
    """The peer puts properties beside the device's fields (RudderStack v1) or keeps their types; this client
    stringifies them under ``device.attributes``, after the documented context attributes."""
    found = False
    for e, a in _pairs(o, is_device):
        expected, actual = device_of(e), device_of(a)
        attributes = {k: v for k, v in expected.items() if k not in _DEVICE_FIELDS}
        attributes.update(expected.get("attributes") or {})
        converted = {k: stringify(v, o.client.get("convert_timestamps", True)) for k, v in attributes.items()}
        ours = actual.get("attributes") or {}
        context_keys = ("device_os", "device_model", "app_version", "device_locale")
        if any(k not in context_keys and ours.get(k) != v for k, v in converted.items()):
            continue
        new = {k: v for k, v in expected.items() if k in _DEVICE_FIELDS and k != "attributes"}
        if ours:
            new["attributes"] = dict(ours)
        if new != expected:
            expected.clear()
            expected.update(new)
            found = True
    return found


def _replace_identifiers(e_ids: Any, a_ids: Any, same: Callable[[str, Any, str, Any], bool]) -> bool:
    if not (isinstance(e_ids, dict) and isinstance(a_ids, dict) and len(e_ids) == len(a_ids) == 1):
        return False
    ((ek, ev),), ((ak, av),) = e_ids.items(), a_ids.items()
    if (ek, ev) != (ak, av) and same(ek, ev, ak, av):
        e_ids.clear()
        e_ids.update(a_ids)
        return True
    return False


def _identifier_rule(same: Callable[[str, Any, str, Any], bool]) -> Callable[[Outcome], bool]:
    def apply(o: Outcome) -> bool:
        found = False
        for e, a in zip(o.expected, o.actual):
            pe, pa = payload(e), payload(a)
            for key in ("identifiers", "primary", "secondary"):
                found |= _replace_identifiers(pe.get(key), pa.get(key), same)
            for re_, ra in zip(pe.get("cio_relationships") or [], pa.get("cio_relationships") or []):
                found |= _replace_identifiers(re_.get("identifiers"), ra.get("identifiers"), same)
        return found

    return apply


def screen_name(o: Outcome) -> bool:
    if o.input.get("type") != "screen" or o.input.get("name"):
        return False
    found = False
    for e, a in zip(o.expected, o.actual):
        pe, pa = payload(e), payload(a)
        if pa.get("name") == "Viewed Undefined Screen" and pe.get("name") != pa.get("name"):
            pe["name"] = pa["name"]
            if e["api"] == "v2":
                pe["action"] = pa["action"]
            found = True
    return found


def nested_traits(o: Outcome) -> bool:
    found = False
    for e, a in _pairs(o, is_identify):
        expected, actual = data_of(e), data_of(a)
        if expected is None or actual is None:
            continue
        for key, value in actual.items():
            if isinstance(value, dict) and key not in expected and value and all(
                expected.get(k) == v for k, v in value.items()
            ):
                for k in value:
                    del expected[k]
                expected[key] = value
                found = True
    return found


def traits_kept(o: Outcome) -> bool:
    traits = o.input.get("traits") or {}
    found = False
    for e, a in _pairs(o, is_identify):
        expected, actual = data_of(e), data_of(a)
        if expected is None or actual is None:
            continue
        for key, value in actual.items():
            if key not in expected and key in traits and traits[key] == value and not isinstance(value, dict):
                expected[key] = value
                found = True
    return found


def anonymous_id_attribute(o: Outcome) -> bool:
    found = False
    for e, a in zip(o.expected, o.actual):
        expected, actual = data_of(e), data_of(a)
        if is_identify(e) or expected is None or "anonymous_id" not in expected:
            continue
        if expected["anonymous_id"] == o.input.get("anonymousId") and "anonymous_id" not in (actual or {}):
            del expected["anonymous_id"]
            found = True
    return found


def helper_traits(o: Outcome) -> bool:
    found = False
    for e, a in _pairs(o, is_identify):
        expected = data_of(e)
        if expected is not None and payload(a).get("cio_relationships"):
            for key in HELPER_TRAITS:
                if key in expected:
                    del expected[key]
                    found = True
    return found


def created_at_unix(o: Outcome) -> bool:
    found = False
    for e, a in _pairs(o, is_identify):
        expected, actual = data_of(e), data_of(a)
        if expected is None or actual is None or "created_at" not in expected:
            continue
        value = expected["created_at"]
        if isinstance(value, str) and "created_at" in actual and actual["created_at"] == unix_of(value):
            expected["created_at"] = actual["created_at"]
            found = True
    return found


def unreadable_created_at(o: Outcome) -> bool:
    found = False
    for e, a in _pairs(o, is_identify):
        expected, actual = data_of(e), data_of(a)
        if (expected is not None and "created_at" in expected and "created_at" not in (actual or {})
                and unix_of(expected["created_at"]) is None):
            del expected["created_at"]
            found = True
    return found


def timestamp_field(o: Outcome) -> bool:
    """RudderStack's v2 identify carries v1's ``_timestamp`` among the attributes; v2's is the op's timestamp."""
    found = False
    for e, a in _pairs(o, is_identify):
        expected = data_of(e)
        if (e["api"] == "v2" and expected is not None and "_timestamp" in expected
                and expected["_timestamp"] == payload(a).get("timestamp")):
            payload(e)["timestamp"] = expected.pop("_timestamp")
            found = True
    return found


def date_time_strings(o: Outcome) -> bool:
    found = False
    for e, a in zip(o.expected, o.actual):
        for parent, key, ev, av in list(_walk_pairs(data_of(e), data_of(a))):
            if isinstance(ev, str) and isinstance(av, int) and unix_of(ev) == av and "T" in ev:
                parent[key] = av  # a date-time string: Unix seconds here
                found = True
            elif isinstance(ev, int) and isinstance(av, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", av) and (
                unix_of(av) == ev
            ):
                parent[key] = av  # a date without a time: left alone here
                found = True
    return found


def last_used_unix(o: Outcome) -> bool:
    found = False
    for e, a in _pairs(o, is_device):
        value = device_of(e).get("last_used")
        if isinstance(value, str) and unix_of(value) is not None and unix_of(value) == device_of(a).get("last_used"):
            device_of(e)["last_used"] = device_of(a)["last_used"]
            found = True
    return found


def content_person(o: Outcome) -> bool:
    found = False
    for e, a in zip(o.expected, o.actual):
        pe, pa = payload(e), payload(a)
        anonymous = {"anonymous_id": o.input.get("anonymousId")}
        if (pe.get("action") in ("viewed_content", "clicked_content") and _user_id(o)
                and pe.get("identifiers") == anonymous and "anonymous_id" not in (pa.get("identifiers") or {})):
            pe["identifiers"] = pa.get("identifiers")
            found = True
    return found


def event_id(o: Outcome) -> bool:
    found = False
    for e, a in zip(o.expected, o.actual):
        if is_event(a) and is_ulid(payload(a).get("id")):
            payload(a).pop("id")
            payload(e).pop("id", None)
            found = True
    return found


def timestamp_sent(o: Outcome) -> bool:
    found = False
    for e, a in zip(o.expected, o.actual):
        pe, pa = payload(e), payload(a)
        for key in ("timestamp", "_timestamp"):
            if key in pa and key not in pe and not (key == "timestamp" and "_timestamp" in pe):
                del pa[key]
                found = True
    return found


def name_cut(o: Outcome) -> bool:
    found = False
    for e, a in _pairs(o, is_event):
        expected, actual = payload(e).get("name"), payload(a).get("name")
        if (isinstance(expected, str) and isinstance(actual, str) and len(expected.encode()) > 100
                and expected.encode()[:100].decode("utf-8", "ignore") == actual):
            payload(e)["name"] = actual
            found = True
    return found


RULES = (
    Rule("an unreadable timestamp refuses the message", "is refused with the reason (the importer names the "
         "line); it is never sent as a string", refused_timestamp),
    Rule("a page view without a name is not sent", "With none of these the message cannot be mapped: not sent, "
         "reported to `on_error`.", unnamed_page),
    Rule("no person from context.traits", "events without `userId` go out anonymously (never to an email found "
         "in `context.traits`)", context_traits_person),
    Rule("a device token without a person", "A token but no identified person: an ordinary anonymous event and "
         "a warning", token_without_person),
    Rule("only ios and android devices", "any other platform (or none) → the device op is not\n    sent and "
         "`on_error` receives it as unmappable, naming `context.device.type`; the event itself still goes.",
         unknown_platform),
    Rule("device attributes", "device attributes stringified under `device.attributes`", device_attributes),
    Rule("cio_ ids", "`cio_` ids → `cio_id`", _identifier_rule(
        lambda ek, ev, ak, av: ek == "id" and ak == "cio_id" and ev == f"cio_{av}")),
    Rule("ids are strings", "Ids are strings on the wire (numbers are stringified, as analytics-python does)",
         _identifier_rule(lambda ek, ev, ak, av: ek == ak and isinstance(ev, int) and str(ev) == av)),
    Rule("unnamed screens", "`Viewed Undefined Screen` when unnamed), activity type `event`", screen_name),
    Rule("event names are cut", "Event names longer than Customer.io's 100 bytes are cut at a UTF-8 character "
         "boundary", name_cut),
    Rule("nested traits", "nested traits stay nested", nested_traits),
    Rule("every trait is an attribute", "attributes = traits (cleaned)", traits_kept),
    Rule("no anonymous_id in event or object attributes", "no `anonymous_id` copied into event or object "
         "attributes", anonymous_id_attribute),
    Rule("relationship helper traits", "These helper traits are not person attributes.", helper_traits),
    Rule("created_at in Unix seconds", "`created_at` is always Unix seconds.", created_at_unix),
    Rule("created_at that is not a time", "`created_at` that is empty, null or cannot be read as a time is not "
         "sent as `created_at`", unreadable_created_at),
    Rule("v2 identify timestamp", "v2 `{type: person, action: identify, identifiers, attributes, timestamp}`",
         timestamp_field),
    Rule("date-time strings", "date-time strings → Unix seconds (date-only left alone)", date_time_strings),
    Rule("last_used in Unix seconds", "`last_used` = the message timestamp (Unix s)", last_used_unix),
    Rule("the person of a content event", "For every person op, first match wins:", content_person),
    Rule("event ids", "event `id` = the message's ULID and a timestamp always sent", event_id),
    Rule("timestamps always sent", "event `id` = the message's ULID and a timestamp always sent", timestamp_sent),
)


# -- running a case ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Verdict:
    case: str
    rules: list[Rule]
    unexplained: list[str]

    @property
    def kind(self) -> str:
        return "unexplained" if self.unexplained else "different" if self.rules else "matched"


def judge(server: LocalCustomerIO, case: dict[str, Any]) -> Verdict:
    server.reset()
    errors = Errors()
    client = make_case_client(server, errors, case)
    used: list[Rule] = []
    unexplained: list[str] = []
    try:
        for index, message in enumerate(case["messages"]):
            actual, problems = run_message(server, client, errors, message["input"])
            outcome = Outcome(message["input"], normalise(copy.deepcopy(message.get("expected") or [])),
                              normalise(actual), problems, message.get("expected_error"), case["client"])
            if outcome.expected_error and not outcome.expected and not outcome.actual:
                if not problems:
                    unexplained.append(f"message {index}: the peer refuses it ({outcome.expected_error}); "
                                       "this client sent nothing and reported nothing")
                continue
            for rule in RULES:
                if rule.apply(outcome):
                    outcome.expected, outcome.actual = normalise(outcome.expected), normalise(outcome.actual)
                    if rule not in used:
                        used.append(rule)
            if outcome.expected != outcome.actual:
                unexplained.append(
                    f"message {index}:\n  peer: {json.dumps(outcome.expected, sort_keys=True)}\n"
                    f"  ours: {json.dumps(outcome.actual, sort_keys=True)}\n  problems: {problems}"
                )
    finally:
        client.shutdown(timeout=2)
    return Verdict(case["id"], used, unexplained)


CASES = load_cases()


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCustomerIO]:
    with LocalCustomerIO() as server:
        yield server


@pytest.fixture(scope="module")
def mapping_md() -> str:
    return (shared_dir() / "spec" / "mapping.md").read_text(encoding="utf-8")


def test_every_rule_quotes_mapping_md(mapping_md: str) -> None:
    flat = " ".join(mapping_md.split())
    for rule in RULES:
        assert " ".join(rule.sentence.split()) in flat, f"{rule.name}: mapping.md does not say {rule.sentence!r}"


@pytest.mark.parametrize("case", CASES or [None], ids=[c["id"] for c in CASES] or ["no-shared-data"])
def test_peer_case(case: dict[str, Any] | None, local: LocalCustomerIO) -> None:
    shared_dir()
    assert case is not None
    verdict = judge(local, case)
    assert not verdict.unexplained, f"{case['id']} differs with no reason in mapping.md:\n" + "\n".join(
        verdict.unexplained
    )


def test_tally(local: LocalCustomerIO, capsys: pytest.CaptureFixture[str]) -> None:
    """Every case, counted: matched, deliberately different (with the rules), unexplained (must be none)."""
    shared = shared_dir()
    files = sorted(p.name for p in (shared / "reference" / "peer-cases").glob("*.json") if "skipped" not in p.name)
    assert files == ["rudder.json", "segment_actions.json"], "a peer-case file this test does not read"
    verdicts = [judge(local, case) for case in CASES]
    counts = {kind: sum(v.kind == kind for v in verdicts) for kind in ("matched", "different", "unexplained")}
    by_rule: dict[str, int] = {}
    for verdict in verdicts:
        for rule in verdict.rules:
            by_rule[rule.name] = by_rule.get(rule.name, 0) + 1
    with capsys.disabled():
        print(f"\npeer cases: {len(verdicts)}: {counts['matched']} matched, {counts['different']} deliberately "
              f"different, {counts['unexplained']} unexplained")
        for name, number in sorted(by_rule.items(), key=lambda item: -item[1]):
            print(f"  {number:4}  {name}")
    assert len(verdicts) == 154
    assert counts["unexplained"] == 0, [v.case for v in verdicts if v.unexplained]


def test_missing_shared_data_skips_or_fails_as_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYTICS_CIO_SHARED", str(tmp_path))
    monkeypatch.delenv("ANALYTICS_CIO_REQUIRE_SHARED", raising=False)
    with pytest.raises(pytest.skip.Exception, match="ANALYTICS_CIO_SHARED"):
        shared_dir()
    monkeypatch.setenv("ANALYTICS_CIO_REQUIRE_SHARED", "1")
    with pytest.raises(pytest.fail.Exception, match="requires it"):
        shared_dir()


def test_the_dates_the_rules_compare_are_read_as_this_client_reads_them() -> None:
    assert unix_of("2025-01-15T10:20:30.456Z") == 1736936430
    assert unix_of("1736936430") == 1736936430
    assert unix_of("2019-02-01") == int(dt.datetime(2019, 2, 1, tzinfo=dt.timezone.utc).timestamp())
    assert unix_of("not a date") is None
