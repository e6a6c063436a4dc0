"""A loopback TCP proxy that a test can cut and restore, to take a server "away" on demand.

``cut()`` closes every proxied connection (both sides) and refuses new ones: the port stays
bound but stops listening, so a client gets "connection refused" at once, as if the server had
died. ``restore()`` listens on the same port again. One thread accepts, two threads pump bytes
per connection; fine for the handful of connections a database client opens.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from pelbiot.ingest.broker import free_port


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = free_port(host)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._holder: socket.socket | None = None  # keeps the port while cut
        self._accepting = threading.Event()
        self._acceptor: threading.Thread | None = None
        self.accepted = 0

    # -- public -------------------------------------------------------------------------------

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def is_cut(self) -> bool:
        return not self._accepting.is_set()

    def start(self) -> None:
        self._listen()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``restore``."""
        self._stop_accepting()
        if self._holder is None:
            holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind((self.host, self.port))  # bound, not listening: connects are refused
            self._holder = holder
        self._drop_connections()

    def restore(self) -> None:
        if not self.is_cut:
            return
        self._release_holder()
        self._listen()

    def close(self) -> None:
        self._stop_accepting()
        self._release_holder()
        self._drop_connections()

    # -- internals ----------------------------------------------------------------------------

    def _release_holder(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def _drop_connections(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for sock in conns:
            _close(sock)

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._accepting.set()
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), name="tcpproxy-accept", daemon=True
        )
        self._acceptor.start()

    def _stop_accepting(self) -> None:
        self._accepting.clear()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._accepting.is_set():
            try:
                client, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if not self._accepting.is_set():
                    _close(client)
                    _close(upstream)
                    return
                self._conns.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst), name="tcpproxy-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
