"""#20 on both stores: conflicts are never duplicates, the answer's numbering fields, hole gaps
counted by the central, identities and the incidents the central records itself."""

from __future__ import annotations

import itertools

import pytest

from central import integrity
from node.model import Gap, Quality, Reading
from node.protocol import MAX_CONFLICT_SEQS, VOLATILE_EPOCH_MIN, IngestBatch

KEY = bytes(range(32))
NOW = 1_764_100_000_000
_signatures = itertools.count()


def reading(seq: int, *, value: float | None = None, boot: str = "boot-a", flags: int = 0,
            wall_shift_ms: int = 0, boot_ms: int | None = None) -> Reading:
    return Reading(seq, f"w.ch{seq % 3}_c", seq * 0.25 if value is None else value, flags,
                   NOW + seq * 1000 + wall_shift_ms, seq * 1000 if boot_ms is None else boot_ms, boot)


def batch(readings, *, epoch: int = 1, gaps=(), health=None) -> IngestBatch:
    return IngestBatch("pole-1", epoch, NOW, list(readings), list(gaps), [], health or {},
                       {f"w.ch{i}_c": "°C" for i in range(3)})


def send(store, b: IngestBatch, now_ms: int = NOW):
    sig = f"{next(_signatures):064x}"
    return store.ingest(b, signature=sig, expires_ms=now_ms + 600_000, now_ms=now_ms)


@pytest.fixture
def node(store):
    store.add_node("pole-1", KEY, NOW)
    return store


def stats(store):
    return store.list_nodes("pole-1")[0]


def test_answer_fields_on_a_fresh_node_and_after(node):
    r = send(node, batch([]))
    assert (r.high_seq, r.max_epoch, r.conflicts, r.conflict_seqs) == (None, 1, 0, ())
    r = send(node, batch(reading(s) for s in range(1, 11)))
    assert (r.stored, r.duplicates, r.conflicts, r.high_seq, r.max_epoch) == (10, 0, 0, 10, 1)
    r = send(node, batch([reading(3)]))  # a resend: the central's high_seq stays the top it holds
    assert (r.stored, r.duplicates, r.high_seq) == (0, 1, 10)
    r = send(node, batch([reading(1)], epoch=3))
    assert (r.high_seq, r.max_epoch) == (1, 3)
    r = send(node, batch([reading(50)], epoch=2))  # an older epoch: max_epoch is still the highest
    assert (r.high_seq, r.max_epoch) == (50, 3)
    r = send(node, batch([reading(7)], epoch=VOLATILE_EPOCH_MIN + 5))  # volatile: not an epoch to count
    assert (r.high_seq, r.max_epoch) == (7, 3)


def test_a_conflict_is_not_stored_over_the_original_and_is_recorded(node):
    send(node, batch(reading(s) for s in range(1, 21)))
    # a rolled-back buffer numbers 11..30 again: 11..20 are new samples (other boot_ms and values)
    again = [reading(s, value=100.0 + s, boot_ms=500_000 + s) for s in range(11, 31)]
    r = send(node, batch(again))
    assert (r.stored, r.duplicates, r.conflicts) == (10, 0, 10)
    assert r.stored + r.duplicates + r.conflicts == 20
    assert r.conflict_seqs == tuple(range(11, 21)) and r.high_seq == 30
    kept = {s.seq: s.value for s in node.readings("pole-1")}
    assert all(kept[s] == s * 0.25 for s in range(1, 21))  # the originals
    assert all(kept[s] == 100.0 + s for s in range(21, 31))
    info = stats(node)
    assert info.conflicts == 10 and info.readings == 30
    own = [i for i in node.incidents("pole-1") if i.kind == "conflict"]
    assert len(own) == 1 and own[0].count == 10 and own[0].id == 1
    assert "10 readings of epoch 1 (seq 11..20)" in own[0].detail and "sent w.ch2_c=111.0 " in own[0].detail
    rows = node.query("SELECT seq, times, stored, sent FROM reading_conflicts WHERE node_id = ? ORDER BY seq",
                      ("pole-1",))
    assert [r[0] for r in rows] == list(range(11, 21)) and {r[1] for r in rows} == {1}
    assert rows[0][2].startswith("w.ch2_c=2.75 ") and rows[0][3].startswith("w.ch2_c=111.0 ")
    # the same conflicting batch again (its answer was lost): answered the same, counted once
    r = send(node, batch(again))
    assert (r.stored, r.duplicates, r.conflicts) == (0, 10, 10)
    assert stats(node).conflicts == 10 and stats(node).incidents == 1
    assert {r[0] for r in node.query("SELECT times FROM reading_conflicts")} == {2}


def test_what_a_duplicate_is(node):
    corrected = int(Quality.CLOCK_CORRECTED)
    send(node, batch([reading(s) for s in range(1, 6)] + [reading(6, flags=corrected)]))
    resent = [
        reading(1),                                          # the same: duplicate
        reading(2, wall_shift_ms=3_600_000, flags=corrected),  # re-stamped after a clock correction
        reading(3, wall_shift_ms=5),                         # another wall time, no clock bit: conflict
        reading(4, boot="boot-b"),                           # another boot: conflict
        reading(5, flags=int(Quality.SPIKE)),                # other quality flags: conflict
        reading(6, wall_shift_ms=-20),                       # stored corrected, sent raw: duplicate
    ]
    r = send(node, batch(resent))
    assert (r.duplicates, r.conflicts, r.conflict_seqs) == (3, 3, (3, 4, 5))
    stored = {s.seq: s for s in node.readings("pole-1")}
    assert stored[2].wall_ms == NOW + 2000 and stored[2].flags == 0  # the first stored is kept


