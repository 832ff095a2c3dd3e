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


def test_synced_clock_off_by_more_than_the_bound_is_one_suspect_episode(tmp_path: Path):
    """Issue #20: a clock a year behind that reports itself synced. Its readings move to the true
    time (only those stamped on the wrong base), later stamps follow the central's, and the
    episode ends once the clock agrees; a second lie is a second episode."""
    from node.buffer import MemoryBuffer, SqliteBuffer
    from node.model import Quality, Sample, Stamp

    t = FakeTime(NOW_MS)
    t.synced = True
    c = t.make(suspect_s=120)
    bufs = [SqliteBuffer(tmp_path / "buffer.db", "n1"), MemoryBuffer("n1")]
    first = c.stamp()  # right, synced: must stay as it is
    t.wall_ms -= YEAR_MS  # a bad NTP server steps it a year back; it still claims sync
    t.advance(1000)
    second = c.stamp()
    assert second.synced and c.state == "synced"
    for b in bufs:
        b.open()
        b.put([Sample("weather.temperature_c", 1.0)], first)
        b.put([Sample("weather.temperature_c", 2.0)], second)
    central_base = NOW_MS - 10_000  # the central's time minus our boot clock (boot started at 10 s)
    assert c.learn_central_base(central_base - YEAR_MS + 60_000) is None  # 60 s off: trusted
    corr = c.learn_central_base(central_base)
    assert corr is not None and corr.source == "suspect" and corr.offset_ms == YEAR_MS
    assert corr.wrong_base_ms == t.wall_ms - t.boot_ms and corr.true_base_ms == central_base
    assert c.state == "suspect" and c.suspect_episodes == 1 and c.take_corrections() == [corr]
    assert c.learn_central_base(central_base + 5) is None  # the same episode: nothing new
    s = c.stamp()
    assert not s.synced and s.corrected and s.wall_ms == t.boot_ms + central_base + 5
    for b in bufs:
        assert b.rebase_clock(corr.boot_id, corr.wrong_base_ms, corr.true_base_ms,
                              abs(corr.offset_ms) // 2) == 1
        batch = b.claim(10)
        b.close()
        assert [r.wall_ms for r in batch.readings] == [NOW_MS, NOW_MS + 1000]
        assert batch.readings[0].flags & (Quality.CLOCK_CORRECTED | Quality.CLOCK_UNSYNCED) == 0
        assert batch.readings[1].flags & Quality.CLOCK_CORRECTED
    t.wall_ms += YEAR_MS  # NTP fixes it
    t.advance(1000)
    assert c.learn_central_base(central_base) is None and c.state == "synced"
    assert c.stamp() == Stamp(t.wall_ms, t.boot_ms, "boot-a", True)
    assert c.take_corrections() == []
    t.wall_ms += 10 * 60_000  # ten minutes fast: a second episode
    again = c.learn_central_base(central_base)
    assert again is not None and again.source == "suspect" and c.suspect_episodes == 2


def test_the_central_base_stays_right_across_a_step_of_our_wall_clock():
    """The base is measured on the boot clock: an unsynced clock that steps after the answer
    neither starts a suspect episode nor moves the stamps."""
    t = FakeTime(NOW_MS - YEAR_MS)
    c = t.make()
    c.stamp()
    central_base = NOW_MS - t.boot_ms
    assert c.learn_central_base(central_base).offset_ms == YEAR_MS
    t.wall_ms += YEAR_MS - 3_600_000  # the clock is set by hand, an hour wrong, still unsynced
    t.advance(1000)
    s = c.stamp()
    assert s.corrected and s.wall_ms == NOW_MS + 1000  # still on the central's time
    assert c.learn_central_base(central_base) is None and c.state == "unsynced"
