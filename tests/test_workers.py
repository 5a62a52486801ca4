"""Task queues whose worker processes end with ``os._exit``: a real Celery prefork worker recycling its children
(``--max-tasks-per-child``) and a real ``rq worker`` forking a work horse per job, against a real redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics_cio import ArgumentTypeError, Client
from analytics_cio.testing._server import LocalCustomerIO

ROOT = Path(__file__).resolve().parents[1]
TASKS = 40


def seqs(server: LocalCustomerIO) -> list[int]:
    return [op["attributes"]["seq"] for op in server.ops() if "seq" in (op.get("attributes") or {})]


def environment(*paths: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, *paths)), **extra}


class Running:
    """A worker process whose output is collected as it comes (so a test can wait for a line)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.output.count(text) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                return self.output.count(text) >= count
            time.sleep(0.1)
        return True

    def stop(self) -> str:
        """SIGTERM (a warm shutdown for both workers), then the whole output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.output


# -- Celery ------------------------------------------------------------------------------------------------------

celery = pytest.importorskip("celery", reason="Celery is not installed (pip install -e '.[test]')")

CELERY_APP = """
    import os
    import analytics_cio
    import analytics_cio.contrib.celery
    from celery import Celery

    app = Celery("tasks", broker="filesystem://")
    app.conf.broker_transport_options = {{
        "data_folder_in": {queue!r}, "data_folder_out": {queue!r}, "processed_folder": {done!r},
    }}
    app.conf.broker_connection_retry_on_startup = True
    analytics_cio.site_id, analytics_cio.api_key, analytics_cio.host = "s", "k", {url!r}
    analytics_cio.upload_interval = 5  # nothing is sent while the task runs: only a flush or a shutdown sends it
    if os.environ.get("CONNECT") == "1":
        analytics_cio.contrib.celery.connect()
        analytics_cio.contrib.celery.connect()  # idempotent: still one flush and one shutdown per process

    @app.task(name="tasks.work")
    def work(i):
        analytics_cio.track("user-%d" % i, "Task Done", {{"seq": i}})
        return i
"""


def run_celery(server: LocalCustomerIO, tmp_path: Path, *, connect: bool) -> tuple[list[int], str]:
    queue, done = tmp_path / "queue", tmp_path / "done"
    queue.mkdir()
    done.mkdir()
    (tmp_path / "tasks.py").write_text(textwrap.dedent(CELERY_APP.format(queue=str(queue), done=str(done),
                                                                          url=server.url)))
    env = environment(tmp_path, CONNECT="1" if connect else "0")
    subprocess.run([sys.executable, "-c", f"import tasks\nfor i in range({TASKS}): tasks.work.delay(i)"],
                   cwd=tmp_path, env=env, check=True, timeout=60)
    worker = Running(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "prefork", "--concurrency", "2",
         "--max-tasks-per-child", "3", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "INFO"],
        tmp_path, env,
    )
    try:
        worker.wait_for("succeeded in", TASKS, timeout=90)
        if connect:
            server.wait_for(lambda s: len(seqs(s)) >= TASKS, timeout=30)
        else:
            time.sleep(1)
    finally:
        output = worker.stop()
    return sorted(seqs(server)), output


def test_celery_prefork_with_max_tasks_per_child_delivers_every_event_once(server: LocalCustomerIO,
                                                                          tmp_path: Path) -> None:
    delivered, output = run_celery(server, tmp_path, connect=True)
    assert output.count("succeeded in") == TASKS, output
    assert delivered == list(range(TASKS)), output  # all 40, none twice


def test_celery_without_connect_loses_what_recycled_children_held(server: LocalCustomerIO, tmp_path: Path) -> None:
    """The baseline connect() fixes: billiard's children end with os._exit, past atexit and every finalizer."""
    delivered, output = run_celery(server, tmp_path, connect=False)
    assert output.count("succeeded in") == TASKS, output
    assert len(delivered) < TASKS, delivered


