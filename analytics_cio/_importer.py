"""``analytics-cio import``: Segment exports (newline-delimited messages) to Customer.io, resumably.

One line is one message (``{"type": "track", "userId": ..., "event": ..., "timestamp": ...}``). A line that
cannot be a message (invalid JSON, wrong types, an unknown type) is reported by its line number and skipped; it
never stops the import. Every other line is delivered or rejected, and rejections are reported with Customer.io's
reason, grouped in the summary.

This module orchestrates; each concept has its own module below it: which files (``_import_files``), their
lines (``_import_lines``), a line to the client (``_import_dispatch``), checkpoints (``_import_checkpoint``),
counts (``_import_counts``) and what the user is told (``_import_report``).

Resuming. At each checkpoint (every few seconds, or every ``checkpoint_every`` lines), a second thread waits
until everything read up to that line is delivered or reported, then records the place (file, line, byte
offset) and the counts in the checkpoint file; the reader goes on meanwhile, so Customer.io's answers never hold
the reading up. An interrupted import (Ctrl-C, SIGTERM, a crash, a kill) resumes from the last checkpoint with
``--resume``. Lines after it may have been sent already; they are sent again, and Customer.io ignores the events
a second time because each carries a ULID ``id`` derived from the line's ``messageId`` (a line without one gets
one derived from the line itself). Identifies, devices and objects are idempotent by nature.

Several workers. With ``workers`` > 1, N processes each read every line and send those of the people that hash
to them (:func:`~._import_dispatch.worker_of`), so one person's lines go through one worker in file order.
Each worker owns its checkpoint; the parent owns none of them, and removes them all once every worker is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable, TextIO

from . import _import_checkpoint as checkpoints
from ._client import Client
from ._errors import ArgumentError, ArgumentTypeError, ArgumentValueError, DeliveryError
from ._import_checkpoint import Checkpoint, CheckpointError
from ._import_counts import ImportCounts
from ._import_dispatch import Chunk, Dispatch, count_chunk, message_for, worker_of
from ._import_files import fingerprint
from ._import_lines import BLANK, BadLine, count_lines, decode, numbered_lines
from ._import_report import SHOWN_PROBLEMS, Problems, Progress, place, summary, where

OnError = Callable[[DeliveryError, Sequence[Any]], None]
MakeClient = Callable[[OnError], Client]
# (on_error, share of the request budget) -> a client; with N workers each builds one with a share of 1/N.
# Picklable when workers > 1: each worker process builds its own client.
ClientFactory = Callable[[OnError, float], Client]


@dataclasses.dataclass
class ImportOptions:
    """What the ``import`` command was asked. ``files`` are the files to read, in order (already expanded)."""

    files: list[str]
    checkpoint: str
    resume: bool = False
    restart: bool = False
    checkpoint_every: int | None = None  # lines; None: by time only
    checkpoint_seconds: float = 5.0
    progress: str = "auto"
    errors_path: str | None = None
    dry_run: bool = False
    workers: int = 1

    @property
    def what(self) -> str:
        return self.files[0] if len(self.files) == 1 else f"{len(self.files)} files"


# Messages the reader may have queued and not yet seen delivered: enough to keep full batches going, far below
# the client's max_queue_size (a message refused as "queue full" would be counted as rejected).
IN_FLIGHT = 20_000


def _wait_for_room(client: Client, check: Callable[[], None]) -> None:
    """Wait until the client has delivered half of what it holds: the reader goes no faster than Customer.io."""
    while client.queue_size > IN_FLIGHT // 2:
        check()
        time.sleep(0.005)


class Interrupted(Exception):
    """SIGTERM (or the parent process gone), raised in the main thread like Ctrl-C's KeyboardInterrupt."""


# -- one worker ----------------------------------------------------------------------------------------------


