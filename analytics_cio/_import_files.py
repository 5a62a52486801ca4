"""Which files an import reads, in which order: files, globs and directories (Segment's S3 archive layout).

Segment's archive keeps ``segment-logs/<source id>/<day, in Unix ms>/<Unix ms>.<hash>.gz``: sorting the paths
by their numbers (``2`` before ``10``) reads them in the order Segment received the events, so one person's
events arrive in order across files too.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterator, Sequence

from ._import_lines import open_bytes

EXPORT_SUFFIXES = (".gz", ".json", ".jsonl", ".ndjson", ".txt")  # what a directory contributes
_NUMBER = re.compile(r"(\d+)")
_GLOB = re.compile(r"[*?\[]")


def natural_key(path: str) -> list[tuple[int, int | str]]:
    """Sorts ``day-2`` before ``day-10``: digit runs compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in _NUMBER.split(path) if part]


def expand(inputs: Sequence[str]) -> list[str]:
    """The files ``inputs`` name, each once, in reading order: named files as given, then directories'
    files (recursively; hidden ones and names without an export suffix left out) and globs' matches, each
    sorted naturally. Raises ``ValueError`` naming an input that matches no file."""
    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = list(_walk(item))
            if not found:
                raise ValueError(f"{item}: the directory holds no export files ({', '.join(EXPORT_SUFFIXES)})")
            files.extend(sorted(found, key=natural_key))
        elif os.path.isfile(item):
            files.append(item)
        elif _GLOB.search(item):
            found = [path for path in glob.glob(item, recursive=True) if os.path.isfile(path)]
            if not found:
                raise ValueError(f"{item}: no file matches")
            files.extend(sorted(found, key=natural_key))
        else:
            raise ValueError(f"{item}: no such file or directory")
    seen: set[str] = set()
    unique = []
    for path in files:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def _walk(directory: str) -> Iterator[str]:
    for root, dirs, names in os.walk(directory):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        yield from (os.path.join(root, name) for name in names
                    if not name.startswith(".") and name.endswith(EXPORT_SUFFIXES))


def fingerprint(path: str) -> str:
    """What identifies a file: a hash of its first 64 KiB (uncompressed). It may grow; it must not change."""
    with open_bytes(path) as handle:
        return hashlib.sha256(handle.read(65536)).hexdigest()