def test_celery_connect_is_idempotent_and_checks_its_argument(server: LocalCustomerIO) -> None:
    from celery import signals

    import analytics_cio.contrib.celery as cio_celery

    client = Client("s", "k", host=server.url, upload_interval=5, max_requests_per_second=None)
    before = (len(signals.task_postrun.receivers), len(signals.worker_process_shutdown.receivers))
    try:
        cio_celery.connect(client)
        cio_celery.connect([client], flush_timeout=2)
        assert (len(signals.task_postrun.receivers), len(signals.worker_process_shutdown.receivers)) == (
            before[0] + 1, before[1] + 1)
        client.track("u", "Task Done", {"seq": 7})
        signals.task_postrun.send(sender=None)  # what Celery sends after a task: the event leaves now, not in 5 s
        assert seqs(server) == [7]
        signals.task_postrun.send(sender=None)  # nothing queued: returns at once, sends nothing
        assert server.request_count == 1
        signals.worker_process_shutdown.send(sender=None)
        assert client._closed
        with pytest.raises(ArgumentTypeError, match="client"):
            cio_celery.connect("not a client")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="flush_timeout"):
            cio_celery.connect(client, flush_timeout=-1)
    finally:
        cio_celery.disconnect()
        client.shutdown(timeout=5)
    assert (len(signals.task_postrun.receivers), len(signals.worker_process_shutdown.receivers)) == before


# -- RQ ----------------------------------------------------------------------------------------------------------

RQ_JOBS = """
    import analytics_cio

    analytics_cio.site_id, analytics_cio.api_key, analytics_cio.host = "s", "k", {url!r}
    analytics_cio.upload_interval = 5  # nothing is sent while the job runs: only the flush after it sends it

    def work(i):
        analytics_cio.track("user-%d" % i, "Job Done", {{"seq": i}})
        return i
"""


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("ANALYTICS_CIO_REQUIRE_RQ") == "1":
            pytest.fail("redis-server is required (ANALYTICS_CIO_REQUIRE_RQ=1): apt-get install redis-server")
        pytest.skip("redis-server is not installed (apt-get install redis-server); the RQ test needs a real one")
    pytest.importorskip("rq", reason="rq is not installed (pip install -e '.[test]')")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
                              "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or redis.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        redis.terminate()
        redis.wait(10)


def run_rq(server: LocalCustomerIO, tmp_path: Path, redis_url: str, *options: str) -> tuple[list[int], str]:
    (tmp_path / "jobs.py").write_text(textwrap.dedent(RQ_JOBS.format(url=server.url)))
    env = environment(tmp_path)
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import redis, rq
        queue = rq.Queue(connection=redis.Redis.from_url({redis_url!r}))
        for i in range({TASKS}):
            queue.enqueue("jobs.work", i)
    """)], cwd=tmp_path, env=env, check=True, timeout=60)
    worker = Running([sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url, *options],
                     tmp_path, env)
    try:
        worker.process.wait(120)  # --burst: it ends once the queue is empty
    finally:
        output = worker.stop()
    return sorted(seqs(server)), output


def test_rq_worker_delivers_every_event_once(server: LocalCustomerIO, tmp_path: Path, redis_url: str) -> None:
    delivered, output = run_rq(server, tmp_path, redis_url, "--worker-class", "analytics_cio.contrib.rq.Worker")
    assert output.count("Job OK") == TASKS, output
    assert delivered == list(range(TASKS)), output  # all 40, none twice, none left for the worker's own exit


def test_rq_without_the_worker_class_loses_what_work_horses_held(server: LocalCustomerIO, tmp_path: Path,
                                                                 redis_url: str) -> None:
    """The baseline the worker class fixes: a work horse ends with os._exit right after its job."""
    delivered, output = run_rq(server, tmp_path, redis_url)
    assert output.count("Job OK") == TASKS, output
    assert delivered == []

