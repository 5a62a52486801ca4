"""The page ``GET /`` shows: the local workspace at a glance, for a developer's browser.

Self-contained (inline CSS, no scripts, no external assets) and every piece of user data is escaped: attribute
names and values come straight from the requests the server received. The server also sends a
Content-Security-Policy that forbids scripts, in case anything ever slipped through.

Times are shown as ISO 8601 in UTC (``2024-03-01T09:11:00Z``), with the Unix seconds Customer.io stores on hover
(``/_state`` keeps the numbers): event and device times, and attributes named ``created_at`` or ``…_at``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

PEOPLE_SHOWN = 100
ACTIVITY_SHOWN = 10
VALUE_SHOWN = 300  # characters of one value

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0; } h2 { margin-top: 1.5em; border-bottom: 1px solid #ccc; }
.meta { color: #666; } .card { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; margin: .8em 0; }
.badge { background: #c33; color: #fff; border-radius: 3px; padding: 0 .4em; font-size: .85em; }
.anon { background: #eee; color: #555; border-radius: 3px; padding: 0 .4em; font-size: .85em; }
table { border-collapse: collapse; margin: .3em 0; } td, th { padding: .1em .6em; text-align: left;
vertical-align: top; border-bottom: 1px solid #eee; } code { font: 12px ui-monospace, monospace; }
"""


# Unix seconds from 1970 to 2100: a number outside is shown as the number it is
_PLAUSIBLE_SECONDS = range(0, 4_102_444_800)


def utc_time(seconds: Any) -> str | None:
    """Unix seconds as ISO 8601 UTC with a Z (``2024-03-01T09:11:00Z``); None for anything else."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds not in _PLAUSIBLE_SECONDS:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_time_attribute(name: str) -> bool:
    """Attributes Customer.io itself treats as times (``created_at``), and the ``…_at`` names that follow suit."""
    return name == "created_at" or name.endswith("_at")


class _Html(str):
    """A table cell that is already HTML (built here from escaped parts): inserted as it is."""


def _time(seconds: Any) -> str:
    """A time cell: the readable UTC date, the stored Unix seconds on hover; anything else as text."""
    readable = utc_time(seconds)
    if readable is None:
        return _Html(f"<code>{_text(seconds)}</code>")
    return _Html(f'<time datetime="{readable}" title="Unix time {seconds}"><code>{readable}</code></time>')


def _attributes(attributes: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(name, _time(value) if is_time_attribute(name) and utc_time(value) else value)
            for name, value in sorted(attributes.items())]


def _text(value: Any) -> str:
    """A value as escaped HTML text: strings as they are, anything else as JSON; long ones cut."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) > VALUE_SHOWN:
        text = text[:VALUE_SHOWN] + "…"
    return escape(text)


