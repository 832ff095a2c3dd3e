"""The alerts' database side (tables of migration 8), on a connection of its own.

The plumbing (connect, one transaction per call, ``?`` placeholders on both backends, errors as
`ForwardDbError`) is the forwarder's `ForwardDb`, and so is the lease that lets one ``serve``
process deliver per sink.
"""

from __future__ import annotations

import json
from typing import Any

from central.forward.db import ForwardDb

ACTIVE = ("open", "acknowledged")
ALERT_COLUMNS = (
    "id, node_id, rule, kind, severity, channel, state, value, summary, late, delivered, "
    "opened_ms, acknowledged_ms, acknowledged_by, resolved_ms"
)


def alert_doc(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = [k.strip() for k in ALERT_COLUMNS.split(",")]
    doc = dict(zip(keys, row, strict=True))
    doc["late"], doc["delivered"] = bool(doc["late"]), bool(doc["delivered"])
    doc["node"] = doc.pop("node_id")
    return doc


class AlertsDb(ForwardDb):
    # ---- used inside the engine's write transactions (conn given)
    def rule_state(self, conn: Any, rule: str, node_id: str) -> str | None:
        """The (rule, node) state, its row locked for this transaction: two ``serve`` processes
        judging batches of one node take turns (SQLite's writer lock already serializes them)."""
        if self.backend == "sqlite":
            row = self._exec(
                conn, "SELECT state FROM alert_rule_state WHERE rule = ? AND node_id = ?", (rule, node_id)
            ).fetchone()
            return None if row is None else row[0] or None
        self._exec(
            conn,
            "INSERT INTO alert_rule_state (rule, node_id, state) VALUES (?, ?, '') ON CONFLICT DO NOTHING",
            (rule, node_id),
        )
        row = self._exec(
            conn,
            "SELECT state FROM alert_rule_state WHERE rule = ? AND node_id = ? FOR UPDATE",
            (rule, node_id),
        ).fetchone()
        return row[0] or None

    def last_seen(self, conn: Any, node_id: str) -> int | None:
        row = self._exec(conn, "SELECT last_seen_ms FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def save_rule_state(self, conn: Any, rule: str, node_id: str, state: str) -> None:
        self._exec(
            conn,
            "INSERT INTO alert_rule_state (rule, node_id, state) VALUES (?, ?, ?) "
            "ON CONFLICT (rule, node_id) DO UPDATE SET state = excluded.state",
            (rule, node_id, state),
        )

    def active_alert(self, conn: Any, rule: str, node_id: str) -> dict[str, Any] | None:
        row = self._exec(
            conn,
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE rule = ? AND node_id = ? "
            "AND state IN ('open', 'acknowledged') ORDER BY id DESC LIMIT 1",
            (rule, node_id),
        ).fetchone()
        return None if row is None else alert_doc(row)

    def node_active(self, conn: Any, node_id: str) -> list[dict[str, Any]]:
        rows = self._exec(
            conn,
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE node_id = ? AND state IN "
            "('open', 'acknowledged') ORDER BY id",
            (node_id,),
        ).fetchall()
        return [alert_doc(r) for r in rows]

    def get(self, conn: Any, alert_id: int) -> dict[str, Any] | None:
        row = self._exec(conn, f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else alert_doc(row)

    def insert_alert(self, conn: Any, values: dict[str, Any]) -> int:
        keys = list(values)
        sql = f"INSERT INTO alerts ({', '.join(keys)}) VALUES ({', '.join('?' for _ in keys)}) RETURNING id"
        return int(self._exec(conn, sql, [values[k] for k in keys]).fetchone()[0])

    def update_alert(self, conn: Any, alert_id: int, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self._exec(conn, f"UPDATE alerts SET {sets} WHERE id = ?", [*values.values(), alert_id])

    def insert_event(
        self,
        conn: Any,
        alert_id: int,
        transition: str,
        at_ms: int,
        reading_ms: int | None,
        value: float | None,
        late: bool,
        actor: str | None = None,
        detail: str | None = None,
    ) -> int:
        return int(
            self._exec(
                conn,
                "INSERT INTO alert_events (alert_id, transition, at_ms, reading_ms, value, "
                "late, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (alert_id, transition, at_ms, reading_ms, value, int(late), actor, detail),
            ).fetchone()[0]
        )

    def enqueue(
        self, conn: Any, sink: str, event_id: int, dedupe_key: str, payload: str, now_ms: int
    ) -> None:
        self._exec(
            conn,
            "INSERT INTO alert_deliveries (sink, event_id, dedupe_key, payload, state, attempts, "
            "next_ms, created_ms) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
            (sink, event_id, dedupe_key, payload, now_ms, now_ms),
        )

    # ---- whole calls
    def write(self, fn: Any) -> Any:
        return self._run(fn, write=True)

    def read(self, fn: Any) -> Any:
        return self._run(fn)

    def list_alerts(self, states: tuple[str, ...], node_id: str | None, limit: int) -> list[dict[str, Any]]:
        def run(conn: Any) -> list[dict[str, Any]]:
            where = f"state IN ({', '.join('?' for _ in states)})"
            params: list[Any] = list(states)
            if node_id is not None:
                where += " AND node_id = ?"
                params.append(node_id)
            rows = self._exec(
                conn,
                f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {where} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
            return [alert_doc(r) for r in rows]

        return self._run(run)

    def histories(self, alert_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """alert id -> its events (oldest first), for many alerts in one query (the node page)."""
        if not alert_ids:
            return {}

        def run(conn: Any) -> dict[int, list[dict[str, Any]]]:
            marks = ", ".join("?" for _ in alert_ids)
            rows = self._exec(
                conn,
                "SELECT alert_id, id, transition, at_ms, reading_ms, value, late, actor, detail "
                f"FROM alert_events WHERE alert_id IN ({marks}) ORDER BY alert_id, id",
                list(alert_ids),
            ).fetchall()
            keys = ("id", "transition", "at_ms", "reading_ms", "value", "late", "actor", "detail")
            found: dict[int, list[dict[str, Any]]] = {int(i): [] for i in alert_ids}
            for row in rows:
                event = dict(zip(keys, row[1:], strict=True))
                event["late"] = bool(event["late"])
                found[int(row[0])].append(event)
            return found

        return self._run(run)

    def history(self, alert_id: int) -> list[dict[str, Any]]:
        def run(conn: Any) -> list[dict[str, Any]]:
            rows = self._exec(
                conn,
                "SELECT id, transition, at_ms, reading_ms, value, late, actor, detail "
                "FROM alert_events WHERE alert_id = ? ORDER BY id",
                (alert_id,),
            ).fetchall()
            keys = ("id", "transition", "at_ms", "reading_ms", "value", "late", "actor", "detail")
            return [{**dict(zip(keys, r, strict=True)), "late": bool(r[5])} for r in rows]

        return self._run(run)

    def deliveries(self, alert_id: int) -> list[dict[str, Any]]:
        def run(conn: Any) -> list[dict[str, Any]]:
            rows = self._exec(
                conn,
                "SELECT d.sink, d.dedupe_key, d.state, d.attempts, d.done_ms, d.last_error "
                "FROM alert_deliveries d JOIN alert_events e ON e.id = d.event_id "
                "WHERE e.alert_id = ? ORDER BY d.id",
                (alert_id,),
            ).fetchall()
            keys = ("sink", "dedupe_key", "state", "attempts", "done_ms", "last_error")
            return [dict(zip(keys, r, strict=True)) for r in rows]

        return self._run(run)

    def next_delivery(self, sink: str) -> tuple[int, str, int, int] | None:
        """The oldest pending delivery of ``sink`` (id, payload, attempts, next_ms): strictly in order."""

        def run(conn: Any) -> tuple[int, str, int, int] | None:
            row = self._exec(
                conn,
                "SELECT id, payload, attempts, next_ms FROM alert_deliveries WHERE sink = ? "
                "AND state = 'pending' ORDER BY id LIMIT 1",
                (sink,),
            ).fetchone()
            return None if row is None else (int(row[0]), row[1], int(row[2]), int(row[3]))

        return self._run(run)

    def delivered(self, delivery_id: int, now_ms: int) -> None:
        self._run(
            lambda conn: self._exec(
                conn,
                "UPDATE alert_deliveries SET state = 'done', done_ms = ?, "
                "attempts = attempts + 1, last_error = NULL WHERE id = ?",
                (now_ms, delivery_id),
            ),
            write=True,
        )

    def failed(self, delivery_id: int, next_ms: int, error: str) -> None:
        self._run(
            lambda conn: self._exec(
                conn,
                "UPDATE alert_deliveries SET attempts = attempts + 1, "
                "next_ms = ?, last_error = ? WHERE id = ?",
                (next_ms, error[:500], delivery_id),
            ),
            write=True,
        )

    # ---- rules stored by an admin (central/alerts/stored.py), with their audit
    def stored_rules(self) -> list[Any]:
        from central.alerts.stored import StoredRule

        def run(conn: Any) -> list[Any]:
            rows = self._exec(
                conn, "SELECT name, doc, enabled, updated_ms, updated_by FROM alert_rules ORDER BY name"
            ).fetchall()
            return [StoredRule(r[0], json.loads(r[1]), bool(r[2]), int(r[3]), r[4]) for r in rows]

        return self._run(run)  # type: ignore[no-any-return]

    def save_rule(
        self, name: str, doc: str | None, enabled: bool, action: str, actor: str, now_ms: int
    ) -> None:
        """Store a rule (``doc``, its table as JSON) or switch the rule ``name`` on / off (``doc``
        None: a file rule never stored gets a row with a null doc), and audit it, in one transaction."""

        def run(conn: Any) -> None:
            self._exec(
                conn,
                "INSERT INTO alert_rules (name, doc, enabled, updated_ms, updated_by) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                + ("doc = excluded.doc, " if doc is not None else "")
                + "enabled = excluded.enabled, updated_ms = excluded.updated_ms, "
                "updated_by = excluded.updated_by",
                (name, doc if doc is not None else "null", int(enabled), now_ms, actor),
            )
            self._exec(
                conn,
                "INSERT INTO alert_rule_audit (name, action, doc, actor, at_ms) VALUES (?, ?, ?, ?, ?)",
                (name, action, doc, actor, now_ms),
            )

        self._run(run, write=True)

    def rule_audit(self, limit: int = 50) -> list[dict[str, Any]]:
        def run(conn: Any) -> list[dict[str, Any]]:
            rows = self._exec(
                conn,
                "SELECT id, name, action, doc, actor, at_ms FROM alert_rule_audit ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            keys = ("id", "name", "action", "doc", "actor", "at_ms")
            return [dict(zip(keys, r, strict=True)) for r in rows]

        return self._run(run)  # type: ignore[no-any-return]
