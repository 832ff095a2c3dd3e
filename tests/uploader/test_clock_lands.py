"""Issue #20, fault 4: a correction of the node's clock lands before the batch is encoded.

The real uploader, a real `node.clock.Clock` on an emulated wall clock (the real time shifted: the
boot clock is the machine's own), a real SqliteBuffer and the real central on loopback. The clock
hook is the agent's in miniature: learn the central's base, put the corrections into the buffer.
"""

from __future__ import annotations

import logging
import time

from node.clock import Clock, boot_ms
from node.model import Quality, Sample
from node.uploader import Uploader
from tests.uploader.conftest import NODE

YEAR_S = 365 * 86400


def _wall_1970() -> object:
    shift = time.time() - 5.0  # the Pi booted without an RTC: its clock reads 5 s after the epoch
    return lambda: time.time() - shift


def _sync_hook(clock: Clock, buf):
    def sync(central_base_ms: int | None) -> None:
        clock.poll()
        if central_base_ms is not None:
            clock.learn_central_base(central_base_ms)
        for c in clock.take_corrections():
            if c.wrong_base_ms is not None:
                buf.rebase_clock(c.boot_id, c.wrong_base_ms, c.true_base_ms, abs(c.offset_ms) // 2)
            else:
                buf.correct_clock(c.boot_id, c.offset_ms, true_base_ms=c.true_base_ms)
    return sync


def _put(buf, clock: Clock, cycles: int) -> None:
    for i in range(cycles):
        buf.put([Sample("weather.temperature_c", 20.0 + i)], clock.stamp())
        time.sleep(0.01)


def _off_true_time_ms(central) -> list[int]:
    """How far each stored reading is from its true time (the boot clock is the machine's)."""
    true_base = int(time.time() * 1000) - boot_ms()
    return [r.wall_ms - (r.boot_ms + true_base) for r in central.store.readings(NODE)]


def _uploader(central, url: str, buf, clock: Clock, *, hook: bool = True) -> Uploader:
    return Uploader(buf, url, central.key, NODE, clock=clock.wall, boot=clock.boot, backoff_initial=0.1,
                    backoff_max=0.5, read_timeout=5,
                    clock_sync=_sync_hook(clock, buf) if hook else None)


def test_readings_stamped_at_1970_are_stored_on_true_time_from_the_first_round(central, buf, caplog):
    clock = Clock(wall=_wall_1970(), sync=lambda: False, boot_id="boot-1970")
    _put(buf, clock, 20)  # offline: 20 cycles stamped at 1970
    up = _uploader(central, central.url, buf, clock)
    with caplog.at_level(logging.INFO, logger="streetnode"):
        res = up.run_round()
        _put(buf, clock, 5)  # after the central's time is known: stamped on it at once
        res2 = up.run_round()
    up.close()
    assert res.error is None and res.readings == 20 and res2.readings == 5
    off = _off_true_time_ms(central)
    assert len(off) == 25 and max(abs(x) for x in off) < 1000, off
    flags = [r.flags for r in central.store.readings(NODE)]
    assert all(f & Quality.CLOCK_CORRECTED and not f & Quality.CLOCK_UNSYNCED for f in flags)
    assert clock.state == "unsynced" and clock.offset_ms is not None and clock.offset_ms > 10 * YEAR_S * 1000


def test_a_batch_refused_as_stale_is_restamped_not_only_resigned(central, proxy, buf, caplog):
    """The first answer (to the time-learning ping) carries no time: the batch leaves with 1970
    stamps; the central's signed 401 stale_timestamp teaches its time, and the batch is claimed
    again, corrected, and stored on true time."""
    clock = Clock(wall=_wall_1970(), sync=lambda: False, boot_id="boot-1970")
    _put(buf, clock, 10)
    proxy.set("status", count=1, status=503, sign_key=central.key, body={"error": "overloaded"})
    up = _uploader(central, proxy.url, buf, clock)
    with caplog.at_level(logging.INFO, logger="streetnode"):
        res = up.run_round()
    up.close()
    assert res.error is None and res.restamped == 1 and res.readings == 10
    assert any("goes again on the central's time" in r.getMessage() for r in caplog.records)
    off = _off_true_time_ms(central)
    assert len(off) == 10 and max(abs(x) for x in off) < 1000, off


def test_without_a_node_clock_the_stale_batch_is_only_resigned(central, proxy, buf):
    """The uploader alone (no clock hook: benches, tools) keeps the old behaviour: no time-learning
    ping, a 401 stale_timestamp is re-signed once with the learned offset."""
    clock = Clock(wall=_wall_1970(), sync=lambda: False, boot_id="boot-1970")
    _put(buf, clock, 3)
    up = _uploader(central, proxy.url, buf, clock, hook=False)
    res = up.run_round()
    up.close()
    assert res.error is None and res.readings == 3 and res.restamped == 0
    assert proxy.counts.get("pass", 0) == 2  # the batch, refused as stale, then re-signed
    assert all(r.flags & Quality.CLOCK_UNSYNCED for r in central.store.readings(NODE))


def test_year_behind_clock_claiming_sync_is_flagged_and_stored_on_true_time(central, buf):
    clock = Clock(wall=lambda: time.time() - YEAR_S, sync=lambda: True, boot_id="boot-year")
    _put(buf, clock, 10)  # stamped "synced", a year in the past
    up = _uploader(central, central.url, buf, clock)
    res = up.run_round()
    assert clock.state == "suspect" and clock.suspect_episodes == 1
    _put(buf, clock, 5)  # during the episode: on the central's time
    res2 = up.run_round()
    up.close()
    assert res.error is None and res.readings + res2.readings == 15
    off = _off_true_time_ms(central)
    assert len(off) == 15 and max(abs(x) for x in off) < 1000, off
    assert all(r.flags & Quality.CLOCK_CORRECTED for r in central.store.readings(NODE))
    assert clock.suspect_episodes == 1  # one episode, however many rounds


def test_a_synced_clock_within_the_bound_is_trusted(central, buf):
    clock = Clock(wall=lambda: time.time() - 30, sync=lambda: True, boot_id="boot-ok")  # 30 s < 120 s
    _put(buf, clock, 5)
    up = _uploader(central, central.url, buf, clock)
    res = up.run_round()
    up.close()
    assert res.readings == 5 and clock.state == "synced" and clock.suspect_episodes == 0
    stored = central.store.readings(NODE)
    assert all(r.flags & (Quality.CLOCK_CORRECTED | Quality.CLOCK_UNSYNCED) == 0 for r in stored)
    off = _off_true_time_ms(central)
    assert all(-31_000 < x < -29_000 for x in off)  # as its clock said: within the bound, trusted
