"""Growth: the central on PostgreSQL (readings partitioned by week) at 10 M readings vs a small one.

    python -m bench.growth [--quick] [--readings-per-channel 1250]     (also part of `python -m bench`)

Two databases are generated in one run, each with 1,000 nodes × 8 channels and one dense node
(7 days at 10 s on its 8 channels, 483,840 readings): the *small* one with 12 readings a channel an
hour apart, the *large* one with ``--readings-per-channel`` (default 1,250 an hour apart: 52 days,
8 weeks of partitions, 10.5 M readings in all; 12,500 gives the 105 M of the by-hand run). The weeks
are created first, so readings land in their partitions as ingest would put them. Measured on each,
the large against the small as baseline:
- ingest: `Store.ingest` of 5,000-reading batches (10 channels every 10 s, now) for new nodes:
  readings/s (the store with its lookups, rollups and partition routing; no HTTP);
- the overview `GET /v1/latest` (every node's latest values) and a 7-day series of the dense node
  (`GET /v1/nodes/{id}/series?since=-7d`) through `streetnode-central serve`, median ms;
- disk per reading: `readings` partitions with their indexes, and everything in the schema.

--quick: 100 nodes, 12 and 120 readings a channel, one day for the dense node (a minute).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
import uuid
from typing import Any

import requests

from bench.console import CHANNELS, DENSE, KEY, PG_URL, UNITS, pg_connect, timed
from bench.console import generate as console_generate
from bench.receiver import start_central, stop_central
from central import partitions
from central.accounts import Accounts
from central.console.config import ConsoleConfig
from central.store import open_store
from node.model import Reading
from node.protocol import IngestBatch

HOUR_MS = 3_600_000
BATCH = 5000
INGEST_BATCHES = 4  # a round; three rounds


def sizes(quick: bool, per_channel: int) -> dict[str, Any]:
    if quick:
        return {"nodes": 100, "small": 12, "large": 120, "dense_s": 86_400, "repeats": 3, "batches": 2}
    return {"nodes": 1000, "small": 12, "large": per_channel, "dense_s": 7 * 86_400, "repeats": 5,
            "batches": INGEST_BATCHES}


def generate(store: Any, schema: str, nodes: int, per_channel: int, dense_s: int, now_ms: int) -> int:
    """The console bench's fill (`bench.console.generate`), an hour apart, into weeks made first."""
    first = now_ms - per_channel * HOUR_MS
    for week in range(partitions.week_start(first), partitions.week_start(now_ms), partitions.PERIOD_MS):
        store.transaction(lambda tx, w=week: partitions.create_week(tx, w), write=True)
    return console_generate(PG_URL, schema, {"nodes": nodes, "per_channel": per_channel, "dense_s": dense_s},
                            now_ms, spacing_ms=HOUR_MS, finish="VACUUM ANALYZE")


def ingest_rate(store: Any, batches: int, now_ms: int, tag: str) -> float:
    """Readings/s of `Store.ingest` on 5,000-reading batches of new nodes, stamped up to now."""
    names = list(CHANNELS)
    decoded = []
    for b in range(batches):
        node = f"growth-{tag}-{b:03d}"
        store.add_node(node, KEY, now_ms)
        cycles = BATCH // len(names)
        start = now_ms - cycles * 10_000
        readings = [Reading(i * len(names) + c, names[c], 20.0 + (i % 50) * 0.1, 0, start + i * 10_000,
                            60_000 + i * 10_000, "boot-0") for i in range(cycles) for c in range(len(names))]
        decoded.append(IngestBatch(node, 1, now_ms, readings, [], [], {"firmware": "0.1.0"},
                                   dict(zip(names, UNITS, strict=True))))
    t0 = time.perf_counter()
    for batch in decoded:
        store.ingest(batch, signature=secrets.token_hex(32), expires_ms=now_ms + 60_000, now_ms=now_ms)
    return sum(len(b.readings) for b in decoded) / (time.perf_counter() - t0)


