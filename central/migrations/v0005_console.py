"""The operator console (central/console): the newest reading of every node and channel
(``latest_readings``) and an hourly rollup of the readings (``readings_hourly``), both kept up to
date in the ingest transaction (central/console/rollup.py), so the overview never scans readings
and long charts, completeness and the gap timeline read one row per channel and hour.

Existing readings are rolled up here once (one pass over ``readings``)."""

from __future__ import annotations

from central.console.rollup import BACKFILL
from central.migrations import Tx

TABLES = [
    """CREATE TABLE latest_readings (
        node_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        value DOUBLE PRECISION,
        flags BIGINT NOT NULL,
        wall_ms BIGINT NOT NULL,
        received_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, channel))""",
    """CREATE TABLE readings_hourly (
        node_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        hour_ms BIGINT NOT NULL,
        n BIGINT NOT NULL,
        n_values BIGINT NOT NULL,
        v_min DOUBLE PRECISION,
        v_max DOUBLE PRECISION,
        v_sum DOUBLE PRECISION,
        n_corrected BIGINT NOT NULL,
        n_delayed BIGINT NOT NULL,
        PRIMARY KEY (node_id, channel, hour_ms))""",
]


def up(tx: Tx, dialect: str) -> None:
    for statement in TABLES + BACKFILL:
        tx.execute(statement)
