"""The Django app behind ``analytics_cio.contrib.django``."""

from __future__ import annotations

import atexit
import importlib
import os
from collections.abc import Mapping
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

import analytics_cio

SETTING = "ANALYTICS_CIO"
_ENVIRONMENT = {"site_id": "CUSTOMERIO_SITE_ID", "api_key": "CUSTOMERIO_API_KEY"}
_registered = False


def configure(options: Mapping[str, Any] | None) -> None:
    """Set the ``analytics_cio`` module settings from ``options`` (``settings.ANALYTICS_CIO``)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(analytics_cio._SETTINGS))
    if unknown:
        raise ImproperlyConfigured(
            f"{SETTING} has unknown option(s) {', '.join(map(repr, unknown))}; the options are: "
            + ", ".join(sorted(analytics_cio._SETTINGS))
        )
    for name, variable in _ENVIRONMENT.items():
        if not options.get("write_key") and not options.get(name) and os.environ.get(variable):
            options[name] = os.environ[variable]  # Track API credentials, unless a write key chose Data Pipelines
    for name, value in options.items():
        setattr(analytics_cio, name, value)


def shutdown() -> None:
    """Deliver what is queued, then stop the client: run when the process exits."""
    analytics_cio.shutdown()


def _register_shutdown() -> None:
    """Flush when the process ends. The library's own exit hook covers plain Python (runserver, gunicorn,
    Celery); uWSGI skips Python's exit hooks unless told, so its own hook is chained too."""
    global _registered
    if _registered:
        return
    _registered = True
    atexit.register(shutdown)
    try:
        uwsgi = importlib.import_module("uwsgi")  # only importable inside a uWSGI worker
    except ImportError:
        return
    previous = getattr(uwsgi, "atexit", None)

    def at_uwsgi_exit() -> None:
        shutdown()
        if callable(previous):
            previous()

    setattr(uwsgi, "atexit", at_uwsgi_exit)  # noqa: B010 - uWSGI calls the function named so


def check_credentials(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check``: without credentials every call would fail."""
    options = getattr(settings, SETTING, None) or {}
    if options.get("send") is False or options.get("transport") is not None or options.get("write_key"):
        return []
    missing = [name for name, variable in _ENVIRONMENT.items()
               if not options.get(name) and not os.environ.get(variable)]
    if not missing:
        return []
    return [checks.Warning(
        f"{SETTING} has no {' or '.join(missing)}: calls to analytics_cio will fail.",
        hint=f"Set {SETTING}['site_id'] and ['api_key'] (or CUSTOMERIO_SITE_ID and CUSTOMERIO_API_KEY), "
             f"or {SETTING}['send'] = False where nothing should be sent.",
        id="analytics_cio.W001",
    )]


class AnalyticsCioConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Configures the ``analytics_cio`` facade when Django starts."""

    name = "analytics_cio.contrib.django"
    label = "analytics_cio"
    verbose_name = "analytics-cio (Customer.io)"
    default = True

    def ready(self) -> None:
        configure(getattr(settings, SETTING, None))
        checks.register(check_credentials)
        _register_shutdown()
