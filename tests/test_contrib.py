"""The Django app and the Flask extension, driven through each framework's own test client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import analytics_cio
from analytics_cio.testing import LocalCustomerIO, capture

from .conftest import API_KEY, SITE_ID

# -- Django ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_cio() -> Iterator[LocalCustomerIO]:
    with LocalCustomerIO(site_id=SITE_ID, api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def django_settings(django_cio: LocalCustomerIO) -> Iterator[Any]:
    """Django configured once for this process, with the app and ANALYTICS_CIO pointing at the local server."""
    django = pytest.importorskip("django")
    from django.conf import settings

    if settings.configured:
        pytest.skip("Django was configured by something else in this process")
    saved = {name: getattr(analytics_cio, name) for name in analytics_cio._SETTINGS}
    analytics_cio.shutdown()
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="tests._django_site",
        USE_TZ=True,
        DATABASES={},
        INSTALLED_APPS=["analytics_cio.contrib.django"],
        ANALYTICS_CIO={"site_id": SITE_ID, "api_key": API_KEY, "host": django_cio.url,
                       "upload_interval": 60, "max_requests_per_second": None},
    )
    django.setup()  # runs the app's ready(): configures the facade
    yield settings
    analytics_cio.shutdown()
    for name, value in saved.items():
        setattr(analytics_cio, name, value)


@pytest.fixture
def django_app(django_settings: Any, django_cio: LocalCustomerIO) -> Iterator[Any]:
    """The facade as the app configured it (re-applied, as other tests may change it), and a test client."""
    from django.test import Client as DjangoClient

    from analytics_cio.contrib.django import configure

    analytics_cio.shutdown()
    configure(django_settings.ANALYTICS_CIO)
    django_cio.reset()
    yield DjangoClient()
    analytics_cio.shutdown()


def test_the_django_app_configures_the_module_facade(django_app: Any, django_cio: LocalCustomerIO) -> None:
    assert (analytics_cio.site_id, analytics_cio.api_key) == (SITE_ID, API_KEY)
    assert analytics_cio.host == django_cio.url
    assert analytics_cio.upload_interval == 60


def test_a_view_call_is_delivered_when_the_app_shuts_down(django_app: Any, django_cio: LocalCustomerIO) -> None:
    from analytics_cio.contrib.django import apps, shutdown

    response = django_app.post("/signup", {"email": "ada@example.com", "plan": "pro"})
    assert response.status_code == 201
    assert django_cio.request_count == 0  # held for upload_interval (60 s)
    assert apps._registered  # shutdown() runs at exit
    shutdown()
    person = django_cio.state.person("ada@example.com")
    assert person is not None
    assert person["attributes"] == {"plan": "pro"}
    assert [e["name"] for e in person["events"]] == ["Signed Up"]


def test_capture_works_with_the_django_test_client(django_app: Any, django_cio: LocalCustomerIO) -> None:
    with capture() as captured:
        assert django_app.post("/signup", {"email": "grace@example.com"}).status_code == 201
    assert captured.people["grace@example.com"] == {"plan": "trial"}
    assert len(captured.events(name="Signed Up")) == 1
    assert django_cio.request_count == 0


def test_an_unknown_django_option_is_improperly_configured(django_settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from analytics_cio.contrib.django import configure

    with pytest.raises(ImproperlyConfigured, match=r"'siteid'.*site_id"):
        configure({"siteid": "x"})


def test_django_credentials_default_to_the_environment(django_settings: Any, monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    from analytics_cio.contrib.django import configure

    saved = analytics_cio.site_id, analytics_cio.api_key
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", "from-env")
    monkeypatch.setenv("CUSTOMERIO_API_KEY", "key-from-env")
    try:
        configure({"region": "eu"})
        assert (analytics_cio.site_id, analytics_cio.api_key, analytics_cio.region) == (
            "from-env", "key-from-env", "eu")
    finally:
        analytics_cio.shutdown()
        analytics_cio.site_id, analytics_cio.api_key = saved
        analytics_cio.region = "us"


def test_a_django_write_key_selects_data_pipelines_and_needs_no_track_credentials(
        django_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.test import override_settings

    from analytics_cio.contrib.django import configure
    from analytics_cio.contrib.django.apps import check_credentials

    saved = analytics_cio.site_id, analytics_cio.api_key, analytics_cio.write_key
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", "from-env")
    monkeypatch.setenv("CUSTOMERIO_API_KEY", "key-from-env")
    try:
        analytics_cio.site_id = analytics_cio.api_key = None  # as at a process's start
        configure({"write_key": "wk"})  # the environment's Track API credentials are not mixed in
        assert (analytics_cio.site_id, analytics_cio.api_key, analytics_cio.write_key) == (None, None, "wk")
    finally:
        analytics_cio.shutdown()
        analytics_cio.site_id, analytics_cio.api_key, analytics_cio.write_key = saved
    monkeypatch.delenv("CUSTOMERIO_SITE_ID")
    monkeypatch.delenv("CUSTOMERIO_API_KEY")
    with override_settings(ANALYTICS_CIO={"write_key": "wk"}):
        assert check_credentials() == []


def test_manage_py_check_warns_without_credentials(django_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.test import override_settings

    from analytics_cio.contrib.django.apps import check_credentials

    monkeypatch.delenv("CUSTOMERIO_SITE_ID", raising=False)
    monkeypatch.delenv("CUSTOMERIO_API_KEY", raising=False)
    assert check_credentials() == []
    with override_settings(ANALYTICS_CIO={"region": "eu"}):
        [warning] = check_credentials()
        assert warning.id == "analytics_cio.W001"
    with override_settings(ANALYTICS_CIO={"send": False}):
        assert check_credentials() == []


def _readme_settings_snippet() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Django\n", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.startswith("# settings.py")
    return block.replace("[...,", "[")  # the reader's own apps


@pytest.mark.parametrize("credentials", [False, True])
def test_the_readmes_django_settings_work_without_credentials_and_say_so(tmp_path: Path, credentials: bool) -> None:
    """The README's settings.py with the variables unset: Django starts, and `check` gives the documented warning
    (it used to stop at a KeyError before any warning could appear)."""
    pytest.importorskip("django")
    (tmp_path / "readme_settings.py").write_text(
        _readme_settings_snippet()
        + '\nSECRET_KEY = "test"\nROOT_URLCONF = "tests._django_site"\nDATABASES = {}\nUSE_TZ = True\n')
    repository = Path(__file__).resolve().parent.parent
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CUSTOMERIO_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="readme_settings", PYTHONWARNINGS="error",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(repository)]))
    if credentials:
        env.update(CUSTOMERIO_SITE_ID="site", CUSTOMERIO_API_KEY="key")
    script = "import django; django.setup(); from django.core.management import call_command; call_command('check')"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    if credentials:
        assert "System check identified no issues" in result.stdout, result.stderr
    else:
        assert "(analytics_cio.W001) ANALYTICS_CIO has no site_id or api_key" in result.stderr


# -- Flask -------------------------------------------------------------------------------------------------------


@pytest.fixture
def make_app(server: LocalCustomerIO, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Flask apps with the extension; their clients are shut down afterwards."""
    pytest.importorskip("flask")
    from flask import Flask, request

    from analytics_cio.contrib.flask import Analytics

    monkeypatch.delenv("CUSTOMERIO_SITE_ID", raising=False)
    monkeypatch.delenv("CUSTOMERIO_API_KEY", raising=False)
    apps: list[Any] = []

    def make(analytics: Analytics | None = None, **config: Any) -> Any:
        app = Flask("test_app")
        app.config.update({"ANALYTICS_CIO_SITE_ID": SITE_ID, "ANALYTICS_CIO_API_KEY": API_KEY,
                           "ANALYTICS_CIO_HOST": server.url, "ANALYTICS_CIO_MAX_REQUESTS_PER_SECOND": None})
        app.config.update({key: value for key, value in config.items()})
        extension = analytics or Analytics()
        extension.init_app(app)
        apps.append(app)

        @app.post("/signup")
        def signup() -> tuple[str, int]:
            email = request.form["email"]
            extension.identify(email, {"plan": request.form.get("plan", "trial")})
            extension.track(email, "Signed Up")
            extension.flush()
            return "", 201

        app.extensions["test_analytics"] = extension
        return app

    yield make
    for app in apps:
        app.extensions["analytics_cio"].shutdown()


