"""A raw-socket HTTP proxy on 127.0.0.1 that records where each client wanted to go and lets nobody through.

With ``HTTPS_PROXY``/``proxies`` pointed at it, a request for Customer.io's real host arrives here as
``CONNECT track.customer.io:443`` and is answered 502: tests can see which host a client tried, with no network.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class RecordingProxy:
    """``.url`` to give as a proxy; ``.targets`` the ``host:port`` (or URL) of every request it was asked for."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._lock = threading.Lock()
        self._targets: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="recording-proxy", daemon=True)

    @property
    def targets(self) -> list[str]:
        with self._lock:
            return list(self._targets)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        socket.create_connection(self._sock.getsockname(), timeout=5).close()  # wakes accept() to see the stop
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while True:
            conn, _ = self._sock.accept()
            if self._stop.is_set():
                conn.close()
                return
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n" not in head and len(head) < 8192:
                        chunk = conn.recv(1024)
                        if not chunk:
                            break
                        head += chunk
                    line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
                    if len(line) >= 2:
                        with self._lock:
                            self._targets.append(line[1])
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass
