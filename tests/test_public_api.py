"""The public surface: exactly what __all__ says, with analytics-python 2.x's signatures."""

from __future__ import annotations

import inspect

import pytest

import analytics_cio
from analytics_cio import AsyncClient, Client

# analytics-python 2.x's parameters, in order, every default None (api.md).
SEGMENT_SIGNATURES = {
    "identify": ["user_id", "traits", "context", "timestamp", "anonymous_id", "integrations", "message_id"],
    "track": ["user_id", "event", "properties", "context", "timestamp", "anonymous_id", "integrations",
              "message_id"],
    "page": ["user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id", "integrations",
             "message_id"],
    "screen": ["user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id",
               "integrations", "message_id"],
    "group": ["user_id", "group_id", "traits", "context", "timestamp", "anonymous_id", "integrations",
              "message_id"],
    "alias": ["previous_id", "user_id", "context", "timestamp", "integrations", "message_id"],
}


def test_all_is_exactly_the_public_surface() -> None:
    # ("@py_…" names: pytest rewrites the modules of a package that ships a pytest plugin, as this one does.)
    public = {n for n in dir(analytics_cio) if not n.startswith(("_", "@"))} | {"__version__"}
    settings = set(analytics_cio._SETTINGS) | {"default_client"}
    modules = {"testing", "contrib", "cli"}  # subpackages, importable on their own
    assert sorted(analytics_cio.__all__) == analytics_cio.__all__
    imported = {"annotations", "sys", "threading", "types", "Any", "Mapping", "OnError", "Result", "Transport",
                "TYPE_CHECKING"}
    assert set(analytics_cio.__all__) == public - settings - modules - imported


@pytest.mark.parametrize("name", sorted(SEGMENT_SIGNATURES))
def test_calls_have_analytics_pythons_signature(name: str) -> None:
    expected = SEGMENT_SIGNATURES[name]
    for function in (getattr(analytics_cio, name), getattr(Client, name), getattr(AsyncClient, name)):
        parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
        assert [p.name for p in parameters] == expected
        assert all(p.default is None for p in parameters)
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters)  # real signatures, not *args


def test_facade_twins_match_the_client() -> None:
    for name in ("register_device", "remove_device", "flush", "shutdown"):
        facade = inspect.signature(getattr(analytics_cio, name)).parameters
        method = [p for p in inspect.signature(getattr(Client, name)).parameters if p != "self"]
        assert list(facade) == method


def test_async_client_twins_match_the_client() -> None:
    assert inspect.signature(AsyncClient) == inspect.signature(Client)
    for name in ("register_device", "remove_device", "flush", "shutdown"):
        assert inspect.signature(getattr(AsyncClient, name)) == inspect.signature(getattr(Client, name)), name
    assert inspect.iscoroutinefunction(AsyncClient.flush) and inspect.iscoroutinefunction(AsyncClient.shutdown)


def test_flush_after_is_on_the_module_and_the_client() -> None:
    assert analytics_cio.flush_after.timeout == 5.0
    client = Client(send=False)
    assert client.flush_after(timeout=2).timeout == 2.0
    client.shutdown()


def test_every_setting_is_a_client_option() -> None:
    options = inspect.signature(Client).parameters
    for name in analytics_cio._SETTINGS:
        assert name in options, name
        assert getattr(analytics_cio, name) == options[name].default, name
