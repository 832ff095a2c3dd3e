"""The buffer contract, run against MemoryBuffer and SqliteBuffer alike."""

from __future__ import annotations

from drivers.quality import Quality
from node.model import Stamp
from tests.buffer.conftest import CHANNELS, cycle, stamp


def test_put_numbers_readings_strictly_increasing(buffer):
    r1 = buffer.put(cycle(1), stamp(1))
    r2 = buffer.put(cycle(2, 3), stamp(2))
    assert (r1.first_seq, r1.last_seq, r1.durable) == (1, 5, True)
    assert (r2.first_seq, r2.last_seq) == (6, 8)
    empty = buffer.put([], stamp(3))
    assert empty.last_seq < empty.first_seq
    assert buffer.put(cycle(4, 1), stamp(4)).first_seq == 9


def test_claim_returns_readings_with_their_stamps(buffer):
    buffer.put(cycle(1), stamp(1))
    buffer.put(cycle(2), stamp(2))
    batch = buffer.claim(100)
    assert batch.node_id == "node-1" and batch.epoch == buffer.epoch and not batch.live
    assert [r.seq for r in batch.readings] == list(range(1, 11))
    first, sixth = batch.readings[0], batch.readings[5]
    assert (first.channel, first.value, first.flags) == (CHANNELS[0], 1.0, 0)
    assert (first.wall_ms, first.boot_ms, first.boot_id) == (stamp(1).wall_ms, stamp(1).boot_ms, "boot-a")
    assert batch.readings[1].flags == 1 and batch.readings[1].value == 1.01
    assert sixth.wall_ms == stamp(2).wall_ms and sixth.value == 2.0


def test_fault_values_are_none(buffer):
    from node.model import Sample
    buffer.put([Sample("air.pm2_5_ugm3", None, int(Quality.FAULT))], stamp(1))
    r = buffer.claim(10).readings[0]
    assert r.value is None and r.flags == Quality.FAULT


def test_nothing_to_claim_gives_none(buffer):
    assert buffer.claim(10) is None


def test_ack_deletes_and_release_returns(buffer):
    for i in range(4):
        buffer.put(cycle(i), stamp(i))
    a = buffer.claim(7)
    assert [r.seq for r in a.readings] == list(range(1, 8))
    b = buffer.claim(7)
    assert [r.seq for r in b.readings] == list(range(8, 15))  # claims never overlap
    assert buffer.stats().claimed == 14
    assert buffer.release(b.id)
    assert buffer.ack(a.id)
    assert not buffer.ack(a.id)  # acking twice is harmless
    c = buffer.claim(100)
    assert [r.seq for r in c.readings] == list(range(8, 21))
    assert buffer.stats().readings == 13


def test_newest_first_claims_the_live_batch(buffer):
    for i in range(4):
        buffer.put(cycle(i), stamp(i))
    live = buffer.claim(6, newest_first=True)
    assert live.live
    assert [r.seq for r in live.readings] == list(range(15, 21))  # sorted ascending
    back = buffer.claim(100)
    assert [r.seq for r in back.readings] == list(range(1, 15))
    assert buffer.claim(100) is None
    buffer.ack(live.id)
    buffer.release(back.id)
    again = buffer.claim(100, newest_first=True)
    assert [r.seq for r in again.readings] == list(range(1, 15))


def test_sequence_numbers_are_never_reused_after_ack(buffer):
    buffer.put(cycle(1), stamp(1))
    batch = buffer.claim(100, newest_first=True)
    buffer.ack(batch.id)
    assert buffer.stats().readings == 0
    assert buffer.put(cycle(2), stamp(2)).first_seq == 6
    assert buffer.stats().last_seq == 10


def test_unsynced_readings_are_flagged_and_corrected(buffer):
    buffer.put(cycle(1), stamp(1, synced=False))
    buffer.put(cycle(2), stamp(2, synced=False, boot="boot-b"))
    buffer.put(cycle(3), stamp(3))
    batch = buffer.claim(100)
    assert all(r.flags & Quality.CLOCK_UNSYNCED for r in batch.readings[:10])
    assert not any(r.flags & Quality.CLOCK_UNSYNCED for r in batch.readings[10:])
    buffer.release(batch.id)
    assert buffer.correct_clock("boot-a", 3_600_000) == 5
    assert buffer.correct_clock("boot-a", 3_600_000) == 0  # only once
    readings = buffer.claim(100).readings
    a, b = readings[0], readings[5]
    assert a.flags & Quality.CLOCK_CORRECTED and not a.flags & Quality.CLOCK_UNSYNCED
    assert a.wall_ms == stamp(1).wall_ms + 3_600_000
    assert a.flags & ~int(Quality.CLOCK_CORRECTED) == 0
    assert b.flags & Quality.CLOCK_UNSYNCED and b.wall_ms == stamp(2).wall_ms
    assert buffer.correct_clock("no-such-boot", 5) == 0


