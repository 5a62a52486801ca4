"""A Flask app that tells Customer.io about sign-ups, logins and upgrades, with the analytics_cio extension.

    CUSTOMERIO_SITE_ID=... CUSTOMERIO_API_KEY=... flask --app examples/flask_app run
    curl -X POST localhost:5000/signup -H 'Content-Type: application/json' \
         -d '{"email": "ada@example.com", "plan": "trial"}'

Set CUSTOMERIO_HOST=http://127.0.0.1:8080 to send to a local Customer.io (`analytics-cio serve`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from analytics_cio.contrib.flask import Analytics

analytics = Analytics()


def user_id_for(email: str) -> str:
    """Your database's primary key in a real app; here one derived from the email."""
    return "u-" + hashlib.sha256(email.lower().encode()).hexdigest()[:12]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    # ANALYTICS_CIO_SITE_ID / _API_KEY default to CUSTOMERIO_SITE_ID / CUSTOMERIO_API_KEY from the environment.
    app.config["ANALYTICS_CIO_HOST"] = os.environ.get("CUSTOMERIO_HOST")
    app.config["ANALYTICS_CIO_REGION"] = os.environ.get("CUSTOMERIO_REGION", "us")
    app.config.update(config or {})
    analytics.init_app(app)

    @app.post("/signup")
    def signup() -> ResponseReturnValue:
        body = request.get_json(silent=True) or {}
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            abort(400, "email is required")
        user_id = user_id_for(email)
        analytics.identify(user_id, {"email": email, "plan": body.get("plan", "trial")},
                           anonymous_id=request.headers.get("X-Anonymous-Id"))
        analytics.track(user_id, "Signed Up", {"plan": body.get("plan", "trial")})
        return jsonify(id=user_id), 201

    @app.post("/login")
    def login() -> ResponseReturnValue:
        email = (request.get_json(silent=True) or {}).get("email")
        if not isinstance(email, str):
            abort(400, "email is required")
        analytics.track(user_id_for(email), "Logged In", context={"ip": request.remote_addr,
                                                                   "userAgent": request.user_agent.string})
        return "", 204

    @app.post("/upgrade")
    def upgrade() -> ResponseReturnValue:
        body = request.get_json(silent=True) or {}
        user_id = user_id_for(str(body.get("email")))
        analytics.identify(user_id, {"plan": "pro"})
        analytics.track(user_id, "Order Completed", {"order_id": body.get("order_id"), "total": body.get("total"),
                                                     "currency": "EUR"})
        return "", 204

    return app


if __name__ == "__main__":
    create_app().run(debug=True)
