"""A fast local stand-in for Customer.io's Track API (and Segment's /v1/batch), for benchmarks.

Run it in its own process so it never competes with the client under test for the GIL::

    python benchmarks/fast_server.py --port 0 --fail-rate 0.2      # prints "LISTENING http://127.0.0.1:PORT"
    python benchmarks/fast_server.py --selftest                   # keep-alive requests/s on loopback

From a benchmark script use :class:`FastServer` (spawns the process, waits until it listens, stops it).

Every POST/PUT/DELETE is answered ``200 {}`` (or ``500`` for an injected failure) over HTTP/1.1 keep-alive.
For each request answered 200 the server records the events it carried:

- Customer.io v2 ``{"batch": [op, ...]}`` (and ``/api/v2/entity``): one event per op; its key is the op's
  ``id`` for actions event/page/screen;
- Customer.io v1 (and the ``customerio`` client): one event per request; key = the body's ``id`` if any;
- Segment ``/v1/batch`` ``{"batch": [msg, ...]}``: one event per msg; key = ``messageId``;
- an event without such an id is keyed by a content fingerprint (method, path and the op/body, canonical
  JSON), so a byte-identical retry of an identify is still seen as a duplicate.

Events also carry the benchmark's own sequence number (``bench_seq`` in properties/traits/attributes/data),
which maps what arrived back onto the calls that were made, whatever the wire format (``GET /_seqs``).

Control endpoints (not counted): ``GET /_stats``, ``GET /_seqs``, ``POST /_reset`` (optional JSON body
``{"fail_rate": 0.2, "seed": 1}`` reconfigures failure injection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import http.client
import json
import os
import random
import select
import socket
import subprocess
import sys
import time
import zlib
from typing import Any, Optional

try:  # orjson is much faster at parsing; the server is correct without it
    import orjson

    _loads = orjson.loads

    def _canonical(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)

except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

    def _canonical(obj: Any) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


EVENT_ACTIONS = frozenset({"event", "page", "screen"})
SEQ_KEY = "bench_seq"
_SEQ_CONTAINERS = ("properties", "traits", "attributes", "data")
MAX_HEADER_BYTES = 64 * 1024

_OK_BODY = b"{}"
_FAIL_BODY = b'{"meta":{"errors":["injected failure (fast_server --fail-rate)"]}}'


def _response(status: int, reason: str, body: bytes, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


_RESP_OK = _response(200, "OK", _OK_BODY)
_RESP_FAIL = _response(500, "Internal Server Error", _FAIL_BODY)


class Stats:
    """Everything the server counts. Lives in the server process; read it through ``GET /_stats``."""

    def __init__(self, fail_rate: float = 0.0, seed: int = 1) -> None:
        self.configure(fail_rate, seed)
        self.reset()

    def configure(self, fail_rate: float, seed: int) -> None:
        self.fail_rate = float(fail_rate)
        self.seed = int(seed)
        self.rng = random.Random(self.seed)

    def reset(self) -> None:
        self.rng = random.Random(self.seed)
        self.requests = 0
        self.failed_requests = 0
        self.bytes = 0  # request bodies after gunzip, all counted requests
        self.wire_bytes = 0  # request line + headers + raw body as received
        self.events_delivered = 0
        self.keys: set[Any] = set()
        self.duplicates = 0
        self.seqs: set[Any] = set()
        self.seq_duplicates = 0
        self.by_kind: dict[str, int] = {}
        self.first_request_time: Optional[float] = None
        self.last_delivery_time: Optional[float] = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "wire_bytes": self.wire_bytes,
            "events_delivered": self.events_delivered,
            "unique_ids": len(self.keys),
            "duplicates": self.duplicates,
            "unique_seqs": len(self.seqs),
            "seq_duplicates": self.seq_duplicates,
            "failed_requests": self.failed_requests,
            "requests_by_kind": dict(self.by_kind),
            "first_request_time": self.first_request_time,
            "last_delivery_time": self.last_delivery_time,
            "fail_rate": self.fail_rate,
            "seed": self.seed,
        }

    # -- recording ------------------------------------------------------------------------------------------

    def _event(self, key: Any, item: Any) -> None:
        self.events_delivered += 1
        if key in self.keys:
            self.duplicates += 1
        else:
            self.keys.add(key)
        seq = _find_seq(item)
        if seq is not None:
            if seq in self.seqs:
                self.seq_duplicates += 1
            else:
                self.seqs.add(seq)

    def record(self, method: str, path: str, body: bytes) -> str:
        """Count one delivered request; return its kind."""
        try:
            doc = _loads(body) if body else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
            kind = "segment-batch" if path.endswith("/v1/batch") else "cio-v2-batch"
            for item in doc["batch"]:
                self._event(_item_key(method, path, item), item)
        elif path.startswith("/api/v2/"):
            kind = "cio-v2-entity"
            self._event(_item_key(method, path, doc), doc)
        else:
            kind = "cio-v1" if path.startswith("/api/v1/") else "other"
            if isinstance(doc, dict) and isinstance(doc.get("id"), str) and doc.get("id"):
                key: Any = ("id", doc["id"])
            else:
                key = ("fp", hashlib.sha1(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest())
            self._event(key, doc)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        return kind


def _item_key(method: str, path: str, item: Any) -> Any:
    if isinstance(item, dict):
        message_id = item.get("messageId")
        if isinstance(message_id, str) and message_id:
            return ("messageId", message_id)
        if item.get("action") in EVENT_ACTIONS and isinstance(item.get("id"), str) and item["id"]:
            return ("id", item["id"])
    try:
        canon = _canonical(item)
    except (TypeError, ValueError):
        canon = repr(item).encode()
    return ("fp", hashlib.sha1(method.encode() + b" " + path.encode() + b"\n" + canon).hexdigest())


def _find_seq(item: Any) -> Any:
    if not isinstance(item, dict):
        return None
    if SEQ_KEY in item:
        return _norm_seq(item[SEQ_KEY])
    for name in _SEQ_CONTAINERS:
        inner = item.get(name)
        if isinstance(inner, dict) and SEQ_KEY in inner:
            return _norm_seq(inner[SEQ_KEY])
    return None


def _norm_seq(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


class _Request:
    __slots__ = ("body", "close", "headers", "method", "path", "wire")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes, wire: int, close: bool):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.wire = wire
        self.close = close


class _Incomplete(Exception):
    pass


class _BadRequest(Exception):
    pass


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int]:
    """Decode a chunked body that starts at ``start``; return (body, end offset) or raise _Incomplete."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            raise _Incomplete
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise _BadRequest("bad chunk size") from exc
        pos = eol + 2
        if size == 0:
            # skip optional trailers up to the blank line
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    raise _Incomplete
                if eol == pos:
                    return bytes(out), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            raise _Incomplete
        out += buf[pos : pos + size]
        pos += size + 2


