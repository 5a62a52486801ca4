"""Settings of the example project. The analytics_cio part is INSTALLED_APPS and ANALYTICS_CIO."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "shop.urls"
USE_TZ = True
DATABASES: dict[str, dict[str, str]] = {}  # the example stores nothing

INSTALLED_APPS = [
    "django.contrib.auth",  # request.user: who is signed in
    "django.contrib.contenttypes",
    "analytics_cio.contrib.django",  # configures analytics_cio from ANALYTICS_CIO, flushes at shutdown
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",  # keeps each visitor's anonymous id (shop/views.py)
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"  # no database needed for the example

# Every key is an analytics_cio setting (the Client options). site_id and api_key default to
# CUSTOMERIO_SITE_ID and CUSTOMERIO_API_KEY from the environment.
ANALYTICS_CIO = {
    "region": os.environ.get("CUSTOMERIO_REGION", "us"),
    "host": os.environ.get("CUSTOMERIO_HOST"),  # e.g. http://127.0.0.1:8080 for `analytics-cio serve`
}
