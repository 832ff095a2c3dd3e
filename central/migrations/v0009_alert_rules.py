"""Alert rules edited by an admin in the console (central/alerts/stored.py): one row per rule name
(its ``[[alerts.rules]]`` table as JSON, enabled or not; it overrides a file rule of the same name),
and the audit of every change (who, when, what)."""

from __future__ import annotations

from central.migrations import Tx


def up(tx: Tx, dialect: str) -> None:
    key = "INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    tx.execute("""CREATE TABLE alert_rules (
        name TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        updated_ms BIGINT NOT NULL,
        updated_by TEXT NOT NULL)""")
    tx.execute(f"""CREATE TABLE alert_rule_audit (
        id {key},
        name TEXT NOT NULL,
        action TEXT NOT NULL,
        doc TEXT,
        actor TEXT NOT NULL,
        at_ms BIGINT NOT NULL)""")
