"""What an import tells its user: problems as they happen (the first 20), every problem in the errors file,
progress, and the summary at the end."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from ._import_counts import ImportCounts

SHOWN_PROBLEMS = 20  # bad lines printed as they happen; the rest only in the summary and the errors file


class Problems:
    """Prints the first problems on ``err`` and appends every one to the errors file (which the import empties
    when it starts afresh). Owns its handle on the errors file."""

    def __init__(self, err: TextIO, errors_path: str | None, *, shown: int = 0) -> None:
        self.err = err
        self.shown = shown
        self._lock = threading.Lock()
        self._errors: int | None = None
        self.errors_path = errors_path
        if errors_path:
            self._errors = os.open(errors_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def report(self, where: str, line: int, kind: str, reason: str, file: str | None = None) -> None:
        """One bad or rejected line. ``where`` is how the terminal names it (``line 7``, ``a.gz line 7``)."""
        with self._lock:
            if self.shown < SHOWN_PROBLEMS:
                self.shown += 1
                print(f"{where}: {reason}", file=self.err, flush=True)
                if self.shown == SHOWN_PROBLEMS:
                    hint = "the errors file" if self._errors is not None else "--errors FILE"
                    print(f"(further problems: see the summary, and {hint} for every line)", file=self.err)
            if self._errors is not None:
                record: dict[str, Any] = {"line": line, "kind": kind, "reason": reason}
                if file is not None:
                    record["file"] = file
                # One write per record, appended: several workers share the file without mixing records.
                os.write(self._errors, (json.dumps(record, ensure_ascii=False) + "\n").encode())

    def close(self) -> None:
        if self._errors is not None:
            os.close(self._errors)
            self._errors = None


class Progress:
    """A tqdm bar when tqdm is installed and stderr is a terminal; else a line every 10% (of a long import)."""

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


def place(files: Sequence[str], file_index: int, line: int) -> str:
    """How the summary and the checkpoint name a line: ``7`` with one file, ``a.gz:7`` with several."""
    return str(line) if len(files) <= 1 else f"{os.path.basename(files[file_index])}:{line}"


def where(files: Sequence[str], file_index: int, line: int) -> str:
    """How a problem printed as it happens names its line."""
    return f"line {line}" if len(files) <= 1 else f"{files[file_index]} line {line}"


def summary(counts: ImportCounts, what: str, seconds: float, out: TextIO, *, dry_run: bool,
            single_file: bool = True) -> None:
    """The counts and the grouped reasons, as the import's last words."""
    print(f"{'Checked' if dry_run else 'Imported'} {what}: {counts.lines:,} "
          f"message{'' if counts.lines == 1 else 's'} in {seconds:.1f}s", file=out)
    rows = [
        ("would be delivered" if dry_run else "delivered", counts.delivered, True),
        ("would be rejected" if dry_run else "rejected", counts.rejected, True),
        ("skipped (integrations turn Customer.io off)", counts.skipped, False),
        ("bad lines (not sent)", counts.bad, True),
    ]
    for label, number, always in rows:
        if number or always:
            print(f"  {number:>10,}  {label}", file=out)
    if counts.reasons:
        print("Reasons:", file=out)
        for reason, number in sorted(counts.reasons.items(), key=lambda item: -item[1]):
            places = counts.examples.get(reason, [])
            more = ", ..." if number > len(places) else ""
            if single_file:
                which = f"line{'' if number == 1 else 's'} {', '.join(places)}{more}"
            else:
                which = f"{', '.join(places)}{more}"
            print(f"  {number:>10,}  {reason} ({which})", file=out)
