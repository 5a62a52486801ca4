"""A mobile backend endpoint that receives push tokens from the app and registers them in Customer.io.

The iOS/Android app calls it after the user grants notification permission (and when the token rotates), and on
logout. Customer.io then has each person's devices, so push campaigns reach them.

    CUSTOMERIO_SITE_ID=... CUSTOMERIO_API_KEY=... flask --app examples/mobile_backend run
    curl -X PUT localhost:5000/v1/me/devices/abc123 -H 'Authorization: Bearer user-42' \
         -H 'Content-Type: application/json' -d '{"platform": "ios", "app_version": "3.2.0", "os_version": "17.4"}'
    curl -X DELETE localhost:5000/v1/me/devices/abc123 -H 'Authorization: Bearer user-42'

Set CUSTOMERIO_HOST=http://127.0.0.1:8080 to send to a local Customer.io (`analytics-cio serve`).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from analytics_cio.contrib.flask import Analytics

analytics = Analytics()
PLATFORMS = {"ios": "ios", "iphone os": "ios", "ipados": "ios", "android": "android"}


def current_user() -> str:
    """Stands in for your authentication: the bearer token is the user id."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        abort(401)
    return token


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["ANALYTICS_CIO_HOST"] = os.environ.get("CUSTOMERIO_HOST")
    app.config.update(config or {})
    analytics.init_app(app)

    @app.put("/v1/me/devices/<token>")
    def register_device(token: str) -> ResponseReturnValue:
        user_id = current_user()
        body = request.get_json(silent=True) or {}
        platform = PLATFORMS.get(str(body.get("platform", "")).lower())
        if platform is None:
            abort(400, "platform must be ios or android")
        # Customer.io keeps these (as strings) with the device; campaigns can filter on them.
        attributes = {"push_enabled": "true" if body.get("push_enabled", True) else "false"}
        context = {
            "app": {"version": body.get("app_version")},
            "os": {"name": "iOS" if platform == "ios" else "Android", "version": body.get("os_version")},
            "device": {"model": body.get("model")},
            "locale": request.headers.get("Accept-Language", "").split(",")[0] or None,
        }
        ok, _ = analytics.register_device(user_id, token, platform, attributes, context=context)
        return jsonify(registered=ok), 202 if ok else 503

    @app.delete("/v1/me/devices/<token>")
    def remove_device(token: str) -> ResponseReturnValue:
        ok, _ = analytics.remove_device(current_user(), token)
        return ("", 204) if ok else ("", 503)

    return app


if __name__ == "__main__":
    create_app().run(debug=True)
