"""Checkpoints: how far an import (or one of its workers) has everything delivered or reported.

A checkpoint records the files it was made for (path and fingerprint), the worker it belongs to, the place to
resume from (file, line number, byte offset) and the counts so far. It is written atomically (a private
temporary file, fsynced, renamed over the old one) and readable by its owner only (0600): it names the files.
With ``--workers N`` each worker owns ``CHECKPOINT.<k>of<N>``; with one worker the file is ``CHECKPOINT``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import glob
import json
import os
from collections.abc import Sequence
from typing import Any

from ._import_counts import ImportCounts

VERSION = 2


@dataclasses.dataclass
class Checkpoint:
    """One worker's place. ``done``: the worker finished; its counts are final."""

    files: list[tuple[str, str]]  # (absolute path, fingerprint), in reading order
    worker: int
    workers: int
    file_index: int
    next_line: int
    offset: int
    counts: ImportCounts
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "files": [{"path": path, "fingerprint": print_} for path, print_ in self.files],
            "worker": self.worker,
            "workers": self.workers,
            "file_index": self.file_index,
            "next_line": self.next_line,
            "offset": self.offset,
            "counts": self.counts.to_json(),
            "done": self.done,
            "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls([(str(f["path"]), str(f["fingerprint"])) for f in data["files"]], int(data["worker"]),
                   int(data["workers"]), int(data["file_index"]), int(data["next_line"]), int(data["offset"]),
                   ImportCounts.from_json(data["counts"]), bool(data.get("done", False)))


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or was made for other files or another number of workers."""


def path_for(base: str, worker: int, workers: int) -> str:
    """The checkpoint file of worker ``worker`` (counted from 0) of ``workers``."""
    return base if workers == 1 else f"{base}.{worker + 1}of{workers}"


def existing(base: str) -> list[str]:
    """Every checkpoint file of ``base``, whatever the number of workers that wrote them."""
    found = [base] if os.path.exists(base) else []
    return found + sorted(glob.glob(f"{glob.escape(base)}.*of*"))


def read(path: str) -> Checkpoint:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise CheckpointError(f"{path} is not a checkpoint of this version of analytics-cio")
        return Checkpoint.from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path} cannot be read as a checkpoint: {exc}") from None


def write(path: str, checkpoint: Checkpoint) -> None:
    """Atomically: a reader sees the old checkpoint or the new one, never a part, even after a crash."""
    temporary = f"{path}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(checkpoint.to_json(), handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def check_files(checkpoint: Checkpoint, files: Sequence[tuple[str, str]], path: str) -> None:
    """Refuse to resume over files other than those the checkpoint was made for."""
    if [abs_path for abs_path, _ in checkpoint.files] != [abs_path for abs_path, _ in files]:
        raise CheckpointError(f"{path} was made for other files ({len(checkpoint.files)}, starting with "
                              f"{checkpoint.files[0][0] if checkpoint.files else 'none'}): pass --restart to "
                              "start over")
    for (name, saved), (_, now) in zip(checkpoint.files, files):
        if saved != now:
            raise CheckpointError(f"{name} is not the file {path} was made for (its beginning changed): pass "
                                  "--restart to start over")


def remove(base: str) -> None:
    for path in existing(base):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
