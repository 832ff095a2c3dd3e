"""What the console reads instead of scanning readings, kept up to date in the ingest transaction.

- ``latest_readings``: per node and channel, the reading with the newest wall time (an upsert that
  only moves forward, so a backfilled old batch never replaces a newer value).
- ``readings_hourly``: per node, channel and hour (UTC, wall time): count, values, min, max, sum,
  readings flagged CLOCK_CORRECTED and readings that arrived more than `DELAYED_MS` after they were
  measured (the node was buffering). Only the readings an upload actually stored are added (the
  store knows which: PostgreSQL's ``INSERT ... RETURNING``, SQLite's single writer), so a batch
  sent twice counts nothing twice and the rollup always equals the readings; the cost is one
  upsert statement per upload, whatever the size of the table.

Plain SQL with ``?`` placeholders through a `Tx`-like object: the store calls `update` (both
backends); the migration ``console`` fills both tables from readings stored before it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

HOUR_MS = 3_600_000
CLOCK_CORRECTED_BIT = 512  # node.model.Quality.CLOCK_CORRECTED (bit 9)
DELAYED_MS = 120_000  # a reading stored more than 2 min after it was measured had been buffered


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


LATEST_COLUMNS = "(node_id, channel, epoch, seq, value, flags, wall_ms, received_ms)"
LATEST_ON_CONFLICT = (
    " ON CONFLICT (node_id, channel) DO UPDATE SET epoch = excluded.epoch, "
    "seq = excluded.seq, value = excluded.value, flags = excluded.flags, wall_ms = excluded.wall_ms, "
    "received_ms = excluded.received_ms WHERE excluded.wall_ms > latest_readings.wall_ms "
    "OR (excluded.wall_ms = latest_readings.wall_ms AND (excluded.epoch > latest_readings.epoch "
    "OR (excluded.epoch = latest_readings.epoch AND excluded.seq > latest_readings.seq)))")
HOURLY_COLUMNS = "(node_id, channel, hour_ms, n, n_values, v_min, v_max, v_sum, n_corrected, n_delayed)"
HOURLY_ON_CONFLICT = (
    " ON CONFLICT (node_id, channel, hour_ms) DO UPDATE SET n = readings_hourly.n + excluded.n, "
    "n_values = readings_hourly.n_values + excluded.n_values, v_min = {least}, v_max = {greatest}, "
    "v_sum = COALESCE(readings_hourly.v_sum + excluded.v_sum, readings_hourly.v_sum, excluded.v_sum), "
    "n_corrected = readings_hourly.n_corrected + excluded.n_corrected, "
    "n_delayed = readings_hourly.n_delayed + excluded.n_delayed")
# the smaller/larger of two values, either of which may be NULL (no value in that hour yet)
_LEAST = {"postgresql": "LEAST(readings_hourly.{c}, excluded.{c})",
          "sqlite": "COALESCE(MIN(readings_hourly.{c}, excluded.{c}), readings_hourly.{c}, excluded.{c})"}
_GREATEST = {"postgresql": "GREATEST(readings_hourly.{c}, excluded.{c})",
             "sqlite": "COALESCE(MAX(readings_hourly.{c}, excluded.{c}), readings_hourly.{c}, excluded.{c})"}
ROWS_PER_STATEMENT = 500


def _hourly_sql(dialect: str, count: int) -> str:
    kind = "postgresql" if dialect == "postgresql" else "sqlite"
    conflict = HOURLY_ON_CONFLICT.replace("{least}", _LEAST[kind].replace("{c}", "v_min")).replace(
        "{greatest}", _GREATEST[kind].replace("{c}", "v_max"))
    return (f"INSERT INTO readings_hourly {HOURLY_COLUMNS} VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count) + conflict)


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def update(tx: Tx, dialect: str, new_rows: Sequence[tuple[Any, ...]]) -> None:
    """Add the readings a batch stored (only the new ones: a resent batch adds nothing), as rows
    ``(node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, boot_id, received_ms)`` of one
    node: one upsert of the newest reading per channel, one of the per-hour sums they touch."""
    newest: dict[str, tuple[Any, ...]] = {}
    hours: dict[tuple[str, int], list[Any]] = {}
    for row in new_rows:
        channel, value, flags, wall_ms, received_ms = row[3], _finite(row[4]), row[5], row[6], row[9]
        best = newest.get(channel)
        if best is None or (wall_ms, row[1], row[2]) > (best[6], best[1], best[2]):
            newest[channel] = row
        if wall_ms < 0:
            continue
        # n, n_values, v_min, v_max, v_sum (NULL while no value, as SQL's SUM), n_corrected, n_delayed
        sums = hours.setdefault((channel, wall_ms - wall_ms % HOUR_MS), [0, 0, None, None, None, 0, 0])
        sums[0] += 1
        if value is not None:
            sums[1] += 1
            sums[2] = value if sums[2] is None else min(sums[2], value)
            sums[3] = value if sums[3] is None else max(sums[3], value)
            sums[4] = value if sums[4] is None else sums[4] + value
        sums[5] += 1 if flags & CLOCK_CORRECTED_BIT else 0
        sums[6] += 1 if received_ms - wall_ms > DELAYED_MS else 0
    node_id = new_rows[0][0] if new_rows else ""
    if newest:
        values: list[Any] = []
        for channel, row in sorted(newest.items()):
            values += [node_id, channel, row[1], row[2], row[4], row[5], row[6], row[9]]
        placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(newest))
        tx.execute(f"INSERT INTO latest_readings {LATEST_COLUMNS} VALUES {placeholders}{LATEST_ON_CONFLICT}",
                   values)
    ordered = sorted(hours.items())
    for first in range(0, len(ordered), ROWS_PER_STATEMENT):
        chunk = ordered[first:first + ROWS_PER_STATEMENT]
        params: list[Any] = []
        for (channel, hour_ms), sums in chunk:
            params += [node_id, channel, hour_ms, *sums]
        tx.execute(_hourly_sql(dialect, len(chunk)), params)


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
