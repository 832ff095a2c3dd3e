"""A real threaded TCP proxy on 127.0.0.1 that injects HTTP/1.1 faults.

It sits between a client (the node's uploader) and an upstream server (the real
receiver) and understands just enough HTTP/1.1 (Content-Length and chunked
bodies, keep-alive) to act per request. The fault applied to each request is
chosen when the request has been read completely:

- ``pass``        forward, relay the response.
- ``refuse``      close the client connection with a reset as soon as it is
                  accepted (nothing is forwarded).
- ``blackhole``   read the request, never answer (the client's read timeout fires).
- ``delay``       forward, receive the upstream response, hold it ``delay`` s
                  (past the client's timeout), then relay it if the client is
                  still there. The upstream has acted on the request.
- ``cut``         forward, receive the whole upstream response, then reset the
                  client connection without relaying it: the receiver stored the
                  batch but the ack is lost.
- ``status``      answer a canned response (``status``, optional ``retry_after``
                  header, JSON or raw text body, extra headers) without forwarding; with
                  ``sign_key`` it carries the receipt the central would give (a central
                  answering this), without it it is what a proxy or captive portal says.

``proxy.set(mode, count=N, **params)`` applies ``mode`` to the next N requests
(or connections for ``refuse``), then the proxy reverts to its default mode;
``count=None`` changes the default; ``proxy.retarget(port)`` points new upstream
connections at another port (a receiver restarted elsewhere). Counters are in ``proxy.counts`` and byte
totals in ``bytes_up``/``bytes_down``. The proxy is bounded: it stops by itself
after ``lifetime`` seconds, every socket operation has a timeout, and `stop()`
joins all its threads.
"""

from __future__ import annotations

import collections
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MODES = ("pass", "refuse", "blackhole", "delay", "cut", "status")
_IO_TIMEOUT = 5.0
_MAX_HEADER = 64 * 1024


@dataclass
class Fault:
    mode: str = "pass"
    delay: float = 0.0
    status: int = 500
    retry_after: str | None = None
    body: dict[str, Any] | str = field(default_factory=lambda: {"error": "injected"})  # str: sent as is
    content_type: str | None = None  # default: application/json for a dict, text/html for a str
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Location": ...} for a redirect
    sign_key: bytes | None = None  # answer as the central would: with a receipt made with this key


