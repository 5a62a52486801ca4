"""Customer.io's data-centre regions and their hosts: the Track API's and Data Pipelines'."""

from __future__ import annotations

from typing import Any, Final

from ._errors import ArgumentValueError

HOSTS: Final = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
PIPELINES_HOSTS: Final = {"us": "https://cdp.customer.io", "eu": "https://cdp-eu.customer.io"}


def normalise_region(region: Any) -> str:
    """``"us"`` or ``"eu"`` from any case and surrounding spaces (``"EU"``, ``" eu "``, as people write it);
    anything else is refused, naming ``region``."""
    name = region.strip().lower() if isinstance(region, str) else None
    if name not in HOSTS:
        raise ArgumentValueError("region", f"must be 'us' or 'eu' (any case), not {region!r}")
    return name
