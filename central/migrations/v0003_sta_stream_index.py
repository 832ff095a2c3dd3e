"""The SensorThings API (central/sta) reads a Datastream's Observations in time order, filters them
by time and gives each stream's time span: an index on (node_id, channel, wall_ms, epoch, seq) makes
each of these a range scan that starts at the cursor. On an existing large table the index is built
once, when this step runs."""

from __future__ import annotations

from central.migrations import Tx


def up(tx: Tx, dialect: str) -> None:
    tx.execute("CREATE INDEX IF NOT EXISTS readings_by_stream "
               "ON readings (node_id, channel, wall_ms, epoch, seq)")
