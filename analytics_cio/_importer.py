"""``analytics-cio import FILE``: newline-delimited Segment messages (as Segment exports them) to Customer.io.

One line is one message (``{"type": "track", "userId": ..., "event": ..., "timestamp": ...}``). A line that
cannot be a message (invalid JSON, wrong types, an unknown type) is reported by its line number and skipped; it
never stops the import. Every other line is delivered or rejected, and rejections are reported with Customer.io's
reason, grouped in the summary.

Resuming. Every ``checkpoint_every`` lines, a second thread waits until everything read up to that line is delivered
or reported, then records the point (byte offset, line number, counts) in the checkpoint file, atomically; the
reader goes on meanwhile, so Customer.io's answers never hold the file's reading up. An interrupted
import (Ctrl-C, SIGTERM, a crash, a kill) resumes from the last checkpoint with ``--resume``. Lines after it may
have been sent already; they are sent again, and Customer.io ignores the events a second time because each
carries a ULID ``id`` derived from the line's ``messageId`` (the client derives one from any id that is not a ULID;
a line without a ``messageId`` gets one derived from the line itself). Identifies, devices and objects are
idempotent by nature.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, Callable, TextIO

from dateutil.parser import isoparse

from ._client import Client
from ._errors import ArgumentError, DeliveryError
from ._mapping import is_disabled
from ._ulid import derived_ulid

CHECKPOINT_VERSION = 1
SHOWN_PROBLEMS = 20  # bad lines printed as they happen; the rest only in the summary and the errors file
_TYPES = ("identify", "track", "page", "screen", "group", "alias")


class BadLine(Exception):
    """A line that is not a usable Segment message. ``kind`` groups it in the summary."""

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


# -- one line to one call ------------------------------------------------------------------------------------


def _timestamp(message: Mapping[str, Any]) -> dt.datetime | None:
    # Segment's `timestamp` is the event time corrected for the device's clock; exports always carry it, older
    # ones sometimes only the others.
    for key in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        value = message.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadLine(f"{key} is not a string", f"got {type(value).__name__}")
        try:
            # The C parser first; Python before 3.11 cannot read a "Z", and dateutil reads what it cannot.
            parsed = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            try:
                parsed = isoparse(value)
            except ValueError:
                raise BadLine(f"{key} is not an ISO-8601 date-time", repr(value[:60])) from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.timezone.utc)
    return None


def _field(message: Mapping[str, Any], camel: str, snake: str) -> Any:
    return message[camel] if camel in message else message.get(snake)


def call_for(message: Any, raw: bytes) -> tuple[str, dict[str, Any]]:
    """The client method and keyword arguments that reproduce a Segment message."""
    if not isinstance(message, dict):
        raise BadLine("not a JSON object", f"got {type(message).__name__}")
    kind = message.get("type")
    if not isinstance(kind, str) or kind.lower() not in _TYPES:
        raise BadLine("unknown or missing type", repr(kind)[:60])
    kind = kind.lower()
    timestamp = _timestamp(message)
    message_id = _field(message, "messageId", "message_id")
    if isinstance(message_id, bool) or not isinstance(message_id, (str, int)) or message_id == "":
        # No usable id: one derived from the line itself, so that --resume sends the line under the same id.
        ms = int(timestamp.timestamp() * 1000) if timestamp is not None else 0
        message_id = derived_ulid(ms, raw.strip())
    common: dict[str, Any] = {
        "user_id": _field(message, "userId", "user_id"),
        "context": message.get("context"),
        "timestamp": timestamp,
        "integrations": message.get("integrations"),
        "message_id": message_id,
    }
    if kind != "alias":
        common["anonymous_id"] = _field(message, "anonymousId", "anonymous_id")
    if kind == "identify":
        traits = message.get("traits")
        context = message.get("context")
        if traits is None and isinstance(context, dict):
            traits = context.get("traits")  # analytics.js also puts them here
        return kind, {**common, "traits": traits}
    if kind == "track":
        return kind, {**common, "event": message.get("event"), "properties": message.get("properties")}
    if kind in ("page", "screen"):
        return kind, {**common, "name": message.get("name"), "category": message.get("category"),
                      "properties": message.get("properties")}
    if kind == "group":
        return kind, {**common, "group_id": _field(message, "groupId", "group_id"), "traits": message.get("traits")}
    return kind, {**common, "previous_id": _field(message, "previousId", "previous_id")}


# -- the checkpoint ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Counts:
    delivered: int = 0
    rejected: int = 0
    skipped: int = 0
    bad: int = 0
    reasons: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # reason -> [count, first lines...]

    @property
    def lines(self) -> int:
        return self.delivered + self.rejected + self.skipped + self.bad

    def note(self, reason: str, line: int) -> None:
        entry = self.reasons.setdefault(reason, [0])
        entry[0] += 1
        if len(entry) <= 3:
            entry.append(line)


def _fingerprint(path: str) -> str:
    """What identifies the file: a hash of its first 64 KiB (the file may grow; it must not change)."""
    with _open(path) as handle:
        return hashlib.sha256(handle.read(65536)).hexdigest()


def _open(path: str) -> IO[bytes]:
    """The file's bytes; Segment's exports to S3 come gzipped (``.gz``)."""
    if path.endswith(".gz"):
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_checkpoint(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    if data.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a checkpoint of this version of analytics-cio")
    return data


def write_checkpoint(path: str, data: Mapping[str, Any]) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


# -- progress ------------------------------------------------------------------------------------------------


class Progress:
    """A tqdm bar when tqdm is installed and stderr is a terminal; else a line every 10% (of a long file)."""

    def __init__(self, total: int, mode: str, stream: TextIO) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.done = 0
        self._next_tenth = 1
        self._bar: Any = None
        if mode == "none":
            self.mode = "none"
            return
        if mode in ("auto", "bar"):
            try:
                from tqdm import tqdm
            except ImportError:
                if mode == "bar":
                    print("analytics-cio: tqdm is not installed (pip install 'analytics-cio[progress]'); "
                          "showing plain progress", file=stream)
            else:
                if mode == "bar" or stream.isatty():
                    self._bar = tqdm(total=total, unit=" lines", unit_scale=True, file=stream, dynamic_ncols=True)
        # A short file needs no progress lines (an explicit --progress plain still gets them).
        quiet = mode == "auto" and total < 10_000
        self.mode = "bar" if self._bar is not None else "none" if quiet else "plain"

    def advance_to(self, done: int) -> None:
        if done <= self.done:
            return
        if self._bar is not None:
            self._bar.update(done - self.done)
        self.done = done
        if self.mode == "plain" and self.done * 10 >= self._next_tenth * self.total:
            self._next_tenth = self.done * 10 // self.total + 1
            print(f"  {self.done:,} / {self.total:,} lines ({self.done * 100 // self.total}%)", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def count_lines(path: str) -> int:
    lines = 0
    last = b"\n"
    with _open(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


# -- the import ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ImportOptions:
    path: str
    checkpoint: str
    resume: bool = False
    restart: bool = False
    checkpoint_every: int = 5000
    progress: str = "auto"
    errors_path: str | None = None
    dry_run: bool = False


class Interrupted(Exception):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


@dataclasses.dataclass
class Chunk:
    """The lines between two checkpoints, until every one of them is delivered or reported."""

    lines: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # message id -> lines sent with it
    rejected: dict[int, str] = dataclasses.field(default_factory=dict)  # line -> its first reason
    bad: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, kind)
    skipped: int = 0
    next_line: int = 1  # where a resumed import starts once this chunk is settled
    offset: int = 0


class Importer:
    """Reads the file and calls the client on this thread; a second thread settles and checkpoints.

    The reader never waits for Customer.io: at each checkpoint it hands the chunk it read to the settling
    thread, which waits for the client's flush (everything queued before it delivered or reported), counts the
    chunk and writes the checkpoint, while the reader goes on. At most two chunks wait at a time.

    ``make_client(on_error)`` builds the client. With ``dry_run_out``, the client must use a
    :class:`~analytics_cio.testing.CaptureTransport` in sync mode: each line's operations are written there.
    """

    MAX_WAITING = 2

    def __init__(self, options: ImportOptions, make_client: Callable[[Callable[..., Any]], Client],
                 out: TextIO, err: TextIO, dry_run_out: TextIO | None = None) -> None:
        self.options = options
        self.out = out
        self.err = err
        self.dry_run_out = dry_run_out
        self.counts = Counts()
        self.shown = 0
        self._lock = threading.Condition()
        self._chunk = Chunk()
        self._waiting: collections.deque[Chunk] = collections.deque()  # read, not yet settled
        self._finished = False  # the reader is done: settle what is left, then stop
        self._stopping = False  # interrupted: settle nothing more
        self._failure: BaseException | None = None  # what stopped the settling thread
        self._fingerprint = ""
        self._errors_file: TextIO | None = None
        self.client = make_client(self._on_error)

    def _on_error(self, error: DeliveryError, messages: Sequence[Any]) -> None:
        """Called by the client (on its worker thread) for every message it could not deliver."""
        reason = str(error)
        with self._lock:
            chunks = [*self._waiting, self._chunk]
            for message in messages:
                message_id = message.get("messageId")
                for chunk in chunks:
                    lines = chunk.lines.get(message_id)
                    if lines:
                        for line in lines:
                            chunk.rejected.setdefault(line, reason)
                        break

    # -- the reader (main thread)

    def run(self) -> int:
        options = self.options
        self._fingerprint = _fingerprint(options.path)
        start = self._resume()
        if start is None:
            return 2
        next_line, offset = start
        progress = Progress(count_lines(options.path), options.progress, self.err)
        progress.advance_to(next_line - 1)
        if options.errors_path:
            self._errors_file = open(options.errors_path, "a" if next_line > 1 else "w", encoding="utf-8")  # noqa: SIM115
        settler = threading.Thread(target=self._settle_chunks, name="analytics-cio-import", daemon=True)
        settler.start()
        started = time.monotonic()
        line_number = next_line - 1
        try:
            with _sigterm_as_interrupt(), _open(options.path) as handle:
                handle.seek(offset)
                in_chunk = 0
                for raw in handle:
                    line_number += 1
                    offset += len(raw)
                    self._one_line(line_number, raw)
                    in_chunk += 1
                    if in_chunk >= options.checkpoint_every:
                        self._close_chunk(line_number + 1, offset)
                        in_chunk = 0
                    if line_number & 1023 == 0:
                        progress.advance_to(line_number)
                self._close_chunk(line_number + 1, offset, last=True)
                settler.join()
                if self._failure is not None:
                    raise RuntimeError(f"the import stopped: {self._failure!r}") from self._failure
                progress.advance_to(line_number)
        except (KeyboardInterrupt, Interrupted):
            progress.close()
            return self._interrupted(line_number)
        finally:
            progress.close()
            if self._errors_file is not None:
                self._errors_file.close()
        self.client.shutdown()
        if not options.dry_run:
            with contextlib.suppress(FileNotFoundError):
                os.remove(options.checkpoint)
        self._summary(time.monotonic() - started)
        return 1 if self.counts.rejected or self.counts.bad else 0

    def _resume(self) -> tuple[int, int] | None:
        """Where to start: (line number, byte offset); None when the checkpoint forbids starting."""
        options = self.options
        if options.dry_run:
            return 1, 0
        if not os.path.exists(options.checkpoint):
            if options.resume:
                print(f"note: no checkpoint at {options.checkpoint}: starting at the beginning", file=self.err)
            return 1, 0
        if not options.resume and not options.restart:
            print(f"error: {options.checkpoint} holds the checkpoint of an interrupted import of this file: "
                  "pass --resume to continue it, or --restart to start over", file=self.err)
            return None
        if options.restart:
            os.remove(options.checkpoint)
            return 1, 0
        state = read_checkpoint(options.checkpoint)
        if state.get("fingerprint") != self._fingerprint:
            print(f"error: {options.path} is not the file {options.checkpoint} was made for (its beginning "
                  "changed): pass --restart to start over", file=self.err)
            return None
        saved = state["counts"]
        self.counts = Counts(saved["delivered"], saved["rejected"], saved["skipped"], saved["bad"],
                             {reason: list(entry) for reason, entry in saved["reasons"].items()})
        self.shown = SHOWN_PROBLEMS  # the earlier run showed its share
        print(f"Resuming {options.path} at line {state['next_line']:,} "
              f"({self.counts.lines:,} message{'' if self.counts.lines == 1 else 's'} already settled)", file=self.err)
        return int(state["next_line"]), int(state["offset"])

    def _one_line(self, line_number: int, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise BadLine("not UTF-8", f"byte {exc.start + 1}") from None
            except json.JSONDecodeError as exc:
                # json's own texts may end in "at" ("Unterminated string starting at"): say it once
                where = exc.msg[:-3] if exc.msg.endswith(" at") else exc.msg
                raise BadLine("invalid JSON", f"{where} at character {exc.pos + 1}") from None
            method, arguments = call_for(parsed, raw)
        except BadLine as exc:
            self._bad(line_number, exc)
            return
        integrations = arguments.get("integrations")
        if isinstance(integrations, dict) and is_disabled(integrations):
            self._chunk.skipped += 1
            return
        message_id = arguments["message_id"]
        with self._lock:  # before the call: the worker may report the message before the call returns
            self._chunk.lines.setdefault(message_id, []).append(line_number)
        before = self._captured()
        try:
            getattr(self.client, method)(**arguments)
        except ArgumentError as exc:
            with self._lock:
                lines = self._chunk.lines[message_id]
                lines.remove(line_number)
                if not lines:
                    del self._chunk.lines[message_id]
            self._bad(line_number, BadLine("wrong argument", str(exc)))
            return
        if self.dry_run_out is not None:
            for op, _ in self.client.transport.sent(before):  # type: ignore[attr-defined]
                self.dry_run_out.write(json.dumps(op, ensure_ascii=False) + "\n")

    def _captured(self) -> int:
        count: Callable[[], int] | None = getattr(self.client.transport, "count", None)
        return count() if count is not None and self.dry_run_out is not None else 0

    def _bad(self, line_number: int, problem: BadLine) -> None:
        self._chunk.bad.append((line_number, problem.kind))
        self._problem(line_number, "bad", str(problem))

    def _problem(self, line_number: int, kind: str, reason: str) -> None:
        with self._lock:
            if self.shown < SHOWN_PROBLEMS:
                self.shown += 1
                print(f"line {line_number}: {reason}", file=self.err, flush=True)
                if self.shown == SHOWN_PROBLEMS:
                    where = "the errors file" if self._errors_file is not None else "--errors FILE"
                    print(f"(further problems: see the summary, and {where} for every line)", file=self.err)
            if self._errors_file is not None:
                self._errors_file.write(json.dumps({"line": line_number, "kind": kind, "reason": reason}) + "\n")

    def _close_chunk(self, next_line: int, offset: int, *, last: bool = False) -> None:
        """Hand the chunk read so far to the settling thread (waiting while two are already waiting)."""
        with self._lock:
            while len(self._waiting) >= self.MAX_WAITING and not last and self._failure is None:
                self._lock.wait(0.5)
            if self._failure is not None:
                raise RuntimeError(f"the import stopped: {self._failure!r}") from self._failure
            chunk, self._chunk = self._chunk, Chunk()
            chunk.next_line, chunk.offset = next_line, offset
            self._waiting.append(chunk)
            self._finished = last
            self._lock.notify_all()

    # -- the settling thread

    def _settle_chunks(self) -> None:
        try:
            self._settle_until_done()
        except BaseException as exc:  # e.g. the checkpoint cannot be written: the reader must not wait forever
            with self._lock:
                self._failure = exc
                self._stopping = True
                self._lock.notify_all()

    def _settle_until_done(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._finished:
                    self._lock.wait()
                if not self._waiting or self._stopping:
                    return
                ready = len(self._waiting)
            # The flush is queued behind every message of the `ready` chunks: once it returns, each of them is
            # delivered or was reported to _on_error.
            self.client.flush()
            with self._lock:
                if self._stopping:
                    return
                chunks = [self._waiting.popleft() for _ in range(ready)]
                self._lock.notify_all()
            for chunk in chunks:
                self._count(chunk)
            self._save(chunks[-1])

    def _count(self, chunk: Chunk) -> None:
        counts = self.counts
        counts.skipped += chunk.skipped
        for line, kind in chunk.bad:
            counts.bad += 1
            counts.note(f"bad line: {kind}", line)
        for line in sorted(line for lines in chunk.lines.values() for line in lines):
            reason = chunk.rejected.get(line)
            if reason is None:
                counts.delivered += 1
            else:
                counts.rejected += 1
                counts.note(reason[:200], line)
                self._problem(line, "rejected", reason)

    def _save(self, chunk: Chunk) -> None:
        if self.options.dry_run:
            return
        write_checkpoint(self.options.checkpoint, {
            "version": CHECKPOINT_VERSION,
            "file": os.path.abspath(self.options.path),
            "fingerprint": self._fingerprint,
            "next_line": chunk.next_line,
            "offset": chunk.offset,
            "counts": dataclasses.asdict(self.counts),
            "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        })

    # -- the end

    def _interrupted(self, line_number: int) -> int:
        # What was read after the last checkpoint may or may not have been sent: --resume sends it again
        # (Customer.io ignores the repeated events by their id). Give what is in flight a moment, no more.
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        with contextlib.suppress(KeyboardInterrupt, Interrupted):
            self.client.shutdown(timeout=2)
        if self.options.dry_run:
            print(f"\nInterrupted at line {line_number:,}.", file=self.err)
        elif os.path.exists(self.options.checkpoint):
            state = read_checkpoint(self.options.checkpoint)
            print(f"\nInterrupted at line {line_number:,}; lines before {state['next_line']:,} are settled "
                  f"({self.options.checkpoint}). Run the same command with --resume to continue.", file=self.err)
        else:
            print(f"\nInterrupted at line {line_number:,}, before the first checkpoint: run the same command again "
                  "to start over.", file=self.err)
        return 130

    def _summary(self, seconds: float) -> None:
        counts = self.counts
        dry = self.options.dry_run
        out = self.err if dry else self.out  # a dry run's stdout is the operations
        print(f"{'Checked' if dry else 'Imported'} {self.options.path}: {counts.lines:,} "
              f"message{'' if counts.lines == 1 else 's'} in {seconds:.1f}s", file=out)
        rows = [
            ("would be delivered" if dry else "delivered", counts.delivered, True),
            ("would be rejected" if dry else "rejected", counts.rejected, True),
            ("skipped (integrations turn Customer.io off)", counts.skipped, False),
            ("bad lines (not sent)", counts.bad, True),
        ]
        for label, number, always in rows:
            if number or always:
                print(f"  {number:>10,}  {label}", file=out)
        if counts.reasons:
            print("Reasons:", file=out)
            for reason, (number, *lines) in sorted(counts.reasons.items(), key=lambda item: -item[1][0]):
                more = ", ..." if number > len(lines) else ""
                which = f"line{'' if number == 1 else 's'} {', '.join(map(str, lines))}{more}"
                print(f"  {number:>10,}  {reason} ({which})", file=out)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the import as Ctrl-C does (so the checkpoint is kept and the summary printed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

