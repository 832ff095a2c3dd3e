"""SQLite store: one embedded file in WAL mode (the default backend).

``synchronous=FULL``: a node deletes its only copy of a batch when we answer 200, so a commit must
be on disk before the answer; with WAL's ``NORMAL`` the last commits can roll back on power loss.
The file (and a directory we create for it) is private to the service: it holds the node keys.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from typing import Any

from central.readpool import sqlite_reader
from central.store import StoreError
from central.store_sql import SqlStore

log = logging.getLogger("streetnode.central")

_INSERT = ("INSERT INTO readings (node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, boot_id, "
           "received_ms, unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
_DB_MODE = 0o600
_DIR_MODE = 0o700


def prepare_path(path: str) -> None:
    """Create the database's directory (one level, 0700) and file (0600) if missing; tighten a file
    that group or others can read (a round-1 database was 0644) together with its -wal/-shm files."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        if not os.path.isdir(os.path.dirname(parent)):
            raise StoreError(f"--db sqlite:///{path}: directory {parent} does not exist")
        try:
            os.mkdir(parent, _DIR_MODE)
        except OSError as e:
            raise StoreError(f"--db sqlite:///{path}: cannot create directory {parent}: "
                             f"{e.strerror or e}") from None
    # Never open and close a file SQLite may already hold in this process: closing any descriptor of
    # a file drops every POSIX lock this process holds on it, so another process would take this
    # one's connections for gone and delete the WAL under them (a corrupt database; sqlite.org,
    # "How To Corrupt", 2.2). Hence O_EXCL: a descriptor only of a file this call creates.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _DB_MODE)
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreError(f"--db sqlite:///{path}: cannot create: {e.strerror or e}") from None
    else:
        os.close(fd)
    try:
        st = os.stat(path)
    except OSError as e:
        raise StoreError(f"--db sqlite:///{path}: cannot open: {e.strerror or e}") from None
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        for name in (path, path + "-wal", path + "-shm"):
            if os.path.exists(name):
                os.chmod(name, stat.S_IMODE(os.stat(name).st_mode) & ~0o077)
        log.warning("%s was readable by group or others (it holds the node keys): now mode 0600", path)


def _set_wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Switch a new file to WAL. The switch needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy handler, while another process opens the same new file (several
    workers starting together): retry within the connection's own busy timeout."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class SqliteStore(SqlStore):
    backend_errors = (sqlite3.OperationalError,)  # locked, disk full, I/O error
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            prepare_path(self.path)
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=30.0)
                _set_wal(conn)
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise StoreError(f"--db sqlite:///{self.path}: cannot open: {e}") from None
            self._conn = conn
        return self._conn

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def read_connector(self) -> Callable[[], sqlite3.Connection]:
        return sqlite_reader(self.path)  # WAL: a reader sees the last commit, never waits for a writer

    def _insert_readings(self, cur: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # one writer at a time (BEGIN IMMEDIATE): the rows central/integrity.py found new are new
        cur.executemany(_INSERT, rows)
        return rows

    def close(self) -> None:
        self._close_reads()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
