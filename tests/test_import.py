"""The importer, piece by piece (lines, files, checkpoints, counts, dispatch, report, encoding) and whole: several
files, --workers N, interruptions (SIGTERM, SIGKILL) resumed to exactly-once delivery, import_partition."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dateutil.parser import isoparse
from hypothesis import given
from hypothesis import strategies as st

import analytics_cio
from analytics_cio import (
    ArgumentTypeError,
    ArgumentValueError,
    Client,
    ImportCounts,
    _encoding,
    _import_checkpoint,
    _import_lines,
    import_partition,
)
from analytics_cio._import_checkpoint import Checkpoint, CheckpointError
from analytics_cio._import_dispatch import message_for, worker_of
from analytics_cio._import_files import expand, natural_key
from analytics_cio._import_lines import BLANK, BadLine, count_lines, numbered_lines
from analytics_cio._import_report import SHOWN_PROBLEMS, Problems, summary
from analytics_cio._ulid import derived_ulid
from analytics_cio._values import Verbatim
from analytics_cio.cli import _ImportClients, main
from analytics_cio.testing import Faults, LocalCustomerIO

from .conftest import API_KEY, SITE_ID


@pytest.fixture
def cio(server: LocalCustomerIO) -> LocalCustomerIO:
    """The local Customer.io (conftest's), by the name the command's tests give it."""
    return server


def send(server: LocalCustomerIO, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--host", server.url, "--site-id", SITE_ID, "--api-key", API_KEY, "--progress", "none"],
                out, err)
    return code, out.getvalue(), err.getvalue()


def track(seq: int, user: str, **extra: Any) -> str:
    return json.dumps({"type": "track", "event": "Order Completed", "userId": user, "messageId": f"ajs-{seq:07d}",
                       "timestamp": "2024-05-01T12:00:00.000Z", "properties": {"seq": seq}, **extra})


def write_export(path: Path, lines: int, people: int = 37, first: int = 0) -> list[int]:
    """``lines`` track lines (seq first..), people by seq; returns their seqs."""
    text = "".join(track(seq, f"user-{seq % people}") + "\n" for seq in range(first, first + lines))
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return list(range(first, first + lines))


def delivered_seqs(cio: LocalCustomerIO) -> list[int]:
    return [event["data"]["seq"] for event in cio.state.events()]


# -- lines ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ndjson", ".ndjson.gz"])
def test_lines_carry_their_numbers_and_offsets_and_resume_where_they_stopped(tmp_path: Path, suffix: str) -> None:
    content = b'{"a": 1}\n\n{"b": 2}\r\n{"c": "\xc3\xa9"}\n{"d": 4}'  # a blank line, CRLF, UTF-8, no final newline
    path = tmp_path / f"export{suffix}"
    path.write_bytes(gzip.compress(content) if suffix.endswith(".gz") else content)
    lines = list(numbered_lines(str(path)))
    assert [(number, raw) for number, _, raw in lines] == [
        (1, b'{"a": 1}\n'), (2, b"\n"), (3, b'{"b": 2}\r\n'), (4, b'{"c": "\xc3\xa9"}\n'), (5, b'{"d": 4}')]
    assert lines[-1][1] == len(content)
    assert count_lines(str(path)) == 5
    for number, offset, _ in lines:  # resuming after any line reads exactly the rest
        assert list(numbered_lines(str(path), offset, number + 1)) == lines[number:]


def test_decoding_is_the_same_whichever_json_decoder_reads_the_line() -> None:
    cases = [b'{"a": 1}\n', b'{"a": NaN}', b'{"a": 1e400}', b'{"s": "\\ud800"}', b'{"n": 18446744073709551615}',
             b'{"a": 1} trailing', b'{"a": "cut', b"\xff\xfe{}", b"   \r\n", b"[1, 2]", b'"text"', b'{"a": -0.0}']
    decoders = [_import_lines._standard_decode, _import_lines._orjson_decode]
    for raw in cases:
        outcomes = []
        for decode in decoders:
            try:
                value = decode(raw)
                outcomes.append(("blank",) if value is BLANK else ("value", json.dumps(value)))
            except BadLine as exc:
                outcomes.append(("bad", str(exc)))
        assert outcomes[0] == outcomes[1], raw
    with pytest.raises(BadLine, match=r"^not UTF-8: byte 1$"):
        _import_lines.decode(b"\xff{}")
    # orjson alone would read an integer past 64 bits as the nearest float: every digit is kept either way.
    for number in (123456789012345678901234567890, 18446744073709551616, -9223372036854775809):
        big = b'{"n": %d}' % number
        assert [decode(big)["n"] for decode in decoders] == [number, number]


# -- files ---------------------------------------------------------------------------------------------------


def test_directories_globs_and_files_expand_to_export_files_in_reading_order(tmp_path: Path) -> None:
    logs = tmp_path / "segment-logs" / "src"
    for day, name in (("1714608000000", "10.x.gz"), ("1714608000000", "2.x.gz"), ("1714521600000", "1.x.gz")):
        (logs / day).mkdir(parents=True, exist_ok=True)
        (logs / day / name).write_bytes(gzip.compress(b"{}\n"))
    (logs / "1714521600000" / ".partial.gz").write_bytes(b"")
    (logs / "1714521600000" / "manifest.csv").write_text("not an export")
    (logs / ".hidden").mkdir()
    (logs / ".hidden" / "x.gz").write_bytes(b"")
    single = tmp_path / "one.ndjson"
    single.write_text("{}\n")

    found = expand([str(tmp_path / "segment-logs"), str(single), str(tmp_path / "*.ndjson")])
    assert [os.path.relpath(path, tmp_path) for path in found] == [
        "segment-logs/src/1714521600000/1.x.gz", "segment-logs/src/1714608000000/2.x.gz",
        "segment-logs/src/1714608000000/10.x.gz", "one.ndjson"]  # numbers in order, one.ndjson once
    assert sorted(["a10", "a9", "b1"], key=natural_key) == ["a9", "a10", "b1"]
    for missing, text in ((tmp_path / "nope.ndjson", "no such file or directory"),
                          (tmp_path / "*.jsonl", "no file matches")):
        with pytest.raises(ValueError, match=re.escape(f"{missing}: {text}")):
            expand([str(missing)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="the directory holds no export files"):
        expand([str(tmp_path / "empty")])


# -- checkpoints and counts ----------------------------------------------------------------------------------


def test_a_checkpoint_is_written_whole_readable_by_its_owner_only_and_read_back(tmp_path: Path) -> None:
    base = str(tmp_path / "import.checkpoint")
    counts = ImportCounts(5, 1, 0, 2)
    counts.note("bad line: invalid JSON", "a.gz:7")
    state = Checkpoint([("/data/a.gz", "f1"), ("/data/b.gz", "f2")], 1, 2, 1, 42, 4096, counts)
    path = _import_checkpoint.path_for(base, 1, 2)
    _import_checkpoint.write(path, state)
    assert path.endswith(".checkpoint.2of2")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["import.checkpoint.2of2"]  # no temporary file left behind
    assert _import_checkpoint.read(path) == state
    assert _import_checkpoint.existing(base) == [path]

    _import_checkpoint.check_files(state, [("/data/a.gz", "f1"), ("/data/b.gz", "f2")], path)
    with pytest.raises(CheckpointError, match=r"b\.gz is not the file"):
        _import_checkpoint.check_files(state, [("/data/a.gz", "f1"), ("/data/b.gz", "changed")], path)
    with pytest.raises(CheckpointError, match="was made for other files"):
        _import_checkpoint.check_files(state, [("/data/a.gz", "f1")], path)
    Path(base).write_text('{"version": 1}')
    with pytest.raises(CheckpointError, match="not a checkpoint of this version"):
        _import_checkpoint.read(base)
    Path(base).write_text('{"version": 2, "fi')
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint"):
        _import_checkpoint.read(base)
    _import_checkpoint.remove(base)
    assert os.listdir(tmp_path) == []


def test_counts_add_up_across_workers_and_partitions() -> None:
    first, second = ImportCounts(delivered=3, bad=2), ImportCounts(delivered=4, rejected=1, skipped=1)
    for where in ("1", "2", "3", "4"):
        first.note("bad line: invalid JSON", where)
    second.note("bad line: invalid JSON", "9")
    second.note("person not found", "5")
    total = first + second
    assert (total.delivered, total.rejected, total.skipped, total.bad, total.lines) == (7, 1, 1, 2, 11)
    assert total.reasons == {"bad line: invalid JSON": 5, "person not found": 1}
    assert total.examples == {"bad line: invalid JSON": ["1", "2", "3"], "person not found": ["5"]}
    assert first.examples["bad line: invalid JSON"] == ["1", "2", "3"]  # + made a new value
    assert ImportCounts.from_json(json.loads(json.dumps(total.to_json()))) == total
    assert sum([first, second], ImportCounts()) == total


# -- one line to one message ---------------------------------------------------------------------------------


LINES = [
    {"type": "identify", "userId": "u1", "traits": {"plan": "pro", "at": "2024-05-01T10:00:00Z"}},
    {"type": "identify", "anonymousId": "a1", "context": {"traits": {"plan": "free"}, "ip": "1.2.3.4"}},
    {"type": "track", "userId": 42, "event": "Bought", "properties": {"n": [1, {"x": None}]},
     "integrations": {"All": True}},
    {"type": "page", "user_id": "u1", "name": "Home", "category": "", "properties": {"url": "/"}},
    {"type": "Screen", "anonymousId": "a1", "name": "Cart"},
    {"type": "group", "userId": "u1", "groupId": 7, "traits": {"name": "Acme"}},
    {"type": "alias", "userId": "u2", "previousId": "u1"},
]
CALLS = {
    "identify": ("identify", ("user_id", "traits", "context", "timestamp", "anonymous_id", "integrations")),
    "track": ("track", ("user_id", "event", "properties", "context", "timestamp", "anonymous_id", "integrations")),
    "page": ("page", ("user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id",
                      "integrations")),
    "screen": ("screen", ("user_id", "category", "name", "properties", "context", "timestamp", "anonymous_id",
                          "integrations")),
    "group": ("group", ("user_id", "group_id", "traits", "context", "timestamp", "anonymous_id", "integrations")),
    "alias": ("alias", ("previous_id", "user_id", "context", "timestamp", "integrations")),
}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


@pytest.mark.parametrize("line", LINES, ids=lambda line: line["type"])
@pytest.mark.parametrize("timestamp", ["2024-05-01T12:00:00.250Z", "2024-05-01T14:00:00+02:00", "2024-05-01"])
def test_a_line_becomes_the_message_the_clients_method_builds(line: dict[str, Any], timestamp: str) -> None:
    client = Client(send=False)
    line = {**line, "timestamp": timestamp, "messageId": "ajs-1"}
    method, parameters = CALLS[line["type"].lower()]
    arguments = {name: line.get(_camel(name), line.get(name)) for name in parameters}
    parsed = isoparse(timestamp)  # (Python 3.9's fromisoformat reads no "Z")
    arguments["timestamp"] = parsed.replace(tzinfo=parsed.tzinfo or dt.timezone.utc)
    if method == "identify" and arguments["traits"] is None:
        arguments["traits"] = line["context"]["traits"]
    _, expected = getattr(client, method)(**arguments, message_id="ajs-1")
    built = message_for(json.loads(json.dumps(line)), json.dumps(line).encode())
    assert built == expected
    assert list(built) == list(expected)  # the same fields, in the same order


def test_a_line_the_client_would_refuse_is_refused_with_the_clients_error() -> None:
    refused = [
        ({"type": "track", "userId": "u", "event": "E", "properties": "x"}, ArgumentTypeError, "properties"),
        ({"type": "track", "userId": "u"}, ArgumentValueError, "event"),
        ({"type": "track", "event": "E"}, ArgumentValueError, "user_id"),
        ({"type": "group", "userId": "u"}, ArgumentValueError, "group_id"),
        ({"type": "alias", "userId": "u"}, ArgumentValueError, "previous_id"),
        ({"type": "identify", "userId": {"id": 1}}, ArgumentTypeError, "user_id"),
        ({"type": "track", "userId": "u", "event": "E", "context": [1]}, ArgumentTypeError, "context"),
    ]
    for line, error, argument in refused:
        with pytest.raises(error) as caught:
            message_for(line, json.dumps(line).encode())
        assert caught.value.argument == argument  # type: ignore[attr-defined]
    deep: Any = {"x": 1}
    for _ in range(SNAPSHOT_DEPTH + 5):
        deep = {"x": deep}
    line = {"type": "track", "userId": "u", "event": "E", "properties": deep}
    with pytest.raises(ArgumentValueError, match="nested deeper than"):
        message_for(line, json.dumps(line).encode())
    for line, text in (([1], "not a JSON object"), ({"type": "yell"}, "unknown or missing type"),
                       ({"type": "track", "timestamp": 5}, "timestamp is not a string"),
                       ({"type": "track", "sentAt": "yesterday"}, "sentAt is not an ISO-8601 date-time")):
        with pytest.raises(BadLine, match=text):
            message_for(line, json.dumps(line).encode())


SNAPSHOT_DEPTH = 200


def test_a_line_without_a_message_id_is_sent_under_the_same_id_every_time() -> None:
    raw = b'{"type": "track", "userId": "u", "event": "E", "timestamp": "2024-05-01T12:00:00.250Z"}\n'
    first, second = (message_for(json.loads(raw), raw) for _ in range(2))
    assert first["messageId"] == second["messageId"] == derived_ulid(1714564800250, raw.strip())
    other = raw.replace(b'"E"', b'"F"')
    assert message_for(json.loads(other), other)["messageId"] != first["messageId"]


def test_derived_ids_are_the_base32_spelling_of_time_and_hash() -> None:
    crockford = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    for ms, seed in ((0, b""), (1714564800250, b"ajs-1"), (2**48 - 1, b"x" * 100), (2**50, b"y"), (-5, b"z")):
        value = (max(0, min(ms, 2**48 - 1)) << 80) | int.from_bytes(hashlib.sha256(seed).digest()[:10], "big")
        expected = base64.b32encode(value.to_bytes(20, "big"))[6:].decode().translate(crockford)
        assert derived_ulid(ms, seed) == expected


def test_one_persons_lines_all_go_to_one_worker() -> None:
    assert worker_of({"userId": 42}, 1, 4) == worker_of({"userId": "42"}, 9, 4)
    assert worker_of({"userId": "u1", "anonymousId": "a"}, 1, 4) == worker_of({"user_id": "u1"}, 2, 4)
    assert worker_of({"anonymousId": "a7"}, 1, 4) == worker_of({"anonymous_id": "a7"}, 5, 4)
    assert [worker_of([1], line, 3) for line in (1, 2, 3)] == [1, 2, 0]  # no one: by line number
    shares = [0, 0]
    for n in range(2000):
        shares[worker_of({"userId": f"user-{n}"}, n, 2)] += 1
    assert min(shares) > 900  # about half each


# -- encoding: the light walk over ISO date-times ------------------------------------------------------------


iso_texts = st.sampled_from(["2021-06-01T10:00:00Z", "2021-06-01 10:00", "2021-13-45T99:99", "2021-06-01",
                             "1999-12-31T23:59:59.999+05:30", "ab", "0000-00-00T00:00"])
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), iso_texts,
                   iso_texts.map(Verbatim), st.datetimes(timezones=st.just(dt.timezone.utc)), st.dates(),
                   st.decimals(allow_nan=False, places=2))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
                      | st.dictionaries(st.one_of(st.text(max_size=4), iso_texts), inner, max_size=4), max_leaves=25)


@pytest.mark.parametrize("fast", [_encoding._stdlib_fast] + (
    [_encoding._orjson_fast] if _encoding.JSON_LIBRARY == "orjson" else []), ids=lambda f: f.__name__)
@given(value=values)
def test_the_light_date_walk_gives_what_the_full_clean_gives(fast: Any, value: Any) -> None:
    assert json.loads(fast(value, True)) == json.loads(_encoding.encode_clean(value, True))


def test_the_light_walk_copies_only_what_it_changes() -> None:
    untouched = {"a": [1, "x"], "b": {"c": Verbatim("2021-06-01T10:00:00Z")}}
    assert _encoding._dates_converted(untouched) is untouched
    changed = {"a": [1, "x"], "b": {"at": "2021-06-01T10:00:00Z"}}
    converted = _encoding._dates_converted(changed)
    assert converted == {"a": [1, "x"], "b": {"at": 1622541600}}
    assert converted["a"] is changed["a"] and changed["b"]["at"] == "2021-06-01T10:00:00Z"


# -- what the user is told -----------------------------------------------------------------------------------


def test_the_first_problems_are_printed_and_every_one_is_written(tmp_path: Path) -> None:
    err = io.StringIO()
    errors = tmp_path / "errors.jsonl"
    problems = Problems(err, str(errors))
    for line in range(1, SHOWN_PROBLEMS + 6):
        problems.report(f"a.gz line {line}", line, "bad", "bad line: invalid JSON", "a.gz")
    problems.close()
    printed = err.getvalue().splitlines()
    assert printed[0] == "a.gz line 1: bad line: invalid JSON"
    assert len(printed) == SHOWN_PROBLEMS + 1 and "the errors file" in printed[-1]
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(records) == SHOWN_PROBLEMS + 5
    assert records[0] == {"line": 1, "kind": "bad", "reason": "bad line: invalid JSON", "file": "a.gz"}

    counts = ImportCounts(delivered=10, bad=4)
    for where in ("a.gz:1", "a.gz:9", "b.gz:2", "b.gz:3"):
        counts.note("bad line: invalid JSON", where)
    out = io.StringIO()
    summary(counts, "2 files", 1.25, out, dry_run=False, single_file=False)
    assert out.getvalue().splitlines() == [
        "Imported 2 files: 14 messages in 1.2s", "          10  delivered", "           0  rejected",
        "           4  bad lines (not sent)", "Reasons:", "           4  bad line: invalid JSON (a.gz:1, a.gz:9, "
        "b.gz:2, ...)"]


# -- the command: several files, several workers -------------------------------------------------------------


def test_an_archive_directory_is_imported_file_after_file(cio: LocalCustomerIO, tmp_path: Path) -> None:
    day = tmp_path / "segment-logs" / "src" / "1714521600000"
    day.mkdir(parents=True)
    write_export(day / "1714521600001.a.gz", 30)
    write_export(day / "1714521600002.b.gz", 30, first=30)
    (day / "1714521600003.c.ndjson").write_text(track(60, "u") + "\n{cut\n")
    checkpoint = tmp_path / "import.checkpoint"
    errors = tmp_path / "errors.jsonl"
    code, out, err = send(cio, "import", str(tmp_path / "segment-logs"), "--checkpoint", str(checkpoint),
                          "--errors", str(errors))
    assert code == 1, out + err
    assert "Imported 3 files: 62 messages in" in out
    assert re.search(r"61\s+delivered", out) and re.search(r"1\s+bad lines", out)
    assert "bad line: invalid JSON (1714521600003.c.ndjson:2)" in out
    assert f"{day / '1714521600003.c.ndjson'} line 2: invalid JSON" in err
    assert json.loads(errors.read_text())["file"] == str(day / "1714521600003.c.ndjson")
    assert delivered_seqs(cio) == list(range(61))  # the files in order, each line in order
    assert not checkpoint.exists()


@pytest.mark.timeout(300)
def test_two_workers_deliver_every_line_once_and_each_persons_lines_in_order(cio: LocalCustomerIO,
                                                                             tmp_path: Path) -> None:
    first, second = tmp_path / "part-1.ndjson.gz", tmp_path / "part-2.ndjson"
    seqs = write_export(first, 1500) + write_export(second, 1500, first=1500)
    with second.open("a") as handle:
        handle.write("not json\n")
    code, out, err = send(cio, "import", str(tmp_path / "part-*"), "--workers", "2", "--rate", "0",
                          "--checkpoint", str(tmp_path / "cp"))
    assert code == 1, out + err
    assert re.search(r"3,000\s+delivered", out) and re.search(r"1\s+bad lines", out)
    assert "bad line: invalid JSON (part-2.ndjson:1501)" in out
    events = cio.state.events()
    assert sorted(delivered_seqs(cio)) == seqs and len({e["id"] for e in events}) == len(events)
    by_person: dict[str, list[int]] = {}
    for event in events:
        by_person.setdefault(event["person"], []).append(event["data"]["seq"])
    assert len(by_person) == 37
    assert all(order == sorted(order) for order in by_person.values())
    assert list(tmp_path.glob("cp*")) == []


def test_each_worker_gets_its_share_of_the_request_budget() -> None:
    args = argparse.Namespace(dry_run=False, site_id="s", api_key="k", write_key=None, host="http://127.0.0.1:9",
                              region="us", api_version="v2", debug=False, retries=None, rate=30.0)
    client = _ImportClients(args)(lambda error, messages: None, 1 / 3)
    try:
        assert client.transport.rate_limiter._interval == pytest.approx(1 / 10)  # type: ignore[attr-defined]
    finally:
        client.shutdown()


def _command(cio: LocalCustomerIO, export: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "analytics_cio", "import", str(export), "--host", cio.url, "--site-id", SITE_ID,
            "--api-key", API_KEY, "--progress", "none", "--rate", "0", "--checkpoint-every", "300", *extra]


def _wait_for(paths: list[Path], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not all(path.exists() for path in paths):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoints"
        time.sleep(0.02)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL the parent", "SIGKILL every process", "SIGKILL one worker"])
def test_an_interrupted_import_with_workers_resumes_to_exactly_once_delivery(cio: LocalCustomerIO, tmp_path: Path,
                                                                            how: str) -> None:
    export = tmp_path / "export.ndjson"
    seqs = write_export(export, 6000)
    checkpoints = [Path(f"{export}.checkpoint.{k}of2") for k in (1, 2)]
    command = _command(cio, export, "--workers", "2")
    cio.faults = Faults(latency=0.05)  # slow answers: still running when interrupted after the checkpoints
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        _wait_for(checkpoints, first)
        if how == "SIGTERM":
            first.send_signal(signal.SIGTERM)
        elif how == "SIGKILL the parent":
            first.kill()  # the workers notice their parent is gone and stop, keeping their checkpoints
        elif how == "SIGKILL one worker":
            os.kill(_workers(first.pid)[0], signal.SIGKILL)  # the other one finishes its share
        else:
            os.killpg(first.pid, signal.SIGKILL)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.communicate()
    if how == "SIGTERM":
        assert first.returncode == 130, out + err
        assert "Run the same command with --resume" in err
    if how == "SIGKILL one worker":
        assert first.returncode == 1, out + err
        assert re.search(r"error: worker [12] of 2 ended without a word \(killed\?\)", err) and "--resume" in err
    deadline = time.monotonic() + 60
    while _workers_alive(first.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _workers_alive(first.pid)
    saved = [json.loads(path.read_text()) for path in checkpoints]
    assert all(stat.S_IMODE(os.stat(path).st_mode) == 0o600 for path in checkpoints)
    assert sum(state["counts"]["delivered"] for state in saved) < 6000

    cio.faults = Faults()
    second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=500)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Resuming " in second.stderr and "with 2 workers" in second.stderr
    assert re.search(r"6,000\s+delivered", second.stdout)
    events = cio.state.events()
    assert sorted(delivered_seqs(cio)) == seqs  # every line, once
    assert len({event["id"] for event in events}) == len(events) == 6000
    assert not any(path.exists() for path in checkpoints)


def _workers(parent: int) -> list[int]:
    """The import's worker processes, in the order they started (a spawned worker's parent is the import; the
    semaphore tracker is left out)."""
    found = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(parent)], capture_output=True,
                           text=True).stdout
    return sorted(int(line.split()[0]) for line in found.splitlines() if "spawn_main" in line)


def _workers_alive(session: int) -> bool:
    """Whether a process of the import's session (its workers) still runs."""
    found = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(session)], capture_output=True, text=True).stdout
    return any("Z" not in line.split()[1] for line in found.splitlines() if line.split())


