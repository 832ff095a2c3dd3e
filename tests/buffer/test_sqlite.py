"""SqliteBuffer beyond the contract: restarts, the size cap, corruption, read-only inspection, threads."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from node.buffer import SqliteBuffer
from node.buffer.overflow import VOLATILE_EPOCH_BASE
from node.buffer.store import file_size
from node.errors import StorageError
from tests.buffer.conftest import cycle, stamp


def make(tmp_path, clock, **kw):
    return SqliteBuffer(tmp_path / "buffer.db", "node-1", clock=clock, timer=clock, **kw)


def test_constructor_does_no_io(tmp_path, clock):
    b = SqliteBuffer(tmp_path / "state" / "buffer.db", "node-1", clock=clock, timer=clock)
    assert not (tmp_path / "state").exists()
    b.put(cycle(1), stamp(1))
    assert (tmp_path / "state" / "buffer.db").exists()
    b.close()


def test_file_size_counts_the_database_and_its_wal(tmp_path):
    db = tmp_path / "buffer.db"
    assert file_size(db) == 0  # neither file yet
    db.write_bytes(b"d" * 1000)
    assert file_size(db) == 1000
    (tmp_path / "buffer.db-wal").write_bytes(b"w" * 24)
    assert file_size(db) == 1024
    assert file_size(str(db)) == 1024  # a plain string too


def test_file_is_wal_with_full_sync_and_compact_rows(tmp_path, clock):
    with make(tmp_path, clock) as b:
        b.put(cycle(1), stamp(1))
        db = sqlite3.connect(tmp_path / "buffer.db")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [r[1] for r in db.execute("PRAGMA table_info(readings)")]
        assert cols == ["seq", "ch", "value", "flags"]
        assert db.execute("SELECT count(*) FROM cycles").fetchone()[0] == 1
        db.close()
        assert b._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_readings_and_identity_survive_reopen_and_stale_claims_return(tmp_path, clock):
    b = make(tmp_path, clock)
    for i in range(3):
        b.put(cycle(i), stamp(i))
    epoch = b.epoch
    claimed = b.claim(8)
    acked = b.claim(2, newest_first=True)
    b.ack(acked.id)
    b._db.close()  # vanish without close(): as after a crash, the claim is never released
    b._db = None
    b2 = make(tmp_path, clock)
    batch = b2.claim(100)
    assert [r.seq for r in batch.readings] == list(range(1, 14))
    assert [r.value for r in batch.readings[:8]] == [r.value for r in claimed.readings]
    assert b2.epoch == epoch
    assert b2.put(cycle(9), stamp(9)).first_seq == 16  # 14, 15 were acked: never reused
    b2.close()


def test_ack_of_everything_then_reopen_keeps_counting(tmp_path, clock):
    b = make(tmp_path, clock)
    b.put(cycle(1), stamp(1))
    b.ack(b.claim(100).id)
    b.close()
    with make(tmp_path, clock) as b2:
        assert b2.put(cycle(2), stamp(2)).first_seq == 6


def test_eviction_past_the_cap_drops_oldest_as_exact_gaps(tmp_path, clock):
    cap = 1 << 19  # 5000 cycles take ~0.9 MB (one packed row per cycle)
    b = make(tmp_path, clock, max_size=cap)
    biggest = 0
    n_cycles = 5000
    for i in range(n_cycles):
        res = b.put(cycle(i, 15), stamp(i))
        assert res.durable
        biggest = max(biggest, file_size(b.path))
    assert biggest <= cap
    total = n_cycles * 15
    st = b.stats()
    assert st.readings < total and st.last_seq == total and st.dropped_total == total - st.readings
    batch = b.claim(total)
    seqs = [r.seq for r in batch.readings]
    first_kept = seqs[0]
    assert seqs == list(range(first_kept, total + 1))  # newest intact, no holes
    assert batch.readings[-1].value == cycle(n_cycles - 1, 15)[-1].value
    assert len(batch.gaps) == 1
    g = batch.gaps[0]
    assert (g.epoch, g.first_seq, g.last_seq, g.count, g.reason) == \
        (b.epoch, 1, first_kept - 1, first_kept - 1, "evicted_size")
    assert g.first_wall_ms == stamp(0).wall_ms
    assert g.last_wall_ms == stamp((first_kept - 2) // 15).wall_ms
    b.close()
    assert file_size(tmp_path / "buffer.db") <= cap


def test_eviction_skips_claimed_readings(tmp_path, clock):
    b = make(tmp_path, clock, max_size=1 << 19)
    b.put(cycle(0, 15), stamp(0))
    inflight = b.claim(10)
    for i in range(1, 5000):
        b.put(cycle(i, 15), stamp(i))
    b.ack(inflight.id)  # still all there to delete: eviction left them alone
    batch = b.claim(100)
    assert batch.gaps[0].first_seq == 11 and batch.readings[0].seq > 15
    b.close()


def test_garbage_in_the_file_is_quarantined_and_a_new_epoch_starts(tmp_path, clock):
    path = tmp_path / "buffer.db"
    b = make(tmp_path, clock)
    for i in range(400):
        b.put(cycle(i, 15), stamp(i))
    old_epoch = b.epoch
    b.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # overwrite table pages in the middle of the file
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef" * 2048)
    b2 = make(tmp_path, clock)
    res = b2.put(cycle(1000), stamp(1000))
    assert res.durable and res.first_seq == 1
    assert b2.epoch == old_epoch + 1
    moved = [p for p in tmp_path.glob("buffer.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(moved) == 1 and moved[0].stat().st_size == size
    batch = b2.claim(100)
    assert [r.seq for r in batch.readings] == [1, 2, 3, 4, 5]
    (inc,) = batch.incidents
    assert inc.kind == "buffer_corrupt" and "corrupt-" in inc.detail
    assert b2.check_integrity() == "ok"
    b2.close()


def test_unreadable_header_is_quarantined_with_unknown_count(tmp_path, clock):
    path = tmp_path / "buffer.db"
    with make(tmp_path, clock) as b:
        b.put(cycle(1), stamp(1))
    path.write_bytes(b"this is not sqlite at all" * 100)
    with make(tmp_path, clock) as b2:
        assert b2.epoch == 2  # the epoch file beside the database remembers epoch 1
        b2.put(cycle(2), stamp(2))
        inc = b2.claim(10).incidents
        assert [i.kind for i in inc] == ["buffer_corrupt"] and inc[0].count is None
    # and a second restart keeps the new epoch: no crash loop, no further quarantine
    with make(tmp_path, clock) as b3:
        assert b3.epoch == 2 and b3.stats().readings == 5
    assert len([p for p in tmp_path.glob("buffer.db.corrupt-*") if p.name[-4:] not in ("-wal", "-shm")]) == 1


def test_corruption_found_while_running_recovers(tmp_path, clock):
    path = tmp_path / "buffer.db"
    b = make(tmp_path, clock)
    for i in range(300):
        b.put(cycle(i, 15), stamp(i))
    b._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:  # garbage over data pages ...
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 4096 * 4)
    other = sqlite3.connect(path)  # ... and a write elsewhere, so no cached page hides it
    other.execute("INSERT INTO meta VALUES ('poke', 1)")
    other.commit()
    other.close()
    for i in range(300, 320):  # keeps sampling whatever happens below
        b.put(cycle(i), stamp(i))
    b.claim(100000)
    b.stats()
    assert b.epoch == 2 and list(tmp_path.glob("buffer.db.corrupt-*"))
    assert b.put(cycle(999), stamp(999)).durable
    b.close()
    with make(tmp_path, clock) as b2:
        assert b2.check_integrity() == "ok"
        assert b2.put(cycle(1), stamp(1)).durable


def test_other_nodes_file_is_set_aside(tmp_path, clock):
    with make(tmp_path, clock) as b:
        b.put(cycle(1), stamp(1))
    with SqliteBuffer(tmp_path / "buffer.db", "node-2", clock=clock, timer=clock) as b2:
        assert b2.stats().readings == 0
        assert [i.kind for i in b2.claim(10).incidents] == ["buffer_corrupt"]
    assert list(tmp_path.glob("buffer.db.other-node-*"))


def test_inspect_reads_beside_a_running_buffer(tmp_path, clock):
    path = tmp_path / "buffer.db"
    b = make(tmp_path, clock)
    for i in range(5):
        b.put(cycle(i), stamp(i))
    b.record_incident("sensor_fault", "x")
    st = SqliteBuffer.inspect(path, check=True)
    assert (st.node_id, st.epoch, st.readings, st.last_seq, st.incidents_pending, st.integrity) == \
        ("node-1", b.epoch, 25, 25, 1, "ok")
    assert b.put(cycle(9), stamp(9)).durable  # the daemon is not disturbed
    b.close()
    with pytest.raises(StorageError, match="does not exist"):
        SqliteBuffer.inspect(tmp_path / "nope.db")


def test_sampler_and_uploader_threads(tmp_path, clock):
    b = make(tmp_path, clock)
    got: list[int] = []
    errors: list[BaseException] = []

    def sampler():
        try:
            for i in range(300):
                b.put(cycle(i), stamp(i))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def uploader():
        try:
            while len(got) < 1500:
                batch = b.claim(37)
                if batch is None:
                    continue
                got.extend(r.seq for r in batch.readings)
                b.ack(batch.id)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=sampler), threading.Thread(target=uploader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(got) == list(range(1, 1501))
    b.close()


def test_from_config(tmp_path):
    from node.config import validate
    cfg = validate({"node": {"id": "hn-0042", "state_dir": str(tmp_path / "state")},
                    "buffer": {"max_size": "2MiB", "max_age": "7d"}})
    b = SqliteBuffer.from_config(cfg)
    assert (b.path, b.node_id, b.max_size, b.max_age) == (tmp_path / "state" / "buffer.db", "hn-0042",
                                                          2 * 1024**2, 7 * 86400.0)
    assert not (tmp_path / "state").exists()


def test_unusable_state_dir_never_raises(tmp_path, clock):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    b = SqliteBuffer(blocker / "buffer.db", "node-1", clock=clock, timer=clock, overflow_readings=100)
    assert b.open() is False
    results = [b.put(cycle(i), stamp(i)) for i in range(30)]
    assert not any(r.durable for r in results)
    st = b.stats()
    assert st.overflow_readings == 100 and st.readings == 100
    early = b.claim(10)  # without a file, what memory holds travels in a volatile epoch
    assert early.epoch >= VOLATILE_EPOCH_BASE and len(early.readings) == 10
    assert [i.kind for i in early.incidents] == ["disk_error"]
    assert {g.epoch for g in early.gaps} == {early.epoch} and sum(g.count for g in early.gaps) == 50
    assert {g.reason for g in early.gaps} == {"overflow"}  # a reason the protocol knows (GAP_REASONS)
    b.release(early.id)
    blocker.unlink()
    clock.t += 10
    assert b.put(cycle(30), stamp(30)).durable
    batch = b.claim(1000)
    assert [r.seq for r in batch.readings] == list(range(1, 96))  # the unnumbered 90, then cycle 30
    assert b.stats().overflow_readings == 10  # numbered in the volatile epoch: waits for its ack
    b.close()


def test_clock_correction_after_restart(tmp_path, clock):
    with make(tmp_path, clock) as b:
        b.put(cycle(1), stamp(1, synced=False, boot="boot-x"))
    with make(tmp_path, clock) as b2:
        assert b2.correct_clock("boot-x", -2_000) == 5
        r = b2.claim(10).readings[0]
        assert r.wall_ms == stamp(1).wall_ms - 2_000 and r.boot_id == "boot-x"


def test_the_epoch_file_is_synced_with_its_directory(tmp_path, clock, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with SqliteBuffer(tmp_path / "buffer.db", "node-1", clock=clock, timer=clock):
        pass
    epoch_file = str(tmp_path / "buffer.db.epoch")
    assert epoch_file + ".tmp" in synced and str(tmp_path) in synced
    assert synced.index(str(tmp_path)) > synced.index(epoch_file + ".tmp")
    assert (tmp_path / "buffer.db.epoch").read_text() == "1\n"


def test_an_epoch_file_that_cannot_be_written_is_reported_and_repaired_later(tmp_path, clock, caplog):
    (tmp_path / "buffer.db.epoch.tmp").mkdir()  # the write fails (EISDIR), the database works
    with SqliteBuffer(tmp_path / "buffer.db", "node-1", clock=clock, timer=clock) as b:
        b.put(cycle(0), stamp(0))
        batch = b.claim(10)
        assert [i.kind for i in batch.incidents] == ["epoch_file"]
        assert "epoch 1 may be used again" in batch.incidents[0].detail
    assert "epoch file" in caplog.text and not (tmp_path / "buffer.db.epoch").exists()
    (tmp_path / "buffer.db.epoch.tmp").rmdir()
    with SqliteBuffer(tmp_path / "buffer.db", "node-1", clock=clock, timer=clock):
        pass
    assert (tmp_path / "buffer.db.epoch").read_text() == "1\n"


def test_a_drained_backlog_gives_its_pages_back(tmp_path, clock):
    """#22: after an outage's backlog drains, the file returns to its steady size (VACUUM once most
    pages are free), and what is left reads back unchanged."""
    b = make(tmp_path, clock)
    for i in range(6000):
        b.put(cycle(i, 15), stamp(i))
    db = b._db
    full = db.execute("PRAGMA page_count").fetchone()[0]
    while (left := b.stats().readings) > 30:
        assert b.ack(b.claim(min(5000, left - 30)).id)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    assert pages < full // 10, (full, pages)
    rest = b.claim(100)
    assert [r.seq for r in rest.readings] == list(range(6000 * 15 - len(rest.readings) + 1, 6000 * 15 + 1))
    assert b.check_integrity() == "ok"
    b.close()
