"""Read-only connections apart from the store's writer: reads never wait behind an upload.

SQLite (WAL) readers see the last commit without waiting for a write transaction; PostgreSQL
readers are a small pool of autocommit, read-only sessions. A pool holds at most ``pool_size``
connections; a read that finds every one busy until its deadline is refused (`ReadBusy`), never
queued without bound. Every statement has a deadline: SQLite's progress handler interrupts it,
PostgreSQL's ``statement_timeout`` cancels it (`ReadTooSlow`). The store's reads
(central/store_sql.py) and the SensorThings API (central/sta/db.py) each have their own pool.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from central.store import StoreError

DEFAULT_POOL_SIZE = 4
DEFAULT_READ_TIMEOUT_S = 10.0


class ReadBusy(StoreError):
    """Every read connection stayed busy until the read's deadline (the store is overloaded)."""


class ReadTooSlow(StoreError):
    """A read statement ran past its deadline and was cancelled (narrow the request)."""


def sqlite_reader(path: str) -> Callable[[], sqlite3.Connection]:
    """Connections that only read ``path`` (the store's file is already in WAL mode)."""

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0, isolation_level=None)
        conn.execute("PRAGMA query_only = 1")
        return conn

    return connect


def postgresql_reader(url: str, schema: str | None) -> Callable[[], Any]:
    """Autocommit, read-only sessions on ``url`` with ``schema`` first on the search path."""

    def connect() -> Any:
        import psycopg

        conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
        if schema:
            conn.execute(f'SET search_path TO "{schema}"')
        conn.execute("SET default_transaction_read_only = on")
        return conn

    return connect


class ReadPool:
    """A small pool of read-only connections; ``rows`` runs one statement (``?`` placeholders)."""

    def __init__(self, connect: Callable[[], Any], *, pool_size: int = DEFAULT_POOL_SIZE,
                 monotonic: Callable[[], float] = time.monotonic,
                 timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._monotonic = monotonic
        self.timeout_s = timeout_s

    @classmethod
    def for_store(cls, store: Any, **kwargs: Any) -> ReadPool:
        """A pool on the same database as ``store`` (its ``read_connector()``)."""
        return cls(lambda: store.read_connector()(), **kwargs)  # connects on first use

    # ---- errors (a subclass gives its area's own)
    def busy(self) -> Exception:
        return ReadBusy("every read connection is busy; retry shortly")

    def too_slow(self) -> Exception:
        return ReadTooSlow(f"the read took longer than its {self.timeout_s:g} s bound; narrow it "
                           "(a shorter time range, a smaller limit)")

    def unavailable(self, reason: str) -> Exception:
        return StoreError(f"database unavailable: {reason}")

    # ---- use
    def deadline(self, seconds: float | None = None) -> float:
        return self._monotonic() + (self.timeout_s if seconds is None else seconds)

    def rows(self, sql: str, params: Sequence[Any], deadline: float | None = None
             ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of one statement, within ``deadline`` (default: ``timeout_s`` from now)."""
        deadline = self.deadline() if deadline is None else deadline
        remaining = deadline - self._monotonic()
        if remaining <= 0:
            raise self.too_slow()
        if not self._slots.acquire(timeout=remaining):
            raise self.busy()
        try:
            conn = self._take()
            try:
                result = self._execute(conn, sql, params, deadline)
            except BaseException:
                self._discard(conn)
                raise
            self._idle.put(conn)
            return result
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
            raise self.unavailable(" ".join(str(e).split())[:200]) from None

    def _discard(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # already broken; dropping it is all that is left
            pass

    def _execute(self, conn: Any, sql: str, params: Sequence[Any],
                 deadline: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        if isinstance(conn, sqlite3.Connection):
            return self._execute_sqlite(conn, sql, params, deadline)
        return self._execute_pg(conn, sql, params, deadline)

    def _execute_sqlite(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any],
                        deadline: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        monotonic = self._monotonic
        conn.set_progress_handler(lambda: 1 if monotonic() > deadline else 0, 20_000)
        try:
            cur = conn.execute(sql, list(params))
            return [d[0] for d in cur.description], cur.fetchall()
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise self.too_slow() from None
            raise self.unavailable(str(e)) from None
        finally:
            conn.set_progress_handler(None, 0)

    def _execute_pg(self, conn: Any, sql: str, params: Sequence[Any],
                    deadline: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        import psycopg

        timeout_ms = max(1, int((deadline - self._monotonic()) * 1000))
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {timeout_ms}")
                cur.execute(sql.replace("?", "%s"), list(params))
                return [d.name for d in cur.description], cur.fetchall()
        except psycopg.errors.QueryCanceled:
            raise self.too_slow() from None
        except psycopg.Error as e:
            raise self.unavailable(" ".join(str(e).split())[:200]) from None

    def close(self) -> None:
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return