class Importer:
    """One worker: reads the files and hands its lines to the client on this thread; a second thread settles
    chunks and writes this worker's checkpoint.

    The reader does not wait for Customer.io's answers: at each checkpoint it closes the chunk it read, and the
    settling thread waits for the client's flush (everything queued before it delivered or reported), counts
    the chunk and saves the checkpoint, while the reader goes on. At most two chunks wait at a time, and the
    reader pauses while the client holds :data:`IN_FLIGHT` messages. Owns its :class:`Dispatch` (and through
    it the client), its problems report and its checkpoint file; the settling thread owns ``counts``.

    ``make_client(on_error)`` builds the client. With ``dry_run_out``, the client must use a
    :class:`~analytics_cio.testing.CaptureTransport` in sync mode: each line's operations are written there.
    """

    MAX_WAITING = 2

    def __init__(self, options: ImportOptions, make_client: MakeClient, err: TextIO, *, worker: int = 0,
                 start: Checkpoint | None = None, fingerprints: Sequence[str] = (),
                 dry_run_out: TextIO | None = None, on_progress: Callable[[int], None] | None = None) -> None:
        self.options = options
        self.worker = worker
        self.dry_run_out = dry_run_out
        files = options.files
        self.start = start or Checkpoint([], worker, options.workers, 0, 1, 0, ImportCounts())
        self.start.files = [(os.path.abspath(path), print_) for path, print_ in zip(files, fingerprints)]
        self.counts = self.start.counts
        resumed = start is not None and (start.file_index, start.next_line) != (0, 1)
        self.problems = Problems(err, options.errors_path, shown=SHOWN_PROBLEMS if resumed else 0)
        self.on_progress = on_progress
        self.dispatch = Dispatch(make_client)
        self.client = self.dispatch.client
        self._finished = False  # the reader is done: settle what is left, then stop
        self._stopping = False  # interrupted: settle nothing more
        self._failure: BaseException | None = None  # what stopped the settling thread
        self.lines_read = 0
        self.collect_garbage = False  # collect at each checkpoint (the caller turned automatic collection off)

    def run(self) -> ImportCounts:
        """Import from the start checkpoint to the end; raises KeyboardInterrupt or :class:`Interrupted`."""
        settler = threading.Thread(target=self._settle_chunks, name="analytics-cio-import", daemon=True)
        settler.start()
        try:
            self._read()
            settler.join()
            if self._failure is not None:
                raise RuntimeError(f"the import stopped: {self._failure!r}") from self._failure
        except BaseException:
            with self.dispatch.lock:
                self._stopping = True
                self.dispatch.lock.notify_all()
            with contextlib.suppress(KeyboardInterrupt, Interrupted):
                # What was read after the last checkpoint may or may not have been sent: --resume sends it
                # again (Customer.io ignores the repeated events by their id). Give what is in flight a moment.
                self.client.shutdown(timeout=2)
            raise
        finally:
            self.problems.close()
        self.client.shutdown()
        return self.counts

    def _read(self) -> None:
        options, dispatch, start = self.options, self.dispatch, self.start
        files, worker, workers = options.files, self.worker, options.workers
        every = options.checkpoint_every or 1 << 62
        seconds = options.checkpoint_seconds
        parent = os.getppid() if workers > 1 else None
        dispatch.current.file_index = start.file_index
        line, offset = start.next_line, start.offset
        ticks = 0
        for file_index in range(start.file_index, len(files)):
            if file_index != start.file_index:
                line, offset = 1, 0
            in_chunk = 0
            due = time.monotonic() + seconds
            for line, offset, raw in numbered_lines(files[file_index], offset, line):  # noqa: B020
                in_chunk += 1
                if in_chunk & 255 == 0:  # a checkpoint before this line?
                    self.lines_read += 256
                    ticks += 1
                    if self.client.queue_size > IN_FLIGHT:
                        _wait_for_room(self.client, lambda: self._check_parent(parent))
                    if in_chunk >= every or time.monotonic() >= due:
                        self._close_chunk(file_index, line, offset - len(raw))
                        in_chunk = 0
                        due = time.monotonic() + seconds
                    if ticks & 15 == 0:
                        self._tick(parent)
                try:
                    decoded = decode(raw)
                except BadLine as problem:
                    if line % workers == worker:
                        self._bad(file_index, line, problem)
                    continue
                if decoded is BLANK or (workers > 1 and worker_of(decoded, line, workers) != worker):
                    continue
                try:
                    message = message_for(decoded, raw)
                except BadLine as problem:
                    self._bad(file_index, line, problem)
                except ArgumentError as problem:
                    self._bad(file_index, line, BadLine("wrong argument", str(problem)))
                else:
                    if self.dry_run_out is None:
                        dispatch.send(line, message)
                        continue
                    before = self._captured()
                    dispatch.send(line, message)
                    for op, _ in self.client.transport.sent(before):  # type: ignore[attr-defined]
                        self.dry_run_out.write(json.dumps(op, ensure_ascii=False) + "\n")
            self.lines_read += in_chunk & 255
            if file_index < len(files) - 1:
                self._close_chunk(file_index + 1, 1, 0)
            else:
                self._close_chunk(file_index, line + 1, offset, last=True)
        self._tick(parent)

    def _tick(self, parent: int | None) -> None:
        self._check_parent(parent)
        if self.on_progress is not None:
            self.on_progress(self.lines_read)

    @staticmethod
    def _check_parent(parent: int | None) -> None:
        if parent is not None and os.getppid() != parent:
            raise Interrupted  # the parent is gone (killed): stop as if told to

    def _captured(self) -> int:
        count: Callable[[], int] | None = getattr(self.client.transport, "count", None)
        return count() if count is not None else 0

    def _bad(self, file_index: int, line: int, problem: BadLine) -> None:
        self.dispatch.bad(line, problem.kind)
        self._report(file_index, line, "bad", str(problem))

    def _report(self, file_index: int, line: int, kind: str, reason: str) -> None:
        files = self.options.files
        self.problems.report(where(files, file_index, line), line, kind, reason,
                             files[file_index] if len(files) > 1 else None)

    def _close_chunk(self, next_file: int, next_line: int, offset: int, *, last: bool = False) -> None:
        """Hand the chunk read so far to the settling thread (waiting while two are already waiting)."""
        lock = self.dispatch.lock
        parent = os.getppid() if self.options.workers > 1 else None
        with lock:
            while len(self.dispatch.waiting) >= self.MAX_WAITING and self._failure is None:
                lock.wait(0.5)
                self._check_parent(parent)
            if self._failure is not None:
                raise RuntimeError(f"the import stopped: {self._failure!r}") from self._failure
            self._finished = last
        self.dispatch.close_chunk(next_file, next_line, offset, last=last)

    # -- the settling thread

    def _settle_chunks(self) -> None:
        try:
            self._settle_until_done()
        except BaseException as exc:  # e.g. the checkpoint cannot be written: the reader must not wait forever
            with self.dispatch.lock:
                self._failure = exc
                self._stopping = True
                self.dispatch.lock.notify_all()

    def _settle_until_done(self) -> None:
        lock = self.dispatch.lock
        while True:
            with lock:
                while not self.dispatch.waiting and not self._finished and not self._stopping:
                    lock.wait()
                if not self.dispatch.waiting or self._stopping:
                    return
                ready = len(self.dispatch.waiting)
            # The flush is queued behind every message of the `ready` chunks: once it returns, each of them is
            # delivered or was reported to on_error.
            self.client.flush()
            with lock:
                if self._stopping:
                    return
            chunks = self.dispatch.take(ready)
            for chunk in chunks:
                self._count(chunk)
            self._save(chunks[-1])

    def _count(self, chunk: Chunk) -> None:
        files, index = self.options.files, chunk.file_index
        count_chunk(chunk, self.counts, lambda line: place(files, index, line),
                    lambda line, reason: self._report(index, line, "rejected", reason))

    def _save(self, chunk: Chunk) -> None:
        if self.options.dry_run:
            return
        state = self.start
        state.file_index, state.next_line, state.offset = chunk.next_file, chunk.next_line, chunk.offset
        state.counts, state.done = self.counts, chunk.last
        checkpoints.write(checkpoints.path_for(self.options.checkpoint, self.worker, self.options.workers), state)
        if self.collect_garbage:
            gc.collect()


