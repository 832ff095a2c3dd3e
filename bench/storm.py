"""The morning after the typhoon: many nodes reconnect at once, each with a backlog, on PostgreSQL.

    python -m bench.storm [--nodes 200] [--hours 24] [--workers 1,2,4] [--db postgresql|sqlite]

Each simulated node is a thread that does what the node's uploader does on a backfill: signed v1
batches of ``BATCH`` readings (10 channels every 10 s), one request at a time over a kept-alive
connection, the node's 30 s timeout, and on 429/503 a full-jitter wait of up to the answer's
Retry-After before the same readings are signed again. Nodes are spread over several client
processes so the load generator is not the bottleneck. All nodes start at the same moment.

Measured in one run, for each receiver process count (``serve --workers N``, a fresh database each):
total time to drain everything, readings/s and its ratio to the store's raw ``Store.ingest`` rate
of the same batches (no HTTP, gzip, JSON or signatures; goal ≥ 0.5×), p50/p99 request latency,
5xx count (goal 0), node-side timeouts (goal 0), 429/503 shed count; then stored == sent per node.
While the storm drains, a reader polls every node's latest values and one node's 7-day hourly
series once a second over one kept-alive connection (as the console does); its latency is compared
with the same reads at the same pace on the idle, filled database (goal ≤ 2×). Only ``/v1/latest``
answers built for the request are timed, not the 1 s shared ones (docs/central.md, "Operators'
reads while a storm drains").
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

from bench.ingest_rate import CHANNELS
from bench.receiver import start_central, stop_central
from central.store import open_store
from node import protocol
from node.model import Batch, Reading

BATCH = 5000  # readings per request: the node's backfill batch
CHANNELS_PER_CYCLE = 10
NODE_TIMEOUT_S = 30.0  # the node's request timeout
READ_EVERY_S = 1.0  # the reader's pause between two polls, while draining and idle alike
MAX_IDLE_READS = 120  # idle polls (two minutes): enough for a median, short enough for a full run
_CHANNEL_NAMES = list(CHANNELS)[:CHANNELS_PER_CYCLE]


def node_id(i: int) -> str:
    return f"storm-{i:04d}"


def backlog_start_ms(readings_per_node: int) -> int:
    """Wall time of the first reading of a backlog that ends an hour ago (so that, on PostgreSQL,
    readings land in their weekly partitions as a real backlog would)."""
    return int(time.time() * 1000) - readings_per_node // CHANNELS_PER_CYCLE * 10_000 - 3_600_000


def node_bodies(args: tuple[int, int, int]) -> list[bytes]:
    """Node ``index``'s backlog of ``readings`` readings (10 channels every 10 s from ``first_ms``)
    as gzip v1 bodies."""
    index, readings, first_ms = args
    rng = random.Random(index)
    state = {name: CHANNELS[name][0] for name in _CHANNEL_NAMES}
    wall, boot = first_ms + index, 60_000
    rows: list[Reading] = []
    while len(rows) < readings:
        wall += 10_000
        boot += 10_000
        for name in _CHANNEL_NAMES[:readings - len(rows)]:
            _, sigma, decimals = CHANNELS[name]
            state[name] += rng.gauss(0, sigma)
            rows.append(Reading(len(rows), name, round(state[name], decimals), 0, wall, boot, "boot-0"))
    return [protocol.encode_batch(Batch(first // BATCH, node_id(index), 1, rows[first:first + BATCH]),
                                  health={"backlog_readings": readings - first, "firmware": "0.1.0"},
                                  sent_ms=0)
            for first in range(0, readings, BATCH)]


@dataclass
class ClientStats:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0

    def merge(self, other: ClientStats) -> None:
        self.latencies += other.latencies
        for code, n in other.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        self.timeouts += other.timeouts


def _one_node(base: str, node: str, key: bytes, bodies: list[bytes], stats: ClientStats,
              lock: threading.Lock, rng: random.Random) -> None:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=NODE_TIMEOUT_S)
    try:
        for body in bodies:
            while True:
                ts = int(time.time() * 1000)
                headers = {**protocol.BODY_HEADERS,
                           **protocol.sign_request(key, "POST", protocol.INGEST_PATH, body, ts, node_id=node)}
                start = time.perf_counter()
                try:
                    conn.request("POST", protocol.INGEST_PATH, body=body, headers=headers)
                    answer = conn.getresponse()
                    answer.read()
                except TimeoutError:
                    with lock:
                        stats.timeouts += 1
                    conn.close()
                    continue
                except (ConnectionError, http.client.HTTPException):
                    conn.close()  # the server closed a kept-alive connection: reconnect and resend
                    time.sleep(0.05)
                    continue
                elapsed = time.perf_counter() - start
                with lock:
                    stats.latencies.append(elapsed)
                    stats.statuses[answer.status] = stats.statuses.get(answer.status, 0) + 1
                if answer.status == 200:
                    break
                retry_after = answer.getheader("Retry-After")
                wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
                time.sleep(rng.uniform(0, max(wait, 0.1)))  # full jitter, as the node's backoff
    finally:
        conn.close()


def _client(base: str, nodes: list[tuple[str, bytes, list[bytes]]], go: multiprocessing.Event,
            out: multiprocessing.Queue) -> None:
    stats, lock = ClientStats(), threading.Lock()
    go.wait()
    threads = [threading.Thread(target=_one_node, args=(base, n, k, b, stats, lock, random.Random(n)))
               for n, k, b in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(stats)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class DrainResult:
    workers: int
    seconds: float
    readings: int
    stats: ClientStats
    stored_ok: bool
    mismatches: list[str]
    reads_during: dict[str, list[float]] = field(default_factory=dict)
    reads_idle: dict[str, list[float]] = field(default_factory=dict)
    read_errors: list[str] = field(default_factory=list)
    reads_shed: int = 0
    reads_shared: tuple[int, int] = (0, 0)  # /v1/latest answers not built for the request: during, idle

    @property
    def rate(self) -> float:
        return self.readings / self.seconds


def drain(db_url: str, bodies: dict[str, list[bytes]], keys: dict[str, bytes], readings_per_node: int,
          workers: int, *, first_ms: int, clients: int = 4, read: bool = False,
          read_every_s: float = READ_EVERY_S) -> DrainResult:
    """Every node of ``bodies`` uploads its whole backlog at once through ``serve --workers N``;
    with ``read``, a `Reader` polls every ``read_every_s`` during the drain and again on the idle,
    filled database."""
    from central.accounts import Accounts

    store = open_store(db_url)
    try:
        for node, key in keys.items():
            store.add_node(node, key, int(time.time() * 1000))
        token = Accounts(store).add_token("storm-bench", "read")
    finally:
        store.close()
    serve = ["serve", "--listen", "127.0.0.1:0", "--db", db_url, "--workers", str(workers)]
    proc, base = start_central(serve, timeout=60)
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    names = sorted(bodies)
    groups = [names[i::clients] for i in range(clients)]
    procs = [ctx.Process(target=_client, args=(base, [(n, keys[n], bodies[n]) for n in group], go, out))
             for group in groups if group]
    last_wall = first_ms + readings_per_node // CHANNELS_PER_CYCLE * 10_000 + 3_600_000
    reader = Reader(base, token, names[0], _CHANNEL_NAMES[0], last_wall, draining=True,
                    every_s=read_every_s)
    idle = Reader(base, token, names[0], _CHANNEL_NAMES[0], last_wall, every_s=read_every_s)
    try:
        for p in procs:
            p.start()
        time.sleep(0.2)
        start = time.perf_counter()
        go.set()
        if read:
            reader.start()
        stats = ClientStats()
        for _ in procs:
            stats.merge(out.get(timeout=3600))
        seconds = time.perf_counter() - start
        reader.stop.set()
        for p in procs:
            p.join(30)
        if read:
            reader.join(120)
            idle.poll(max(10, min(len(reader.latest), MAX_IDLE_READS)))
    finally:
        stop_central(proc, timeout=30)
    store = open_store(db_url)
    try:
        mismatches = [f"{n}: {got} of {readings_per_node}" for n in names
                      if (got := store.count_readings(n)) != readings_per_node]
    finally:
        store.close()
    total = readings_per_node * len(names)
    return DrainResult(workers, seconds, total, stats, not mismatches, mismatches,
                       {"latest": reader.latest, "series": reader.series},
                       {"latest": idle.latest, "series": idle.series}, reader.errors + idle.errors,
                       reader.shed + idle.shed, (reader.shared, idle.shared))


def raw_rate(db_url: str, bodies: list[bytes], key: bytes) -> float:
    """Readings/s of `Store.ingest` on already-decoded batches (the store alone)."""
    decoded = [protocol.decode_body(b, max_decompressed=1 << 26) for b in bodies]
    store = open_store(db_url)
    try:
        for each in sorted({batch.node_id for batch in decoded}):  # the sample spans several nodes
            store.add_node(each, key, 0)
        start = time.perf_counter()
        for batch in decoded:
            store.ingest(batch, signature=secrets.token_hex(32), expires_ms=10**13, now_ms=0)
        seconds = time.perf_counter() - start
    finally:
        store.close()
    return sum(len(b.readings) for b in decoded) / seconds


class Reader(threading.Thread):
    """Polls what an operator's console asks for while the storm drains: the latest values of every
    node and one node's 7-day hourly series, once every ``every_s`` over one kept-alive
    connection (as the console's page does); records each request's latency.

    A receiver process shares one ``/v1/latest`` answer for up to ``overview_cache_s`` (1 s): only
    answers built for this request (a new ``server_time_ms``) are timed, the rest are counted in
    ``shared``, so that a run compares building the answer while draining with building it idle,
    not a cache hit with a build."""

    def __init__(self, base: str, token: str, node: str, channel: str, until_ms: int, *,
                 draining: bool = False, every_s: float = READ_EVERY_S) -> None:
        super().__init__(name="storm-reader", daemon=True)
        self.every_s = every_s
        self.base, self.node, self.channel, self.until_ms = base, node, channel, until_ms
        self.headers = {"Authorization": f"Bearer {token}"}
        self.latest: list[float] = []
        self.series: list[float] = []
        self.errors: list[str] = []
        self.shed = 0  # 503/429 with Retry-After: the receiver protecting ingest, by design
        self.shared = 0  # /v1/latest answers built for an earlier request (not timed)
        self.draining = draining  # a node whose first batch is not stored yet has no channel: 404
        self.stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._last_built = b""

    def _get(self, path: str) -> tuple[http.client.HTTPResponse, bytes, float]:
        """One GET on the kept-alive connection (reconnecting once if the receiver closed it)."""
        for attempt in (1, 2):
            if self._conn is None:
                u = urllib.parse.urlsplit(self.base)
                self._conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            start = time.perf_counter()
            try:
                self._conn.request("GET", path, headers=self.headers)
                answer = self._conn.getresponse()
                body = answer.read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
                continue
            return answer, body, time.perf_counter() - start
        raise AssertionError("unreachable")

    def once(self) -> None:
        since = self.until_ms - 7 * 86_400_000
        series = (f"/v1/nodes/{self.node}/series?channel={self.channel}&since={since}"
                  f"&until={self.until_ms}&step=1h")
        for path, sink in (("/v1/latest", self.latest), (series, self.series)):
            answer, body, seconds = self._get(path)
            if answer.status in (429, 503) and answer.getheader("Retry-After"):
                self.shed += 1
                continue
            if answer.status == 404 and self.draining and path != "/v1/latest":
                continue
            if answer.status != 200:
                self.errors.append(f"GET {path}: HTTP {answer.status}")
            if path == "/v1/latest":
                built = body[:40].split(b",", 1)[0]  # {"server_time_ms":…: when it was built
                if built == self._last_built:
                    self.shared += 1
                    continue
                self._last_built = built
            sink.append(seconds)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self) -> None:
        try:
            while not self.stop.wait(self.every_s):
                self.once()
        finally:
            self.close()

    def poll(self, count: int) -> None:
        """``count`` polls at the same pace as `run`."""
        try:
            for _ in range(count):
                self.once()
                time.sleep(self.every_s)
        finally:
            self.close()


def _pg_url(tag: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/test?schema=storm_{uuid.uuid4().hex[:8]}_{tag}"


def _drop(db_url: str) -> None:
    """Drop a PostgreSQL run's schema (a full run stores 17 M readings per worker count)."""
    if not db_url.startswith("postgresql"):
        return
    import psycopg

    from central.store_pg import split_schema

    server, schema = split_schema(db_url)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def measure(nodes: int, readings_per_node: int, worker_counts: list[int], *, db: str = "postgresql",
            tmp: str | None = None) -> list[dict]:
    """Rows for ``python -m bench``: one drain per worker count, the raw store rate, reads while draining."""
    tmp = tmp or tempfile.mkdtemp(prefix="streetnode-storm-")

    def url(tag: str) -> str:
        return _pg_url(tag) if db == "postgresql" else f"sqlite:///{os.path.join(tmp, tag + '.db')}"

    with multiprocessing.get_context("fork").Pool(min(4, os.cpu_count() or 1)) as pool:
        first_ms = backlog_start_ms(readings_per_node)
        all_bodies = pool.map(node_bodies, [(i, readings_per_node, first_ms) for i in range(nodes)])
    bodies = {node_id(i): b for i, b in enumerate(all_bodies)}
    keys = {n: secrets.token_bytes(32) for n in bodies}
    sample = [b for node_bodies_ in all_bodies[:4] for b in node_bodies_][:40]
    raw_url = url("raw")
    try:
        raw = raw_rate(raw_url, sample, secrets.token_bytes(32))
    finally:
        _drop(raw_url)
    rows: list[dict] = []
    total = nodes * readings_per_node
    for workers in worker_counts:
        drain_url = url(f"w{workers}")
        try:
            result = drain(drain_url, bodies, keys, readings_per_node, workers, first_ms=first_ms,
                           read=workers == worker_counts[-1])
        finally:
            _drop(drain_url)
        if not result.stored_ok:
            raise RuntimeError(f"storm ({workers} workers): stored != sent: {result.mismatches[:5]}")
        s = result.stats
        errors_5xx = sum(n for code, n in s.statuses.items() if code >= 500 and code != 503)
        shed = s.statuses.get(429, 0) + s.statuses.get(503, 0)
        label = (f"storm recovery, {nodes} nodes × {readings_per_node:,} readings ({total:,}), "
                 f"{workers} worker(s)")
        p50, p99 = (_percentile(s.latencies, q) * 1000 for q in (0.5, 0.99))
        rows.append({"metric": label, "value": round(result.rate), "unit": "readings/s",
                     "baseline": f"raw {db} Store.ingest", "baseline_value": round(raw),
                     "ratio": round(result.rate / raw, 3), "goal": "≥ 0.5×"})
        timing = f"drain time {result.seconds:.1f} s; request p50/p99 {p50:.0f}/{p99:.0f} ms"
        rows.append({"metric": f"  … {timing}",
                     "value": errors_5xx, "unit": "5xx", "baseline": "node timeouts",
                     "baseline_value": s.timeouts, "ratio": None,
                     "goal": f"0 and 0 (shed 429/503: {shed}; stored == sent)"})
        if result.read_errors:
            raise RuntimeError(f"storm: reads failed: {result.read_errors[:3]}")
        for kind, what in (("latest", "latest values of all nodes"), ("series", "a 7-day hourly series")):
            during, idle = result.reads_during.get(kind), result.reads_idle.get(kind)
            if during and idle:
                d, i = statistics.median(during) * 1000, statistics.median(idle) * 1000
                shared = (f"{result.reads_shared[0]}/{result.reads_shared[1]} shared answers not timed; "
                          if kind == "latest" else "")
                rows.append({"metric": f"  … read {what} while draining (median of {len(during)}/"
                                       f"{len(idle)}; {shared}{result.reads_shed} reads shed with 503)",
                             "value": round(d, 1), "unit": "ms", "baseline": "same read, idle",
                             "baseline_value": round(i, 1), "ratio": round(d / i, 2), "goal": "≤ 2×"})
    return rows


def run(quick: bool = False) -> list[dict]:
    from tests.central.conftest import pg_reachable

    reason = pg_reachable()
    if reason:
        print(f"bench.storm: skipped: PostgreSQL not reachable ({reason})", file=sys.stderr)
        return []
    if quick:
        return measure(40, 8_640, [1, 2])
    return measure(200, 86_400, [1, 2, 4])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--hours", type=float, default=24.0, help="backlog per node (10 channels every 10 s)")
    p.add_argument("--workers", default="1,2,4", help="receiver process counts to compare")
    p.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    args = p.parse_args(argv)
    per_node = int(args.hours * 360 * CHANNELS_PER_CYCLE)
    for row in measure(args.nodes, per_node, [int(w) for w in args.workers.split(",")], db=args.db):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