def _table(rows: Iterable[Iterable[Any]], headers: Iterable[str] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return '<p class="meta">none</p>'
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def _cell(value: Any) -> str:
    return value if isinstance(value, _Html) else f"<code>{_text(value)}</code>"


def _activity(events: list[Mapping[str, Any]], *, linked: bool = True) -> str:
    """The newest events first. ``linked``: a person's events, where those sent before the person was known (under
    an anonymous id an identify then linked) are marked, as the text demo marks them."""
    recent = events[-ACTIVITY_SHOWN:][::-1]
    rows = [(e.get("type"), _named(e) if linked else e.get("name"), _time(e.get("timestamp")), e.get("data"))
            for e in recent]
    more = f'<p class="meta">{len(events) - len(recent)} earlier</p>' if len(events) > len(recent) else ""
    return _table(rows, ("type", "name", "time (UTC)", "data")) + more


def _named(event: Mapping[str, Any]) -> Any:
    anonymous_id = event.get("anonymous_id")
    if not anonymous_id:
        return event.get("name")
    return _Html(f'<code>{_text(event.get("name"))}</code> <span class="anon" title="anonymous_id '
                 f'{_text(anonymous_id)}">while anonymous</span>')


def _person(person: Mapping[str, Any]) -> str:
    names = [f"{key} <code>{_text(person[key])}</code>" for key in ("id", "email", "phone") if person.get(key)]
    names.append(f"cio_id <code>{_text(person['cio_id'])}</code>")
    badge = ' <span class="badge">suppressed</span>' if person.get("suppressed") else ""
    devices = [
        (token, d.get("platform"), _time(d.get("last_used")), d.get("attributes"))
        for token, d in person.get("devices", {}).items()
    ]
    relationships = [
        (r["object_type_id"], r["object_id"], r["attributes"]) for r in person.get("relationships", [])
    ]
    return (
        f'<div class="card"><h3>{" · ".join(names)}{badge}</h3>'
        f"<h4>Attributes</h4>{_table(_attributes(person.get('attributes', {})))}"
        f"<h4>Recent activity</h4>{_activity(person.get('events', []))}"
        f"<h4>Devices</h4>{_table(devices, ('token', 'platform', 'last used (UTC)', 'attributes'))}"
        f"<h4>Objects</h4>{_table(relationships, ('type', 'object id', 'relationship attributes'))}"
        "</div>"
    )


def _object(obj: Mapping[str, Any]) -> str:
    related = sorted(obj.get("relationships", {}).items())
    related += sorted((f"anonymous {k}", v) for k, v in obj.get("anonymous_relationships", {}).items())
    return (
        f'<div class="card"><h3>type <code>{_text(obj["object_type_id"])}</code> · '
        f'<code>{_text(obj["object_id"])}</code></h3>'
        f"<h4>Attributes</h4>{_table(_attributes(obj.get('attributes', {})))}"
        f"<h4>People</h4>{_table(related, ('person', 'relationship attributes'))}</div>"
    )


def _pipelines(pipelines: Mapping[str, Any]) -> str:
    """Data Pipelines messages as received, newest first."""
    messages: list[Mapping[str, Any]] = pipelines.get("messages", [])
    recent = messages[-ACTIVITY_SHOWN:][::-1]
    rows = [(m.get("type"), m.get("userId") or _Html(f'<span class="anon">anonymous</span> <code>'
                                                      f'{_text(m.get("anonymousId"))}</code>'),
             m.get("event") or m.get("name") or m.get("groupId") or m.get("previousId"), m.get("timestamp"),
             m.get("properties") or m.get("traits")) for m in recent]
    more = f'<p class="meta">{len(messages) - len(recent)} earlier</p>' if len(messages) > len(recent) else ""
    meta = (f'<p class="meta">{len(messages)} messages · {pipelines.get("duplicates", 0)} repeated a messageId · '
            f'{len(pipelines.get("ignored", []))} dropped as invalid</p>')
    return meta + _table(rows, ("type", "userId", "event / name", "timestamp", "data")) + more


def render_page(snapshot: Mapping[str, Any], *, url: str, request_count: int) -> str:
    """The HTML page for ``snapshot`` (a ``State.snapshot()``)."""
    people: list[Mapping[str, Any]] = snapshot.get("people", [])
    shown = people[-PEOPLE_SHOWN:][::-1]
    anonymous = snapshot.get("anonymous_events", {})
    objects: list[Mapping[str, Any]] = snapshot.get("objects", [])
    merges = [(m["primary"], m["secondary"], m["applied"]) for m in snapshot.get("merges", [])]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Local Customer.io</title><style>{_STYLE}</style></head><body>",
        f"<h1>Local Customer.io</h1><p class=\"meta\">{escape(url)} · {request_count} API requests · "
        f"{len(people)} people · {len(objects)} objects · {snapshot.get('duplicates', 0)} duplicate events "
        'ignored · <a href="/_state">/_state</a> · <a href="/_requests">/_requests</a> · '
        '<a href="/">refresh</a></p>',
        "<h2>People</h2>",
        f'<p class="meta">newest {len(shown)} of {len(people)}</p>' if len(shown) < len(people) else "",
        "".join(_person(p) for p in shown) or '<p class="meta">none</p>',
        "<h2>Anonymous activity</h2>",
        "".join(
            f'<div class="card"><h3>anonymous_id <code>{_text(aid)}</code></h3>{_activity(events, linked=False)}</div>'
            for aid, events in anonymous.items()
        ) or '<p class="meta">none</p>',
        "<h2>Objects</h2>",
        "".join(_object(o) for o in objects) or '<p class="meta">none</p>',
        "<h2>Merges</h2>",
        _table(merges, ("primary", "secondary", "applied")),
        "<h2>Data Pipelines messages</h2>",
        _pipelines(snapshot.get("pipelines", {})),
        "</body></html>",
    ]
    return "".join(parts)
