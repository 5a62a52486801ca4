"""Arbitrary and hostile values through every call: each message is delivered or reported, the worker lives."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics_cio import Client
from analytics_cio.testing._server import LocalCustomerIO

from .conftest import API_KEY, SITE_ID, Errors


class Color(enum.Enum):
    RED = "red"


class Opaque:  # no JSON form: dropped for its key only
    pass


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=()), max_size=30),  # lone surrogates included
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())), st.dates(),
    st.decimals(allow_nan=True), st.uuids(), st.just(Color.RED), st.binary(max_size=20), st.just(Opaque()),
    st.sampled_from(["2021-06-01T10:00:00Z", "2021-06-01", "+1 555 0100", "20210601", "cio_x", "a@b.co"]),
)
keys = st.one_of(st.text(max_size=20), st.integers(), st.none(), st.tuples(st.integers()))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4),
        st.frozensets(st.integers(), max_size=3), st.tuples(inner, inner),
    ),
    max_leaves=20,
)
documents = st.dictionaries(st.text(max_size=12), values, max_size=6)
names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)  # a lone surrogate is refused at the call

calls = st.one_of(
    st.tuples(st.just("identify"), documents, st.none()),
    st.tuples(st.just("track"), documents, names),
    st.tuples(st.just("page"), documents, names),
    st.tuples(st.just("screen"), documents, names),
    st.tuples(st.just("group"), documents, names),
    st.tuples(st.just("lifecycle"), documents, st.sampled_from(["ios", "Android", "weird", ""])),
)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[LocalCustomerIO, Client, Errors]]:
    errors = Errors()
    with LocalCustomerIO() as server:
        client = Client(SITE_ID, API_KEY, host=server.url, on_error=errors, upload_interval=0.01,
                        max_requests_per_second=None)
        yield server, client, errors
        client.shutdown()


def call(client: Client, kind: str, data: dict[str, Any], extra: Any, user: str) -> tuple[bool, dict[str, Any]]:
    if kind == "identify":
        return client.identify(user, data)
    if kind == "track":
        return client.track(user, extra or "E", data, context={"hostile": data})
    if kind == "page":
        return client.page(user, None, extra or None, data)
    if kind == "screen":
        return client.screen(user, None, extra or None, data)
    if kind == "group":
        return client.group(user, extra or "g", data)
    return client.track(user, "Application Installed", data,
                        context={"device": {"token": "tok", "type": extra}, "app": data})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(calls, min_size=1, max_size=5), version=st.sampled_from(["v2", "v1"]))
def test_every_message_is_delivered_or_reported(shared: tuple[LocalCustomerIO, Client, Errors],
                                                batch: list[tuple[str, dict[str, Any], Any]], version: str) -> None:
    server, client, errors = shared
    client.transport.__class__  # noqa: B018 - the same client serves both versions below
    target = client if version == "v2" else _v1(server, errors)
    server.reset()
    errors.clear()
    sent = []
    for index, (kind, data, extra) in enumerate(batch):
        user = f"user-{index}"
        ok, message = call(target, kind, data, extra, user)
        assert ok is True
        sent.append((user, message))
    assert target.flush(timeout=30) is True
    reported = {m["messageId"] for m in errors.messages}
    reached = set()
    for request in server.requests:
        if request.status // 100 != 2:
            continue
        path = unquote(request.path)
        body = request.json()
        for op in body["batch"] if isinstance(body, dict) and "batch" in body else [body]:
            text = repr(op) + path
            reached.update(user for user, _ in sent if f"'{user}'" in text or f"/{user}" in text)
    for user, message in sent:
        assert user in reached or message["messageId"] in reported, (user, message["type"])
    assert target._worker._threads is not None  # the worker is alive and well
    assert all(thread.is_alive() for thread in target._worker._threads)
    if target is not client:
        target.shutdown()


def _v1(server: LocalCustomerIO, errors: Errors) -> Client:
    return Client(SITE_ID, API_KEY, host=server.url, on_error=errors, upload_interval=0.01, api_version="v1",
                  max_requests_per_second=None)


@settings(max_examples=60, deadline=None)
@given(user=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
def test_no_user_id_changes_a_v1_path(user: str) -> None:
    from analytics_cio._v1 import v1_request

    op = {"type": "person", "action": "event", "identifiers": {"id": user}, "name": "E"}
    _, path, body, _ = v1_request(op)
    if path == "/api/v2/entity":  # ids a v1 path would misread (".." or an "@") travel in the body instead
        assert body["identifiers"] == {"id": user}
        return
    prefix, encoded, suffix = path[: len("/api/v1/customers/")], path[len("/api/v1/customers/"):-len("/events")], \
        path[-len("/events"):]
    assert (prefix, suffix) == ("/api/v1/customers/", "/events")
    assert "/" not in encoded and "?" not in encoded and "#" not in encoded
    assert unquote(encoded) == user


def test_values_of_every_kind_survive() -> None:
    from analytics_cio._encoding import encode

    value = {"d": decimal.Decimal("1.10"), "u": uuid.UUID(int=5), "when": dt.date(2020, 1, 2), "e": Color.RED,
             "nan": float("nan"), "s": "\ud800", "o": Opaque()}
    decoded = encode(value)
    assert b'"d":1.1' in decoded and b'"nan":null' in decoded and b'"o"' not in decoded
