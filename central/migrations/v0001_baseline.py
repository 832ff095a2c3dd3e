"""The round-1 schema, exactly: nodes and keys, channel units, readings, gaps, incidents, accepted
signatures. ``IF NOT EXISTS`` throughout, so a round-1 database (which has these tables but no
``schema_version``) passes through this step unchanged."""

from __future__ import annotations

from central.migrations import Tx

TABLES = [
    """CREATE TABLE IF NOT EXISTS nodes (
        node_id TEXT PRIMARY KEY,
        key_hex TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        last_seen_ms BIGINT,
        health_json TEXT,
        health_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS channels (
        node_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        unit TEXT NOT NULL,
        PRIMARY KEY (node_id, channel))""",
    """CREATE TABLE IF NOT EXISTS readings (
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
        PRIMARY KEY (node_id, epoch, seq))""",
    "CREATE INDEX IF NOT EXISTS readings_by_time ON readings (node_id, wall_ms)",
    """CREATE TABLE IF NOT EXISTS gaps (
        node_id TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        count BIGINT NOT NULL,
        first_wall_ms BIGINT,
        last_wall_ms BIGINT,
        reason TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, epoch, first_seq, reason))""",
    """CREATE TABLE IF NOT EXISTS incidents (
        node_id TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        incident_id BIGINT NOT NULL,
        wall_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL,
        count BIGINT,
        received_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, epoch, incident_id))""",
    """CREATE TABLE IF NOT EXISTS signatures (
        node_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        expires_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, signature))""",
    "CREATE INDEX IF NOT EXISTS signatures_by_expiry ON signatures (expires_ms)",
]


def up(tx: Tx, dialect: str) -> None:
    for statement in TABLES:
        tx.execute(statement)
