"""A real uWSGI serving a WSGI app that tracks, with and without Python threads; and the detection itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics_cio import _runtime
from analytics_cio.testing._server import LocalCustomerIO

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 20
WARNING = "uWSGI runs without Python threads"

APP = """
    import os
    import analytics_cio

    analytics_cio.site_id, analytics_cio.api_key = "s", "k"
    analytics_cio.host = os.environ["CIO_URL"]

    def application(environ, start_response):
        analytics_cio.track("visitor", "Page Served", {"seq": int(environ["QUERY_STRING"])})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
"""


def uwsgi_binary() -> tuple[str, tuple[int, ...]]:
    """The uwsgi built for this Python (beside it, as pip installs it), and its version."""
    beside = Path(sys.executable).with_name("uwsgi")
    binary = str(beside) if beside.exists() else shutil.which("uwsgi")
    if binary is None:
        if os.environ.get("ANALYTICS_CIO_REQUIRE_UWSGI") == "1":
            pytest.fail("uwsgi is required (ANALYTICS_CIO_REQUIRE_UWSGI=1): pip install -e '.[test]'")
        pytest.skip("uwsgi is not installed for this Python (pip install 'uwsgi<2.0.27' builds it with a C compiler)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return binary, tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class UWSGI:
    """``uwsgi --http`` with one worker under a master, serving APP; its log goes to a file."""

    def __init__(self, server: LocalCustomerIO, tmp_path: Path, *options: str) -> None:
        binary, _ = uwsgi_binary()
        (tmp_path / "app.py").write_text(textwrap.dedent(APP))
        self.port = free_port()
        self.log = tmp_path / "uwsgi.log"
        venv = ["--virtualenv", sys.prefix] if sys.prefix != sys.base_prefix else []  # uwsgi's Python: this one's
        env = {**os.environ, "CIO_URL": server.url, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
        self.process = subprocess.Popen(
            [binary, "--http", f"127.0.0.1:{self.port}", "--wsgi-file", str(tmp_path / "app.py"), "--master",
             "--processes", "1", "--logto", str(self.log), *venv, *options],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )

    def get(self, seq: int) -> bytes:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/?{seq}", timeout=10) as answer:
                    return bytes(answer.read())
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.1)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # SIGTERM would make uWSGI's master reload
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def serve(server: LocalCustomerIO, tmp_path: Path) -> Iterator[type[UWSGI]]:
    started: list[UWSGI] = []

    def start(*options: str) -> UWSGI:
        running = UWSGI(server, tmp_path, *options)
        started.append(running)
        return running

    yield start  # type: ignore[misc]
    for running in started:
        running.stop()


def seqs(server: LocalCustomerIO) -> list[int]:
    return sorted(op["attributes"]["seq"] for op in server.ops() if "seq" in (op.get("attributes") or {}))


def test_without_threads_each_request_sends_on_its_own_thread_and_warns_once(server: LocalCustomerIO,
                                                                             serve: type[UWSGI]) -> None:
    if uwsgi_binary()[1] >= (2, 0, 27):
        pytest.skip("uWSGI 2.0.27 and later always enable Python threads: nothing to detect")
    uwsgi = serve()
    for seq in range(REQUESTS):
        assert uwsgi.get(seq) == b"ok"
    # Sent before each answer left, not by a thread that runs only while a request does.
    assert seqs(server) == list(range(REQUESTS))
    log = uwsgi.stop()
    assert "Python threads support is disabled" in log
    assert log.count(WARNING) == 1, log
    assert "--enable-threads" in log


@pytest.mark.parametrize("options", [("--enable-threads",), ("--threads", "2")])
def test_with_threads_the_background_thread_delivers_while_the_worker_idles(
        server: LocalCustomerIO, serve: type[UWSGI], options: tuple[str, ...]) -> None:
    uwsgi = serve(*options)
    for seq in range(REQUESTS):
        assert uwsgi.get(seq) == b"ok"
    assert server.wait_for(lambda s: len(seqs(s)) >= REQUESTS, timeout=10)  # idle: no request gives it time
    assert seqs(server) == list(range(REQUESTS))
    assert WARNING not in uwsgi.stop()


def test_detection_reads_uwsgis_own_verdict_then_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _runtime.threads_starve() is False  # not under uWSGI
    fake = types.ModuleType("uwsgi")
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    assert _runtime.threads_starve() is False  # a module named uwsgi without uWSGI's options is not uWSGI
    fake.opt = {"master": True}  # type: ignore[attr-defined]
    assert _runtime.threads_starve() is True
    fake.opt = {"threads": b"4"}  # type: ignore[attr-defined]
    assert _runtime.threads_starve() is False
    fake.opt = {"enable-threads": True}  # type: ignore[attr-defined]
    assert _runtime.threads_starve() is False
    fake.has_threads = 0  # type: ignore[attr-defined]  # uWSGI's own verdict wins (--threads 1 enables nothing)
    assert _runtime.threads_starve() is True
