"""Our v1 transport against Customer.io's official Python client (``customerio`` 3.x), on the same local server.

For identify, track, anonymous track, page, add/delete device, merge, delete, suppress and unsuppress, the
official client and ``analytics_cio`` (``api_version="v1"``) each make the call, and the tests assert that the
server received the same method, path and body semantics. The official client is a test dependency only.

Deliberate differences (each asserted by a test below):

- Events carry ``"type": "event"`` explicitly (the official client leaves it out; Customer.io defaults to it).
- Every event, page view and screen view carries ``id`` (the message's ULID, so Customer.io de-duplicates an event
  a retry delivers twice) and ``timestamp`` (the call's time); the official ``pageview()`` can send neither, and
  ``track()`` sends them only when given. Empty event data is left out instead of sent as ``"data": {}``.
- ``identify`` sends ``_timestamp`` (the call's time, so Customer.io applies updates in order); the official
  client sends it only when passed as an attribute.
- ``DELETE`` requests (delete person, delete device) have no body; the official client sends ``{}``.
- Identifiers a v1 path cannot carry (``.``/``..``, an id containing ``@`` with ``email_as_id=False``) go to
  ``POST /api/v2/entity`` with the identifier in the body. The official client puts ``..`` in the path, where
  requests resolves it as "parent directory": ``track("..", ...)`` reaches ``POST /api/v1/events``.
- Values the official client cannot encode (``Decimal``, ``date``, ``UUID``, infinity) make its call fail with a
  misleading "Failed to receive valid response after 3 retries" and send nothing; they are cleaned and sent here.
- Time zones: the Customer.io reference notes that customerio-python *replaced* an aware datetime's tzinfo with
  UTC. The installed 3.x converts with ``astimezone`` like we do, so aware datetimes agree (asserted below);
  older releases would be off by the zone's offset.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from importlib import metadata
from typing import Any

import pytest

# The comparison is with the current official client (3.x, Python >= 3.10); 2.x has other signatures.
if int(metadata.version("customerio").split(".")[0]) < 3:
    pytest.skip("the comparison is written for customerio 3.x", allow_module_level=True)

from customerio import CustomerIO, CustomerIOException

from analytics_cio import Client
from analytics_cio._ulid import new_ulid
from analytics_cio.testing._server import LocalCustomerIO

from .conftest import API_KEY, SITE_ID

WHEN = dt.datetime(2021, 6, 1, 10, 0, tzinfo=dt.timezone.utc)
UNIX = 1622541600

Request = tuple[str, str, Any]


class OfficialClient(CustomerIO):  # type: ignore[misc]
    """The official client, pointed at the local server: it only builds ``https://`` URLs."""

    def setup_base_url(self) -> None:
        self.base_url = f"http://{self.host}:{self.port}/{self.url_prefix.strip('/')}"


@pytest.fixture
def official(server: LocalCustomerIO) -> Iterator[CustomerIO]:
    port = int(server.url.rsplit(":", 1)[1])
    client = OfficialClient(SITE_ID, API_KEY, host="127.0.0.1", port=port, retries=0)
    yield client
    client.close()


@pytest.fixture
def ours(make_client: Callable[..., Client]) -> Client:
    return make_client(api_version="v1", send_lifecycle_events=False)


def received(server: LocalCustomerIO, call: Callable[[], Any]) -> Request:
    """The one request ``call`` made, as the server received it; the server must have accepted it."""
    before = server.request_count
    call()
    (request,) = server.requests[before:]
    assert request.status == 200, request.body
    return request.method, request.path, request.json()


def flushed(client: Client, call: Callable[[Client], Any]) -> Callable[[], None]:
    def run() -> None:
        call(client)
        assert client.flush(timeout=10)

    return run


def without_event_type(request: Request) -> Request:
    """Our event body less the explicit ``"type": "event"`` the official client leaves implicit."""
    method, path, body = request
    assert body.pop("type") == "event"
    return method, path, body


