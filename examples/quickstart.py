"""The first script: tell Customer.io who someone is and what they did, and deliver it before exiting.

Against your workspace:
    CUSTOMERIO_SITE_ID=... CUSTOMERIO_API_KEY=... python examples/quickstart.py

Against a local Customer.io (run `analytics-cio serve` in another terminal, then open http://127.0.0.1:8080):
    CUSTOMERIO_SITE_ID=local CUSTOMERIO_API_KEY=local CUSTOMERIO_HOST=http://127.0.0.1:8080 \
        python examples/quickstart.py
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Sequence
from typing import Any

import analytics_cio as analytics


def main() -> int:
    if not os.environ.get("CUSTOMERIO_SITE_ID") or not os.environ.get("CUSTOMERIO_API_KEY"):
        print("Set CUSTOMERIO_SITE_ID and CUSTOMERIO_API_KEY (any values work with a local Customer.io, "
              "see the docstring).", file=sys.stderr)
        return 2
    # The same module-level API as Segment's analytics-python; only the credentials differ.
    analytics.site_id = os.environ["CUSTOMERIO_SITE_ID"]
    analytics.api_key = os.environ["CUSTOMERIO_API_KEY"]
    analytics.host = os.environ.get("CUSTOMERIO_HOST")  # None: Customer.io's US region (analytics.region = "eu")

    failures: list[str] = []

    def on_error(error: Exception, messages: Sequence[Any]) -> None:
        failures.append(f"{error} ({len(messages)} messages)")

    analytics.on_error = on_error

    signed_up = dt.datetime.now(dt.timezone.utc)
    analytics.identify("user-1001", {"email": "grace@example.com", "name": "Grace Hopper", "plan": "trial",
                                     "createdAt": signed_up})
    analytics.track("user-1001", "Trial Started", {"trial_days": 14, "source": "quickstart"})
    analytics.page("user-1001", "Docs", "Getting Started", {"url": "https://example.com/docs/start"})

    # Calls return at once; a background thread delivers them. shutdown() delivers what is left, then stops.
    analytics.shutdown()
    if failures:
        print("Not delivered:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print("Delivered: identify user-1001, track Trial Started, page Getting Started.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
