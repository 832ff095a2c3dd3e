"""Hostile clients for `streetnode-central serve` on loopback (tests/central/test_hostile.py and
bench/under_attack.py): each attack runs in background threads, bounded in connections and time,
while the caller makes valid uploads from another node and watches the server's peak RSS.

- `Garbage`: raw sockets: random bytes, broken request lines, oversized headers, unknown nodes
  declaring large bodies, bad signatures;
- `Slowloris`: many connections sending their headers a few bytes at a time;
- `StalledBodies`: uploads with a known node id and a fresh timestamp (no key needed) that send
  most of a maximum-size body and stall;
- `ConnectionFlood`: more idle connections than the receiver's cap, re-opened as they are closed;
- `QuotaAbuse`: a stolen key posting maximum-size valid batches of new readings back to back.
"""

from __future__ import annotations

import os
import random
import re
import resource
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from central.limits import IngestLimits
from node import protocol
from node.model import Batch, Reading

ROOT = Path(__file__).resolve().parent.parent
VALID_NODE = "valid-1"
THIEF_NODE = "thief-1"
CHANNELS = ("weather.temperature_c", "weather.humidity_pct", "weather.pressure_hpa")


# ---------------------------------------------------------------- the server under attack
class Server:
    """`streetnode-central serve` in its own process; ``peak_rss_mib`` reads its VmHWM."""

    def __init__(self, db: str, config: str, workdir: Path) -> None:
        conf = workdir / "central.toml"
        conf.write_text(config)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "central.cli", "serve", "--listen",
                                      "127.0.0.1:0", "--db", db, "--config", str(conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=ROOT)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        match = re.match(r"listening on (\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()[-2000:]}")  # type: ignore
        self.url = match.group(1)
        self.host, port = self.url.rsplit("//", 1)[1].rsplit(":", 1)
        self.port = int(port)

    def status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{key} not in /proc/{self.proc.pid}/status")

    def peak_rss_mib(self) -> float:
        return self.status_kib("VmHWM") / 1024

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> str:
        """Stop it; returns its stderr (what it logged)."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def raise_file_limit(want: int) -> bool:
    """Raise this process's open-files soft limit to ``want``; False if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return True
    if hard != resource.RLIM_INFINITY and hard < want:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return True


# ---------------------------------------------------------------- the valid node
def batch_body(node: str, epoch: int, first_seq: int, n: int, *, sent_ms: int | None = None) -> bytes:
    now = int(time.time() * 1000)
    readings = [Reading(s, CHANNELS[s % 3], round(20 + (s % 500) / 100, 2), 0, now - (n - i) * 1000,
                        1_000 + s * 1000, "boot-a") for i, s in enumerate(range(first_seq, first_seq + n))]
    return protocol.encode_batch(Batch(epoch, node, epoch, readings), health={"backlog_readings": 0},
                                 sent_ms=sent_ms or now)


def signed_post(session: requests.Session, url: str, key: bytes, node: str, body: bytes,
                timeout: float = 30.0) -> requests.Response:
    headers = {**protocol.BODY_HEADERS,
               **protocol.sign_request(key, "POST", protocol.INGEST_PATH, body, int(time.time() * 1000),
                                       node_id=node)}
    return session.post(url + protocol.INGEST_PATH, data=body, headers=headers, timeout=timeout)


class ValidNode:
    """A node's steady-state upload (33 readings, as every 30 s) over one kept-alive session."""

    def __init__(self, url: str, key: bytes, node: str = VALID_NODE) -> None:
        self.url, self.key, self.node = url, key, node
        self.session = requests.Session()
        self.seq = 0

    def upload(self) -> tuple[int, float]:
        """(status, seconds) of one upload; status 0 when it failed without an answer."""
        body = batch_body(self.node, 1, self.seq, 33)
        started = time.monotonic()
        try:
            status = signed_post(self.session, self.url, self.key, self.node, body).status_code
        except requests.RequestException:
            status = 0
        if status == 200:
            self.seq += 33
        return status, time.monotonic() - started

    def close(self) -> None:
        self.session.close()


