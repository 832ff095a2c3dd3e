"""What the console reads instead of scanning readings, kept up to date in the ingest transaction.

- ``latest_readings``: per node and channel, the reading with the newest wall time (an upsert that
  only moves forward, so a backfilled old batch never replaces a newer value).
- ``readings_hourly``: per node, channel and hour (UTC, wall time): count, values, min, max, sum,
  readings flagged CLOCK_CORRECTED and readings that arrived more than `DELAYED_MS` after they were
  measured (the node was buffering). Each (channel, hour) a batch touches is recomputed from the
  stored readings, so a batch sent twice counts nothing twice and the rollup always equals the
  readings (an index range scan of at most one hour of one channel).

Plain SQL with ``?`` placeholders through a `Tx`-like object: the store calls `update` (both
backends); the migration ``console`` fills both tables from readings stored before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

HOUR_MS = 3_600_000
CLOCK_CORRECTED_BIT = 512  # node.model.Quality.CLOCK_CORRECTED (bit 9)
DELAYED_MS = 120_000  # a reading stored more than 2 min after it was measured had been buffered


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


LATEST_UPSERT = (
    "INSERT INTO latest_readings (node_id, channel, epoch, seq, value, flags, wall_ms, received_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_id, channel) DO UPDATE SET epoch = excluded.epoch, "
    "seq = excluded.seq, value = excluded.value, flags = excluded.flags, wall_ms = excluded.wall_ms, "
    "received_ms = excluded.received_ms WHERE excluded.wall_ms > latest_readings.wall_ms "
    "OR (excluded.wall_ms = latest_readings.wall_ms AND (excluded.epoch > latest_readings.epoch "
    "OR (excluded.epoch = latest_readings.epoch AND excluded.seq > latest_readings.seq)))")

HOURLY_RECOMPUTE = (
    "INSERT INTO readings_hourly (node_id, channel, hour_ms, n, n_values, v_min, v_max, v_sum, "
    "n_corrected, n_delayed) "
    "SELECT node_id, channel, ?, COUNT(*), COUNT(value), MIN(value), MAX(value), SUM(value), "
    f"SUM(CASE WHEN (flags & {CLOCK_CORRECTED_BIT}) <> 0 THEN 1 ELSE 0 END), "
    f"SUM(CASE WHEN received_ms - wall_ms > {DELAYED_MS} THEN 1 ELSE 0 END) "
    "FROM readings WHERE node_id = ? AND channel = ? AND wall_ms >= ? AND wall_ms < ? "
    "GROUP BY node_id, channel "
    "ON CONFLICT (node_id, channel, hour_ms) DO UPDATE SET n = excluded.n, n_values = excluded.n_values, "
    "v_min = excluded.v_min, v_max = excluded.v_max, v_sum = excluded.v_sum, "
    "n_corrected = excluded.n_corrected, n_delayed = excluded.n_delayed")


def update(tx: Tx, node_id: str, epoch: int, rows: Sequence[tuple[Any, ...]], received_ms: int) -> None:
    """After a batch's readings were inserted: ``rows`` as `IngestBatch.rows()` gives them,
    ``(seq, channel, value, flags, wall_ms, boot_ms, boot_id)``."""
    newest: dict[str, tuple[Any, ...]] = {}
    hours: set[tuple[str, int]] = set()
    for row in rows:
        seq, channel, wall_ms = row[0], row[1], row[4]
        best = newest.get(channel)
        if best is None or (wall_ms, seq) > (best[4], best[0]):
            newest[channel] = row
        if wall_ms >= 0:
            hours.add((channel, wall_ms - wall_ms % HOUR_MS))
    for channel, row in sorted(newest.items()):
        seq, value, flags, wall_ms = row[0], row[2], row[3], row[4]
        tx.execute(LATEST_UPSERT, (node_id, channel, epoch, seq, value, flags, wall_ms, received_ms))
    for channel, hour_ms in sorted(hours):
        tx.execute(HOURLY_RECOMPUTE, (hour_ms, node_id, channel, hour_ms, hour_ms + HOUR_MS))


# what the migration runs once over the readings stored before it
BACKFILL = [
    """INSERT INTO latest_readings (node_id, channel, epoch, seq, value, flags, wall_ms, received_ms)
       SELECT node_id, channel, epoch, seq, value, flags, wall_ms, received_ms FROM (
           SELECT node_id, channel, epoch, seq, value, flags, wall_ms, received_ms,
                  ROW_NUMBER() OVER (PARTITION BY node_id, channel
                                     ORDER BY wall_ms DESC, epoch DESC, seq DESC) AS rn
           FROM readings) newest
       WHERE rn = 1""",
    f"""INSERT INTO readings_hourly (node_id, channel, hour_ms, n, n_values, v_min, v_max, v_sum,
                                   n_corrected, n_delayed)
       SELECT node_id, channel, (wall_ms / 3600000) * 3600000, COUNT(*), COUNT(value), MIN(value),
              MAX(value), SUM(value), SUM(CASE WHEN (flags & {CLOCK_CORRECTED_BIT}) <> 0 THEN 1 ELSE 0 END),
              SUM(CASE WHEN received_ms - wall_ms > {DELAYED_MS} THEN 1 ELSE 0 END)
       FROM readings WHERE wall_ms >= 0 GROUP BY node_id, channel, (wall_ms / 3600000) * 3600000""",
]
