"""#20: the uploader acts on the receipt fields of a 200 answer (high_seq, max_epoch, conflicts).

The answer naming conflicts is a canned, signed answer of the fault proxy (a double of the central's
answer only: the real buffer, uploader and receiver do everything else); every other request goes
through to the real receiver, which stores what the node sends in its new epoch.
"""

from __future__ import annotations

import time

from tests.uploader.conftest import NODE, fill
from tests.uploader.test_uploader import drain, make_uploader


def answer(readings: int, *, epoch: int = 1, batch: int = 1, **receipt):
    conflicts = receipt.get("conflicts", 0)
    return {"stored": readings - conflicts, "duplicates": 0, "gaps": 0, "incidents": 0,
            "readings": readings, "batch": batch, "epoch": epoch,
            "server_time_ms": int(time.time() * 1000), **receipt}


def content(r):
    return (r.channel, r.value, r.flags, r.wall_ms, r.boot_ms, r.boot_id)


def test_conflicts_in_an_answer_move_the_readings_to_a_new_epoch_and_the_central_stores_them(
        buf, central, proxy):
    total = fill(buf, 20)  # seqs 1..100
    snapshot = buf.claim(total)
    original = {r.seq: content(r) for r in snapshot.readings}
    buf.release(snapshot.id)
    up = make_uploader(buf, proxy.url, central.key, live_readings=total, max_batch_readings=1000)
    conflicting = list(range(61, 101))
    proxy.set("status", count=1, status=200, sign_key=central.key,
              body=answer(total, batch=snapshot.id + 1, high_seq=100, max_epoch=3, conflicts=40,
                          conflict_seqs=conflicting))
    res = up.run_round()
    assert res.error is None and res.backlog_empty
    assert (res.conflicts, res.moved, res.new_epoch) == (40, 40, 4)
    st = up.status()
    assert (st["conflicts"], st["identity_clashes"], st["rollbacks"]) == (40, 1, 0)
    assert st["last_collision"]["kind"] == "identity_clash" and st["last_collision"]["epoch"] == 1
    assert buf.stats().epoch == 4 and buf.stats().readings == 0
    # the readings the central said it held otherwise are at the central, in epoch 4, unchanged
    assert central.seqs(4) == list(range(101, 141))
    stored = {r.seq: r for r in central.store.readings(NODE) if r.epoch == 4}
    assert [content(stored[s]) for s in range(101, 141)] == [original[s] for s in conflicting]
    kinds = [i.kind for i in central.store.incidents(NODE)]
    assert kinds == ["identity_clash"]


def test_a_cut_conflict_list_sends_the_unjudged_rest_again(buf, central, proxy):
    total = fill(buf, 300)  # 1..1500
    up = make_uploader(buf, proxy.url, central.key, live_readings=total, max_batch_readings=5000)
    proxy.set("status", count=1, status=200, sign_key=central.key,  # the list stops at 1,000
              body=answer(total, high_seq=1500, conflicts=1200, conflict_seqs=list(range(1, 1001))))
    res = up.run_round()
    assert res.error is None and res.backlog_empty
    assert (res.conflicts, res.moved, res.new_epoch) == (1200, 1000, 2)
    assert central.seqs(1) == list(range(1001, 1501))  # the unjudged rest, sent again in its epoch
    assert central.seqs(2) == list(range(1501, 2501))  # the 1,000 listed, put again


def test_answers_without_receipt_fields_ack_as_before(buf, central, proxy):
    total = fill(buf, 10)
    up = make_uploader(buf, proxy.url, central.key, live_readings=20, max_batch_readings=1000)
    res = up.run_round()
    assert res.backlog_empty and (res.readings, res.conflicts, res.new_epoch) == (total, 0, None)
    assert central.seqs(1) == list(range(1, total + 1)) and buf.stats().epoch == 1