# -- the whole import ----------------------------------------------------------------------------------------


def run_import(options: ImportOptions, make_client: ClientFactory, out: TextIO, err: TextIO,
               dry_run_out: TextIO | None = None) -> int:
    """The ``import`` command: resume policy, one worker here or N processes, the summary. Its exit status."""
    files = options.files
    fingerprints = [fingerprint(path) for path in files]
    starts = _starts(options, fingerprints, err)
    if starts is None:
        return 2
    per_file = [count_lines(path) for path in files] if options.progress != "none" else [0] * len(files)
    progress = Progress(sum(per_file), options.progress, err)
    bases = [_lines_before(per_file, start) for start in starts]
    if options.errors_path and all(start is None for start in starts):
        open(options.errors_path, "w").close()  # a fresh import: a fresh errors file, which each worker appends to
    progress.advance_to(min(bases))
    started = time.monotonic()
    interrupted = False
    try:
        if options.workers == 1:
            counts, interrupted = _one_worker(options, make_client, err, starts[0], fingerprints, dry_run_out,
                                              lambda read: progress.advance_to(bases[0] + read))
        else:
            counts, interrupted, failures = _many_workers(options, make_client, starts, fingerprints, progress,
                                                          bases)
            if failures:
                progress.close()
                for failure in failures:
                    print(f"error: {failure}", file=err)
                print("The other workers' places are saved: run the same command with --resume to continue.",
                      file=err)
                return 1
    finally:
        progress.close()
    if interrupted:
        _say_interrupted(options, err)
        return 130
    if not options.dry_run:
        checkpoints.remove(options.checkpoint)
    summary(counts, options.what, time.monotonic() - started, err if options.dry_run else out,
            dry_run=options.dry_run, single_file=len(files) == 1)
    return 1 if counts.rejected or counts.bad else 0


