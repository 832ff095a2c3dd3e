"""Low-level SQLite plumbing of the buffer: schema, connections, error classes, quarantine."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from node.buffer.base import BufferStats
from node.errors import StorageError

SCHEMA_VERSION = 2  # 2: cycles.data holds a cycle's readings packed (node/buffer/packed.py); 1 upgrades
DEFAULT_PAGE_SIZE = 512  # each fsynced commit appends page+24 bytes to the WAL: see docs/buffer.md
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024  # full quick_check on open up to this size
# SQLite's page cache, in KiB (a negative cache_size). The default 2000 KiB fills as an outage's
# backlog grows and stays full (~2.5 MiB RSS with 512-byte pages); puts touch only the right edge
# of each table and claims/acks the left edge, so 256 KiB holds the working set (put and drain
# rates unchanged, docs/agent.md).
CACHE_KIB = 256

# Compact layout: one row per sampling cycle holds the time stamp and, in `data`, the cycle's
# readings packed (node/buffer/packed.py): one row per durable commit. A cycle row always holds
# a contiguous run of seqs [first_seq, first_seq + n - 1]; deleting part of it (an ack or an
# eviction ending inside a cycle) rewrites it as the remaining run(s) with the same stamp.
# Legacy rows (schema 1, `data` NULL) keep their readings in `readings`, one row per reading
# (seq, channel id, value, flags); their cycle is the one with the greatest first_seq <= seq.
# `value` has no type affinity: an integer count of the channel's resolution (2345 for 23.45 at
# 0.01) when exact, else a REAL; flags 0 take no bytes.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, res REAL NOT NULL);
CREATE TABLE IF NOT EXISTS boots(id INTEGER PRIMARY KEY, boot_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cycles(
    first_seq INTEGER PRIMARY KEY, n INTEGER NOT NULL, wall_ms INTEGER NOT NULL,
    boot_ms INTEGER NOT NULL, boot INTEGER NOT NULL, clk INTEGER NOT NULL, data BLOB);
CREATE TABLE IF NOT EXISTS readings(
    seq INTEGER PRIMARY KEY, ch INTEGER NOT NULL, value, flags INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gaps(
    id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, count INTEGER NOT NULL, first_wall_ms INTEGER,
    last_wall_ms INTEGER, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incidents(
    id INTEGER PRIMARY KEY AUTOINCREMENT, wall_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, count INTEGER);
"""



def upgrade(db: sqlite3.Connection, meta: dict[str, object]) -> dict[str, object]:
    """Bring a schema-1 file to the current schema inside the caller's write transaction.

    1 -> 2 adds ``cycles.data`` (no rewrite: SQLite's ADD COLUMN only edits the schema); the
    readings already written stay in ``readings`` and drain from there.
    """
    if meta.get("schema") == 1:
        db.execute("ALTER TABLE cycles ADD COLUMN data BLOB")
        db.execute("UPDATE meta SET v = 2 WHERE k = 'schema'")
        meta = {**meta, "schema": 2}
    return meta


def has_packed(db: sqlite3.Connection) -> bool:
    """True when ``cycles`` has the ``data`` column (schema 2); a read-only look at a schema-1 file
    must not name it."""
    return any(r[1] == "data" for r in db.execute("PRAGMA table_info(cycles)"))


def count_readings(db: sqlite3.Connection, exact: bool = True) -> int:
    """Readings in the file; ``exact=False`` sums the cycles' counts (off by partly deleted legacy
    cycles only, ~15x less to scan than the readings table of a big schema-1 file)."""
    if not exact:
        return int(db.execute("SELECT coalesce(sum(n), 0) FROM cycles").fetchone()[0])
    legacy = int(db.execute("SELECT count(*) FROM readings").fetchone()[0])
    if not has_packed(db):
        return legacy
    return legacy + int(db.execute("SELECT coalesce(sum(n), 0) FROM cycles WHERE data IS NOT NULL")
                        .fetchone()[0])


# primary result codes (extended codes carry them in the low byte)
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_DISK_CODES = {5, 6, 8, 10, 13, 14, 15}  # BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL
SQLITE_FULL = 13


def error_code(e: BaseException) -> int:
    code = getattr(e, "sqlite_errorcode", None)
    return -1 if code is None else code & 0xFF


def is_corrupt(e: BaseException) -> bool:
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    return error_code(e) in _CORRUPT_CODES or "malformed" in str(e) or "not a database" in str(e)


def is_disk_error(e: BaseException) -> bool:
    """The disk refuses: full, read-only, I/O error, cannot open, locked (retry later)."""
    if isinstance(e, sqlite3.DatabaseError):
        return not is_corrupt(e) and (error_code(e) in _DISK_CODES or error_code(e) == -1)
    return isinstance(e, OSError)


def connect(path: Path, *, page_size: int, autocheckpoint: int) -> sqlite3.Connection:
    """A read-write connection in WAL mode with synchronous=FULL (durable at COMMIT)."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        db.execute(f"PRAGMA page_size={int(page_size)}")  # only takes effect on a new file
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL (journal_mode={mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
        db.execute(f"PRAGMA journal_size_limit={int(autocheckpoint) * (page_size + 24) + 32}")
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    except BaseException:
        db.close()
        raise
    return db


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that never writes, for status/diag beside a running daemon."""
    uri = "file:" + str(Path(path).resolve()) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5.0)


