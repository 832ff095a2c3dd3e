"""#20: the buffer acts on the central's receipt when its numbering collides (both buffers), and
tells a lost or rolled-back file from what the agent's state file and the epoch file knew (SQLite)."""

from __future__ import annotations

import shutil

import pytest

from node.buffer import SqliteBuffer
from node.buffer.collision import Receipt, Segments
from node.buffer.store import read_epoch_file
from node.protocol import ProtocolError
from tests.buffer.conftest import cycle, stamp


def fill(buf, start: int, cycles: int) -> None:
    for i in range(start, start + cycles):
        buf.put(cycle(i), stamp(i, synced=i % 3 != 0))  # every third cycle unsynced: clk kept too


def content(r):
    return (r.channel, r.value, r.flags, r.wall_ms, r.boot_ms, r.boot_id)


def pending(buf):
    """Gaps and incidents waiting, without keeping the claim."""
    batch = buf.claim(1, max_records=200)
    if batch is None:
        return [], []
    buf.release(batch.id)
    return batch.gaps, batch.incidents


# ---------------------------------------------------------------- the receipt and the segments
def test_a_receipt_is_read_strictly_and_an_older_centrals_answer_has_none():
    assert Receipt.from_answer({"stored": 5}) == Receipt()  # an older central: nothing known
    r = Receipt.from_answer({"high_seq": 9, "max_epoch": 3, "conflicts": 2, "conflict_seqs": [8, 4]})
    assert (r.high_seq, r.max_epoch, r.conflicts, r.conflict_seqs, r.complete) == (9, 3, 2, (4, 8), True)
    for bad in ("<html>", {"high_seq": True}, {"conflicts": "3"}, {"conflicts": 1, "conflict_seqs": [1, 2]},
                {"conflicts": 2, "conflict_seqs": [1, "x"]}):
        with pytest.raises(ProtocolError):
            Receipt.from_answer(bad)
    assert not Receipt(high_seq=10).collides(10) and Receipt(high_seq=11).collides(10)
    assert Receipt(conflicts=1).collides(10) and not Receipt(conflicts=3, conflict_seqs=(1,)).complete


def test_segments_say_which_epoch_a_seq_belongs_to():
    s = Segments.load(None, 4)
    assert s.epoch_of(1) == 4 and s.bounds(7) == (0, 1 << 62)
    s.start(101, 5)
    s.start(151, 9)
    assert [s.epoch_of(q) for q in (1, 100, 101, 150, 151, 10**9)] == [4, 4, 5, 5, 9, 9]
    assert s.bounds(120) == (101, 150) and s.bounds(100) == (0, 100)
    assert s.split([99, 100, 101, 160]) == [(4, [99, 100]), (5, [101]), (9, [160])]
    again = Segments.load(s.dump(), 9)
    assert again.pairs == s.pairs
    assert Segments.load(s.dump(), 10).pairs == [(0, 10)]  # meta epoch disagrees: whole file is it
    again.prune(120)
    assert again.pairs == [(101, 5), (151, 9)]
    again.prune(None)
    assert again.pairs == [(151, 9)]


# ---------------------------------------------------------------- acting on the receipt (both buffers)
def test_conflicts_start_a_new_epoch_and_put_the_readings_again_with_their_content(make_buffer):
    buf = make_buffer()
    fill(buf, 0, 20)  # seqs 1..100
    shared_id = buf.stats().buffer_id
    batch = buf.claim(100)
    assert (batch.epoch, batch.readings[0].seq, batch.readings[-1].seq) == (1, 1, 100)
    original = {r.seq: content(r) for r in batch.readings}
    conflicting = tuple(range(61, 101))
    done = buf.ack_receipt(batch.id, Receipt(high_seq=100, max_epoch=3, conflicts=40,
                                             conflict_seqs=conflicting))
    assert (done.acked, done.new_epoch, done.moved, done.released, done.kind) == (True, 4, 40, 0,
                                                                                  "identity_clash")
    assert buf.epoch == 4 and buf.stats().epoch == 4
    assert buf.stats().buffer_id != shared_id  # a copy of a shared file takes its own id
    again = buf.claim(1000)
    assert again.epoch == 4
    assert [r.seq for r in again.readings] == list(range(101, 141))
    assert [content(r) for r in again.readings] == [original[s] for s in conflicting]
    (inc,) = again.incidents
    assert inc.kind == "identity_clash" and inc.count == 40
    assert "epoch 1" in inc.detail and "new epoch 4 from seq 101" in inc.detail and "61..100" in inc.detail
    assert again.gaps == []  # the central held nothing above our top: no rolled-back range
    buf.ack(again.id)
    fill(buf, 20, 1)
    nxt = buf.claim(100)
    assert nxt.epoch == 4 and nxt.readings[0].seq == 141


