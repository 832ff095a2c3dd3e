"""#20: the uploader acts on the receipt fields of a 200 answer (high_seq, max_epoch, conflicts).

The answer naming conflicts is a canned, signed answer of the fault proxy (a double of the central's
answer only: the real buffer, uploader and receiver do everything else); every other request goes
through to the real receiver, which stores what the node sends in its new epoch.
"""

from __future__ import annotations

import time

from tests.uploader.conftest import NODE, fill
from tests.uploader.test_uploader import make_uploader


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
