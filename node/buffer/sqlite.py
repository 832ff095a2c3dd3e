"""The SD-card buffer: SQLite in WAL mode, durable when ``put`` returns, bounded, self-healing.

I/O starts on first use (or an explicit ``open()``); the constructor only stores.
One connection guarded by one lock serves the sampler and uploader threads;
claims live in memory, so a crash releases them by construction.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from node.buffer import packed, queries, store
from node.buffer.base import (
    CLK_CORRECTED,
    CLK_UNSYNCED,
    MAX_RIDE_ALONG,
    BufferStats,
    Claim,
    PutResult,
    _scale,
    clock_state,
    encode_value,
    free_window,
)
from node.buffer.collision import (
    MAX_FILE_EPOCH,
    Receipt,
    Segments,
    Settled,
    as_int,
    collision_detail,
    new_buffer_id,
    next_epoch,
    unacked_gaps,
)
from node.buffer.overflow import VOLATILE_EPOCH_BASE, Overflow, Pending
from node.errors import StorageError
from node.model import Batch, Gap, Incident, Sample, Stamp, unit_of
from node.protocol import MAX_DETAIL
from node.wire_repair import MAX_KIND, clean_text

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from node.config import Config

FILE_NAME = "buffer.db"
RETRY_S = 5.0  # retry a refusing disk at most this often
AGE_CHECK_S = 60.0
EVICT_CHUNK = 5000  # readings evicted per step, so put() stays short
SIZE_CHECK_EVERY = 16  # puts between two size checks while far from the cap
# a drained backlog leaves its pages free inside the file: compacted (VACUUM) once free pages are
# this many bytes and three times the pages in use, so the rewrite is of a small remainder (#22)
COMPACT_MIN_FREE = 64 * 1024


class SqliteBuffer:
    def __init__(self, path: str | Path, node_id: str, *, max_size: int = 1 << 30,
                 max_age: float | None = None, overflow_readings: int = 20000,
                 clock: Callable[[], float] = time.time, timer: Callable[[], float] = time.monotonic,
                 page_size: int = store.DEFAULT_PAGE_SIZE, known: Mapping[str, Any] | None = None,
                 made_on: Mapping[str, str | None] | None = None) -> None:
        self.path = Path(path)
        self.node_id = node_id
        self.epoch = 0
        self.max_size = int(max_size)
        self.max_age = max_age
        self.overflow_limit = int(overflow_readings)
        self._clock = clock  # wall time: stamps of incidents, the age cutoff
        self._timer = timer  # never steps: when to retry a refusing disk, when to check ages
        self._page_size = page_size
        self._autockpt = max(16, min(1000, self.max_size // page_size // 64))
        wal_budget = (self._autockpt + 64) * (page_size + 24)
        self._data_cap = max(self.max_size - wal_budget - 16 * page_size, 8 * page_size)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._opened = False
        self._channels: dict[str, int] = {}
        self._channel_info: dict[int, tuple[str, float]] = {}  # id -> (name, resolution)
        self._codes: dict[str, tuple[int, int, float]] = {}  # name -> (id, scale, res): packed.py
        self._boots: dict[str, int] = {}
        self._boot_names: dict[int, str] = {}
        self._claims: dict[int, Claim] = {}
        # acknowledged by the central, not yet deleted (the disk refused): never sent again, never
        # evicted as a gap, deleted when the disk takes writes again
        self._acked: dict[int, Claim] = {}
        self._next_batch = 1
        self._next_seq = 1
        self._count = 0
        self._dropped = 0
        self._integrity: str | None = None
        self._held = Overflow(self.overflow_limit)
        self._pending_corrupt: tuple[str, int | None] | None = None  # incident for the new file
        self._retry_at = 0.0
        self._age_at = 0.0
        self._disk_error: str | None = None
        self._since_check = SIZE_CHECK_EVERY
        self._epoch_saved = 0  # the epoch last written to the epoch file (negative: failed to)
        self._near_cap = False
        # issue #20: which epoch each seq of the file belongs to, the file's random id, what the
        # agent's state file last said about this buffer (to tell a lost or rolled-back file), the
        # machine that makes a new file (kept in meta: a copied card shows), what rolled back
        self._segments = Segments([(0, 0)])
        self.buffer_id: str | None = None
        self._known = dict(known) if isinstance(known, Mapping) else None
        self.made_on: dict[str, str] = {}  # the machine that made the file (meta), as identity keys
        self._made_on = {k: v for k, v in (made_on or {}).items() if v}
        self._created_over: int | None = None  # a new file was made: the epoch file's value then
        self.rolled_back: str | None = None  # evidence of a rollback found at open (one line)
        self.lost: str | None = None  # the file of an earlier epoch was missing or unusable (one line)
        self._acked_seq = 0  # every seq up to it left the file (as of the last look)

    @classmethod
    def from_config(cls, config: Config, *, clock: Callable[[], float] = time.time,
                    known: Mapping[str, Any] | None = None,
                    made_on: Mapping[str, str | None] | None = None) -> SqliteBuffer:
        """The buffer the configuration describes: ``<node.state_dir>/buffer.db``."""
        b = config.buffer
        return cls(Path(config.node["state_dir"]) / FILE_NAME, config.node["id"], max_size=b["max_size"],
                   max_age=b["max_age"], overflow_readings=b["overflow_readings"], clock=clock,
                   known=known, made_on=made_on)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> SqliteBuffer:
        self.open()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> bool:
        """Open (or create) the store now; True when readings go to disk.

        A corrupt or foreign file is moved aside and a new epoch starts. A full or read-only
        disk, or a state directory that cannot be made, never raises: the buffer holds cycles
        in its bounded memory overflow and retries the disk every few seconds.
        """
        with self._lock:
            return self._ensure_open()

    @property
    def held_readings(self) -> int:
        """Readings only memory holds (the disk refused them); after `close` they are lost."""
        return self._held.readings

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error, OSError):
                    self._flush_overflow(force=True)
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
            self._db = None
            self._opened = False
            self._claims.clear()
            self._acked.clear()

    def _ensure_open(self) -> bool:
        if self._db is not None:
            return True
        if self._opened and self._timer() < self._retry_at:
            return False
        try:
            self._open_db()
            self._disk_error = None
            return True
        except (sqlite3.Error, OSError) as e:
            if not store.is_disk_error(e) and not store.is_corrupt(e):
                raise
            self._note_disk_error(e)
            if not self._opened:  # first attempt: learn epoch and seq so puts can number cycles
                meta = store.peek_meta(self.path)
                self.epoch = int(meta.get("epoch", 0) or 0)  # type: ignore[call-overload]
                hw = int(meta.get("seq_hw", 0) or 0)  # type: ignore[call-overload]
                self._next_seq = max(self._next_seq, hw + 1)
            self._opened = True
            return False

    def _open_db(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"buffer: cannot create state directory {self.path.parent}: {e}") from e
        problem = self._try_open()
        if problem is not None:
            old_epoch = self._quarantine(*problem)
            db = store.connect(self.path, page_size=self._page_size, autocheckpoint=self._autockpt)
            meta = self._init_schema(db, min_epoch=old_epoch + 1)
            self._integrity = "ok"
            self._db = db
            self._load_state(meta)
        self._opened = True
        if self._pending_corrupt is not None:
            what, count = self._pending_corrupt
            self._pending_corrupt = None
            self._insert_incident("buffer_corrupt", what, count)
        known = self._known  # what the agent's state file said: used at the first open only
        self._known = None
        created_over = self._created_over
        self._created_over = None
        if created_over is not None:
            if problem is None or problem[1] == "corrupt":  # another node's file is no loss of ours
                self._record_lost(created_over, known, "is missing" if problem is None else "was unusable")
        else:
            self._check_rollback(known or {})

    # ------------------------------------------------------------ lost and rolled-back files (#20)
    def _record_lost(self, prior_epoch: int, known: dict[str, Any] | None, how: str) -> None:
        """A new file where the epoch file or the agent's state says one existed: a ``buffer_lost``
        incident, and a ``buffer_lost`` gap over what the state knew of the old file's seqs."""
        known_epoch = as_int(known.get("epoch")) if known else None
        if prior_epoch <= 0 and not known_epoch:
            return  # a first start (or a card `streetnode provision` prepared): nothing existed
        lost_epoch = prior_epoch or known_epoch or 0
        gaps: list[Gap] = []
        if known is not None and known_epoch == lost_epoch:
            gaps = unacked_gaps(known, "buffer_lost")
        if not gaps and how != "is missing":
            return  # the buffer_corrupt incident already tells it; no range known to add
        if gaps:
            ranges = ", ".join(f"epoch {g.epoch} seq {g.first_seq}..{g.last_seq}" for g in gaps)
            detail = (f"{self.path.name} of epoch {lost_epoch} {how}; what it held and the central did not "
                      f"acknowledge is lost ({ranges}); new epoch {self.epoch}")
        else:
            detail = (f"{self.path.name} of epoch {lost_epoch} {how}; which of its seqs the central did not "
                      f"acknowledge is unknown (no state file of it); new epoch {self.epoch}")
        log.error("buffer: %s", detail)
        self.lost = detail
        self._add_gaps(gaps)
        self._insert_incident("buffer_lost", clean_text(detail, MAX_DETAIL),
                              sum(g.count for g in gaps) if gaps else None)

    def _check_rollback(self, known: dict[str, Any]) -> None:
        """The file holds less than the agent's state file (or the epoch file) says it held: the card
        lost writes. Start a new epoch at once (what the file numbers next would collide with what the
        central holds) and record the rolled-back range."""
        if known.get("buffer_id") and self.buffer_id and known.get("buffer_id") != self.buffer_id:
            return  # another file than the one the state describes (replaced): nothing to compare
        known_epoch = as_int(known.get("epoch")) or 0
        known_top = as_int(known.get("top")) or 0
        on_file = store.read_epoch_file(self._epoch_file)
        top = self._next_seq - 1
        within = known_epoch == self.epoch and known_top > top
        across = known_epoch > self.epoch or on_file > self.epoch  # an epoch the file never saw
        if not within and not across:
            return
        gaps: list[Gap] = []
        if known_epoch == self.epoch and known_top > top:
            gaps = [Gap(self.epoch, top + 1, known_top, known_top - top, None, None, "buffer_rollback")]
        elif known_epoch > self.epoch:
            gaps = unacked_gaps(known, "buffer_rollback")
        old_epoch = self.epoch
        old_segments = Segments(self._segments.pairs)
        first_new = self._next_seq
        try:
            db = self._tx()
            new_epoch = self._start_epoch(db, next_epoch(max(self.epoch, known_epoch), Receipt(), on_file))
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self.epoch = old_epoch  # the file keeps its epoch; the epoch file ahead of it says why
            self._segments = old_segments
            self._failed(e)
            return
        held_top = max(known_top if known_epoch == old_epoch else 0, top)
        self.rolled_back = (f"{self.path.name} rolled back: epoch {old_epoch} holds seqs up to {top}, "
                            f"the state file said epoch {known_epoch} up to {known_top}"
                            f"{f' and the epoch file epoch {on_file}' if on_file > old_epoch else ''}; "
                            f"new epoch {new_epoch} from seq {first_new}")
        log.error("buffer: %s", self.rolled_back)
        self._add_gaps(gaps)
        self._insert_incident("buffer_rollback", clean_text(self.rolled_back, MAX_DETAIL),
                              max(0, held_top - top) or None)

    def _add_gaps(self, gaps: Sequence[Gap]) -> None:
        if not gaps:
            return
        if self._db is not None:
            try:
                db = self._tx()
                queries.add_gaps(db, gaps, self._claimed_gap_ids())
                db.execute("COMMIT")
                return
            except (sqlite3.Error, OSError) as e:
                self._failed(e)
        for g in gaps:  # the disk refuses: memory keeps them until it takes writes
            self._held.add_gap(g, self._claimed_gap_ids())

    def _start_epoch(self, db: sqlite3.Connection, epoch: int) -> int:
        """Inside the caller's transaction: seqs from ``_next_seq`` on belong to the new ``epoch``.
        The epoch file is written first (durable), so it is never behind the database."""
        epoch = min(epoch, MAX_FILE_EPOCH)
        self._save_epoch(epoch)
        segments = Segments(self._segments.pairs)
        segments.start(self._next_seq, epoch)
        segments.prune(queries.first_present(db, 0), [c.lo for c in self._busy() if c.count and not c.held])
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       [("epoch", epoch), ("segments", segments.dump()),
                        ("seq_hw", max(self._next_seq - 1, 0))])
        self._segments = segments
        self.epoch = epoch
        return epoch

    def _try_open(self) -> tuple[str, str] | None:
        """Use the existing file; (reason, tag) when it is unusable and must be set aside."""
        try:
            db = store.connect(self.path, page_size=self._page_size, autocheckpoint=self._autockpt)
        except sqlite3.DatabaseError as e:
            if store.is_disk_error(e):
                raise
            return str(e), "corrupt"
        try:
            self._integrity = store.quick_check(db, self.path)
            if self._integrity != "ok":
                problem: tuple[str, str] | None = (self._integrity, "corrupt")
            else:
                meta = self._init_schema(db)
                problem = None
                if meta.get("node_id") != self.node_id:
                    problem = (f"belongs to node {meta.get('node_id')!r}, not {self.node_id!r}", "other-node")
                elif meta.get("schema") != store.SCHEMA_VERSION:
                    problem = (f"schema version {meta.get('schema')!r}, expected {store.SCHEMA_VERSION}",
                               "incompatible")
                else:
                    self._db = db
                    self._load_state(meta)
                    return None
        except sqlite3.DatabaseError as e:
            if store.is_disk_error(e):
                db.close()
                raise
            problem = (str(e), "corrupt")
        self._db = None
        db.close()
        return problem

    def _quarantine(self, reason: str, tag: str = "corrupt") -> int:
        count = store.peek_count(self.path)
        epoch = int(store.peek_meta(self.path).get("epoch", 0) or 0)  # type: ignore[call-overload]
        moved = store.quarantine(self.path, self._clock(), tag)
        self._pending_corrupt = (f"{self.path.name} (epoch {epoch or '?'}) unusable: {reason}; "
                                 f"moved to {moved.name}", count)
        return max(epoch, self.epoch)

    def _init_schema(self, db: sqlite3.Connection, min_epoch: int = 1) -> dict[str, object]:
        db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in store.SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            meta = store.upgrade(db, dict(db.execute("SELECT k, v FROM meta").fetchall()))
            if "epoch" not in meta:
                prior = store.read_epoch_file(self._epoch_file)
                fresh = store.epoch_file_provisioned(self._epoch_file)  # a new card's first epoch
                epoch = max(min_epoch, prior + 1)
                meta = {"node_id": self.node_id, "epoch": epoch, "seq_hw": 0,
                        "schema": store.SCHEMA_VERSION, "created_ms": int(self._clock() * 1000),
                        "buffer_id": new_buffer_id(),
                        **{f"made_on_{k}": v for k, v in self._made_on.items()}}
                db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
                self._save_epoch(epoch)  # before the commit: the file is never behind a database
                db.execute("COMMIT")
                self._created_over = 0 if fresh else prior
            elif "buffer_id" not in meta:  # a file from before #20: it gets its id, this machine owns it
                extra = {"buffer_id": new_buffer_id(),
                         **{f"made_on_{k}": v for k, v in self._made_on.items()}}
                meta = {**meta, **extra}
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(extra.items()))
                db.execute("COMMIT")
            else:
                db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return meta

    @property
    def _epoch_file(self) -> Path:
        return Path(str(self.path) + ".epoch")

    def _save_epoch(self, epoch: int) -> None:
        """Write the epoch file; a failure is logged and recorded for the central, never silent."""
        try:
            store.write_epoch_file(self._epoch_file, epoch)
            self._epoch_saved = epoch
        except OSError as e:
            if self._epoch_saved != -epoch:  # once per epoch
                self._epoch_saved = -epoch
                log.error("buffer: epoch file %s not written: %s; a lost database could reuse epoch %d",
                          self._epoch_file, e, epoch)
                self._hold_incident("epoch_file", f"{self._epoch_file.name} not written ({e}); "
                                    f"if {self.path.name} is lost, epoch {epoch} may be used again", None)

    def _load_state(self, meta: dict[str, object]) -> None:
        db = self._db
        assert db is not None
        new_epoch = int(meta["epoch"])  # type: ignore[call-overload]
        if self._epoch_saved != new_epoch and store.read_epoch_file(self._epoch_file) < new_epoch:
            self._save_epoch(new_epoch)  # behind the database (an earlier write failed): repair it
        if new_epoch != self.epoch:
            self._next_seq = 1
        if new_epoch != self.epoch:  # claims and acks of another epoch name other readings
            self._claims.clear()
            self._acked.clear()
        self.epoch = new_epoch
        self.buffer_id = str(meta.get("buffer_id") or "") or None
        self.made_on = {k[8:]: str(v) for k, v in meta.items() if k.startswith("made_on_") and v}
        self._segments = Segments.load(meta.get("segments"), new_epoch)
        self._segments.prune(queries.first_present(db, 0))
        self._acked_seq = 0  # set below once the next seq is known
        self._channel_info = {i: (n, r) for i, n, r in db.execute("SELECT id, name, res FROM channels")}
        self._channels = {n: i for i, (n, _) in self._channel_info.items()}
        self._codes = {n: (i, _scale(r), r) for i, (n, r) in self._channel_info.items()}
        self._boots = {b: i for i, b in db.execute("SELECT id, boot_id FROM boots")}
        self._boot_names = {i: b for b, i in self._boots.items()}
        top = db.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM readings), 0),"
            " coalesce((SELECT max(first_seq + n - 1) FROM cycles), 0),"
            " coalesce((SELECT max(last_seq) FROM gaps WHERE epoch = ?), 0))", (self.epoch,)).fetchone()[0]
        hw = int(meta.get("seq_hw", 0) or 0)  # type: ignore[call-overload]
        self._next_seq = max(self._next_seq, int(top) + 1, hw + 1)
        # a big file: the cycles table is ~15x smaller to scan; off by partly acked legacy cycles only
        small = store.file_size(self.path) <= store.QUICK_CHECK_MAX_BYTES
        self._count = store.count_readings(db, exact=small)
        self._acked_seq = self._first_unacked(db) - 1

    def _note_disk_error(self, e: BaseException) -> None:
        first = self._disk_error is None
        self._disk_error = "disk_full" if store.error_code(e) == store.SQLITE_FULL or \
            getattr(e, "errno", None) == 28 else "disk_error"
        self._retry_at = self._timer() + RETRY_S
        if first:
            self._hold_incident(self._disk_error, f"buffer {self.path.name}: {e}", None)

    def _corrupt_at_runtime(self, e: BaseException) -> None:
        with contextlib.suppress(sqlite3.Error):
            assert self._db is not None
            self._db.close()
        self._db = None
        self._integrity = str(e)
        lost_epoch = self.epoch
        known = {"epoch": self.epoch, "top": self._next_seq - 1, "acked": self._acked_seq,
                 "segments": [list(p) for p in self._segments.pairs]}
        old = self._quarantine(str(e))
        self.epoch = max(self.epoch, old)
        try:
            db = store.connect(self.path, page_size=self._page_size, autocheckpoint=self._autockpt)
            meta = self._init_schema(db, min_epoch=self.epoch + 1)
            self._db = db
            self._integrity = "ok"
            self._load_state(meta)
            what, count = self._pending_corrupt or ("", None)
            self._pending_corrupt = None
            self._insert_incident("buffer_corrupt", what, count)
            self._created_over = None
            self._record_lost(lost_epoch, known, "was found corrupt")
        except (sqlite3.Error, OSError) as e2:
            self._db = None
            self._note_disk_error(e2)

    def _tx(self) -> sqlite3.Connection:
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def _rollback(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")

    def _failed(self, e: BaseException) -> None:
        """Handle an error of a disk operation: corrupt → quarantine; refusing disk → overflow."""
        self._rollback()
        if store.is_corrupt(e):
            self._corrupt_at_runtime(e)
        elif store.is_disk_error(e):
            self._note_disk_error(e)
        else:
            raise e

    # ------------------------------------------------------------ writing
    def put(self, samples: Sequence[Sample], stamp: Stamp) -> PutResult:
        """Store one sampling cycle in one transaction; durable (fsynced) when it returns."""
        samples = list(samples)
        with self._lock:
            self._ensure_open()
            if not samples:
                return PutResult(self._next_seq, self._next_seq - 1, True)
            pending = Pending(-1, samples, stamp, clock_state(stamp.synced, stamp.corrected))
            durable = False
            if self._db is not None and self._flush_overflow():
                durable = self._write_now(pending)
            if not durable:
                self._hold(pending)
            if self._db is not None:
                self._maybe_evict()
            if not durable:  # numbered only when claimed or dropped, in a volatile epoch
                return PutResult(-1, -1, False)
            return PutResult(pending.seq, pending.last, True)

    def _write_now(self, pending: Pending) -> bool:
        epoch = self.epoch
        for attempt in range(3):
            try:
                self._write_cycles([pending])
                return True
            except (sqlite3.Error, OSError) as e:
                self._failed(e)
                if self.epoch != epoch:  # a new epoch started under us: try the new file
                    epoch = self.epoch
                    if self._db is not None:
                        continue
                if self._db is None:
                    return False
                # a full file system: free pages inside our own file and retry once
                if attempt == 0 and store.error_code(e) == store.SQLITE_FULL and \
                        self._try_evict(max(len(pending.samples) * 20, 200), "disk_full"):
                    continue
                return False
        return False

    def _write_cycles(self, cycles: Sequence[Pending]) -> None:
        """Write and number ``cycles`` in one transaction (durable when it returns)."""
        if len(cycles) == 1 and self._write_one(cycles[0]):
            return
        new_ch: dict[str, int] = {}
        new_info: dict[int, tuple[str, float]] = {}
        new_boot: dict[str, int] = {}
        next_seq = self._next_seq
        cycle_rows = []
        for p in cycles:
            boot = self._boots.get(p.stamp.boot_id) or new_boot.get(p.stamp.boot_id)
            if boot is None:
                boot = new_boot[p.stamp.boot_id] = len(self._boots) + len(new_boot) + 1
            rows = []
            for s in p.samples:
                ch = self._channels.get(s.channel) or new_ch.get(s.channel)
                if ch is None:
                    ch = new_ch[s.channel] = len(self._channels) + len(new_ch) + 1
                    new_info[ch] = (s.channel, unit_of(s.channel)[1])
                res = (self._channel_info.get(ch) or new_info[ch])[1]
                rows.append((ch, encode_value(s.value, res), s.flags))
            cycle_rows.append((next_seq, len(p.samples), p.stamp.wall_ms, p.stamp.boot_ms, boot, p.clk,
                               packed.encode(rows)))
            next_seq += len(p.samples)
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO boots VALUES (?, ?)", [(i, b) for b, i in new_boot.items()])
            db.executemany("INSERT INTO channels VALUES (?, ?, ?)", [(i, *v) for i, v in new_info.items()])
            db.executemany("INSERT INTO cycles VALUES (?,?,?,?,?,?,?)", cycle_rows)
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        for p, row in zip(cycles, cycle_rows, strict=True):
            p.seq, p.epoch = row[0], self.epoch  # numbered in the file's epoch once written
        self._next_seq = next_seq
        self._channels.update(new_ch)
        self._channel_info.update(new_info)
        self._codes.update({name: (i, _scale(res), res) for i, (name, res) in new_info.items()})
        self._boots.update(new_boot)
        self._boot_names.update({i: b for b, i in new_boot.items()})
        self._count += sum(len(p.samples) for p in cycles)

    def _write_one(self, p: Pending) -> bool:
        """The common case: one cycle of known channels and boot as one statement in autocommit
        (SQLite commits, fsync included, before ``execute`` returns). BEGIN and COMMIT as
        statements of their own cost ~15 % of a put's CPU (bench/buffer.py). False: not this case."""
        boot = self._boots.get(p.stamp.boot_id)
        data = packed.encode_samples(p.samples, self._codes) if boot is not None else None
        if data is None:
            return False
        seq = self._next_seq
        n = len(p.samples)
        assert self._db is not None
        self._db.execute("INSERT INTO cycles VALUES (?,?,?,?,?,?,?)",
                         (seq, n, p.stamp.wall_ms, p.stamp.boot_ms, boot, p.clk, data))
        p.seq, p.epoch = seq, self.epoch
        self._next_seq = seq + n
        self._count += n
        return True

    def _hold(self, pending: Pending) -> None:
        """Keep a cycle in the bounded in-memory overflow; the oldest held ones become gaps."""
        reason = "disk_full" if self._disk_error == "disk_full" else "overflow"  # protocol GAP_REASONS
        self._dropped += self._held.hold(pending, reason, self._claimed_gap_ids())

    def _flush_overflow(self, force: bool = False) -> bool:
        """Write what waits in memory and can be written (acks first, then unnumbered cycles, gaps,
        incidents); True when the disk takes writes. Cycles the central has seen a volatile number
        of stay in memory until it acknowledges them."""
        if not self._held and not self._acked:
            return True
        if self._db is None or (not force and self._disk_error and self._timer() < self._retry_at):
            return False
        taken = self._claimed_gap_ids()
        taken_i = {i for c in self._busy() for i in c.incident_ids}
        gaps = {k: g for k, g in self._held.gaps.items() if k not in taken}  # claimed ones wait
        incidents = [i for i in self._held.incidents.values() if i.id not in taken_i]
        cycles = self._held.unnumbered()
        try:
            self._write_acks()
            if cycles:
                self._write_cycles(cycles)
            if gaps or incidents:
                db = self._tx()
                queries.add_gaps(db, list(gaps.values()), taken)
                db.executemany("INSERT INTO incidents(id, wall_ms, kind, detail, count) VALUES (?,?,?,?,?)",
                               [(i.id, i.wall_ms, i.kind, i.detail, i.count) for i in incidents])
                db.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._failed(e)
            return False
        self._held.remove(cycles)
        for k in gaps:
            del self._held.gaps[k]
        for i in incidents:
            del self._held.incidents[i.id]
        self._held.episode_over()
        self._disk_error = None
        return True

    def _write_acks(self) -> None:
        """Delete what the central acknowledged while the disk refused writes."""
        if not self._acked:
            return
        db = self._tx()
        try:
            for c in self._acked.values():
                self._delete_claim(db, c)
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._count -= sum(c.on_disk for c in self._acked.values())
        self._acked.clear()

    # ------------------------------------------------------------ eviction
    def _maybe_evict(self) -> None:
        db = self._db
        assert db is not None
        try:
            # the size check costs two queries: between checks the file grows by at most
            # SIZE_CHECK_EVERY cycles, well inside the WAL/slack margin kept below the cap
            self._since_check += 1
            if self._since_check >= SIZE_CHECK_EVERY or self._near_cap:
                self._since_check = 0
                self._check_size()
            if self.max_age is not None and self._timer() >= self._age_at:
                self._age_at = self._timer() + AGE_CHECK_S
                self._evict_aged(int((self._clock() - self.max_age) * 1000))
        except (sqlite3.Error, OSError) as e:
            self._failed(e)

    def _check_size(self) -> None:
        db = self._db
        assert db is not None
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        used = (pages - free) * self._page_size
        self._near_cap = used > self._data_cap * 0.95
        if used > self._data_cap and self._count:
            per = used / self._count
            n = math.ceil((used - self._data_cap * 0.97) / per)
            self._evict_oldest(min(max(n, 1), EVICT_CHUNK), "evicted_size")

    def _busy(self) -> list[Claim]:
        """Seq windows no claim, eviction or flush may touch: claimed, or acknowledged and not yet
        deleted."""
        return [*self._claims.values(), *self._acked.values()]

    def _is_claimed(self, seq: int) -> bool:
        """A seq of the file inside a claim or an acknowledgement not yet written."""
        return any(c.lo <= seq <= c.hi for c in self._busy())

    def _claimed_gap_ids(self) -> set[int]:
        return {g for c in self._busy() for g in c.gap_ids}

    def _unclaimed_oldest(self, n: int, below: int | None = None) -> list[int]:
        db = self._db
        assert db is not None
        out: list[int] = []
        start = 0
        while len(out) < n:
            first = queries.first_present(db, start)
            if first is None or (below is not None and first > below):
                break
            win = free_window(self._busy(), first, False)
            if win is None:
                start = next(c.hi for c in self._busy() if c.lo <= first <= c.hi) + 1
                continue
            hi = win[1] if below is None else min(win[1], below)
            out += queries.seqs_in(db, win[0], hi, n - len(out))
            start = hi + 1
        return out

    def _try_evict(self, n: int, reason: str) -> int:
        try:
            return self._evict_oldest(n, reason)
        except (sqlite3.Error, OSError) as e:
            self._failed(e)
            return 0

    def _evict_oldest(self, n: int, reason: str, below: int | None = None) -> int:
        seqs = self._unclaimed_oldest(n, below)
        self._evict_seqs(seqs, reason)
        return len(seqs)

    def _evict_aged(self, cutoff_ms: int) -> None:
        """Evict cycles older than ``cutoff_ms`` by a synchronized or corrected clock. Unsynced ones
        never age out, but they do not shield the aged cycles after them either."""
        db = self._db
        assert db is not None
        rows = db.execute("SELECT first_seq, n, wall_ms, clk FROM cycles ORDER BY first_seq LIMIT ?",
                          (EVICT_CHUNK,)).fetchall()
        seqs: list[int] = []
        for first, n, wall, clk in rows:
            if clk == CLK_UNSYNCED:
                continue
            if wall >= cutoff_ms:
                break
            seqs.extend(range(first, first + n))
        if seqs:
            present = set(queries.seqs_in(db, seqs[0], seqs[-1]))
            self._evict_seqs([q for q in seqs if q in present and not self._is_claimed(q)], "evicted_age")

    def _evict_seqs(self, seqs: list[int], reason: str) -> None:
        if not seqs:
            return
        db = self._tx()
        try:
            for epoch, part in self._segments.split(seqs):
                queries.delete_as_gaps(db, epoch, part, reason, self._claimed_gap_ids())
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._count -= len(seqs)
        self._dropped += len(seqs)

    # ------------------------------------------------------------ uploading
    def claim(self, max_readings: int, *, newest_first: bool = False,
              max_records: int = MAX_RIDE_ALONG) -> Batch | None:
        """Claim up to ``max_readings`` unclaimed readings (one contiguous seq window).

        Oldest-first for backfill, newest-first for the live batch; up to ``max_records``
        pending gaps and as many incidents ride along. None when there is nothing to send.
        While the disk refuses writes, what waits in memory is claimed too (whole cycles).
        """
        limit, records = max(1, int(max_readings)), max(1, min(int(max_records), MAX_RIDE_ALONG))
        with self._lock:
            if self._ensure_open():
                self._flush_overflow()
            try:
                return self._claim(limit, newest_first, records)
            except (sqlite3.Error, OSError) as e:
                self._failed(e)
                return self._claim(limit, newest_first, records, use_disk=False)

    def _claim(self, limit: int, newest_first: bool, max_records: int = MAX_RIDE_ALONG, *,
               use_disk: bool = True) -> Batch | None:
        db = self._db if use_disk else None
        held = self._held.claimable(limit, newest_first) if self._held.cycles else []
        rows: list[tuple[int, int, float | None, int]] = []
        # memory holds the newest cycles: first for the live batch, last for the backfill
        if db is not None and not (held and newest_first):
            rows = self._disk_window(db, limit, newest_first)
            if rows:
                held = []
        gaps, incidents = self._records(db, max_records)
        if not rows and not held and not gaps and not incidents:
            return None
        batch_id = self._next_batch
        self._next_batch += 1
        epoch = self.epoch
        if held:
            self._held.number(held)
            epoch = held[0].epoch
            readings = [r for p in held for r in p.readings()]
            for p in held:
                p.claimed_by = batch_id
            claim = Claim(0, -1, len(readings), [g[0] for g in gaps], [i.id for i in incidents], held=held,
                          epoch=epoch)
        else:
            readings = queries.readings_in(db, rows, self._channel_info, self._boot_names) if db else []
            lo, hi = (readings[0].seq, readings[-1].seq) if readings else (0, -1)
            if readings:  # one window never crosses an epoch change (_disk_window)
                epoch = self._segments.epoch_of(lo)
            claim = Claim(lo, hi, len(readings), [g[0] for g in gaps], [i.id for i in incidents],
                          epoch=epoch)
        self._claims[batch_id] = claim
        return Batch(batch_id, self.node_id, epoch, readings, [g[1] for g in gaps], incidents,
                     live=newest_first)

    def _disk_window(self, db: sqlite3.Connection, limit: int,
                     newest_first: bool) -> list[tuple[int, int, float | None, int]]:
        start = (1 << 62) if newest_first else 0
        while True:
            first = queries.first_present(db, start, desc=newest_first)
            if first is None:
                return []
            win = free_window(self._busy(), first, newest_first)
            if win is None:
                c = next(c for c in self._busy() if c.lo <= first <= c.hi)
                start = c.lo - 1 if newest_first else c.hi + 1
                continue
            seg_lo, seg_hi = self._segments.bounds(first)  # readings of one epoch per batch
            return queries.window(db, max(win[0], seg_lo), min(win[1], seg_hi), limit, desc=newest_first)

    def _records(self, db: sqlite3.Connection | None,
                 max_records: int) -> tuple[list[tuple[int, Gap]], list[Incident]]:
        """Pending gaps (with their ids) and incidents to ride along: the file's, then memory's."""
        taken_g = self._claimed_gap_ids()
        taken_i = {i for c in self._busy() for i in c.incident_ids}
        gaps: list[tuple[int, Gap]] = []
        incidents: list[Incident] = []
        if db is not None:
            gaps = [(r[0], Gap(*r[1:])) for r in db.execute(
                "SELECT id, epoch, first_seq, last_seq, count, first_wall_ms, last_wall_ms, reason"
                " FROM gaps ORDER BY id LIMIT ?", (max_records + len(taken_g),)) if r[0] not in taken_g]
            incidents = [Incident(*r) for r in db.execute(
                "SELECT id, wall_ms, kind, detail, count FROM incidents ORDER BY id LIMIT ?",
                (max_records + len(taken_i),)) if r[0] not in taken_i]
        held_gaps = sorted((k, g) for k, g in self._held.gaps.items() if k not in taken_g)
        gaps += held_gaps[::-1]  # keys go down as gaps are added: oldest first
        incidents += [i for i in self._held.incidents.values() if i.id not in taken_i]
        return gaps[:max_records], incidents[:max_records]

    def ack(self, batch_id: int) -> bool:
        """The central has the batch: delete it. False for an unknown (e.g. pre-restart) batch id.

        What waited in memory leaves memory; if the disk refuses the delete, the acknowledgement is
        remembered (those readings are neither sent again nor evicted) and written when it works.
        """
        with self._lock:
            c = self._claims.pop(batch_id, None)
            if c is None:
                return False
            self._held.remove(c.held)  # the central has them: memory lets go
            in_file = [g for g in c.gap_ids if self._held.gaps.pop(g, None) is None]
            in_file += [i for i in c.incident_ids if self._held.incidents.pop(i, None) is None]
            c.on_disk = 0 if c.held else c.count
            if not c.on_disk and not in_file:
                return True  # nothing of it is in the file
            if not self._ensure_open():
                self._acked[batch_id] = c
                return True
            try:
                db = self._tx()
                self._delete_claim(db, c)
                db.execute("COMMIT")
                self._count -= c.on_disk
            except (sqlite3.Error, OSError) as e:
                self._acked[batch_id] = c
                self._failed(e)
                return True
            if c.on_disk:
                self._maybe_compact()
            return True

    def _maybe_compact(self) -> None:
        """VACUUM when a drain has left the file mostly free pages: the file returns to its steady
        size (free pages are reused by later puts anyway; this gives the space back to the card's
        file system after an outage). Optional: a failure leaves the file as it was."""
        db = self._db
        assert db is not None
        try:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            if free * self._page_size < COMPACT_MIN_FREE or free < 3 * (pages - free):
                return
            db.execute("VACUUM")
            log.info("buffer: compacted %s from %d to %d pages after a drain", self.path.name, pages,
                     db.execute("PRAGMA page_count").fetchone()[0])
        except sqlite3.Error as e:
            if store.is_corrupt(e):
                self._failed(e)
            else:
                log.info("buffer: compaction skipped: %s", e)

    def _delete_claim(self, db: sqlite3.Connection, c: Claim) -> None:
        if c.count and not c.held:
            queries.delete_window(db, c.lo, c.hi)
            if queries.first_present(db, c.hi + 1) is None:  # else a newer row keeps the numbers used
                queries.raise_seq_hw(db, c.hi)
        db.executemany("DELETE FROM gaps WHERE id = ?", [(i,) for i in c.gap_ids if i > 0])
        db.executemany("DELETE FROM incidents WHERE id = ?", [(i,) for i in c.incident_ids])

    def ack_receipt(self, batch_id: int, receipt: Receipt) -> Settled:
        """Acknowledge a batch the central answered 200, reading its receipt (issue #20).

        When the receipt shows the numbering collides (``conflicts``, or a ``high_seq`` above every seq
        this buffer handed out in the batch's epoch), in one transaction: a new epoch starts (if the
        batch is of the current one), the conflicting readings are put again in the current epoch
        with new seqs and their stamps, values and flags, the batch is deleted, and an incident and a
        ``buffer_rollback`` gap record it. A conflict list cut at 1,000 acknowledges the batch up to
        its last listed seq; the rest is given back and sent again. Nothing is lost on a disk error:
        the batch is given back whole.
        """
        with self._lock:
            c = self._claims.get(batch_id)
            if c is None:
                return Settled(False)
            epoch = c.epoch or self.epoch
            current = epoch == self.epoch
            if c.held or epoch >= VOLATILE_EPOCH_BASE or (not current and not c.count):
                if receipt.conflicts:  # a random volatile epoch or an abandoned one: cannot be re-put
                    log.error("buffer: %d conflicting readings in batch %d of epoch %d kept by the central "
                              "as it had them", receipt.conflicts, batch_id, epoch)
                return Settled(self.ack(batch_id))
            own_top = self._next_seq - 1 if current else self._segments.bounds(c.lo)[1]
            if not receipt.collides(own_top):
                return Settled(self.ack(batch_id))
            if not self._ensure_open():
                self.release(batch_id)
                return Settled(False, released=c.count)
            saved = (self.epoch, Segments(self._segments.pairs), self._next_seq, self._count, self.buffer_id)
            try:
                db = self._tx()
                done = self._resolve(db, c, receipt, epoch, own_top)
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as e:
                self.epoch, self._segments, self._next_seq, self._count, self.buffer_id = saved
                self._claims.pop(batch_id, None)  # given back: sent again, judged again
                self._failed(e)
                return Settled(False, released=c.count)
            self._claims.pop(batch_id, None)
            for g in c.gap_ids:
                self._held.gaps.pop(g, None)
            for i in c.incident_ids:
                self._held.incidents.pop(i, None)
            if done.kind:
                log.error("buffer: %s", done.detail)
            else:
                log.warning("buffer: %d conflicting readings of epoch %d put again in epoch %d", done.moved,
                            epoch, self.epoch)
            return done

    def _resolve(self, db: sqlite3.Connection, c: Claim, receipt: Receipt, epoch: int,
                 own_top: int) -> Settled:
        """The writes of `ack_receipt`, inside its transaction."""
        rows = queries.window(db, c.lo, c.hi, c.hi - c.lo + 1) if c.count else []
        listed = [s for s in receipt.conflict_seqs if c.lo <= s <= c.hi]
        ack_hi = c.hi
        if receipt.complete:
            conflicting = set(listed)
        elif listed:  # seqs past the last listed one are not judged yet: sent again
            conflicting = set(listed)
            ack_hi = listed[-1]
        else:  # conflicts without a list: which ones is unknown, so all go again (none lost)
            conflicting = {r[0] for r in rows}
        acked_rows = [r for r in rows if r[0] <= ack_hi]
        new_epoch = None
        kind = detail = None
        first_new = self._next_seq
        if epoch == self.epoch:
            new_epoch = self._start_epoch(db, next_epoch(self.epoch, receipt,
                                                         store.read_epoch_file(self._epoch_file)))
            kind = "buffer_rollback" if self.rolled_back else "identity_clash"
            if kind == "identity_clash":  # the file is shared by a copy: this one takes a new id, so
                self.buffer_id = new_buffer_id()  # the central tells the two apart even on twin images
                db.execute("INSERT OR REPLACE INTO meta VALUES ('buffer_id', ?)", (self.buffer_id,))
            if receipt.high_seq is not None and receipt.high_seq > own_top:
                queries.add_gaps(db, [Gap(epoch, own_top + 1, receipt.high_seq, receipt.high_seq - own_top,
                                          None, None, "buffer_rollback")], self._claimed_gap_ids())
        moved = self._put_again(db, [r for r in acked_rows if r[0] in conflicting])
        if c.count:
            queries.delete_window(db, c.lo, ack_hi)
            if queries.first_present(db, ack_hi + 1) is None:
                queries.raise_seq_hw(db, ack_hi)
        db.executemany("DELETE FROM gaps WHERE id = ?", [(i,) for i in c.gap_ids if i > 0])
        db.executemany("DELETE FROM incidents WHERE id = ?", [(i,) for i in c.incident_ids])
        if kind is not None:
            detail = collision_detail(epoch, own_top, receipt, self.epoch, moved, first_new, kind)
            db.execute("INSERT INTO incidents(wall_ms, kind, detail, count) VALUES (?,?,?,?)",
                       (int(self._clock() * 1000), kind, clean_text(detail, MAX_DETAIL), receipt.conflicts))
        self._count += moved - len(acked_rows)
        return Settled(True, new_epoch, moved, len(rows) - len(acked_rows), kind, detail)

    def _put_again(self, db: sqlite3.Connection, rows: Sequence[queries.Row]) -> int:
        """Write ``rows`` again as cycles of the current epoch from ``_next_seq`` on (same stamps)."""
        if rows:
            self._next_seq = queries.put_again(db, rows, self._next_seq)
        return len(rows)

    def release(self, batch_id: int) -> bool:
        """Give the batch back for a later retry (cycles from memory keep their numbers)."""
        with self._lock:
            c = self._claims.pop(batch_id, None)
            for p in c.held if c is not None else []:
                p.claimed_by = None
            return c is not None

    def dead_letter(self, batch_id: int, reason: str) -> bool:
        """The central refused the batch's readings for good (a signed refusal): they leave the queue
        as a "rejected" gap plus a ``batch_rejected`` incident, both pending for the central. The gaps
        and incidents that rode along stay pending: only an acknowledgement deletes a loss record."""
        with self._lock:
            c = self._claims.pop(batch_id, None)
            if c is None:
                return False
            if c.held:
                self._dead_letter_held(c, reason)
                return True
            if not self._ensure_open():
                return True
            try:
                db = self._tx()
                seqs = queries.seqs_in(db, c.lo, c.hi)
                if seqs:
                    queries.delete_as_gaps(db, c.epoch or self.epoch, seqs, "rejected",
                                           self._claimed_gap_ids())
                    detail = f"batch of {len(seqs)} readings (seq {c.lo}..{c.hi}) rejected: {reason}"
                    db.execute("INSERT INTO incidents(wall_ms, kind, detail, count) VALUES (?,?,?,?)",
                               (int(self._clock() * 1000), "batch_rejected", clean_text(detail, MAX_DETAIL),
                                len(seqs)))
                db.execute("COMMIT")
                self._count -= len(seqs)
                self._dropped += len(seqs)
                return True
            except (sqlite3.Error, OSError) as e:
                self._failed(e)
                return False

    def _dead_letter_held(self, c: Claim, reason: str) -> None:
        for p in c.held:
            p.claimed_by = None
        self._held.drop(c.held, "rejected", self._claimed_gap_ids())
        self._dropped += c.count
        first, last = c.held[0], c.held[-1]
        detail = (f"batch of {c.count} readings (epoch {first.epoch} seq {first.seq}..{last.last}) "
                  f"rejected: {reason}")
        self._hold_incident("batch_rejected", clean_text(detail, MAX_DETAIL), c.count)

    def refuse_record(self, batch_id: int, part: str, index: int, reason: str) -> bool:
        """The central refused one gap or incident of a claimed batch (a signed 422 naming it):
        replace it by an incident it accepts, saying what was refused and why. The claim stays."""
        with self._lock:
            c = self._claims.get(batch_id)
            ids = (c.gap_ids if part == "gap" else c.incident_ids) if c is not None else []
            if not 0 <= index < len(ids) or not self._ensure_open():
                return False
            try:
                db = self._tx()
                queries.replace_refused(db, part, ids[index], reason, int(self._clock() * 1000))
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as e:
                self._failed(e)
                return False
            if part == "gap":
                c.gap_ids.remove(ids[index])  # type: ignore[union-attr]
            return True

    # ------------------------------------------------------------ clock, incidents, status
    def correct_clock(self, boot_id: str, offset_ms: int, *, true_base_ms: int | None = None) -> int:
        """Put unsynced readings of ``boot_id`` on true time; they become CLOCK_CORRECTED.

        With ``true_base_ms`` (the true wall - boot time of that boot) every such reading gets
        ``wall = boot + true_base_ms``, whatever base it was stamped with (readings of an earlier
        process of the same boot may already follow another base); else each is shifted by
        ``offset_ms``.
        """
        with self._lock:
            n = self._held.correct_clock(boot_id, offset_ms, true_base_ms=true_base_ms)
            boot = self._boots.get(boot_id)
            if boot is None or not self._ensure_open():
                return n
            try:
                db = self._tx()
                n += queries.unsynced_count(db, boot, CLK_UNSYNCED)
                if true_base_ms is None:
                    db.execute("UPDATE cycles SET wall_ms = wall_ms + ?, clk = ? WHERE boot = ? AND clk = ?",
                               (int(offset_ms), CLK_CORRECTED, boot, CLK_UNSYNCED))
                else:
                    db.execute("UPDATE cycles SET wall_ms = boot_ms + ?, clk = ? WHERE boot = ? AND clk = ?",
                               (int(true_base_ms), CLK_CORRECTED, boot, CLK_UNSYNCED))
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as e:
                self._failed(e)
            return n

    def rebase_clock(self, boot_id: str, wrong_base_ms: int, true_base_ms: int, tolerance_ms: int) -> int:
        """Readings of ``boot_id`` stamped on ``wrong_base_ms`` (wall - boot, within
        ``tolerance_ms``) by a clock that claimed sync but was wrong (node/clock.py, "suspect") get
        ``wall = boot + true_base_ms`` and become CLOCK_CORRECTED, whatever their clock state."""
        lo, hi = int(wrong_base_ms) - int(tolerance_ms), int(wrong_base_ms) + int(tolerance_ms)
        with self._lock:
            n = self._held.rebase_clock(boot_id, wrong_base_ms, true_base_ms, tolerance_ms)
            boot = self._boots.get(boot_id)
            if boot is None or not self._ensure_open():
                return n
            try:
                db = self._tx()
                where = "boot = ? AND wall_ms - boot_ms BETWEEN ? AND ?"
                n += int(db.execute(f"SELECT coalesce(sum(n), 0) FROM cycles WHERE {where}",
                                    (boot, lo, hi)).fetchone()[0])
                db.execute(f"UPDATE cycles SET wall_ms = boot_ms + ?, clk = ? WHERE {where}",
                           (int(true_base_ms), CLK_CORRECTED, boot, lo, hi))
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as e:
                self._failed(e)
            return n

    def record_incident(self, kind: str, detail: str, count: int | None = None) -> None:
        """Record something the central should learn about; held in memory if the disk refuses.
        Kind and detail are cut to what the central accepts (docs/protocol.md)."""
        with self._lock:
            self._ensure_open()
            self._hold_incident(clean_text(kind, MAX_KIND), clean_text(detail, MAX_DETAIL), count)
            self._flush_overflow(force=True)

    def _hold_incident(self, kind: str, detail: str, count: int | None) -> None:
        now = self._clock()
        self._held.add_incident(int(now * 1000), kind, detail, count, int(now * 1_000_000))

    def _insert_incident(self, kind: str, detail: str, count: int | None) -> None:
        self._hold_incident(kind, detail, count)
        self._flush_overflow(force=True)

    def check_integrity(self) -> str:
        """Full ``PRAGMA integrity_check``: "ok" or the problems found (also kept for stats)."""
        with self._lock:
            if not self._ensure_open():
                return f"unavailable: {self._disk_error}"
            assert self._db is not None
            try:
                rows = self._db.execute("PRAGMA integrity_check").fetchall()
                self._integrity = "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])
            except sqlite3.DatabaseError as e:
                self._integrity = str(e)
            return self._integrity

    def stats(self) -> BufferStats:
        with self._lock:
            self._ensure_open()
            oldest = newest = None
            gaps = incidents = 0
            if self._db is not None:
                try:
                    oldest, newest, gaps, incidents = store.ends_and_pending(self._db)
                    self._acked_seq = self._first_unacked(self._db) - 1
                except sqlite3.Error as e:
                    self._failed(e)
            mem_walls = [p.stamp.wall_ms for p in self._held.cycles]
            if mem_walls:
                oldest = oldest if oldest is not None else min(mem_walls)
                newest = max(mem_walls) if newest is None else max(newest, max(mem_walls))
            return BufferStats(
                self.node_id, self.epoch,
                self._count + self._held.readings - sum(c.on_disk for c in self._acked.values()),
                store.file_size(self.path), oldest, newest, self._next_seq - 1,
                sum(c.count for c in self._claims.values()),
                gaps + len(self._held.gaps), incidents + len(self._held.incidents), self._held.readings,
                self._dropped, self._integrity, self.buffer_id, self._acked_seq,
                tuple(self._segments.pairs))

    def _first_unacked(self, db: sqlite3.Connection) -> int:
        """The lowest seq still in the file, or the next to hand out: below it, every seq left (#20)."""
        first = queries.first_present(db, 0)
        return self._next_seq if first is None else int(first)

    @staticmethod
    def inspect(path: str | Path, *, check: bool = False) -> BufferStats:
        """Stats of a buffer file through a read-only connection (safe beside a running daemon)."""
        return store.inspect(Path(path), check=check)