def test_resuming_with_another_number_of_workers_is_refused(cio: LocalCustomerIO, tmp_path: Path) -> None:
    export = tmp_path / "export.ndjson"
    write_export(export, 10)
    state = Checkpoint([(str(export), "x")], 0, 2, 0, 3, 10, ImportCounts())
    _import_checkpoint.write(f"{export}.checkpoint.1of2", state)
    code, _, err = send(cio, "import", str(export), "--resume")
    assert code == 2 and "--workers 2" in err
    code, _, err = send(cio, "import", str(export))
    assert code == 2 and "--resume" in err and "--restart" in err
    code, out, _ = send(cio, "import", str(export), "--restart", "--workers", "3")
    assert code == 0 and re.search(r"10\s+delivered", out)
    assert list(tmp_path.glob("*.checkpoint*")) == []


def test_bad_worker_and_checkpoint_options_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    export = tmp_path / "export.ndjson"
    write_export(export, 1)
    for option, value, text in (("--workers", "0", "--workers must be at least 1"),
                                ("--checkpoint-seconds", "0", "--checkpoint-seconds must be more than 0")):
        assert main(["import", str(export), option, value, "--dry-run"]) == 2
        assert text in capsys.readouterr().err
    assert main(["import", str(tmp_path / "*.gz"), "--dry-run"]) == 2
    assert "no file matches" in capsys.readouterr().err


