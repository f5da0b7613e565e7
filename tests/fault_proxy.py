"""A TCP proxy on 127.0.0.1 that injects object-store faults between a client and the GCS emulator.

Faults are decided per connection, on its first request, from a seeded RNG:
- ``drop``: close the connection without an answer (the client sees a reset / disconnect);
- ``error``: answer ``503 Service Unavailable`` and close;
- ``lose_response``: forward the request, then close before the answer reaches the client (the
  server did the work; the client must retry an operation that already happened);
- ``delay``: hold the request for ``delay_s`` before forwarding.
Connections idle for ``idle_close_s`` are closed, so keep-alive clients keep opening new connections
and keep meeting faults.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
import time
from collections import Counter

_BODY = b'{"error": {"code": 503, "message": "injected by fault_proxy"}}'
_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BODY), _BODY))


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], *, drop: float = 0.0, error: float = 0.0,
                 lose_response: float = 0.0, delay: float = 0.0, delay_s: float = 0.3,
                 idle_close_s: float = 0.5, seed: int = 0):
        self.upstream = upstream
        self.rates = (("dropped", drop), ("errors", error), ("lost_responses", lose_response), ("delayed", delay))
        self.delay_s, self.idle_close_s = delay_s, idle_close_s
        self.rng = random.Random(seed)
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> int:
        return sum(n for k, n in self.counts.items() if k != "connections")

    def close(self) -> None:
        self._stopped.set()
        self._server.close()

    def _choose(self) -> str | None:
        with self._lock:
            self.counts["connections"] += 1
            point = self.rng.random()
        for name, rate in self.rates:
            if point < rate:
                with self._lock:
                    self.counts[name] += 1
                return name
            point -= rate
        return None

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(self.idle_close_s * 4)
            first = client.recv(65536)
            if not first:
                return
            fault = self._choose()
            if fault == "dropped":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            if fault == "errors":
                client.sendall(_503)
                return
            if fault == "delayed":
                time.sleep(self.delay_s)
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.sendall(first)
            if fault == "lost_responses":
                upstream.settimeout(10)
                upstream.recv(1)  # the server has handled the request and started answering
                return
            self._pump(client, upstream)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        while not self._stopped.is_set():
            events = sel.select(timeout=self.idle_close_s)
            if not events:
                return  # idle: close, the client opens a new connection next time
            for key, _ in events:
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
