"""Time without an RTC: the clock one year behind, then NTP steps it."""

from __future__ import annotations

from pathlib import Path

from node import clock as clk

YEAR_MS = 365 * 24 * 3600 * 1000
NOW_MS = 1_790_000_000_000


class FakeTime:
    """Wall and boot time under the test's control (the system's own clock cannot be stepped)."""

    def __init__(self, wall_ms: int) -> None:
        self.wall_ms, self.boot_ms, self.synced = wall_ms, 10_000, False

    def advance(self, ms: int) -> None:
        self.wall_ms += ms
        self.boot_ms += ms

    def make(self, **kw) -> clk.Clock:
        return clk.Clock(wall=lambda: self.wall_ms / 1000, boot=lambda: self.boot_ms,
                         sync=lambda: self.synced, boot_id="boot-a", **kw)


def test_one_year_behind_then_step_gives_one_correction_of_the_step():
    t = FakeTime(NOW_MS - YEAR_MS)
    c = t.make(sync_poll_s=0.5)
    stamps = []
    for _ in range(5):
        stamps.append(c.stamp())
        t.advance(1000)
    assert all(not s.synced for s in stamps)
    assert stamps[-1].wall_ms - stamps[0].wall_ms == 4000
    t.wall_ms += YEAR_MS  # NTP steps the clock ...
    t.synced = True       # ... and timesyncd writes its flag
    t.advance(300)
    s = c.stamp()
    assert s.synced and s.wall_ms == t.wall_ms
    [corr] = c.take_corrections()
    assert corr.boot_id == "boot-a" and corr.source == "ntp"
    assert corr.offset_ms == YEAR_MS
    # corrected = stored wall + offset lands on the true time of each reading
    assert stamps[0].wall_ms + corr.offset_ms == NOW_MS
    assert c.take_corrections() == []


def test_step_seen_before_the_sync_flag_keeps_one_timeline():
    t = FakeTime(NOW_MS - YEAR_MS)
    c = t.make(sync_poll_s=5)
    first = c.stamp()
    t.advance(1000)
    t.wall_ms += YEAR_MS  # stepped, flag not written yet
    t.advance(1000)
    mid = c.stamp()
    assert not mid.synced and mid.wall_ms - first.wall_ms == 2000  # still the boot-clock timeline
    t.synced = True
    t.advance(6000)
    assert c.poll() is True
    [corr] = c.take_corrections()
    assert mid.wall_ms + corr.offset_ms == NOW_MS + 2000


def test_never_synced_stays_unsynced_and_uncorrected():
    t = FakeTime(NOW_MS - YEAR_MS)
    c = t.make()
    for _ in range(10):
        assert c.stamp().synced is False
        t.advance(1000)
    assert c.take_corrections() == []


def test_unknown_sync_state_a_step_counts_as_the_clock_being_set():
    t = FakeTime(NOW_MS - YEAR_MS)
    c = clk.Clock(wall=lambda: t.wall_ms / 1000, boot=lambda: t.boot_ms, sync=lambda: None,
                  boot_id="b")
    s0 = c.stamp()
    assert not s0.synced
    t.wall_ms += YEAR_MS
    t.advance(500)
    assert c.stamp().synced
    [corr] = c.take_corrections()
    assert corr.source == "step" and s0.wall_ms + corr.offset_ms == NOW_MS


def test_central_offset_corrects_unsynced_readings_and_later_stamps_follow_it():
    t = FakeTime(NOW_MS - YEAR_MS)
    c = t.make()
    s0 = c.stamp()
    t.advance(2000)
    corr = c.learn_offset(YEAR_MS + 40)
    assert corr is not None and corr.source == "central" and corr.offset_ms == YEAR_MS + 40
    assert c.take_corrections() == [corr]
    assert s0.wall_ms + corr.offset_ms == NOW_MS + 40
    s1 = c.stamp()
    assert not s1.synced and s1.corrected and s1.wall_ms == t.wall_ms + YEAR_MS + 40
    t.advance(1000)
    assert c.learn_offset(YEAR_MS + 40) is None, "nothing waits on another base: no +0 ms correction"
    assert c.take_corrections() == []


def test_synced_clock_ignores_central_offset():
    t = FakeTime(NOW_MS)
    t.synced = True
    c = t.make()
    assert c.stamp().synced
    assert c.learn_offset(5000) is None
    assert c.take_corrections() == []


def test_sync_flag_file_and_boot_id(tmp_path: Path):
    flag = tmp_path / "synchronized"
    assert clk.is_synchronized(paths=[str(flag)], kernel=False) is None
    flag.touch()
    assert clk.is_synchronized(paths=[str(flag)], kernel=False) is True
    assert clk.kernel_synchronized() in (True, False, None)
    bid = tmp_path / "boot_id"
    bid.write_text("abc-123\n")
    assert clk.read_boot_id(str(bid)) == "abc-123"
    missing = clk.read_boot_id(str(tmp_path / "nope"))
    assert missing.startswith("nobootid-") and missing == clk.read_boot_id(str(tmp_path / "nope"))
    assert clk.boot_ms() > 0


def test_last_known_good_time_roundtrip(tmp_path: Path):
    assert clk.last_known_good_time(tmp_path) is None
    clk.save_last_known_good_time(tmp_path, NOW_MS)
    assert clk.last_known_good_time(tmp_path) == NOW_MS
    (tmp_path / clk.LKG_FILE).write_text("garbage")
    assert clk.last_known_good_time(tmp_path) is None


def test_stamps_on_the_central_time_are_never_corrected_twice(tmp_path: Path):
    """Regression (chaos run, #9): the uploader thread learns the central's time while the
    sampling thread stamps; a cycle stamped on the central's time *before* the correction was
    applied got the correction too (the buffer corrects every unsynced reading of the boot) and
    ended up a year in the future. Now stamps on the central's time are CLOCK_CORRECTED at once
    (the buffer's correction moves only unsynced ones) and corrections carry the true base."""
    from node.buffer import SqliteBuffer
    from node.model import Quality, Sample

    t = FakeTime(NOW_MS - YEAR_MS)
    c = t.make()
    buf = SqliteBuffer(tmp_path / "buffer.db", "n1")
    buf.open()
    buf.put([Sample("weather.temperature_c", 1.0)], c.stamp())
    t.advance(1000)
    corr = c.learn_offset(YEAR_MS)  # upload thread
    assert corr is not None and corr.offset_ms == YEAR_MS
    s1 = c.stamp()  # sampling thread, before the correction is applied
    assert s1.corrected and s1.wall_ms == t.wall_ms + YEAR_MS
    buf.put([Sample("weather.temperature_c", 2.0)], s1)
    t.advance(1000)
    assert c.learn_offset(YEAR_MS + 30) is None  # the base follows; nothing waits on another base
    for x in c.take_corrections():
        buf.correct_clock(x.boot_id, x.offset_ms, true_base_ms=x.true_base_ms)
    batch = buf.claim(10)
    buf.close()
    assert [r.wall_ms for r in batch.readings] == [NOW_MS, NOW_MS + 1000]
    assert all(r.flags & Quality.CLOCK_CORRECTED for r in batch.readings)