def disk_bytes(schema: str) -> tuple[int, int]:
    """(readings partitions with their indexes, every table of the schema) in bytes."""
    conn = pg_connect(PG_URL, schema)
    try:
        readings = conn.execute("SELECT COALESCE(SUM(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                                "WHERE inhparent = 'readings'::regclass").fetchone()[0]
        everything = conn.execute("SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN "
                                  "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
                                  "c.relkind = 'r'", (schema,)).fetchone()[0]
    finally:
        conn.close()
    return int(readings), int(everything)


class Database:
    """One generated database and its receiver process."""

    def __init__(self, size: dict[str, Any], per_channel: int) -> None:
        self.schema = f"bench_growth_{uuid.uuid4().hex[:8]}"
        self.url = f"{PG_URL}?schema={self.schema}"
        self.store = open_store(self.url)
        self.proc: Any = None
        now = int(time.time() * 1000)
        t0 = time.monotonic()
        self.readings = generate(self.store, self.schema, size["nodes"], per_channel, size["dense_s"], now)
        print(f"bench/growth: {self.readings:,} readings generated in {time.monotonic() - t0:.0f} s",
              file=sys.stderr, flush=True)
        token = Accounts(self.store).add_token("bench", "read")
        self.proc, self.base = start_central(["serve", "--listen", "127.0.0.1:0", "--db", self.url],
                                             timeout=60, drop_env=("STREETNODE_DEBUG",))
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.series_query = {"channel": "flood.depth_cm", "since": f"-{size['dense_s'] * 1000}ms"}
        self.latest_ms: list[float] = []
        self.series_ms: list[float] = []
        self.rates: list[float] = []

    def overview(self) -> None:
        self.api.get(self.base + "/v1/latest", timeout=60).raise_for_status()

    def series(self) -> None:
        self.api.get(f"{self.base}/v1/nodes/{DENSE}/series", params=self.series_query,
                     timeout=60).raise_for_status()

    def close(self) -> None:
        if self.proc is not None:
            stop_central(self.proc, timeout=30)
        self.store.close()
        conn = pg_connect(PG_URL, "public")
        conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        conn.close()


def measure(quick: bool, per_channel: int) -> list[dict]:
    """Both databases side by side; the figures taken in alternating rounds, so that a machine
    whose load changes during the run (a shared VM) weighs on both alike."""
    size = sizes(quick, per_channel)
    small = large = None
    try:
        small = Database(size, size["small"])
        large = Database(size, size["large"])
        rounds = 3
        for r in range(rounds):
            for db in (small, large):
                db.latest_ms.append(timed(db.overview, size["repeats"],
                                          pause_s=ConsoleConfig().overview_cache_s + 0.1))
                db.series_ms.append(timed(db.series, size["repeats"]))
                db.rates.append(ingest_rate(db.store, size["batches"], int(time.time() * 1000), f"r{r}"))
        weeks = len(large.store.transaction(partitions.weeks))
        readings_bytes, all_bytes = disk_bytes(large.schema)
    finally:
        for db in (small, large):
            if db is not None:
                db.close()
    ingested = rounds * size["batches"] * BATCH
    small_n, large_n = small.readings + ingested, large.readings + ingested
    tag = f"{large_n / 1e6:.1f} M readings, {size['nodes']} nodes, {weeks} weeks"
    base = f"the same at {small_n / 1e6:.2f} M readings"
    figures = {name: (statistics.median(getattr(large, name)), statistics.median(getattr(small, name)))
               for name in ("rates", "latest_ms", "series_ms")}
    rate, rate_small = figures["rates"]
    latest, latest_small = figures["latest_ms"]
    series, series_small = figures["series_ms"]
    per_reading = readings_bytes / large_n
    return [
        {"metric": f"ingest Store.ingest, 5,000-reading batches ({tag})", "value": round(rate),
         "unit": "readings/s", "baseline": base, "baseline_value": round(rate_small),
         "ratio": round(rate / rate_small, 2), "goal": "≥ 0.8×"},
        {"metric": f"  … latest values of all nodes, GET /v1/latest ({tag})", "value": round(latest, 1),
         "unit": "ms", "baseline": base, "baseline_value": round(latest_small, 1),
         "ratio": round(latest / latest_small, 2), "goal": "≤ 2×"},
        {"metric": f"  … a 7-day series of a 10 s node, GET …/series ({tag})", "value": round(series, 1),
         "unit": "ms", "baseline": base, "baseline_value": round(series_small, 1),
         "ratio": round(series / series_small, 2), "goal": "≤ 2×"},
        {"metric": f"  … disk per reading, readings partitions + indexes ({tag})",
         "value": round(per_reading, 1), "unit": "B/reading",
         "baseline": "the quotas' estimate (central/quotas.py)", "baseline_value": 128,
         "ratio": round(per_reading / 128, 2), "goal": "report"},
        {"metric": f"  … disk per reading, every table of the schema ({tag})",
         "value": round(all_bytes / large_n, 1), "unit": "B/reading",
         "baseline": "readings partitions + indexes",
         "baseline_value": round(per_reading, 1), "ratio": round(all_bytes / readings_bytes, 2),
         "goal": "report"},
    ]


def run(quick: bool = False) -> list[dict]:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as e:  # no server: one row that says so
        return [{"metric": "growth (PostgreSQL)", "value": None, "unit": "",
                 "goal": f"skipped: PostgreSQL at {PG_URL} unreachable ({type(e).__name__})"}]
    return measure(quick, 1250)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--readings-per-channel", type=int, default=1250,
                   help="of the large database's 1,000 nodes × 8 channels, an hour apart")
    args = p.parse_args(argv)
    for row in measure(args.quick, args.readings_per_channel):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
