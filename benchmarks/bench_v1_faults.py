"""v1 under faults: 10,000 events against a local Customer.io failing 30% of requests with 500 and dropping 10%.

    python benchmarks/bench_v1_faults.py                     # defaults: 100 requests/s, 4 in flight
    python benchmarks/bench_v1_faults.py --rate 0            # the request-rate limit lifted
    python benchmarks/bench_v1_faults.py --events 2000 --error-rate 0.5 --drop-rate 0.2 --json out.json

The client runs with its default settings (except ``--rate``) against ``analytics_cio.testing.LocalCustomerIO``
in this process, with ``Faults(error_rate, drop_rate, seed)``. Events go to ``--people`` people (1 in 10 an
identify). Every event carries its own ``seq``, so each one ends up delivered (in a request answered 200),
reported (given to ``on_error``), or unaccounted; a ``seq`` answered 200 more than once is a duplicate.
The run ends when ``flush()`` returns, or at ``--timeout`` (then ``shutdown()`` reports what is left).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics_cio import Client
from analytics_cio.testing import Faults, LocalCustomerIO


def run(events: int, people: int, error_rate: float, drop_rate: float, rate: float | None, seed: int,
        timeout: float) -> dict[str, Any]:
    reported: Counter[int] = Counter()
    error_types: Counter[str] = Counter()

    def on_error(error: Exception, messages: list[dict[str, Any]]) -> None:
        error_types[type(error).__name__] += len(messages)
        for message in messages:
            reported[message.get("properties", message.get("traits", {})).get("seq")] += 1

    faults = Faults(error_rate=error_rate, drop_rate=drop_rate, seed=seed)
    with LocalCustomerIO(faults=faults, validate=False) as server:
        options: dict[str, Any] = {} if rate == -1 else {"max_requests_per_second": rate}
        client = Client("site", "key", host=server.url, api_version="v1", on_error=on_error, **options)
        started = time.monotonic()
        for seq in range(events):
            person = f"person-{seq % people}"
            if seq % 10 == 0:
                client.identify(person, {"seq": seq, "plan": "pro"})
            else:
                client.track(person, "Bench Event", {"seq": seq, "price": 9.5})
        calls_done = time.monotonic() - started
        flushed = client.flush(timeout=timeout)
        flush_done = time.monotonic() - started
        client.shutdown(timeout=5)
        ended = time.monotonic() - started
        delivered: Counter[int] = Counter()
        statuses: Counter[int] = Counter()
        arrivals: list[float] = []  # when each event was first answered 200, from the first call
        for request in server.requests:
            statuses[request.status] += 1
            body = request.json()
            if request.status == 200 and isinstance(body, dict):
                seq = (body.get("data") or {}).get("seq", body.get("seq"))
                if isinstance(seq, int):
                    delivered[seq] += 1
                    if delivered[seq] == 1:
                        arrivals.append(request.received_at - started)
    every = set(range(events))
    unaccounted = every - set(delivered) - set(reported)
    return {
        "events": events,
        "people": people,
        "error_rate": error_rate,
        "drop_rate": drop_rate,
        "max_requests_per_second": "default (100)" if rate == -1 else rate,
        "flush_returned_true": flushed,
        "calls_seconds": round(calls_done, 2),
        "first_call_to_flush_return_s": round(flush_done, 2),
        "first_call_to_shutdown_return_s": round(ended, 2),
        "delivered": len(set(delivered) & every),
        "delivered_by_s": {f"{share:.0%}": round(sorted(arrivals)[int(share * len(arrivals)) - 1], 1)
                           for share in (0.5, 0.9, 0.99, 0.999, 1.0) if arrivals},
        "reported": sum(reported.values()),
        "reported_but_delivered": len(set(reported) & set(delivered)),
        "duplicates": sum(1 for count in delivered.values() if count > 1),
        "unaccounted": len(unaccounted),
        "requests": sum(statuses.values()),
        "answered": dict(sorted(statuses.items())),
        "error_types": dict(error_types),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--error-rate", type=float, default=0.3)
    parser.add_argument("--drop-rate", type=float, default=0.1)
    parser.add_argument("--rate", type=float, default=-1,
                        help="max_requests_per_second; 0 lifts the limit; default: the client's default (100)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    rate = None if args.rate == 0 else args.rate
    result = run(args.events, args.people, args.error_rate, args.drop_rate, rate, args.seed, args.timeout)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