def test_a_conflicting_reading_with_no_value(node):
    send(node, batch([Reading(1, "w.ch1_c", None, 8, NOW, 1000, "boot-a")]))
    r = send(node, batch([Reading(1, "w.ch1_c", 0.0, 8, NOW, 1000, "boot-a"),
                          Reading(2, "w.ch2_c", None, 8, NOW, 1000, "boot-a")]))
    assert (r.stored, r.duplicates, r.conflicts) == (1, 0, 1)
    r = send(node, batch([Reading(1, "w.ch1_c", None, 8, NOW, 1000, "boot-a")]))
    assert (r.duplicates, r.conflicts) == (1, 0)


def test_conflict_seqs_are_capped_but_the_count_is_exact(node):
    n = MAX_CONFLICT_SEQS + 200
    send(node, batch(reading(s) for s in range(1, n + 1)))
    r = send(node, batch(reading(s, boot="clone") for s in range(1, n + 1)))
    assert r.conflicts == n and r.conflict_seqs == tuple(range(1, MAX_CONFLICT_SEQS + 1))
    assert stats(node).conflicts == n


def test_a_sparse_batch_is_compared_without_reading_the_epoch_between(node):
    send(node, batch(reading(s) for s in (1, 2, 5000, 90_000)))
    r = send(node, batch([reading(1), reading(2, boot="x"), reading(3), reading(90_000, boot="x")]
                         + [reading(s) for s in range(200_000, 200_003)]))
    assert (r.stored, r.duplicates, r.conflicts, r.conflict_seqs) == (4, 1, 2, (2, 90_000))


def test_hole_gaps_count_what_the_central_lacks(node):
    send(node, batch(reading(s) for s in range(1, 11)))  # holds 1..10
    # the node rolled back to 4 and says 5..15 may be missing; the count it sends is not checked
    hole = Gap(1, 5, 15, 0, None, None, "buffer_rollback")
    r = send(node, batch([], gaps=[hole]))
    assert r.gaps == 1
    assert [(g.first_seq, g.last_seq, g.count) for g in node.gaps("pole-1")] == [(5, 15, 5)]
    assert stats(node).missing_readings == 5
    # extended later: 11..12 arrived meanwhile, so of 5..20 the central lacks 13..20
    send(node, batch([reading(11), reading(12)]))
    send(node, batch([], gaps=[Gap(1, 5, 20, 999, None, None, "buffer_rollback")]))
    assert [(g.last_seq, g.count) for g in node.gaps("pole-1")] == [(20, 8)]
    assert stats(node).missing_readings == 8
    # a lost buffer over an epoch the central holds whole: a gap with count 0, nothing missing
    send(node, batch([], gaps=[Gap(1, 1, 10, 10, None, None, "buffer_lost")]))
    assert stats(node).missing_readings == 8 and stats(node).gaps == 2


def identity(hw="1000000012345678", machine="m1", buffer="b1"):
    return {"hw_serial": hw, "machine_id": machine, "buffer_id": buffer, "firmware": "0.1.0"}


def test_identities_and_a_clash(node):
    send(node, batch([], health={"firmware": "old"}))  # an older node: no identity
    assert stats(node).identities == 0
    send(node, batch([], health=identity()), NOW)
    send(node, batch([], health=identity()), NOW + 1000)
    assert stats(node).identities == 1
    send(node, batch([], health=identity(hw="2000000099999999", machine="m2")), NOW + 2000)
    found = integrity.identities(node.query(integrity.IDENTITY_SELECT, ("pole-1",)))
    assert len(found) == 2 and not integrity.clash(found, NOW + 2000)  # a card moved to a new Pi
    send(node, batch([], health=identity()), NOW + 3000)  # the first device again: they alternate
    found = integrity.identities(node.query(integrity.IDENTITY_SELECT, ("pole-1",)))
    assert integrity.clash(found, NOW + 3000)
    assert not integrity.clash(found, NOW + 3000 + integrity.CLASH_WINDOW_MS + 1)  # a day later
    assert stats(node).identities == 2
    assert not [i for i in node.incidents("pole-1") if i.kind == "buffer_replaced"]


def test_a_buffer_replaced_without_a_buffer_lost_gap_is_an_incident(node):
    send(node, batch([], health=identity(buffer="b1")), NOW)
    send(node, batch([], health=identity(buffer="b2")), NOW + 1000)
    replaced = [i for i in node.incidents("pole-1") if i.kind == "buffer_replaced"]
    assert len(replaced) == 1 and "from b1 to b2" in replaced[0].detail
    assert stats(node).incidents == 1
    # the node that says so itself (a buffer_lost gap) gets no incident from the central
    lost = Gap(2, 1, 40, 40, None, None, "buffer_lost")
    send(node, batch([], epoch=3, gaps=[lost], health=identity(buffer="b3")), NOW + 2000)
    assert len([i for i in node.incidents("pole-1") if i.kind == "buffer_replaced"]) == 1
    found = integrity.identities(node.query(integrity.IDENTITY_SELECT, ("pole-1",)))
    assert not integrity.clash(found, NOW + 2000)  # replaced one after the other: no clash


def test_central_incidents_do_not_collide_with_the_nodes(node):
    from node.model import Incident

    send(node, batch([reading(1)]))
    send(node, batch([reading(1, boot="x")]))
    b = batch([reading(2, boot="y")])
    b.incidents = [Incident(1, NOW, "buffer_rollback", "epoch 1: rolled back")]
    r = send(node, b)
    assert r.incidents == 1
    kinds = sorted((i.kind, i.id) for i in node.incidents("pole-1"))
    assert kinds == [("buffer_rollback", 1), ("conflict", 1)]
    assert stats(node).incidents == 2
