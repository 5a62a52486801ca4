"""customerio-cdp-analytics's import paths, resolved to analytics_cio: what a user of that library gets by changing
one import, made importable under the old names so that library's own test suite runs against this client.

``from customerio import analytics`` is the module facade itself; ``customerio.analytics.client.Client`` takes
that library's positional order (the write key first); ``customerio.analytics.version.VERSION`` is this client's.
``ANALYTICS_CIO_CDP_HOST`` (set by tests/test_cdp_compat.py) is the default host: its local Customer.io, since
the suite's own default, https://cdp.customer.io, is not reachable from CI. Only tests put this on ``sys.path``.
"""

from __future__ import annotations

import sys

import analytics_cio

from . import _client, _version

sys.modules[f"{__name__}.analytics"] = analytics_cio
sys.modules[f"{__name__}.analytics.client"] = _client
sys.modules[f"{__name__}.analytics.version"] = _version
analytics = analytics_cio
