"""Backfill historical orders from a JSONL export of your own database into Customer.io.

Each line is one order as your system stored it (not a Segment message; for Segment exports use
`analytics-cio import FILE`). Every customer is identified and every order becomes an "Order Completed" event
at the time it was placed, so segments and reports see the history.

    CUSTOMERIO_SITE_ID=... CUSTOMERIO_API_KEY=... python examples/backfill.py examples/data/orders.jsonl

Set CUSTOMERIO_HOST=http://127.0.0.1:8080 to send to a local Customer.io (`analytics-cio serve`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from analytics_cio import Client, DeliveryError

# The event id Customer.io de-duplicates on is the message id; derive it from the order id, so that running the
# backfill twice does not count an order twice. (It must be a ULID: see analytics_cio's README.)
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def order_ulid(placed_at: dt.datetime, order_id: str) -> str:
    value = (int(placed_at.timestamp() * 1000) << 80) | int.from_bytes(
        hashlib.sha256(order_id.encode()).digest()[:10], "big")
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="JSONL export of orders")
    args = parser.parse_args(argv)

    failures: Counter[str] = Counter()

    def on_error(error: DeliveryError, messages: Sequence[Any]) -> None:
        failures[str(error)] += len(messages)

    client = Client(
        os.environ.get("CUSTOMERIO_SITE_ID"), os.environ.get("CUSTOMERIO_API_KEY"),
        host=os.environ.get("CUSTOMERIO_HOST"), on_error=on_error,
        # A backfill has no user waiting: big batches, and Customer.io's suggested import rate.
        upload_size=1000, max_requests_per_second=100,
    )
    customers: set[str] = set()
    orders = skipped = 0
    with open(args.file, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                order = json.loads(line)
                customer = str(order["customer_id"])
                placed_at = dt.datetime.fromisoformat(order["placed_at"])
                total = float(order["total"])
            except (ValueError, KeyError, TypeError) as exc:
                print(f"line {number}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
                skipped += 1
                continue
            if customer not in customers:
                customers.add(customer)
                client.identify(customer, {"email": order.get("customer_email"), "name": order.get("customer_name")},
                                timestamp=placed_at)
            client.track(customer, "Order Completed", {
                "order_id": order["order_id"], "total": total, "currency": order.get("currency", "USD"),
                "products": order.get("items", []),
            }, timestamp=placed_at, message_id=order_ulid(placed_at, str(order["order_id"])))
            orders += 1
    delivered = client.shutdown(timeout=60)  # deliver everything queued, then stop
    print(f"{orders} orders of {len(customers)} customers sent; {skipped} lines skipped; "
          f"{sum(failures.values())} messages not delivered.")
    for reason, count in failures.most_common():
        print(f"  {count} x {reason}", file=sys.stderr)
    return 0 if delivered and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
