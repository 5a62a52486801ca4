"""Speed: what each library costs the caller and how fast it delivers, against one local fast server.

    python benchmarks/bench_throughput.py                       # all libraries, 20,000 calls each
    python benchmarks/bench_throughput.py --libs segment,customerio --events 5000 --pin

Each library runs in its own fresh subprocess against the same server process (reset in between), with the
same deterministic workload: 1 call in 10 is an identify with ~8 traits, the rest are tracks with ~8
properties (a nested dict, a list, a datetime). See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

from _harness import ALL_LIBS, add_common_arguments, announce, markdown_table, parse_libs, spawn_worker, write_json
from fast_server import FastServer

DEFAULT_JSON = str(Path(__file__).resolve().parent / "results" / "latest.json")
BASELINES = ("segment", "cdp")  # a ratio table against each one that ran


def _per_event(value: Optional[float], events: int) -> Optional[float]:
    return value / events if value is not None and events else None


def summarise(worker: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """Merge what the worker measured with what the server saw into the row the table and the JSON show."""
    calls = worker["calls"]
    delivered = server["unique_seqs"]
    end_to_end = worker["end_to_end_s"]
    return {
        "lib": worker["lib"],
        "version": worker.get("version"),
        "synchronous": worker.get("synchronous"),
        "settings": worker.get("settings"),
        "calls": calls,
        "refused": worker["refused"],
        "raised": worker["raised"],
        "reported": worker["reported"],
        "caller_median_us": worker["caller_median_us"],
        "caller_p99_us": worker["caller_p99_us"],
        "caller_max_us": worker["caller_max_us"],
        "cpu_seconds": worker["cpu_seconds"],
        "cpu_us_per_event": worker["cpu_us_per_event"],
        "calls_seconds": worker["calls_seconds"],
        "flush_seconds": worker["flush_seconds"],
        "end_to_end_s": end_to_end,
        "events_per_s": delivered / end_to_end if end_to_end > 0 else None,
        "requests": server["requests"],
        "failed_requests": server["failed_requests"],
        "requests_per_event": _per_event(server["requests"], delivered),
        "wire_bytes": server["wire_bytes"],
        "body_bytes": server["bytes"],
        "wire_bytes_per_event": _per_event(server["wire_bytes"], delivered),
        "peak_rss_mb": worker["peak_rss_bytes"] / 2**20,
        "rss_growth_mb": (worker["peak_rss_bytes"] - worker["rss_before_client_bytes"]) / 2**20,
        "delivered_unique": delivered,
        "events_delivered": server["events_delivered"],
        "duplicates": server["duplicates"],
        "seq_duplicates": server["seq_duplicates"],
        "lost": calls - delivered,
        "requests_by_kind": server["requests_by_kind"],
        "server_cpu_s": server.get("server_cpu_s"),
        "error_types": worker.get("error_types"),
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per library: the median of every numeric column over the runs (each run is kept in "runs")."""
    if len(runs) == 1:
        return {**runs[0], "repeats": 1}
    row: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and None not in values
        row[key] = statistics.median(values) if numeric else value
    for key in ("refused", "lost", "duplicates", "requests"):
        row[key + "_range"] = [min(run[key] for run in runs), max(run[key] for run in runs)]
    row["repeats"] = len(runs)
    row["runs"] = runs
    return row


def _cpu_delta(before: Optional[float], after: Optional[float]) -> Optional[float]:
    return after - before if before is not None and after is not None else None


def _fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: Optional[float], base: Optional[float]) -> str:
    if value is None or not base:
        return "-"
    ratio = value / base
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def render(rows: list[dict[str, Any]], errors: dict[str, str]) -> str:
    headers = [
        "library", "calls", "caller median µs", "caller p99 µs", "CPU µs/event", "events/s", "requests",
        "wire B/delivered", "peak RSS MB", "RSS growth MB", "refused", "lost", "dup",
    ]  # fmt: skip
    table = []
    for row in rows:
        calls = f"{row['calls']:,}" + ("*" if row["synchronous"] else "")
        table.append([
            row["lib"], calls, _fmt(row["caller_median_us"]), _fmt(row["caller_p99_us"]),
            _fmt(row["cpu_us_per_event"]), _fmt(row["events_per_s"], 0), f"{row['requests']:,.0f}",
            _fmt(row["wire_bytes_per_event"], 0), _fmt(row["peak_rss_mb"]), _fmt(row["rss_growth_mb"]),
            f"{row['refused']:,.0f}", f"{row['lost']:,.0f}", f"{row['duplicates']:,.0f}",
        ])  # fmt: skip
    shown = {row["lib"] for row in rows}
    for lib in errors:
        if lib not in shown:
            table.append([lib, "not run"] + ["-"] * (len(headers) - 2))
    out = [markdown_table(headers, table)]
    out += [f"\n{lib} failed: {error}" for lib, error in errors.items()]
    if any(row["synchronous"] for row in rows):
        out.append(
            "\n* synchronous client (one HTTP request per call on the caller's thread), fewer calls: "
            "per-call and per-event columns compare directly, totals do not."
        )
    for baseline in BASELINES:
        out += _ratios(rows, baseline)
    return "\n".join(out)


