"""The ``analytics-cio`` command (also ``python -m analytics_cio``).

    analytics-cio demo                                   # a local Customer.io, a realistic session, what it holds
    analytics-cio track --user-id u1 --event "Signed Up" -p plan=pro --dry-run
    analytics-cio import export.ndjson                   # Segment messages, one per line; --resume after Ctrl-C
    analytics-cio serve                                  # a local Customer.io for your app, on 127.0.0.1:8080

Credentials come from ``--site-id``/``--api-key`` or ``CUSTOMERIO_SITE_ID``/``CUSTOMERIO_API_KEY`` (or, for
Customer.io Data Pipelines, ``--write-key`` or ``CUSTOMERIO_WRITE_KEY``); ``--dry-run`` needs none and prints
what would be sent instead of sending it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, Callable, TextIO

from dateutil.parser import isoparse

from ._client import Client
from ._errors import ArgumentError, DeliveryError
from ._regions import HOSTS
from ._retry import RetryPolicy
from ._v1 import v1_request
from ._version import __version__

EXIT_OK, EXIT_NOT_DELIVERED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# A one-off call is someone waiting at a terminal or a script: a dead host is reported in seconds, not after the
# library's ten retries (over a minute). An import keeps the library's patience.
CALL_RETRIES = 2


class UsageError(Exception):
    """Something on the command line cannot work; printed as ``error: ...`` with exit status 2."""


# -- arguments -----------------------------------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object ({{...}}), not {text!r}")
    return value


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: the value as JSON when it parses as JSON (``42``, ``true``, ``[1,2]``), else as text."""
    key, equals, raw = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _timestamp(text: str) -> Any:
    try:
        return isoparse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date-time: {text!r}") from None


def _region(text: str) -> str:
    return text.strip().lower()


