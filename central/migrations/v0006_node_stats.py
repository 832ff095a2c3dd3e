"""Per-node counters and per-reading units (#13, old #11: reads never block ingest; one meaning).

``node_stats`` holds what ``GET /v1/nodes`` shows (readings, gaps, missing readings, incidents) per
node, kept by the ingest transaction, so listing nodes no longer counts every reading. This step
fills it once from the tables as they are.

A channel whose unit changes (a firmware fix: ``""`` -> ``"%"``) no longer relabels the readings
stored before: ``channels.base_unit`` is the unit of the channel's readings whose ``readings.unit``
is NULL (the first unit seen; here, the unit as it was), and a reading stored under another unit
keeps it in ``readings.unit``. ``channels.unit`` stays the latest unit (what SensorThings shows).
Both columns are added without a default: instant on PostgreSQL, no rewrite of ``readings``.

v1 values are finite (docs/protocol.md); a non-finite value stored before that rule (it made every
JSON read of its node fail) becomes no value, as NaN already was on SQLite: one meaning on both.
"""

from __future__ import annotations

from central.migrations import Tx

STATEMENTS = [
    """CREATE TABLE node_stats (
        node_id TEXT PRIMARY KEY,
        readings BIGINT NOT NULL,
        gaps BIGINT NOT NULL,
        missing_readings BIGINT NOT NULL,
        incidents BIGINT NOT NULL)""",
    """INSERT INTO node_stats (node_id, readings, gaps, missing_readings, incidents)
       SELECT n.node_id,
              (SELECT COUNT(*) FROM readings r WHERE r.node_id = n.node_id),
              (SELECT COUNT(*) FROM gaps g WHERE g.node_id = n.node_id),
              (SELECT COALESCE(SUM(g.count), 0) FROM gaps g WHERE g.node_id = n.node_id),
              (SELECT COUNT(*) FROM incidents i WHERE i.node_id = n.node_id)
       FROM nodes n""",
    "ALTER TABLE channels ADD COLUMN base_unit TEXT",
    "UPDATE channels SET base_unit = unit",
    "ALTER TABLE readings ADD COLUMN unit TEXT",
]


NON_FINITE = {
    "sqlite": "UPDATE readings SET value = NULL WHERE abs(value) > 1.7976931348623157e308",
    "postgresql": "UPDATE readings SET value = NULL WHERE value IN ('Infinity', '-Infinity', 'NaN')",
}


def up(tx: Tx, dialect: str) -> None:
    for statement in STATEMENTS:
        tx.execute(statement)
    tx.execute(NON_FINITE[dialect])
