"""ULIDs: Customer.io de-duplicates events by a ULID ``id``, so every message id we generate is one."""

from __future__ import annotations

import hashlib
import os
import random
import re
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # two base-32 digits (10 bits) per lookup
_ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")

# A private generator: the application may seed the global `random` (tests often do), which would make two
# processes produce the same ids, and Customer.io would drop one event as a duplicate. Seeded from the OS,
# and re-seeded in a forked child for the same reason. 80 random bits per millisecond make collisions moot.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)
_getrandbits = _rng.getrandbits
_last_ms = -1
_last_prefix = ""


def _time_part(ms: int) -> str:
    """48 bits of milliseconds as ULID's first 10 characters."""
    p = _PAIRS
    return p[(ms >> 40) & 1023] + p[(ms >> 30) & 1023] + p[(ms >> 20) & 1023] + p[(ms >> 10) & 1023] + p[ms & 1023]


def _other_part(r: int) -> str:
    """80 bits as ULID's last 16 characters."""
    p = _PAIRS
    return (
        p[r >> 70] + p[(r >> 60) & 1023] + p[(r >> 50) & 1023] + p[(r >> 40) & 1023]
        + p[(r >> 30) & 1023] + p[(r >> 20) & 1023] + p[(r >> 10) & 1023] + p[r & 1023]
    )


def new_ulid() -> str:
    """A new ULID: 48 bits of milliseconds since the epoch, then 80 random bits, 26 characters."""
    global _last_ms, _last_prefix
    ms = time.time_ns() // 1_000_000
    if ms != _last_ms:  # the 10-character time prefix changes at most once a millisecond
        _last_prefix = _time_part(ms)
        _last_ms = ms
    return _last_prefix + _other_part(_getrandbits(80))


def is_ulid(value: object) -> bool:
    """Whether ``value`` is a string in canonical (upper-case Crockford) ULID form."""
    return isinstance(value, str) and len(value) == 26 and _ULID_RE.fullmatch(value) is not None


def derived_ulid(milliseconds: int, seed: bytes) -> str:
    """A ULID that is always the same for the same ``seed`` and time: the time part is ``milliseconds`` (clamped
    to ULID's 48 bits), the other 80 bits are the first 80 bits of the SHA-256 of ``seed``."""
    ms = max(0, min(milliseconds, 2**48 - 1))
    return _time_part(ms) + _other_part(int.from_bytes(hashlib.sha256(seed).digest()[:10], "big"))