def _lines_before(per_file: Sequence[int], start: Checkpoint | None) -> int:
    if start is None:
        return 0
    return sum(per_file[:start.file_index]) + start.next_line - 1


def _starts(options: ImportOptions, fingerprints: Sequence[str], err: TextIO) -> list[Checkpoint | None] | None:
    """Each worker's checkpoint to resume from (None: the beginning); None when the checkpoints forbid starting."""
    workers, base = options.workers, options.checkpoint
    fresh: list[Checkpoint | None] = [None] * workers
    if options.dry_run:
        return fresh
    found = checkpoints.existing(base)
    if not found:
        if options.resume:
            print(f"note: no checkpoint at {base}: starting at the beginning", file=err)
        return fresh
    if not options.resume and not options.restart:
        print(f"error: {found[0]} holds the checkpoint of an interrupted import of this file: pass --resume to "
              "continue it, or --restart to start over", file=err)
        return None
    if options.restart:
        checkpoints.remove(base)
        return fresh
    files = [(os.path.abspath(path), print_) for path, print_ in zip(options.files, fingerprints)]
    try:
        states = [(path, checkpoints.read(path)) for path in found]
        for path, state in states:
            if state.workers != workers:
                raise CheckpointError(f"{path} was written by an import with --workers {state.workers}: pass "
                                      f"--workers {state.workers} to resume it, or --restart to start over")
            checkpoints.check_files(state, files, path)
    except CheckpointError as exc:
        print(f"error: {exc}", file=err)
        return None
    for _, state in states:
        fresh[state.worker] = state
    settled = sum(state.counts.lines for _, state in states)
    plural = "" if settled == 1 else "s"
    if workers == 1:
        state = states[0][1]
        print(f"Resuming {options.files[state.file_index]} at line {state.next_line:,} ({settled:,} "
              f"message{plural} already settled)", file=err)
    else:
        print(f"Resuming {options.what} with {workers} workers ({settled:,} message{plural} already settled)",
              file=err)
    return fresh


