"""Dask: a Segment export of many files imported on a Dask cluster, every file a partition.

    from distributed import Client as DaskClient
    from analytics_cio import Client
    from analytics_cio.contrib.dask import import_files

    def make_client():                  # runs on the workers: one Customer.io client per partition
        return Client(os.environ["CUSTOMERIO_SITE_ID"], os.environ["CUSTOMERIO_API_KEY"],
                      max_requests_per_second=100 / 8)      # the account's budget shared by 8 workers

    DaskClient("scheduler:8786")        # or a LocalCluster; without one, Dask's default scheduler
    counts = import_files("s3://bucket/segment-logs/*/*/*.gz", make_client)
    print(counts.delivered, counts.rejected, counts.reasons)

Each file is read line by line on a worker (``dask.bag.read_text``, gzip by its suffix) and imported with
:func:`analytics_cio.import_partition` through a client built for it, shut down after it. A task Dask retries
imports its file again; Customer.io stores each event once, because every event id derives from its message.
Lines of one person in different files may be imported at the same time by different workers: files are
independent partitions (within a file, lines go in order).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from typing import Any, Callable

from .._client import Client
from .._import_counts import ImportCounts
from .._importer import import_partition


def import_files(paths: str | Sequence[str], make_client: Callable[[], Client], *, scheduler: Any = None,
                 settle_every: int = 100_000) -> ImportCounts:
    """Import every line of ``paths`` (a glob, or a list of paths or globs; any fsspec URL Dask reads) and
    return the counts of all files together. ``make_client()`` is called on the workers, once per file.
    ``scheduler`` is passed to ``compute()`` (default: the active Dask client, else Dask's default)."""
    import dask.bag as db

    read_text: Any = db.read_text  # (untyped)
    bag = read_text(paths, blocksize=None, compression="infer")  # blocksize None: one partition per file
    per_file = bag.map_partitions(import_lines, make_client, settle_every=settle_every)
    results: list[ImportCounts] = per_file.compute(scheduler=scheduler)
    return functools.reduce(operator.add, results, ImportCounts())


def import_lines(lines: Iterable[str | bytes], make_client: Callable[[], Client], *,
                 settle_every: int = 100_000) -> list[ImportCounts]:
    """One partition through a client of its own: ``[counts]`` (a partition of one item, as Dask bags want)."""
    client = make_client()
    try:
        return [import_partition(lines, client, settle_every=settle_every)]
    finally:
        client.shutdown()
