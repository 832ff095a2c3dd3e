"""Storm mode on the emulated storm scenario: starts once, ends once (hysteresis), flags readings."""

from __future__ import annotations

import statistics
import threading

from drivers.quality import Quality
from node import config
from node.storm import StormDetector

STORM_CFG = {"enabled": True, "pressure_drop_hpa_3h": 3.0, "rain_rate_mm_h": 20.0, "flood_depth_cm": 10.0,
             "clear_after": 1800.0, "clear_ratio": 0.5}


def test_detector_on_the_scenario_truth_one_episode_no_flapping():
    from drivers.emulator import scenario

    sc = scenario("storm")
    d = StormDetector(STORM_CFG)
    events = []
    t = 0.0
    while t <= sc.duration_s:
        truth = sc.at(t)
        ev = d.observe(t, {"pressure_hpa": truth.pressure_hpa, "rain_rate_mm_h": truth.rain_rate_mm_h,
                           "depth_cm": truth.depth_cm})
        if ev is not None:
            events.append((ev, t / 3600))
        t += 300  # every 5 minutes
    assert [e for e, _ in events] == [True, False]
    on_h, off_h = events[0][1], events[1][1]
    assert 6 < on_h < 12  # the pressure falls 7 hPa in 6 h from hour 6
    # off only after every trigger is below half its threshold for 30 min: depth < 5 cm after hour 42
    assert 42 < off_h < 48


def test_agent_on_the_emulated_storm_flags_readings_and_shortens_intervals(tmp_path):
    from node.agent import Agent
    from node.buffer import SqliteBuffer

    speed = 48 * 3600 / 6.0  # the 48 h storm in 6 s
    cfg = config.validate({
        "node": {"id": "storm-node", "state_dir": str(tmp_path / "state")},
        "sensors": [{"type": "bme280", "name": "weather", "interval": "0.2s"},
                    {"type": "flood", "name": "flood", "trigger_pin": 23, "echo_pin": 24,
                     "mount_height_cm": 300, "interval": "0.2s"}],
        "storm": {"interval": "0.1s"},
        "emulation": {"enabled": True, "scenario": "storm", "speed": speed},
    })
    agent = Agent(cfg)
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.wait(0.02):
            seen.append(agent.storm.state.active)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    threading.Timer(6.5, agent.stop).start()
    assert agent.run() == 0
    stop.set()
    w.join()
    assert agent.counters["storms"] == 1
    assert not agent.storm.state.active  # ended with the scenario
    flips = sum(1 for a, b in zip(seen, seen[1:], strict=False) if a != b)
    assert flips == 2  # on once, off once
    buf = SqliteBuffer(tmp_path / "state" / "buffer.db", "storm-node")
    buf.open()
    batch = buf.claim(100000)
    assert batch is not None
    stormy = [r for r in batch.readings if r.flags & Quality.STORM]
    calm = [r for r in batch.readings if not r.flags & Quality.STORM]
    assert stormy and calm
    # storm mode samples every 0.1 s instead of 0.2 s
    def median_step_ms(rs):
        boots = sorted(r.boot_ms for r in rs if r.channel == "weather.pressure_hpa")
        return statistics.median(b - a for a, b in zip(boots, boots[1:], strict=False))

    assert median_step_ms(stormy) < 0.75 * median_step_ms(calm)
    assert median_step_ms(calm) >= 150
    buf.close()
