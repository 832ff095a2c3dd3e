"""The claim's inner loop builds Readings without the frozen dataclass __init__: same objects."""

from __future__ import annotations

import dataclasses

import pytest

from node.buffer import SqliteBuffer
from node.buffer.queries import _reading_maker
from node.model import Reading, Sample, Stamp


def test_fast_reading_constructor_gives_equal_frozen_readings():
    fields = (7, "weather.temperature_c", 23.45, 4, 1_790_000_000_000, 12_000, "boot-a")
    fast, slow = _reading_maker()(*fields), Reading(*fields)
    assert type(fast) is Reading and fast == slow and hash(fast) == hash(slow)
    assert dataclasses.astuple(fast) == fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 1.0  # type: ignore[misc]


def test_claimed_readings_carry_their_cycle_stamp_clock_flag_and_decoded_value(tmp_path):
    buf = SqliteBuffer(tmp_path / "b.db", "n1", clock=lambda: 1_790_000_100.0)
    buf.open()
    cycles = [(Stamp(1_790_000_000_000 + i * 10_000, 5_000 + i * 10_000, f"boot-{i // 3}", i % 2 == 0),
               [Sample("weather.temperature_c", 20.0 + i / 100), Sample("flood.depth_cm", 1.5 * i),
                Sample("weather.pressure_hpa", 1008.123456)])  # not on the resolution: stays a float
              for i in range(7)]
    for stamp, samples in cycles:
        buf.put(samples, stamp)
    batch = buf.claim(100)
    assert batch is not None
    unsynced = {r.seq: r.flags for r in batch.readings}
    expected = []
    seq = 1
    for stamp, samples in cycles:
        for s in samples:
            expected.append((seq, s.channel, s.value, stamp.wall_ms, stamp.boot_ms, stamp.boot_id,
                             bool(unsynced[seq]) != stamp.synced))
            seq += 1
    got = [(r.seq, r.channel, r.value, r.wall_ms, r.boot_ms, r.boot_id, True) for r in batch.readings]
    assert got == [e[:6] + (True,) for e in expected]
    assert all(e[6] for e in expected)  # flags set exactly on the unsynced cycles' readings
    buf.close()
