"""Sending to Customer.io Data Pipelines: Segment-spec messages as they are, batched to ``POST /v1/batch``.

The third transport beside the Track API's two (``_transport``): the worker, the retry loop (``_delivery``), the
spool, fork handling and shutdown are the same; only the wire differs. No Track API mapping runs on this path:
Customer.io maps each message on its side, and its other destinations see it too.

Customer.io's documented limits (Pipelines API, "Rate and payload limits"): a batch request at most 500 KB, each
call in it at most 32 KB. The client checks each message's size when it is encoded and reports one that is too
large to ``on_error`` (a :class:`~analytics_cio.LimitError`); the worker cuts batches below the request limit.

Authentication is HTTP Basic with the source's API key as the user name and no password. Keys of the newer
region-prefixed form (``pk_us_…``, ``sk_eu_…``) go as a Bearer token, as Customer.io's own Python client
(customerio-cdp-analytics 1.1.0) sends them, and their region picks the host when none is given.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ._limits import OP_BYTES
from ._regions import PIPELINES_HOSTS, normalise_region
from ._transport import HttpTransport, Outcome, WireOp

logger = logging.getLogger("analytics_cio")

PATH: Final = "/v1/batch"
MESSAGE_BYTES: Final = OP_BYTES  # 32 KB per call in a batch
REQUEST_BYTES: Final = 500_000  # a batch request below 500 KB
_REGION_KEY: Final = re.compile(r"^(pk|sk)_(us|eu)_")
_SENT_AT: Final = b'"2026-01-01T00:00:00.000Z"'  # the shape of every sentAt: only its length matters here
_REFUSED_WHOLE: Final = frozenset({400, 413})


def key_region(write_key: str) -> str | None:
    """The region a region-prefixed API key (``sk_eu_…``) belongs to; None for a plain write key."""
    found = _REGION_KEY.match(write_key)
    return found.group(2) if found else None


def pipelines_url(write_key: str, region: str, host: str | None) -> str:
    """Where a write key's messages go: ``host`` when given, else its own region's host (a region-prefixed key
    decides; a plain key goes to ``region``'s)."""
    if host:
        return host
    return PIPELINES_HOSTS[key_region(write_key) or normalise_region(region)]


class PipelinesTransport(HttpTransport):
    """Customer.io Data Pipelines: every attempt is one ``POST /v1/batch`` of Segment-spec messages.

    ``segment = True`` tells the client to hand it messages as they are (no Track API mapping). Owns its HTTP
    pool (``HttpTransport``); the worker owns what is queued and the retries.
    """

    segment: Final = True
    # The items' budget: the envelope around them must still fit below the request limit. The worker counts one
    # separator per item, one more than the commas, so a full request stays strictly smaller.
    max_batch_bytes = REQUEST_BYTES - len(b'{"batch":[],"sentAt":' + _SENT_AT + b"}")
    max_op_bytes = MESSAGE_BYTES

    def __init__(self, write_key: str, **options: Any) -> None:
        key = write_key.strip()  # keys read from secret files often end in a newline
        region = normalise_region(options.pop("region", "us"))
        options["host"] = pipelines_url(key, region, options.get("host"))
        super().__init__(key, "", region=region, **options)
        own = key_region(key)
        if own is not None:
            self._headers = {**self._headers, "Authorization": f"Bearer {key}"}
            for other, url in PIPELINES_HOSTS.items():
                if other != own and self.base_url == url:
                    logger.warning("analytics_cio: a %s API key is being sent to the %s host %s", own.upper(),
                                   other.upper(), url)
        # Without it Data Pipelines answers 200 to a message it refuses (and drops it): strict mode says 400/401.
        self._headers["X-Strict-Mode"] = "1"

    def prepare(self, op: Mapping[str, Any], message: Any) -> WireOp:
        """``op`` is the message itself (nothing is mapped on this path)."""
        return WireOp(self.encode(op), message)

    def send(self, ops: Sequence[WireOp], stop: threading.Event | None = None) -> list[Outcome]:
        if not ops:
            return []
        if not self.rate_limiter.acquire(stop):
            return [Outcome(False, retryable=True, reason="stopped before sending")] * len(ops)
        outcome = self.request("POST", PATH, batch_body(ops))
        if outcome.status in _REFUSED_WHOLE and len(ops) > 1:
            # One refused message must not take the rest of its batch with it: halve until it stands alone.
            half = len(ops) // 2
            return self.send(ops[:half], stop) + self.send(ops[half:], stop)
        return [outcome] * len(ops)


def batch_body(ops: Sequence[WireOp]) -> bytes:
    """``{"batch": [...], "sentAt": "..."}``: the messages as encoded, and when this attempt left."""
    parts = [op.data for op in ops]
    # One join, so a 500 KB body is built once rather than copied by each concatenation.
    parts[0] = b'{"batch":[' + parts[0]
    parts[-1] = parts[-1] + b'],"sentAt":"' + sent_at().encode() + b'"}'
    return b",".join(parts)


def sent_at() -> str:
    """Now, as ISO 8601 UTC with milliseconds (the length of :data:`_SENT_AT`)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
