"""The agent with a clock one year behind: the step is corrected in the buffer within 1 s."""

from __future__ import annotations

import threading
import time

from drivers.quality import Quality
from node import config
from node.clock import Clock

YEAR_S = 365 * 86400


def _cfg(tmp_path):
    return config.validate({
        "node": {"id": "clock-node", "state_dir": str(tmp_path / "state")},
        "sensors": [{"type": "bme280", "name": "weather", "interval": "0.1s"}],
        "emulation": {"enabled": True, "scenario": "calm", "speed": 1.0},
    })


def _all_readings(agent):
    batch = agent.buffer.claim(100000)
    agent.buffer.release(batch.id)
    return batch.readings


def test_one_year_behind_then_ntp_step_corrected_within_a_second(tmp_path):
    synced = threading.Event()

    def wall():
        return time.time() - (0 if synced.is_set() else YEAR_S)

    clock = Clock(wall=wall, sync=lambda: synced.is_set(), boot_id="boot-test")
    from node.agent import Agent

    agent = Agent(_cfg(tmp_path), clock=clock)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while agent.counters["readings"] < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = _all_readings(agent)
        assert before and all(r.flags & Quality.CLOCK_UNSYNCED for r in before)
        assert all(abs(r.wall_ms / 1000 - (time.time() - YEAR_S)) < 30 for r in before)
        synced.set()  # NTP steps the clock forward by a year
        t_step = time.monotonic()
        while time.monotonic() - t_step < 1.0:
            rs = _all_readings(agent)
            if all(not r.flags & Quality.CLOCK_UNSYNCED for r in rs):
                break
            time.sleep(0.02)
        assert all(not r.flags & Quality.CLOCK_UNSYNCED for r in rs), "not corrected within 1 s"
        seqs = {r.seq for r in before}
        corrected = [r for r in rs if r.seq in seqs]
        assert all(r.flags & Quality.CLOCK_CORRECTED for r in corrected)
        now = time.time()
        assert all(now - 30 < r.wall_ms / 1000 <= now for r in corrected)  # on the true timeline
        assert agent.counters["corrections"] == 1
    finally:
        agent.stop()
        runner.join(5)
    assert not runner.is_alive()


def test_never_synchronized_readings_stay_unsynced(tmp_path):
    from node.agent import Agent

    clock = Clock(wall=lambda: time.time() - YEAR_S, sync=lambda: False, boot_id="boot-never")
    agent = Agent(_cfg(tmp_path), clock=clock)
    threading.Timer(1.0, agent.stop).start()
    assert agent.run() == 0
    agent.buffer.open()
    rs = _all_readings(agent)
    assert rs and all(r.flags & Quality.CLOCK_UNSYNCED and not r.flags & Quality.CLOCK_CORRECTED for r in rs)
    agent.buffer.close()
