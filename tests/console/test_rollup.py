"""The latest table and the hourly rollup always equal what a scan of readings gives, whatever the
order and repetition of batches; the migration's backfill gives the same."""

from __future__ import annotations

import random

from central.console.rollup import BACKFILL, CLOCK_CORRECTED_BIT, DELAYED_MS, HOUR_MS
from node.model import Reading
from node.protocol import IngestBatch

SCAN_HOURLY = (
    "SELECT node_id, channel, (wall_ms / 3600000) * 3600000, COUNT(*), COUNT(value), MIN(value), MAX(value), "
    f"SUM(value), SUM(CASE WHEN (flags & {CLOCK_CORRECTED_BIT}) <> 0 THEN 1 ELSE 0 END), "
    f"SUM(CASE WHEN received_ms - wall_ms > {DELAYED_MS} THEN 1 ELSE 0 END) FROM readings "
    "GROUP BY node_id, channel, (wall_ms / 3600000) * 3600000 ORDER BY 1, 2, 3")
HOURLY = ("SELECT node_id, channel, hour_ms, n, n_values, v_min, v_max, v_sum, n_corrected, n_delayed "
          "FROM readings_hourly ORDER BY 1, 2, 3")
LATEST = "SELECT node_id, channel, epoch, seq, value, flags, wall_ms FROM latest_readings ORDER BY 1, 2"


def rows(store, sql):
    return [tuple(round(float(v), 6) if isinstance(v, float) else v for v in r)
            for r in store.transaction(lambda tx: tx.execute(sql).fetchall())]


def test_rollup_and_latest_match_a_scan_after_shuffled_and_repeated_batches(store):
    rng = random.Random(7)
    store.add_node("pole-1", bytes(32), 0)
    t0 = 1_764_100_000_000 - 1_764_100_000_000 % HOUR_MS
    readings = [Reading(seq, rng.choice(["a.depth_cm", "b.temp_c"]), rng.choice([None, rng.uniform(-5, 50)]),
                        rng.choice([0, CLOCK_CORRECTED_BIT]), t0 + rng.randrange(0, 5 * HOUR_MS), 0, "b")
                for seq in range(600)]
    chunks = [readings[i:i + 50] for i in range(0, 600, 50)]
    order = chunks + rng.sample(chunks, 4)  # some batches arrive twice
    rng.shuffle(order)
    for n, chunk in enumerate(order):
        received = t0 + 6 * HOUR_MS if n % 2 else max(r.wall_ms for r in chunk)  # some late, some not
        batch = IngestBatch("pole-1", 1, received, readings=chunk, health={},
                            batch_id=n)
        store.ingest(batch, signature=f"{n:064x}", expires_ms=received + 1, now_ms=received)
    assert rows(store, HOURLY) == rows(store, SCAN_HOURLY)
    newest = {}
    for r in readings:
        if r.channel not in newest or (r.wall_ms, r.seq) > (newest[r.channel].wall_ms, newest[r.channel].seq):
            newest[r.channel] = r
    expected = [("pole-1", c, 1, r.seq, None if r.value is None else round(r.value, 6), r.flags, r.wall_ms)
                for c, r in sorted(newest.items())]
    assert rows(store, LATEST) == expected
    hourly, latest = rows(store, HOURLY), rows(store, LATEST)

    def rebuild(tx):
        tx.execute("DELETE FROM readings_hourly")
        tx.execute("DELETE FROM latest_readings")
        for statement in BACKFILL:
            tx.execute(statement)

    store.transaction(rebuild, write=True)
    assert rows(store, HOURLY) == hourly and rows(store, LATEST) == latest