def test_a_malformed_receipt_keeps_the_batch(buf, central, proxy):
    total = fill(buf, 10)
    up = make_uploader(buf, proxy.url, central.key, live_readings=total, max_batch_readings=1000)
    proxy.set("status", count=1, status=200, sign_key=central.key,
              body=answer(total, conflicts=2, conflict_seqs=[1, "2"]))
    res = up.run_round()
    assert res.readings == 0 and res.error
    assert "receipt unreadable" in res.error and "conflict_seqs" in res.error
    assert buf.stats().readings == total and buf.stats().claimed == 0  # nothing deleted on a bad receipt
    up.run_round()  # forced: the next answer is the central's own
    assert central.seqs(1) == list(range(1, total + 1)) and buf.stats().readings == 0


def test_a_cloned_card_loses_nothing_at_the_real_central(tmp_path, central):
    """No double at all: two buffers copied from one card number alike; the real central answers."""
    import shutil

    from node.buffer import SqliteBuffer

    a = SqliteBuffer(tmp_path / "a" / "buffer.db", NODE)
    fill(a, 10)  # 1..50, then the card is copied
    a.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    a = SqliteBuffer(tmp_path / "a" / "buffer.db", NODE)
    b = SqliteBuffer(tmp_path / "b" / "buffer.db", NODE)
    fill(a, 10, start=10)  # 51..100 on the original
    fill(b, 10, start=50)  # 51..100 on the clone: other values
    clone = b.claim(100)
    theirs = {r.seq: content(r) for r in clone.readings}
    b.release(clone.id)
    up_a = make_uploader(a, central.url, central.key)
    up_b = make_uploader(b, central.url, central.key)
    try:
        assert up_a.run_round().backlog_empty
        res = up_b.run_round()
        assert res.backlog_empty and res.error is None
        assert (res.conflicts, res.moved, res.new_epoch) == (50, 50, 2)
        assert central.seqs(1) == list(range(1, 101)) and central.seqs(2) == list(range(101, 151))
        stored = {r.seq: r for r in central.store.readings(NODE) if r.epoch == 2}
        assert [content(stored[s]) for s in range(101, 151)] == [theirs[s] for s in range(51, 101)]
        kinds = [i.kind for i in central.store.incidents(NODE)]
        assert "identity_clash" in kinds
        assert a.stats().readings == 0 and b.stats().readings == 0 and b.stats().epoch == 2
    finally:
        up_a.close()
        up_b.close()
        a.close()
        b.close()


def test_a_rolled_back_buffer_sends_its_old_readings_as_duplicates_and_numbers_anew(tmp_path, central):
    import shutil

    from node.buffer import SqliteBuffer

    path = tmp_path / "state" / "buffer.db"
    buf = SqliteBuffer(path, NODE)
    fill(buf, 10)  # 1..50
    buf.close()
    shutil.copytree(tmp_path / "state", tmp_path / "snapshot")  # what the card will fall back to
    buf = SqliteBuffer(path, NODE)
    fill(buf, 10, start=10)  # 51..100
    up = make_uploader(buf, central.url, central.key)
    assert up.run_round().backlog_empty
    st = buf.stats()
    known = {"buffer_id": st.buffer_id, "epoch": st.epoch, "top": st.last_seq, "acked": st.acked_seq}
    up.close()
    buf.close()
    shutil.rmtree(tmp_path / "state")
    shutil.copytree(tmp_path / "snapshot", tmp_path / "state")  # the power cut: writes lost

    buf = SqliteBuffer(path, NODE, known=known)
    buf.open()
    assert buf.epoch == 2 and buf.rolled_back
    fill(buf, 2, start=20)  # 51..60, now in epoch 2
    up = make_uploader(buf, central.url, central.key)
    try:
        res = drain(up)
        assert res[-1].backlog_empty and all(r.error is None for r in res)
        assert sum(r.duplicates for r in res) == 50 and sum(r.conflicts for r in res) == 0
        assert central.seqs(1) == list(range(1, 101))  # nothing stored twice, nothing over
        assert central.seqs(2) == list(range(51, 61))
        gaps = [g for g in central.store.gaps(NODE) if g.reason == "buffer_rollback"]
        assert [(g.epoch, g.first_seq, g.last_seq, g.count) for g in gaps] == [(1, 51, 100, 0)]
        assert "buffer_rollback" in [i.kind for i in central.store.incidents(NODE)]
    finally:
        up.close()
        buf.close()
