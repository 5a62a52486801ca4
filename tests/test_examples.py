"""Every example in examples/, run against the local Customer.io, so that none of them can rot."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from analytics_cio.testing import LocalCustomerIO

from .conftest import API_KEY, SITE_ID

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def cio() -> Iterator[LocalCustomerIO]:
    with LocalCustomerIO(site_id=SITE_ID, api_key=API_KEY) as server:
        yield server


@pytest.fixture
def environment(cio: LocalCustomerIO) -> dict[str, str]:
    """What a user sets to point an example at a local Customer.io."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CUSTOMERIO_", "DJANGO_"))}
    env.update(CUSTOMERIO_SITE_ID=SITE_ID, CUSTOMERIO_API_KEY=API_KEY, CUSTOMERIO_HOST=cio.url,
               PYTHONWARNINGS="error")
    return env


@pytest.fixture
def flask_example(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Imports a Flask example as a module, with the environment above; shuts its clients down afterwards."""
    pytest.importorskip("flask")
    for key, value in environment.items():
        if key.startswith("CUSTOMERIO_"):
            monkeypatch.setenv(key, value)
    apps: list[Any] = []

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        original = module.create_app

        def create_app(*args: Any, **kwargs: Any) -> Any:
            app = original(*args, **kwargs)
            apps.append(app)
            return app

        module.create_app = create_app
        return module

    yield load
    for app in apps:
        app.extensions["analytics_cio"].shutdown()


def run_example(*argv: str, env: dict[str, str], cwd: Path = EXAMPLES.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_quickstart(cio: LocalCustomerIO, environment: dict[str, str]) -> None:
    result = run_example("examples/quickstart.py", env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Delivered")
    person = cio.state.person("user-1001")
    assert person is not None
    assert person["attributes"]["plan"] == "trial"
    assert person["email"] == "grace@example.com"
    assert [(e["type"], e["name"]) for e in person["events"]] == [("event", "Trial Started"),
                                                                  ("page", "Getting Started")]


def test_quickstart_explains_missing_credentials(environment: dict[str, str]) -> None:
    del environment["CUSTOMERIO_SITE_ID"]
    result = run_example("examples/quickstart.py", env=environment)
    assert result.returncode == 2
    assert "CUSTOMERIO_SITE_ID" in result.stderr


def test_backfill_sends_history_once_however_often_it_runs(cio: LocalCustomerIO, environment: dict[str, str]) -> None:
    for _ in range(2):
        result = run_example("examples/backfill.py", "examples/data/orders.jsonl", env=environment)
        assert result.returncode == 0, result.stderr
        assert "39 orders of 4 customers sent; 1 lines skipped; 0 messages not delivered" in result.stdout
        assert "line 17: skipped (KeyError: 'placed_at')" in result.stderr
    orders = cio.state.events("Order Completed")
    assert len(orders) == 39  # the second run's events were duplicates, ignored
    assert cio.state.duplicates == 39
    assert {p["email"] for p in cio.state.people()} == {
        "ada@example.com", "grace@example.com", "alan@example.com", "katherine@example.com"}
    assert orders[0]["timestamp"] == 1704363300  # when the order was placed, not when it was sent


def test_flask_app(cio: LocalCustomerIO, flask_example: Any) -> None:
    module = flask_example("flask_app")
    app = module.create_app({"ANALYTICS_CIO_SYNC_MODE": True})
    client = app.test_client()
    response = client.post("/signup", json={"email": "ada@example.com"}, headers={"X-Anonymous-Id": "anon-9"})
    assert response.status_code == 201
    user_id = response.get_json()["id"]
    assert client.post("/login", json={"email": "ada@example.com"}).status_code == 204
    assert client.post("/upgrade", json={"email": "ada@example.com", "order_id": "o-1", "total": 49}
                       ).status_code == 204
    assert client.post("/signup", json={}).status_code == 400
    person = cio.state.person(user_id)
    assert person is not None
    assert person["attributes"] == {"email": "ada@example.com", "plan": "pro", "anonymous_id": "anon-9"}
    assert [e["name"] for e in person["events"]] == ["Signed Up", "Logged In", "Order Completed"]


def test_mobile_backend_registers_and_removes_device_tokens(cio: LocalCustomerIO, flask_example: Any) -> None:
    module = flask_example("mobile_backend")
    app = module.create_app({"ANALYTICS_CIO_SYNC_MODE": True})
    client = app.test_client()
    auth = {"Authorization": "Bearer user-42", "Accept-Language": "en-GB,en;q=0.8"}
    body = {"platform": "iPhone OS", "app_version": "3.2.0", "os_version": "17.4", "model": "iPhone15,2"}
    assert client.put("/v1/me/devices/apns-abc", json=body, headers=auth).status_code == 202
    assert client.put("/v1/me/devices/fcm-def", json={"platform": "android", "push_enabled": False},
                      headers=auth).status_code == 202
    person = cio.state.person("user-42")
    assert person is not None
    assert person["devices"]["apns-abc"]["platform"] == "ios"
    assert person["devices"]["apns-abc"]["attributes"] == {
        "device_os": "iOS 17.4", "device_model": "iPhone15,2", "app_version": "3.2.0", "device_locale": "en-GB",
        "push_enabled": "true"}
    assert person["devices"]["fcm-def"]["attributes"]["push_enabled"] == "false"

    assert client.delete("/v1/me/devices/apns-abc", headers=auth).status_code == 204
    person = cio.state.person("user-42")
    assert person is not None and list(person["devices"]) == ["fcm-def"]
    assert client.put("/v1/me/devices/x", json={"platform": "windows"}, headers=auth).status_code == 400
    assert client.put("/v1/me/devices/x", json=body).status_code == 401


def test_django_project_tests_pass(environment: dict[str, str]) -> None:
    pytest.importorskip("django")
    result = run_example("manage.py", "test", env=environment, cwd=EXAMPLES / "django_project")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran 4 tests" in result.stderr


def test_django_project_delivers_when_the_process_exits(cio: LocalCustomerIO, environment: dict[str, str]) -> None:
    pytest.importorskip("django")
    request = textwrap.dedent("""
        from django.test import Client
        from django.test.utils import setup_test_environment
        import analytics_cio
        setup_test_environment()
        analytics_cio.upload_interval = 3600  # nothing leaves before the process exits
        response = Client().post("/signup", {"email": "ada@example.com", "plan": "pro"},
                                 content_type="application/json")
        print(response.status_code)
    """)
    result = run_example("manage.py", "shell", "-c", request, env=environment, cwd=EXAMPLES / "django_project")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("201")
    person = cio.state.person("ada@example.com")
    assert person is not None and person["attributes"]["plan"] == "pro"
    assert [e["name"] for e in cio.state.events()] == ["Signed Up"]
    check = run_example("manage.py", "check", env=environment, cwd=EXAMPLES / "django_project")
    assert check.returncode == 0 and "analytics_cio.W001" not in check.stderr


def test_fastapi_app(cio: LocalCustomerIO, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    for key, value in environment.items():
        if key.startswith("CUSTOMERIO_"):
            monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("example_fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with TestClient(module.app) as client:  # runs the lifespan: the AsyncClient is built, then shut down
        response = client.post("/signup", json={"email": "ada@example.com", "plan": "pro"})
        assert response.status_code == 201
        user_id = response.json()["id"]
        assert client.post("/signup", json={}).status_code == 400
        assert client.post("/account/delete", json={"email": "ada@example.com"}).json() == {"delivered": True}
        assert [e["name"] for e in cio.state.events()] == ["Signed Up", "Account Deleted"]
        analytics = module.app.state.analytics
        analytics.track(user_id, "Logged Out")  # queued; only the shutdown at the lifespan's end delivers it
    assert analytics.client.flush() is False  # shut down
    person = cio.state.person(user_id)
    assert person is not None and person["attributes"] == {"email": "ada@example.com", "plan": "pro"}
    assert [e["name"] for e in person["events"]] == ["Signed Up", "Account Deleted", "Logged Out"]
