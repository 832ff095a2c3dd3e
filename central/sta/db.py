"""Read-only connections for the SensorThings API, apart from the store's writer.

SQLite (WAL) readers never wait for an upload's transaction, and a slow STA query never holds the
store's lock. Every statement has a deadline: SQLite's progress handler interrupts it, PostgreSQL's
``statement_timeout`` cancels it; either becomes a `TooExpensive` (400) naming the bound.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from central.sta.errors import TooExpensive, Unavailable
from central.sta.model import Dialect, PgDialect

DEFAULT_POOL_SIZE = 4
DEFAULT_REQUEST_TIMEOUT_S = 10.0


class ReadDb:
    """A small pool of read-only connections; ``fetch`` returns rows as dicts."""

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, *, pool_size: int = DEFAULT_POOL_SIZE,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self.dialect = dialect
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._monotonic = monotonic

    # ---- construction
    @classmethod
    def for_store(cls, store: Any, **kwargs: Any) -> ReadDb:
        """A pool on the same database as ``store`` (a `SqliteStore` or `PgStore`)."""
        if hasattr(store, "path"):
            return cls.sqlite(store.path, **kwargs)
        return cls.postgresql(store.url, store.schema, **kwargs)

    @classmethod
    def sqlite(cls, path: str, **kwargs: Any) -> ReadDb:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0, isolation_level=None)
            conn.execute("PRAGMA query_only = 1")
            return conn

        return cls(connect, Dialect(), **kwargs)

    @classmethod
    def postgresql(cls, url: str, schema: str | None, **kwargs: Any) -> ReadDb:
        import psycopg

        def connect() -> Any:
            conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
            if schema:
                conn.execute(f'SET search_path TO "{schema}"')
            conn.execute("SET default_transaction_read_only = on")
            return conn

        return cls(connect, PgDialect(), **kwargs)

    # ---- use
    def deadline(self, seconds: float = DEFAULT_REQUEST_TIMEOUT_S) -> float:
        return self._monotonic() + seconds

    def fetch(self, sql: str, params: Sequence[Any], deadline: float) -> list[dict[str, Any]]:
        remaining = deadline - self._monotonic()
        if remaining <= 0:
            raise _too_slow()
        if not self._slots.acquire(timeout=remaining):
            raise Unavailable("all SensorThings read connections are busy; retry shortly")
        try:
            conn = self._take()
            try:
                rows = self._execute(conn, sql, params, deadline)
            except BaseException:
                self._discard(conn)
                raise
            self._idle.put(conn)
            return rows
        finally:
            self._slots.release()

    def _take(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            return self._connect()
        except Exception as e:  # sqlite3.Error, psycopg.Error: the database is not there
            raise Unavailable(f"database unavailable: {' '.join(str(e).split())[:200]}") from None

    def _discard(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # already broken; dropping it is all that is left
            pass

    def _execute(self, conn: Any, sql: str, params: Sequence[Any], deadline: float) -> list[dict[str, Any]]:
        if isinstance(conn, sqlite3.Connection):
            return self._execute_sqlite(conn, sql, params, deadline)
        return self._execute_pg(conn, sql, params, deadline)

    def _execute_sqlite(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any],
                        deadline: float) -> list[dict[str, Any]]:
        monotonic = self._monotonic
        conn.set_progress_handler(lambda: 1 if monotonic() > deadline else 0, 20_000)
        try:
            cur = conn.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise _too_slow() from None
            raise Unavailable(f"database unavailable: {e}") from None
        finally:
            conn.set_progress_handler(None, 0)

    def _execute_pg(self, conn: Any, sql: str, params: Sequence[Any],
                    deadline: float) -> list[dict[str, Any]]:
        import psycopg

        timeout_ms = max(1, int((deadline - self._monotonic()) * 1000))
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {timeout_ms}")
                cur.execute(sql.replace("?", "%s"), list(params))
                names = [d.name for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except psycopg.errors.QueryCanceled:
            raise _too_slow() from None
        except psycopg.Error as e:
            raise Unavailable(f"database unavailable: {' '.join(str(e).split())[:200]}") from None

    def close(self) -> None:
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return


def _too_slow() -> TooExpensive:
    return TooExpensive(f"the request took longer than its {DEFAULT_REQUEST_TIMEOUT_S:g} s bound; narrow it "
                        "with $filter (e.g. on phenomenonTime), a smaller $top or fewer $expand")

