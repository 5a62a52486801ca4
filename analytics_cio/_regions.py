"""Customer.io's data-centre regions and their Track API hosts."""

from __future__ import annotations

from typing import Any, Final

from ._errors import ArgumentValueError

HOSTS: Final = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}


def normalise_region(region: Any) -> str:
    """``"us"`` or ``"eu"`` from any case and surrounding spaces (``"EU"``, ``" eu "``, as people write it);
    anything else is refused, naming ``region``."""
    name = region.strip().lower() if isinstance(region, str) else None
    if name not in HOSTS:
        raise ArgumentValueError("region", f"must be 'us' or 'eu' (any case), not {region!r}")
    return name
