"""Scale-out (#18): per-node quota buckets and ingest claims in the database, shared by every
receiver process (central/quotas.py) instead of one set per process.

``node_quotas``: one row per node and bucket (``readings``, ``bytes``), its level at ``updated_ms``;
``ingest_claims``: one row per batch of a node admitted and not yet done. Both start empty (a
node's buckets start full at its first upload after the upgrade)."""

from __future__ import annotations

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



def up(tx: Tx, dialect: str) -> None:
    for statement in TABLES:
        tx.execute(statement)
