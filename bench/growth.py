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
import sys
import time
import uuid
from typing import Any

import requests

from bench.console import CHANNELS, DENSE, KEY, PG_URL, UNITS, pg_connect, start_server, timed
from central import partitions
from central.accounts import Accounts
from central.console import rollup
from central.console.config import ConsoleConfig
from central.store import open_store
from node.model import Reading
from node.protocol import IngestBatch

HOUR_MS = 3_600_000
BATCH = 5000
INGEST_BATCHES = 12


def sizes(quick: bool, per_channel: int) -> dict[str, Any]:
    if quick:
        return {"nodes": 100, "small": 12, "large": 120, "dense_s": 86_400, "repeats": 5, "batches": 4}
    return {"nodes": 1000, "small": 12, "large": per_channel, "dense_s": 7 * 86_400, "repeats": 9,
            "batches": INGEST_BATCHES}


def generate(store: Any, schema: str, nodes: int, per_channel: int, dense_s: int, now_ms: int) -> int:
    """Nodes, channels and readings by SQL, into their weeks; the console's tables as the migration
    fills them."""
    first = now_ms - per_channel * HOUR_MS
    for week in range(partitions.week_start(first), partitions.week_start(now_ms), partitions.PERIOD_MS):
        store.transaction(lambda tx, w=week: partitions.create_week(tx, w), write=True)
    conn = pg_connect(PG_URL, schema)
    channels = "ARRAY[" + ",".join(f"'{c}'" for c in CHANNELS) + "]"
    units = "ARRAY[" + ",".join(f"'{u}'" for u in UNITS) + "]"
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '256MB'")
    conn.execute("INSERT INTO nodes (node_id, key_hex, created_ms, last_seen_ms, health_json, health_ms) "
                 "SELECT 'pole-' || lpad(n::text, 4, '0'), %s, %s, %s, '{\"firmware\": \"0.1.0\"}', %s "
                 "FROM generate_series(0, %s - 1) n", (KEY.hex(), now_ms, now_ms, now_ms, nodes))
    conn.execute(f"INSERT INTO channels (node_id, channel, unit) SELECT node_id, ({channels})[c], "
                 f"({units})[c] FROM nodes, generate_series(1, 8) c")
    for index in ("readings_by_time", "readings_by_stream", "readings_by_ingest_tx"):
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    conn.execute(f"INSERT INTO readings (node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, "
                 f"boot_id, received_ms) SELECT 'pole-' || lpad(n::text, 4, '0'), 1, i * 8 + c, "
                 f"({channels})[c + 1], round((20 + 10 * sin(i / 50.0 + n) + c)::numeric, 2), 0, "
                 f"%s - (%s - i)::bigint * {HOUR_MS}, 1000, 'boot-a', "
                 f"%s - (%s - i)::bigint * {HOUR_MS} + 2000 "
                 f"FROM generate_series(1, %s - 1) n, generate_series(0, %s - 1) i, generate_series(0, 7) c",
                 (now_ms, per_channel, now_ms, per_channel, nodes, per_channel))
    dense = dense_s // 10
    conn.execute(f"INSERT INTO readings (node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, "
                 f"boot_id, received_ms) SELECT %s, 1, i * 8 + c, ({channels})[c + 1], "
                 f"round((15 + 15 * sin(i / 360.0) + c)::numeric, 2), 0, %s - (%s - i) * 10000, 1000, "
                 f"'boot-a', %s - (%s - i) * 10000 + 2000 FROM generate_series(0, %s - 1) i, "
                 f"generate_series(0, 7) c", (DENSE, now_ms, dense, now_ms, dense, dense))
    conn.execute("CREATE INDEX readings_by_time ON readings (node_id, wall_ms)")
    conn.execute("CREATE INDEX readings_by_stream ON readings (node_id, channel, wall_ms, epoch, seq)")
    conn.execute("CREATE INDEX readings_by_ingest_tx ON readings (ingest_tx)")
    for statement in rollup.BACKFILL:
        conn.execute(statement)
    conn.execute("VACUUM ANALYZE")
    total = conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    conn.close()
    return int(total)


