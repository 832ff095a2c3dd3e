"""One contract, every backend: SQLite file and the local PostgreSQL server."""

from __future__ import annotations

import threading

import pytest

from central.store import NodeExists, Replay, UnknownNode, open_store
from node.model import Gap, Incident, Reading
from node.protocol import IngestBatch

KEY = bytes(range(32))
NOW = 1_764_100_000_000


def batch(seqs, *, node="pole-1", epoch=1, gaps=(), incidents=(), health=None) -> IngestBatch:
    readings = [Reading(s, f"w.ch{s % 3}_c", None if s % 7 == 0 else s * 0.25, s % 2 * 256,
                        NOW + s * 1000, s * 1000, "boot-a") for s in seqs]
    return IngestBatch(node, epoch, NOW, readings, list(gaps), list(incidents),
                       health or {"backlog_readings": 3, "firmware": "0.1.0"},
                       {f"w.ch{i}_c": "°C" for i in range(3)})


class TestStoreContract:
    def test_node_keys(self, store):
        store.add_node("pole-1", KEY, NOW)
        assert store.node_key("pole-1") == KEY
        assert store.node_key("pole-2") is None
        with pytest.raises(NodeExists):
            store.add_node("pole-1", bytes(32), NOW)
        store.set_key("pole-1", bytes(32))
        assert store.node_key("pole-1") == bytes(32)
        with pytest.raises(UnknownNode):
            store.set_key("nope", KEY)
        store.add_node("pole-0", KEY, NOW)
        info = store.list_nodes()
        assert [n.node_id for n in info] == ["pole-0", "pole-1"] and info[1].last_seen_ms is None
        assert [n.node_id for n in store.list_nodes("pole-1")] == ["pole-1"]
        assert store.list_nodes("ghost") == []

    def test_ingest_stores_each_reading_once(self, store):
        store.add_node("pole-1", KEY, NOW)
        r = store.ingest(batch(range(10)), signature="a" * 64, expires_ms=NOW + 1, now_ms=NOW)
        assert r.as_dict() == {"stored": 10, "duplicates": 0, "conflicts": 0, "conflict_seqs": [], "gaps": 0,
                               "incidents": 0, "high_seq": 9, "max_epoch": 1}
        # the same readings re-split and re-sent under new signatures
        r2 = store.ingest(batch(range(5, 15)), signature="b" * 64, expires_ms=NOW + 1, now_ms=NOW)
        assert (r2.stored, r2.duplicates) == (5, 5)
        r3 = store.ingest(batch(range(0, 15, 2)), signature="c" * 64, expires_ms=NOW + 1, now_ms=NOW)
        assert (r3.stored, r3.duplicates) == (0, 8)
        assert store.count_readings("pole-1") == 15 and store.count_readings() == 15
        assert store.seqs("pole-1", 1) == list(range(15))
        # another epoch is a different identity
        store.ingest(batch(range(3), epoch=2), signature="d" * 64, expires_ms=NOW + 1, now_ms=NOW)
        assert store.seqs("pole-1", 2) == [0, 1, 2] and store.count_readings("pole-1") == 18

    def test_readings_round_trip_and_filters(self, store):
        store.add_node("pole-1", KEY, NOW)
        b = batch(range(12))
        store.ingest(b, signature="a" * 64, expires_ms=NOW + 1, now_ms=NOW + 5)
        got = store.readings("pole-1")
        assert [(g.seq, g.channel, g.value, g.flags, g.wall_ms, g.boot_ms, g.boot_id) for g in got] == [
            (r.seq, r.channel, r.value, r.flags, r.wall_ms, r.boot_ms, r.boot_id) for r in b.readings]
        assert got[0].unit == "°C" and got[0].received_ms == NOW + 5 and got[0].value is None
        ch1 = store.readings("pole-1", channel="w.ch1_c")
        assert [g.seq for g in ch1] == [1, 4, 7, 10]
        window = store.readings("pole-1", since_ms=NOW + 3000, until_ms=NOW + 6000)
        assert [g.seq for g in window] == [3, 4, 5]
        assert len(store.readings("pole-1", limit=2)) == 2
        assert store.readings("other") == []

    def test_replay_rejected_and_nothing_stored(self, store):
        store.add_node("pole-1", KEY, NOW)
        store.ingest(batch(range(3)), signature="a" * 64, expires_ms=NOW + 10, now_ms=NOW)
        with pytest.raises(Replay):
            store.ingest(batch(range(3, 6)), signature="a" * 64, expires_ms=NOW + 10, now_ms=NOW)
        assert store.count_readings("pole-1") == 3
        with pytest.raises(Replay):
            store.accept_signature("pole-1", "a" * 64, expires_ms=NOW + 10, now_ms=NOW)
        store.accept_signature("pole-1", "e" * 64, expires_ms=NOW + 10, now_ms=NOW)
        # once expired (the timestamp window has passed) the signature is forgotten
        store.accept_signature("pole-1", "a" * 64, expires_ms=NOW + 100, now_ms=NOW + 11)

    def test_unknown_node_stores_nothing(self, store):
        with pytest.raises(UnknownNode):
            store.ingest(batch(range(3), node="ghost"), signature="a" * 64, expires_ms=NOW, now_ms=NOW)
        assert store.count_readings() == 0

    def test_gaps_incidents_health(self, store):
        store.add_node("pole-1", KEY, NOW)
        gap = Gap(1, 100, 199, 100, NOW - 5000, NOW - 10, "evicted_size")
        inc = Incident(4, NOW, "sensor_fault", "bme280: EIO", 2)
        b = batch(range(2), gaps=[gap], incidents=[inc], health={"backlog_readings": 77, "firmware": "x"})
        r = store.ingest(b, signature="a" * 64, expires_ms=NOW + 1, now_ms=NOW)
        assert (r.gaps, r.incidents) == (1, 1)
        r = store.ingest(b, signature="b" * 64, expires_ms=NOW + 1, now_ms=NOW + 9)
        assert (r.stored, r.duplicates, r.gaps, r.incidents) == (0, 2, 0, 0)
        assert store.gaps("pole-1") == [gap]
        assert store.incidents("pole-1") == [inc]
        (info,) = store.list_nodes()
        assert info.last_seen_ms == NOW + 9 and info.health == {"backlog_readings": 77, "firmware": "x"}
        assert (info.readings, info.gaps, info.missing_readings, info.incidents) == (2, 1, 100, 1)

    def test_a_gap_resent_longer_is_extended_not_counted_twice(self, store):
        """The node extends its pending gap while a lost ack is retried: one gap, the longest range."""
        store.add_node("pole-1", KEY, NOW)
        short = Gap(1, 100, 199, 100, NOW - 5000, NOW - 10, "evicted_size")
        longer = Gap(1, 100, 349, 250, NOW - 5000, NOW - 5, "evicted_size")
        for i, g in enumerate([short, longer, short]):  # the short one again: a stale resend
            store.ingest(batch([], gaps=[g]), signature=f"{i:064x}", expires_ms=NOW + 1, now_ms=NOW)
        other = Gap(1, 100, 120, 21, NOW - 5000, NOW - 4000, "rejected")  # another reason stays apart
        store.ingest(batch([], gaps=[other]), signature="f" * 64, expires_ms=NOW + 1, now_ms=NOW)
        assert store.gaps("pole-1") == [longer, other] or store.gaps("pole-1") == [other, longer]
        (info,) = store.list_nodes()
        assert (info.gaps, info.missing_readings) == (2, 271)

    def test_concurrent_overlapping_ingest_stores_once(self, store):
        store.add_node("pole-1", KEY, NOW)
        errors = []

        def send(i):
            try:
                store.ingest(batch(range(i * 50, i * 50 + 200)), signature=f"{i:064x}",
                             expires_ms=NOW + 1, now_ms=NOW)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert store.seqs("pole-1", 1) == list(range(450))

    def test_reopen_keeps_everything(self, store, store_url):
        store.add_node("pole-1", KEY, NOW)
        store.ingest(batch(range(4)), signature="a" * 64, expires_ms=NOW + 10, now_ms=NOW)
        store.close()
        again = open_store(store_url)
        try:
            assert again.count_readings("pole-1") == 4 and again.node_key("pole-1") == KEY
            with pytest.raises(Replay):  # survives the restart
                again.accept_signature("pole-1", "a" * 64, expires_ms=NOW + 10, now_ms=NOW)
        finally:
            again.close()


