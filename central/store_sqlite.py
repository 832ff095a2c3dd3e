"""SQLite store: one embedded file in WAL mode (the default backend)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from central.store import StoreError
from central.store_sql import SqlStore

_INSERT = ("INSERT INTO readings (node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, boot_id, "
           "received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")


class SqliteStore(SqlStore):
    backend_errors = (sqlite3.OperationalError,)  # locked, disk full, I/O error

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise StoreError(f"--db sqlite:///{self.path}: directory {parent} does not exist")
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=30.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as e:
                raise StoreError(f"--db sqlite:///{self.path}: cannot open: {e}") from None
            self._conn = conn
        return self._conn

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _insert_readings(self, cur: Any, rows: list[tuple[Any, ...]]) -> int:
        conn = cur.connection
        before = conn.total_changes
        cur.executemany(_INSERT, rows)
        return conn.total_changes - before

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