def ingest_rate(store: Any, batches: int, now_ms: int) -> float:
    """Readings/s of `Store.ingest` on 5,000-reading batches of new nodes, stamped up to now."""
    names = list(CHANNELS)
    decoded = []
    for b in range(batches):
        node = f"growth-{b:03d}"
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


def measure_one(size: dict[str, Any], per_channel: int) -> dict[str, Any]:
    schema = f"bench_growth_{uuid.uuid4().hex[:8]}"
    url = f"{PG_URL}?schema={schema}"
    store = open_store(url)
    proc = None
    try:
        now = int(time.time() * 1000)
        t0 = time.monotonic()
        total = generate(store, schema, size["nodes"], per_channel, size["dense_s"], now)
        generated_s = time.monotonic() - t0
        print(f"bench/growth: {total:,} readings generated in {generated_s:.0f} s", file=sys.stderr,
              flush=True)
        token = Accounts(store).add_token("bench", "read")
        proc, base = start_server(url)
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"

        def overview() -> None:
            api.get(base + "/v1/latest", timeout=60).raise_for_status()

        series_query = {"channel": "flood.depth_cm", "since": f"-{size['dense_s'] * 1000}ms"}

        def series() -> None:
            api.get(f"{base}/v1/nodes/{DENSE}/series", params=series_query, timeout=60).raise_for_status()

        repeats = size["repeats"]
        latest_ms = timed(overview, repeats, pause_s=ConsoleConfig().overview_cache_s + 0.1)
        series_ms = timed(series, repeats)
        proc.terminate()
        proc.wait(30)
        proc = None
        rate = ingest_rate(store, size["batches"], int(time.time() * 1000))
        readings_bytes, all_bytes = disk_bytes(schema)
        weeks = len(store.transaction(partitions.weeks))
    finally:
        if proc is not None:
            proc.kill()
        store.close()
        conn = pg_connect(PG_URL, "public")
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()
    total += size["batches"] * BATCH
    return {"readings": total, "latest_ms": latest_ms, "series_ms": series_ms, "rate": rate,
            "readings_bytes": readings_bytes, "all_bytes": all_bytes, "weeks": weeks,
            "generated_s": generated_s}


def measure(quick: bool, per_channel: int) -> list[dict]:
    size = sizes(quick, per_channel)
    small = measure_one(size, size["small"])
    large = measure_one(size, size["large"])
    tag = f"{large['readings'] / 1e6:.1f} M readings, {size['nodes']} nodes, {large['weeks']} weeks"
    base = f"the same at {small['readings'] / 1e6:.2f} M readings"
    return [
        {"metric": f"ingest Store.ingest, 5,000-reading batches ({tag})", "value": round(large["rate"]),
         "unit": "readings/s", "baseline": base, "baseline_value": round(small["rate"]),
         "ratio": round(large["rate"] / small["rate"], 2), "goal": "≥ 0.8×"},
        {"metric": f"  … latest values of all nodes, GET /v1/latest ({tag})",
         "value": round(large["latest_ms"], 1), "unit": "ms", "baseline": base,
         "baseline_value": round(small["latest_ms"], 1),
         "ratio": round(large["latest_ms"] / small["latest_ms"], 2), "goal": "≤ 2×"},
        {"metric": f"  … a 7-day series of a 10 s node, GET …/series ({tag})",
         "value": round(large["series_ms"], 1), "unit": "ms", "baseline": base,
         "baseline_value": round(small["series_ms"], 1),
         "ratio": round(large["series_ms"] / small["series_ms"], 2), "goal": "≤ 2×"},
        {"metric": f"  … disk per reading, readings partitions + indexes ({tag})",
         "value": round(large["readings_bytes"] / large["readings"], 1), "unit": "B/reading",
         "baseline": "the quotas' estimate (central/quotas.py)", "baseline_value": 128,
         "ratio": round(large["readings_bytes"] / large["readings"] / 128, 2), "goal": "report"},
        {"metric": f"  … disk per reading, every table of the schema ({tag})",
         "value": round(large["all_bytes"] / large["readings"], 1), "unit": "B/reading",
         "baseline": "readings partitions + indexes", "baseline_value":
             round(large["readings_bytes"] / large["readings"], 1),
         "ratio": round(large["all_bytes"] / large["readings_bytes"], 2), "goal": "report"},
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
