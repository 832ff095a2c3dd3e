"""SQL shared by the SQLite and PostgreSQL stores (written with ``?`` placeholders)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from central import migrations
from central.console import rollup
from central.store import (
    IngestResult,
    NodeExists,
    NodeInfo,
    Replay,
    Store,
    StoredReading,
    StoreError,
    UnknownNode,
)
from node.model import Gap, Incident
from node.protocol import IngestBatch

T = TypeVar("T")


class Tx:
    """One transaction's cursor for area modules (auth, console, alerts...): ``execute`` takes SQL
    with ``?`` placeholders on both backends; ``fetchall``/``fetchone``/``rowcount`` as in DB-API."""

    def __init__(self, store: SqlStore, cursor: Any) -> None:
        self._store, self.cursor = store, cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        self._store._exec(self.cursor, sql, params)
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.cursor.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)

# A node extends its newest pending gap at the end while more is evicted (node/buffer), so a gap
# whose ack was lost can come back longer with the same first_seq: keep one gap per start,
# extended to the longest range reported, never counting the same readings twice.
_GAP_UPSERT = ("ON CONFLICT (node_id, epoch, first_seq, reason) DO UPDATE SET last_seq = excluded.last_seq, "
               "count = excluded.count, last_wall_ms = excluded.last_wall_ms, "
               "received_ms = excluded.received_ms WHERE excluded.last_seq > gaps.last_seq")


class SqlStore(Store):
    """Shared implementation; subclasses provide the connection and the bulk reading insert."""

    # errors of the database driver that mean "the store is unusable right now" (become StoreError)
    backend_errors: tuple[type[BaseException], ...] = ()
    dialect = "sql"  # "sqlite" or "postgresql": what a migration step may need to know

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # ---- backend hooks
    def _sql(self, sql: str) -> str:
        return sql

    def _connection(self) -> Any:
        raise NotImplementedError

    def _insert_readings(self, cur: Any, rows: list[tuple[Any, ...]]) -> int:
        """Insert ``rows`` (columns as in `readings`), skipping existing keys; returns how many were new."""
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        """Start a write transaction."""

    # ---- helpers
    def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._sql(sql), params)
        return cur

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run(lambda cur: self._exec(cur, sql, params).fetchall(), write=False)

    def _write(self, fn: Any) -> Any:
        return self._run(fn, write=True)

    def _run(self, fn: Any, *, write: bool) -> Any:
        """``fn(cursor)`` in one transaction (a write one when ``write``); driver errors -> StoreError."""
        with self._lock:
            conn = self._connection()
            try:
                if write:
                    self._begin(conn)
                cur = conn.cursor()
                result = fn(cur)
                conn.commit()
                return result
            except self.backend_errors as e:
                self._failed(conn)
                raise StoreError(f"storage error: {' '.join(str(e).split())}") from None
            except BaseException:
                conn.rollback()
                raise

    def _failed(self, conn: Any) -> None:
        """Roll back after a driver error; a broken connection is reopened on next use."""
        try:
            conn.rollback()
        except Exception:  # the connection is gone; _connection() replaces it
            pass

    def transaction(self, fn: Callable[[Tx], T], *, write: bool = False) -> T:
        """``fn(tx)`` in one transaction (a write one when ``write``), committed when it returns and
        rolled back when it raises; driver errors become `StoreError`."""
        return self._run(lambda cur: fn(Tx(self, cur)), write=write)

    def _lock_schema(self, cur: Any) -> None:
        """Serialize concurrent migrations (the write transaction already does on SQLite)."""

    def create_schema(self) -> None:
        def run(cur: Any) -> None:
            self._lock_schema(cur)
            migrations.migrate(Tx(self, cur), self.dialect, int(time.time() * 1000))

        self._write(run)

    def schema_version(self) -> int:
        return self.transaction(migrations.current_version)

    # ---- nodes
    def add_node(self, node_id: str, key: bytes, now_ms: int) -> None:
        def run(cur: Any) -> None:
            self._exec(cur, "INSERT INTO nodes (node_id, key_hex, created_ms) VALUES (?, ?, ?) "
                       "ON CONFLICT (node_id) DO NOTHING", (node_id, key.hex(), now_ms))
            if cur.rowcount != 1:
                raise NodeExists(f"node {node_id!r} already exists (use 'node rotate' for a new key)")

        self._write(run)

    def set_key(self, node_id: str, key: bytes) -> None:
        def run(cur: Any) -> None:
            self._exec(cur, "UPDATE nodes SET key_hex = ? WHERE node_id = ?", (key.hex(), node_id))
            if cur.rowcount != 1:
                raise UnknownNode(f"unknown node {node_id!r}")

        self._write(run)

    def node_key(self, node_id: str) -> bytes | None:
        rows = self._query("SELECT key_hex FROM nodes WHERE node_id = ?", (node_id,))
        return bytes.fromhex(rows[0][0]) if rows else None

    def list_nodes(self, node_id: str | None = None) -> list[NodeInfo]:
        where, params = ("WHERE n.node_id = ? ", (node_id,)) if node_id is not None else ("", ())
        rows = self._query(
            "SELECT n.node_id, n.created_ms, n.last_seen_ms, n.health_json, "
            "(SELECT COUNT(*) FROM readings r WHERE r.node_id = n.node_id), "
            "(SELECT COUNT(*) FROM gaps g WHERE g.node_id = n.node_id), "
            "(SELECT COALESCE(SUM(g.count), 0) FROM gaps g WHERE g.node_id = n.node_id), "
            "(SELECT COUNT(*) FROM incidents i WHERE i.node_id = n.node_id) "
            f"FROM nodes n {where}ORDER BY n.node_id", params)
        return [NodeInfo(r[0], int(r[1]), None if r[2] is None else int(r[2]),
                         None if r[3] is None else json.loads(r[3]), int(r[4]), int(r[5]), int(r[6]),
                         int(r[7])) for r in rows]

    # ---- ingest
    def _accept(self, cur: Any, node_id: str, signature: str, expires_ms: int, now_ms: int) -> None:
        self._exec(cur, "DELETE FROM signatures WHERE expires_ms < ?", (now_ms,))
        self._exec(cur, "INSERT INTO signatures (node_id, signature, expires_ms) VALUES (?, ?, ?) "
                   "ON CONFLICT (node_id, signature) DO NOTHING", (node_id, signature, expires_ms))
        if cur.rowcount != 1:
            raise Replay(f"signature of node {node_id!r} was already accepted")

    def accept_signature(self, node_id: str, signature: str, *, expires_ms: int, now_ms: int) -> None:
        self._write(lambda cur: self._accept(cur, node_id, signature, expires_ms, now_ms))

    def ingest(self, batch: IngestBatch, *, signature: str, expires_ms: int, now_ms: int) -> IngestResult:
        node, epoch = batch.node_id, batch.epoch
        head, tail = (node, epoch), (now_ms,)
        rows = [head + row + tail for row in batch.rows()]

        def run(cur: Any) -> IngestResult:
            self._exec(cur, "SELECT 1 FROM nodes WHERE node_id = ?", (node,))
            if not cur.fetchall():
                raise UnknownNode(f"unknown node {node!r}")
            self._accept(cur, node, signature, expires_ms, now_ms)
            stored = self._insert_readings(cur, rows) if rows else 0
            if rows:  # the console's latest values and hourly rollup (central/console/rollup.py)
                rollup.update(Tx(self, cur), node, epoch, batch.rows(), now_ms)
            gaps = self._insert_many(cur, "INSERT INTO gaps (node_id, epoch, first_seq, last_seq, count, "
                                     "first_wall_ms, last_wall_ms, reason, received_ms) VALUES "
                                     "(?, ?, ?, ?, ?, ?, ?, ?, ?) " + _GAP_UPSERT,
                                     [(node, g.epoch, g.first_seq, g.last_seq, g.count, g.first_wall_ms,
                                       g.last_wall_ms, g.reason, now_ms) for g in batch.gaps])
            incidents = self._insert_many(cur, "INSERT INTO incidents (node_id, epoch, incident_id, wall_ms, "
                                          "kind, detail, count, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                                          "ON CONFLICT DO NOTHING",
                                          [(node, epoch, i.id, i.wall_ms, i.kind, i.detail, i.count, now_ms)
                                           for i in batch.incidents])
            for channel, unit in batch.units.items():
                self._exec(cur, "INSERT INTO channels (node_id, channel, unit) VALUES (?, ?, ?) "
                           "ON CONFLICT (node_id, channel) DO UPDATE SET unit = excluded.unit",
                           (node, channel, unit))
            self._exec(cur, "UPDATE nodes SET last_seen_ms = ?, health_json = ?, health_ms = ? "
                       "WHERE node_id = ?", (now_ms, json.dumps(batch.health), now_ms, node))
            return IngestResult(stored, len(rows) - stored, gaps, incidents)

        return self._write(run)

    def _insert_many(self, cur: Any, sql: str, rows: Iterable[tuple[Any, ...]]) -> int:
        n = 0
        for row in rows:  # few rows: one statement each gives an exact count on every backend
            self._exec(cur, sql, row)
            n += max(cur.rowcount, 0)
        return n

    # ---- reading back
    def readings(self, node_id: str, *, channel: str | None = None, since_ms: int | None = None,
                 until_ms: int | None = None, limit: int | None = None,
                 newest_first: bool = False) -> list[StoredReading]:
        sql = ("SELECT r.node_id, r.epoch, r.seq, r.channel, COALESCE(c.unit, ''), r.value, r.flags, "
               "r.wall_ms, r.boot_ms, r.boot_id, r.received_ms FROM readings r LEFT JOIN channels c "
               "ON c.node_id = r.node_id AND c.channel = r.channel WHERE r.node_id = ?")
        params: list[Any] = [node_id]
        if channel is not None:
            sql += " AND r.channel = ?"
            params.append(channel)
        if since_ms is not None:
            sql += " AND r.wall_ms >= ?"
            params.append(since_ms)
        if until_ms is not None:
            sql += " AND r.wall_ms < ?"
            params.append(until_ms)
        sql += (" ORDER BY r.wall_ms DESC, r.epoch DESC, r.seq DESC" if newest_first
                else " ORDER BY r.wall_ms, r.epoch, r.seq")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [StoredReading(r[0], int(r[1]), int(r[2]), r[3], r[4], None if r[5] is None else float(r[5]),
                              int(r[6]), int(r[7]), int(r[8]), r[9], int(r[10]))
                for r in self._query(sql, params)]

    def count_readings(self, node_id: str | None = None) -> int:
        if node_id is None:
            return int(self._query("SELECT COUNT(*) FROM readings")[0][0])
        return int(self._query("SELECT COUNT(*) FROM readings WHERE node_id = ?", (node_id,))[0][0])

    def seqs(self, node_id: str, epoch: int) -> list[int]:
        rows = self._query("SELECT seq FROM readings WHERE node_id = ? AND epoch = ? ORDER BY seq",
                           (node_id, epoch))
        return [int(r[0]) for r in rows]

    def gaps(self, node_id: str) -> list[Gap]:
        rows = self._query("SELECT epoch, first_seq, last_seq, count, first_wall_ms, last_wall_ms, reason "
                           "FROM gaps WHERE node_id = ? ORDER BY epoch, first_seq", (node_id,))
        return [Gap(int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], r[5], r[6]) for r in rows]

    def incidents(self, node_id: str) -> list[Incident]:
        rows = self._query("SELECT incident_id, wall_ms, kind, detail, count FROM incidents "
                           "WHERE node_id = ? ORDER BY epoch, incident_id", (node_id,))
        return [Incident(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows]