def test_correct_clock_to_the_true_base_whatever_base_readings_were_stamped_with(buffer):
    """Two processes of one boot stamped unsynced readings on different bases: both go to true time."""
    year = 365 * 86_400_000
    behind = Stamp(stamp(0).wall_ms - year, stamp(0).boot_ms, "boot-a", False)  # raw clock, a year behind
    ahead = Stamp(stamp(1).wall_ms + 7_000, stamp(1).boot_ms, "boot-a", False)  # another base
    buffer.put(cycle(0, 1), behind)
    buffer.put(cycle(1, 1), ahead)
    true_base = stamp(0).wall_ms - stamp(0).boot_ms
    assert buffer.correct_clock("boot-a", year, true_base_ms=true_base) == 2
    got = buffer.claim(10).readings
    assert [r.wall_ms for r in got] == [stamp(0).wall_ms, stamp(1).wall_ms]
    assert all(r.flags & Quality.CLOCK_CORRECTED and not r.flags & Quality.CLOCK_UNSYNCED for r in got)


def test_dead_letter_records_gap_and_incident(buffer):
    for i in range(3):
        buffer.put(cycle(i), stamp(i))
    bad = buffer.claim(5)
    assert buffer.dead_letter(bad.id, "400 channel unknown")
    nxt = buffer.claim(100)
    assert [r.seq for r in nxt.readings] == list(range(6, 16))
    assert [(g.first_seq, g.last_seq, g.count, g.reason) for g in nxt.gaps] == [(1, 5, 5, "rejected")]
    assert nxt.gaps[0].first_wall_ms == stamp(0).wall_ms
    assert [(i.kind, i.count) for i in nxt.incidents] == [("batch_rejected", 5)]
    assert "400 channel unknown" in nxt.incidents[0].detail
    assert buffer.stats().gaps_pending == 1 and buffer.stats().incidents_pending == 1
    buffer.ack(nxt.id)
    st = buffer.stats()
    assert (st.readings, st.gaps_pending, st.incidents_pending) == (0, 0, 0)
    assert buffer.claim(100) is None


def test_a_dead_letter_never_deletes_the_gaps_and_incidents_riding_along(buffer):
    """#21: the records of a loss leave the buffer only with an acknowledgement of the central."""
    for i in range(2):
        buffer.put(cycle(i), stamp(i))
    buffer.dead_letter(buffer.claim(5).id, "422 bad reading")  # a 'rejected' gap + incident
    batch = buffer.claim(100)
    assert [g.reason for g in batch.gaps] == ["rejected"] and len(batch.incidents) == 1
    assert buffer.dead_letter(batch.id, "422 another bad reading")
    st = buffer.stats()
    assert st.readings == 0 and st.gaps_pending >= 1 and st.incidents_pending == 2
    meta = buffer.claim(100)
    assert meta is not None and meta.readings == [] and len(meta.incidents) == 2
    assert buffer.dead_letter(meta.id, "413 too large")  # nothing to drop: the records stay
    assert buffer.stats().incidents_pending == 2
    meta = buffer.claim(100)
    assert buffer.ack(meta.id)
    st = buffer.stats()
    assert (st.readings, st.gaps_pending, st.incidents_pending) == (0, 0, 0)
    assert buffer.claim(100) is None


def test_max_records_bounds_the_ride_along(buffer):
    for i in range(5):
        buffer.record_incident("sensor_fault", f"fault {i}")
    batch = buffer.claim(10, max_records=2)
    assert [i.detail for i in batch.incidents] == ["fault 0", "fault 1"]
    assert [i.detail for i in buffer.claim(10, max_records=2).incidents] == ["fault 2", "fault 3"]


