"""A loopback TCP relay that counts what a metered link would bill (a helper of bench/sim.py).

Every byte of both TCP streams is counted exactly (on a TLS connection: the handshake, the
records and the alerts). TCP/IP headers are estimated, as bench/tls_cost.py does: 52 bytes per
segment, ``ceil(chunk / MSS)`` segments per chunk relayed, one ACK the other way per chunk,
7 control segments per connection (SYN, SYN-ACK, ACK; FIN, ACK, FIN, ACK).

``drop_idle()`` closes every open connection, as the central does with one idle longer than its
keep-alive: emulated time can then skip minutes between two upload rounds.

With a ``link`` (`Link`) the relay also behaves like a slow uplink: each chunk waits its turn
on a line of the given rate in its direction, then half the round-trip time, before it is passed
on (no loss, no TCP slow start: a floor for what a real cellular link costs).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass

from bench.tls_cost import MSS, TCP_CONTROL_SEGMENTS, TCP_IP_HEADER


@dataclass
class Counts:
    connections: int = 0
    up: int = 0  # client -> server, TCP payload
    down: int = 0
    segments: int = 0  # estimated, control segments included

    def ip_total(self) -> int:
        return self.up + self.down + self.segments * TCP_IP_HEADER


@dataclass(frozen=True)
class Link:
    """A link's round-trip time and rate each way (bits/s)."""

    rtt_s: float
    up_bps: float
    down_bps: float

    def describe(self) -> str:
        return (f"RTT {self.rtt_s * 1000:g} ms, {self.up_bps / 1e6:g} Mbit/s up, "
                f"{self.down_bps / 1e6:g} Mbit/s down")


class CountingProxy:
    """``with CountingProxy(upstream_port) as proxy:`` then connect to ``proxy.port``."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1", *, link: Link | None = None) -> None:
        self._upstream = (host, upstream_port)
        self._link = link
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self.counts = Counts()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def __enter__(self) -> CountingProxy:
        t = threading.Thread(target=self._accept, name="countproxy", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop_idle()
        for t in self._threads:
            t.join(5)

    def take(self) -> Counts:
        """The counts so far, and start counting afresh."""
        with self._lock:
            counts, self.counts = self.counts, Counts()
        return counts

    def drop_idle(self) -> None:
        with self._lock:
            socks, self._open = self._open, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            with self._lock:
                self.counts.connections += 1
                self.counts.segments += TCP_CONTROL_SEGMENTS
                self._open += [client, upstream]
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        if self._link is not None:  # chunks go through a line of the link's rate and delay
            line: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
            t = threading.Thread(target=self._deliver, args=(line, dst), daemon=True)
            t.start()
            self._threads.append(t)
            rate = self._link.up_bps if up else self._link.down_bps
            free_at = 0.0  # when the line has sent what it holds
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self._lock:
                if up:
                    self.counts.up += len(data)
                else:
                    self.counts.down += len(data)
                self.counts.segments += -(-len(data) // MSS) + 1  # data segments + one ACK back
            if self._link is not None:
                free_at = max(time.monotonic(), free_at) + len(data) * 8 / rate
                line.put((free_at + self._link.rtt_s / 2, data))
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        if self._link is not None:
            line.put((0.0, b""))  # the delivery thread closes both once the line is empty
            return
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _deliver(line: queue.SimpleQueue[tuple[float, bytes]], dst: socket.socket) -> None:
        while True:
            at, data = line.get()
            if not data:
                break
            time.sleep(max(0.0, at - time.monotonic()))
            try:
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)
