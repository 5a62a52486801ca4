"""``analytics-cio demo``: a realistic session sent to a local Customer.io, and what Customer.io then holds.

Needs no credentials and no network: the local Customer.io runs in this process on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Callable, TextIO

from ._client import Client
from ._errors import DeliveryError

SITE_ID = "demo-site"
API_KEY = "demo-api-key"

IPHONE = {"token": "ios-token-7f3a9c", "type": "ios", "model": "iPhone15,2"}
PIXEL = {"token": "fcm-token-c81d44", "type": "android", "model": "Pixel 8"}


def send_session(client: Client, now: dt.datetime | None = None) -> int:
    """One customer's first day, as a web app, a mobile app and a backend report it. Returns the call count."""
    now = now or dt.datetime.now(dt.timezone.utc)

    def at(minutes: int) -> dt.datetime:
        return now - dt.timedelta(minutes=120 - minutes)

    calls: list[Callable[[], object]] = [
        # An anonymous visitor reads the pricing page, then signs up.
        lambda: client.page(None, "Marketing", "Pricing", {"url": "https://example.com/pricing"},
                            anonymous_id="anon-5b1e", timestamp=at(0)),
        lambda: client.identify("user-42", {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "trial",
                                            "createdAt": at(5)}, anonymous_id="anon-5b1e", timestamp=at(5)),
        lambda: client.track("user-42", "Signed Up", {"method": "email", "referrer": "newsletter"},
                             timestamp=at(5)),
        # She installs the app on her iPhone and her Android tablet; a screen view from each.
        lambda: client.track("user-42", "Application Installed", {"version": "3.2.0"},
                             context={"device": IPHONE, "os": {"name": "iOS", "version": "17.4"},
                                      "app": {"version": "3.2.0"}, "locale": "en-GB"}, timestamp=at(20)),
        lambda: client.screen("user-42", "Onboarding", "Welcome", {"step": 1},
                              context={"device": IPHONE}, timestamp=at(21)),
        lambda: client.register_device("user-42", PIXEL["token"], "android", {"push_enabled": "true"},
                                       context={"device": {"model": PIXEL["model"]}}, timestamp=at(30)),
        # She upgrades, and her company becomes an object she belongs to.
        lambda: client.track("user-42", "Order Completed", {"order_id": "ord-1001", "total": 49.0,
                                                            "currency": "EUR", "plan": "pro"}, timestamp=at(60)),
        lambda: client.identify("user-42", {"plan": "pro"}, timestamp=at(60)),
        lambda: client.group("user-42", "acme", {"name": "Acme Ltd", "industry": "Engineering",
                                                 "relationship_attributes": {"role": "admin"}}, timestamp=at(61)),
        # An account she made years ago under another id is merged into this one.
        lambda: client.identify("legacy-7", {"email": "ada.old@example.com", "newsletter": True}, timestamp=at(62)),
        lambda: client.alias("legacy-7", "user-42", timestamp=at(63)),
        # She deletes the app from the tablet: its token goes.
        lambda: client.track("user-42", "Application Uninstalled", context={"device": PIXEL}, timestamp=at(90)),
    ]
    for call in calls:
        call()
    return len(calls)


