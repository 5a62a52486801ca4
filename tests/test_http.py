"""The v1 transport's own HTTP/1.1 client against a raw socket server that answers in every legal shape."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from analytics_cio._http import ConnectionPool, ProtocolError

Handler = Callable[[bytes], bytes]  # request bytes → raw answer bytes (b"" = close without answering)


class RawServer:
    """Accepts connections and answers each request with whatever the handler returns, byte for byte."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + reader.read(length)
                self.requests.append(request)
                answer = self.handler(request)
                if not answer:
                    return
                conn.sendall(answer)
                if b"connection: close" in answer.lower():
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(handler, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def pool_for(server: RawServer, scheme: str = "http") -> ConnectionPool:
    return ConnectionPool(f"{scheme}://127.0.0.1:{server.port}", timeout=5, size=2)


def test_one_request_on_the_wire(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    pool = pool_for(server)
    answer = pool.request("PUT", "/api/v1/customers/a%2Fb", b'{"x":1}', {"Authorization": "Basic abc"})
    assert (answer.status, answer.body) == (200, b"{}")
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"PUT /api/v1/customers/a%2Fb HTTP/1.1"
    assert set(lines[1:]) == {f"Host: 127.0.0.1:{server.port}".encode(), b"Authorization: Basic abc",
                              b"Content-Length: 7"}
    assert body == b'{"x":1}'
    pool.close()


def test_keep_alive_reuses_one_connection(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    pool = pool_for(server)
    for _ in range(5):
        assert pool.request("POST", "/x", b"{}", {}).status == 200
    assert server.connections == 1
    pool.close()


def test_chunked_answers_with_extensions_and_trailers(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda _: b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5;ext=1\r\n{\"met\r\n0B\r\na\":{\"x\":1}}\r\n0\r\nX-Trailer: 1\r\n\r\n")
    pool = pool_for(server)
    answer = pool.request("POST", "/x", b"{}", {})
    assert (answer.status, answer.body) == (400, b'{"meta":{"x":1}}')
    assert pool.request("POST", "/x", b"{}", {}).status == 400  # the connection is still in step
    assert server.connections == 1
    pool.close()


def test_an_answer_delimited_by_closing(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda _: b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nall of it")
    pool = pool_for(server)
    answer = pool.request("POST", "/x", b"{}", {})
    assert (answer.status, answer.body) == (500, b"all of it")
    assert pool.request("POST", "/x", b"{}", {}).status == 500
    assert server.connections == 2  # a closed connection is never reused
    pool.close()


def test_no_body_statuses(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda _: b"HTTP/1.1 204 No Content\r\n\r\n")
    pool = pool_for(server)
    assert pool.request("DELETE", "/x", None, {}).status == 204
    assert pool.request("DELETE", "/x", None, {}).status == 204
    assert b"Content-Length" not in server.requests[0]  # a DELETE without a body says nothing about one
    pool.close()


def test_a_stale_keepalive_connection_is_replaced_once(raw: Callable[..., RawServer]) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    answers = iter([ok, b"", ok])
    server = raw(lambda _: next(answers))
    pool = pool_for(server)
    assert pool.request("POST", "/x", b"{}", {}).status == 200
    assert pool.request("POST", "/x", b"{}", {}).status == 200  # the server dropped the idle one: reconnect
    assert server.connections == 2
    pool.close()


def test_a_fresh_connection_closed_without_answer_is_an_error(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda _: b"")
    with pytest.raises(ProtocolError):
        pool_for(server).request("POST", "/x", b"{}", {})


@pytest.mark.parametrize("answer", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_broken_answers_raise(raw: Callable[..., RawServer], answer: bytes) -> None:
    server = raw(lambda _: answer)
    pool = pool_for(server)
    with pytest.raises(OSError):
        pool.request("POST", "/x", b"{}", {})
    pool.close()


def test_line_breaks_never_reach_the_wire(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ValueError):
        pool_for(server).request("POST", "/x\r\nX-Evil: 1", b"{}", {})
    assert server.requests == []


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_tls_certificates_are_verified(raw: Callable[..., RawServer], self_signed: ssl.SSLContext) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", tls=self_signed)
    with pytest.raises(ssl.SSLCertVerificationError):
        pool_for(server, "https").request("POST", "/x", b"{}", {})


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_both_transports_verify_certificates_and_report_at_once(raw: Callable[..., RawServer],
                                                               self_signed: ssl.SSLContext, version: str) -> None:
    from analytics_cio import Client, RejectedError

    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", tls=self_signed)
    errors: list[tuple[Exception, list[object]]] = []
    client = Client("site", "key", host=f"https://127.0.0.1:{server.port}", api_version=version,
                    on_error=lambda e, ms: errors.append((e, list(ms))))
    _, msg = client.track("u", "Over TLS")
    assert client.flush(timeout=30) is True  # reported, not retried for minutes: a bad certificate stays bad
    client.shutdown()
    assert server.requests == []  # nothing was sent over the unverified connection
    assert len(errors) == 1 and errors[0][1] == [msg]
    assert isinstance(errors[0][0], RejectedError) and "certificate verification failed" in str(errors[0][0])