def test_refuse_record_replaces_an_incident_and_turns_a_gap_into_an_incident(buffer):
    for i in range(2):
        buffer.put(cycle(i), stamp(i))
    buffer.dead_letter(buffer.claim(3).id, "422 bad reading")
    buffer.record_incident("odd", "detail the central refuses")
    batch = buffer.claim(100)
    assert len(batch.gaps) == 1 and [i.kind for i in batch.incidents] == ["batch_rejected", "odd"]
    assert buffer.refuse_record(batch.id, "incident", 1, "HTTP 422 incidents[1].kind")
    assert buffer.refuse_record(batch.id, "gap", 0, "HTTP 422 gaps[0].reason")
    assert not buffer.refuse_record(batch.id, "gap", 5, "no such record")
    buffer.release(batch.id)
    batch = buffer.claim(100)
    assert batch.gaps == []
    kinds = {i.kind: i for i in batch.incidents}
    assert set(kinds) == {"batch_rejected", "record_refused", "gap_refused"}
    assert "detail the central refuses" in kinds["record_refused"].detail
    assert kinds["gap_refused"].count == 3 and "seq 1..3 rejected" in kinds["gap_refused"].detail


def test_incidents_are_cut_to_what_the_central_accepts(buffer):
    buffer.record_incident("k" * 100, "x\x00" * 5000, 3)
    i = buffer.claim(1).incidents[0]
    assert len(i.kind) <= 64 and len(i.detail) <= 4096 and "\x00" not in i.detail

def test_incidents_ride_along_once(buffer):
    buffer.record_incident("sensor_fault", "air: no answer at 0x12", 3)
    batch = buffer.claim(10)
    assert batch.readings == [] and [(i.kind, i.count) for i in batch.incidents] == [("sensor_fault", 3)]
    assert buffer.claim(10) is None  # a claimed incident is not handed out twice
    buffer.release(batch.id)
    again = buffer.claim(10)
    assert len(again.incidents) == 1
    buffer.ack(again.id)
    assert buffer.claim(10) is None


def test_max_age_evicts_old_synced_readings(make_buffer, clock):
    buf = make_buffer(max_age=3600.0)
    old = stamp(0)
    buf.put(cycle(0), old)
    buf.put(cycle(1), stamp(1, synced=False))  # unsynced times never age out
    clock.t = old.wall_ms / 1000 + 7200
    buf.put(cycle(2), stamp(2).__class__(int(clock.t * 1000), 1, "boot-a", True))
    batch = buf.claim(100)
    assert [r.seq for r in batch.readings] == list(range(6, 16))
    assert [(g.first_seq, g.last_seq, g.count, g.reason) for g in batch.gaps] == [(1, 5, 5, "evicted_age")]


def test_one_never_corrected_unsynced_cycle_does_not_stop_age_eviction(make_buffer, clock):
    """#21: the unsynced cycle stays (it never ages out), the synced ones after it still do."""
    buf = make_buffer(max_age=3600.0)
    buf.put(cycle(0), stamp(0, synced=False))  # an early boot cycle no correction ever reached
    for i in range(1, 4):
        buf.put(cycle(i), stamp(i))
    clock.t = stamp(3).wall_ms / 1000 + 7200  # two hours later
    buf.put(cycle(4), stamp(4).__class__(int(clock.t * 1000), 1, "boot-a", True))
    batch = buf.claim(100)
    assert [r.seq for r in batch.readings] == list(range(1, 6)) + list(range(21, 26))
    assert [(g.first_seq, g.last_seq, g.reason) for g in batch.gaps] == [(6, 20, "evicted_age")]


def test_stats(buffer):
    buffer.put(cycle(1), stamp(1))
    buffer.put(cycle(2), stamp(2))
    st = buffer.stats()
    assert (st.node_id, st.readings, st.last_seq, st.claimed) == ("node-1", 10, 10, 0)
    assert (st.oldest_wall_ms, st.newest_wall_ms) == (stamp(1).wall_ms, stamp(2).wall_ms)
    assert st.epoch == buffer.epoch >= 1
    assert buffer.check_integrity() == "ok"


def test_context_manager(make_buffer):
    with make_buffer() as buf:
        assert buf.put(cycle(1), stamp(1)).durable


def test_memory_buffer_is_bounded_by_readings():
    from node.buffer import MemoryBuffer
    buf = MemoryBuffer("node-1", max_readings=12)
    for i in range(5):
        buf.put(cycle(i), stamp(i))
    batch = buf.claim(100)
    assert [r.seq for r in batch.readings] == list(range(14, 26))
    assert [(g.first_seq, g.last_seq, g.count, g.reason) for g in batch.gaps] == [(1, 13, 13, "evicted_size")]
