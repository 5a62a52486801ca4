"""Django integration: configures ``analytics_cio`` from ``settings.ANALYTICS_CIO`` and flushes at shutdown.

    # settings.py
    INSTALLED_APPS = [..., "analytics_cio.contrib.django"]
    ANALYTICS_CIO = {"site_id": env("CUSTOMERIO_SITE_ID"), "api_key": env("CUSTOMERIO_API_KEY"), "region": "eu"}

    # anywhere
    import analytics_cio as analytics
    analytics.track(str(request.user.pk), "Invoice Paid", {"amount": 42})

Every key of ``ANALYTICS_CIO`` is a module setting of ``analytics_cio`` (the same names as the ``Client``
options). ``site_id`` and ``api_key`` default to ``CUSTOMERIO_SITE_ID`` / ``CUSTOMERIO_API_KEY`` from the
environment. ``manage.py check`` warns when neither credentials nor ``"send": False`` are set.
"""

from __future__ import annotations

from .apps import AnalyticsCioConfig, configure, shutdown

__all__ = ["AnalyticsCioConfig", "configure", "shutdown"]
