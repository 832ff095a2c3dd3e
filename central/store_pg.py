"""PostgreSQL store (psycopg 3): batches are COPYed into a temp table, then
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, so a re-sent batch stores nothing twice."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors

from central.readpool import postgresql_reader
from central.store import StoreError
from central.store_sql import SqlStore

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
WRITER_LOCK_CLASS = 1398033990  # the two-key advisory lock space of "this schema's writers"
_COLUMNS = "node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, boot_id, received_ms, unit"


def split_schema(url: str) -> tuple[str, str | None]:
    """Remove our ``schema=`` query parameter from a PostgreSQL URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = [(k, v) for k, v in query if k != "schema"]
    if schema is not None and not _SCHEMA_RE.match(schema):
        raise StoreError(f"--db: schema={schema!r}: expected a lowercase SQL identifier")
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class PgStore(SqlStore):
    backend_errors = (psycopg.OperationalError, psycopg.InterfaceError)  # server gone, connection broken
    # deadlock_detected (40P01), serialization_failure (40001): psycopg's classes of these two are
    # not subclasses of its TransactionRollback, so all three are named
    rollback_errors = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                       psycopg.errors.TransactionRollback)
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url, self.schema = split_schema(url)
        self._conn: psycopg.Connection[Any] | None = None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _begin(self, conn: Any) -> None:
        # Every write transaction holds this schema's shared "writer" lock until it ends, taken
        # before it writes (so before it has a transaction id). The forwarder (central/forward/db.py)
        # briefly takes it exclusively to learn a transaction id below which every writer of this
        # schema has finished. Shared holders never wait for each other.
        conn.execute(f"SELECT pg_advisory_xact_lock_shared({WRITER_LOCK_CLASS}, hashtext(current_schema()))")

    def _lock_node(self, cur: Any, node: str) -> None:
        # Ingests of one node (from several workers) take turns; different nodes never wait here.
        # The one-key advisory lock space is apart from the two-key one of WRITER_LOCK_CLASS.
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || %s, 0))",
                    (node,))

    def read_connector(self) -> Callable[[], Any]:
        return postgresql_reader(self.url, self.schema)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None
        if self._conn is None:
            try:
                conn = psycopg.connect(self.url, connect_timeout=10)
                if self.schema:  # created by the first migration (_lock_schema)
                    conn.execute(f'SET search_path TO "{self.schema}"')
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming_readings (node_id TEXT, "
                             "epoch BIGINT, seq BIGINT, channel TEXT, value DOUBLE PRECISION, flags BIGINT, "
                             "wall_ms BIGINT, boot_ms BIGINT, boot_id TEXT, received_ms BIGINT, unit TEXT) "
                             "ON COMMIT DELETE ROWS")
                conn.commit()
            except psycopg.Error as e:
                reason = " ".join(str(e).split())  # one line
                raise StoreError(f"--db {redact(self.url)}: cannot connect: {reason}") from None
            self._conn = conn
        return self._conn

    def create_schema(self) -> None:
        """Migrate under a session advisory lock per schema (one migrator at a time, across processes
        and hosts). The lock is taken before the migration's transaction begins, so that transaction
        sees the catalog as the previous migrator left it (an advisory lock taken inside a transaction
        does not refresh PostgreSQL's cached catalog: CREATE SCHEMA IF NOT EXISTS then fails)."""
        lock_name = f"streetnode-central migrate {self.schema or 'public'}"
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_name,))
                conn.commit()
            except self.backend_errors as e:
                self._failed(conn)
                raise StoreError(f"storage error: {' '.join(str(e).split())}") from None
            try:
                super().create_schema()
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_name,))
                    conn.commit()
                except psycopg.Error:  # a lost session has released its locks already
                    self._failed(conn)

    def _lock_schema(self, cur: Any) -> None:
        if self.schema:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    def _insert_readings(self, cur: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # readings is partitioned by wall time, so its unique key includes wall_ms: a resent seq with
        # another stamp is found by central/integrity.py's lookup under the node's lock, not here
        with cur.copy(f"COPY incoming_readings ({_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO readings ({_COLUMNS}) SELECT {_COLUMNS} FROM incoming_readings "
                    "ORDER BY seq ON CONFLICT DO NOTHING RETURNING seq")
        new_seqs = {seq for (seq,) in cur.fetchall()}  # exact even with a concurrent twin batch
        return [row for row in rows if row[2] in new_seqs]  # incoming_readings empties itself on commit

    def close(self) -> None:
        self._close_reads()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
