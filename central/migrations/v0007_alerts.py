"""Alerts (central/alerts, issue 15): each alert with its lifecycle (open -> acknowledged ->
resolved), its history (one event per transition), the state of each rule per node (hysteresis
counts survive a restart), and the delivery queue: one row per transition and sink, delivered in
order, retried with backoff until the sink takes it (so a restart of the central loses nothing)."""

from __future__ import annotations

from central.migrations import Tx


def up(tx: Tx, dialect: str) -> None:
    key = "INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    tx.execute(f"""CREATE TABLE alerts (
        id {key},
        node_id TEXT NOT NULL,
        rule TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        channel TEXT,
        state TEXT NOT NULL,
        value DOUBLE PRECISION,
        summary TEXT NOT NULL,
        late INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        opened_ms BIGINT NOT NULL,
        acknowledged_ms BIGINT,
        acknowledged_by TEXT,
        resolved_ms BIGINT)""")
    tx.execute("CREATE INDEX alerts_by_node_state ON alerts (node_id, state)")
    tx.execute("CREATE INDEX alerts_by_state ON alerts (state, id)")
    tx.execute(f"""CREATE TABLE alert_events (
        id {key},
        alert_id BIGINT NOT NULL REFERENCES alerts (id),
        transition TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        reading_ms BIGINT,
        value DOUBLE PRECISION,
        late INTEGER NOT NULL DEFAULT 0,
        actor TEXT,
        detail TEXT)""")
    tx.execute("CREATE INDEX alert_events_by_alert ON alert_events (alert_id, id)")
    tx.execute("""CREATE TABLE alert_rule_state (
        rule TEXT NOT NULL,
        node_id TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (rule, node_id))""")
    tx.execute(f"""CREATE TABLE alert_deliveries (
        id {key},
        sink TEXT NOT NULL,
        event_id BIGINT NOT NULL REFERENCES alert_events (id),
        dedupe_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        done_ms BIGINT,
        last_error TEXT,
        UNIQUE (sink, dedupe_key))""")
    tx.execute("CREATE INDEX alert_deliveries_pending ON alert_deliveries (sink, state, id)")