def test_a_high_seq_above_our_top_is_a_rollback_range_given_as_a_gap(make_buffer):
    buf = make_buffer()
    fill(buf, 0, 6)  # 1..30
    batch = buf.claim(10)
    done = buf.ack_receipt(batch.id, Receipt(high_seq=502, max_epoch=1, conflicts=0))
    assert done.new_epoch == 2 and done.moved == 0
    gaps, incidents = pending(buf)
    assert [(g.epoch, g.first_seq, g.last_seq, g.reason) for g in gaps] == [(1, 31, 502, "buffer_rollback")]
    assert [i.kind for i in incidents] == ["identity_clash"]  # no evidence in the files of a rollback


def test_older_epochs_stay_apart_and_their_conflicts_move_to_the_current_one(make_buffer):
    buf = make_buffer()
    fill(buf, 0, 20)  # 1..100 in epoch 1
    first = buf.claim(50)
    buf.ack_receipt(first.id, Receipt(high_seq=50, conflicts=10, conflict_seqs=tuple(range(41, 51))))
    assert buf.epoch == 2
    fill(buf, 20, 2)  # 111..120 in epoch 2 (101..110: the 10 put again)
    old = buf.claim(1000)
    assert old.epoch == 1 and [r.seq for r in old.readings] == list(range(51, 101))  # not past the change
    done = buf.ack_receipt(old.id, Receipt(high_seq=200, conflicts=5, conflict_seqs=(51, 52, 53, 54, 55)))
    assert (done.new_epoch, done.moved, done.kind) == (None, 5, None)  # epoch 1 is left already
    assert buf.epoch == 2
    rest = buf.claim(1000)
    assert rest.epoch == 2 and [r.seq for r in rest.readings] == list(range(101, 126))
    gaps, _ = pending(buf)
    assert gaps == []  # the rollback range of an epoch already left is not ours to claim again


def test_a_conflict_list_cut_at_its_limit_acknowledges_up_to_its_last_seq_and_sends_the_rest_again(
        make_buffer):
    buf = make_buffer()
    fill(buf, 0, 20)
    batch = buf.claim(100)
    done = buf.ack_receipt(batch.id, Receipt(high_seq=100, conflicts=30, conflict_seqs=tuple(range(1, 11))))
    assert (done.moved, done.released, done.new_epoch) == (10, 90, 2)
    old = buf.claim(1000)
    assert old.epoch == 1 and [r.seq for r in old.readings] == list(range(11, 101))


def test_a_receipt_without_trouble_is_a_plain_ack(make_buffer):
    buf = make_buffer()
    fill(buf, 0, 4)
    batch = buf.claim(20)
    done = buf.ack_receipt(batch.id, Receipt(high_seq=20, max_epoch=1, conflicts=0))
    assert (done.acked, done.new_epoch, done.moved) == (True, None, 0)
    assert buf.claim(20) is None and buf.epoch == 1
    assert buf.ack_receipt(999, Receipt(conflicts=3)).acked is False


def test_evictions_of_an_older_epoch_are_gaps_of_that_epoch(make_buffer, clock):
    buf = make_buffer(max_age=60)
    fill(buf, 0, 2)
    first = buf.claim(1)
    buf.ack_receipt(first.id, Receipt(high_seq=1, conflicts=1, conflict_seqs=(1,)))
    assert buf.epoch == 2
    gaps, _ = pending(buf)
    assert gaps == []
    clock.t += 10**6  # everything is old now
    fill(buf, 500, 1)
    gaps, _ = pending(buf)
    assert {(g.epoch, g.reason) for g in gaps} >= {(1, "evicted_age"), (2, "evicted_age")}
    assert all(g.last_seq <= 10 for g in gaps if g.epoch == 1)


# ---------------------------------------------------------------- the file (SQLite)
def open_buf(tmp_path, clock, **kw):
    b = SqliteBuffer(tmp_path / "buffer.db", "node-1", clock=clock, timer=clock, **kw)
    b.open()
    return b


def known_of(buf):
    st = buf.stats()
    return {"epoch": st.epoch, "top": st.last_seq, "acked": st.acked_seq, "buffer_id": st.buffer_id,
            "segments": [list(p) for p in st.segments]}


def test_the_new_epoch_and_its_segments_survive_a_restart(tmp_path, clock):
    buf = open_buf(tmp_path, clock)
    fill(buf, 0, 20)
    batch = buf.claim(50)
    buf.ack_receipt(batch.id, Receipt(high_seq=50, max_epoch=6, conflicts=1, conflict_seqs=(50,)))
    assert buf.epoch == 7 and read_epoch_file(tmp_path / "buffer.db.epoch") == 7
    buffer_id = buf.buffer_id
    buf.close()
    buf = open_buf(tmp_path, clock)
    assert (buf.epoch, buf.buffer_id) == (7, buffer_id) and len(buffer_id) == 32  # the new id is kept
    old = buf.claim(1000)
    assert old.epoch == 1 and [r.seq for r in old.readings] == list(range(51, 101))
    buf.ack(old.id)
    new = buf.claim(1000)
    assert new.epoch == 7 and [r.seq for r in new.readings] == [101]
    buf.close()


