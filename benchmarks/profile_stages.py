"""Where the time goes: CPU per message for each stage of the pipeline, measured one stage at a time.

    python benchmarks/profile_stages.py [--events 20000]

Uses the throughput benchmark's workload, with no network: each stage runs over all the messages on its own,
timed with process CPU time, so the numbers add up to the client's cost per event minus the HTTP requests and
the garbage collector. For a sampled view of a whole run: `py-spy record -f raw -- python <this file>`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import make_workload

import analytics_cio
from analytics_cio._encoding import JSON_LIBRARY
from analytics_cio._limits import check_op
from analytics_cio._mapping import map_message


def timed(label: str, fn: Callable[[Any], Any], items: list[Any], rows: list[tuple[str, float]]) -> list[Any]:
    start = time.process_time()
    out = [fn(item) for item in items]
    rows.append((label, (time.process_time() - start) / len(items) * 1e6))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    work = make_workload(args.events)
    client = analytics_cio.Client("site", "key", send=False)
    rows: list[tuple[str, float]] = []

    def call(item: tuple[str, str, Any, dict[str, Any]]) -> dict[str, Any]:
        kind, user, name, data = item
        return (client.identify(user, data) if kind == "identify" else client.track(user, name, data))[1]

    messages = timed("caller: identify()/track() (checks, snapshot, message, ULID, timestamp)", call, work, rows)
    mapped = timed("worker: mapping to Customer.io operations", lambda m: map_message(m, client.mapping_options),
                   messages, rows)
    ops = [m.ops[0] for m in mapped]
    encoded = timed(f"worker: JSON encoding, once per operation ({JSON_LIBRARY})", client._encode, ops, rows)
    pairs = list(zip(ops, encoded))
    timed("worker: Customer.io limit checks", lambda p: check_op(p[0], len(p[1]), client._encode), pairs, rows)
    body = b",".join(encoded)
    start = time.process_time()
    b'{"batch":[' + body + b"]}"
    rows.append(("worker: batch assembly from encoded fragments", (time.process_time() - start) / len(ops) * 1e6))
    print(f"{len(work):,} messages (1 in 10 identify), Python {sys.version.split()[0]}, JSON: {JSON_LIBRARY}")
    print("| stage | CPU µs per message |")
    print("|---|---|")
    for label, micros in rows:
        print(f"| {label} | {micros:.1f} |")
    print(f"| **total** | **{sum(m for _, m in rows):.1f}** |")


if __name__ == "__main__":
    main()