# ---------------------------------------------------------------- attacks
class Attack:
    """Threads that run ``_loop`` until `stop`; ``stats`` counts what they saw."""

    name = "attack"
    threads = 1

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats: dict[str, int] = {"connections": 0, "closed_by_server": 0, "answers": 0, "errors": 0}
        self._lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def connect(self, timeout: float = 5.0) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError:
            self.count("errors")
            return None
        self.count("connections")
        return sock

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, index: int) -> None:
        try:
            self._loop(index)
        except Exception:  # an attacker's own failure must not pass silently in a summary
            self.count("attacker_crashed")
            raise

    def _loop(self, index: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def wait(self, seconds: float) -> bool:
        return self._stop.wait(seconds)


def _drain_answer(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def _head(node: str, length: int, *, path: str = protocol.INGEST_PATH, signature: str | None = None,
          ts: int | None = None) -> bytes:
    ts = int(time.time() * 1000) if ts is None else ts
    lines = [f"POST {path} HTTP/1.1", "Host: central", f"Content-Type: {protocol.CONTENT_TYPE}",
             "Content-Encoding: gzip", f"Content-Length: {length}", f"{protocol.HEADER_NODE}: {node}",
             f"{protocol.HEADER_TIMESTAMP}: {ts}",
             f"{protocol.HEADER_SIGNATURE}: {signature or secrets.token_hex(32)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Garbage(Attack):
    """Raw sockets, one request each, as fast as a few threads go."""

    name = "garbage"
    threads = 4

    def __init__(self, host: str, port: int, known_node: str, max_body: int) -> None:
        super().__init__(host, port)
        self.known_node, self.max_body = known_node, max_body

    def _payload(self, rng: random.Random) -> bytes:
        kind = rng.randrange(6)
        if kind == 0:
            return rng.randbytes(rng.randrange(1, 4096))
        if kind == 1:
            return b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"
        if kind == 2:
            return b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 40_000 + b"\r\n\r\n"
        if kind == 3:  # an unknown node declaring the largest body, then sending part of it
            return _head(f"ghost-{rng.randrange(10**6)}", self.max_body) + rng.randbytes(65536)
        if kind == 4:  # a known node, a fresh timestamp, a made-up signature and a junk body
            return _head(self.known_node, 4096) + rng.randbytes(4096)
        return b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(500)  # a TLS hello

    def _loop(self, index: int) -> None:
        rng = random.Random(index)
        while not self._stop.is_set():
            sock = self.connect()
            if sock is None:
                self.wait(0.05)
                continue
            try:
                sock.sendall(self._payload(rng))
                if _drain_answer(sock, 2.0):
                    self.count("answers")
            except OSError:
                self.count("closed_by_server")
            finally:
                sock.close()


class Slowloris(Attack):
    """``conns`` connections each sending a request head a header line at a time."""

    name = "slowloris"

    def __init__(self, host: str, port: int, conns: int = 300, interval_s: float = 0.5) -> None:
        super().__init__(host, port)
        self.conns, self.interval_s = conns, interval_s

    def _loop(self, index: int) -> None:
        socks: list[socket.socket] = []
        while not self._stop.is_set():
            while len(socks) < self.conns and not self._stop.is_set():
                sock = self.connect()
                if sock is None:
                    break
                try:
                    sock.sendall(b"POST /v1/ingest HTTP/1.1\r\nHost: central\r\n")
                    socks.append(sock)
                except OSError:
                    sock.close()
            alive = []
            for sock in socks:
                try:
                    sock.sendall(f"X-Slow-{random.randrange(10**6)}: a\r\n".encode())
                    alive.append(sock)
                except OSError:
                    self.count("closed_by_server")
                    sock.close()
            socks = alive
            self.wait(self.interval_s)
        for sock in socks:
            sock.close()


class StalledBodies(Attack):
    """``conns`` uploads (known node, fresh timestamp, no key) that send ``fill`` of a maximum-size
    body and stall; when the server refuses one, it comes back."""

    name = "stalled-bodies"

    def __init__(self, host: str, port: int, known_node: str, max_body: int, conns: int = 60,
                 fill: float = 0.95, reopen: int = 4) -> None:
        super().__init__(host, port)
        self.known_node, self.max_body, self.conns, self.reopen = known_node, max_body, conns, reopen
        self.chunk = os.urandom(int(max_body * fill))

    def _loop(self, index: int) -> None:
        socks: list[socket.socket] = []
        first = True
        while not self._stop.is_set():
            target = self.conns if first else min(self.conns, len(socks) + self.reopen)
            first = False
            while len(socks) < target and not self._stop.is_set():
                sock = self.connect()
                if sock is None:
                    break
                try:
                    sock.settimeout(5)
                    sock.sendall(_head(self.known_node, self.max_body) + b"\x1f\x8b" + self.chunk)
                    socks.append(sock)
                except OSError:
                    self.count("closed_by_server")
                    sock.close()
            alive = []
            for sock in socks:  # (at most `reopen` new ones a round: a bounded stream of bytes)
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # an answer (408, 503) or a close: this one is over
                    if _drain_answer(sock, 0.5):
                        self.count("answers")
                    else:
                        self.count("closed_by_server")
                    sock.close()
                else:
                    alive.append(sock)
            socks = alive
            self.wait(0.2)
        for sock in socks:
            sock.close()


class ConnectionFlood(Attack):
    """``conns`` idle connections, more than the receiver's cap, re-opened as they are closed, at
    most ``reopen_per_s`` a second (a higher rate is a firewall's business: docs/protocol.md)."""

    name = "connection-flood"

    def __init__(self, host: str, port: int, conns: int = 1200, reopen_per_s: int = 500) -> None:
        super().__init__(host, port)
        self.conns, self.reopen_per_s = conns, reopen_per_s

    def _loop(self, index: int) -> None:
        socks: dict[int, socket.socket] = {}
        poller = select.poll()  # select() stops at 1024 descriptors
        allowance = float(self.conns)  # the first fill, then reopen_per_s
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            allowance = min(float(self.conns), allowance + (now - last) * self.reopen_per_s)
            last = now
            while len(socks) < self.conns and allowance >= 1 and not self._stop.is_set():
                sock = self.connect()
                if sock is None:
                    break
                allowance -= 1
                socks[sock.fileno()] = sock
                poller.register(sock, select.POLLIN)
            for fd, _ in poller.poll(200):  # closed by the server (eviction, head deadline)
                self.count("closed_by_server")
                poller.unregister(fd)
                socks.pop(fd).close()
        for sock in socks.values():
            sock.close()


class QuotaAbuse(Attack):
    """A stolen key: valid ``batch``-reading batches of new readings, back to back."""

    name = "quota-abuse"
    threads = 2

    def __init__(self, url: str, host: str, port: int, key: bytes, node: str = THIEF_NODE,
                 batch: int = IngestLimits().max_readings, bodies: int = 24) -> None:
        super().__init__(host, port)
        self.url, self.key, self.node = url, key, node
        self.stats.update(stored=0, refused_quota=0)
        # encoded up front (each its own epoch, so new readings), not on the server's CPU time
        self.bodies = [batch_body(node, 1000 + i, 0, batch) for i in range(bodies)]

    def _loop(self, index: int) -> None:
        session = requests.Session()
        sent = index
        while not self._stop.is_set():
            body = self.bodies[sent % len(self.bodies)]
            sent += self.threads
            try:
                r = signed_post(session, self.url, self.key, self.node, body)
            except requests.RequestException:
                self.count("errors")
                continue
            self.count("answers")
            if r.status_code == 200:
                self.count("stored", r.json().get("stored", 0))
            elif r.status_code == 429:
                self.count("refused_quota")
                self.wait(0.01)
        session.close()


def attacks(server: Server, *, valid_key: bytes, thief_key: bytes,
            max_body: int) -> dict[str, Callable[[], Attack]]:
    """Every attack by name, each made fresh for one run against ``server``."""
    host, port = server.host, server.port
    return {
        "garbage": lambda: Garbage(host, port, VALID_NODE, max_body),
        "slowloris": lambda: Slowloris(host, port),
        "stalled-bodies": lambda: StalledBodies(host, port, VALID_NODE, max_body),
        "connection-flood": lambda: ConnectionFlood(host, port),
        "quota-abuse": lambda: QuotaAbuse(server.url, host, port, thief_key),
    }


class Outcome:
    """Valid uploads made while an attack ran, and what the server's memory did."""

    def __init__(self, name: str, results: list[tuple[int, float]], peak_rss_mib: float,
                 stats: dict[str, int], healthz: list[int]) -> None:
        self.name, self.results, self.peak_rss_mib, self.stats, self.healthz = \
            name, results, peak_rss_mib, stats, healthz

    @property
    def latencies(self) -> list[float]:
        return [seconds for _, seconds in self.results]

    @property
    def failures(self) -> list[tuple[int, float]]:
        return [r for r in self.results if r[0] != 200]

    def median(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[len(ordered) // 2] if ordered else float("nan")


def run_attack(server: Server, attack: Attack | None, valid: ValidNode, *, seconds: float,
               ramp_s: float = 1.0, pause_s: float = 0.1) -> Outcome:
    """Valid uploads (one at a time, ``pause_s`` apart) for ``seconds`` while ``attack`` runs
    (None: idle); ``/healthz`` is asked once a second."""
    if attack is not None:
        attack.start()
        time.sleep(ramp_s)
    results: list[tuple[int, float]] = []
    healthz: list[int] = []
    deadline = time.monotonic() + seconds
    next_health = time.monotonic()
    try:
        while time.monotonic() < deadline:
            results.append(valid.upload())
            if time.monotonic() >= next_health:
                next_health += 1.0
                try:
                    healthz.append(requests.get(server.url + "/healthz", timeout=10).status_code)
                except requests.RequestException:
                    healthz.append(0)
            time.sleep(pause_s)
        peak = server.peak_rss_mib()
    finally:
        if attack is not None:
            attack.stop()
    return Outcome(attack.name if attack is not None else "idle", results, peak,
                   dict(attack.stats) if attack is not None else {}, healthz)
