"""Django integration: configures ``analytics_cio`` from ``settings.ANALYTICS_CIO`` and flushes at shutdown.

    # settings.py
    INSTALLED_APPS = [..., "analytics_cio.contrib.django"]
    ANALYTICS_CIO = {"region": "eu"}     # site_id / api_key: CUSTOMERIO_SITE_ID / CUSTOMERIO_API_KEY by default

    # in a view: the signed-in user's id, else None, and always the session's anonymous id
    import analytics_cio as analytics
    user_id = str(request.user.pk) if request.user.is_authenticated else None
    anonymous_id = request.session.setdefault("analytics_anonymous_id", uuid.uuid4().hex)
    analytics.track(user_id, "Invoice Paid", {"amount": 42}, anonymous_id=anonymous_id)

Every key of ``ANALYTICS_CIO`` is a module setting of ``analytics_cio`` (the same names as the ``Client``
options). ``site_id`` and ``api_key`` default to ``CUSTOMERIO_SITE_ID`` / ``CUSTOMERIO_API_KEY`` from the
environment. ``manage.py check`` warns when neither credentials nor ``"send": False`` are set.
"""

from __future__ import annotations

from .apps import AnalyticsCioConfig, configure, shutdown

__all__ = ["AnalyticsCioConfig", "configure", "shutdown"]