class _Closed(Exception):
    """The peer closed the connection (cleanly or not)."""


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN so the client sees a dropped connection."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Reader:
    """Buffered reads of HTTP/1.1 messages from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed()
        self.buf += chunk

    def _take_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > _MAX_HEADER:
                raise _Closed()
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self, *, response_to_head: bool = False) -> tuple[bytes, dict[str, str]]:
        """One full message (raw bytes) and its lower-cased headers."""
        head = self._take_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        raw = head
        if response_to_head:
            return raw, headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = self._take_until(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    raw += self._take_until(b"\r\n")  # (no trailers expected)
                    break
                raw += self._take(size + 2)
        else:
            raw += self._take(int(headers.get("content-length", "0")))
        return raw, headers


class FaultProxy:
    """``with FaultProxy(upstream_port) as proxy: requests.post(proxy.url + "/v1/ingest")``."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1",
                 lifetime: float = 120.0, record: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.lifetime = lifetime
        self.default = Fault()
        self.counts: collections.Counter[str] = collections.Counter()
        self.bytes_up = 0  # client -> proxy (requests as sent by the client)
        self.bytes_down = 0  # proxy -> client (responses relayed or canned)
        self.record = record  # keep the last N requests (raw) in ``recorded``
        self.recorded: collections.deque[bytes] = collections.deque(maxlen=max(record, 1))
        self._script: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0

    # ------------------------------------------------------------ control
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str, count: int | None = None, **params: Any) -> None:
        """Apply ``mode`` to the next ``count`` requests, or make it the default."""
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        fault = Fault(mode=mode, **params)
        with self._lock:
            if count is None:
                self.default = fault
                self._script.clear()
            else:
                self._script.extend(fault for _ in range(count))

    def retarget(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        """Send new connections to another upstream (a receiver restarted on a new port)."""
        with self._lock:
            self.upstream = (upstream_host, upstream_port)

    def bodies(self) -> list[bytes]:
        """Bodies of the recorded requests (Content-Length framed), oldest first."""
        with self._lock:
            return [raw.split(b"\r\n\r\n", 1)[1] for raw in self.recorded]

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _peek_fault(self) -> Fault:
        with self._lock:
            return self._script[0] if self._script else self.default

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FaultProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(0.1)
        self._listener = sock
        self.port = sock.getsockname()[1]
        self._deadline = time.monotonic() + self.lifetime
        t = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(timeout=_IO_TIMEOUT + 1)
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stopping(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self._deadline

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._count("connections")
            if self._peek_fault().mode == "refuse":
                self._next_fault()
                self._count("refuse")
                _reset(client)
                continue
            t = threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()
        self._listener.close()

    # ------------------------------------------------------------ per connection
    def _serve(self, client: socket.socket) -> None:
        client.settimeout(0.2)
        upstream: socket.socket | None = None
        reader = _Reader(client)
        up_reader: _Reader | None = None
        try:
            while not self._stopping():
                try:
                    raw, headers = reader.message()
                except TimeoutError:
                    continue  # idle keep-alive connection: poll for stop
                client.settimeout(_IO_TIMEOUT)
                self._count("requests")
                with self._lock:
                    self.bytes_up += len(raw)
                    if self.record:
                        self.recorded.append(raw)
                fault = self._next_fault()
                self._count(fault.mode)
                if fault.mode == "refuse":  # scripted per connection; treat as reset now
                    _reset(client)
                    return
                if fault.mode == "blackhole":
                    self._wait(lambda: False, self.lifetime)
                    return
                if fault.mode == "status":
                    self._send(client, self._canned(fault, headers))
                    client.settimeout(0.2)
                    continue
                if upstream is None:
                    with self._lock:
                        target = self.upstream
                    upstream = socket.create_connection(target, timeout=_IO_TIMEOUT)
                    up_reader = _Reader(upstream)
                assert up_reader is not None
                upstream.sendall(raw)
                method = raw.split(b" ", 1)[0]
                resp, resp_headers = up_reader.message(response_to_head=(method == b"HEAD"))
                self._count("upstream_responses")
                if fault.mode == "cut":
                    _reset(client)
                    return
                if fault.mode == "delay":
                    self._wait(lambda: False, fault.delay)
                    if self._stopping():
                        return
                self._send(client, resp)
                if "close" in resp_headers.get("connection", "").lower() or \
                        "close" in headers.get("connection", "").lower():
                    return
                client.settimeout(0.2)
        except (_Closed, OSError):
            self._count("client_gone")
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _wait(self, done: Any, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not done() and not self._stopping() and time.monotonic() < end:
            time.sleep(0.02)

    def _send(self, client: socket.socket, data: bytes) -> None:
        client.sendall(data)
        with self._lock:
            self.bytes_down += len(data)

    @staticmethod
    def _canned(fault: Fault, request_headers: dict[str, str]) -> bytes:
        if isinstance(fault.body, str):
            body, ctype = fault.body.encode(), fault.content_type or "text/html; charset=utf-8"
        else:
            body, ctype = json.dumps(fault.body).encode(), fault.content_type or "application/json"
        reason = {200: "OK", 302: "Found", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                  413: "Payload Too Large", 422: "Unprocessable Entity"}.get(fault.status, "Injected")
        lines = [f"HTTP/1.1 {fault.status} {reason}", f"Content-Type: {ctype}",
                 f"Content-Length: {len(body)}"]
        if fault.retry_after is not None:
            lines.append(f"Retry-After: {fault.retry_after}")
        lines += [f"{k}: {v}" for k, v in fault.headers.items()]
        signature = request_headers.get("x-streetnode-signature")
        if fault.sign_key is not None and signature:
            from node.protocol import sign_receipt

            lines.append(f"X-Streetnode-Receipt: {sign_receipt(fault.sign_key, signature, body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
