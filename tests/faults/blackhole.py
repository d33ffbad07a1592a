"""A cache server that accepts connections and never answers: the worst kind of outage.

A stopped server refuses connections at once; a black hole (a hung process, a dropped
route behind a load balancer) makes every client wait for its own timeout.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from devtools.services import free_port


class BlackHole:
    """A real TCP listener on loopback that reads and counts what clients send, and never replies."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.connections = 0
        self.requests = 0  # reads that brought bytes: roughly, commands sent
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="black hole", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.requests += 1

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for conn in self._open:
                conn.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