def _one_worker(options: ImportOptions, make_client: ClientFactory, err: TextIO, start: Checkpoint | None,
                fingerprints: Sequence[str], dry_run_out: TextIO | None, on_progress: Callable[[int], None],
                worker: int = 0) -> tuple[ImportCounts, bool]:
    """(counts, interrupted) of one worker run on this process's main thread."""
    if start is not None and start.done:
        return start.counts, False
    share = 1.0 / options.workers
    importer = Importer(options, lambda on_error: make_client(on_error, share), err, worker=worker, start=start,
                        fingerprints=fingerprints, dry_run_out=dry_run_out, on_progress=on_progress)
    importer.collect_garbage = True
    collecting = gc.isenabled()
    # The import's own process: the garbage collector runs at each checkpoint, not every 700 allocations. A
    # line's objects hold no cycles (reference counting frees them), and each automatic full collection
    # walked the 20,000 messages in flight: a fifth of the import's CPU.
    gc.disable()
    try:
        with _signals_interrupt():
            return importer.run(), False
    except (KeyboardInterrupt, Interrupted):
        return importer.counts, True
    finally:
        if collecting:
            gc.enable()


def _worker_main(options: ImportOptions, make_client: ClientFactory, worker: int, start: Checkpoint | None,
                 fingerprints: Sequence[str], results: Any, read: Any) -> None:
    """A worker process (spawned): its share of the import; its outcome on ``results``."""
    import sys

    def on_progress(lines: int) -> None:
        read[worker] = lines

    try:
        counts, interrupted = _one_worker(options, make_client, sys.stderr, start, fingerprints, None, on_progress,
                                          worker)
        results.put((worker, counts.to_json(), "interrupted" if interrupted else "done"))
    except BaseException as exc:
        results.put((worker, None, f"failed: {exc!r}"))


def _many_workers(options: ImportOptions, make_client: ClientFactory, starts: Sequence[Checkpoint | None],
                  fingerprints: Sequence[str], progress: Progress, bases: Sequence[int]
                  ) -> tuple[ImportCounts, bool, list[str]]:
    """Run ``options.workers`` worker processes and sum their counts: (counts, interrupted, what failed)."""
    # Spawned, not forked: a fork copies whatever threads and locks this process holds (a client built by the
    # application, a logging handler mid-write), and the child must build its own client anyway. Spawning
    # costs a fresh interpreter per worker, a fraction of a second against an import of minutes.
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    read = context.Array("q", options.workers, lock=False)
    processes = [context.Process(target=_worker_main, name=f"analytics-cio-import-{worker + 1}",
                                 args=(options, make_client, worker, starts[worker], fingerprints, results, read))
                 for worker in range(options.workers)]
    outcomes: dict[int, tuple[ImportCounts | None, str]] = {}
    interrupted = False
    with _signals_interrupt():
        try:
            for process in processes:
                process.start()
            outcomes.update(_collect(processes, results, lambda: progress.advance_to(
                min(base + read[worker] for worker, base in enumerate(bases)))))
        except (KeyboardInterrupt, Interrupted):
            interrupted = True
            for process in processes:  # each stops as Ctrl-C stops one worker, its checkpoint kept
                if process.pid is not None and process.is_alive():
                    with contextlib.suppress(OSError):
                        os.kill(process.pid, signal.SIGTERM)
            with _signals_ignored():
                outcomes.update(_collect(processes, results, lambda: None))
    total = ImportCounts()
    failures = []
    for worker in range(options.workers):
        counts, status = outcomes.get(worker, (None, "ended without a word (killed?)"))
        if counts is not None:
            total += counts
        if status != "done" and not interrupted and status != "interrupted":
            failures.append(f"worker {worker + 1} of {options.workers} {status}")
        elif status != "done":
            interrupted = True  # (a worker stopped by a signal of its own stops the whole import)
    return total, interrupted, failures


def _collect(processes: Sequence[Any], results: Any, tick: Callable[[], None]
             ) -> dict[int, tuple[ImportCounts | None, str]]:
    """The outcomes the workers report, until each has reported or ended."""
    import queue

    outcomes: dict[int, tuple[ImportCounts | None, str]] = {}
    while len(outcomes) < len(processes):
        try:
            worker, counts, status = results.get(timeout=0.2)
        except queue.Empty:
            tick()
            if not any(process.is_alive() for process in processes):
                with contextlib.suppress(queue.Empty):
                    while True:  # what a worker put just before it ended
                        worker, counts, status = results.get(timeout=0.2)
                        outcomes[worker] = (None if counts is None else ImportCounts.from_json(counts), status)
                break
            continue
        outcomes[worker] = (None if counts is None else ImportCounts.from_json(counts), status)
    for process in processes:
        process.join()
    return outcomes