def _retries(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {text!r}")
    return number


def _merged(base: dict[str, Any] | None, pairs: list[tuple[str, Any]] | None) -> dict[str, Any] | None:
    if base is None and not pairs:
        return None
    merged = dict(base or {})
    merged.update(pairs or [])
    return merged


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("Customer.io")
    group.add_argument("--site-id", default=os.environ.get("CUSTOMERIO_SITE_ID"),
                       help="Track API site id (default: $CUSTOMERIO_SITE_ID)")
    group.add_argument("--api-key", default=os.environ.get("CUSTOMERIO_API_KEY"),
                       help="Track API key (default: $CUSTOMERIO_API_KEY)")
    group.add_argument("--write-key", default=os.environ.get("CUSTOMERIO_WRITE_KEY"),
                       help="Data Pipelines API key: send to Customer.io Data Pipelines instead of the Track API; "
                            "--site-id/--api-key are then not used (default: $CUSTOMERIO_WRITE_KEY)")
    group.add_argument("--region", type=_region, choices=("us", "eu"),
                       default=os.environ.get("CUSTOMERIO_REGION", "us"),
                       help="your workspace's region, us or eu (default: $CUSTOMERIO_REGION or us)")
    group.add_argument("--host", default=os.environ.get("CUSTOMERIO_HOST"),
                       help="base URL instead of the region's, e.g. a local Customer.io: http://127.0.0.1:8080 "
                            "(default: $CUSTOMERIO_HOST)")
    group.add_argument("--api-version", choices=("v1", "v2"), default="v2", help="Track API version (default v2)")
    group.add_argument("--retries", type=_retries, metavar="N",
                       help=f"retries of a failed request (default: {CALL_RETRIES} for one call, so that a dead "
                            "host fails in seconds; 10 for import)")
    group.add_argument("--dry-run", action="store_true",
                       help="print the Customer.io operations instead of sending them (no credentials needed)")
    group.add_argument("--debug", action="store_true", help="log what the client does to stderr")
    return parent


def _identity(parser: argparse.ArgumentParser, *, anonymous: bool = True) -> None:
    parser.add_argument("--user-id", "--userId", "-u", dest="user_id", help="the person's id (or email, or cio_...)")
    if anonymous:
        parser.add_argument("--anonymous-id", "--anonymousId", dest="anonymous_id", help="for an anonymous visitor")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timestamp", type=_timestamp, help="when it happened (ISO-8601; default now)")
    parser.add_argument("--context", type=_json_object, help="Segment context, as a JSON object")
    parser.add_argument("--message-id", "--messageId", dest="message_id", help="Segment message id (default: a ULID)")


_SINGULAR = {"properties": "property", "traits": "trait", "attributes": "attribute"}


def _data(parser: argparse.ArgumentParser, name: str, flag: str) -> None:
    parser.add_argument(f"--{name}", type=_json_object, help=f"{name} as a JSON object")
    parser.add_argument(f"-{flag}", f"--{_SINGULAR[name]}", dest=f"{name}_pairs",
                        type=_key_value, action="append", metavar="KEY=VALUE",
                        help=f"one of the {name} (repeatable); VALUE is JSON when it parses as JSON, else text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analytics-cio",
        description="Send Segment-style calls to Customer.io, import Segment exports, or run a local Customer.io.",
        epilog="Start with: analytics-cio demo",
    )
    parser.add_argument("--version", action="version", version=f"analytics-cio {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    connection = _connection_options()

    def command(name: str, help_text: str, parents: Sequence[argparse.ArgumentParser] = (connection,)
                ) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=list(parents))

    identify = command("identify", "create or update a person (traits become attributes)")
    _identity(identify)
    _data(identify, "traits", "t")
    _common(identify)

    track = command("track", "record an event")
    _identity(track)
    track.add_argument("--event", "-e", required=True, help="the event name")
    _data(track, "properties", "p")
    _common(track)

    for kind in ("page", "screen"):
        view = command(kind, f"record a {kind} view")
        _identity(view)
        view.add_argument("--name", "-n", help=f"the {kind}'s name")
        view.add_argument("--category", help=f"the {kind}'s category")
        _data(view, "properties", "p")
        _common(view)

    group = command("group", "create or update an object (a company, an account) and relate the person to it")
    _identity(group)
    group.add_argument("--group-id", "--groupId", "-g", dest="group_id", required=True, help="the object's id")
    _data(group, "traits", "t")
    _common(group)

    alias = command("alias", "merge the person --previous-id into the person --user-id")
    alias.add_argument("--previous-id", "--previousId", dest="previous_id", required=True,
                       help="the id the person had until now (e.g. an anonymous or legacy id); merged away")
    alias.add_argument("--user-id", "--userId", "-u", dest="user_id", required=True,
                       help="the person's id from now on; keeps the merged person's data")
    _common(alias)

    device = command("device", "add or remove a person's push device", parents=())
    actions = device.add_subparsers(dest="device_action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add or update a device token", parents=[connection])
    add.add_argument("--user-id", "--userId", "-u", dest="user_id", required=True, help="the device owner's id")
    add.add_argument("--token", required=True, help="the APNs or FCM device token")
    add.add_argument("--platform", required=True, help="ios or android")
    _data(add, "attributes", "a")
    remove = actions.add_parser("remove", help="remove a device token", parents=[connection])
    remove.add_argument("--user-id", "--userId", "-u", dest="user_id", required=True,
                        help="the device owner's id")
    remove.add_argument("--token", required=True, help="the APNs or FCM device token to remove")

    importing = command("import", "send Segment exports (newline-delimited JSON messages, as Segment exports "
                                  "them; .gz too)")
    importing.add_argument("file", nargs="+",
                           help="NDJSON files (.gz too), globs, or directories (Segment's S3 archive layout)")
    importing.add_argument("--resume", action="store_true", help="continue an interrupted import from its checkpoint")
    importing.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    importing.add_argument("--checkpoint", help="the checkpoint file (default: FILE.checkpoint for one file, else "
                                                "analytics-cio-import-HASH.checkpoint here)")
    importing.add_argument("--checkpoint-seconds", type=float, default=5.0, metavar="SECONDS",
                           help="seconds between checkpoints (default 5)")
    importing.add_argument("--checkpoint-every", type=int, metavar="LINES",
                           help="also checkpoint after this many lines (default: by time only)")
    importing.add_argument("--workers", type=int, default=1, metavar="N",
                           help="N processes, each sending the lines of its share of the people, with 1/N of "
                                "--rate (default 1)")
    importing.add_argument("--errors", dest="errors_path", metavar="PATH",
                           help="write every bad or rejected line (line number, reason) to PATH as JSON lines")
    importing.add_argument("--progress", choices=("auto", "bar", "plain", "none"), default="auto",
                           help="a tqdm bar when installed and on a terminal (auto), else a line every 10%%")
    importing.add_argument("--rate", type=float, default=100.0, metavar="REQUESTS_PER_S",
                           help="at most this many requests a second, all workers together (default 100; 0: no "
                                "limit)")

    serve = command("serve", "run a local Customer.io (Track API v1/v2) in the foreground", parents=())
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--site-id", help="accept only this site id (default: any credentials)")
    serve.add_argument("--api-key", help="accept only this API key (default: any credentials)")
    serve.add_argument("--write-key", help="accept only this Data Pipelines key on /v1/batch (default: any key)")
    serve.add_argument("--no-validate", action="store_true", help="accept whatever parses, without checking it")
    faults = serve.add_argument_group("faults, to test your own resilience")
    faults.add_argument("--error-rate", type=float, default=0.0, help="answer this share of requests with an error")
    faults.add_argument("--error-status", type=int, default=500, help="the error's status (e.g. 429, 503)")
    faults.add_argument("--retry-after", type=float, help="Retry-After seconds on 429 and 503 errors")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    faults.add_argument("--seed", type=int, help="random seed, for repeatable faults")

    demo = command("demo", "start a local Customer.io, send it a realistic session, print what it holds",
                   parents=())
    demo.add_argument("--serve", action="store_true", help="keep the local Customer.io running to browse it")
    demo.add_argument("--port", type=int, default=0, help="port for --serve (default: a free one)")
    return parser


# -- running -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Announced(RetryPolicy):
    """The client's retry policy, telling the person at the terminal what a call is waiting for."""

    where: str = "Customer.io"
    say: Callable[[str], None] = print

    def delay(self, attempt: int, elapsed: float, retry_after: float | None = None) -> float | None:
        wait = super().delay(attempt, elapsed, retry_after)
        if wait is not None:
            asked = f"; it asked to wait {retry_after:g}s" if retry_after is not None else ""
            self.say(f"analytics-cio: waiting for {self.where} to accept the call (no answer, or a temporary "
                     f"error{asked}): retry {attempt + 1} of {self.max_retries} in {wait:.1f}s")
        return wait


def _client_for(args: argparse.Namespace, on_error: Callable[[DeliveryError, Sequence[Any]], Any], *,
                sync: bool, **options: Any) -> Client:
    write_key = getattr(args, "write_key", None)  # a Namespace built by hand (an import worker's) may lack it
    if args.dry_run:  # what would be sent: Track API operations, or with --write-key the Data Pipelines messages
        from .testing import CaptureTransport, PipelinesCaptureTransport

        transport = PipelinesCaptureTransport() if write_key else CaptureTransport()
        return Client(transport=transport, sync_mode=sync, on_error=on_error, debug=args.debug, **options)
    if not write_key and (not args.site_id or not args.api_key):
        raise UsageError("no Customer.io credentials: pass --site-id and --api-key, or set CUSTOMERIO_SITE_ID and "
                         "CUSTOMERIO_API_KEY; or --write-key for Data Pipelines (or try --dry-run, or "
                         "`analytics-cio demo`)")
    if args.retries is not None:
        options.setdefault("max_retries", args.retries)
    if write_key:
        options["write_key"] = write_key
    else:
        options.update(site_id=args.site_id, api_key=args.api_key, api_version=args.api_version)
    try:
        return Client(host=args.host, region=args.region, sync_mode=sync, on_error=on_error, debug=args.debug,
                      **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _call(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The client method and arguments a one-call command asks for."""
    if args.command == "device":
        if args.device_action == "add":
            return "register_device", {"user_id": args.user_id, "token": args.token, "platform": args.platform,
                                       "attributes": _merged(args.attributes, args.attributes_pairs)}
        return "remove_device", {"user_id": args.user_id, "token": args.token}
    common = {"context": args.context, "timestamp": args.timestamp, "message_id": args.message_id}
    if args.command == "identify":
        return "identify", {**common, "user_id": args.user_id, "anonymous_id": args.anonymous_id,
                            "traits": _merged(args.traits, args.traits_pairs)}
    if args.command == "track":
        return "track", {**common, "user_id": args.user_id, "anonymous_id": args.anonymous_id, "event": args.event,
                         "properties": _merged(args.properties, args.properties_pairs)}
    if args.command in ("page", "screen"):
        return args.command, {**common, "user_id": args.user_id, "anonymous_id": args.anonymous_id,
                              "name": args.name, "category": args.category,
                              "properties": _merged(args.properties, args.properties_pairs)}
    if args.command == "group":
        return "group", {**common, "user_id": args.user_id, "anonymous_id": args.anonymous_id,
                         "group_id": args.group_id, "traits": _merged(args.traits, args.traits_pairs)}
    return "alias", {**common, "previous_id": args.previous_id, "user_id": args.user_id}


def run_call(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """One call, sent on this thread; says whether Customer.io accepted it."""
    errors: list[DeliveryError] = []
    retries = CALL_RETRIES if args.retries is None else args.retries
    client = _client_for(args, lambda error, messages: errors.append(error), sync=True, max_retries=retries)
    if not args.dry_run:
        where = args.host.rstrip("/") if args.host else HOSTS.get(args.region, "Customer.io")
        client.policy = _Announced(max_retries=retries, deadline=client.policy.deadline, where=where,
                                   say=lambda line: print(line, file=err, flush=True))
    method, arguments = _call(args)
    try:
        getattr(client, method)(**arguments)
    except ArgumentError as exc:
        raise UsageError(str(exc)) from None
    finally:
        client.shutdown()
    if args.dry_run:
        for op, _ in client.transport.sent():  # type: ignore[attr-defined]
            if args.api_version == "v1":
                method, path, body, _lane = v1_request(op)
                print(f"{method} {path}", file=out)
                if body is not None:
                    print(json.dumps(body, indent=2, ensure_ascii=False), file=out)
            else:
                print(json.dumps(op, indent=2, ensure_ascii=False), file=out)
    for error in errors:
        print(f"not {'valid' if args.dry_run else 'delivered'}: {error}", file=err)
    if errors:
        return EXIT_NOT_DELIVERED
    if not args.dry_run:
        print(f"delivered: {args.command}{' ' + args.device_action if args.command == 'device' else ''}", file=out)
    return EXIT_OK


@dataclasses.dataclass(frozen=True)
class _ImportClients:
    """Builds an import's client (one per worker process: picklable), with its share of the request budget."""

    args: argparse.Namespace

    def __call__(self, on_error: Callable[[DeliveryError, Sequence[Any]], Any], share: float) -> Client:
        args = self.args
        if args.dry_run:
            return _client_for(args, on_error, sync=True)
        return _client_for(args, on_error, sync=False, upload_interval=0.2,
                           max_requests_per_second=args.rate * share if args.rate > 0 else None)


def run_import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._import_files import expand
    from ._importer import ImportOptions
    from ._importer import run_import as run

    if args.resume and args.restart:
        raise UsageError("--resume and --restart contradict each other")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError("--checkpoint-every must be at least 1")
    if not args.checkpoint_seconds > 0:
        raise UsageError("--checkpoint-seconds must be more than 0")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    try:
        files = expand(args.file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.dry_run and not getattr(args, "write_key", None) and (not args.site_id or not args.api_key):
        _client_for(args, lambda error, messages: None, sync=True)  # says which credentials are missing
    checkpoint = args.checkpoint
    if checkpoint is None:
        if len(args.file) == 1 and os.path.isfile(args.file[0]):
            checkpoint = f"{args.file[0]}.checkpoint"
        else:
            named = hashlib.sha256("\0".join(os.path.abspath(path) for path in args.file).encode()).hexdigest()
            checkpoint = f"analytics-cio-import-{named[:12]}.checkpoint"
    options = ImportOptions(
        files=files, checkpoint=checkpoint, resume=args.resume, restart=args.restart,
        checkpoint_every=args.checkpoint_every, checkpoint_seconds=args.checkpoint_seconds, progress=args.progress,
        errors_path=args.errors_path, dry_run=args.dry_run,
        workers=1 if args.dry_run else args.workers,  # a dry run prints every operation, in order, from one process
    )
    return run(options, _ImportClients(args), out, err, dry_run_out=out if args.dry_run else None)


def run_serve(args: argparse.Namespace, out: TextIO) -> int:
    from .testing import Faults, LocalCustomerIO

    try:
        faults = Faults(error_rate=args.error_rate, error_status=args.error_status, retry_after=args.retry_after,
                        latency=args.latency, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    server = LocalCustomerIO(args.bind, args.port, site_id=args.site_id, api_key=args.api_key,
                             write_key=args.write_key, validate=not args.no_validate, faults=faults)
    try:
        server.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from None
    credentials = "only the given credentials" if args.site_id or args.api_key or args.write_key else "any credentials"
    print(f"Local Customer.io listening on {server.url} (accepts {credentials}).\n"
          f"  Browse it:      {server.url}/\n"
          f"  As JSON:        {server.url}/_state\n"
          f"  Send to it:     analytics_cio.host = \"{server.url}\"   "
          f"(or: analytics-cio track --host {server.url} ...)\n"
          "Ctrl-C to stop.", file=out, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print(f"\nStopped after {server.request_count} requests.", file=out)
    finally:
        server.stop()
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # a first try: show what there is, not an argparse error
        parser.print_help(err)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run

            return run(out, port=args.port, serve=args.serve)
        if args.command == "serve":
            return run_serve(args, out)
        if args.command == "import":
            return run_import(args, out, err)
        return run_call(args, out, err)
    except UsageError as exc:
        print(f"analytics-cio: error: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `analytics-cio ... | head`: the reader has gone; so do we, quietly
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_NOT_DELIVERED