def _ratios(rows: list[dict[str, Any]], baseline: str) -> list[str]:
    out: list[str] = []
    base = next((row for row in rows if row["lib"] == baseline), None)
    others = [row for row in rows if row is not base and not (baseline == "cdp" and row["lib"] == "segment")]
    if base is not None and others:
        out.append(f"\nRatios against {baseline} (below 1x is better, except events/s):")
        ratio_rows = [
            [
                row["lib"],
                _ratio(row["caller_median_us"], base["caller_median_us"]),
                _ratio(row["caller_p99_us"], base["caller_p99_us"]),
                _ratio(row["cpu_us_per_event"], base["cpu_us_per_event"]),
                _ratio(row["events_per_s"], base["events_per_s"]),
                _ratio(row["requests_per_event"], base["requests_per_event"]),
                _ratio(row["wire_bytes_per_event"], base["wire_bytes_per_event"]),
                _ratio(row["peak_rss_mb"], base["peak_rss_mb"]),
            ]
            for row in others
        ]
        ratio_headers = [
            "library", "caller median", "caller p99", "CPU/event", "events/s", "requests/event",
            "wire bytes/event", "peak RSS",
        ]  # fmt: skip
        out.append(markdown_table(ratio_headers, ratio_rows))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="calls per library (default 20000)")
    parser.add_argument(
        "--customerio-events", type=int, default=2_000,
        help="calls for the synchronous customerio client (default 2000)",
    )  # fmt: skip
    parser.add_argument(
        "--libs", action="append", default=[],
        help=f"comma-separated subset of {','.join(ALL_LIBS)} (default: all)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs per library; the table shows medians")
    add_common_arguments(parser, DEFAULT_JSON)
    args = parser.parse_args(argv)
    libs = parse_libs(args.libs, ALL_LIBS)
    env, client_cpu, server_cpu = announce(args.pin)

    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    errors: dict[str, str] = {}
    raw: dict[str, list[Any]] = {lib: [] for lib in libs}
    with FastServer(cpu=server_cpu) as server:
        for repeat in range(args.repeat):  # round-robin, so slow drift of the machine hits every library alike
            for lib in libs:
                if lib in errors:
                    continue
                events = args.customerio_events if lib == "customerio" else args.events
                label = f" (run {repeat + 1}/{args.repeat})" if args.repeat > 1 else ""
                print(f"  {lib}: {events:,} calls{label} ...", end=" ", flush=True)
                server.reset(fail_rate=0.0)
                config = {"lib": lib, "url": server.url, "events": events, "mode": "throughput"}
                config["cpu"] = client_cpu
                server_cpu_before = server.cpu_seconds()
                worker = spawn_worker(config, args.timeout)
                stats = server.wait_quiet()
                stats["server_cpu_s"] = _cpu_delta(server_cpu_before, server.cpu_seconds())
                raw[lib].append({"worker": worker, "server": stats})
                if worker.get("error"):
                    errors[lib] = worker["error"]
                    print(f"not run: {worker['error']}", flush=True)
                    if worker.get("stderr") or worker.get("traceback"):
                        print(worker.get("traceback") or worker.get("stderr"), file=sys.stderr)
                    continue
                row = summarise(worker, stats)
                runs[lib].append(row)
                busy = row["server_cpu_s"] / row["end_to_end_s"] if row["server_cpu_s"] else 0.0
                print(f"done in {row['end_to_end_s']:.2f}s (server busy {busy:.0%})", flush=True)
                if busy > 0.8:
                    print(f"  warning: the server was busy {busy:.0%} of the run: it may have been the bottleneck")
    rows = [aggregate(runs[lib]) for lib in libs if runs[lib]]

    print()
    print(render(rows, errors))
    write_json(args.json, {"benchmark": "throughput", "environment": env, "args": vars(args),
                           "results": rows, "errors": errors, "raw": raw})  # fmt: skip
    print(f"\nJSON written to {args.json}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