def quick_check(db: sqlite3.Connection, path: Path) -> str:
    """"ok" or the first problem. Full ``quick_check`` for small files; cheap probes otherwise."""
    size = path.stat().st_size if path.exists() else 0
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    if size <= QUICK_CHECK_MAX_BYTES:
        rows = db.execute("PRAGMA quick_check").fetchall()
        return "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])
    # large file: walk both ends of every table (touches root, first and last leaves)
    for table, key in (("cycles", "first_seq"), ("readings", "seq"), ("gaps", "id"), ("incidents", "id")):
        db.execute(f"SELECT min({key}), max({key}) FROM {table}").fetchone()
    return "ok"


def file_size(path: Path) -> int:
    """Bytes of the database and its WAL.

    Called for every batch's health (`stats`), so it stats plain strings: a `Path` built here
    interns its parts, and each dies with it, so the interpreter's table of interned strings churns
    and, at each regrowth, is sized by what happens to be live then (480 KiB or 960 KiB, kept:
    the soak's +0.5 MiB steps, docs/buffer.md).
    """
    name = os.fspath(path)
    total = 0
    for p in (name, name + "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(p).st_size
    return total


def quarantine(path: Path, when: float, tag: str = "corrupt") -> Path:
    """Move the database (and its -wal/-shm) aside as ``<name>.<tag>-<UTC time>``; return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    base = path.with_name(f"{path.name}.{tag}-{stamp}")
    n = 1
    while base.exists():
        n += 1
        base = path.with_name(f"{path.name}.{tag}-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(base) + suffix))
    return base


def peek_count(path: Path) -> int | None:
    """How many readings a (possibly corrupt) database held, if that can still be read."""
    try:
        db = sqlite3.connect("file:" + str(path) + "?mode=ro", uri=True, timeout=1.0)
        try:
            return count_readings(db)
        finally:
            db.close()
    except (sqlite3.Error, OSError, TypeError):
        return None


def peek_meta(path: Path) -> dict[str, object]:
    """meta of a database that may be unusable for writing (read-only disk, corruption).

    ``seq_hw`` is raised to the highest sequence number found, so nothing is handed out twice.
    """
    if not path.exists():
        return {}
    for query in ("mode=ro", "mode=ro&immutable=1"):  # immutable: no -shm can be made (read-only fs)
        try:
            db = sqlite3.connect("file:" + str(path) + "?" + query, uri=True, timeout=1.0)
            try:
                meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
                top = db.execute("SELECT max(coalesce((SELECT max(seq) FROM readings), 0),"
                                 " coalesce((SELECT max(first_seq + n - 1) FROM cycles), 0))").fetchone()[0]
                meta["seq_hw"] = max(int(meta.get("seq_hw", 0) or 0), int(top or 0))  # type: ignore[call-overload]
                return meta
            finally:
                db.close()
        except (sqlite3.Error, OSError, ValueError):
            continue
    return {}


def read_epoch_file(path: Path) -> int:
    """The epoch on the file's first line (0: no file, or unreadable)."""
    try:
        return int(path.read_text().split("\n", 1)[0].strip() or 0)
    except (OSError, ValueError):
        return 0


PROVISIONED = "provisioned"  # second line of an epoch file `streetnode provision` wrote: no file existed


def epoch_file_provisioned(path: Path) -> bool:
    try:
        return path.read_text().split("\n")[1:2] == [PROVISIONED]
    except OSError:
        return False


def write_epoch_file(path: Path, epoch: int, *, provisioned: bool = False) -> None:
    """Record the newest epoch beside the database, so a lost database never reuses one.

    Durable when it returns: the file is fsynced, renamed into place and its directory fsynced (a
    rename is only durable once the directory is). Raises OSError: the caller reports it.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(f"{epoch}\n{PROVISIONED}\n" if provisioned else f"{epoch}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def inspect(path: Path, *, check: bool = False) -> BufferStats:
    """Stats of a buffer file through a read-only connection (safe beside a running daemon)."""
    if not path.exists():
        raise StorageError(f"buffer: {path} does not exist")
    try:
        db = connect_readonly(path)
        try:
            meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
            count = count_readings(db, exact=file_size(path) <= QUICK_CHECK_MAX_BYTES)
            last = db.execute("SELECT max(coalesce((SELECT max(seq) FROM readings), 0),"
                              " coalesce((SELECT max(first_seq + n - 1) FROM cycles), 0))").fetchone()[0]
            oldest, newest, gaps, incidents = ends_and_pending(db)
            integrity = None
            if check:
                rows = db.execute("PRAGMA integrity_check").fetchall()
                integrity = "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"buffer: cannot read {path}: {e}") from e
    return BufferStats(str(meta.get("node_id", "")), int(meta.get("epoch", 0)), int(count),
                       file_size(path), oldest, newest,
                       max(int(last), int(meta.get("seq_hw", 0) or 0)), 0, gaps, incidents, 0, 0,
                       integrity, str(meta.get("buffer_id") or "") or None)


def ends_and_pending(db: sqlite3.Connection) -> tuple[int | None, int | None, int, int]:
    oldest = db.execute("SELECT wall_ms FROM cycles ORDER BY first_seq LIMIT 1").fetchone()
    newest = db.execute("SELECT wall_ms FROM cycles ORDER BY first_seq DESC LIMIT 1").fetchone()
    gaps = db.execute("SELECT count(*) FROM gaps").fetchone()[0]
    incidents = db.execute("SELECT count(*) FROM incidents").fetchone()[0]
    return (oldest[0] if oldest else None, newest[0] if newest else None, int(gaps), int(incidents))
