"""The forwarder's database side: its tables, the lease, the cursor and the readings after it.

Order of forwarding = the order readings were stored, made exact on each backend:
- SQLite: the ``rowid`` of ``readings``. Writers are serialized, so a larger rowid is always
  committed later; a cursor on it never passes a reading that is not yet visible.
- PostgreSQL: concurrent transactions commit out of order, so a plain sequence could be passed by
  a cursor while an earlier number is still uncommitted. Each reading carries the id of the
  transaction that stored it (``ingest_tx xid8``); only readings of transactions older than every
  running one (``pg_snapshot_xmin``) are read, so none can still appear behind the cursor. When a
  transaction elsewhere on the server (another schema, database or tool) holds that horizon back,
  the forwarder takes this schema's writer lock exclusively for an instant (every write transaction
  of the store holds it shared, `PgStore._begin`): then no writer of this schema is running, and
  every reading with a transaction id below the next one to be assigned is committed.

Readings stored before migration 4 on PostgreSQL have no ``ingest_tx``; a new sink sends them
first, in key order, then continues by transaction. The tables come from migration 4.

A lease row per sink lets exactly one forwarder (of many ``serve`` processes) publish; the cursor is
advanced only in a transaction that still holds the lease (fencing), after every PUBACK arrived.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from central.forward.layouts import FwdReading

FEED_READINGS = "readings"
LEGACY = "legacy"  # PostgreSQL: readings stored before migration 4 (ingest_tx NULL), in key order
_COLUMNS = "node_id, epoch, seq, channel, value, flags, wall_ms"
_XMIN = "pg_snapshot_xmin(pg_current_snapshot())"


class ForwardDbError(Exception):
    """The database cannot be used right now (the forwarder retries)."""


def _reading(row: tuple[Any, ...]) -> FwdReading:
    value = row[4]
    if value is not None and not math.isfinite(value):
        value = None
    return FwdReading(row[0], int(row[1]), int(row[2]), row[3], None if value is None else float(value),
                      int(row[5]), int(row[6]))


class ForwardDb:
    """One connection of the forwarder's own (it never waits on the store's lock)."""

    def __init__(self, connect: Callable[[], Any], backend: str) -> None:
        self._connect = connect
        self.backend = backend
        self._conn: Any = None
        self._lock = threading.Lock()

    @classmethod
    def for_store(cls, store: Any) -> ForwardDb:
        if hasattr(store, "path"):
            path = store.path
            return cls(lambda: sqlite3.connect(path, timeout=30.0, isolation_level=None,
                                               check_same_thread=False), "sqlite")
        import psycopg

        url, schema = store.url, store.schema

        def connect() -> Any:
            conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
            if schema:
                conn.execute(f'SET search_path TO "{schema}"')
            return conn

        return cls(connect, "postgresql")

    # ---- plumbing
    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.backend == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    def _run(self, fn: Callable[[Any], Any], *, write: bool = False) -> Any:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                sql_begin = "BEGIN IMMEDIATE" if self.backend == "sqlite" else "BEGIN"
                if write:
                    conn.execute(sql_begin)
                try:
                    result = fn(conn)
                    if write:
                        conn.execute("COMMIT")
                    return result
                except BaseException:
                    if write:
                        conn.execute("ROLLBACK")
                    raise
            except self._errors() as e:
                self._drop()
                raise ForwardDbError(" ".join(str(e).split())[:300]) from None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken; a new one is opened on next use
                pass
            self._conn = None

    def _sql(self, sql: str) -> str:
        return sql if self.backend == "sqlite" else sql.replace("?", "%s")

    def _exec(self, conn: Any, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        return conn.execute(self._sql(sql), params)

    def close(self) -> None:
        with self._lock:
            self._drop()

    # ---- cursor, lease
    def initial_position(self, start: str) -> str:
        """The cursor of a new sink: before everything, or after what is stored now."""
        if start == "beginning":
            return json.dumps(0 if self.backend == "sqlite" else [LEGACY, "", 0, 0])
        if self.backend == "sqlite":
            top = self._run(lambda c: c.execute("SELECT COALESCE(MAX(rowid), 0) FROM readings").fetchone()[0])
            return json.dumps(int(top))
        row = self._run(lambda c: c.execute(
            "SELECT ingest_tx::text, node_id, epoch, seq FROM readings WHERE ingest_tx IS NOT NULL "
            "ORDER BY ingest_tx DESC, node_id DESC, epoch DESC, seq DESC LIMIT 1").fetchone())
        return json.dumps(["0", "", 0, 0] if row is None else [row[0], row[1], int(row[2]), int(row[3])])

    def load_cursor(self, sink: str, feed: str, start: str, now_ms: int) -> str:
        initial = self.initial_position(start)

        def run(conn: Any) -> str:
            self._exec(conn, "INSERT INTO forward_cursors (sink, feed, position, updated_ms) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (sink, feed) DO NOTHING",
                       (sink, feed, initial, now_ms))
            return self._exec(conn, "SELECT position FROM forward_cursors WHERE sink = ? AND feed = ?",
                              (sink, feed)).fetchone()[0]

        return self._run(run, write=True)

    def acquire_lease(self, sink: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew the sink's lease; False while another live holder has it."""
        def run(conn: Any) -> bool:
            self._exec(conn, "INSERT INTO forward_leases (sink, holder, expires_ms) VALUES (?, ?, ?) "
                       "ON CONFLICT (sink) DO UPDATE SET holder = excluded.holder, "
                       "expires_ms = excluded.expires_ms "
                       "WHERE forward_leases.holder = excluded.holder OR forward_leases.expires_ms < ?",
                       (sink, holder, now_ms + ttl_ms, now_ms))
            row = self._exec(conn, "SELECT holder FROM forward_leases WHERE sink = ?", (sink,)).fetchone()
            return row is not None and row[0] == holder

        return self._run(run, write=True)

    def lease_holder(self, sink: str) -> str | None:
        row = self._run(lambda c: self._exec(c, "SELECT holder FROM forward_leases WHERE sink = ?",
                                             (sink,)).fetchone())
        return None if row is None else row[0]

    def take_over(self, sink: str, dead: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Replace the lease of ``dead`` (a holder known to be gone) by ours."""
        def run(conn: Any) -> bool:
            cur = self._exec(conn, "UPDATE forward_leases SET holder = ?, expires_ms = ? "
                             "WHERE sink = ? AND holder = ?", (holder, now_ms + ttl_ms, sink, dead))
            return cur.rowcount == 1

        return self._run(run, write=True)

    def release_lease(self, sink: str, holder: str) -> None:
        self._run(lambda conn: self._exec(conn, "DELETE FROM forward_leases WHERE sink = ? AND holder = ?",
                                          (sink, holder)), write=True)

    def commit_cursor(self, sink: str, feed: str, position: str, holder: str, now_ms: int) -> bool:
        """Advance the cursor if ``holder`` still holds a live lease (else False: someone took over)."""
        def run(conn: Any) -> bool:
            cur = self._exec(conn, "UPDATE forward_cursors SET position = ?, updated_ms = ? "
                             "WHERE sink = ? AND feed = ? AND EXISTS (SELECT 1 FROM forward_leases l "
                             "WHERE l.sink = ? AND l.holder = ? AND l.expires_ms >= ?)",
                             (position, now_ms, sink, feed, sink, holder, now_ms))
            return cur.rowcount == 1

        return self._run(run, write=True)

    # ---- what to send
    def readings_after(self, position: str, limit: int) -> tuple[list[FwdReading], str]:
        """Up to ``limit`` readings stored after ``position``, in stored order, and the new position."""
        pos = json.loads(position)
        if self.backend == "sqlite":
            rows = self._run(lambda c: c.execute(
                f"SELECT rowid, {_COLUMNS} FROM readings WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (int(pos), limit)).fetchall())
            if not rows:
                return [], position
            return [_reading(r[1:]) for r in rows], json.dumps(int(rows[-1][0]))
        tx, node, epoch, seq = pos
        if tx == LEGACY:
            rows = self._run(lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM readings WHERE ingest_tx IS NULL "
                "AND (node_id, epoch, seq) > (%s, %s, %s) ORDER BY node_id, epoch, seq LIMIT %s",
                (node, epoch, seq, limit)).fetchall())
            if rows:
                last = rows[-1]
                return [_reading(r) for r in rows], json.dumps([LEGACY, last[0], int(last[1]), int(last[2])])
            tx, node, epoch, seq = "0", "", 0, 0  # the legacy readings are all sent
        rows = self._committed_after(_XMIN, (), tx, node, epoch, seq, limit)
        if not rows and self._held_back(tx):
            rows = self._committed_after("%s::xid8", (self._writer_horizon(),), tx, node, epoch, seq, limit)
        if not rows:
            return [], position
        last = rows[-1]
        return [_reading(r[1:]) for r in rows], json.dumps([last[0], last[1], int(last[2]), int(last[3])])

    def _committed_after(self, horizon: str, horizon_params: tuple[str, ...], tx: str, node: str, epoch: int,
                         seq: int, limit: int) -> list[tuple[Any, ...]]:
        return self._run(lambda c: c.execute(
            f"SELECT ingest_tx::text, {_COLUMNS} FROM readings WHERE ingest_tx < {horizon} AND "
            "(ingest_tx > %s::xid8 OR (ingest_tx = %s::xid8 AND (node_id, epoch, seq) > (%s, %s, %s))) "
            "ORDER BY ingest_tx, node_id, epoch, seq LIMIT %s",
            (*horizon_params, tx, tx, node, epoch, seq, limit)).fetchall())

    def _held_back(self, tx: str) -> bool:
        """Readings after the cursor wait behind a transaction still running somewhere on the server."""
        return bool(self._run(lambda c: c.execute(
            f"SELECT 1 FROM readings WHERE ingest_tx >= {_XMIN} AND ingest_tx > %s::xid8 LIMIT 1",
            (tx,)).fetchone()))

    def _writer_horizon(self) -> str:
        """A transaction id below which every writer of this schema has ended: taken with this schema's
        writer lock held exclusively for an instant (store_pg.PgStore._begin holds it shared), so a
        long transaction of another schema, database or tool no longer holds forwarding back."""
        from central.store_pg import WRITER_LOCK_CLASS

        def run(conn: Any) -> str:
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (WRITER_LOCK_CLASS,))
            return conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0]

        return self._run(run, write=True)

    def health(self, node_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not node_ids:
            return {}
        marks = ", ".join("?" * len(node_ids))
        sql = f"SELECT node_id, health_json FROM nodes WHERE node_id IN ({marks})"
        rows = self._run(lambda c: self._exec(c, sql, node_ids).fetchall())
        out = {}
        for node_id, text in rows:
            try:
                health = json.loads(text) if text else {}
            except ValueError:
                health = {}
            out[node_id] = health if isinstance(health, dict) else {}
        return out