# -- import_partition ----------------------------------------------------------------------------------------


def test_a_partition_of_lines_and_messages_is_imported_and_counted(cio: LocalCustomerIO) -> None:
    reported: list[Any] = []
    client = Client(SITE_ID, API_KEY, host=cio.url, max_requests_per_second=None,
                    on_error=lambda error, messages: reported.append(error))
    items: list[Any] = [track(1, "u1").encode(), track(2, "u1") + "\n", json.loads(track(3, "u2")), b"\n",
                        b"{cut", 42, {"type": "identify", "anonymousId": "a"},
                        {"type": "track", "userId": "u", "event": "E", "integrations": {"Customer.io": False}}]
    counts = import_partition(iter(items), client, settle_every=2)
    assert (counts.delivered, counts.rejected, counts.skipped, counts.bad) == (3, 1, 1, 2)
    assert counts.examples["bad line: invalid JSON"] == ["#5"]
    assert counts.examples["bad line: neither a line nor a message"] == ["#6"]
    assert [examples for reason, examples in counts.examples.items() if not reason.startswith("bad")] == [["#7"]]
    assert len(reported) == 1  # the client's own on_error heard of the rejection too
    assert client.on_error is not None and client.on_error.__name__ == "<lambda>"  # given back
    assert sorted(delivered_seqs(cio)) == [1, 2, 3]
    assert import_partition([track(1, "u1")], client).delivered == 1  # again: stored once
    assert len(cio.state.events()) == 3
    client.shutdown()
    with pytest.raises(ArgumentTypeError, match="client"):
        import_partition([], "client")  # type: ignore[arg-type]
    with pytest.raises(ArgumentValueError, match="settle_every"):
        import_partition([], client, settle_every=0)


