"""Every live client is shut down, within a bound, however the process ends.

- Interpreter exit: an ``atexit`` hook calls :func:`shutdown_all`.
- Children that end with ``os._exit`` skip ``atexit``. multiprocessing's (fork start method, ``Pool`` with
  ``maxtasksperchild``) run their ``util.Finalize`` callbacks first, so each process that has a client registers
  one there, in the parent and again after every fork (multiprocessing clears the registry a child inherits,
  then runs its after-fork hooks).
- billiard's pool workers (Celery prefork) call ``os._exit`` from inside their run loop, past every finalizer;
  only the pool's ``on_process_exit`` hook runs, which Celery turns into its ``worker_process_shutdown`` signal.
  That, and anything else (a Lambda handler), calls :func:`shutdown_all` itself (``contrib.celery``).
- RQ's work horses end with ``os._exit`` right after their job: ``contrib.rq``'s worker calls :func:`flush_all`
  after each job.

The set of live clients is owned here; clients add themselves when built and leave when shut down. So is the set
of shutdowns running on threads of their own (:func:`retire`: the default client a module setting replaced):
:func:`shutdown_all` waits for them too, or a process that exits right after a setting change would kill them
half way (they are daemon threads) and the old client's messages would be neither delivered nor reported.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import Client

logger = logging.getLogger("analytics_cio")

_live: weakref.WeakSet[Client] = weakref.WeakSet()
_retiring: set[threading.Thread] = set()  # threads shutting a client down (set.add/discard are atomic)
_finalizer_pid = 0  # the process whose multiprocessing/billiard registries hold our finalizer


class _Anchor:
    """Something to hang multiprocessing's after-fork hook on (it keeps a weak reference to it)."""


_anchor = _Anchor()


def track(client: Client) -> None:
    """Shut ``client`` down when this process ends."""
    _live.add(client)
    _register_finalizers()


def forget(client: Client) -> None:
    _live.discard(client)


def retire(client: Client) -> None:
    """Shut ``client`` down on a thread of its own: the caller does not wait, :func:`shutdown_all` does."""
    thread = threading.Thread(target=_retire, args=(client,), name="analytics-cio-retire", daemon=True)
    _retiring.add(thread)
    thread.start()


def _retire(client: Client) -> None:
    try:
        client.shutdown()
    finally:
        _retiring.discard(threading.current_thread())


def wait_retired(deadline: float | None) -> bool:
    """Wait until every :func:`retire` has finished, or until ``deadline`` (monotonic); True if all did."""
    for thread in list(_retiring):
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        thread.join(None if wait is None or wait > threading.TIMEOUT_MAX else wait)  # (inf: no limit)
    return not any(thread.is_alive() for thread in list(_retiring))


def shutdown_all(timeout: float | None = None) -> bool:
    """Shut down every client of this process: deliver what they hold, and report what cannot be delivered.

    Bounded by ``timeout`` seconds in total (default: the largest ``shutdown_timeout`` among them); the clients
    drain side by side, so one stuck client does not eat the others' time. True when everything was delivered
    or reported. Call it wherever a process ends without running ``atexit`` hooks, or before a serverless
    runtime freezes the process.
    """
    clients = [client for client in list(_live) if not client._closed]
    total = timeout if timeout is not None else max((client.shutdown_timeout for client in clients), default=None)
    deadline = None if total is None else time.monotonic() + total
    done = shutdown_clients(clients, total)
    return wait_retired(deadline) and done


def shutdown_clients(clients: Iterable[Client], timeout: float | None = None) -> bool:
    """:func:`shutdown_all` for the given clients only."""
    open_clients = [client for client in clients if not client._closed]
    if not open_clients:
        return True
    total = timeout if timeout is not None else max(client.shutdown_timeout for client in open_clients)
    deadline = time.monotonic() + total
    for client in open_clients:
        client._begin_shutdown()
    done = True
    for client in open_clients:
        try:
            done = client._finish_shutdown(deadline) and done
        except Exception:
            logger.exception("analytics_cio: shutting a client down failed")
            done = False
    return done


def flush_all(timeout: float | None = None) -> bool:
    """Flush every client of this process that holds something, bounded by ``timeout`` seconds in total.

    For the end of a unit of work in a process that may end without warning (a Celery task, an RQ job). A
    client with nothing queued costs a counter read: no thread is started, nothing waits. True when everything
    queued was delivered or reported in time.
    """
    return flush_clients(list(_live), timeout)


def flush_clients(clients: Iterable[Client], timeout: float | None = None) -> bool:
    """:func:`flush_all` for the given clients only."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for client in clients:
        if client._closed or client.queue_size == 0:
            continue
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done = client.flush(left) and done
        except Exception:
            logger.exception("analytics_cio: flushing a client failed")
            done = False
    return done


def _at_exit() -> None:
    try:
        shutdown_all()
    except Exception:
        logger.exception("analytics_cio: shutdown at exit failed")


def _register_finalizers() -> None:
    """Once per process: multiprocessing's exit finalizers call shutdown_all (billiard shares its registry)."""
    global _finalizer_pid
    if _finalizer_pid == os.getpid():
        return
    _finalizer_pid = os.getpid()
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _at_exit, exitpriority=100)
    multiprocessing.util.register_after_fork(_anchor, _after_fork)


def _after_fork(_: object = None) -> None:
    global _finalizer_pid
    _finalizer_pid = 0
    if _live:
        _register_finalizers()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
