"""RQ workers: every event a job tracks is delivered before the job's process ends.

    rq worker --worker-class analytics_cio.contrib.rq.Worker

RQ runs each job in a work horse forked for it, which ends with ``os._exit`` as soon as the job is done: past
``atexit`` and every finalizer, so what the job queued would go with it. These workers flush every client of
the process after each job (bounded by ``flush_timeout``; a counter read when nothing is queued), in the work
horse, before it exits. RQ has no process-wide hooks, hence a worker class; with a worker class of your own, put
:class:`FlushAfterJob` first among its bases.
"""

from __future__ import annotations

from typing import Any

import rq

from .. import _lifecycle

__all__ = ["FlushAfterJob", "SimpleWorker", "Worker"]


class FlushAfterJob:
    """Mixin for an ``rq`` worker class: flush every client after each job, however the job ends.

    ``flush_timeout`` (seconds, class attribute) bounds the wait after one job.
    """

    flush_timeout: float = 5.0

    def perform_job(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().perform_job(*args, **kwargs)  # type: ignore[misc]
        finally:
            _lifecycle.flush_all(self.flush_timeout)


class Worker(FlushAfterJob, rq.Worker):
    """``rq.Worker`` (a work horse forked per job) that flushes after each job."""


class SimpleWorker(FlushAfterJob, rq.SimpleWorker):
    """``rq.SimpleWorker`` (jobs on the worker's own process) that flushes after each job."""
