"""The MQTT forwarder (central/forward): a cursor per sink and feed, a lease per sink (one forwarder
per sink across `serve` processes), and on PostgreSQL the id of the transaction that stored each
reading (``readings.ingest_tx``), so readings can be forwarded exactly in the order they became
visible (docs/central.md). SQLite needs no column: its ``rowid`` already has that order.

The column is added without a default first (instant: no table rewrite), then given its default for
new rows; readings stored before this step keep NULL and are forwarded first, in key order."""

from __future__ import annotations

from central.migrations import Tx

TABLES = [
    """CREATE TABLE forward_cursors (
        sink TEXT NOT NULL,
        feed TEXT NOT NULL,
        position TEXT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (sink, feed))""",
    """CREATE TABLE forward_leases (
        sink TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ms BIGINT NOT NULL)""",
]


def up(tx: Tx, dialect: str) -> None:
    for statement in TABLES:
        tx.execute(statement)
    if dialect == "postgresql":
        tx.execute("ALTER TABLE readings ADD COLUMN ingest_tx xid8")
        tx.execute("ALTER TABLE readings ALTER COLUMN ingest_tx SET DEFAULT pg_current_xact_id()")
        tx.execute("CREATE INDEX readings_by_ingest_tx ON readings (ingest_tx)")