def test_the_flask_extension_sends_from_a_view(make_app: Callable[..., Any], server: LocalCustomerIO) -> None:
    app = make_app()
    response = app.test_client().post("/signup", data={"email": "ada@example.com", "plan": "pro"})
    assert response.status_code == 201
    person = server.state.person("ada@example.com")
    assert person is not None
    assert person["attributes"] == {"plan": "pro"}
    assert [e["name"] for e in person["events"]] == ["Signed Up"]


def test_a_flask_app_with_a_write_key_sends_to_data_pipelines(make_app: Callable[..., Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", "from-the-environment")  # not taken: the write key chose Pipelines
    with LocalCustomerIO(write_key="wk") as pipelines:
        app = make_app(ANALYTICS_CIO_SITE_ID=None, ANALYTICS_CIO_API_KEY=None, ANALYTICS_CIO_WRITE_KEY="wk",
                       ANALYTICS_CIO_HOST=pipelines.url)
        assert app.test_client().post("/signup", data={"email": "ada@example.com"}).status_code == 201
        assert [(m["type"], m["userId"]) for m in pipelines.messages()] == [("identify", "ada@example.com"),
                                                                             ("track", "ada@example.com")]


def test_each_flask_app_has_its_own_client(make_app: Callable[..., Any], server: LocalCustomerIO) -> None:
    from analytics_cio.contrib.flask import Analytics

    with LocalCustomerIO() as other:
        analytics = Analytics()
        first = make_app(analytics)
        second = make_app(analytics, ANALYTICS_CIO_HOST=other.url, ANALYTICS_CIO_API_VERSION="v1")
        assert first.extensions["analytics_cio"] is not second.extensions["analytics_cio"]
        first.test_client().post("/signup", data={"email": "one@example.com"})
        second.test_client().post("/signup", data={"email": "two@example.com"})
        assert [p["email"] for p in server.state.people()] == ["one@example.com"]
        assert [p["email"] for p in other.state.people()] == ["two@example.com"]
        assert other.requests[0].path.startswith("/api/v1/")


def test_capture_works_with_the_flask_test_client(make_app: Callable[..., Any], server: LocalCustomerIO) -> None:
    app = make_app()
    with capture(app.extensions["analytics_cio"]) as captured:
        app.test_client().post("/signup", data={"email": "grace@example.com"})
    assert captured.people["grace@example.com"] == {"plan": "trial"}
    assert server.request_count == 0


def test_the_facade_capture_takes_every_flask_app_built_before_or_inside_it(make_app: Callable[..., Any],
                                                                             server: LocalCustomerIO) -> None:
    before = make_app()
    with capture() as captured:
        during = make_app(ANALYTICS_CIO_SEND=False)
        before.test_client().post("/signup", data={"email": "ada@example.com", "plan": "pro"})
        during.test_client().post("/signup", data={"email": "grace@example.com"})
        analytics_cio.track("facade@example.com", "From The Facade")
    assert captured.people["ada@example.com"] == {"plan": "pro"}
    assert captured.people["grace@example.com"] == {"plan": "trial"}
    assert [(e["identifiers"]["email"], e["name"]) for e in captured.events()] == [
        ("ada@example.com", "Signed Up"), ("grace@example.com", "Signed Up"), ("facade@example.com", "From The Facade")]
    assert server.request_count == 0
    before.test_client().post("/signup", data={"email": "after@example.com"})  # the app's own client again
    assert [p["email"] for p in server.state.people()] == ["after@example.com"]
    assert during.extensions["analytics_cio"].send is False


def test_flask_configuration_mistakes_are_explained(make_app: Callable[..., Any]) -> None:
    with pytest.raises(RuntimeError, match="ANALYTICS_CIO_SITEID"):
        make_app(ANALYTICS_CIO_SITEID="x")
    with pytest.raises(RuntimeError, match=r"ANALYTICS_CIO_API_KEY.*ANALYTICS_CIO_SEND"):
        make_app(ANALYTICS_CIO_API_KEY=None)
    from flask import Flask

    from analytics_cio.contrib.flask import Analytics

    with Flask("bare").app_context(), pytest.raises(RuntimeError, match="init_app"):
        Analytics().track("u1", "X")


def test_flask_credentials_default_to_the_environment(make_app: Callable[..., Any], server: LocalCustomerIO,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", SITE_ID)
    monkeypatch.setenv("CUSTOMERIO_API_KEY", API_KEY)
    app = make_app(ANALYTICS_CIO_SITE_ID=None, ANALYTICS_CIO_API_KEY=None)
    assert app.test_client().post("/signup", data={"email": "env@example.com"}).status_code == 201
    assert server.state.person("env@example.com") is not None
