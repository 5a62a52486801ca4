"""CPU per keep-alive POST: analytics_cio's HttpPool (urllib3 + its watchdog) vs bare urllib3 vs requests.

    python benchmarks/bench_http.py                  # 3,000 POSTs per stack, 3 rounds, against fast_server.py
    python benchmarks/bench_http.py --requests 5000 --rounds 5 --json out.json

One small JSON body (a v1 track, ~200 bytes) POSTed over one keep-alive connection, one request at a time, from
this process to ``fast_server.py`` running in another process (so the server's CPU is not counted). CPU is
``time.process_time()`` of this process (all threads: the watchdog's included) divided by requests; each stack
warms up with 50 requests first. Rounds run the stacks in turn; the table shows each stack's median and range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
import urllib3
from fast_server import FastServer

from analytics_cio._pool import HttpPool

BODY = json.dumps({"name": "Order Completed", "data": {"order_id": "o-1", "total": 42.5, "items": 3,
                   "currency": "EUR", "coupon": None, "sku": ["a-1", "b-2"]}}).encode()
HEADERS = {"Authorization": "Basic c2l0ZTprZXk=", "Content-Type": "application/json",
           "User-Agent": "analytics-cio-bench"}
PATH = "/api/v1/customers/person-1/events"


def stacks(url: str) -> dict[str, Callable[[], int]]:
    pool = HttpPool(url, timeout=15.0, maxsize=1)
    manager = urllib3.PoolManager(maxsize=1, retries=False, timeout=urllib3.Timeout(connect=15.0, read=15.0))
    session = requests.Session()
    session.trust_env = False

    def with_pool() -> int:
        return pool.request("POST", PATH, BODY, HEADERS).status

    def with_urllib3() -> int:
        return manager.request("POST", url + PATH, body=BODY, headers=HEADERS, redirect=False).status

    def with_requests() -> int:
        return session.post(url + PATH, data=BODY, headers=HEADERS, timeout=15.0, allow_redirects=False).status_code

    return {"analytics_cio HttpPool": with_pool, "urllib3 PoolManager": with_urllib3, "requests Session": with_requests}


def measure(send: Callable[[], int], count: int) -> float:
    """CPU µs per request."""
    for _ in range(50):
        send()
    started = time.process_time()
    for _ in range(count):
        if send() != 200:
            raise RuntimeError("the server did not answer 200")
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with FastServer() as server:
        runs: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, send in stacks(server.url).items():
                runs.setdefault(name, []).append(measure(send, args.requests))
    print(f"{args.requests:,} keep-alive POSTs per stack and round, {args.rounds} rounds; CPU µs per request:\n")
    print("| stack | median | min-max |")
    print("|---|---|---|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(values):.0f} | {min(values):.0f}-{max(values):.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"requests": args.requests, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