def test_a_deleted_file_is_a_lost_buffer_with_a_gap_over_what_was_not_acknowledged(tmp_path, clock):
    buf = open_buf(tmp_path, clock)
    fill(buf, 0, 20)
    batch = buf.claim(30)
    buf.ack(batch.id)
    known = known_of(buf)
    assert (known["top"], known["acked"]) == (100, 30)
    buf.close()
    for p in tmp_path.glob("buffer.db*"):
        if not p.name.endswith(".epoch"):
            p.unlink()
    buf = open_buf(tmp_path, clock, known=known)
    assert buf.epoch == 2 and buf.buffer_id != known["buffer_id"]
    gaps, incidents = pending(buf)
    assert [(g.epoch, g.first_seq, g.last_seq, g.count, g.reason) for g in gaps] == [
        (1, 31, 100, 70, "buffer_lost")]
    (inc,) = incidents
    assert inc.kind == "buffer_lost" and "epoch 1 is missing" in inc.detail and inc.count == 70
    buf.close()


def test_a_deleted_file_without_a_state_file_is_still_an_incident(tmp_path, clock):
    buf = open_buf(tmp_path, clock)
    fill(buf, 0, 2)
    buf.close()
    (tmp_path / "buffer.db").unlink()
    buf = open_buf(tmp_path, clock)
    gaps, incidents = pending(buf)
    assert gaps == [] and [i.kind for i in incidents] == ["buffer_lost"]
    assert "unknown" in incidents[0].detail and buf.epoch == 2
    buf.close()


def test_a_first_start_records_nothing(tmp_path, clock):
    buf = open_buf(tmp_path, clock, known=None)
    assert pending(buf) == ([], []) and buf.epoch == 1
    buf.close()


def test_a_file_rolled_back_to_an_earlier_copy_starts_a_new_epoch_at_once(tmp_path, clock):
    buf = open_buf(tmp_path, clock)
    fill(buf, 0, 6)  # 1..30
    buf.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in tmp_path.glob("buffer.db*"):
        shutil.copy2(p, copy / p.name)
    buf = open_buf(tmp_path, clock)
    fill(buf, 6, 14)  # 31..100
    sent = buf.claim(20)
    buf.ack(sent.id)  # 1..20 acknowledged: the copy still holds them
    known = known_of(buf)
    buf.close()
    for p in copy.iterdir():  # the card loses its last writes
        shutil.copy2(p, tmp_path / p.name)
    buf = open_buf(tmp_path, clock, known=known)
    assert buf.epoch == 2 and buf.rolled_back and "holds seqs up to 30" in buf.rolled_back
    assert buf.buffer_id == known["buffer_id"]  # the same file, only behind: it keeps its id
    gaps, incidents = pending(buf)
    assert [(g.epoch, g.first_seq, g.last_seq, g.reason) for g in gaps] == [(1, 31, 100, "buffer_rollback")]
    assert [i.kind for i in incidents] == ["buffer_rollback"]
    old = buf.claim(1000)  # the copy's readings go in their own epoch: the central judges each
    assert old.epoch == 1 and [r.seq for r in old.readings] == list(range(1, 31))
    buf.release(old.id)
    fill(buf, 100, 1)
    new = buf.claim(1000, newest_first=True)
    assert new.epoch == 2 and [r.seq for r in new.readings] == list(range(31, 36))
    # a later collision of the new epoch is named a rollback: the files showed one
    done = buf.ack_receipt(new.id, Receipt(high_seq=40, conflicts=1, conflict_seqs=(35,)))
    assert done.kind == "buffer_rollback" and done.new_epoch == 3
    buf.close()


def test_an_epoch_file_ahead_of_the_database_is_a_rollback(tmp_path, clock):
    buf = open_buf(tmp_path, clock)
    fill(buf, 0, 2)
    buf.close()
    (tmp_path / "buffer.db.epoch").write_text("5\n")
    buf = open_buf(tmp_path, clock)
    assert buf.epoch == 6 and buf.rolled_back
    assert [i.kind for i in pending(buf)[1]] == ["buffer_rollback"]
    buf.close()


def test_a_state_file_of_another_buffer_is_not_compared(tmp_path, clock):
    buf = open_buf(tmp_path, clock)
    fill(buf, 0, 2)
    buf.close()
    buf = open_buf(tmp_path, clock, known={"epoch": 1, "top": 900, "acked": 0, "buffer_id": "f" * 32})
    assert buf.epoch == 1 and buf.rolled_back is None and pending(buf)[1] == []
    buf.close()


@pytest.mark.parametrize("keep", [0, 1])
def test_a_state_file_that_matches_the_file_changes_nothing(tmp_path, clock, keep):
    buf = open_buf(tmp_path, clock)
    fill(buf, 0, 3)
    if keep:
        buf.ack(buf.claim(4).id)
    known = known_of(buf)
    buf.close()
    buf = open_buf(tmp_path, clock, known=known)
    assert buf.epoch == 1 and buf.rolled_back is None and pending(buf)[1] == []
    buf.close()
