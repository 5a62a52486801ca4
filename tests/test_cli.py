"""The analytics-cio command: one-call commands, --dry-run, import (bad lines, checkpoints, --resume), serve, demo."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from analytics_cio import Client
from analytics_cio.cli import build_parser, main
from analytics_cio.testing import Faults, LocalCustomerIO, Reply

from .conftest import API_KEY, SITE_ID

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEGMENT_EXPORT = EXAMPLES / "data" / "segment-export.ndjson"


@pytest.fixture(autouse=True)
def no_credentials_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY", "CUSTOMERIO_HOST", "CUSTOMERIO_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cio() -> Iterator[LocalCustomerIO]:
    """A local Customer.io that accepts only the test credentials."""
    with LocalCustomerIO(site_id=SITE_ID, api_key=API_KEY) as server:
        yield server


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def send(server: LocalCustomerIO, *argv: str) -> tuple[int, str, str]:
    return run(*argv, "--host", server.url, "--site-id", SITE_ID, "--api-key", API_KEY)


# -- one call at a time ----------------------------------------------------------------------------------------


def test_dry_run_prints_the_customer_io_operation_and_needs_no_credentials() -> None:
    code, out, err = run("track", "--user-id", "u1", "--event", "Signed Up", "-p", "plan=pro", "--dry-run")
    assert (code, err) == (0, "")
    op = json.loads(out)
    assert op["identifiers"] == {"id": "u1"}
    assert (op["action"], op["name"], op["attributes"]) == ("event", "Signed Up", {"plan": "pro"})


def test_key_value_pairs_are_json_when_they_parse_as_json() -> None:
    code, out, _ = run("identify", "-u", "u1", "--traits", '{"name": "Ada"}', "-t", "age=36", "-t", "zip=02139",
                       "-t", "vip=true", "-t", 'tags=["a","b"]', "-t", "city=Paris", "--dry-run")
    assert code == 0
    assert json.loads(out)["attributes"] == {"name": "Ada", "age": 36, "zip": "02139", "vip": True,
                                             "tags": ["a", "b"], "city": "Paris"}


def test_dry_run_with_v1_prints_the_request() -> None:
    code, out, _ = run("identify", "-u", "a/b", "-t", "plan=pro", "--dry-run", "--api-version", "v1")
    assert code == 0
    assert out.startswith("PUT /api/v1/customers/a%2Fb\n")


@pytest.mark.parametrize("api_version", ["v2", "v1"])
def test_every_command_reaches_customer_io(cio: LocalCustomerIO, api_version: str) -> None:
    version = ("--api-version", api_version)
    assert send(cio, "identify", "-u", "user-42", "-t", "email=ada@example.com", "-t", "plan=trial", *version)[0] == 0
    assert send(cio, "page", "--anonymous-id", "anon-1", "-n", "Pricing", *version)[0] == 0
    assert send(cio, "track", "-u", "user-42", "-e", "Order Completed", "--properties", '{"total": 49}',
                "--timestamp", "2024-03-01T10:00:00Z", *version)[0] == 0
    assert send(cio, "screen", "-u", "user-42", "-n", "Home", *version)[0] == 0
    assert send(cio, "group", "-u", "user-42", "-g", "acme", "-t", "name=Acme Ltd", *version)[0] == 0
    assert send(cio, "device", "add", "-u", "user-42", "--token", "tok-1", "--platform", "ios", *version)[0] == 0
    assert send(cio, "device", "add", "-u", "user-42", "--token", "tok-2", "--platform", "android",
                "-a", "push_enabled=false", *version)[0] == 0
    assert send(cio, "device", "remove", "-u", "user-42", "--token", "tok-1", *version)[0] == 0
    assert send(cio, "identify", "-u", "legacy-7", "-t", "newsletter=true", *version)[0] == 0
    code, out, _ = send(cio, "alias", "--previous-id", "legacy-7", "-u", "user-42", *version)
    assert (code, out) == (0, "delivered: alias\n")

    person = cio.state.person("user-42")
    assert person is not None
    assert person["attributes"] == {"email": "ada@example.com", "plan": "trial", "newsletter": True}
    assert list(person["devices"]) == ["tok-2"]
    assert person["devices"]["tok-2"]["attributes"] == {"push_enabled": "false"}
    names = [e["name"] for e in person["events"]]
    assert names[:3] == ["Order Completed", "Viewed Home Screen", "Device Created or Updated"]
    assert person["events"][0]["timestamp"] == 1709287200
    assert cio.state.object("1", "acme") is not None
    assert [e["name"] for e in cio.state.events() if e["person"] is None] == ["Pricing"]


def test_credentials_and_host_come_from_the_environment(cio: LocalCustomerIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMERIO_SITE_ID", SITE_ID)
    monkeypatch.setenv("CUSTOMERIO_API_KEY", API_KEY)
    monkeypatch.setenv("CUSTOMERIO_HOST", cio.url)
    assert run("track", "-u", "u1", "-e", "From Env")[0] == 0
    assert [e["name"] for e in cio.state.events()] == ["From Env"]


def test_wrong_credentials_are_reported(cio: LocalCustomerIO) -> None:
    code, _, err = run("track", "-u", "u1", "-e", "X", "--host", cio.url, "--site-id", SITE_ID, "--api-key", "nope")
    assert code == 1
    assert "HTTP 401" in err


def test_without_credentials_it_says_where_they_come_from() -> None:
    code, out, err = run("track", "-u", "u1", "-e", "X")
    assert (code, out) == (2, "")
    assert "CUSTOMERIO_SITE_ID" in err and "--dry-run" in err


def test_a_call_the_library_refuses_names_the_argument() -> None:
    code, _, err = run("identify", "-t", "plan=pro", "--dry-run")
    assert code == 2
    assert "user_id" in err


def test_a_call_customer_io_refuses_exits_1_with_its_reason(cio: LocalCustomerIO) -> None:
    code, _, err = send(cio, "device", "add", "-u", "u1", "--token", "t", "--platform", "windows")
    assert code == 1
    assert "context.device.type is 'windows'" in err


def test_bad_json_on_the_command_line_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["track", "-u", "u1", "-e", "X", "--properties", "{not json", "--dry-run"])
    assert exit_info.value.code == 2
    assert "not valid JSON" in capsys.readouterr().err


def _dead_url() -> str:
    """The URL of a port nothing listens on (it was free a moment ago)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_call_to_a_dead_host_fails_in_seconds_and_says_what_it_waits_for() -> None:
    url = _dead_url()
    started = time.monotonic()
    code, out, err = run("track", "-u", "u1", "-e", "Signed Up", "--host", url, "--site-id", SITE_ID,
                         "--api-key", API_KEY)
    assert time.monotonic() - started < 20  # two retries (about 2 s here), not the library's ten (over a minute)
    assert code == 1 and out == ""
    waiting = [line for line in err.splitlines() if line.startswith(f"analytics-cio: waiting for {url} ")]
    assert [line.rsplit(": ", 1)[1].split(" in ")[0] for line in waiting] == ["retry 1 of 2", "retry 2 of 2"]
    assert "not delivered: gave up after 3 attempts" in err
    assert API_KEY not in err


