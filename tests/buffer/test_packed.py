"""A cycle's readings packed into one row (node/buffer/packed.py), and what that row replaces.

The schema-1 layout (one row per reading) still opens: its readings stay where they are and
drain, new cycles are packed, and a window across both reads and deletes as one sequence.
"""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from node.buffer import SqliteBuffer, packed, store
from node.buffer.base import _scale
from node.model import Sample
from tests.buffer.conftest import cycle, stamp

stored_values = st.one_of(st.none(), st.integers(-(10**15), 10**15),
                          st.floats(allow_nan=False), st.just(-0.0))
rows_strategy = st.lists(st.tuples(st.integers(1, 100_000), stored_values, st.integers(0, 1 << 20)),
                         max_size=40)


@given(rows_strategy)
def test_any_rows_round_trip(rows):
    got = packed.decode(packed.encode(rows))
    assert [(c, f) for c, _, f in got] == [(c, f) for c, _, f in rows]
    for (_, a, _), (_, b, _) in zip(got, rows, strict=True):
        assert type(a) is type(b) and (a == b or repr(a) == repr(b))


@given(st.lists(st.tuples(st.sampled_from([0.01, 0.1, 1.0, 0.0001, 0.2794]),
                          st.one_of(st.none(), st.floats(-1e16, 1e16, allow_nan=False))), max_size=20))
def test_samples_encode_like_rows(specs):
    codes = {f"ch.{i}": (i + 1, _scale(res), res) for i, (res, _) in enumerate(specs)}
    samples = [Sample(f"ch.{i}", value, i % 3) for i, (_, value) in enumerate(specs)]
    from node.buffer.base import encode_value
    rows = [(i + 1, encode_value(s.value, res), s.flags) for i, ((res, _), s) in enumerate(zip(specs, samples,
                                                                                           strict=True))]
    assert packed.encode_samples(samples, codes) == packed.encode(rows)
    assert packed.encode_samples([Sample("unknown.x", 1.0)], codes) is None


def test_a_typical_cycle_is_small():
    rows = [(k + 1, v, 0) for k, v in enumerate([2492, 8074, 100168, 11, 26, 40, -2, 2924, 2510, -2,
                                                 470, 209, 67, 3581, 0])]
    assert len(packed.encode(rows)) <= 50


def _make(tmp_path, clock):
    return SqliteBuffer(tmp_path / "buffer.db", "node-1", clock=clock, timer=clock)


def test_one_row_per_cycle_and_partial_deletes_keep_the_rest(tmp_path, clock):
    b = _make(tmp_path, clock)
    for i in range(4):
        b.put(cycle(i, 15), stamp(i))
    db = sqlite3.connect(tmp_path / "buffer.db")
    assert db.execute("SELECT count(*), sum(data IS NOT NULL) FROM cycles").fetchone() == (4, 4)
    assert db.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
    a = b.claim(20)  # ends inside the second cycle
    mid = b.claim(5)  # inside the second cycle: seq 21..25
    assert [r.seq for r in mid.readings] == list(range(21, 26))
    assert b.ack(mid.id)  # a hole in the middle of a cycle: head and tail keep their stamp
    assert b.ack(a.id)
    rest = b.claim(100)
    assert [r.seq for r in rest.readings] == list(range(26, 61))
    assert {r.wall_ms for r in rest.readings if r.seq <= 30} == {stamp(1).wall_ms}
    assert [r.value for r in rest.readings[:5]] == [s.value for s in cycle(1, 15)[10:]]
    assert b.stats().readings == 35
    b.release(rest.id)
    b.close()
    with _make(tmp_path, clock) as b2:  # a restart counts and numbers from the rows
        assert b2.stats().readings == 35 and b2.put(cycle(9), stamp(9)).first_seq == 61
        newest = b2.claim(3, newest_first=True)
        assert [r.seq for r in newest.readings] == [63, 64, 65]
    db.close()


def _schema1_file(path, node_id="node-1"):
    """A file as schema 1 wrote it: cycles without `data`, one readings row per reading."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size=512")
    db.execute("PRAGMA journal_mode=WAL")
    for stmt in store.SCHEMA.replace(", data BLOB", "").split(";"):
        if stmt.strip():
            db.execute(stmt)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("node_id", node_id), ("epoch", 3), ("seq_hw", 0),
                                                      ("schema", 1), ("created_ms", 0)])
    db.execute("INSERT INTO channels VALUES (1, 'weather.temperature_c', 0.01)")
    db.execute("INSERT INTO boots VALUES (1, 'boot-a')")
    for i in range(3):  # 3 cycles of 4 readings: seq 1..12, the first two readings acked already
        db.execute("INSERT INTO cycles VALUES (?, 4, ?, ?, 1, 0)", (1 + 4 * i, stamp(i).wall_ms,
                                                                    stamp(i).boot_ms))
        db.executemany("INSERT INTO readings VALUES (?, 1, ?, 0)",
                       [(1 + 4 * i + k, 2000 + 10 * i + k) for k in range(4) if 1 + 4 * i + k > 2])
    db.close()


def test_a_schema1_file_upgrades_in_place_and_drains_across_both_layouts(tmp_path, clock):
    _schema1_file(tmp_path / "buffer.db")
    b = _make(tmp_path, clock)
    st0 = b.stats()
    assert (st0.epoch, st0.readings) == (3, 10)
    assert b.put([Sample("weather.temperature_c", 21.5)] * 3, stamp(5)).first_seq == 13
    assert store.peek_meta(tmp_path / "buffer.db")["schema"] == 2
    first = b.claim(12)  # legacy 3..12, then packed 13..14
    assert [r.seq for r in first.readings] == list(range(3, 15))
    assert [r.value for r in first.readings[:3]] == [20.02, 20.03, 20.1]
    assert first.readings[0].wall_ms == stamp(0).wall_ms and first.readings[-1].wall_ms == stamp(5).wall_ms
    assert [r.seq for r in b.claim(5, newest_first=True).readings] == [15]
    assert b.ack(first.id)
    assert b.stats().readings == 1
    db = sqlite3.connect(tmp_path / "buffer.db")
    assert db.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
    assert db.execute("SELECT first_seq, n FROM cycles").fetchall() == [(15, 1)]  # legacy cycles gone
    db.close()
    b.close()
    assert SqliteBuffer.inspect(tmp_path / "buffer.db").readings == 1


def test_inspect_reads_a_schema1_file_without_changing_it(tmp_path):
    _schema1_file(tmp_path / "buffer.db")
    assert SqliteBuffer.inspect(tmp_path / "buffer.db").readings == 10
    assert store.peek_meta(tmp_path / "buffer.db")["schema"] == 1
