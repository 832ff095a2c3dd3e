"""Conflicts, epochs and identities (#20: lose nothing, even when the world lies).

``node_epochs``: per node and epoch the highest seq ever stored (``high_seq``), kept by the ingest
transaction, so every ingest answer can carry ``high_seq`` and ``max_epoch`` without scanning
``readings`` (and they stay right when retention later drops old readings). Filled once here.

``reading_conflicts``: a reading whose (node, epoch, seq) the central already held with other
content is not stored over the original; its key, when it was first and last seen, how often, and
the two contents in short are kept here (one row per key). ``node_stats.conflicts`` counts them.

``node_identities``: each distinct (hw_serial, machine_id, buffer_id) a node's health has shown
(``''`` for a key it did not send), with first/last seen: one node id whose identities alternate is
two devices sharing it (docs/central.md, "Conflicts and identities").
"""

from __future__ import annotations

from central.migrations import Tx

STATEMENTS = [
    """CREATE TABLE node_epochs (
        node_id TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        high_seq BIGINT,
        first_ms BIGINT NOT NULL,
        last_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, epoch))""",
    """INSERT INTO node_epochs (node_id, epoch, high_seq, first_ms, last_ms)
       SELECT node_id, epoch, MAX(seq), MIN(received_ms), MAX(received_ms)
       FROM readings GROUP BY node_id, epoch""",
    """CREATE TABLE reading_conflicts (
        node_id TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        first_seen_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        times BIGINT NOT NULL,
        stored TEXT NOT NULL,
        sent TEXT NOT NULL,
        PRIMARY KEY (node_id, epoch, seq))""",
    "CREATE INDEX reading_conflicts_by_time ON reading_conflicts (node_id, last_seen_ms)",
    """CREATE TABLE node_identities (
        node_id TEXT NOT NULL,
        hw_serial TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        buffer_id TEXT NOT NULL,
        first_seen_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        batches BIGINT NOT NULL,
        PRIMARY KEY (node_id, hw_serial, machine_id, buffer_id))""",
    "ALTER TABLE node_stats ADD COLUMN conflicts BIGINT NOT NULL DEFAULT 0",
]


def up(tx: Tx, dialect: str) -> None:
    for statement in STATEMENTS:
        tx.execute(statement)
