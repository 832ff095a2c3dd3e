"""The SQLite central store: durable commits before the 200, a private file for the node keys."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

from central.store import open_store
from tests.central import round1


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_commits_are_full_sync_in_wal(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        conn = store._connection()
        # 2 = FULL: the WAL is fsynced at every commit, so a 200 (the node then deletes its copy)
        # never rolls back on power loss, as NORMAL (1) allows
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_a_second_store_of_the_file_in_one_process_keeps_the_first_ones_locks(tmp_path):
    """Opening the file again in this process (the serving process's maintenance store) must not
    drop the POSIX locks of the first store's connection: else another process closing its own
    connection takes itself for the last one and deletes the WAL the first store still writes."""
    path = tmp_path / "c.db"
    first = open_store(f"sqlite:///{path}")
    second = None
    try:
        first.add_node("pole-1", bytes(32), 0)
        second = open_store(f"sqlite:///{path}")
        second.add_node("pole-2", bytes(32), 0)
        script = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                  "c.execute('SELECT count(*) FROM nodes').fetchall(); c.close()")
        other = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                               timeout=60)
        assert other.returncode == 0, other.stderr
        assert (tmp_path / "c.db-wal").exists(), "another process deleted the WAL of an open store"
        first.add_node("pole-3", bytes(32), 0)
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT count(*) FROM nodes").fetchone()[0] == 3
        finally:
            conn.close()
    finally:
        first.close()
        if second is not None:
            second.close()


def test_new_database_and_its_directory_are_private(tmp_path):
    old = os.umask(0o022)  # a permissive umask, as in an interactive shell
    try:
        store = open_store(f"sqlite:///{tmp_path / 'state' / 'c.db'}")
        store.add_node("pole-1", bytes(32), 0)  # writes the WAL and its index too
        store.close()
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700
    for name in ("c.db", "c.db-wal", "c.db-shm"):
        path = tmp_path / "state" / name
        if path.exists():
            assert mode(path) == 0o600, name


def test_round1_world_readable_database_is_tightened(tmp_path, caplog):
    path = tmp_path / "c.db"
    conn = sqlite3.connect(path)
    round1.populate(conn, "?")
    conn.close()
    os.chmod(path, 0o644)  # as round 1 created it
    store = open_store(f"sqlite:///{path}")
    store.close()
    assert mode(path) == 0o600
    assert "readable by group or others" in caplog.text


def test_missing_parent_of_the_directory_is_an_error(tmp_path):
    import pytest

    from central.store import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'a' / 'b' / 'c.db'}")
