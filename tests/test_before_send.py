"""``before_send``: scrub, sample or enrich each message on the caller's thread; its mistakes cost no message."""

from __future__ import annotations

import logging
import threading
import zlib
from typing import Any, Callable

import pytest

import analytics_cio
from analytics_cio import ArgumentError, Client
from analytics_cio.testing._server import LocalCustomerIO

from .conftest import API_KEY, SITE_ID, Errors

MakeClient = Callable[..., Client]


def scrub(message: dict[str, Any]) -> dict[str, Any]:
    message["traits"].pop("ssn", None)
    message["context"].pop("ip", None)
    return message


def test_pii_is_scrubbed_before_it_reaches_customerio(make_client: MakeClient, server: LocalCustomerIO,
                                                      errors: Errors) -> None:
    client = make_client(before_send=scrub)
    ok, message = client.identify("u1", {"email": "u1@example.com", "ssn": "078-05-1120"}, {"ip": "10.1.2.3"})
    assert ok and "ssn" not in message["traits"] and "ip" not in message["context"]
    assert client.flush(5)
    person = server.state.person("u1")
    assert person is not None and person["attributes"] == {"email": "u1@example.com"}
    assert b"078-05-1120" not in b"".join(r.body for r in server.requests)
    assert b"10.1.2.3" not in b"".join(r.body for r in server.requests)
    assert errors == []


def test_a_new_dict_enriches_the_message(make_client: MakeClient, server: LocalCustomerIO) -> None:
    def enrich(message: dict[str, Any]) -> dict[str, Any]:
        return {**message, "properties": {**message["properties"], "region": "eu-west-1"}}

    client = make_client(before_send=enrich)
    ok, message = client.track("u1", "Deployed", {"service": "api"})
    assert ok and message["properties"] == {"service": "api", "region": "eu-west-1"}
    assert client.flush(5)
    [event] = server.state.events("Deployed")
    assert event["data"] == {"service": "api", "region": "eu-west-1"}


def test_sampling_drops_are_counted_not_reported(make_client: MakeClient, server: LocalCustomerIO,
                                                 errors: Errors) -> None:
    def sample(message: dict[str, Any]) -> dict[str, Any] | None:
        return message if zlib.crc32(message["userId"].encode()) % 2 == 0 else None

    client = make_client(before_send=sample)
    users = [f"user-{n}" for n in range(40)]
    results = [client.track(user, "Viewed") for user in users]
    kept = [u for u in users if zlib.crc32(u.encode()) % 2 == 0]
    assert 0 < len(kept) < 40
    assert all(ok for ok, _ in results)  # a drop on purpose is not a failure
    assert client.before_send_dropped == 40 - len(kept)
    assert client.flush(5)
    assert sorted(e["person"] for e in server.state.events("Viewed")) == sorted(kept)
    assert errors == []


def test_dropped_count_is_read_only(make_client: MakeClient) -> None:
    client = make_client(before_send=lambda m: None)
    client.track("u1", "A")
    assert client.before_send_dropped == 1
    with pytest.raises(AttributeError):
        client.before_send_dropped = 0  # type: ignore[misc]
    assert make_client().before_send_dropped == 0


