"""SQL shared by the SQLite and PostgreSQL stores (written with ``?`` placeholders)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from central import integrity, migrations
from central.console import rollup
from central.readpool import ReadPool
from central.store import (
    BUSY,
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
from node.protocol import VOLATILE_EPOCH_MIN, IngestBatch

T = TypeVar("T")
log = logging.getLogger("streetnode.central")
ROLLBACK_RETRIES = 4
CHANNELS_PER_STATEMENT = 500


class Tx:
    """One transaction's cursor for area modules (auth, console, alerts...): ``execute`` takes SQL
    with ``?`` placeholders on both backends; ``fetchall``/``fetchone``/``rowcount`` as in DB-API."""

    def __init__(self, store: SqlStore, cursor: Any) -> None:
        self._store, self.cursor = store, cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        self._store._exec(self.cursor, sql, params)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Tx:
        """One statement for many parameter rows (psycopg pipelines them: no round trip per row)."""
        self.cursor.executemany(self._store._sql(sql), rows)
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.cursor.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)

class SqlStore(Store):
    """Shared implementation; subclasses provide the connection and the bulk reading insert."""

    # errors of the database driver that mean "the store is unusable right now" (become StoreError)
    backend_errors: tuple[type[BaseException], ...] = ()
    # errors that mean "the database rolled this transaction back to let another one go" (deadlock,
    # serialization failure): an ingest runs again, up to ROLLBACK_RETRIES times
    rollback_errors: tuple[type[BaseException], ...] = ()
    dialect = "sql"  # "sqlite" or "postgresql": what a migration step may need to know

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._reads: ReadPool | None = None  # opened on the first read (after the schema exists)
        self._reads_lock = threading.Lock()

    # ---- backend hooks
    def _sql(self, sql: str) -> str:
        return sql

    def _connection(self) -> Any:
        raise NotImplementedError

    def _insert_readings(self, cur: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (columns as in `readings`; one node and epoch), skipping existing keys;
        returns the rows that were new (the console's rollup adds exactly those)."""
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        """Start a write transaction."""

    def read_connector(self) -> Callable[[], Any]:
        """A function that opens a read-only connection to this store's database (central/readpool.py)."""
        raise NotImplementedError

    # ---- helpers
    def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._sql(sql), params)
        return cur

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run(lambda cur: self._exec(cur, sql, params).fetchall(), write=False)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement on a read connection: never waits for the writer (or its lock), bounded in
        time (`ReadTooSlow`) and in connections (`ReadBusy`); both are `StoreError`s."""
        if self._reads is None:
            with self._reads_lock:  # not the writer's lock: opening the pool never waits for a write
                if self._reads is None:
                    self._reads = ReadPool(self.read_connector())
        return self._reads.rows(sql, params)[1]

    def _close_reads(self) -> None:
        reads, self._reads = self._reads, None
        if reads is not None:
            reads.close()

    def _write(self, fn: Any, *, retry: bool = False) -> Any:
        """``fn(cursor)`` in a write transaction. With ``retry``, a transaction the database rolled
        back to break a deadlock or a serialization conflict is run again (``fn`` must only touch
        the database), at most `ROLLBACK_RETRIES` times, before it becomes a `StoreError`."""
        if not retry or not self.rollback_errors:
            return self._run(fn, write=True)
        for attempt in range(ROLLBACK_RETRIES + 1):
            try:
                return self._run(fn, write=True, rollback_is_error=attempt == ROLLBACK_RETRIES)
            except self.rollback_errors as e:
                log.warning("ingest rolled back by the database (%s); retry %d of %d", type(e).__name__,
                            attempt + 1, ROLLBACK_RETRIES)
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # apart from the other transaction
        raise AssertionError("unreachable")  # the last attempt raises StoreError itself

    def _run(self, fn: Any, *, write: bool, wait: bool = True, rollback_is_error: bool = True) -> Any:
        """``fn(cursor)`` in one transaction (a write one when ``write``); driver errors -> StoreError.
        With ``wait=False``, returns `BUSY` without running ``fn`` when another transaction holds
        this store's connection. With ``rollback_is_error=False`` a deadlock or serialization
        failure (`rollback_errors`) is raised as it is, for the caller to retry."""
        if not self._lock.acquire(blocking=wait):
            return BUSY
        try:
            return self._run_locked(fn, write=write, rollback_is_error=rollback_is_error)
        finally:
            self._lock.release()

    def _run_locked(self, fn: Any, *, write: bool, rollback_is_error: bool = True) -> Any:
        conn = self._connection()
        try:
            if write:
                self._begin(conn)
            cur = conn.cursor()
            result = fn(cur)
            conn.commit()
            return result
        except self.rollback_errors as e:
            self._failed(conn)
            if not rollback_is_error:
                raise
            raise StoreError(f"storage busy: {type(e).__name__} after {ROLLBACK_RETRIES} retries: "
                             f"{' '.join(str(e).split())}") from None
        except self.backend_errors as e:
            self._failed(conn)
            raise StoreError(f"storage error: {' '.join(str(e).split())}") from None
        except BaseException:
            conn.rollback()
            raise

    def _failed(self, conn: Any) -> None:
        """Roll back after a driver error; a connection that cannot even roll back is closed and
        forgotten, so the next use opens a new one.

        The driver's own "broken" flag is not enough: after the server ended the session
        (pg_terminate_backend, a restart) psycopg can be left mid-command, not flagged broken, and
        every later statement failed with "another command is already in progress" (503s until the
        process restarted; seen in CI as test_postgres_connection_lost_then_recovers)."""
        try:
            conn.rollback()
        except Exception:
            with contextlib.suppress(Exception):
                conn.close()
            if self._conn is conn:
                self._conn = None

    def transaction(self, fn: Callable[[Tx], T], *, write: bool = False, wait: bool = True) -> T:
        """``fn(tx)`` in one transaction (a write one when ``write``), committed when it returns and
        rolled back when it raises; driver errors become `StoreError`. With ``wait=False`` it returns
        `BUSY` at once, without running ``fn``, when another transaction is in progress (for writes
        that may be skipped, such as a token's last use)."""
        return self._run(lambda cur: fn(Tx(self, cur)), write=write, wait=wait)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (``?`` placeholders) on a read connection: never waits
        for a write transaction; bounded in time (`ReadTooSlow`) and connections (`ReadBusy`)."""
        return self._read(sql, params)

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

    def list_nodes(self, node_id: str | None = None, *, after: str | None = None,
                   limit: int | None = None) -> list[NodeInfo]:
        where, params = ("WHERE n.node_id = ? ", [node_id]) if node_id is not None else ("", [])
        if after is not None:
            where += ("AND " if where else "WHERE ") + "n.node_id > ? "
            params.append(after)
        sql = ("SELECT n.node_id, n.created_ms, n.last_seen_ms, n.health_json, COALESCE(s.readings, 0), "
               "COALESCE(s.gaps, 0), COALESCE(s.missing_readings, 0), COALESCE(s.incidents, 0), "
               "COALESCE(s.conflicts, 0), "
               "(SELECT COUNT(*) FROM node_identities i WHERE i.node_id = n.node_id) "
               f"FROM nodes n LEFT JOIN node_stats s ON s.node_id = n.node_id {where}ORDER BY n.node_id")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [NodeInfo(r[0], int(r[1]), None if r[2] is None else int(r[2]),
                         None if r[3] is None else json.loads(r[3]), int(r[4]), int(r[5]), int(r[6]),
                         int(r[7]), int(r[8]), int(r[9])) for r in self._read(sql, params)]

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

        def run(cur: Any) -> IngestResult:
            tx = Tx(self, cur)
            self._lock_node(cur, node)  # one ingest of a node at a time: what follows sees all of it
            self._exec(cur, "SELECT identity FROM nodes WHERE node_id = ?", (node,))
            known = cur.fetchall()
            if not known:
                raise UnknownNode(f"unknown node {node!r}")
            self._accept(cur, node, signature, expires_ms, now_ms)
            other_units = self._upsert_channels(cur, node, batch.units)
            head = (node, epoch)
            if other_units:
                rows = [head + row + (now_ms, other_units.get(row[1])) for row in batch.rows()]
            else:
                tail = (now_ms, None)
                rows = [head + row + tail for row in batch.rows()]
            found = integrity.sort_readings(tx, node, epoch, rows) if rows else integrity.Sorted()
            new_rows = self._insert_readings(cur, found.new_rows) if found.new_rows else []
            stored = len(new_rows)
            if new_rows:  # the console's latest values and hourly rollup (central/console/rollup.py)
                rollup.update(tx, self.dialect, new_rows)
            high_seq = integrity.note_epoch(tx, node, epoch, new_rows, now_ms)
            new_conflicts = integrity.record_conflicts(tx, node, epoch, found.conflicts, now_ms)
            gaps, new_gaps, missing = self._upsert_gaps(cur, node, batch.gaps, now_ms)
            incidents = self._insert_many(cur, "INSERT INTO incidents (node_id, epoch, incident_id, wall_ms, "
                                          "kind, detail, count, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                                          "ON CONFLICT DO NOTHING",
                                          [(node, epoch, i.id, i.wall_ms, i.kind, i.detail, i.count, now_ms)
                                           for i in sorted(batch.incidents, key=lambda i: i.id)])
            own_incidents = 0  # recorded by the central itself (central/integrity.py)
            if new_conflicts:
                detail = integrity.conflict_detail(epoch, found.conflicts)
                integrity.add_incident(tx, node, "conflict", detail, new_conflicts, now_ms)
                own_incidents += 1
            reasons = [g.reason for g in batch.gaps]
            seen = integrity.note_identity(tx, node, batch.health, known[0][0], reasons, now_ms)
            own_incidents += seen.incidents
            if stored or new_gaps or missing or incidents or own_incidents or new_conflicts:
                self._exec(cur, "INSERT INTO node_stats (node_id, readings, gaps, missing_readings, "
                           "incidents, conflicts) VALUES (?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (node_id) DO UPDATE SET "
                           "readings = node_stats.readings + excluded.readings, "
                           "gaps = node_stats.gaps + excluded.gaps, "
                           "missing_readings = node_stats.missing_readings + excluded.missing_readings, "
                           "incidents = node_stats.incidents + excluded.incidents, "
                           "conflicts = node_stats.conflicts + excluded.conflicts",
                           (node, stored, new_gaps, missing, incidents + own_incidents, new_conflicts))
            # max_epoch: the highest non-volatile epoch of its batches; identity: its last one
            epoch_sql = ("max_epoch = CASE WHEN ? < ? AND (max_epoch IS NULL OR ? > max_epoch) THEN ? "
                         "ELSE max_epoch END, identity = COALESCE(?, identity)")
            epoch_params = (epoch, VOLATILE_EPOCH_MIN, epoch, epoch, seen.identity)
            if batch.health:  # a batch without health (or with {}) says nothing about it: keep the last
                self._exec(cur, "UPDATE nodes SET last_seen_ms = ?, health_json = ?, health_ms = ?, "
                           f"{epoch_sql} WHERE node_id = ? RETURNING max_epoch",
                           (now_ms, json.dumps(batch.health), now_ms, *epoch_params, node))
            else:
                self._exec(cur, f"UPDATE nodes SET last_seen_ms = ?, {epoch_sql} WHERE node_id = ? "
                           "RETURNING max_epoch", (now_ms, *epoch_params, node))
            max_epoch = cur.fetchone()[0]
            # rows the insert skipped after all (only a writer that bypassed the node lock can cause it)
            raced = len(found.new_rows) - stored
            return IngestResult(stored, found.duplicates + raced, gaps, incidents,
                                conflicts=len(found.conflicts), conflict_seqs=found.conflict_seqs,
                                high_seq=high_seq, max_epoch=None if max_epoch is None else int(max_epoch),
                                identity_switched=seen.switched)

        return self._write(run, retry=True)

    def _lock_node(self, cur: Any, node: str) -> None:
        """Make concurrent ingests of one node wait for each other (PostgreSQL; SQLite has one writer)."""

    def _upsert_channels(self, cur: Any, node: str, units: dict[str, str]) -> dict[str, str]:
        """Record each channel's latest unit; returns {channel: unit} for the channels whose unit now
        differs from their ``base_unit``: their readings keep that unit in ``readings.unit``, so a
        unit change never relabels what was stored before (migration node_stats).

        One read of the batch's channels; a row is written only for a new channel or a changed unit
        (rare), in channel order: steady ingest locks no channel row, and two writers take rows in
        the same order (no deadlock)."""
        other: dict[str, str] = {}
        if not units:
            return other
        names = sorted(units)
        known: dict[str, tuple[str, str | None]] = {}
        for first in range(0, len(names), CHANNELS_PER_STATEMENT):
            chunk = names[first:first + CHANNELS_PER_STATEMENT]
            self._exec(cur, f"SELECT channel, unit, base_unit FROM channels WHERE node_id = ? AND channel IN "
                       f"({', '.join('?' * len(chunk))})", (node, *chunk))
            known.update((row[0], (row[1], row[2])) for row in cur.fetchall())
        for channel in names:
            unit = units[channel]
            if channel not in known:
                self._exec(cur, "INSERT INTO channels (node_id, channel, unit, base_unit) "
                           "VALUES (?, ?, ?, ?)", (node, channel, unit, unit))
                continue
            latest, base = known[channel]
            if latest != unit:
                self._exec(cur, "UPDATE channels SET unit = ? WHERE node_id = ? AND channel = ?",
                           (unit, node, channel))
            if base != unit:
                other[channel] = unit
        return other

    def _upsert_gaps(self, cur: Any, node: str, gaps: Sequence[Gap], now_ms: int) -> tuple[int, int, int]:
        """Store new gaps and extend known ones; returns (gaps stored or extended, new gaps, change in
        missing readings), the last two for node_stats.

        A node extends its newest pending gap at the end while more is evicted (node/buffer), so a gap
        whose ack was lost can come back longer with the same first_seq: one gap per start, extended
        to the longest range reported, never counting the same readings twice. A conflicting insert
        waits for the other writer; the row is then read locked (PostgreSQL), so the change in
        missing readings is counted from the count it replaces."""
        touched = new_gaps = missing = 0
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        for g in sorted(gaps, key=lambda g: (g.epoch, g.first_seq, g.reason)):  # a fixed order
            if integrity.is_hole(g.reason):  # the central counts what it lacks of the range
                lacking = integrity.missing_in(Tx(self, cur), node, g.epoch, g.first_seq, g.last_seq)
                g = dataclasses.replace(g, count=lacking)
            key = (node, g.epoch, g.first_seq, g.reason)
            self._exec(cur, "INSERT INTO gaps (node_id, epoch, first_seq, last_seq, count, first_wall_ms, "
                       "last_wall_ms, reason, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (node_id, epoch, first_seq, reason) DO NOTHING",
                       (node, g.epoch, g.first_seq, g.last_seq, g.count, g.first_wall_ms, g.last_wall_ms,
                        g.reason, now_ms))
            if cur.rowcount == 1:
                touched += 1
                new_gaps += 1
                missing += g.count
                continue
            self._exec(cur, "SELECT last_seq, count FROM gaps WHERE node_id = ? AND epoch = ? AND "
                       f"first_seq = ? AND reason = ?{lock}", key)
            last_seq, count = cur.fetchone()
            if g.last_seq <= last_seq:  # known, or a shorter report of it: keep the longest range
                continue
            self._exec(cur, "UPDATE gaps SET last_seq = ?, count = ?, last_wall_ms = ?, received_ms = ? "
                       "WHERE node_id = ? AND epoch = ? AND first_seq = ? AND reason = ?",
                       (g.last_seq, g.count, g.last_wall_ms, now_ms, *key))
            touched += 1
            missing += g.count - int(count)
        return touched, new_gaps, missing

    def _insert_many(self, cur: Any, sql: str, rows: Iterable[tuple[Any, ...]]) -> int:
        n = 0
        for row in rows:  # few rows: one statement each gives an exact count on every backend
            self._exec(cur, sql, row)
            n += max(cur.rowcount, 0)
        return n

    # ---- reading back (read connections: never behind the writer)
    def readings(self, node_id: str, *, channel: str | None = None, since_ms: int | None = None,
                 until_ms: int | None = None, limit: int | None = None,
                 after: tuple[int, int, int] | None = None,
                 newest_first: bool = False) -> list[StoredReading]:
        sql = ("SELECT r.node_id, r.epoch, r.seq, r.channel, COALESCE(r.unit, c.base_unit, c.unit, ''), "
               "r.value, r.flags, r.wall_ms, r.boot_ms, r.boot_id, r.received_ms FROM readings r "
               "LEFT JOIN channels c ON c.node_id = r.node_id AND c.channel = r.channel WHERE r.node_id = ?")
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
        if after is not None and not newest_first:  # strictly after this reading in the order
            wall_ms, epoch, seq = after
            sql += " AND r.wall_ms >= ? AND (r.wall_ms > ? OR r.epoch > ? OR (r.epoch = ? AND r.seq > ?))"
            params += [wall_ms, wall_ms, epoch, epoch, seq]
        elif after is not None:  # newest first: strictly before it
            wall_ms, epoch, seq = after
            sql += " AND r.wall_ms <= ? AND (r.wall_ms < ? OR r.epoch < ? OR (r.epoch = ? AND r.seq < ?))"
            params += [wall_ms, wall_ms, epoch, epoch, seq]
        sql += (" ORDER BY r.wall_ms DESC, r.epoch DESC, r.seq DESC" if newest_first
                else " ORDER BY r.wall_ms, r.epoch, r.seq")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [StoredReading(r[0], int(r[1]), int(r[2]), r[3], r[4], None if r[5] is None else float(r[5]),
                              int(r[6]), int(r[7]), int(r[8]), r[9], int(r[10]))
                for r in self._read(sql, params)]

    def count_readings(self, node_id: str | None = None) -> int:
        if node_id is None:
            return int(self._read("SELECT COUNT(*) FROM readings")[0][0])
        return int(self._read("SELECT COUNT(*) FROM readings WHERE node_id = ?", (node_id,))[0][0])

    def seqs(self, node_id: str, epoch: int) -> list[int]:
        rows = self._read("SELECT seq FROM readings WHERE node_id = ? AND epoch = ? ORDER BY seq",
                          (node_id, epoch))
        return [int(r[0]) for r in rows]

    def gaps(self, node_id: str) -> list[Gap]:
        rows = self._read("SELECT epoch, first_seq, last_seq, count, first_wall_ms, last_wall_ms, reason "
                          "FROM gaps WHERE node_id = ? ORDER BY epoch, first_seq", (node_id,))
        return [Gap(int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], r[5], r[6]) for r in rows]

    def incidents(self, node_id: str) -> list[Incident]:
        rows = self._read("SELECT incident_id, wall_ms, kind, detail, count FROM incidents "
                          "WHERE node_id = ? ORDER BY epoch, incident_id", (node_id,))
        return [Incident(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows]