def test_import_partition_is_exported_lazily() -> None:
    code = "import sys, analytics_cio; print(sorted(m for m in sys.modules if m.startswith('analytics_cio._imp')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"
    assert "import_partition" in analytics_cio.__all__ and "ImportCounts" in analytics_cio.__all__


def test_the_reader_never_outruns_the_client_into_a_full_queue(cio: LocalCustomerIO,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from analytics_cio import _importer

    monkeypatch.setattr(_importer, "IN_FLIGHT", 40)
    cio.faults = Faults(latency=0.01)
    client = Client(SITE_ID, API_KEY, host=cio.url, max_requests_per_second=None, max_queue_size=600,
                    upload_size=20)  # the reader looks every 256 lines: 40 + 256 < 600
    counts = import_partition([track(seq, f"u{seq % 7}") for seq in range(3000)], client)
    client.shutdown()
    assert (counts.delivered, counts.rejected) == (3000, 0)  # without the wait, most would be "queue full"
    assert sorted(delivered_seqs(cio)) == list(range(3000))


def test_the_import_gives_the_garbage_collector_back_as_it_found_it(cio: LocalCustomerIO, tmp_path: Path) -> None:
    import gc

    export = tmp_path / "export.ndjson"
    write_export(export, 50)
    assert gc.isenabled()
    assert send(cio, "import", str(export))[0] == 0
    assert gc.isenabled()  # off while it ran (collected at each checkpoint), on again after
    gc.disable()
    try:
        assert send(cio, "import", str(export), "--restart")[0] == 0
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