def test_open_store_rejects_unknown_scheme(tmp_path):
    from central.store import StoreError

    with pytest.raises(StoreError, match="expected sqlite"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/central.db")


def test_query_reads_beside_a_write_and_a_skippable_write_is_skipped(store):
    """`query` runs on a read connection while a write transaction is open; a write with
    ``wait=False`` does not wait for it (it returns BUSY without running)."""
    from central.store import BUSY

    store.add_node("pole-1", KEY, NOW)
    held, release, ran = threading.Event(), threading.Event(), []

    def hold(tx):
        tx.execute("UPDATE nodes SET last_seen_ms = 1 WHERE node_id = ?", ("pole-1",))
        held.set()
        release.wait(20)

    writer = threading.Thread(target=store.transaction, args=(hold,), kwargs={"write": True})
    writer.start()
    try:
        assert held.wait(10)
        assert store.query("SELECT node_id, last_seen_ms FROM nodes") == [("pole-1", None)]  # last commit
        assert store.transaction(lambda tx: ran.append(1), write=True, wait=False) is BUSY and ran == []
    finally:
        release.set()
        writer.join(20)
    assert store.query("SELECT last_seen_ms FROM nodes") == [(1,)]
    assert store.transaction(lambda tx: ran.append(1) or "done", write=True, wait=False) == "done"
