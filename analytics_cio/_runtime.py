"""What the hosting process allows: whether a background thread ever gets to run.

uWSGI started without Python threads (no ``--enable-threads``, no ``--threads N`` above 1; the default before
uWSGI 2.0.27) keeps the GIL while a worker waits for the next request, so a thread the app starts runs only in
the moments a request spends waiting inside Python: an idle worker never delivers what it queued. There the
client sends on the calling thread (see ``Client``), and this module says so once per process, with the fix.

This module owns ``_warned`` (one warning per process).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

logger = logging.getLogger("analytics_cio")

_lock = threading.Lock()
_warned = False

_THREAD_OPTIONS = ("enable-threads", "threads", b"enable-threads", b"threads")


def threads_starve() -> bool:
    """True inside a uWSGI process whose Python threads only run while a request runs Python code."""
    uwsgi = _uwsgi()
    if uwsgi is None:
        return False
    has_threads = getattr(uwsgi, "has_threads", None)  # what uWSGI decided, after --threads N and defaults
    if has_threads is not None:
        return not has_threads
    options = getattr(uwsgi, "opt", {})
    return not any(option in options for option in _THREAD_OPTIONS)


def warn_threads_starve() -> None:
    """Once per process: say that calls send on the calling thread here, and how to get background sending."""
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    logger.warning(
        "analytics_cio: uWSGI runs without Python threads, so a background thread would only run during "
        "requests; each call sends on the calling thread instead (as with sync_mode=True). Start uWSGI with "
        "--enable-threads (or --threads N) to send in the background."
    )


def _uwsgi() -> Any:
    """uWSGI's embedded module: uWSGI imports it before it loads the app, so a dict lookup tells (an import
    attempt would scan ``sys.path`` for every client built). A stub without ``opt`` is not it."""
    module = sys.modules.get("uwsgi")
    return module if hasattr(module, "opt") else None
