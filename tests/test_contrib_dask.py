"""analytics_cio.contrib.dask on a real Dask cluster: a sharded export, imported by two worker processes, reaches
the local Customer.io with every event exactly once, and the counts of the shards add up."""

from __future__ import annotations

import functools
import gzip
import json
import os
from pathlib import Path

import pytest

from analytics_cio import Client, ImportCounts
from analytics_cio.testing import LocalCustomerIO

from .conftest import API_KEY, SITE_ID

if not os.environ.get("ANALYTICS_CIO_REQUIRE_DASK"):
    pytest.importorskip("distributed", reason="dask[bag,distributed] is not installed (the test extra has it)")

from distributed import Client as DaskClient
from distributed import LocalCluster

from analytics_cio.contrib.dask import import_files

SHARDS = 6
PER_SHARD = 400


def _write_shards(directory: Path) -> list[str]:
    """Segment's archive layout: a folder per day, gzipped files; a bad line in one shard."""
    paths = []
    for shard in range(SHARDS):
        day = directory / "segment-logs" / "source-1" / str(1714521600000 + shard // 3 * 86_400_000)
        day.mkdir(parents=True, exist_ok=True)
        lines = []
        for n in range(PER_SHARD):
            seq = shard * PER_SHARD + n
            lines.append(json.dumps({
                "type": "track", "event": "Order Completed", "userId": f"user-{seq % 50}",
                "messageId": f"ajs-{seq:06d}", "timestamp": "2024-05-01T12:00:00.000Z", "properties": {"seq": seq},
            }))
        if shard == 2:
            lines.append('{"type": "track", "event": "Cut')
        path = day / f"{1714521600000 + shard}.a1b2c3.gz"
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        paths.append(str(path))
    return paths


@pytest.mark.timeout(300)
def test_a_sharded_export_is_delivered_exactly_once_on_a_local_cluster(tmp_path: Path) -> None:
    _write_shards(tmp_path)
    with LocalCustomerIO(site_id=SITE_ID, api_key=API_KEY) as cio, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            DaskClient(cluster):
        make_client = functools.partial(Client, SITE_ID, API_KEY, host=cio.url, max_requests_per_second=None)
        pattern = str(tmp_path / "segment-logs" / "*" / "*" / "*.gz")
        counts = import_files(pattern, make_client)
        assert isinstance(counts, ImportCounts)
        assert (counts.delivered, counts.rejected, counts.bad) == (SHARDS * PER_SHARD, 0, 1)
        assert counts.reasons == {"bad line: invalid JSON": 1}
        events = cio.state.events()
        assert sorted(e["data"]["seq"] for e in events) == list(range(SHARDS * PER_SHARD))
        assert len({e["id"] for e in events}) == len(events)

        # A re-run (a retried job) stores nothing twice: the event ids derive from the messages.
        again = import_files(pattern, make_client)
        assert again.delivered == SHARDS * PER_SHARD
        assert len(cio.state.events()) == SHARDS * PER_SHARD
        assert cio.state.duplicates == SHARDS * PER_SHARD