def test_retries_sets_how_long_a_call_waits(cio: LocalCustomerIO) -> None:
    code, _, err = run("track", "-u", "u1", "-e", "Once", "--host", _dead_url(), "--site-id", SITE_ID,
                       "--api-key", API_KEY, "--retries", "0")
    assert code == 1
    assert "waiting for" not in err and "gave up after 1 attempt in" in err
    cio.script(Reply(503), Reply(503), Reply(503))  # three temporary errors: more than the default two retries
    code, out, err = send(cio, "track", "-u", "u1", "-e", "Patient", "--retries", "3")
    assert code == 0, err
    assert out == "delivered: track\n"
    assert err.count("analytics-cio: waiting for http://127.0.0.1:") == 3
    assert [e["name"] for e in cio.state.events()] == ["Patient"]


def test_a_bad_retries_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["track", "-u", "u1", "-e", "X", "--retries", "-1", "--dry-run"])
    assert exit_info.value.code == 2
    assert "--retries: must be a whole number >= 0, not '-1'" in capsys.readouterr().err


def test_the_region_may_be_written_in_capitals(cio: LocalCustomerIO) -> None:
    code, _, err = run("track", "-u", "u1", "-e", "X", "--region", "EU", "--dry-run")
    assert (code, err) == (0, "")
    code, _, err = send(cio, "track", "-u", "u1", "-e", "X", "--region", " Eu")
    assert code == 0, err