def test_a_raising_hook_keeps_the_message_and_logs_once(make_client: MakeClient, server: LocalCustomerIO,
                                                        errors: Errors, caplog: pytest.LogCaptureFixture) -> None:
    def broken(message: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("traits")

    client = make_client(before_send=broken)
    with caplog.at_level(logging.ERROR, logger="analytics_cio"):
        for n in range(3):
            ok, message = client.identify(f"u{n}", {"plan": "pro"})
            assert ok and message["traits"] == {"plan": "pro"}
    assert client.flush(5)
    assert [p["id"] for p in server.state.people()] == ["u0", "u1", "u2"]
    logged = [r for r in caplog.records if "before_send" in r.getMessage()]
    assert len(logged) == 1
    assert "KeyError" in logged[0].getMessage() and "sent as built" in logged[0].getMessage()
    assert errors == [] and client.before_send_dropped == 0


def test_changes_made_in_place_before_raising_stay(make_client: MakeClient, server: LocalCustomerIO) -> None:
    def half_done(message: dict[str, Any]) -> dict[str, Any]:
        message["traits"].pop("ssn")
        raise RuntimeError("failed after scrubbing one field")

    client = make_client(before_send=half_done)
    ok, message = client.identify("u1", {"ssn": "078-05-1120", "plan": "pro"})
    assert ok and message["traits"] == {"plan": "pro"}
    assert client.flush(5)
    person = server.state.person("u1")
    assert person is not None and person["attributes"] == {"plan": "pro"}


def test_each_kind_of_error_is_logged_once(make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    problems = [ValueError("a"), TypeError("b"), ValueError("c"), TypeError("d")]

    def broken(message: dict[str, Any]) -> dict[str, Any]:
        raise problems.pop(0)

    client = make_client(before_send=broken, send=False)
    with caplog.at_level(logging.ERROR, logger="analytics_cio"):
        for _ in range(4):
            client.track("u1", "A")
    logged = [r.getMessage() for r in caplog.records if "before_send" in r.getMessage()]
    assert len(logged) == 2 and "ValueError: a" in logged[0] and "TypeError: b" in logged[1]


def test_the_log_never_shows_the_credentials(make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    def broken(message: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("scrubber failed")

    client = make_client(before_send=broken)
    with caplog.at_level(logging.DEBUG, logger="analytics_cio"):
        client.track("u1", "A")
        client.flush(5)
    assert API_KEY not in caplog.text and SITE_ID not in caplog.text


@pytest.mark.parametrize("garbage", ["a string", 42, ["a", "list"], True])
def test_a_hook_returning_garbage_keeps_the_message(garbage: Any, make_client: MakeClient, server: LocalCustomerIO,
                                                    errors: Errors, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(before_send=lambda m: garbage)
    with caplog.at_level(logging.ERROR, logger="analytics_cio"):
        ok, message = client.track("u1", "Kept", {"n": 1})
    assert ok and message["event"] == "Kept"
    assert client.flush(5)
    assert [e["name"] for e in server.state.events()] == ["Kept"]
    [line] = [r.getMessage() for r in caplog.records if "before_send" in r.getMessage()]
    assert f"must return a message dict or None, not {type(garbage).__name__}" in line
    assert errors == []


@pytest.mark.parametrize(("change", "field"), [
    (lambda m: {**m, "userId": ["u1"]}, "'userId' must be a string or a number, not list"),
    (lambda m: {**m, "event": ""}, "'event' must not be empty"),
    (lambda m: {k: v for k, v in m.items() if k != "event"}, "'event' is required"),
    (lambda m: {**m, "properties": "secret"}, "'properties' must be a dict, not str"),
    (lambda m: {**m, "type": "identify"}, "'type' is not 'track'"),
    (lambda m: {**m, "messageId": None}, "'messageId' is not a non-empty string"),
    (lambda m: {**m, "timestamp": 1700000000}, "'timestamp' must be a datetime, not int"),
    (lambda m: {k: v for k, v in m.items() if k != "timestamp"}, "without a 'timestamp'"),
])
def test_a_broken_message_is_named_by_its_field_and_the_original_is_sent(
        change: Callable[[dict[str, Any]], Any], field: str, make_client: MakeClient, server: LocalCustomerIO,
        caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(before_send=change)
    with caplog.at_level(logging.ERROR, logger="analytics_cio"):
        ok, message = client.track("u1", "Original", {"n": 1})
    assert ok and message["event"] == "Original" and message["properties"] == {"n": 1}
    assert client.flush(5)
    assert [e["name"] for e in server.state.events()] == ["Original"]
    [line] = [r.getMessage() for r in caplog.records if "before_send" in r.getMessage()]
    assert f"before_send: returned a message whose {field}" in line or f"before_send: returned a message {field}" \
        in line, line


def test_what_the_hook_returns_is_normalised_and_snapshotted(make_client: MakeClient, server: LocalCustomerIO) -> None:
    shared = {"tier": "gold"}

    def enrich(message: dict[str, Any]) -> dict[str, Any]:
        message["userId"] = 42
        message["context"] = None
        message["properties"] = shared
        return message

    client = make_client(before_send=enrich)
    ok, message = client.track("u1", "Paid")
    shared["tier"] = "changed after the call"
    assert ok and message["userId"] == "42" and message["context"] == {} and message["properties"] == {"tier": "gold"}
    assert client.flush(5)
    [event] = server.state.events("Paid")
    assert event["person"] == "42" and event["data"] == {"tier": "gold"}


def test_a_message_that_contains_itself_is_refused(make_client: MakeClient, server: LocalCustomerIO) -> None:
    def cycle(message: dict[str, Any]) -> dict[str, Any]:
        message = dict(message)
        message["properties"] = {"self": message}
        return message

    client = make_client(before_send=cycle)
    ok, message = client.track("u1", "Cycled", {"n": 1})
    assert ok and message["properties"] == {"n": 1}
    assert client.flush(5)
    assert [e["data"] for e in server.state.events("Cycled")] == [{"n": 1}]


def test_the_hook_can_turn_customerio_off_for_a_message(make_client: MakeClient, server: LocalCustomerIO) -> None:
    client = make_client(before_send=lambda m: {**m, "integrations": {"Customer.io": False}})
    assert client.track("u1", "Internal")[0]
    assert client.flush(5)
    assert server.state.events() == []


def test_the_hook_runs_on_the_callers_thread(make_client: MakeClient) -> None:
    threads: list[int] = []
    client = make_client(before_send=lambda m: threads.append(threading.get_ident()) or m, send=False)
    client.track("u1", "A")
    worker = threading.Thread(target=client.track, args=("u1", "B"))
    worker.start()
    worker.join()
    assert threads == [threading.get_ident(), worker.ident]


def test_a_call_from_inside_the_hook_is_sent_unhooked(make_client: MakeClient, server: LocalCustomerIO) -> None:
    hooked: list[str] = []
    holder: list[Client] = []

    def audit(message: dict[str, Any]) -> dict[str, Any]:
        hooked.append(message["event"])
        if message["event"] == "Deleted Account":
            holder[0].track("auditor", "Audit Log", {"of": message["userId"]})
        return message

    client = make_client(before_send=audit)
    holder.append(client)
    assert client.track("u1", "Deleted Account")[0]
    assert client.flush(5)
    assert hooked == ["Deleted Account"]
    assert sorted(e["name"] for e in server.state.events()) == ["Audit Log", "Deleted Account"]


@pytest.mark.parametrize("sync_mode", [False, True])
def test_flush_from_inside_the_hook_does_not_deadlock(sync_mode: bool, make_client: MakeClient,
                                                      server: LocalCustomerIO) -> None:
    holder: list[Client] = []

    def flushing(message: dict[str, Any]) -> dict[str, Any]:
        holder[0].flush(5)
        return message

    client = make_client(before_send=flushing, sync_mode=sync_mode)
    holder.append(client)
    caller = threading.Thread(target=lambda: [client.track("u1", f"E{n}") for n in range(3)], daemon=True)
    caller.start()
    caller.join(10)
    assert not caller.is_alive()
    assert client.flush(5)
    assert sorted(e["name"] for e in server.state.events()) == ["E0", "E1", "E2"]


def test_sync_mode_drops_without_sending(make_client: MakeClient, server: LocalCustomerIO) -> None:
    client = make_client(before_send=lambda m: None, sync_mode=True)
    ok, message = client.track("u1", "Sampled out")
    assert ok and message["event"] == "Sampled out"
    assert client.before_send_dropped == 1
    assert server.requests == []


def test_the_hook_must_be_callable() -> None:
    with pytest.raises(ArgumentError, match="before_send: must be callable"):
        Client(SITE_ID, API_KEY, before_send="scrub")  # type: ignore[arg-type]
    client = Client(SITE_ID, API_KEY, before_send=False, send=False)  # type: ignore[arg-type]  # falsy: none
    assert client.track("u1", "A")[0]
    client.shutdown()


def test_module_setting(facade: Any, server: LocalCustomerIO) -> None:
    facade.before_send = scrub
    assert analytics_cio.identify("u7", {"plan": "pro", "ssn": "078-05-1120"})[0]
    assert analytics_cio.flush(5)
    person = server.state.person("u7")
    assert person is not None and person["attributes"] == {"plan": "pro"}
