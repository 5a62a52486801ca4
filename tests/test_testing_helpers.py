"""analytics_cio.testing for users' own tests: capture(), Captured, CaptureTransport, and the pytest plugin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import analytics_cio
import analytics_cio.testing
from analytics_cio import Client, UnmappableError
from analytics_cio.testing import CaptureTransport, LocalCustomerIO, capture

from ._recording_proxy import RecordingProxy
from .conftest import API_KEY, SITE_ID, Errors

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def clean_facade() -> Iterator[None]:
    """The module facade with its default settings, restored afterwards."""
    saved = {name: getattr(analytics_cio, name) for name in analytics_cio._SETTINGS}
    analytics_cio.shutdown()
    yield
    analytics_cio.shutdown()
    for name, value in saved.items():
        setattr(analytics_cio, name, value)


def test_the_public_surface_is_exactly_all() -> None:
    public = {name for name in dir(analytics_cio.testing) if name.isidentifier() and not name.startswith("_")}
    public -= {"annotations", "pytest_plugin", "importlib", "Any", "TYPE_CHECKING"}
    assert sorted(analytics_cio.testing.__all__) == analytics_cio.testing.__all__
    assert set(analytics_cio.testing.__all__) == public


@pytest.mark.usefixtures("clean_facade")
def test_capture_records_facade_calls_as_messages_and_operations_without_credentials() -> None:
    with capture() as captured:
        ok, message = analytics_cio.identify("ada@example.com", {"name": "Ada", "plan": "pro"})
        _, tracked = analytics_cio.track("ada@example.com", "Order Completed", {"total": 42})
        analytics_cio.page(anonymous_id="anon-1", name="Pricing")

    assert ok
    assert captured.messages[0] is message
    assert [m["type"] for m in captured.messages] == ["identify", "track", "page"]
    assert [(op["type"], op["action"]) for op in captured.ops] == [
        ("person", "identify"), ("person", "event"), ("person", "page")]
    [order] = captured.events(name="Order Completed")
    assert order["identifiers"] == {"email": "ada@example.com"}
    assert order["attributes"] == {"total": 42}
    assert order["id"] == tracked["messageId"]  # a ULID: Customer.io de-duplicates on it
    assert [e["name"] for e in captured.events(person="anon-1")] == ["Pricing"]
    assert captured.people["ada@example.com"] == {"name": "Ada", "plan": "pro"}
    assert "ada@example.com" in captured.people
    assert captured.errors == []


@pytest.mark.usefixtures("clean_facade")
def test_capture_gives_the_facade_back_as_it_was() -> None:
    analytics_cio.on_error = own = Errors()
    with capture():
        analytics_cio.track("u1", "Inside")
    assert analytics_cio.transport is None
    assert analytics_cio.sync_mode is False
    assert analytics_cio.on_error is own
    assert analytics_cio.default_client is None
    with pytest.raises(ValueError, match="site_id"):  # no credentials outside the capture: nothing is sent
        analytics_cio.track("u1", "Outside")


@pytest.mark.usefixtures("clean_facade")
def test_capture_survives_settings_changed_by_the_code_under_test() -> None:
    with capture() as captured:
        analytics_cio.screen_as = "screen"  # rebuilds the default client: still captured
        analytics_cio.screen("u1", name="Home")
    assert [(op["action"], op["name"]) for op in captured.ops] == [("screen", "Home")]


@pytest.mark.usefixtures("clean_facade")
def test_capture_reports_what_customer_io_would_refuse_and_still_calls_on_error() -> None:
    analytics_cio.on_error = own = Errors()
    with capture() as captured:
        analytics_cio.identify(anonymous_id="anon-only", traits={"plan": "free"})  # no person to create
        ok, _ = analytics_cio.register_device("u1", "token-1", "windows")  # Customer.io knows ios and android
    assert not ok
    assert captured.ops == [{**captured.ops[0], "action": "event"}]  # the event part went; the device did not
    kinds = [type(error) for error, _ in captured.errors]
    assert kinds == [UnmappableError, UnmappableError]  # the platform is refused before sending, by the client
    assert "context.device.type" in str(captured.errors[1][0])
    assert [type(error) for error, _ in own] == kinds


def test_capture_of_an_explicit_client_sends_nothing_then_hands_it_back(
    server: LocalCustomerIO, make_client: Any
) -> None:
    client: Client = make_client()
    client.track("u1", "Before")
    with capture(client) as captured:
        client.track("u1", "During", {"n": 1})
        assert [e["name"] for e in captured.events()] == ["During"]
    client.track("u1", "After")
    client.flush()
    assert [e["name"] for e in server.state.events()] == ["Before", "After"]
    assert [m["event"] for m in captured.messages] == ["During"]


def test_a_client_can_be_built_on_a_capture_transport_and_batches_as_usual() -> None:
    transport = CaptureTransport()
    client = Client(transport=transport, upload_interval=0.01)
    try:
        for n in range(5):
            client.track("u1", "Tick", {"n": n})
        client.flush()
    finally:
        client.shutdown()
    assert [op["attributes"]["n"] for op, _ in transport.sent()] == [0, 1, 2, 3, 4]
    assert transport.count() == 5


def test_people_follow_merges_and_explain_a_missing_person() -> None:
    client = Client(transport=CaptureTransport(), sync_mode=True)
    with capture(client) as captured:
        client.identify("old-1", {"newsletter": True})
        client.identify("new-1", {"plan": "pro"})
        client.alias("old-1", "new-1")
    assert dict(captured.people) == {"new-1": {"plan": "pro", "newsletter": True}}
    assert len(captured.people) == 1
    with pytest.raises(KeyError, match="no person 'old-1' was captured"):
        captured.people["old-1"]
    person = captured.person("new-1")
    assert person is not None and person["id"] == "new-1"
    captured.clear()
    assert captured.ops == [] and len(captured.people) == 0
    client.shutdown()


def test_capture_follows_the_clients_timestamp_conversion() -> None:
    client = Client(transport=CaptureTransport(), sync_mode=True, convert_timestamps=False)
    with capture(client) as captured:
        client.track("u1", "Booked", {"at": "2021-06-01T10:00:00Z"})
    assert captured.ops[0]["attributes"] == {"at": "2021-06-01T10:00:00Z"}
    client.shutdown()


def test_the_cio_capture_fixture(cio_capture: analytics_cio.testing.Captured) -> None:
    analytics_cio.track("u1", "Fixture Works")
    assert [e["name"] for e in cio_capture.events()] == ["Fixture Works"]


def test_the_local_customerio_fixture(local_customerio: LocalCustomerIO) -> None:
    client = Client(SITE_ID, API_KEY, host=local_customerio.url, sync_mode=True)
    client.identify("u1", {"plan": "pro"})
    client.shutdown()
    assert local_customerio.state.person("u1") is not None


def test_the_plugin_loads_in_a_users_own_pytest_run(tmp_path: Path) -> None:
    """The pytest11 entry point: a fresh pytest run in another project finds the fixtures."""
    (tmp_path / "test_app.py").write_text(textwrap.dedent("""
        import analytics_cio

        def signup(email):
            analytics_cio.identify(email, {"plan": "trial"})
            analytics_cio.track(email, "Signed Up")

        def test_signup(cio_capture):
            signup("ada@example.com")
            assert cio_capture.people["ada@example.com"]["plan"] == "trial"
            assert len(cio_capture.events(name="Signed Up")) == 1

        def test_server(local_customerio):
            assert local_customerio.url.startswith("http://127.0.0.1:")
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_registering_the_plugin_imports_neither_requests_nor_the_client_nor_a_server() -> None:
    """pytest loads the plugin in every run wherever analytics-cio is installed: it must cost next to nothing."""
    heavy = ["requests", "urllib3", "http.server", "socketserver", "analytics_cio._client",
             "analytics_cio._transport", "analytics_cio.testing._server", "analytics_cio.testing._capture"]
    probe = textwrap.dedent(f"""
        import sys
        import analytics_cio.testing.pytest_plugin
        loaded = [name for name in {heavy!r} if name in sys.modules]
        assert loaded == [], loaded
        from analytics_cio.testing import capture, LocalCustomerIO   # the names still work, imported on use
        import analytics_cio
        assert analytics_cio.Client.__name__ == "Client" and "analytics_cio._client" in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _readme_python_block(heading: str) -> str:
    """The first Python block of the README section ``heading``."""
    section = README.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, heading
    return match.group(1)


# What the README's Flask section leaves to the reader: the imports, a blueprint, a user model.
_FLASK_APP_PRELUDE = """
import dataclasses

from flask import Blueprint, Flask, request

accounts = Blueprint("accounts", __name__)


@dataclasses.dataclass
class User:
    id: str
    email: str
    plan: str


def create_user(data):
    return User("u-" + str(abs(hash(data["email"])) % 10_000), data["email"], data.get("plan", "trial"))

"""


def test_the_readmes_pytest_example_passes_as_written_and_never_tries_customer_io(tmp_path: Path) -> None:
    """A new user's first test: the README's pytest example against the README's Flask app, in a pytest run of
    their own, with credentials set as in production. Nothing may leave for Customer.io's real host: a proxy
    that records every attempt stands in for the network."""
    pytest.importorskip("flask")
    (tmp_path / "yourapp.py").write_text(_FLASK_APP_PRELUDE + _readme_python_block("Flask"))
    (tmp_path / "test_signup.py").write_text(_readme_python_block("Testing your app: capture what would be sent"))
    package_root = str(Path(analytics_cio.__file__).resolve().parents[1])  # this checkout, not an installed copy
    env = {key: value for key, value in os.environ.items()
           if not key.upper().startswith(("CUSTOMERIO_", "ANALYTICS_CIO", "NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY"))}
    with RecordingProxy() as proxy:
        env.update(CUSTOMERIO_SITE_ID="site-from-env", CUSTOMERIO_API_KEY="key-from-env", HTTPS_PROXY=proxy.url,
                   PYTHONPATH=os.pathsep.join([package_root, env.get("PYTHONPATH", "")]))
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(tmp_path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )
        took = time.monotonic() - started
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout
        assert proxy.targets == []
        assert took < 60  # nothing waited for a host at exit (it took 12 s when the real one was tried)
        # The proxy does see a client of that app that is not captured: the check above can fail.
        control = "import yourapp; app = yourapp.create_app(); app.test_client().post('/signup', json=" \
                  "{'email': 'x@example.com'}); app.extensions['analytics_cio'].shutdown(timeout=1)"
        subprocess.run([sys.executable, "-c", control], cwd=tmp_path, env=env, capture_output=True, timeout=60)
        assert proxy.targets[:1] == ["track-eu.customer.io:443"]