def run(out: TextIO, port: int = 0, serve: bool = False) -> int:
    """Start a local Customer.io, send the session, print the workspace. ``serve`` keeps serving after."""
    from .testing import LocalCustomerIO

    errors: list[str] = []

    def on_error(error: DeliveryError, messages: Sequence[Any]) -> None:
        errors.append(f"{error} ({len(messages)} message(s))")

    with LocalCustomerIO(port=port, site_id=SITE_ID, api_key=API_KEY) as server:
        print(f"Local Customer.io running at {server.url} (in this process; nothing leaves this machine)\n",
              file=out)
        client = Client(SITE_ID, API_KEY, host=server.url, on_error=on_error, upload_interval=0.05)
        try:
            calls = send_session(client)
            client.flush()
        finally:
            client.shutdown()
        ops = len(server.ops())
        print(f"Sent {calls} calls: identify, page, track, screen, Application Installed with a device token, "
              f"register_device, group, alias, Application Uninstalled.\nCustomer.io received {ops} operations "
              f"in {server.request_count} request(s).", file=out)
        for error in errors:
            print(f"  not delivered: {error}", file=out)
        print("", file=out)
        print(describe(server.state.snapshot()), file=out)
        if serve:
            print(f"\nOpen {server.url} in a browser to see it; Ctrl-C to stop.", file=out, flush=True)
            try:
                import threading

                threading.Event().wait()
            except KeyboardInterrupt:
                print("", file=out)
        else:
            print("\nRun `analytics-cio demo --serve` to browse it, or `analytics-cio serve` for a local Customer.io "
                  "your own app can send to.", file=out)
    return 1 if errors else 0


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _attribute(name: str, value: Any) -> str:
    """``name=value``; a time (``created_at``, ``…_at``) in UTC, as the local Customer.io's page shows it."""
    from .testing._page import is_time_attribute, utc_time

    readable = utc_time(value) if is_time_attribute(name) else None
    return f"{name}={readable or _value(value)}"


def _when(seconds: Any) -> str:
    from .testing._page import utc_time

    return utc_time(seconds) or "?"


def describe(snapshot: Mapping[str, Any]) -> str:
    """The workspace as text: people (attributes, devices, activity, objects), objects, merges."""
    lines: list[str] = []
    people = snapshot.get("people", [])
    lines.append(f"People ({len(people)})")
    for person in people:
        names = "  ".join(f"{key}={person[key]}" for key in ("id", "email") if person.get(key))
        lines.append(f"  {names}  (cio_id {person['cio_id']})")
        attributes = person.get("attributes", {})
        if attributes:
            lines.append("    attributes: " + ", ".join(_attribute(k, v) for k, v in sorted(attributes.items())))
        for token, device in person.get("devices", {}).items():
            extra = ", ".join(f"{k}={v}" for k, v in sorted((device.get("attributes") or {}).items()))
            lines.append(f"    device: {device.get('platform')} {token}" + (f" ({extra})" if extra else ""))
        for relation in person.get("relationships", []):
            lines.append(f"    object: type {relation['object_type_id']} / {relation['object_id']}"
                         + (f" {_value(relation['attributes'])}" if relation.get("attributes") else ""))
        events = person.get("events", [])
        if events:
            lines.append(f"    activity ({len(events)}):")
            for event in events:
                data = f" {_value(event['data'])}" if event.get("data") else ""
                anonymous = " (while anonymous)" if event.get("anonymous_id") else ""
                lines.append(f"      {_when(event.get('timestamp'))}  {event['type']:<6} {event['name']}{data}"
                             f"{anonymous}")
    anonymous_events = snapshot.get("anonymous_events", {})
    if anonymous_events:
        lines.append(f"Anonymous activity not linked to a person ({len(anonymous_events)} anonymous ids)")
        for anonymous_id, events in anonymous_events.items():
            lines.append(f"  {anonymous_id}: " + ", ".join(f"{_when(e.get('timestamp'))} {e['type']} {e['name']}"
                                                           for e in events))
    objects = snapshot.get("objects", [])
    lines.append(f"Objects ({len(objects)})")
    for obj in objects:
        lines.append(f"  type {obj['object_type_id']} / {obj['object_id']}: "
                     + ", ".join(_attribute(k, v) for k, v in sorted(obj.get("attributes", {}).items())))
        for person, attributes in obj.get("relationships", {}).items():
            lines.append(f"    related: {person}" + (f" {_value(attributes)}" if attributes else ""))
    merges = snapshot.get("merges", [])
    if merges:
        lines.append(f"Merges ({len(merges)})")
        for merge in merges:
            lines.append(f"  {_value(merge.get('secondary'))} merged into {_value(merge.get('primary'))}")
    return "\n".join(lines)
