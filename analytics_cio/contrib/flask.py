"""Flask extension: a ``Client`` per app, configured from ``app.config``.

    from analytics_cio.contrib.flask import Analytics

    analytics = Analytics()            # in your extensions module

    def create_app():
        app = Flask(__name__)
        app.config["ANALYTICS_CIO_SITE_ID"] = os.environ["CUSTOMERIO_SITE_ID"]
        app.config["ANALYTICS_CIO_API_KEY"] = os.environ["CUSTOMERIO_API_KEY"]
        analytics.init_app(app)
        return app

    analytics.track(user_id, "Signed Up", {"plan": "pro"})     # in a view: the current app's client

Every ``Client`` option is read from ``ANALYTICS_CIO_<OPTION>`` (``ANALYTICS_CIO_REGION``,
``ANALYTICS_CIO_HOST``, ``ANALYTICS_CIO_SYNC_MODE``, ...). The site id and API key default to
``CUSTOMERIO_SITE_ID`` / ``CUSTOMERIO_API_KEY`` from the environment. The client is also at
``app.extensions["analytics_cio"]``; it delivers what it holds when the process exits. In tests, ``capture()``
and the ``cio_capture`` fixture capture it along with the module facade.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from flask import Flask, current_app

from .._client import Client, Result
from . import _clients

PREFIX = "ANALYTICS_CIO_"
EXTENSION = "analytics_cio"
_OPTIONS = frozenset(name for name in inspect.signature(Client).parameters if name != "self")
_ENVIRONMENT = {"site_id": "CUSTOMERIO_SITE_ID", "api_key": "CUSTOMERIO_API_KEY"}


def client_options(config: Any) -> dict[str, Any]:
    """The ``Client`` options in a Flask config; unknown ``ANALYTICS_CIO_*`` keys are an error."""
    options = {key[len(PREFIX):].lower(): value for key, value in config.items() if key.startswith(PREFIX)}
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        names = ", ".join(PREFIX + name.upper() for name in unknown)
        raise RuntimeError(f"unknown analytics_cio option(s) {names}; the options are: "
                           + ", ".join(PREFIX + name.upper() for name in sorted(_OPTIONS)))
    if options.get("write_key"):  # Data Pipelines (ANALYTICS_CIO_WRITE_KEY): no Track API credentials
        return options
    for name, variable in _ENVIRONMENT.items():
        if not options.get(name) and os.environ.get(variable):
            options[name] = os.environ[variable]
    return options


class Analytics:
    """The extension. Its calls go to the current app's client (``analytics.client``)."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        options = client_options(app.config)
        if options.get("send", True) and options.get("transport") is None and not options.get("write_key"):
            missing = [name for name in ("site_id", "api_key") if not options.get(name)]
            if missing:
                raise RuntimeError(
                    f"analytics_cio needs {' and '.join(PREFIX + m.upper() for m in missing)} in app.config (or "
                    "CUSTOMERIO_SITE_ID / CUSTOMERIO_API_KEY in the environment), or ANALYTICS_CIO_WRITE_KEY for "
                    "Customer.io Data Pipelines; set ANALYTICS_CIO_SEND = False where nothing should be sent"
                )
        client = Client(**options)
        app.extensions[EXTENSION] = client
        _clients.built(client)  # so that capture() and cio_capture capture this app's calls too

    @property
    def client(self) -> Client:
        """The current app's client."""
        try:
            client: Client = current_app.extensions[EXTENSION]
        except KeyError:
            raise RuntimeError("analytics_cio was not initialised for this app: call analytics.init_app(app)"
                               ) from None
        return client

    # The calls of analytics-python; each is Client's (see its documentation for the arguments).

    def identify(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.identify(*args, **kwargs)

    def track(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.track(*args, **kwargs)

    def page(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.page(*args, **kwargs)

    def screen(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.screen(*args, **kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.group(*args, **kwargs)

    def alias(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.alias(*args, **kwargs)

    def register_device(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.register_device(*args, **kwargs)

    def remove_device(self, *args: Any, **kwargs: Any) -> Result:
        return self.client.remove_device(*args, **kwargs)

    def flush(self, timeout: float | None = None) -> bool:
        return self.client.flush(timeout)