def _say_interrupted(options: ImportOptions, err: TextIO) -> None:
    if options.dry_run:
        print("\nInterrupted.", file=err)
        return
    found = checkpoints.existing(options.checkpoint)
    if not found:
        print("\nInterrupted before the first checkpoint: run the same command again to start over.", file=err)
    elif options.workers == 1:
        state = checkpoints.read(found[0])
        print(f"\nInterrupted; lines before line {state.next_line:,} of {options.files[state.file_index]} are "
              f"settled ({found[0]}). Run the same command with --resume to continue.", file=err)
    else:
        print(f"\nInterrupted; each worker's place is saved ({', '.join(found)}). Run the same command with "
              "--resume to continue.", file=err)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM stops the import as Ctrl-C does (the checkpoints kept, the summary printed); once stopping, a
    second signal does not interrupt the stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted

    previous = signal.signal(signal.SIGINT, interrupt), signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


# -- one partition (for distributed engines) -----------------------------------------------------------------


def import_partition(items: Iterable[bytes | str | Mapping[str, Any]], client: Client, *,
                     settle_every: int = 100_000) -> ImportCounts:
    """Import one partition of an export through ``client`` and return what became of it.

    ``items`` are lines (``bytes`` or ``str``, as read from an export) or decoded Segment messages (dicts, as
    JSON has them: timestamps as ISO-8601 strings). Each is checked and sent as ``analytics-cio import`` sends a
    line; an item that is not a usable message is counted as bad, never raised. Returns once every item is
    delivered or reported: the counts say how many were delivered, rejected (with Customer.io's reasons),
    skipped and bad; places in them are the items' positions in the partition, from 1.

    Safe to re-run: each event's id derives from its message, so a partition imported twice (a retried task)
    stores each event once. The client stays open (the caller owns it); its ``on_error`` is still called.
    Every ``settle_every`` items the import waits for Customer.io's answers, which bounds the memory it keeps.
    """
    if not isinstance(client, Client):
        raise ArgumentTypeError("client", f"must be an analytics_cio.Client, not {type(client).__name__}")
    if isinstance(settle_every, bool) or not isinstance(settle_every, int) or settle_every < 1:
        raise ArgumentValueError("settle_every", f"must be a positive number of items, not {settle_every!r}")
    counts = ImportCounts()
    previous = client.on_error

    def hook(on_error: OnError) -> Client:
        def both(error: DeliveryError, messages: Sequence[Any]) -> None:
            on_error(error, messages)
            if previous is not None:
                previous(error, messages)

        client.on_error = both
        return client

    dispatch = Dispatch(hook)
    try:
        index = 0
        for index, item in enumerate(items, 1):
            _import_item(dispatch, index, item)
            if index % settle_every == 0:
                _settle(dispatch, counts)
            elif index & 255 == 0 and client.queue_size > IN_FLIGHT:
                _wait_for_room(client, lambda: None)
        _settle(dispatch, counts)
    finally:
        client.on_error = previous
    return counts


def _import_item(dispatch: Dispatch, index: int, item: Any) -> None:
    try:
        if isinstance(item, (bytes, str)):
            raw = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
            decoded = decode(raw)
            if decoded is BLANK:
                return
        elif isinstance(item, Mapping):
            decoded = dict(item)
            raw = json.dumps(decoded, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8", "replace")
        else:
            raise BadLine("neither a line nor a message", f"got {type(item).__name__}")
        message = message_for(decoded, raw)
    except BadLine as problem:
        dispatch.bad(index, problem.kind)
    except ArgumentError:
        dispatch.bad(index, "wrong argument")
    else:
        dispatch.send(index, message)


def _settle(dispatch: Dispatch, counts: ImportCounts) -> None:
    dispatch.close_chunk(0, 0, 0)
    dispatch.client.flush()
    for chunk in dispatch.take(len(dispatch.waiting)):
        count_chunk(chunk, counts, lambda line: f"#{line}")
