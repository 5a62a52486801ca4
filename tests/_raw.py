"""Raw-socket servers on 127.0.0.1 for HTTP tests: they answer byte for byte what a test says, however broken.

``RawServer(handler)``: reads each request (head and Content-Length body), records it, and lets ``handler``
answer on the socket. A handler returns the answer's bytes, ``CLOSE`` (close without answering), or ``None``
when it wrote (or trickled, or streamed) the answer itself. ``close_after=True`` on an answer closes the
connection after it. ``RawProxy``: an HTTP forward proxy (CONNECT tunnels and absolute-form requests) that
records what reached it. Both use TLS when given a server context.
"""

from __future__ import annotations

import datetime
import ipaddress
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

CLOSE = b""


@dataclass
class Request:
    """One request as received: head (request line and headers) and body."""

    head: bytes
    body: bytes
    connection: int  # which accepted connection it came on (1, 2, …)

    @property
    def line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


Handler = Callable[[Request, socket.socket], Union[bytes, None]]


@dataclass
class _Stats:
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


def _read_request(reader: object, connection: int) -> Request | None:
    readline = reader.readline  # type: ignore[attr-defined]
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = readline(65537)
        if not line:
            return None
        head += line
    request = Request(head, b"", connection)
    length = request.header("content-length")
    if length:
        request.body = reader.read(int(length))  # type: ignore[attr-defined]
    return request


class RawServer:
    """Answers every request with whatever ``handler`` writes. ``url`` is its http(s)://127.0.0.1:port."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.stats = _Stats()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def requests(self) -> list[Request]:
        return list(self.stats.requests)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.stats.connections += 1
                number = self.stats.connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            while True:
                request = _read_request(reader, number)
                if request is None:
                    return
                with self._lock:
                    self.stats.requests.append(request)
                    self.stats.in_flight += 1
                    self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
                try:
                    answer = self.handler(request, conn)
                finally:
                    with self._lock:
                        self.stats.in_flight -= 1
                if answer == CLOSE:
                    return
                if answer is not None:
                    conn.sendall(answer)
                    if b"\r\nconnection: close\r\n" in answer.lower().split(b"\r\n\r\n", 1)[0] + b"\r\n":
                        return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._sock.close()


def ok(body: bytes = b"{}", status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


class RawProxy:
    """An HTTP forward proxy: tunnels CONNECT, forwards absolute-form requests; records each request head."""

    def __init__(self) -> None:
        self.heads: list[Request] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            reader = conn.makefile("rb")
            request = _read_request(reader, 0)
            if request is None:
                return
            self.heads.append(request)
            method, target, _ = request.line.split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host, int(port)))
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pending = b""
            else:  # absolute form: http://host:port/path
                authority = target.split("://", 1)[1].split("/", 1)[0]
                host, _, port = authority.rpartition(":")
                upstream = socket.create_connection((host, int(port or 80)))
                pending = request.head + request.body
            if pending:
                upstream.sendall(pending)
            _pipe(conn, upstream)  # the client waits for each answer before it sends more: nothing is read ahead
        except (OSError, ValueError):
            return
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()

    def close(self) -> None:
        self._sock.close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 30)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), valid for a day, made with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def servers() -> Iterator[list[RawServer | RawProxy]]:
    """For a fixture: a list to append servers to, closed afterwards."""
    started: list[RawServer | RawProxy] = []
    yield started
    for server in started:
        server.close()