# -- the same requests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["u1", "ada@example.com", "cio_d00000000001", "a/b c", 42])
def test_identify(server: LocalCustomerIO, official: CustomerIO, ours: Client, user_id: Any) -> None:
    created = dt.datetime(2021, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # aware, not UTC
    traits = {"email": "ada@example.com", "plan": "pro", "unsubscribed": False, "address": {"city": "London"}}
    theirs = received(server, lambda: official.identify(user_id, created_at=created, _timestamp=UNIX, **traits))
    mine = received(server, flushed(ours, lambda c: c.identify(user_id, {**traits, "created_at": created},
                                                                 timestamp=WHEN)))
    assert mine == theirs
    assert mine[2]["created_at"] == UNIX


def test_identify_sends_timestamp_for_ordering(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    theirs = received(server, lambda: official.identify("u1", plan="pro"))
    mine = received(server, flushed(ours, lambda c: c.identify("u1", {"plan": "pro"}, timestamp=WHEN)))
    assert mine == (theirs[0], theirs[1], {**theirs[2], "_timestamp": UNIX})


def test_track(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    ulid = new_ulid()
    data = {"total": 42, "items": [{"sku": "a", "at": WHEN}], "note": None}
    theirs = received(server, lambda: official.track("u1", "Order Completed", data, id=ulid, timestamp=WHEN))
    mine = received(server, flushed(ours, lambda c: c.track("u1", "Order Completed", data, timestamp=WHEN,
                                                              message_id=ulid)))
    assert without_event_type(mine) == theirs
    assert theirs[2]["data"]["items"][0]["at"] == UNIX


def test_track_always_sends_id_and_timestamp(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    theirs = received(server, lambda: official.track("u1", "Signed Up"))
    _, mine_path, mine_body = received(server, flushed(ours, lambda c: c.track("u1", "Signed Up", timestamp=WHEN)))
    assert theirs[1] == mine_path == "/api/v1/customers/u1/events"
    assert theirs[2] == {"name": "Signed Up", "data": {}}
    assert mine_body == {"name": "Signed Up", "id": mine_body["id"], "type": "event", "timestamp": UNIX}


def test_anonymous_track(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    ulid = new_ulid()
    theirs = received(server, lambda: official.track_anonymous("anon-1", "Viewed Pricing", {"plan": "pro"},
                                                                id=ulid, timestamp=WHEN))
    mine = received(server, flushed(ours, lambda c: c.track(None, "Viewed Pricing", {"plan": "pro"},
                                                              anonymous_id="anon-1", timestamp=WHEN,
                                                              message_id=ulid)))
    assert without_event_type(mine) == theirs
    assert theirs[:2] == ("POST", "/api/v1/events")


def test_page(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    url = "https://example.com/pricing?x=1"
    theirs = received(server, lambda: official.pageview("u1", url, referrer="https://google.com"))
    mine = received(server, flushed(ours, lambda c: c.page("u1", None, None, {"url": url,
                                                                              "referrer": "https://google.com"},
                                                             timestamp=WHEN)))
    method, path, body = mine
    assert (method, path) == theirs[:2]
    assert (body["type"], body["name"]) == (theirs[2]["type"], theirs[2]["name"]) == ("page", url)
    assert body["data"] == {**theirs[2]["data"], "url": url}  # properties travel whole
    assert body["timestamp"] == UNIX and "id" in body  # pageview() cannot send these


def test_add_device(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    attributes = {"push_enabled": "true", "app_version": "3.2.1"}
    theirs = received(server, lambda: official.add_device("u1", "tok/1", "ios", last_used=UNIX,
                                                           attributes=attributes))
    mine = received(server, flushed(ours, lambda c: c.register_device(
        "u1", "tok/1", "iOS", {"push_enabled": True}, context={"app": {"version": "3.2.1"}}, timestamp=WHEN)))
    assert mine == theirs
    assert theirs[:2] == ("PUT", "/api/v1/customers/u1/devices")


def test_delete_device(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    theirs = received(server, lambda: official.delete_device("ada@example.com", "tok/1"))
    mine = received(server, flushed(ours, lambda c: c.remove_device("ada@example.com", "tok/1")))
    assert mine[:2] == theirs[:2] == ("DELETE", "/api/v1/customers/ada%40example.com/devices/tok%2F1")
    assert (theirs[2], mine[2]) == ({}, None)  # DELETE carries no body here


@pytest.mark.parametrize(
    ("previous_id", "user_id", "primary", "secondary"),
    [
        ("old-1", "ada@example.com", ("email", "ada@example.com"), ("id", "old-1")),
        ("cio_abc", "42", ("id", "42"), ("cio_id", "abc")),
    ],
)
def test_merge(server: LocalCustomerIO, official: CustomerIO, ours: Client, previous_id: str, user_id: str,
               primary: tuple[str, str], secondary: tuple[str, str]) -> None:
    theirs = received(server, lambda: official.merge_customers(*primary, *secondary))
    mine = received(server, flushed(ours, lambda c: c.alias(previous_id, user_id)))
    assert mine == theirs
    assert theirs[:2] == ("POST", "/api/v1/merge_customers")


def test_delete(server: LocalCustomerIO, official: CustomerIO, ours: Client) -> None:
    theirs = received(server, lambda: official.delete("u 1"))
    mine = received(server, flushed(ours, lambda c: c.track("u 1", "User Deleted")))
    assert mine[:2] == theirs[:2] == ("DELETE", "/api/v1/customers/u%201")
    assert (theirs[2], mine[2]) == ({}, None)


@pytest.mark.parametrize(("action", "event"), [("suppress", "User Suppressed"), ("unsuppress", "User Unsuppressed")])
def test_suppress_and_unsuppress(server: LocalCustomerIO, official: CustomerIO, ours: Client, action: str,
                                 event: str) -> None:
    theirs = received(server, lambda: getattr(official, action)("ada@example.com"))
    mine = received(server, flushed(ours, lambda c: c.track("ada@example.com", event)))
    assert mine == theirs == ("POST", f"/api/v1/customers/ada%40example.com/{action}", {})


# -- where we deliberately differ ----------------------------------------------------------------------------


def test_dot_segments_escape_the_official_clients_path_but_not_ours(server: LocalCustomerIO, official: CustomerIO,
                                                                     ours: Client) -> None:
    before = server.request_count
    with pytest.raises(CustomerIOException):
        official.track("..", "E")
    (theirs,) = server.requests[before:]
    assert (theirs.method, theirs.path) == ("POST", "/api/v1/events")  # "/customers/../events", resolved
    method, path, body = received(server, flushed(ours, lambda c: c.track("..", "E", timestamp=WHEN)))
    assert (method, path, body["identifiers"]) == ("POST", "/api/v2/entity", {"id": ".."})


@pytest.mark.parametrize(
    ("value", "sent"),
    [(Decimal("9.90"), 9.9), (dt.date(2021, 6, 1), 1622505600), (math.inf, None),
     (dt.datetime(2021, 6, 1, 6, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4))), UNIX)],
)
def test_values_the_official_client_cannot_send(server: LocalCustomerIO, official: CustomerIO, ours: Client,
                                                value: Any, sent: Any) -> None:
    if isinstance(value, dt.datetime):  # an aware datetime: both convert it in its own zone
        theirs = received(server, lambda: official.track("u1", "E", {"v": value}))
        assert theirs[2]["data"] == {"v": sent}
    else:
        before = server.request_count
        with pytest.raises(CustomerIOException, match="after 0 retries"):
            official.track("u1", "E", {"v": value})
        assert server.request_count == before  # nothing sent, and the error blames the network
    _, _, body = received(server, flushed(ours, lambda c: c.track("u1", "E", {"v": value}, timestamp=WHEN)))
    assert body["data"] == {"v": sent}
