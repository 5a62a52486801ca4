"""Delivery that loses nothing: the same burst of calls against a server that fails 1 request in 5.

    python benchmarks/bench_faults.py                    # analytics-cio (v2) and segment, 20,000 calls
    python benchmarks/bench_faults.py --fail-rate 0.5 --libs cio-v2,cio-v1,segment,cdp

Each library runs with its default settings, in its own fresh subprocess, as fast as it accepts calls, against
one fast_server process that answers 500 to ``--fail-rate`` of the requests (same seed for every library, so
each faces the same failure sequence). Every call carries a sequence number, so each one ends up in exactly
one of: delivered, refused (the call returned False), reported (given to on_error), or unaccounted (silently
lost). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from _harness import ALL_LIBS, add_common_arguments, announce, markdown_table, parse_libs, spawn_worker, write_json
from fast_server import FastServer

DEFAULT_JSON = str(Path(__file__).resolve().parent / "results" / "faults.json")
DEFAULT_LIBS = ("cio-v2", "segment")


def summarise(worker: dict[str, Any], server: dict[str, Any], delivered_seqs: list[Any]) -> dict[str, Any]:
    calls = worker["calls"]
    every = set(range(calls))
    delivered = every & {s for s in delivered_seqs if isinstance(s, int)}
    refused = set(worker["refused_seqs"] or [])
    reported = set(worker["reported_seqs"] or [])
    unaccounted = every - delivered - refused - reported
    return {
        "lib": worker["lib"],
        "version": worker.get("version"),
        "settings": worker.get("settings"),
        "calls": calls,
        "delivered": len(delivered),
        "refused": worker["refused"],
        "raised": worker["raised"],
        "reported": worker["reported"],
        "reported_distinct": len(reported),
        "refused_and_reported": len(refused & reported),
        "reported_but_delivered": len(reported & delivered),
        "refused_but_delivered": len(refused & delivered),
        "duplicates": server["duplicates"],
        "seq_duplicates": server["seq_duplicates"],
        "lost": calls - len(delivered),
        "unaccounted": len(unaccounted),
        "unaccounted_sample": sorted(unaccounted)[:20],
        "flush_seconds": worker["flush_seconds"],
        "first_call_to_flush_return_s": worker["first_call_to_flush_return_s"],
        "calls_seconds": worker["calls_seconds"],
        "shutdown_seconds": worker["shutdown_seconds"],
        "requests": server["requests"],
        "failed_requests": server["failed_requests"],
        "error_types": worker.get("error_types"),
    }


def render(rows: list[dict[str, Any]], errors: dict[str, str], fail_rate: float) -> str:
    headers = [
        "library", "calls", "delivered", "refused", "reported", "duplicates", "lost", "unaccounted",
        "flush s", "first call→flush s", "requests", "500s",
    ]  # fmt: skip
    table = [
        [
            row["lib"], f"{row['calls']:,}", f"{row['delivered']:,}", f"{row['refused']:,}",
            f"{row['reported']:,}", f"{row['duplicates']:,}", f"{row['lost']:,}", f"{row['unaccounted']:,}",
            f"{row['flush_seconds']:.2f}", f"{row['first_call_to_flush_return_s']:.2f}",
            f"{row['requests']:,}", f"{row['failed_requests']:,}",
        ]
        for row in rows
    ]  # fmt: skip
    for lib in errors:
        table.append([lib, "not run"] + ["-"] * (len(headers) - 2))
    out = [f"Server answers 500 to {fail_rate:.0%} of requests.", markdown_table(headers, table)]
    out += [f"\n{lib} not run: {error}" for lib, error in errors.items()]
    for row in rows:
        notes = []
        if row["reported_but_delivered"]:
            notes.append(f"{row['reported_but_delivered']:,} reported as failed were delivered anyway")
        if row["refused_but_delivered"]:
            notes.append(f"{row['refused_but_delivered']:,} refused calls were delivered anyway")
        if row["refused_and_reported"]:
            notes.append(f"{row['refused_and_reported']:,} refused calls were also reported")
        if notes:
            out.append(f"{row['lib']}: " + "; ".join(notes))
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="calls per library (default 20000)")
    parser.add_argument("--fail-rate", type=float, default=0.2, help="fraction of requests answered 500")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failure sequence (all libs)")
    parser.add_argument(
        "--libs", action="append", default=[],
        help=f"comma-separated subset of {','.join(ALL_LIBS)} (default: {','.join(DEFAULT_LIBS)})",
    )  # fmt: skip
    add_common_arguments(parser, DEFAULT_JSON)
    args = parser.parse_args(argv)
    libs = parse_libs(args.libs, DEFAULT_LIBS)
    env, client_cpu, server_cpu = announce(args.pin)

    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    raw: dict[str, Any] = {}
    with FastServer(fail_rate=args.fail_rate, seed=args.seed, cpu=server_cpu) as server:
        for lib in libs:
            print(f"  {lib}: {args.events:,} calls, {args.fail_rate:.0%} fail ...", end=" ", flush=True)
            server.reset(fail_rate=args.fail_rate, seed=args.seed)
            config = {"lib": lib, "url": server.url, "events": args.events, "mode": "faults"}
            config["cpu"] = client_cpu
            worker = spawn_worker(config, args.timeout)
            stats = server.wait_quiet(quiet=1.0)
            raw[lib] = {"worker": worker, "server": stats}
            if worker.get("error"):
                errors[lib] = worker["error"]
                print(f"not run: {worker['error']}", flush=True)
                if worker.get("stderr") or worker.get("traceback"):
                    print(worker.get("traceback") or worker.get("stderr"), file=sys.stderr)
                continue
            row = summarise(worker, stats, server.seqs())
            rows.append(row)
            print(f"flush returned after {row['first_call_to_flush_return_s']:.2f}s", flush=True)

    print()
    print(render(rows, errors, args.fail_rate))
    for entry in raw.values():  # the per-call lists are summarised above; keep the JSON readable
        for key in ("refused_seqs", "reported_seqs"):
            entry["worker"].pop(key, None)
    write_json(args.json, {"benchmark": "faults", "environment": env, "args": vars(args),
                           "results": rows, "errors": errors, "raw": raw})  # fmt: skip
    print(f"\nJSON written to {args.json}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
