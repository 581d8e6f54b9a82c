"""A TCP forwarder on 127.0.0.1 between one daemon and PostgreSQL, that a
test can cut and heal: a network partition between them.

`cut()` makes the partition as each side sees it once it notices: the
server's end of every connection is reset (as the server's TCP keepalives
end a session whose peer went away: the session and its advisory lock are
dropped, only sooner here), while the daemon's end stays open and silent
(what it sends is swallowed, nothing comes back), so the daemon must notice
by itself, by its heartbeat, that it lost the database. New connections are
accepted and left silent too. `heal()` forwards new connections again.

A userspace proxy cannot blackhole the server's side truly: its kernel would
answer the server's keepalive probes for ever, and the lock would never go.
"""

from __future__ import annotations

import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cut = False
        self._stopped = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._threads: list[threading.Thread] = []
        self._accepter = self._thread(self._accept, "proxy-accept")

    def _thread(self, target, name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            if server is not None:
                _reset(server)
            self._swallow(client)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                if sock is not None:
                    sock.close()

    # -- the threads -----------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return                          # stopped
            with self._lock:
                cut = self._cut
            if cut:
                self._swallow(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            self._thread(self._pump, "proxy-up", client, server)
            self._thread(self._pump, "proxy-down", server, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass                                # cut or closed: the other side sees to it
        finally:
            if not self._cut:
                for sock in (source, sink):
                    sock.close()

    def _swallow(self, client: socket.socket) -> None:
        """Reads and drops what the daemon sends, answers nothing, until it closes."""
        def drain() -> None:
            try:
                while client.recv(65536):
                    pass
            except OSError:
                pass
            finally:
                client.close()
        self._thread(drain, "proxy-silent")


def _reset(sock: socket.socket) -> None:
    """Ends the connection with an RST: the server drops the session at once. The
    shutdown first: a close() alone waits for the pump thread blocked in recv()."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    except OSError:
        pass
