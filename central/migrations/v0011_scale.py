"""Scale-out (#18), on PostgreSQL and SQLite:

- ``node_quotas``: one row per node and bucket (``readings``, ``bytes``), its level at
  ``updated_ms``; ``ingest_claims``: one row per batch of a node admitted and not yet done. Both
  shared by every receiver process (central/quotas.py) instead of one set per process; both start
  empty (a node's buckets start full at its first upload after the upgrade).
- PostgreSQL only: ``readings`` becomes partitioned by wall time, a partition a week plus a default
  one (central/partitions.py). The readings are copied once into the new table (the upgrade takes
  as long as copying the table and building its indexes: about a minute per 10 M readings on the
  bench machine) and the old table is dropped. The unique key becomes (node_id, epoch, seq,
  wall_ms), the partition key must be part of it; at-most-once per (node, epoch, seq) is kept by
  the store (a per-node lock and a lookup, central/partitions.py). SQLite keeps one table."""

from __future__ import annotations

from central import partitions
from central.migrations import Tx

TABLES = [
    """CREATE TABLE node_quotas (
        node_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        level DOUBLE PRECISION NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, kind))""",
    """CREATE TABLE ingest_claims (
        node_id TEXT NOT NULL,
        claim TEXT NOT NULL,
        expires_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, claim))""",
]

COLUMNS = ("node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, boot_id, received_ms, "
           "ingest_tx, unit")
PARTITIONED = """CREATE TABLE readings (
        node_id TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        channel TEXT NOT NULL,
        value DOUBLE PRECISION,
        flags BIGINT NOT NULL,
        wall_ms BIGINT NOT NULL,
        boot_ms BIGINT NOT NULL,
        boot_id TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        ingest_tx xid8 DEFAULT pg_current_xact_id(),
        unit TEXT) PARTITION BY RANGE (wall_ms)"""
INDEXES = [
    "ALTER TABLE readings ADD PRIMARY KEY (node_id, epoch, seq, wall_ms)",
    "CREATE INDEX readings_by_time ON readings (node_id, wall_ms)",
    "CREATE INDEX readings_by_stream ON readings (node_id, channel, wall_ms, epoch, seq)",
    "CREATE INDEX readings_by_ingest_tx ON readings (ingest_tx)",
]


def up(tx: Tx, dialect: str) -> None:
    for statement in TABLES:
        tx.execute(statement)
    if dialect == "postgresql":
        _partition_readings(tx)


def _partition_readings(tx: Tx) -> None:
    tx.execute("ALTER TABLE readings RENAME TO readings_unpartitioned")
    tx.execute(PARTITIONED)
    tx.execute(f"CREATE TABLE {partitions.DEFAULT} PARTITION OF readings DEFAULT")
    tx.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
    now_ms = int(tx.fetchall()[0][0])
    period = partitions.PERIOD_MS
    tx.execute(f"SELECT DISTINCT wall_ms - mod(wall_ms, {period}) FROM readings_unpartitioned "
               "WHERE wall_ms >= ? AND wall_ms < ?", (partitions.FIRST_WEEK_MS, partitions.LAST_WEEK_MS))
    starts = {int(r[0]) for r in tx.fetchall()}
    starts.update(partitions.missing_weeks([], now_ms))
    for start in sorted(starts):
        tx.execute(f"CREATE TABLE {partitions.week_name(start)} PARTITION OF readings "
                   f"FOR VALUES FROM ({start}) TO ({start + period})")
    tx.execute(f"INSERT INTO readings ({COLUMNS}) SELECT {COLUMNS} FROM readings_unpartitioned")
    tx.execute("DROP TABLE readings_unpartitioned")
    for statement in INDEXES:
        tx.execute(statement)