class _Connection(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        transport = self.transport
        assert transport is not None
        while self.buf:
            try:
                request = self._parse()
            except _Incomplete:
                return
            except _BadRequest as exc:
                transport.write(_response(400, "Bad Request", json.dumps({"error": str(exc)}).encode(), True))
                transport.close()
                self.buf.clear()
                return
            transport.write(self.server.handle(request))
            if request.close:
                transport.close()
                self.buf.clear()
                return

    def _parse(self) -> _Request:
        buf = self.buf
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise _BadRequest("headers too large")
            raise _Incomplete
        lines = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise _BadRequest("bad request line") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body_start = head_end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raw, end = _dechunk(buf, body_start)
        else:
            try:
                length = int(headers.get("content-length", "0") or 0)
            except ValueError as exc:
                raise _BadRequest("bad content-length") from exc
            end = body_start + length
            if len(buf) < end:
                if headers.get("expect", "").lower() == "100-continue" and len(buf) == body_start:
                    assert self.transport is not None
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    headers.pop("expect")
                raise _Incomplete
            raw = bytes(buf[body_start:end])
        del buf[:end]
        connection = headers.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        path = target.split("?", 1)[0]
        return _Request(method.upper(), path, headers, raw, end, close)


class _Server:
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def handle(self, request: _Request) -> bytes:
        path = request.path
        if path.startswith("/_"):
            return self._control(request)
        stats = self.stats
        now = time.time()
        if stats.first_request_time is None:
            stats.first_request_time = now
        body = request.body
        encoding = request.headers.get("content-encoding", "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
        except (OSError, zlib.error, EOFError):
            return _response(400, "Bad Request", b'{"error":"cannot decompress body"}', request.close)
        stats.requests += 1
        stats.bytes += len(body)
        stats.wire_bytes += request.wire
        if request.method == "GET":
            if path == "/api/v1/accounts/region":
                return _response(200, "OK", b'{"url":"http://127.0.0.1","region":"us","environment_id":1}')
            return _response(200, "OK", _OK_BODY, request.close)
        if stats.fail_rate > 0 and stats.rng.random() < stats.fail_rate:
            stats.failed_requests += 1
            return _response(500, "Internal Server Error", _FAIL_BODY, True) if request.close else _RESP_FAIL
        stats.record(request.method, path, body)
        stats.last_delivery_time = time.time()
        return _response(200, "OK", _OK_BODY, True) if request.close else _RESP_OK

    def _control(self, request: _Request) -> bytes:
        stats = self.stats
        if request.path == "/_stats":
            payload = json.dumps(stats.as_dict()).encode()
        elif request.path == "/_seqs":
            payload = json.dumps(sorted(stats.seqs, key=lambda s: (isinstance(s, str), s))).encode()
        elif request.path == "/_reset" and request.method == "POST":
            options = json.loads(request.body) if request.body.strip() else {}
            stats.configure(options.get("fail_rate", stats.fail_rate), options.get("seed", stats.seed))
            stats.reset()
            payload = json.dumps(stats.as_dict()).encode()
        else:
            return _response(404, "Not Found", b'{"error":"unknown control endpoint"}', request.close)
        return _response(200, "OK", payload, request.close)


async def _serve(host: str, port: int, stats: Stats) -> None:
    loop = asyncio.get_running_loop()
    server_state = _Server(stats)
    server = await loop.create_server(
        lambda: _Connection(server_state), host, port, backlog=512, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"LISTENING http://{host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


# -- helpers for benchmark scripts ----------------------------------------------------------------------


class FastServer:
    """Run fast_server.py in a child process.

    >>> with FastServer(fail_rate=0.2) as server:
    ...     server.url, server.stats(), server.reset()
    """

    def __init__(
        self, fail_rate: float = 0.0, seed: int = 1, cpu: Optional[int] = None, host: str = "127.0.0.1"
    ) -> None:
        self.fail_rate = fail_rate
        self.seed = seed
        self.cpu = cpu
        self.host = host
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen[str]] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> FastServer:
        cmd = [sys.executable, os.path.abspath(__file__), "--host", self.host, "--port", "0"]
        cmd += ["--fail-rate", str(self.fail_rate), "--seed", str(self.seed)]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"fast_server did not start (got {line!r})")
        self.port = int(line.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while True:  # it printed after binding, but make sure it accepts before anyone relies on it
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.01)
        return self

    def _call(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {payload!r}")
            return json.loads(payload)
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_stats")

    def cpu_seconds(self) -> Optional[float]:
        """CPU time the server process has used so far (None where /proc is not available)."""
        if self.process is None:
            return None
        try:
            return _process_cpu_seconds(self.process.pid)
        except (OSError, ValueError, IndexError):
            return None

    def seqs(self) -> list[Any]:
        return self._call("GET", "/_seqs")

    def reset(self, fail_rate: Optional[float] = None, seed: Optional[int] = None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if fail_rate is not None:
            options["fail_rate"] = fail_rate
        if seed is not None:
            options["seed"] = seed
        return self._call("POST", "/_reset", options)

    def wait_quiet(self, quiet: float = 0.3, timeout: float = 10.0) -> dict[str, Any]:
        """Poll the stats until nothing new arrived for ``quiet`` seconds; return them."""
        deadline = time.monotonic() + timeout
        last = self.stats()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.stats()
            if (now["requests"], now["events_delivered"]) != (last["requests"], last["events_delivered"]):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> FastServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def get_stats(url: str) -> dict[str, Any]:
    """``GET {url}/_stats`` from any process (a benchmark worker only knows the URL)."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/_stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _selftest(requests: int, connections: int) -> int:
    """Hammer a fresh server with keep-alive POSTs from ``connections`` client processes; print requests/s."""
    op = {"type": "person", "action": "event", "name": "x", "id": "01H0000000000000000000000"}
    body = json.dumps({"batch": [op]})
    with FastServer() as server:
        assert server.process is not None
        cmd = [sys.executable, os.path.abspath(__file__), "--_client", server.url]
        cmd += ["--requests", str(requests), "--body", body]
        cpu_before = _process_cpu_seconds(server.process.pid)
        started = time.perf_counter()
        clients = [subprocess.Popen(cmd) for _ in range(connections)]
        codes = [c.wait() for c in clients]
        elapsed = time.perf_counter() - started
        cpu = _process_cpu_seconds(server.process.pid) - cpu_before
        stats = server.stats()
    total = requests * connections
    ok = stats["requests"] == total and stats["events_delivered"] == total and not any(codes)
    verdict = "OK" if ok else "FAIL"
    rate, capacity = total / elapsed, total / max(cpu, 1e-9)
    print(f"{total} keep-alive POSTs over {connections} connection(s) in {elapsed:.2f}s: {rate:,.0f} req/s")
    print(f"server CPU {cpu * 1e6 / total:.0f} us/request (one core saturates near {capacity:,.0f} req/s)")
    print(f"server counted {stats['requests']} requests, {stats['events_delivered']} events: {verdict}")
    return 0 if ok else 1


def _client(url: str, requests: int, body: str) -> int:
    """Minimal keep-alive client: one write per request, so the client itself is not the bottleneck."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    data = body.encode()
    request = (
        f"POST /api/v2/batch HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(requests):
            sock.sendall(request)
            response = b""
            while b"\r\n\r\n" not in response or not response.endswith(_OK_BODY):
                chunk = sock.recv(65536)
                if not chunk:
                    return 1
                response += chunk
            if not response.startswith(b"HTTP/1.1 200"):
                return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests answered 500")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failure injection")
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    parser.add_argument("--selftest", action="store_true", help="measure keep-alive requests/s and exit")
    parser.add_argument("--requests", type=int, default=5000, help="selftest: requests per connection")
    parser.add_argument("--connections", type=int, default=1, help="selftest: client connections")
    parser.add_argument("--_client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--body", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._client:
        return _client(args._client, args.requests, args.body)
    if args.selftest:
        return _selftest(args.requests, args.connections)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark server only listens on loopback")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, Stats(args.fail_rate, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