def _option_actions(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _option_actions(sub, f"{prefix}{name} ")
        else:
            yield prefix.strip() or "analytics-cio", action


def test_every_option_has_help_and_the_flags_are_spelled_right(capsys: pytest.CaptureFixture[str]) -> None:
    without = [(command, action.option_strings or action.dest) for command, action in _option_actions(build_parser())
               if not action.help]
    assert without == []
    for command, singular in (("track", "--property"), ("identify", "--trait"), ("page", "--property")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert f"{singular} KEY=VALUE" in text
        assert "--propertie " not in text
    with pytest.raises(SystemExit):
        main(["track", "-u", "u1", "-e", "X", "-p", "novalue"])
    assert "argument -p/--property: expected KEY=VALUE, not 'novalue'" in capsys.readouterr().err


def test_the_bare_command_prints_the_command_list() -> None:
    result = subprocess.run([sys.executable, "-m", "analytics_cio"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "required" not in result.stderr
    assert result.stderr.startswith("usage: analytics-cio")
    for command in ("identify", "track", "page", "screen", "group", "alias", "device", "import", "serve", "demo"):
        assert re.search(rf"^    {command} +\S", result.stderr, re.MULTILINE), command  # listed, with what it does


def test_import_texts_read_as_english(tmp_path: Path) -> None:
    one = tmp_path / "one.ndjson"
    one.write_text('{"type": "track", "userId": "u1", "event": "A"}\n{"type": "track", "event": "Cut Off\n'
                   '{"type": "track", "userId": "u1", "event": "B"}\n'
                   '{"type": "track", "userId": "u1", "event": "B"} x\n')
    code, _, err = run("import", str(one), "--dry-run")
    assert code == 1
    assert "line 2: invalid JSON: Invalid control character at character 36" in err  # json says "… at"
    assert "at at" not in err
    assert "Checked " + str(one) + ": 4 messages in" in err
    assert "bad line: invalid JSON (lines 2, 4)" in err
    single = tmp_path / "single.ndjson"
    single.write_text('{"type": "track", "userId": "u1", "event": "A"}\n{"type": "track", "event": "Cut Off\n')
    code, _, err = run("import", str(single), "--dry-run")
    assert ": 2 messages in" in err and "bad line: invalid JSON (line 2)" in err
    single.write_text('{"type": "track", "userId": "u1", "event": "A"}\n')
    code, _, err = run("import", str(single), "--dry-run")
    assert code == 0 and ": 1 message in" in err


# -- import ------------------------------------------------------------------------------------------------------


def test_import_of_a_segment_export_reports_bad_lines_by_number_and_delivers_the_rest(
    cio: LocalCustomerIO, tmp_path: Path
) -> None:
    errors_file = tmp_path / "errors.jsonl"
    export = tmp_path / "export.ndjson"
    shutil.copy(SEGMENT_EXPORT, export)
    code, out, err = send(cio, "import", str(export), "--errors", str(errors_file))

    assert code == 1  # some lines were not delivered
    assert "line 7: invalid JSON" in err
    assert "line 10: wrong argument: properties: must be a dict, not str" in err
    assert "line 14: identify needs a userId or traits.email" in err
    assert re.search(r"10\s+delivered", out)
    assert re.search(r"1\s+rejected", out)
    assert re.search(r"1\s+skipped", out)
    assert re.search(r"2\s+bad lines", out)
    assert [(e["line"], e["kind"]) for e in map(json.loads, errors_file.read_text().splitlines())] == [
        (7, "bad"), (10, "bad"), (14, "rejected")]
    assert not Path(f"{export}.checkpoint").exists()  # finished: nothing to resume

    person = cio.state.person("user-42")
    assert person is not None
    assert person["attributes"]["plan"] == "pro"
    assert person["attributes"]["created_at"] == 1709284260
    assert len(person["devices"]) == 1
    assert "Internal Test Event" not in [e["name"] for e in person["events"]]
    assert [e["name"] for e in person["events"]].count("Order Completed") == 1


def test_import_twice_does_not_duplicate_events(cio: LocalCustomerIO, tmp_path: Path) -> None:
    """Segment message ids become ULID event ids derived from them, which Customer.io de-duplicates."""
    export = tmp_path / "export.ndjson"
    shutil.copy(SEGMENT_EXPORT, export)
    send(cio, "import", str(export))
    events = len(cio.state.events())
    send(cio, "import", str(export))
    assert len(cio.state.events()) == events
    assert cio.state.duplicates == events


def test_import_dry_run_prints_the_operations_as_json_lines(tmp_path: Path) -> None:
    export = tmp_path / "export.ndjson"
    shutil.copy(SEGMENT_EXPORT, export)
    code, out, err = run("import", str(export), "--dry-run")
    assert code == 1
    ops = [json.loads(line) for line in out.splitlines()]
    assert len(ops) == 11  # ten messages; the app install is an event and a device
    assert {op["action"] for op in ops} >= {"identify", "event", "page", "add_device", "merge"}
    assert "would be delivered" in err
    assert not Path(f"{export}.checkpoint").exists()


def test_import_reads_gzipped_exports(cio: LocalCustomerIO, tmp_path: Path) -> None:
    export = tmp_path / "export.ndjson.gz"
    export.write_bytes(gzip.compress(SEGMENT_EXPORT.read_bytes()))
    code, out, _ = send(cio, "import", str(export))
    assert code == 1
    assert re.search(r"10\s+delivered", out)


def test_import_refuses_to_start_over_a_checkpoint_silently(cio: LocalCustomerIO, tmp_path: Path) -> None:
    export = tmp_path / "export.ndjson"
    shutil.copy(SEGMENT_EXPORT, export)
    checkpoint = tmp_path / "export.ndjson.checkpoint"
    counts = {"delivered": 2, "rejected": 0, "skipped": 0, "bad": 0, "reasons": {}, "examples": {}}
    checkpoint.write_text(json.dumps({"version": 2, "files": [{"path": str(export), "fingerprint": "something else"}],
                                      "worker": 0, "workers": 1, "file_index": 0, "next_line": 3, "offset": 10,
                                      "counts": counts}))
    code, _, err = send(cio, "import", str(export))
    assert code == 2 and "--resume" in err and "--restart" in err
    code, _, err = send(cio, "import", str(export), "--resume")
    assert code == 2 and "is not the file" in err
    code, out, _ = send(cio, "import", str(export), "--restart")
    assert code == 1 and re.search(r"10\s+delivered", out)
    assert cio.request_count > 0


def _write_export(path: Path, lines: int) -> dict[str, int]:
    """A Segment export with a bad line now and then; returns what an import of it must report."""
    expected = {"delivered": 0, "rejected": 0, "bad": 0, "events": 0}
    with path.open("w", encoding="utf-8") as out:
        for n in range(1, lines + 1):
            ts = f"2024-03-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.000Z"
            base: dict[str, Any] = {"messageId": f"ajs-{n:08d}", "timestamp": ts, "receivedAt": ts,
                                    "userId": f"user-{n % 2000}", "context": {"ip": "203.0.113.9"}, "version": 2}
            if n % 997 == 0:
                out.write('{"type": "track", "event": "Cut Off\n')
                expected["bad"] += 1
                continue
            if n % 1999 == 0:
                base.update(type="track", event="Wrong", properties="not an object")
                expected["bad"] += 1
            elif n % 2999 == 0:
                del base["userId"]
                base.update(type="identify", anonymousId="anon-1", traits={"plan": "free"})
                expected["rejected"] += 1  # Customer.io cannot create a person from an anonymous id
            elif n % 4999 == 0:
                base.update(type="track", event="Application Installed",
                            context={"device": {"token": f"tok-{n}", "type": "windows"}})
                expected["rejected"] += 1  # Customer.io has no such platform: the device is not added (the event goes)
                expected["events"] += 1
            elif n % 5 == 0:
                base.update(type="identify", traits={"plan": "pro", "seen": n})
                expected["delivered"] += 1
            else:
                base.update(type="track" if n % 2 else "page", event="Product Viewed", name="Pricing",
                            properties={"n": n})
                expected["delivered"] += 1
                expected["events"] += 1
            out.write(json.dumps(base) + "\n")
    return expected


def _summary_counts(out: str) -> dict[str, int]:
    counts = {}
    for label in ("delivered", "rejected", "bad lines"):
        match = re.search(rf"([\d,]+)\s+{label}", out)
        assert match, out
        counts[label.split()[0]] = int(match.group(1).replace(",", ""))
    return counts


@pytest.mark.timeout(600)
def test_a_large_import_survives_an_interruption_and_resumes(cio: LocalCustomerIO, tmp_path: Path) -> None:
    # 25,000 lines, checkpointed every 2,500: the same interruption, resumption and arithmetic as the 100,000
    # lines and 5,000-line checkpoints of a real export, in a quarter of the time (a 100,000-line import is a
    # throughput figure: README, "Importing Segment exports").
    export = tmp_path / "export.ndjson"
    expected = _write_export(export, 25_000)
    checkpoint = Path(f"{export}.checkpoint")
    command = [sys.executable, "-m", "analytics_cio", "import", str(export), "--host", cio.url, "--site-id",
               SITE_ID, "--api-key", API_KEY, "--progress", "none", "--rate", "0", "--checkpoint-every", "2500"]

    # Slow answers make sure the import is still running when it is interrupted after its first checkpoint.
    cio.faults = Faults(latency=0.05)
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not checkpoint.exists():
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130, out + err
    assert "--resume" in err
    saved = json.loads(checkpoint.read_text())
    assert 1 < saved["next_line"] < 25_000

    cio.faults = Faults()
    second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=500)
    assert second.returncode == 1, second.stdout + second.stderr  # 1: some lines were bad or rejected
    assert f"Resuming {export} at line {saved['next_line']:,}" in second.stderr
    counts = _summary_counts(second.stdout)
    assert counts == {"delivered": expected["delivered"], "rejected": expected["rejected"], "bad": expected["bad"]}
    assert "25,000 messages" in second.stdout
    assert not checkpoint.exists()
    # Lines sent before the interruption and again after it are de-duplicated: each event exactly once.
    events = cio.state.events()
    assert len(events) == expected["events"]
    assert len({e["id"] for e in events}) == len(events)


# -- serve and demo ------------------------------------------------------------------------------------------


def test_demo_shows_a_populated_local_customer_io() -> None:
    code, out, _ = run("demo")
    assert code == 0, out
    assert "People (1)" in out
    assert "id=user-42  email=ada@example.com" in out
    assert "plan=pro" in out
    assert "device: ios ios-token-7f3a9c" in out
    assert "fcm-token-c81d44" not in out  # installed, then uninstalled
    assert "Pricing" in out and "(while anonymous)" in out
    # Times as UTC dates with their zone, never bare hours or Unix seconds.
    assert re.search(r"^      \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  page   Pricing ", out, re.MULTILINE)
    assert re.search(r"created_at=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ,", out)
    assert not re.search(r"^      \d\d:\d\d  ", out, re.MULTILINE)
    assert "Viewed Welcome Screen" in out
    assert "type 1 / acme" in out
    assert '{"id": "legacy-7"} merged into {"id": "user-42"}' in out


def test_serve_runs_a_local_customer_io_until_interrupted() -> None:
    server = subprocess.Popen([sys.executable, "-m", "analytics_cio", "serve", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        first_line = server.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", first_line)
        assert match, first_line + server.stderr.read()  # type: ignore[union-attr]
        client = Client("any", "thing", host=match.group(0), sync_mode=True)
        client.identify("u1", {"plan": "pro"})
        client.shutdown()
        state = requests.get(match.group(0) + "/_state", timeout=10).json()
        assert state["people"][0]["attributes"] == {"plan": "pro"}
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0
    assert "Stopped after 1 requests" in out


def test_the_console_script_and_python_m_are_the_same_command() -> None:
    script = shutil.which("analytics-cio")
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    for command in ([script] if script else []) + [[sys.executable, "-m", "analytics_cio"]]:
        argv = command if isinstance(command, list) else [command]
        result = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0
        assert "demo" in result.stdout and "import" in result.stdout
