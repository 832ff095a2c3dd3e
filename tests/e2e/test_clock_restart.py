"""Found by the chaos run (#9) (docs/chaos.md, "Found", 2), fixed by corrections carrying the boot's
true base: ``buffer.correct_clock(boot_id, offset_ms)`` alone shifted every unsynced reading of the
boot by one offset, whatever wall-boot base it was stamped with. A node without NTP learns its
time from the central; after a restart in the same boot the new process starts on the raw clock
again, and its correction moved the previous process's readings that were already on the
central's time.
"""

from __future__ import annotations

from node.buffer import SqliteBuffer
from node.clock import Clock
from node.model import Sample

YEAR_MS = 365 * 86_400_000
TRUE_MS = 1_800_000_000_000


def test_restart_without_ntp_leaves_the_previous_process_readings_on_true_time(tmp_path):
    t = {"boot": 10_000, "true": TRUE_MS}

    def advance(ms: int) -> None:
        t["boot"] += ms
        t["true"] += ms

    def process() -> Clock:  # the raw wall clock is a year behind, never synchronized
        return Clock(wall=lambda: (t["true"] - YEAR_MS) / 1000, boot=lambda: t["boot"], sync=lambda: False,
                     boot_id="boot-1")

    buf = SqliteBuffer(tmp_path / "buffer.db", "n1")
    buf.open()

    def cycle(clock: Clock) -> None:
        for c in clock.take_corrections():  # as the agent's sampling pass does
            buf.correct_clock(c.boot_id, c.offset_ms, true_base_ms=c.true_base_ms)
        buf.put([Sample("weather.temperature_c", 25.0)], clock.stamp())
        advance(1000)

    a = process()
    cycle(a)
    assert a.learn_offset(YEAR_MS) is not None  # the central's time, learned while uploading
    cycle(a)
    cycle(a)  # stamped on the central's time (flagged unsynced), then the process is killed
    b = process()
    cycle(b)
    assert b.learn_offset(YEAR_MS) is not None
    cycle(b)
    batch = buf.claim(100)
    off = [(r.seq, (r.wall_ms - TRUE_MS) // 1000) for r in batch.readings
           if abs(r.wall_ms - TRUE_MS) > 60_000]
    buf.close()
    assert not off, f"readings off the true time by (seq, s): {off}"
