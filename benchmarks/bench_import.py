"""Import speed (issue 14): ``analytics-cio import`` of generated Segment export lines with ``--workers 1`` and
``--workers 2``, beside the live client's events/s, in one run against one fast local server.

    python benchmarks/bench_import.py                      # 1,000,000 lines, workers 1 and 2, live client 20,000
    python benchmarks/bench_import.py --lines 100000 --workers 1,2,4 --repeat 3

The lines are the throughput benchmark's workload (same seed) written as a Segment export would write it: one
JSON message a line, datetimes as ISO-8601 strings, a ``messageId`` that is not a ULID (as Segment's are not), a
``timestamp``, ``receivedAt`` and a ``context``. Each import is the real command in a fresh process
(``python -m analytics_cio import FILE --rate 0 --progress none --workers N``), timed from its start until it
exited *and* the server had every line; the live client is ``bench_throughput.py``'s ``cio-v2`` run (20,000
calls, then ``flush()``), run before and after the imports so that both see the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

from _harness import (
    API_KEY,
    REPO_ROOT,
    SITE_ID,
    add_common_arguments,
    announce,
    make_workload,
    markdown_table,
    spawn_worker,
    write_json,
)
from fast_server import FastServer

DEFAULT_JSON = str(Path(__file__).resolve().parent / "results" / "import.json")
_BASE = datetime(2024, 5, 1, tzinfo=timezone.utc)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _iso(item) for key, item in value.items()}
    return value


def write_export(path: Path, lines: int) -> None:
    """``lines`` Segment messages, one a line; every one carries its ``bench_seq``."""
    chunk = 100_000
    with path.open("w", encoding="utf-8") as out:
        for start in range(0, lines, chunk):
            workload = make_workload(min(lines, start + chunk))[start:]  # a prefix of a longer run
            rows = []
            for offset, (kind, user_id, name, payload) in enumerate(workload):
                seq = start + offset
                stamp = (_BASE + timedelta(milliseconds=seq * 37)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                message: dict[str, Any] = {
                    "type": kind, "userId": user_id, "messageId": f"ajs-next-{seq:010d}", "timestamp": stamp,
                    "receivedAt": stamp, "context": {"ip": "203.0.113.9",
                                                     "library": {"name": "analytics.js", "version": "4.1.0"}},
                }
                if kind == "identify":
                    message["traits"] = _iso(payload)
                else:
                    message["event"], message["properties"] = name, _iso(payload)
                rows.append(json.dumps(message, separators=(",", ":")))
            out.write("\n".join(rows) + "\n")


def run_import(server: FastServer, export: Path, lines: int, workers: int, timeout: float) -> dict[str, Any]:
    server.reset(fail_rate=0.0)
    checkpoint = export.with_name(f"bench-{workers}.checkpoint")
    command = [sys.executable, "-m", "analytics_cio", "import", str(export), "--host", server.url, "--site-id",
               SITE_ID, "--api-key", API_KEY, "--rate", "0", "--progress", "none", "--workers", str(workers),
               "--checkpoint", str(checkpoint), "--restart"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = server.cpu_seconds()
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    exited = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = server.wait_quiet()
    if done.returncode != 0 or stats["unique_seqs"] != lines:
        return {"workers": workers, "error": f"exit {done.returncode}, {stats['unique_seqs']} of {lines} lines "
                f"delivered: {done.stderr[-2000:]}"}
    seconds = max(exited, stats.get("last_delivery_time") or exited) - start
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    server_cpu_after = server.cpu_seconds()
    return {
        "workers": workers, "lines": lines, "seconds": seconds, "lines_per_s": lines / seconds,
        "cpu_seconds": cpu, "cpu_us_per_line": cpu * 1e6 / lines, "requests": stats["requests"],
        "duplicates": stats["duplicates"],
        "server_cpu_s": None if server_cpu is None or server_cpu_after is None else server_cpu_after - server_cpu,
        "summary": done.stdout.strip().splitlines()[0] if done.stdout.strip() else "",
    }


def run_live(server: FastServer, events: int, timeout: float) -> dict[str, Any]:
    server.reset(fail_rate=0.0)
    worker = spawn_worker({"lib": "cio-v2", "url": server.url, "events": events, "mode": "throughput"}, timeout)
    if "error" in worker:
        return {"error": worker["error"]}
    stats = server.wait_quiet()
    return {"events": events, "events_per_s": stats["unique_seqs"] / worker["end_to_end_s"],
            "cpu_us_per_event": worker["cpu_us_per_event"], "delivered": stats["unique_seqs"]}


def _median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines in the generated export")
    parser.add_argument("--workers", default="1,2", help="comma-separated --workers values (default 1,2)")
    parser.add_argument("--live-events", type=int, default=20_000, help="calls of the live client's run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, medians reported")
    parser.add_argument("--export", help="reuse (or keep) the generated export at this path")
    add_common_arguments(parser, DEFAULT_JSON)
    args = parser.parse_args(argv)
    env, _, server_cpu = announce(args.pin)
    workers = [int(value) for value in args.workers.split(",")]

    directory = tempfile.TemporaryDirectory(prefix="bench-import-")
    export = Path(args.export) if args.export else Path(directory.name) / "export.ndjson"
    if not export.exists() or sum(1 for _ in export.open("rb")) != args.lines:
        print(f"writing {args.lines:,} lines to {export}", flush=True)
        write_export(export, args.lines)
    print(f"export: {export.stat().st_size / 2**20:.0f} MB, {args.lines:,} lines", flush=True)

    live: list[dict[str, Any]] = []
    imports: dict[int, list[dict[str, Any]]] = {n: [] for n in workers}
    with FastServer(cpu=server_cpu) as server:
        for _ in range(args.repeat):
            live.append(run_live(server, args.live_events, args.timeout))
            print(f"live client: {live[-1]}", flush=True)
            for n in workers:
                imports[n].append(run_import(server, export, args.lines, n, args.timeout))
                print(f"import --workers {n}: {imports[n][-1]}", flush=True)
            live.append(run_live(server, args.live_events, args.timeout))
            print(f"live client: {live[-1]}", flush=True)
    directory.cleanup()

    live_rate = _median([run["events_per_s"] for run in live if "error" not in run])
    rows = [["live client (cio-v2, 20,000 calls)", f"{live_rate:,.0f} events/s" if live_rate else "failed",
             f"{_median([run['cpu_us_per_event'] for run in live if 'error' not in run]) or 0:.1f}", "1.00x"]]
    for n in workers:
        good = [run for run in imports[n] if "error" not in run]
        rate = _median([run["lines_per_s"] for run in good])
        cpu = _median([run["cpu_us_per_line"] for run in good])
        ratio = f"{rate / live_rate:.2f}x" if rate and live_rate else "-"
        rows.append([f"import --workers {n} ({args.lines:,} lines)", f"{rate:,.0f} lines/s" if rate else "failed",
                     f"{cpu:.1f}" if cpu else "-", ratio])
    table = markdown_table(["run", "throughput", "CPU µs per line/event (all processes)", "vs live client"], rows)
    print()
    print(table)
    write_json(args.json, {"environment": env, "lines": args.lines, "live": live,
                           "imports": {str(n): runs for n, runs in imports.items()}, "table": table})
    return 0 if all("error" not in run for runs in imports.values() for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
